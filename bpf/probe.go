// Package bpf loads the exfilwatch TC programs (c/flow.c), attaches them to
// the gateway's lab interfaces and turns the kernel's flow table and event
// ring buffer into collector/flow Sink calls.
//
// The kernel side aggregates per directional flow (an LRU hash), so user
// space only reads the table every poll interval instead of handling every
// packet; payload snippets and TCP FIN/RST notices come through a ring buffer.
package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Probe is a loaded set of programs and maps. Create with Load, attach to
// interfaces with Attach, consume with Run, release with Close.
type Probe struct {
	cfg  Config
	objs flowObjects
	rd   *ringbuf.Reader

	// monoToWall converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall-clock
	// ns; computed once at Load.
	monoToWall int64

	mu       sync.Mutex
	attached []attachment
	slots    map[int]int // ifindex -> slot
	names    []string    // interface names by slot
	closed   bool

	// User-space counters, owned by the Run goroutine but read by Counters.
	stats userStats
}

// Load checks the environment, loads the programs and maps into the kernel
// and prepares the ring buffer reader. Nothing is attached yet.
func Load(cfg Config) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bpf: config: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("bpf: remove memlock rlimit (needs root or CAP_SYS_RESOURCE on old kernels): %w", err)
	}
	spec, err := loadFlow()
	if err != nil {
		return nil, fmt.Errorf("bpf: parse embedded object: %w", err)
	}
	spec.Maps[flowMapFlows].MaxEntries = cfg.MaxFlows
	spec.Maps[flowMapEvents].MaxEntries = cfg.RingBufferBytes
	if err := spec.Variables[flowVarSnippetPackets].Set(cfg.SnippetPackets); err != nil {
		return nil, fmt.Errorf("bpf: set snippet_packets: %w", err)
	}
	if err := spec.Variables[flowVarSnippetBytes].Set(cfg.SnippetBytes); err != nil {
		return nil, fmt.Errorf("bpf: set snippet_bytes: %w", err)
	}

	p := &Probe{cfg: cfg, slots: make(map[int]int)}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, loadError(err)
	}
	p.rd, err = ringbuf.NewReader(p.objs.Events)
	if err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("bpf: ring buffer reader: %w", err)
	}
	p.monoToWall, err = monoToWallOffset()
	if err != nil {
		p.Close()
		return nil, err
	}
	slog.Info("bpf: programs loaded", "max_flows", cfg.MaxFlows, "snippet_packets", cfg.SnippetPackets,
		"snippet_bytes", cfg.SnippetBytes, "ring_buffer_bytes", cfg.RingBufferBytes)
	register(p)
	return p, nil
}

// loadError turns a load failure into an actionable message.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := ve.Log
		if len(log) > 20 {
			log = log[len(log)-20:]
		}
		return fmt.Errorf("bpf: verifier rejected the programs (kernel %s); log tail:\n%s\n: %w",
			kernelRelease(), strings.Join(log, "\n"), err)
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("bpf: permission denied loading programs: run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: %w", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		if _, serr := os.Stat("/sys/kernel/btf/vmlinux"); serr != nil {
			return fmt.Errorf("bpf: kernel %s lacks a needed feature and has no BTF (/sys/kernel/btf/vmlinux): need Linux >= 5.12 with CONFIG_DEBUG_INFO_BTF: %w", kernelRelease(), err)
		}
		return fmt.Errorf("bpf: kernel %s lacks a needed feature (ring buffer, BPF atomics: need Linux >= 5.12): %w", kernelRelease(), err)
	}
	return fmt.Errorf("bpf: load programs: %w", err)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// monoToWallOffset returns CLOCK_REALTIME - CLOCK_MONOTONIC in ns, sampled
// with the monotonic read bracketed to keep the error below a microsecond.
func monoToWallOffset() (int64, error) {
	var m1, r, m2 unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1); err != nil {
		return 0, fmt.Errorf("bpf: clock_gettime: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &r); err != nil {
		return 0, fmt.Errorf("bpf: clock_gettime: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2); err != nil {
		return 0, fmt.Errorf("bpf: clock_gettime: %w", err)
	}
	mono := (m1.Nano() + m2.Nano()) / 2
	return r.Nano() - mono, nil
}

// monoNow returns CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Close detaches every program and releases the maps. It is safe to call
// more than once.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	unregister(p)
	var errs []error
	for i := len(p.attached) - 1; i >= 0; i-- {
		if err := p.attached[i].detach(); err != nil {
			errs = append(errs, err)
		}
	}
	p.attached = nil
	if p.rd != nil {
		if err := p.rd.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: close ring buffer: %w", err))
		}
	}
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close objects: %w", err))
	}
	return errors.Join(errs...)
}
