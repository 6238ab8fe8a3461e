package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

var dbSeq atomic.Int64

// testConfig points at the dev-stack server with a database unique to this
// test, dropped when the test ends.
func testConfig(t testing.TB) Config {
	t.Helper()
	addr := testenv.ClickHouse(t)
	cfg := DefaultConfig()
	cfg.Addr = addr
	cfg.Compression = "none"
	cfg.Database = fmt.Sprintf("exfw_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, dbSeq.Add(1))
	cfg.RetryInitial = 20 * time.Millisecond
	cfg.RetryMax = 300 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := Connect(ctx, cfg)
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database); err != nil {
			t.Logf("cleanup: drop %s: %v", cfg.Database, err)
		}
	})
	return cfg
}

func openWriter(t testing.TB, cfg Config) *Writer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

var baseNs = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC).UnixNano()

func addr(s string) []byte { return schema.AddrBytes(netip.MustParseAddr(s)) }

// sampleFlow builds a fully populated record; i varies every field.
func sampleFlow(i int) *flowpb.FlowRecord {
	devs := []string{"pixel-7a-01", "galaxy-s21-02", "redmi-1s-03"}
	models := []string{"Pixel 7a", "Galaxy S21", "Redmi 1S"}
	dev := i % len(devs)
	first := baseNs + int64(i)*1_000_000_123
	r := &flowpb.FlowRecord{
		SchemaVersion: schema.Version,
		Id:            fmt.Sprintf("gw1/1:flow%06d/%d", i, first),
		ObservedNs:    first + 5e9 + 7,
		FirstSeenNs:   first,
		LastSeenNs:    first + 3e9 + 11,
		Gateway:       "gw1",
		Interfaces:    []string{"wlan0", fmt.Sprintf("eth%d", i%2)},
		Direction:     flowpb.Direction(1 + i%4),
		SrcAddr:       addr(fmt.Sprintf("10.1.0.%d", 10+dev)),
		DstAddr:       addr(fmt.Sprintf("203.0.113.%d", i%250+1)),
		SrcPort:       uint32(40000 + i%20000),
		DstPort:       443,
		Protocol:      6,
		IpVersion:     4,
		BytesOut:      uint64(1000 + i*13),
		PacketsOut:    uint64(10 + i%7),
		BytesIn:       uint64(5000 + i*17),
		PacketsIn:     uint64(12 + i%5),
		TcpFlagsOut:   0x1b,
		TcpFlagsIn:    0x12 | uint32(i%2)<<8,
		SrcMac:        []byte{0x02, 0, 0, 0, 0, byte(dev)},
		CommunityId:   fmt.Sprintf("1:abc%dxyz=", i),
		EndReason:     flowpb.EndReason(1 + i%7),
		Fragments:     uint32(i % 3),
		Dns:           &flowpb.DNSInfo{QueryName: fmt.Sprintf("h%d.example.org", i%5), QueryType: 1, Rcode: uint32(i % 4)},
		Tls:           &flowpb.TLSInfo{Sni: fmt.Sprintf("api%d.tracker.example", i%5), Alpn: []string{"h2", "http/1.1"}, Version: 0x0304, Quic: i%3 == 0},
		Http: &flowpb.HTTPInfo{Method: "POST", Host: "upload.example.net", Path: fmt.Sprintf("/v1/collect?id=%d", i),
			UserAgent: "okhttp/4.12", ContentType: "application/json"},
		Enrichment: &flowpb.Enrichment{
			DstGeo: &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PUBLIC, Country: []string{"US", "CN", "DE"}[i%3],
				City: "Somewhere", Asn: uint32(64500 + i%3), Org: "Example Org"},
			Device:    &flowpb.Device{Id: devs[dev], Model: models[dev], Group: "lab-a", OsVersion: "14", AttributedBy: "mac"},
			Cleartext: i%2 == 0,
		},
	}
	if i%4 == 0 {
		r.DstAddr = addr(fmt.Sprintf("2001:db8::%x:%x", (i+1)>>16, (i+1)&0xffff))
		r.IpVersion = 6
	}
	if i%3 == 0 {
		r.Enrichment.Matches = []*flowpb.IdentifierMatch{
			{DeviceId: devs[dev], IdentifierType: "imei", Form: "sha1-hex-upper", Field: "http.path", Offset: 17, Cleartext: true, Layers: 1},
			{DeviceId: devs[(dev+1)%3], IdentifierType: "wifi_mac", Form: "raw", Field: "http.header.x-mac", Offset: 0, Layers: 0},
			{DeviceId: devs[dev], IdentifierType: "imei", Form: "raw", Field: "tls.sni", Offset: 3, Layers: 2},
		}
	}
	return r
}

func sampleAlert(i int) *flowpb.Alert {
	w := baseNs + int64(i%5)*3600e9
	return &flowpb.Alert{
		SchemaVersion: schema.Version,
		Id:            fmt.Sprintf("alert-%04d", i),
		DedupKey:      fmt.Sprintf("pixel/imei/sha1/%d", i),
		Detector:      []string{"identifier", "volume", "beacon"}[i%3],
		Severity:      flowpb.Severity(1 + i%5),
		DeviceId:      "pixel-7a-01",
		DeviceModel:   "Pixel 7a",
		DeviceGroup:   "lab-a",
		Summary:       fmt.Sprintf("IMEI (sha1) sent to tracker %d", i),
		Evidence:      []*flowpb.Evidence{{Key: "form", Value: "sha1-hex-upper"}, {Key: "field", Value: "http.path"}},
		FirstSeenNs:   w + 1,
		LastSeenNs:    w + 99e9,
		Count:         uint64(i + 1),
		WindowStartNs: w,
		Destination:   &flowpb.Destination{Addr: addr("198.51.100.7"), Port: 443, Host: "t.example", Country: "CN", Asn: 64511, Org: "Tracker Inc"},
		FlowIds:       []string{fmt.Sprintf("f%d", i), fmt.Sprintf("g%d", i)},
		Bytes:         uint64(i * 1000),
		Score:         0.5 + float64(i)/1000,
		CreatedNs:     w + 100e9,
	}
}

// setupExec runs a test's own setup statement on w's pool, retrying a
// connection-level failure (not a server exception) twice: the sink's own
// writes retry such failures, and these tests are not about them. (The one
// seen in CI, a pooled connection closed right after Open, was
// clickhouse-go's Send watchdog racing a cancelled context; sendBlock now
// detaches its context, see TestSendBlockDetachesContext.)
func setupExec(t testing.TB, ctx context.Context, w *Writer, q string) {
	t.Helper()
	var err error
	for range 3 {
		if err = w.Conn().Exec(ctx, q); err == nil {
			return
		}
		var ex *ch.Exception
		if errors.As(err, &ex) {
			break
		}
		t.Logf("setup %q: %v (retrying)", q, err)
	}
	t.Fatalf("setup %q: %v", q, err)
}
