package bpf

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// FuzzProgIngress feeds arbitrary frames to the ingress program: it must
// always pass the packet on and account for it exactly once, either in the
// flow table or under one rejection reason. Seeds: testdata/fuzz.
func FuzzProgIngress(f *testing.F) {
	for _, c := range runCases() {
		for _, p := range c.pkts {
			f.Add(p)
		}
	}
	cfg := DefaultConfig()
	cfg.SnippetPackets = 0
	cfg.MaxFlows = 4096
	p := loadTestProbe(f, cfg)
	terminal := []string{"packets_counted", "packets_non_ip", "flow_insert_failures"}
	for _, n := range counterNames {
		if strings.HasPrefix(n, "parse_err_") {
			terminal = append(terminal, n)
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) < 14 || len(pkt) > 3000 {
			return // BPF_PROG_TEST_RUN bounds
		}
		before := p.Counters()
		ret, err := p.objs.ExfilIngress.Run(&ebpf.RunOptions{Data: pkt, Context: skbCtx{Ifindex: loIfindex}})
		if err != nil {
			return // the kernel refuses some frames (e.g. untagged IP shorter than an IP header)
		}
		if int32(ret) != -1 {
			t.Fatalf("returned %d", int32(ret))
		}
		after := p.Counters()
		var sum uint64
		for _, n := range terminal {
			sum += after[n] - before[n]
		}
		if seen := after["packets_seen"] - before["packets_seen"]; seen != 1 || sum != 1 {
			t.Fatalf("seen %d, terminal counters moved by %d, want 1 and 1", seen, sum)
		}
	})
}
