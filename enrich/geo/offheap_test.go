package geo

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestOffHeapReleased: a DB's mapping is unmapped once the DB is
// unreachable (none leaks across reloads), and not while it is in use.
func TestOffHeapReleased(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.csv")
	writeFile(t, path, "1.0.0.0,1.0.0.255,13335,Cloudflare\n2606:4700::,2606:4700::ffff,13335,Cloudflare\n")
	// Earlier tests' unreachable DBs are unmapped by cleanups that run
	// asynchronously: wait until none is pending, or one landing between
	// the two reads below would look like one of ours released early.
	base := offHeapLive.Load()
	for stable := 0; stable < 3; {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if now := offHeapLive.Load(); now != base {
			base, stable = now, 0
		} else {
			stable++
		}
	}
	var dbs []*DB
	for range 20 {
		db := openFiles(t, path)
		if db.Stats().OffHeap == 0 {
			if runtime.GOOS == "linux" {
				t.Fatal("the DB was not copied into an anonymous mapping on Linux")
			}
			t.Skip("anonymous mmap unavailable on " + runtime.GOOS + ": the DB stays on the Go heap")
		}
		dbs = append(dbs, db)
	}
	held := offHeapLive.Load() - base
	if held < int64(20*hugePage) {
		t.Fatalf("20 DBs hold %d bytes off the heap, want >= %d", held, 20*hugePage)
	}
	// Still usable after GCs while referenced.
	for range 3 {
		runtime.GC()
	}
	for _, db := range dbs {
		if g := lookup(db, "2606:4700::1"); g.Asn != 13335 || g.Org != "Cloudflare" {
			t.Fatalf("after GC: %v", g)
		}
	}
	if got := offHeapLive.Load() - base; got != held {
		t.Fatalf("mappings released while referenced: %d -> %d", held, got)
	}
	dbs = nil
	deadline := time.Now().Add(10 * time.Second)
	for offHeapLive.Load() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still mapped after the DBs became unreachable", offHeapLive.Load()-base)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// TestOffHeapReloadUnderGC: lookups of every kind through a Reloader while
// it swaps DBs and the GC runs continuously, so that a swapped-out DB is
// collected (and its mapping unmapped) as soon as nothing uses it. A lookup
// still walking an unmapped DB would crash the test binary; one reading a
// DB's arrays without keeping the DB alive would do so sooner or later.
func TestOffHeapReloadUnderGC(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "asn.csv")
	write := func(v int) {
		var b strings.Builder
		for i := range 200 + v { // the size changes with every version
			fmt.Fprintf(&b, "%d.%d.0.0,%d.%d.255.255,%d,org%d\n", 1+i/250, i%250, 1+i/250, i%250, 1000*v+i, v)
			fmt.Fprintf(&b, "2a%02x:%x::,2a%02x:%x:ffff::,%d,org%d\n", i%256, i, i%256, i, 1000*v+i, v)
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	cfg := DefaultConfig()
	cfg.Databases = []string{path}
	r, err := NewReloader(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad, n atomic.Int64
	addrs := []netip.Addr{netip.MustParseAddr("1.5.0.1"), netip.MustParseAddr("2a05:5::1"),
		netip.MustParseAddr("::ffff:1.7.3.4"), netip.MustParseAddr("2a07:7:1::")}
	check := func(g *flowpb.Geo) {
		// Within one DB an answer's AS number and org agree on the version.
		if g.Asn == 0 || fmt.Sprintf("org%d", g.Asn/1000) != g.Org {
			bad.Add(1)
		}
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tl Tally
			outs := []*flowpb.Geo{{}, {}, {}, {}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch w {
				case 0:
					r.Lookup(addrs[1], outs[0])
					check(outs[0])
				case 1:
					r.LookupPairTallied(addrs[1], addrs[3], outs[0], outs[1], &tl)
					check(outs[0])
					check(outs[1])
				case 2:
					r.LookupBatch(addrs, outs, &tl)
					for _, g := range outs {
						check(g)
					}
				}
				n.Add(1)
			}
		}()
	}
	swaps := 0
	for v := 2; v < 30; v++ {
		write(v)
		ok, err := r.Check()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			swaps++
		}
		runtime.GC()
	}
	if swaps != 28 {
		t.Errorf("%d swaps, want 28", swaps)
	}
	for range 20 {
		runtime.GC()
	}
	close(stop)
	wg.Wait()
	if bad.Load() > 0 || n.Load() == 0 {
		t.Fatalf("%d inconsistent answers in %d lookups", bad.Load(), n.Load())
	}
}
