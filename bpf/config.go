package bpf

import (
	"fmt"
	"time"
)

// Attach modes for Config.AttachMode.
const (
	AttachAuto = "auto" // TCX when the kernel has it (>= 6.6), else clsact + TC filter
	AttachTCX  = "tcx"
	AttachTC   = "tc"
)

// MaxSnippetBytes is the compile-time cap of the in-kernel snippet buffer.
const MaxSnippetBytes = 4096

// maxSlots is the number of interface bits in flow.DirStats.IfMask.
const maxSlots = 64

// Config holds the eBPF probe settings.
type Config struct {
	MaxFlows        uint32        `yaml:"max_flows" help:"capacity of the in-kernel LRU flow table (directional entries)"`
	SnippetPackets  uint32        `yaml:"snippet_packets" help:"payload packets per flow direction whose first bytes are captured (0 disables)"`
	SnippetBytes    uint32        `yaml:"snippet_bytes" help:"payload bytes captured per packet (at most 4096)"`
	RingBufferBytes uint32        `yaml:"ring_buffer_bytes" help:"size of the snippet/event ring buffer, a power of two multiple of the page size"`
	PollInterval    time.Duration `yaml:"poll_interval" help:"how often the flow table is read and reported"`
	IdleTimeout     time.Duration `yaml:"idle_timeout" help:"flow entries idle this long are reported a last time and deleted"`
	AttachMode      string        `yaml:"attach_mode" help:"auto (TCX, falling back to clsact), tcx or tc"`
}

// DefaultConfig returns the settings used when nothing is configured.
func DefaultConfig() Config {
	return Config{
		MaxFlows:        65536,
		SnippetPackets:  4,
		SnippetBytes:    1024,
		RingBufferBytes: 4 << 20,
		PollInterval:    2 * time.Second,
		IdleTimeout:     60 * time.Second,
		AttachMode:      AttachAuto,
	}
}

// Validate reports the first invalid setting, prefixed with its yaml key.
func (c Config) Validate() error {
	switch {
	case c.MaxFlows == 0:
		return fmt.Errorf("max_flows: must be positive")
	case c.SnippetBytes > MaxSnippetBytes:
		return fmt.Errorf("snippet_bytes: at most %d, got %d", MaxSnippetBytes, c.SnippetBytes)
	case c.SnippetPackets > 0 && c.SnippetBytes == 0:
		return fmt.Errorf("snippet_bytes: must be positive when snippet_packets is %d", c.SnippetPackets)
	case c.RingBufferBytes < 4096 || c.RingBufferBytes&(c.RingBufferBytes-1) != 0:
		return fmt.Errorf("ring_buffer_bytes: want a power of two >= 4096, got %d", c.RingBufferBytes)
	case c.PollInterval <= 0:
		return fmt.Errorf("poll_interval: must be positive, got %s", c.PollInterval)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("idle_timeout: must be positive, got %s", c.IdleTimeout)
	}
	switch c.AttachMode {
	case AttachAuto, AttachTCX, AttachTC:
	default:
		return fmt.Errorf("attach_mode: want auto, tcx or tc, got %q", c.AttachMode)
	}
	return nil
}
