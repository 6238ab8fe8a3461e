package collector_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/collector/decode"
	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

type frame struct {
	data []byte
	wire int
	ts   int64
}

func loadFrames(b testing.TB, name string) ([]frame, decode.LinkType) {
	b.Helper()
	f, err := os.Open(filepath.Join(testenv.SharedTestdata(b), "pcap", name))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	var out []frame
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, frame{data, ci.Length, ci.Timestamp.UnixNano()})
	}
	return out, decode.LinkType(r.LinkType())
}

func discard(*flowpb.FlowRecord) error { return nil }

// benchReplay decodes and accounts the frames of a real capture, looping
// over it with timestamps shifted by one capture duration per loop so the
// virtual clock moves on and flows expire as they would in a long capture.
func benchReplay(b *testing.B, name string) {
	frames, link := loadFrames(b, name)
	cfg := collector.DefaultConfig()
	tb := flow.NewTable(cfg.TableConfig(nil), discard)
	span := frames[len(frames)-1].ts - frames[0].ts + int64(time.Second)
	var p flow.Packet
	var bytes int64
	for _, f := range frames {
		bytes += int64(f.wire)
	}
	b.ReportAllocs()
	b.ResetTimer()
	loops := 0
	for i := 0; i < b.N; {
		shift := int64(loops) * span
		for _, f := range frames {
			if i == b.N {
				break
			}
			p.TimeNs = f.ts + shift
			if decode.Decode(link, f.data, f.wire, &p) == decode.OK {
				tb.Observe(&p)
			}
			i++
		}
		loops++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// Real captures: a mixed one (MPLS/VLAN/TCP/UDP/ICMP), a long UDP DNS
// tunnel, and bulk TCP upload.
func BenchmarkReplayMixed(b *testing.B)      { benchReplay(b, "tcpreplay-test-mixed-mpls-vlan.pcap") }
func BenchmarkReplayDNSTunnel(b *testing.B)  { benchReplay(b, "elastic-dns-tunnel-iodine.pcap") }
func BenchmarkReplayHTTPUpload(b *testing.B) { benchReplay(b, "zeek-http-putty-upload.pcap") }

// BenchmarkDecodeOnly is the decoder alone on the mixed capture (baseline
// for the flow table's share of the replay cost).
func BenchmarkDecodeOnly(b *testing.B) {
	frames, link := loadFrames(b, "tcpreplay-test-mixed-mpls-vlan.pcap")
	var p flow.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := &frames[i%len(frames)]
		decode.Decode(link, f.data, f.wire, &p)
	}
}

// BenchmarkReadPcapFile is the whole replay path from pcap bytes in memory:
// pcapgo parsing, decode, flow table, record export (per packet).
func BenchmarkReadPcapFile(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(testenv.SharedTestdata(b), "pcap", "elastic-dns-tunnel-iodine.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	b.ReportAllocs()
	b.ResetTimer()
	var pkts uint64
	for i := 0; i < b.N; i++ {
		st, err := collector.ReadPcap(context.Background(), bytes.NewReader(data), cfg, discard)
		if err != nil {
			b.Fatal(err)
		}
		pkts += st.Packets
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pkts), "ns/pkt")
	b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
}

// synthFrame builds an Ethernet/IPv4/UDP frame for flow number i.
func synthFrame(i int, reply bool) []byte {
	f := make([]byte, 14+20+8+32)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+8+32)
	ip[9] = 17
	src := [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
	dst := [4]byte{93, 184, 216, 34}
	sp, dp := uint16(40000+i%20000), uint16(443)
	if reply {
		src, dst, sp, dp = dst, src, dp, sp
	}
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[20:], sp)
	binary.BigEndian.PutUint16(ip[22:], dp)
	binary.BigEndian.PutUint16(ip[24:], 8+32)
	return f
}

// BenchmarkManyFlows: 200,000 concurrent UDP flows (both directions),
// packets round-robin across them, so nearly every lookup misses the CPU
// caches. Steady state: every packet belongs to an existing flow.
func BenchmarkManyFlows(b *testing.B) {
	const flows = 200000
	frames := make([][]byte, 0, 2*flows)
	for i := 0; i < flows; i++ {
		frames = append(frames, synthFrame(i, false), synthFrame(i, true))
	}
	cfg := collector.DefaultConfig()
	cfg.MaxFlows = flows
	cfg.LabSubnets = []string{"10.0.0.0/8"}
	tb := flow.NewTable(cfg.TableConfig(nil), discard)
	var p flow.Packet
	for i, f := range frames { // warm: create all flows
		p.TimeNs = int64(i)
		decode.Decode(decode.LinkEthernet, f, len(f), &p)
		tb.Observe(&p)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		p.TimeNs = int64(len(frames) + i)
		decode.Decode(decode.LinkEthernet, f, len(f), &p)
		tb.Observe(&p)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkExportRecords measures records exported per second on one core:
// each op is one flow's record built (addresses, Community ID, id hash,
// interfaces, snippets of one payload packet) and handed to emit.
func BenchmarkExportRecords(b *testing.B) {
	const batch = 50000
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = synthFrame(i, false)
	}
	cfg := collector.DefaultConfig()
	cfg.MaxFlows = batch
	tb := flow.NewTable(cfg.TableConfig(nil), discard)
	var p flow.Packet
	b.ReportAllocs()
	b.ResetTimer()
	t := int64(0)
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		b.StopTimer()
		for i := 0; i < n; i++ {
			t++
			p.TimeNs = t
			decode.Decode(decode.LinkEthernet, frames[i], len(frames[i]), &p)
			tb.Observe(&p)
		}
		b.StartTimer()
		tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestObserveExistingFlowNoAllocs proves the steady state: packets of
// existing flows (payload snippets already taken) allocate nothing.
func TestObserveExistingFlowNoAllocs(t *testing.T) {
	frames, link := loadFrames(t, "elastic-dns-tunnel-iodine.pcap")
	cfg := collector.DefaultConfig()
	cfg.IdleTimeout, cfg.ActiveTimeout = time.Hour, time.Hour
	tb := flow.NewTable(cfg.TableConfig(nil), discard)
	var p flow.Packet
	replay := func() {
		for _, f := range frames {
			p.TimeNs = f.ts
			if decode.Decode(link, f.data, f.wire, &p) == decode.OK {
				tb.Observe(&p)
			}
		}
	}
	replay() // create the flows
	if n := testing.AllocsPerRun(20, replay); n != 0 {
		t.Errorf("%v allocations per replay of %d packets of existing flows", n, len(frames))
	}
}
