package geo

// Field mask bits: which attributes a source record sets. Merging overlays
// later sources over earlier ones attribute by attribute, so a City database
// and an ASN database combine into one record per range.
const (
	hasCountry uint8 = 1 << iota
	hasCity
	hasLocation
	hasASN
	hasOrg
)

// record is the answer attached to a range. It is comparable so that equal
// answers are interned once; strings are interned too, so a record costs
// about 80 bytes however many ranges share it.
type record struct {
	country, city, org string
	lat, lon           float64
	asn                uint32
	mask               uint8
}

// overlay returns r with every attribute that o sets replaced by o's.
func (r record) overlay(o record) record {
	if o.mask&hasCountry != 0 {
		r.country = o.country
	}
	if o.mask&hasCity != 0 {
		r.city = o.city
	}
	if o.mask&hasLocation != 0 {
		r.lat, r.lon = o.lat, o.lon
	}
	if o.mask&hasASN != 0 {
		r.asn = o.asn
	}
	if o.mask&hasOrg != 0 {
		r.org = o.org
	}
	r.mask |= o.mask
	return r
}

// interner deduplicates strings and records while a database is built.
type interner struct {
	strs map[string]string
	recs map[record]uint32
	list []record // list[0] is the empty record
}

func newInterner() *interner {
	return &interner{
		strs: map[string]string{},
		recs: map[record]uint32{{}: 0},
		list: []record{{}},
	}
}

func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.strs[s]; ok {
		return v
	}
	s = string([]byte(s)) // detach from any larger buffer
	in.strs[s] = s
	return s
}

// rec returns the id of r, adding it if new. The empty record is id 0.
func (in *interner) rec(r record) uint32 {
	if r.mask == 0 {
		return 0
	}
	r.country, r.city, r.org = in.str(r.country), in.str(r.city), in.str(r.org)
	if id, ok := in.recs[r]; ok {
		return id
	}
	id := uint32(len(in.list))
	in.recs[r] = id
	in.list = append(in.list, r)
	return id
}
