package geo

import (
	"errors"
	"math"
	"runtime"
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

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

// answer is the lookup-time form of a (record, address class) pair:
// exactly one 64-byte cache line, with the country code as an index into a
// small, always-hot table of the database's country strings. It holds no
// pointer: city and organisation are spans of one string holding all of
// them (DB.strs), so the answers can live in the DB's huge-page memory
// outside the Go heap (see offheap.go), and a lookup still reads one line.
// Only PUBLIC answers carry data; raw is the answer with the same record as
// PUBLIC (for lookupRaw).
type answer struct {
	lat, lon  float64
	city, org strRef
	asn       uint32
	raw       uint32
	country   uint16
	class     uint8
	_         [21]byte
}

// strRef is a span of DB.strs.
type strRef struct{ off, n uint32 }

// answerKey is a record id with the address class of its range.
type answerKey struct{ rec, class uint32 }

// answerSet interns answer keys; id 0 is the empty record with class
// UNSPECIFIED (what an invalid address gets).
type answerSet struct {
	ids  map[answerKey]uint32
	list []answerKey
}

func newAnswerSet() *answerSet {
	return &answerSet{ids: map[answerKey]uint32{{}: 0}, list: []answerKey{{}}}
}

func (s *answerSet) id(k answerKey) uint32 {
	if id, ok := s.ids[k]; ok {
		return id
	}
	id := uint32(len(s.list))
	s.ids[k] = id
	s.list = append(s.list, k)
	return id
}

// compact converts interned (record, class) keys into answers, with city
// and organisation texts gathered into one string (each distinct text once).
func compact(recs []record, keys *answerSet) ([]answer, []string, string, error) {
	// Every answer's PUBLIC twin must exist for raw; interning may append.
	for i := 0; i < len(keys.list); i++ {
		keys.id(answerKey{keys.list[i].rec, uint32(flowpb.AddrClass_ADDR_CLASS_PUBLIC)})
	}
	if len(keys.list) > refMask {
		return nil, nil, "", errors.New("too many distinct answers")
	}
	countries := []string{""}
	idx := map[string]uint16{"": 0}
	var strs strings.Builder
	refs := map[string]strRef{"": {}}
	ref := func(s string) (strRef, error) {
		r, ok := refs[s]
		if !ok {
			if strs.Len()+len(s) > math.MaxUint32 {
				return r, errors.New("city and organisation texts exceed 4 GiB")
			}
			r = strRef{uint32(strs.Len()), uint32(len(s))}
			strs.WriteString(s)
			refs[s] = r
		}
		return r, nil
	}
	out := make([]answer, len(keys.list))
	for i, k := range keys.list {
		a := &out[i]
		a.class = uint8(k.class)
		a.raw = keys.ids[answerKey{k.rec, uint32(flowpb.AddrClass_ADDR_CLASS_PUBLIC)}]
		if k.class != uint32(flowpb.AddrClass_ADDR_CLASS_PUBLIC) {
			continue // special space carries no database data
		}
		r := recs[k.rec]
		c, ok := idx[r.country]
		if !ok {
			if len(countries) > 0xffff {
				return nil, nil, "", errors.New("more than 65535 distinct country values; check the country mapping")
			}
			c = uint16(len(countries))
			idx[r.country] = c
			countries = append(countries, r.country)
		}
		var err error
		if a.city, err = ref(r.city); err != nil {
			return nil, nil, "", err
		}
		if a.org, err = ref(r.org); err != nil {
			return nil, nil, "", err
		}
		a.lat, a.lon, a.asn, a.country = r.lat, r.lon, r.asn, c
	}
	return out, countries, strs.String(), nil
}

// str returns the text of span r.
func (db *DB) str(r strRef) string { return db.strs[r.off : r.off+r.n] }

// record rebuilds the record of answer id (for tests and tools).
func (db *DB) record(id uint32) record {
	a := &db.answers[id]
	r := record{country: db.countries[a.country], city: db.str(a.city), org: db.str(a.org), lat: a.lat, lon: a.lon, asn: a.asn}
	runtime.KeepAlive(db) // the answers may be off the Go heap (offheap.go)
	return r
}
