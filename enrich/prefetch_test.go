package enrich

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestPrefetchEqualsEnrich: records enriched after Worker.Prefetch (in the
// prefetched order, out of it, and with records left out of the group) get
// exactly the enrichment of records enriched one by one, for IPv4, IPv6,
// IPv4-mapped, lab and unparsable addresses.
func TestPrefetchEqualsEnrich(t *testing.T) {
	fx := newFixture(t, 20)
	rng := rand.New(rand.NewPCG(3, 9))
	dsts := []string{"36.110.10.10", "8.8.8.8", "142.250.74.36", "2001:4860:4860::8888", "2400:cb00::1",
		"::ffff:157.240.1.35", "10.20.0.9", "fe80::1", "2a03:2880:f10c:83:face:b00c:0:25de"}
	var recs []*flowpb.FlowRecord
	for i := 0; i < 300; i++ {
		d := fx.lab.Devices[rng.IntN(len(fx.lab.Devices))]
		r := record(d, dsts[rng.IntN(len(dsts))], "")
		if i%37 == 5 {
			r.DstAddr = []byte{1, 2, 3} // not an address: no GeoIP
		}
		if i%3 == 0 {
			var a [16]byte
			a[0] = 0x20 | byte(rng.IntN(2))
			for j := 1; j < 16; j++ {
				a[j] = byte(rng.Uint32())
			}
			r.DstAddr = netip.AddrFrom16(a).AsSlice()
		}
		recs = append(recs, r)
	}
	clone := func() []*flowpb.FlowRecord {
		out := make([]*flowpb.FlowRecord, len(recs))
		for i, r := range recs {
			out[i] = proto.Clone(r).(*flowpb.FlowRecord)
		}
		return out
	}
	want := clone()
	one := fx.e.NewWorker()
	for _, r := range want {
		one.Enrich(r)
	}
	for _, mode := range []string{"in order", "swapped pairs", "every other prefetched"} {
		got := clone()
		w := fx.e.NewWorker()
		for g := 0; g < len(got); g += 16 {
			grp := got[g:min(g+16, len(got))]
			switch mode {
			case "in order":
				w.Prefetch(grp)
				for _, r := range grp {
					w.Enrich(r)
				}
			case "swapped pairs":
				w.Prefetch(grp)
				for k := 0; k+1 < len(grp); k += 2 {
					w.Enrich(grp[k+1])
					w.Enrich(grp[k])
				}
				if len(grp)%2 == 1 {
					w.Enrich(grp[len(grp)-1])
				}
			case "every other prefetched":
				var half []*flowpb.FlowRecord
				for k := 0; k < len(grp); k += 2 {
					half = append(half, grp[k])
				}
				w.Prefetch(half)
				for _, r := range grp {
					w.Enrich(r)
				}
			}
		}
		for i := range got {
			a, b := got[i].Enrichment, want[i].Enrichment
			a.EnrichedNs, b.EnrichedNs = 0, 0
			if !proto.Equal(a, b) {
				t.Fatalf("%s: record %d (dst %x):\nprefetched %v\none by one %v", mode, i, recs[i].DstAddr, a, b)
			}
		}
	}
}
