package detect

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// t0 is an hour-aligned base time for constructed records.
var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixNano()

func at(d time.Duration) int64 { return t0 + int64(d) }

type sink struct{ alerts []*flowpb.Alert }

func (s *sink) emit(a *flowpb.Alert) { s.alerts = append(s.alerts, a) }

func (s *sink) by(det string) []*flowpb.Alert {
	var out []*flowpb.Alert
	for _, a := range s.alerts {
		if a.Detector == det {
			out = append(out, a)
		}
	}
	return out
}

var recSeq int

// flow builds an outbound enriched record from device dev to dst at time ts
// (last_seen), lasting 1 s.
func flow(dev string, ts int64, dst string, opts ...func(*flowpb.FlowRecord)) *flowpb.FlowRecord {
	recSeq++
	r := &flowpb.FlowRecord{
		SchemaVersion: schema.Version,
		Id:            "gw1/flow/" + strconv.Itoa(recSeq),
		FirstSeenNs:   ts - int64(time.Second),
		LastSeenNs:    ts,
		Direction:     flowpb.Direction_DIRECTION_OUTBOUND,
		SrcAddr:       schema.AddrBytes(netip.MustParseAddr("10.1.0.2")),
		DstAddr:       schema.AddrBytes(netip.MustParseAddr(dst)),
		SrcPort:       40000,
		DstPort:       443,
		Protocol:      6,
		BytesOut:      1000,
		BytesIn:       5000,
		Enrichment: &flowpb.Enrichment{
			DstGeo: &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PUBLIC, Country: "US", Asn: 15169, Org: "Google"},
			Device: &flowpb.Device{Id: dev, Model: "pixel-7", Group: "lab"},
		},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func geo(cc string, asn uint32, org string) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) {
		r.Enrichment.DstGeo.Country, r.Enrichment.DstGeo.Asn, r.Enrichment.DstGeo.Org = cc, asn, org
	}
}

func group(g string) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) { r.Enrichment.Device.Group = g }
}

func model(m string) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) { r.Enrichment.Device.Model = m }
}

func sni(h string) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) { r.Tls = &flowpb.TLSInfo{Sni: h} }
}

func bytesOut(out, in uint64) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) { r.BytesOut, r.BytesIn = out, in }
}

func dnsQuery(name string) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) {
		r.Dns = &flowpb.DNSInfo{QueryName: name, QueryType: 1}
		r.Protocol, r.DstPort = 17, 53
		r.Enrichment.DstGeo = &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PRIVATE}
	}
}

func match(typ, form, field string, clear bool) func(*flowpb.FlowRecord) {
	return func(r *flowpb.FlowRecord) {
		r.Enrichment.Matches = append(r.Enrichment.Matches, &flowpb.IdentifierMatch{
			DeviceId: r.Enrichment.Device.Id, IdentifierType: typ, Form: form, Field: field, Cleartext: clear,
		})
		r.Enrichment.Cleartext = clear
	}
}

// quiet returns the default config with every detector off, so a test
// enables only the one under test.
func quiet() Config {
	c := DefaultConfig()
	c.IdentifierLeak.Enabled = false
	c.Cleartext.Enabled = false
	c.Policy.Enabled = false
	c.Volume.Enabled = false
	c.Beacon.Enabled = false
	c.Beacon.LongConnEnabled = false
	c.Beacon.StrobeEnabled = false
	c.DNS.Enabled = false
	c.FirstSeen.Enabled = false
	return c
}

func newEngine(t testing.TB, c Config) *Engine {
	t.Helper()
	e, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func evidence(a *flowpb.Alert, key string) string {
	for _, e := range a.Evidence {
		if e.Key == key {
			return e.Value
		}
	}
	return ""
}
