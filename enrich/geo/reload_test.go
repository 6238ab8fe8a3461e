package geo

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// lockedBuffer is a log sink safe for the reloader goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// countryDB returns the bytes of a database mapping 8.8.8.0/24 to country
// with AS number asn; country and asn always change together, so a reader
// seeing one without the other would have observed a torn swap.
func countryDB(t *testing.T, country string, asn uint32) []byte {
	t.Helper()
	p := writeMMDB(t, "v.mmdb", mmdbwriter.Options{DatabaseType: "test"},
		entry{"8.8.8.0/24", mmdbtype.Map{"country_code": mmdbtype.String(country), "asn": mmdbtype.Uint32(asn)}})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReloaderSwapsAndKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "geo.mmdb")
	versions := map[string]uint32{"US": 1, "DE": 2, "FR": 3, "JP": 4}
	writeFile(t, path, string(countryDB(t, "US", 1)))
	cfg := DefaultConfig()
	cfg.Databases = []string{path}
	cfg.ReloadInterval = 10 * time.Millisecond
	logs := &lockedBuffer{}
	r, err := NewReloader(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}

	// Readers hammer the reloader during every swap below.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var torn atomic.Int64
	var lookups atomic.Int64
	ip := netip.MustParseAddr("8.8.8.8")
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var g flowpb.Geo
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.Lookup(ip, &g)
				if asn, ok := versions[g.Country]; !ok || asn != g.Asn {
					torn.Add(1)
				}
				lookups.Add(1)
			}
		}()
	}
	country := func() string {
		var g flowpb.Geo
		r.Lookup(ip, &g)
		return g.Country
	}
	check := func(step string, wantReload, wantErr bool, wantCountry string) {
		t.Helper()
		ok, err := r.Check()
		if ok != wantReload || (err != nil) != wantErr {
			t.Fatalf("%s: Check() = %v, %v; want reload=%v err=%v", step, ok, err, wantReload, wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error does not name the file: %v", step, err)
		}
		if c := country(); c != wantCountry {
			t.Fatalf("%s: country %q, want %q", step, c, wantCountry)
		}
	}
	reloads0, failures0 := counterValue(t, reloads), counterValue(t, reloadFailures)

	check("unchanged", false, false, "US")
	writeFile(t, path, string(countryDB(t, "DE", 2)))
	check("rewritten in place", true, false, "DE")

	writeFile(t, path, "corrupt: not a MaxMind DB at all")
	check("corrupt", false, true, "DE")
	check("corrupt, unchanged since", false, false, "DE")

	fr := countryDB(t, "FR", 3)
	writeFile(t, path, string(fr[:len(fr)*2/3]))
	check("truncated", false, true, "DE")

	// Replace by rename, as geoipupdate does.
	tmp := filepath.Join(dir, "geo.mmdb.tmp")
	writeFile(t, tmp, string(fr))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	check("renamed over", true, false, "FR")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	check("removed", false, true, "FR")

	if got := counterValue(t, reloads) - reloads0; got != 2 {
		t.Errorf("reloads metric grew by %v, want 2", got)
	}
	if got := counterValue(t, reloadFailures) - failures0; got != 3 {
		t.Errorf("reload failures metric grew by %v, want 3", got)
	}
	if l := logs.String(); !strings.Contains(l, "geoip reload failed") || !strings.Contains(l, path) {
		t.Errorf("failure not logged clearly:\n%s", l)
	}

	// The polling loop picks up a new file by itself.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	writeFile(t, path, string(countryDB(t, "JP", 4)))
	deadline := time.Now().Add(20 * time.Second)
	for country() != "JP" {
		if time.Now().After(deadline) {
			t.Fatal("Run did not reload the changed file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	close(stop)
	wg.Wait()
	if n := torn.Load(); n > 0 {
		t.Errorf("%d of %d concurrent lookups saw an inconsistent answer", n, lookups.Load())
	}
	if lookups.Load() == 0 {
		t.Error("no concurrent lookups ran")
	}
}

func TestNewReloaderErrors(t *testing.T) {
	cfg := DefaultConfig()
	missing := filepath.Join(t.TempDir(), "nope.mmdb")
	cfg.Databases = []string{missing}
	if _, err := NewReloader(cfg, nil); err == nil {
		t.Fatal("missing file: no error")
	} else {
		assertOneLineNaming(t, err, missing)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
