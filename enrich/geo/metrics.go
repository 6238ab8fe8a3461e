package geo

import (
	"net/netip"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Lookups are counted in cache-line-padded shards chosen from the address,
// so that goroutines on different cores rarely touch the same line: one
// shared atomic counter would cost more than the lookup itself under
// contention.
type lookupShard struct {
	n atomic.Uint64
	_ [56]byte
}

var lookupShards [16]lookupShard

func countLookup(a netip.Addr) { countLookups(a, 1) }

func countLookups(a netip.Addr, n uint64) {
	b := a.As16() // the last bytes vary most between endpoints
	h := uint32(b[15]) | uint32(b[14])<<8 | uint32(b[13])<<16
	lookupShards[(h*0x9e3779b1)>>28].n.Add(n)
}

func totalLookups() uint64 {
	var t uint64
	for i := range lookupShards {
		t += lookupShards[i].n.Load()
	}
	return t
}

var (
	_ = promauto.NewCounterFunc(prometheus.CounterOpts{
		Name: "exfilwatch_geo_lookups_total",
		Help: "GeoIP lookups (all databases, all classes).",
	}, func() float64 { return float64(totalLookups()) })
	reloads = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_geo_reloads_total",
		Help: "GeoIP database reloads that replaced the database in service.",
	})
	reloadFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_geo_reload_failures_total",
		Help: "GeoIP reloads that failed (missing, truncated or corrupt file); the previous database stays in service.",
	})
	entries = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "exfilwatch_geo_entries",
		Help: "Size of the last loaded GeoIP database: ranges per family (ipv4, ipv6) and distinct records (records).",
	}, []string{"kind"})
	loadSeconds = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "exfilwatch_geo_load_seconds",
		Help: "Time the last successful GeoIP load took (read, walk, merge, flatten).",
	})
)
