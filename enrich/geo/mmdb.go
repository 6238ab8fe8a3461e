package geo

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Record layouts. GeoIP2 is MaxMind's nested one (also used by DB-IP and
// ip-location-db's GeoLite2-compatible files); flat covers IPinfo and
// ip-location-db's own files (country_code, city, latitude, asn, as_name...).
const (
	layoutGeoIP2 = "geoip2"
	layoutFlat   = "flat"
)

// fieldPath is one candidate location of an attribute inside a record.
type fieldPath struct {
	path []any // string map keys and int array indices
	// isoOnly accepts the value only if it looks like an ISO country code:
	// "country" is a code in some flat layouts and a name in others (IPinfo).
	isoOnly bool
}

type fieldPaths struct {
	country, city, lat, lon, asn, org []fieldPath
}

func paths(isoOnly bool, ss ...string) []fieldPath {
	out := make([]fieldPath, 0, len(ss))
	for _, s := range ss {
		var p []any
		for _, part := range strings.Split(s, ".") {
			if n, err := strconv.Atoi(part); err == nil {
				p = append(p, n)
			} else {
				p = append(p, part)
			}
		}
		out = append(out, fieldPath{path: p, isoOnly: isoOnly})
	}
	return out
}

var layouts = map[string]fieldPaths{
	layoutGeoIP2: {
		// registered_country is where the network is registered; used when
		// the database has no physical country for it (e.g. satellite or
		// anycast ranges, and Country databases' sparse entries).
		country: paths(false, "country.iso_code", "registered_country.iso_code"),
		city:    paths(false, "city.names.en"),
		lat:     paths(false, "location.latitude"),
		lon:     paths(false, "location.longitude"),
		asn:     paths(false, "autonomous_system_number"),
		org:     paths(false, "autonomous_system_organization"),
	},
	layoutFlat: {
		country: append(paths(false, "country_code", "country_iso_code"), paths(true, "country")...),
		city:    paths(false, "city", "city_name"),
		lat:     paths(false, "latitude", "lat"),
		lon:     paths(false, "longitude", "lon", "lng"),
		asn:     paths(false, "asn", "autonomous_system_number", "as_number"),
		org:     paths(false, "as_name", "autonomous_system_organization", "as_org", "org", "organization", "name"),
	},
}

// resolvePaths picks the layout (configured or detected) and applies the
// mapping's per-attribute overrides.
func resolvePaths(m Mapping, layout string) fieldPaths {
	fp := layouts[layout]
	over := func(dst *[]fieldPath, ss []string) {
		if len(ss) > 0 {
			*dst = paths(false, ss...)
		}
	}
	over(&fp.country, m.Country)
	over(&fp.city, m.City)
	over(&fp.lat, m.Latitude)
	over(&fp.lon, m.Longitude)
	over(&fp.asn, m.ASN)
	over(&fp.org, m.Org)
	return fp
}

// detectLayout decides between the nested GeoIP2 layout and flat ones from
// the metadata's database_type and the shape of a sample record.
func detectLayout(r *maxminddb.Reader) string {
	dt := r.Metadata.DatabaseType
	switch {
	case strings.HasPrefix(strings.ToLower(dt), "ipinfo"):
		return layoutFlat
	case strings.HasPrefix(dt, "GeoIP2-"), strings.HasPrefix(dt, "GeoLite2-"), strings.HasPrefix(dt, "DBIP-"):
		return layoutGeoIP2 // MaxMind's own types and DB-IP's compatible ones
	}
	// Otherwise look at a few records: nested maps under the GeoIP2 keys or
	// the GeoIP2 ASN keys mean GeoIP2; anything else is flat.
	seen := 0
	for res := range r.Networks() {
		var rec map[string]any
		if res.Decode(&rec) != nil {
			break
		}
		for _, k := range []string{"country", "registered_country", "city", "location", "continent"} {
			if _, ok := rec[k].(map[string]any); ok {
				return layoutGeoIP2
			}
		}
		if _, ok := rec["autonomous_system_number"]; ok {
			return layoutGeoIP2
		}
		if seen++; seen == 16 {
			break
		}
	}
	return layoutFlat
}

// source is one loaded file: disjoint sorted spans per family, pointing into
// recs (source-local ids; recs[0] is the empty record).
type source struct {
	v4, v6 []span
	recs   []record
	layout string
}

// loadMMDB walks every network of an in-memory MMDB file. Each distinct data
// record is decoded once (networks sharing a record share its offset).
func loadMMDB(data []byte, m Mapping, verify bool, in *interner) (*source, error) {
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if verify {
		if err := r.Verify(); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	layout := m.Layout
	if layout == "" || layout == "auto" {
		layout = detectLayout(r)
	}
	fp := resolvePaths(m, layout)
	src := &source{layout: layout}
	local := newInterner()
	local.strs = in.strs
	byOffset := map[uintptr]uint32{}
	for res := range r.Networks(maxminddb.IncludeAliasedNetworks()) {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("walking networks: %w", err)
		}
		off := res.Offset()
		id, ok := byOffset[off]
		if !ok {
			rec, err := extract(res, &fp)
			if err != nil {
				return nil, fmt.Errorf("decoding record of %s: %w", res.Prefix(), err)
			}
			id = local.rec(rec)
			byOffset[off] = id
		}
		if id == 0 {
			continue
		}
		p := res.Prefix()
		switch a := p.Addr(); {
		case a.Is4():
			f, l := prefixSpan(p)
			src.v4 = append(src.v4, span{f, l, id})
			// The IPv4 subtree of an IPv6 database is ::/96 (IPv4-compatible
			// addresses); it is not copied into the IPv6 table: Lookup
			// classifies ::/96 as reserved, lookupRaw maps it to IPv4.
		case a.Is4In6():
			// ::ffff:0:0/96 alias: mapped addresses are unmapped before lookup.
		default:
			f, l := prefixSpan(p)
			src.v6 = append(src.v6, span{f, l, id})
		}
	}
	src.v4 = normalize(src.v4)
	src.v6 = normalize(src.v6)
	src.recs = local.list
	return src, nil
}

// extract reads the mapped attributes of one record.
func extract(res maxminddb.Result, fp *fieldPaths) (record, error) {
	var rec record
	var firstErr error
	get := func(cands []fieldPath, fn func(v any, isoOnly bool) bool) {
		for _, c := range cands {
			var v any
			if err := res.DecodePath(&v, c.path...); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			if v != nil && fn(v, c.isoOnly) {
				return
			}
		}
	}
	get(fp.country, func(v any, isoOnly bool) bool {
		s, ok := v.(string)
		if !ok || s == "" || (isoOnly && !isISO(s)) {
			return false
		}
		rec.country, rec.mask = s, rec.mask|hasCountry
		return true
	})
	get(fp.city, func(v any, _ bool) bool {
		s, ok := v.(string)
		if !ok || s == "" {
			return false
		}
		rec.city, rec.mask = s, rec.mask|hasCity
		return true
	})
	var lat, lon float64
	var haveLat, haveLon bool
	get(fp.lat, func(v any, _ bool) bool { lat, haveLat = toFloat(v); return haveLat })
	get(fp.lon, func(v any, _ bool) bool { lon, haveLon = toFloat(v); return haveLon })
	if haveLat && haveLon {
		rec.lat, rec.lon, rec.mask = lat, lon, rec.mask|hasLocation
	}
	get(fp.asn, func(v any, _ bool) bool {
		n, ok := toASN(v)
		if !ok || n == 0 {
			return false
		}
		rec.asn, rec.mask = n, rec.mask|hasASN
		return true
	})
	get(fp.org, func(v any, _ bool) bool {
		s, ok := v.(string)
		if !ok || s == "" {
			return false
		}
		rec.org, rec.mask = s, rec.mask|hasOrg
		return true
	})
	if rec.mask == 0 && firstErr != nil {
		return rec, firstErr
	}
	return rec, nil
}

func isISO(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint16:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	return 0, false
}

// toASN accepts AS numbers stored as any integer type or as "AS123"/"123".
func toASN(v any) (uint32, bool) {
	var n uint64
	switch x := v.(type) {
	case uint64:
		n = x
	case uint32:
		n = uint64(x)
	case uint16:
		n = uint64(x)
	case int:
		if x < 0 {
			return 0, false
		}
		n = uint64(x)
	case int32:
		if x < 0 {
			return 0, false
		}
		n = uint64(x)
	case int64:
		if x < 0 {
			return 0, false
		}
		n = uint64(x)
	case string:
		return parseASN(x)
	default:
		return 0, false
	}
	if n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

func parseASN(s string) (uint32, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 2 && (s[0] == 'A' || s[0] == 'a') && (s[1] == 'S' || s[1] == 's') {
		s = s[2:]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}
