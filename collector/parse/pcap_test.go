package parse

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/ip6defrag"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// packet is one transport payload read from a capture (IP fragments
// reassembled), the way the collector would see it.
type packet struct {
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
	payload      []byte
	seq          uint32
	syn          bool
}

// pcapPath returns the path of a shared capture (skipping or failing via
// testenv when the shared test data is absent).
func pcapPath(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(testenv.SharedTestdata(t), "pcap", name)
}

// readPackets decodes every TCP/UDP packet of a pcap or pcapng file with
// gopacket (an implementation independent of the code under test).
func readPackets(t testing.TB, path string) []packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	magic, err := br.Peek(4)
	if err != nil {
		t.Fatalf("read capture %s: %v", path, err)
	}
	type source interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var (
		src  source
		link layers.LinkType
	)
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("pcapng %s: %v", path, err)
		}
		src, link = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			t.Fatalf("pcap %s: %v", path, err)
		}
		src, link = r, r.LinkType()
	}
	d4, d6 := ip4defrag.NewIPv4Defragmenter(), ip6defrag.NewIPv6Defragmenter()
	var out []packet
	for {
		data, ci, err := src.ReadPacketData()
		if err != nil {
			break
		}
		pk := gopacket.NewPacket(data, link, gopacket.Default)
		var ipPayload []byte
		var next gopacket.LayerType
		var p packet
		if l := pk.Layer(layers.LayerTypeIPv4); l != nil {
			ip := l.(*layers.IPv4)
			whole, err := d4.DefragIPv4WithTimestamp(ip, ci.Timestamp)
			if err != nil || whole == nil {
				continue
			}
			p.src, _ = netip.AddrFromSlice(whole.SrcIP.To4())
			p.dst, _ = netip.AddrFromSlice(whole.DstIP.To4())
			ipPayload, next = whole.Payload, whole.NextLayerType()
		} else if l := pk.Layer(layers.LayerTypeIPv6); l != nil {
			ip := l.(*layers.IPv6)
			if fl := pk.Layer(layers.LayerTypeIPv6Fragment); fl != nil {
				whole := d6.DefragIPv6(ip, fl.(*layers.IPv6Fragment))
				if whole == nil {
					continue
				}
				ip = whole
			}
			p.src, _ = netip.AddrFromSlice(ip.SrcIP)
			p.dst, _ = netip.AddrFromSlice(ip.DstIP)
			ipPayload, next = ip.Payload, ip.NextLayerType()
			if ip.NextHeader == layers.IPProtocolIPv6Fragment {
				continue
			}
		} else {
			continue
		}
		tp := gopacket.NewPacket(ipPayload, next, gopacket.Default)
		if l := tp.Layer(layers.LayerTypeUDP); l != nil {
			u := l.(*layers.UDP)
			p.sport, p.dport, p.proto, p.payload = uint16(u.SrcPort), uint16(u.DstPort), protoUDP, u.Payload
		} else if l := tp.Layer(layers.LayerTypeTCP); l != nil {
			c := l.(*layers.TCP)
			p.sport, p.dport, p.proto, p.payload, p.seq, p.syn = uint16(c.SrcPort), uint16(c.DstPort), protoTCP, c.Payload, c.Seq, c.SYN
		} else {
			continue
		}
		out = append(out, p)
	}
	return out
}

// pcapFlows groups packets into flow records the way the collector exports
// them (the opener is src, its payloads are OUTBOUND snippets), with each
// snippet cut to snaplen bytes (0: uncut). Records come in order of first
// packet, which is also tshark's tcp.stream/udp.stream order.
func pcapFlows(t testing.TB, path string, snaplen int) []*flowpb.FlowRecord {
	t.Helper()
	var (
		recs  []*flowpb.FlowRecord
		index = map[[2]netip.AddrPort]int{}
		isn   = map[int][2]uint32{}
		seen  = map[int][2]bool{}
		count = map[int][2]uint32{}
	)
	for _, p := range readPackets(t, path) {
		from, to := netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport)
		k := [2]netip.AddrPort{from, to}
		if from.Compare(to) > 0 {
			k = [2]netip.AddrPort{to, from}
		}
		i, ok := index[k]
		if !ok {
			i = len(recs)
			index[k] = i
			recs = append(recs, &flowpb.FlowRecord{
				SchemaVersion: schema.Version,
				Direction:     flowpb.Direction_DIRECTION_OUTBOUND,
				SrcAddr:       schema.AddrBytes(p.src), DstAddr: schema.AddrBytes(p.dst),
				SrcPort: uint32(p.sport), DstPort: uint32(p.dport),
				Protocol: uint32(p.proto),
			})
		}
		r := recs[i]
		dir, d := flowpb.Direction_DIRECTION_OUTBOUND, 0
		if r.SrcPort != uint32(p.sport) || !bytes.Equal(r.SrcAddr, schema.AddrBytes(p.src)) {
			dir, d = flowpb.Direction_DIRECTION_INBOUND, 1
		}
		if p.proto == protoTCP {
			s, n := seen[i], isn[i]
			if p.syn {
				s[d], n[d] = true, p.seq+1
			} else if !s[d] {
				s[d], n[d] = true, p.seq
			}
			seen[i], isn[i] = s, n
		}
		if len(p.payload) == 0 {
			continue
		}
		c := count[i]
		data := p.payload
		trunc := false
		if snaplen > 0 && len(data) > snaplen {
			data, trunc = data[:snaplen], true
		}
		sn := &flowpb.Snippet{Direction: dir, PacketIndex: c[d], Data: append([]byte(nil), data...), Truncated: trunc}
		if p.proto == protoTCP {
			sn.StreamOffset = p.seq - isn[i][d]
		}
		c[d]++
		count[i] = c
		r.Snippets = append(r.Snippets, sn)
	}
	return recs
}

// tsharkFields runs tshark with a display filter and returns one slice of
// fields per matching frame.
func tsharkFields(t testing.TB, path, filter string, opts []string, fields ...string) [][]string {
	t.Helper()
	bin := testenv.Tool(t, "tshark")
	args := append([]string{"-r", path, "-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"}, opts...)
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v: %s", args, err, stderr.String())
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		rows = append(rows, strings.Split(line, "\t"))
	}
	return rows
}
