package decode

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/exfilwatch/exfilwatch/collector/flow"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xbb}
)

// build serializes layers with gopacket (an independent encoder) with
// lengths and checksums fixed up.
func build(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ipv4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{93, 184, 216, 34}}
}

func ipv6(nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
}

func tcp(t testing.TB, ip gopacket.NetworkLayer) *layers.TCP {
	l := &layers.TCP{SrcPort: 40000, DstPort: 443, Seq: 1234, SYN: true, ACK: true, Window: 1000}
	if err := l.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return l
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func TestDecodeEthernetVLANTCP(t *testing.T) {
	ip := ipv4(layers.IPProtocolTCP)
	frame := build(t, eth(layers.EthernetTypeDot1Q),
		&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeIPv4},
		ip, tcp(t, ip), gopacket.Payload("hello"))
	var p flow.Packet
	if r := Decode(LinkEthernet, frame, len(frame), &p); r != OK {
		t.Fatalf("reason %v", r)
	}
	if p.Key.SrcPort != 40000 || p.Key.DstPort != 443 || p.Key.Proto != 6 || p.Key.IPVersion != 4 ||
		p.L3Bytes != 20+20+5 || string(p.Payload) != "hello" || p.TCPFlags != flow.TCPSyn|flow.TCPAck ||
		p.TCPSeq != 1234 || !p.HasMAC || p.SrcMAC != [6]byte(macA) || p.Key.Src[10] != 0xff || p.Key.Src[12] != 10 {
		t.Errorf("decoded %+v", p)
	}
	// A third tag is beyond the bound.
	frame3 := build(t, eth(layers.EthernetTypeDot1Q),
		&layers.Dot1Q{Type: layers.EthernetTypeDot1Q}, &layers.Dot1Q{Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{Type: layers.EthernetTypeIPv4}, ip, tcp(t, ip))
	if r := Decode(LinkEthernet, frame3, len(frame3), &p); r != TooManyTags {
		t.Errorf("3 tags: %v", r)
	}
}

func TestDecodePaddingAndSuperPackets(t *testing.T) {
	ip := ipv4(layers.IPProtocolTCP)
	frame := build(t, eth(layers.EthernetTypeIPv4), ip, tcp(t, ip))
	padded := append(frame, make([]byte, 60-len(frame))...) // 54 -> 60 bytes
	var p flow.Packet
	if r := Decode(LinkEthernet, padded, len(padded), &p); r != OK || p.L3Bytes != 40 || len(p.Payload) != 0 || p.PayloadLen != 0 {
		t.Errorf("padded: %v %d bytes, payload %q", r, p.L3Bytes, p.Payload)
	}
	// GSO: IP length says 40 but the frame carries 1000 bytes of L3.
	big := append(frame, make([]byte, 1014-len(frame))...)
	if r := Decode(LinkEthernet, big, len(big), &p); r != OK || p.L3Bytes != 1000 || p.PayloadLen != 960 {
		t.Errorf("gso: %v %d bytes payload %d", r, p.L3Bytes, p.PayloadLen)
	}
	// Snaplen-truncated: wire length counts, captured bytes are the payload view.
	full := build(t, eth(layers.EthernetTypeIPv4), ip, tcp(t, ip), gopacket.Payload(make([]byte, 1000)))
	if r := Decode(LinkEthernet, full[:96], len(full), &p); r != OK || p.L3Bytes != 1040 || len(p.Payload) != 42 || p.PayloadLen != 1000 {
		t.Errorf("snaplen: %v %d bytes payload %d/%d", r, p.L3Bytes, len(p.Payload), p.PayloadLen)
	}
	// IPv4 total length 0 (BIG TCP): the real length counts.
	zero := append([]byte(nil), big...)
	zero[14+2], zero[14+3] = 0, 0
	if r := Decode(LinkEthernet, zero, len(zero), &p); r != OK || p.L3Bytes != 1000 {
		t.Errorf("big tcp: %v %d", r, p.L3Bytes)
	}
}

func TestDecodeFragments(t *testing.T) {
	ip := ipv4(layers.IPProtocolUDP)
	ip.Flags = layers.IPv4MoreFragments
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	udp.SetNetworkLayerForChecksum(ip)
	first := build(t, eth(layers.EthernetTypeIPv4), ip, udp, gopacket.Payload("abcdefgh"))
	var p flow.Packet
	if r := Decode(LinkEthernet, first, len(first), &p); r != OK || !p.Fragment || p.Key.SrcPort != 5353 {
		t.Errorf("first fragment: %v %+v", r, p.Key)
	}
	ip2 := ipv4(layers.IPProtocolUDP)
	ip2.FragOffset = 2
	rest := build(t, eth(layers.EthernetTypeIPv4), ip2, gopacket.Payload("ijklmnop"))
	if r := Decode(LinkEthernet, rest, len(rest), &p); r != OK || !p.Fragment || p.Key.SrcPort != 0 || p.Key.DstPort != 0 || p.Key.Proto != 17 || p.L3Bytes != 28 {
		t.Errorf("non-first fragment: %v %+v %d", r, p.Key, p.L3Bytes)
	}
	// IPv6 non-first fragment: L3-only flow of the fragment's next header.
	ip6 := ipv6(layers.IPProtocolIPv6Fragment)
	fh := []byte{17, 0, 0, 8 << 3, 0, 0, 0, 1} // offset 8 (x8 bytes), next header UDP
	f6 := build(t, eth(layers.EthernetTypeIPv6), ip6, gopacket.Payload(append(fh, "data"...)))
	if r := Decode(LinkEthernet, f6, len(f6), &p); r != OK || !p.Fragment || p.Key.Proto != 17 || p.Key.SrcPort != 0 || p.L3Bytes != 40+12 {
		t.Errorf("ipv6 fragment: %v %+v %d", r, p.Key, p.L3Bytes)
	}
}

func TestDecodeIPv6ExtensionHeaders(t *testing.T) {
	// Hop-by-hop, destination options, then ICMPv6 echo.
	hbh := []byte{60, 0, 1, 4, 0, 0, 0, 0}
	dst := []byte{58, 0, 1, 4, 0, 0, 0, 0}
	icmp := []byte{128, 0, 0, 0, 0, 1, 0, 1, 'x'}
	ip6 := ipv6(layers.IPProtocolIPv6HopByHop)
	frame := build(t, eth(layers.EthernetTypeIPv6), ip6, gopacket.Payload(append(append(append([]byte{}, hbh...), dst...), icmp...)))
	var p flow.Packet
	if r := Decode(LinkEthernet, frame, len(frame), &p); r != OK || p.Key.Proto != 58 || p.Key.SrcPort != 128 || p.Key.DstPort != 0 || string(p.Payload) != "x" {
		t.Errorf("ext headers: %v %+v %q", r, p.Key, p.Payload)
	}
	// Nine chained destination-options headers exceed the bound.
	var chain []byte
	for i := 0; i < 9; i++ {
		chain = append(chain, 60, 0, 1, 4, 0, 0, 0, 0)
	}
	ip6 = ipv6(layers.IPProtocolIPv6Destination)
	long := build(t, eth(layers.EthernetTypeIPv6), ip6, gopacket.Payload(chain))
	if r := Decode(LinkEthernet, long, len(long), &p); r != ExtHeaderLimit {
		t.Errorf("long chain: %v", r)
	}
}

func TestDecodeLinkTypes(t *testing.T) {
	ip := ipv6(layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 1000, DstPort: 3544}
	udp.SetNetworkLayerForChecksum(ip)
	l3 := build(t, ip, udp, gopacket.Payload("teredo"))
	sll := append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xaa, 0, 0, 0x86, 0xdd}, l3...)
	sll2 := append([]byte{0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 0xaa, 0, 0}, l3...)
	nullLE := append([]byte{30, 0, 0, 0}, l3...)
	loop := append([]byte{0, 0, 0, 24}, l3...)
	for _, c := range []struct {
		name  string
		link  LinkType
		frame []byte
		mac   bool
	}{
		{"raw", LinkRaw, l3, false}, {"ipv6", LinkIPv6, l3, false}, {"sll", LinkSLL, sll, true},
		{"sll2", LinkSLL2, sll2, true}, {"null", LinkNull, nullLE, false}, {"loop", LinkLoop, loop, false},
	} {
		var p flow.Packet
		if r := Decode(c.link, c.frame, len(c.frame), &p); r != OK || p.Key.DstPort != 3544 || p.Tunnel != flow.TunnelTeredo ||
			p.L3Bytes != uint64(len(l3)) || p.HasMAC != c.mac || (c.mac && p.SrcMAC != [6]byte(macA)) {
			t.Errorf("%s: %v %+v", c.name, r, p)
		}
	}
	var p flow.Packet
	if r := Decode(LinkType(147), l3, len(l3), &p); r != UnsupportedLink {
		t.Errorf("unknown link: %v", r)
	}
}

func TestDecodeMPLSAndTunnels(t *testing.T) {
	inner := ipv4(layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}
	mpls := build(t, eth(layers.EthernetTypeMPLSUnicast), &layers.MPLS{Label: 16, StackBottom: false, TTL: 64},
		&layers.MPLS{Label: 17, StackBottom: true, TTL: 64}, inner, icmp)
	var p flow.Packet
	if r := Decode(LinkEthernet, mpls, len(mpls), &p); r != OK || p.Key.Proto != 1 || p.Key.SrcPort != 8 || p.L3Bytes != 28 {
		t.Errorf("mpls: %v %+v", r, p)
	}
	// 6in4: outer IPv4 proto 41 is the counted flow.
	outer := ipv4(layers.IPProtocolIPv6)
	six := build(t, eth(layers.EthernetTypeIPv4), outer, ipv6(layers.IPProtocolNoNextHeader))
	if r := Decode(LinkEthernet, six, len(six), &p); r != OK || p.Key.Proto != 41 || p.Tunnel != flow.Tunnel6in4 || p.L3Bytes != 60 || p.Key.SrcPort != 0 {
		t.Errorf("6in4: %v %+v", r, p)
	}
}

func TestDecodeMalformedNeverPanics(t *testing.T) {
	ip := ipv4(layers.IPProtocolTCP)
	frame := build(t, eth(layers.EthernetTypeIPv4), ip, tcp(t, ip), gopacket.Payload("x"))
	var p flow.Packet
	for n := 0; n < len(frame); n++ {
		for _, link := range []LinkType{LinkEthernet, LinkRaw, LinkSLL, LinkSLL2, LinkNull} {
			Decode(link, frame[:n], n, &p)
		}
	}
	bad := append([]byte(nil), frame...)
	bad[14] = 0x43 // IHL 3
	if r := Decode(LinkEthernet, bad, len(bad), &p); r != BadIPHeader {
		t.Errorf("ihl 3: %v", r)
	}
	bad[14] = 0x45
	bad[14+20+12] = 0x20 // TCP data offset 2
	if r := Decode(LinkEthernet, bad, len(bad), &p); r != BadTransport {
		t.Errorf("tcp doff 2: %v", r)
	}
}

func TestDecodeAllocs(t *testing.T) {
	ip := ipv4(layers.IPProtocolTCP)
	frame := build(t, eth(layers.EthernetTypeIPv4), ip, tcp(t, ip), gopacket.Payload("hello"))
	var p flow.Packet
	if n := testing.AllocsPerRun(100, func() { Decode(LinkEthernet, frame, len(frame), &p) }); n != 0 {
		t.Errorf("Decode allocates %v per call", n)
	}
}

// FuzzDecode checks that arbitrary frames never panic and that accepted
// ones stay within the frame. Seeds: testdata/fuzz/FuzzDecode (real frames
// from the shared captures plus crafted edge cases).
func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, uint32(1), 0)
	f.Fuzz(func(t *testing.T, frame []byte, link uint32, extra int) {
		wire := len(frame) + (extra & 0xffff)
		var p flow.Packet
		r := Decode(LinkType(link), frame, wire, &p)
		if r != OK {
			return
		}
		// An IP length field larger than the frame is counted as is (the
		// counting rule, and what tshark reports), so the bound is the
		// larger of the wire length and the largest IP length field.
		if p.L3Bytes > uint64(max(wire, 40+65535)) {
			t.Fatalf("L3 bytes %d > wire length %d", p.L3Bytes, wire)
		}
		if len(p.Payload) > len(frame) || p.PayloadLen < len(p.Payload) {
			t.Fatalf("payload %d bytes (wire %d) from a %d-byte frame", len(p.Payload), p.PayloadLen, len(frame))
		}
		if p.Key.IPVersion != 4 && p.Key.IPVersion != 6 {
			t.Fatalf("ip version %d", p.Key.IPVersion)
		}
	})
}

func TestDecodeTinyFirstFragment(t *testing.T) {
	ip := ipv4(layers.IPProtocolTCP)
	ip.Flags = layers.IPv4MoreFragments
	frame := build(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload([]byte{0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 0}))
	var p flow.Packet
	if r := Decode(LinkEthernet, frame, len(frame), &p); r != OK || !p.Fragment || p.Key.SrcPort != 0 || p.Key.Proto != 6 || p.L3Bytes != 28 {
		t.Errorf("tiny first fragment: %v %+v %d", r, p.Key, p.L3Bytes)
	}
}
