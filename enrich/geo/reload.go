package geo

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Reloader keeps a DB in service and replaces it when a database file
// changes. Lookups go through an atomic pointer, so a swap never blocks or
// tears them; the old DB is simply left to the garbage collector (it holds
// no file handles or mappings). A file that fails to load (missing,
// truncated, corrupt, or caught mid-write) leaves the previous DB in service;
// it is retried when its size or mtime changes again.
type Reloader struct {
	cfg    Config
	log    *slog.Logger
	cur    atomic.Pointer[DB]
	mu     sync.Mutex // serialises Check
	stamps []stamp
}

// stamp is what polling compares: cheap, and any rewrite changes it.
type stamp struct {
	size    int64
	modTime time.Time
	err     bool
}

func statAll(paths []string) []stamp {
	out := make([]stamp, len(paths))
	for i, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			out[i] = stamp{err: true}
			continue
		}
		out[i] = stamp{size: st.Size(), modTime: st.ModTime()}
	}
	return out
}

// NewReloader opens the databases once; a missing or corrupt file is an
// error (one line, naming the file). log may be nil.
func NewReloader(cfg Config, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{cfg: cfg, log: log.With("component", "geo")}
	// Stat before reading: a change made during the load is seen next poll.
	r.stamps = statAll(cfg.Databases)
	db, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	r.cur.Store(db)
	st := db.Stats()
	r.log.Info("geoip databases loaded", "files", len(st.Files), "ranges_ipv4", st.Ranges4, "ranges_ipv6", st.Ranges6, "records", st.Records)
	return r, nil
}

// DB returns the database currently in service.
func (r *Reloader) DB() *DB { return r.cur.Load() }

// Lookup is DB().Lookup.
func (r *Reloader) Lookup(addr netip.Addr, out *flowpb.Geo) { r.cur.Load().Lookup(addr, out) }

// LookupPair is DB().LookupPair: both endpoints see the same DB.
func (r *Reloader) LookupPair(src, dst netip.Addr, srcOut, dstOut *flowpb.Geo) {
	r.cur.Load().LookupPair(src, dst, srcOut, dstOut)
}

// LookupPairTallied is DB().LookupPairTallied.
func (r *Reloader) LookupPairTallied(src, dst netip.Addr, srcOut, dstOut *flowpb.Geo, t *Tally) {
	r.cur.Load().LookupPairTallied(src, dst, srcOut, dstOut, t)
}

// LookupBatch is DB().LookupBatch: the whole batch sees the same DB.
func (r *Reloader) LookupBatch(addrs []netip.Addr, outs []*flowpb.Geo, t *Tally) {
	r.cur.Load().LookupBatch(addrs, outs, t)
}

// Check polls the files once and reloads if any changed. It reports whether
// a new DB was swapped in; a load error is logged, counted and returned.
func (r *Reloader) Check() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := statAll(r.cfg.Databases)
	changed := false
	for i := range now {
		if now[i] != r.stamps[i] {
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	r.stamps = now
	start := time.Now()
	db, err := Open(r.cfg)
	if err != nil {
		reloadFailures.Inc()
		r.log.Error("geoip reload failed; previous database stays in service", "err", err)
		return false, err
	}
	r.cur.Store(db)
	reloads.Inc()
	st := db.Stats()
	r.log.Info("geoip databases reloaded", "seconds", time.Since(start).Seconds(), "ranges_ipv4", st.Ranges4, "ranges_ipv6", st.Ranges6, "records", st.Records)
	return true, nil
}

// Run polls every cfg.ReloadInterval until ctx is done. With a zero interval
// it only waits for ctx.
func (r *Reloader) Run(ctx context.Context) error {
	if r.cfg.ReloadInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-t.C:
			_, _ = r.Check() // already logged and counted
		}
	}
}
