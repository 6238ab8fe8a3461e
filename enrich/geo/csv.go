package geo

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// defaultCSVColumns is the ip-location-db / DB-IP IP-to-ASN layout.
var defaultCSVColumns = []string{"first_ip", "last_ip", "asn", "org"}

// loadCSV reads a range file: one line per range, first and last address
// inclusive, optionally gzipped (detected from the magic bytes) and with an
// optional header line. Overlapping ranges are resolved as in normalize.
func loadCSV(data []byte, m Mapping, in *interner) (*source, error) {
	var r io.Reader = bytes.NewReader(data)
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		r = zr
	}
	cols := m.CSVColumns
	if len(cols) == 0 {
		cols = defaultCSVColumns
	}
	col := func(name string) int { return slices.Index(cols, name) }
	iFirst, iLast := col("first_ip"), col("last_ip")
	iASN, iOrg, iCountry, iCity, iLat, iLon := col("asn"), col("org"), col("country"), col("city"), col("latitude"), col("longitude")
	if iFirst < 0 || iLast < 0 {
		return nil, errors.New("csv_columns must name first_ip and last_ip")
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	local := newInterner()
	local.strs = in.strs
	src := &source{layout: "csv"}
	field := func(rec []string, i int) string {
		if i < 0 || i >= len(rec) {
			return ""
		}
		return rec[i]
	}
	for line := 1; ; line++ {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(row) <= max(iFirst, iLast) {
			return nil, fmt.Errorf("line %d: %d fields, want at least %d", line, len(row), max(iFirst, iLast)+1)
		}
		first, err1 := netip.ParseAddr(strings.TrimSpace(row[iFirst]))
		last, err2 := netip.ParseAddr(strings.TrimSpace(row[iLast]))
		if err1 != nil || err2 != nil {
			if line == 1 {
				continue // header
			}
			return nil, fmt.Errorf("line %d: bad address range %q-%q", line, row[iFirst], row[iLast])
		}
		first, last = first.Unmap(), last.Unmap()
		if first.Is4() != last.Is4() || last.Less(first) {
			return nil, fmt.Errorf("line %d: bad address range %s-%s", line, first, last)
		}
		var rec record
		if s := strings.TrimSpace(field(row, iASN)); s != "" {
			n, ok := parseASN(s)
			if !ok {
				return nil, fmt.Errorf("line %d: bad AS number %q", line, s)
			}
			if n != 0 {
				rec.asn, rec.mask = n, rec.mask|hasASN
			}
		}
		if s := field(row, iOrg); s != "" {
			rec.org, rec.mask = s, rec.mask|hasOrg
		}
		if s := strings.TrimSpace(field(row, iCountry)); s != "" {
			rec.country, rec.mask = s, rec.mask|hasCountry
		}
		if s := field(row, iCity); s != "" {
			rec.city, rec.mask = s, rec.mask|hasCity
		}
		if ls, os := field(row, iLat), field(row, iLon); ls != "" && os != "" {
			lat, e1 := strconv.ParseFloat(strings.TrimSpace(ls), 64)
			lon, e2 := strconv.ParseFloat(strings.TrimSpace(os), 64)
			if e1 != nil || e2 != nil {
				return nil, fmt.Errorf("line %d: bad coordinates %q,%q", line, ls, os)
			}
			rec.lat, rec.lon, rec.mask = lat, lon, rec.mask|hasLocation
		}
		id := local.rec(rec)
		if id == 0 {
			continue
		}
		s := span{addrU128(first), addrU128(last), id}
		if first.Is4() {
			src.v4 = append(src.v4, s)
		} else {
			src.v6 = append(src.v6, s)
		}
	}
	src.v4 = normalize(src.v4)
	src.v6 = normalize(src.v6)
	src.recs = local.list
	return src, nil
}
