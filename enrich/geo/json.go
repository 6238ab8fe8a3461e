package geo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"google.golang.org/protobuf/encoding/protojson"
)

// LookupJSON prints, for each IP, one JSON line with the ip and what the
// pipeline would attach (flowpb.Geo in protojson with proto field names),
// e.g. {"ip":"8.8.8.8","addr_class":"ADDR_CLASS_PUBLIC","country":"US",...}.
// All IPs are parsed before anything is printed; a bad one is an error
// naming it. It backs the `exfilwatch geo --db FILE IP...` subcommand.
func LookupJSON(w io.Writer, db *DB, ips []string) error {
	addrs := make([]netip.Addr, len(ips))
	for i, s := range ips {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("geo: bad IP address %q: %w", s, err)
		}
		addrs[i] = a
	}
	mo := protojson.MarshalOptions{UseProtoNames: true}
	var g flowpb.Geo
	var buf bytes.Buffer
	for i, a := range addrs {
		db.Lookup(a, &g)
		body, err := mo.Marshal(&g)
		if err != nil {
			return fmt.Errorf("geo: encoding %s: %w", ips[i], err)
		}
		buf.Reset()
		// protojson's whitespace is deliberately unstable; compact it.
		if err := json.Compact(&buf, body); err != nil {
			return fmt.Errorf("geo: encoding %s: %w", ips[i], err)
		}
		ip, _ := json.Marshal(a.String())
		line := make([]byte, 0, buf.Len()+len(ip)+8)
		line = append(line, `{"ip":`...)
		line = append(line, ip...)
		if rest := buf.Bytes()[1:]; len(rest) > 1 { // skip '{'; "}" alone means empty
			line = append(line, ',')
			line = append(line, rest...)
		} else {
			line = append(line, '}')
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("geo: writing output: %w", err)
		}
	}
	return nil
}
