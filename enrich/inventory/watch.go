package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Config configures the inventory.
type Config struct {
	Path           string        `yaml:"path" help:"lab inventory YAML file (see deploy/inventory.example.yaml)"`
	DnsmasqLeases  []string      `yaml:"dnsmasq_leases" help:"dnsmasq lease files used to attribute devices without a static IP"`
	DhcpdLeases    []string      `yaml:"dhcpd_leases" help:"ISC dhcpd leases files used to attribute devices without a static IP"`
	ReloadInterval time.Duration `yaml:"reload_interval" help:"how often the inventory and lease files are checked for changes (mtime/size)"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ReloadInterval: 5 * time.Second}
}

// Validate checks the settings; errors start with the key concerned.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: required"))
	} else if _, err := os.Stat(c.Path); err != nil {
		errs = append(errs, fmt.Errorf("path: %w", err))
	}
	if c.ReloadInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("reload_interval: want >= 100ms, got %s", c.ReloadInterval))
	}
	return errors.Join(errs...)
}

// OnLoad receives the identifiers of a newly loaded inventory, typically
// to build a new ident.Index and swap it in. The slice is dropped by the
// Inventory afterwards so no plaintext identifier stays referenced by it.
type OnLoad func(ids []ident.Identifier)

// Inventory is the live inventory: a snapshot and a lease table swapped
// atomically on reload; lookups never block.
type Inventory struct {
	cfg    Config
	log    *slog.Logger
	onLoad OnLoad

	snap   atomic.Pointer[Snapshot]
	leases atomic.Pointer[Leases]

	mu     sync.Mutex // serialises reloads
	stamps map[string]stamp
	now    func() time.Time
}

type stamp struct {
	mod  time.Time
	size int64
}

// New loads the inventory and lease files. An unreadable or unparseable
// inventory is an error; bad entries are logged and skipped.
func New(cfg Config, log *slog.Logger, onLoad OnLoad) (*Inventory, error) {
	if log == nil {
		log = slog.Default()
	}
	inv := &Inventory{cfg: cfg, log: log, onLoad: onLoad, stamps: map[string]stamp{}, now: time.Now}
	if _, err := inv.Reload(); err != nil {
		return nil, err
	}
	return inv, nil
}

// Snapshot returns the current inventory (without plaintext identifiers).
func (inv *Inventory) Snapshot() *Snapshot { return inv.snap.Load() }

// Run polls the files every ReloadInterval until ctx is done.
func (inv *Inventory) Run(ctx context.Context) error {
	t := time.NewTicker(inv.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if _, err := inv.Reload(); err != nil {
				inv.log.Error("inventory reload failed; keeping the previous one", "err", err)
			}
		}
	}
}

// Reload re-reads whichever files changed since the last load (by mtime and
// size). It reports whether anything was swapped in. On error the previous
// state stays in service.
func (inv *Inventory) Reload() (bool, error) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	changed := false
	if inv.changed(inv.cfg.Path) || inv.snap.Load() == nil {
		s, err := Load(inv.cfg.Path)
		if err != nil {
			reloadErrors.Inc()
			return false, err
		}
		for _, p := range s.Problems {
			if p.Warning {
				inv.log.Warn("inventory entry", "problem", p.Error())
			} else {
				inv.log.Error("inventory entry skipped", "problem", p.Error())
			}
		}
		badEntries.Set(float64(len(s.Problems)))
		devicesLoaded.Set(float64(len(s.Devices)))
		if inv.onLoad != nil {
			inv.onLoad(s.Identifiers)
		}
		s.Identifiers = nil
		inv.snap.Store(s)
		inv.log.Info("inventory loaded", "path", inv.cfg.Path, "devices", len(s.Devices), "problems", len(s.Problems))
		changed = true
	}
	leaseChanged := inv.leases.Load() == nil
	for _, p := range append(append([]string(nil), inv.cfg.DnsmasqLeases...), inv.cfg.DhcpdLeases...) {
		if inv.changed(p) {
			leaseChanged = true
		}
	}
	if leaseChanged {
		l, err := inv.loadLeases()
		if err != nil {
			reloadErrors.Inc()
			return changed, err
		}
		inv.leases.Store(&l)
		changed = true
	}
	return changed, nil
}

// changed records and compares a file's mtime and size. A missing file
// counts as changed once (so it is reported) and then as unchanged.
func (inv *Inventory) changed(path string) bool {
	st := stamp{}
	if fi, err := os.Stat(path); err == nil {
		st = stamp{fi.ModTime(), fi.Size()}
	}
	old, seen := inv.stamps[path]
	inv.stamps[path] = st
	return !seen || old != st
}

func (inv *Inventory) loadLeases() (Leases, error) {
	l := Leases{}
	now := inv.now()
	for _, p := range inv.cfg.DnsmasqLeases {
		b, err := os.ReadFile(p)
		if err != nil {
			inv.log.Warn("dnsmasq lease file unreadable", "path", p, "err", err)
			continue
		}
		if err := ParseDnsmasqLeases(b, now, l); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, p := range inv.cfg.DhcpdLeases {
		b, err := os.ReadFile(p)
		if err != nil {
			inv.log.Warn("dhcpd lease file unreadable", "path", p, "err", err)
			continue
		}
		if err := ParseDhcpdLeases(b, now, l); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return l, nil
}

// Attribution sources written to flowpb.Device.attributed_by.
const (
	ByMAC   = "mac"
	ByIP    = "ip"
	ByLease = "lease"
)

// Attribute finds the device of a flow by its device-side MAC (6 bytes, may
// be nil), else by static IP, else by DHCP lease (IP -> MAC -> device), and
// fills out. It allocates nothing.
func (inv *Inventory) Attribute(mac []byte, addr netip.Addr, out *flowpb.Device) bool {
	s := inv.snap.Load()
	if s == nil {
		return false
	}
	if len(mac) == 6 {
		if a := s.byMAC[[6]byte(mac)]; a != nil {
			a.fill(out, ByMAC)
			return true
		}
	}
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	if a := s.byIP[addr]; a != nil {
		a.fill(out, ByIP)
		return true
	}
	if l := inv.leases.Load(); l != nil {
		if m, ok := (*l)[addr]; ok {
			if a := s.byMAC[m]; a != nil {
				a.fill(out, ByLease)
				return true
			}
		}
	}
	return false
}

func (a *attr) fill(out *flowpb.Device, by string) {
	out.Id = a.id
	out.Model = a.model
	out.Group = a.group
	out.OsVersion = a.osVersion
	out.AttributedBy = by
}
