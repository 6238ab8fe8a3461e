package geo

import "errors"

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

// answer is the lookup-time form of a record: exactly one 64-byte cache line
// (the slice is large enough to be page-aligned), with the country code as
// an index into a small, always-hot table of the database's country strings.
type answer struct {
	city, org string
	lat, lon  float64
	asn       uint32
	country   uint16
	_         [10]byte
}

// compact converts interned records into answers.
func compact(recs []record) ([]answer, []string, error) {
	countries := []string{""}
	idx := map[string]uint16{"": 0}
	out := make([]answer, len(recs))
	for i, r := range recs {
		c, ok := idx[r.country]
		if !ok {
			if len(countries) > 0xffff {
				return nil, nil, errors.New("more than 65535 distinct country values; check the country mapping")
			}
			c = uint16(len(countries))
			idx[r.country] = c
			countries = append(countries, r.country)
		}
		out[i] = answer{city: r.city, org: r.org, lat: r.lat, lon: r.lon, asn: r.asn, country: c}
	}
	return out, countries, nil
}

// record rebuilds the record of answer id (for tests and tools).
func (db *DB) record(id uint32) record {
	a := &db.answers[id]
	return record{country: db.countries[a.country], city: a.city, org: a.org, lat: a.lat, lon: a.lon, asn: a.asn}
}
