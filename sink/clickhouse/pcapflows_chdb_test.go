package clickhouse

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/collector/parse"
	"github.com/exfilwatch/exfilwatch/enrich"
	"github.com/exfilwatch/exfilwatch/enrich/geo"
	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/enrich/inventory"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// pcapFlows runs a few real captures from shared/testdata (IPv4 and IPv6;
// DNS, HTTP, TLS, QUIC) through the collector, the payload parsers and
// GeoIP enrichment, as the pipeline does before the sink, and returns the
// records.
func pcapFlows(t *testing.T) []*flowpb.FlowRecord {
	t.Helper()
	shared := testenv.SharedTestdata(t)
	g := geo.DefaultConfig()
	g.Databases = []string{filepath.Join(shared, "geoip", "real", "iptoasn-country.mmdb")}
	g.ReloadInterval = 0
	e, err := enrich.New(g, inventory.Config{}, ident.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	var out []*flowpb.FlowRecord
	for _, name := range []string{"sv-community-id-ipv6.pcap", "sv-http-post-file.pcap", "sv-ja4-tls.pcap",
		"zeek-quic-chromium-api-cirrus-com.pcap", "sv-dns-udp-txt.pcap", "zeek-http-putty-upload.pcap"} {
		f, err := os.Open(filepath.Join(shared, "pcap", name))
		if err != nil {
			t.Fatal(err)
		}
		cfg := collector.DefaultConfig()
		// The captures' client sides stand for the lab, so their flows are
		// outbound as the queries expect (192.168.56.101 talks TLS without
		// SNI: a destination known by its address only).
		cfg.LabSubnets = []string{"10.0.0.0/8", "192.168.56.1/32", "2600:1f13::/32", "82.239.54.0/24"}
		_, err = collector.ReadPcap(context.Background(), f, cfg, func(r *flowpb.FlowRecord) error {
			w.Enrich(r)
			out = append(out, proto.Clone(r).(*flowpb.FlowRecord))
			return nil
		}, collector.WithParse(parse.Fill))
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if len(out) < 10 {
		t.Fatalf("captures gave %d flow records", len(out))
	}
	return out
}
