package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// decodeEventHdr hand-decodes struct event_hdr; check it against the layout
// bpf2go generated from the object's BTF.
func TestDecodeEventHdrMatchesBTFLayout(t *testing.T) {
	var h flowEventHdr
	if got := unsafe.Sizeof(h); got != 72 || eventHdrBytes != 72 {
		t.Fatalf("event_hdr is %d bytes, decoder assumes 72", got)
	}
	want := flowEventHdr{Ts: 0x0102030405060708, Index: 7, Offset: 0x11223344, Len: 5, PayloadLen: 9, Type: evSnippet, Flags: evFTruncated}
	want.Key.Src[0], want.Key.Src[15] = 0xaa, 0xab
	want.Key.Dst[0], want.Key.Dst[15] = 0xba, 0xbb
	want.Key.Sport, want.Key.Dport, want.Key.Proto, want.Key.Ipver = 1234, 443, 6, 4
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &want); err != nil {
		t.Fatal(err)
	}
	var got flowEventHdr
	decodeEventHdr(buf.Bytes(), &got)
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

type countSink struct{ updates, snippets, ends int }

func (s *countSink) UpdateFlow(flow.Key, flow.DirStats) { s.updates++ }
func (s *countSink) Snippet(flow.PacketSnippet)         { s.snippets++ }
func (s *countSink) EndFlow(flow.Key, bool)             { s.ends++ }

func TestHandleEventMalformed(t *testing.T) {
	p := &Probe{}
	s := &countSink{}
	ok := make([]byte, eventHdrBytes+3)
	ok[64] = evSnippet
	ok[56] = 3 // len
	p.handleEvent(ok, s)
	long := append([]byte(nil), ok...)
	long[56] = 4 // claims more data than the record holds
	p.handleEvent(long, s)
	p.handleEvent(ok[:10], s)
	unknown := append([]byte(nil), ok...)
	unknown[64] = 9
	p.handleEvent(unknown, s)
	if s.snippets != 1 || p.stats.eventsMalformed.Load() != 3 || p.stats.eventsRead.Load() != 4 {
		t.Fatalf("snippets %d malformed %d read %d, want 1 3 4", s.snippets, p.stats.eventsMalformed.Load(), p.stats.eventsRead.Load())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, c := range []struct {
		key string
		mod func(*Config)
	}{
		{"max_flows:", func(c *Config) { c.MaxFlows = 0 }},
		{"snippet_bytes:", func(c *Config) { c.SnippetBytes = MaxSnippetBytes + 1 }},
		{"snippet_bytes:", func(c *Config) { c.SnippetBytes = 0 }},
		{"ring_buffer_bytes:", func(c *Config) { c.RingBufferBytes = 5000 }},
		{"poll_interval:", func(c *Config) { c.PollInterval = 0 }},
		{"idle_timeout:", func(c *Config) { c.IdleTimeout = -time.Second }},
		{"attach_mode:", func(c *Config) { c.AttachMode = "xdp" }},
	} {
		cfg := DefaultConfig()
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), c.key) {
			t.Errorf("%s: got %v", c.key, err)
		}
	}
	if _, err := Load(Config{}); err == nil || !strings.Contains(err.Error(), "max_flows") {
		t.Errorf("Load with a zero config: %v", err)
	}
}

// Entries idle longer than the timeout are reported with their final
// counters and removed; active ones are reported and kept.
func TestPollExpiresIdleEntries(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(map[bool]string{true: "batch", false: "iterate"}[batch], func(t *testing.T) { testPollExpires(t, batch) })
	}
}

func testPollExpires(t *testing.T, batch bool) {
	cfg := DefaultConfig()
	cfg.IdleTimeout = 100 * time.Millisecond
	p := loadTestProbe(t, cfg)
	old := eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))
	p.runPkt(t, false, 0, old)
	p.runPkt(t, false, 0, old)
	time.Sleep(250 * time.Millisecond)
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, udpSeg(3, 4, payload(10)), v4opts{})))

	s := newRecSink()
	w := newWalker(p)
	w.noBatch = !batch
	w.poll(s)
	if len(s.updates) != 2 || s.updates[key(a4, b4, 1, 2, 17)].Packets != 2 || s.updates[key(a4, b4, 3, 4, 17)].Packets != 1 {
		t.Fatalf("updates %+v", s.updates)
	}
	left := p.dumpFlows(t)
	if _, ok := left[key(a4, b4, 3, 4, 17)]; len(left) != 1 || !ok {
		t.Fatalf("after poll the table holds %v, want only the active flow", keysOf(left))
	}
	c := p.Counters()
	if c["flows_expired"] != 1 || c["flow_entries"] != 1 || c["flows_reported"] != 2 || c["lru_evictions"] != 0 {
		t.Fatalf("counters %v", c)
	}
}

// A full LRU table evicts; the loss is visible as lru_evictions.
func TestLRUEvictionsCounted(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxFlows = 64
	p := loadTestProbe(t, cfg)
	pkt := eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))
	const n = 1000
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint16(pkt[14+20:], uint16(1000+i)) // source port
		p.runPkt(t, false, 0, pkt)
	}
	newWalker(p).poll(&countSink{})
	c := p.Counters()
	if c["flows_created"] != n || c["flow_entries"] > 64 || c["lru_evictions"] != n-c["flow_entries"] || c["flow_insert_failures"] != 0 {
		t.Fatalf("counters %v", c)
	}
}

// BenchmarkHandleEvent decodes one snippet record and calls the sink: the
// per-event user-space path must not allocate.
func BenchmarkHandleEvent(b *testing.B) {
	p := &Probe{}
	s := &countSink{}
	raw := make([]byte, eventHdrBytes+1024)
	raw[64] = evSnippet
	binary.LittleEndian.PutUint32(raw[56:], 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		p.handleEvent(raw, s)
	}
	if s.snippets != b.N {
		b.Fatalf("%d snippets for %d events", s.snippets, b.N)
	}
}

// BenchmarkPoll walks a table of 10k entries and reports each to the sink;
// allocations per op are per walk, not per entry.
func BenchmarkPoll(b *testing.B) {
	p := loadTestProbe(b, DefaultConfig())
	pkt := eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))
	const n = 10000
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint16(pkt[14+20:], uint16(i))
		p.runPkt(b, false, 0, pkt)
	}
	w := newWalker(p)
	s := &countSink{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.poll(s)
	}
	b.StopTimer()
	if s.updates != n*b.N {
		b.Fatalf("%d updates, want %d", s.updates, n*b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/entry")
}

// TestLoadWithoutCapabilities drops CAP_BPF, CAP_SYS_ADMIN and friends from
// the effective set of one locked thread (capabilities are per thread in
// Linux) and checks that Load explains what is missing.
func TestLoadWithoutCapabilities(t *testing.T) {
	testenv.Root(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		for _, c := range []uint{unix.CAP_SYS_ADMIN, unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN} {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		p, err := Load(DefaultConfig())
		if err == nil {
			p.Close()
			errc <- errors.New("Load succeeded without capabilities")
			return
		}
		if !strings.Contains(err.Error(), "CAP_BPF") {
			errc <- fmt.Errorf("Load error does not say what is missing: %v", err)
			return
		}
		t.Log(err)
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A verifier rejection is reported with the tail of the verifier log.
func TestLoadErrorVerifierLogTail(t *testing.T) {
	testenv.Root(t)
	_, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Reg(asm.R0, asm.R5), asm.Return()}, // R5 is uninitialised
	})
	if err == nil {
		t.Fatal("the verifier accepted a read of an uninitialised register")
	}
	msg := loadError(err).Error()
	if !strings.Contains(msg, "verifier rejected") || !strings.Contains(msg, "R5 !read_ok") {
		t.Fatalf("error lacks the verifier log tail: %s", msg)
	}
}
