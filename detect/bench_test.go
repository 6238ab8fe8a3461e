package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// benchMix builds a realistic record mix: devices phones across 20 models
// and 5 groups, each talking to ~30 of 5,000 public destinations (30
// countries, 500 ASNs, 2,000 SNI names) plus DNS queries for 3,000 names under
// 500 domains: 70 % TLS, 10 % plain HTTP, 20 % DNS. No identifier matches.
func benchMix(devices, n int) []*flowpb.FlowRecord {
	r := rand.New(rand.NewPCG(7, 11))
	countries := []string{"US", "DE", "NL", "IE", "GB", "FR", "SG", "JP", "IN", "BR", "CA", "AU", "SE", "FI", "PL",
		"ES", "IT", "KR", "HK", "TW", "ZA", "MX", "AR", "CH", "AT", "BE", "DK", "NO", "CZ", "IL"}
	type dest struct {
		addr []byte
		geo  *flowpb.Geo
		sni  string
	}
	dests := make([]dest, 5000)
	for i := range dests {
		a := netip.AddrFrom4([4]byte{byte(20 + i/65536), byte(i / 256), byte(i), 10})
		asn := uint32(1000 + r.IntN(500))
		dests[i] = dest{
			addr: schema.AddrBytes(a),
			geo: &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PUBLIC, Country: countries[r.IntN(len(countries))],
				Asn: asn, Org: fmt.Sprintf("Org %d", asn)},
			sni: fmt.Sprintf("svc%d.cdn%d.example.com", i%2000, i%97),
		}
	}
	names := make([]string, 3000)
	for i := range names {
		names[i] = fmt.Sprintf("host%d.domain%d.example.net", i, i%500)
	}
	resolver := schema.AddrBytes(netip.MustParseAddr("10.0.0.53"))
	resolverGeo := &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PRIVATE}
	devs := make([]*flowpb.Device, devices)
	favs := make([][]int, devices)
	for i := range devs {
		devs[i] = &flowpb.Device{Id: fmt.Sprintf("phone-%05d", i), Model: fmt.Sprintf("model-%d", i%20), Group: fmt.Sprintf("group-%d", i%5)}
		favs[i] = make([]int, 30)
		for j := range favs[i] {
			favs[i][j] = r.IntN(len(dests))
		}
	}
	recs := make([]*flowpb.FlowRecord, n)
	for i := range recs {
		dv := r.IntN(devices)
		rec := &flowpb.FlowRecord{
			SchemaVersion: 1,
			Id:            fmt.Sprintf("gw/%d", i),
			Direction:     flowpb.Direction_DIRECTION_OUTBOUND,
			SrcAddr:       schema.AddrBytes(netip.AddrFrom4([4]byte{10, 1, byte(dv >> 8), byte(dv)})),
			SrcPort:       uint32(30000 + r.IntN(30000)),
			Protocol:      6,
			IpVersion:     4,
			BytesOut:      uint64(200 + r.IntN(20000)),
			BytesIn:       uint64(1000 + r.IntN(200000)),
			Enrichment:    &flowpb.Enrichment{Device: devs[dv]},
		}
		switch p := r.IntN(10); {
		case p < 2:
			rec.Protocol, rec.DstPort, rec.DstAddr = 17, 53, resolver
			rec.Dns = &flowpb.DNSInfo{QueryName: names[r.IntN(len(names))], QueryType: 1}
			rec.Enrichment.DstGeo = resolverGeo
		default:
			d := dests[favs[dv][r.IntN(30)]]
			rec.DstAddr, rec.DstPort, rec.Enrichment.DstGeo = d.addr, 443, d.geo
			if p < 9 {
				rec.Tls = &flowpb.TLSInfo{Sni: d.sni}
			} else {
				rec.DstPort = 80
				rec.Http = &flowpb.HTTPInfo{Method: "GET", Host: d.sni, Path: "/"}
			}
		}
		recs[i] = rec
	}
	return recs
}

// BenchmarkProcess measures records/s with every detector enabled over the
// mix for 10,000 devices. One op is one record.
func BenchmarkProcess(b *testing.B) {
	c := DefaultConfig()
	c.Policy.Groups = map[string]GroupPolicy{"group-1": {DenyCountries: []string{"KP"}}}
	e, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	recs := benchMix(10_000, 1<<17)
	var alerts int
	emit := func(*flowpb.Alert) { alerts++ }
	now := t0
	step := int64(time.Millisecond)
	feed := func(r *flowpb.FlowRecord) {
		now += step
		r.FirstSeenNs, r.LastSeenNs = now-int64(50*time.Millisecond), now
		e.Process(r, emit)
	}
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	for pass := 0; pass < 3; pass++ { // build state and grow rings/maps
		for _, r := range recs {
			feed(r)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	alerts = 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		feed(recs[i&(len(recs)-1)])
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/record")
	b.ReportMetric(float64(alerts), "alerts")
	b.ReportMetric(float64(e.StateBytes())/float64(e.DeviceCount()), "state-B/device")
	b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/float64(e.DeviceCount()), "heap-B/device")
}

// BenchmarkProcessBaseline is the floor for comparison: the same loop over
// the same records with every detector disabled (device lookup only).
func BenchmarkProcessBaseline(b *testing.B) {
	e, err := New(quiet())
	if err != nil {
		b.Fatal(err)
	}
	recs := benchMix(10_000, 1<<17)
	emit := func(*flowpb.Alert) {}
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		r := recs[i&(len(recs)-1)]
		now += int64(time.Millisecond)
		r.FirstSeenNs, r.LastSeenNs = now-int64(50*time.Millisecond), now
		e.Process(r, emit)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/record")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// cpuTime is the process's user+system CPU time in ns. On a shared machine
// wall-clock ns/op include time spent waiting for a core; CPU time per record
// (which includes GC work) is the figure that transfers.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkBeaconScore measures one RITA rescoring of a full pair.
func BenchmarkBeaconScore(b *testing.B) {
	e, _ := New(DefaultConfig())
	p := &pair{}
	for i := 0; i < e.cfg.Beacon.MaxTimestamps; i++ {
		p.ring = append(p.ring, conn{uint32(t0/int64(time.Second)) + uint32(i*300), uint32(400 + i%7)})
	}
	now := t0 + int64(e.cfg.Beacon.MaxTimestamps*300)*int64(time.Second)
	e.dataMin = t0
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.scoreBeacon(p, now, 0)
	}
}
