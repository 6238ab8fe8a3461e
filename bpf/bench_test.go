package bpf

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/exfilwatch/exfilwatch/collector/flow"
)

// Benchmarks of the TC programs through BPF_PROG_TEST_RUN. The kernel times
// the runs; the figure is reported as ns/pkt (ns/op also includes the
// syscall and is meaningless). Compare every figure with "empty", an empty
// TC program measured the same way in the same run.

func benchProg(b *testing.B, prog *ebpf.Program, pkt []byte) {
	b.Helper()
	// Repeat inside one syscall; b.N only scales the repetitions.
	_, d, err := prog.Benchmark(pkt, max(b.N, 1000), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
}

// benchSingle runs one packet per syscall, changing it before each run with
// vary, and reports the kernel-measured mean.
func benchSingle(b *testing.B, prog *ebpf.Program, pkt []byte, vary func(i int)) {
	b.Helper()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		vary(i)
		_, d, err := prog.Benchmark(pkt, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

func BenchmarkProg(b *testing.B) {
	cfg := DefaultConfig()
	cfg.MaxFlows = 1 << 20
	p := loadTestProbe(b, cfg)
	ack := eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1, flow.TCPAck, nil), v4opts{}))
	data := eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1, flow.TCPAck|flow.TCPPsh, payload(1000)), v4opts{}))

	b.Run("empty", func(b *testing.B) { benchProg(b, p.objs.ExfilEmpty, ack) })
	b.Run("existing_tcp_flow", func(b *testing.B) { benchProg(b, p.objs.ExfilIngress, ack) })
	b.Run("existing_tcp_flow_ipv6", func(b *testing.B) {
		benchProg(b, p.objs.ExfilIngress, eth6(ipv6(a6, b6, tcpSeg(40000, 443, 1, flow.TCPAck, nil), v6opts{})))
	})
	b.Run("existing_flow_payload_past_snippet_limit", func(b *testing.B) { benchProg(b, p.objs.ExfilIngress, data) })
	// The egress hook on a forwarded packet needs a context
	// (ingress_ifindex), which Program.Benchmark cannot pass: timed by wall
	// clock over one syscall of many repetitions, with the empty program
	// timed the same way.
	b.Run("empty_wallclock", func(b *testing.B) { benchWall(b, p.objs.ExfilEmpty, ack, 0) })
	b.Run("egress_forwarded_wallclock", func(b *testing.B) { benchWall(b, p.objs.ExfilEgress, ack, loIfindex) })

	// New flows: a different source address per packet, one packet per
	// syscall; compare with the empty program measured the same way.
	b.Run("empty_single", func(b *testing.B) { benchSingle(b, p.objs.ExfilEmpty, ack, func(int) {}) })
	b.Run("new_flow_single", func(b *testing.B) {
		pkt := append([]byte(nil), ack...)
		base := uint32(0x0a000000)
		benchSingle(b, p.objs.ExfilIngress, pkt, func(i int) {
			binary.BigEndian.PutUint32(pkt[14+12:], base+uint32(i)) // source address
		})
		p.clearFlowsFast()
	})
	b.Run("existing_flow_single", func(b *testing.B) { benchSingle(b, p.objs.ExfilIngress, ack, func(int) {}) })
}

func benchWall(b *testing.B, prog *ebpf.Program, pkt []byte, iif uint32) {
	n := max(b.N, 100000)
	opts := &ebpf.RunOptions{Data: pkt, Repeat: uint32(n), Context: skbCtx{Ifindex: loIfindex, IngressIfindex: iif}}
	start := time.Now()
	if _, err := prog.Run(opts); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(n), "ns/pkt")
}

func (p *Probe) clearFlowsFast() {
	var k flowFlowKey
	var keys []flowFlowKey
	var v flowFlowStats
	it := p.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	_, _ = p.objs.Flows.BatchDelete(keys, nil)
}

// BenchmarkProgSnippet times a packet whose 1024 payload bytes are copied to
// the ring buffer (snippet_packets set to its maximum so that every packet
// qualifies) while a goroutine drains the ring buffer.
func BenchmarkProgSnippet(b *testing.B) {
	cfg := DefaultConfig()
	cfg.SnippetPackets = ^uint32(0)
	cfg.SnippetBytes = 1024
	cfg.RingBufferBytes = 64 << 20
	p := loadTestProbe(b, cfg)
	pkt := eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1, flow.TCPAck|flow.TCPPsh, payload(1024)), v4opts{}))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rec ringbuf.Record
		for ctx.Err() == nil {
			p.rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
			if err := p.rd.ReadInto(&rec); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	}()
	b.Run("empty", func(b *testing.B) { benchProg(b, p.objs.ExfilEmpty, pkt) })
	b.Run("payload_copied_1024", func(b *testing.B) {
		before := p.Counters()
		benchProg(b, p.objs.ExfilIngress, pkt)
		after := p.Counters()
		b.ReportMetric(float64(after["ringbuf_full_drops"]-before["ringbuf_full_drops"]), "ringbuf_full")
	})
	cancel()
	<-done
}
