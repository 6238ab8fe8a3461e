// Package decode turns captured frames into flow.Packet values for the pcap
// replay path, applying the same counting rules as the eBPF programs (see the
// collector/flow package doc). It is written for a replay loop that decodes
// millions of packets: Decode never allocates, never panics on hostile
// input, and reports why it rejected a frame as a Reason so callers can
// count malformed input per cause instead of guessing.
//
// Tunnels (6in4, IPIP, GRE, Teredo, GTP-U) are not decapsulated: the outer
// flow is what crosses the gateway, so its L3 bytes are what is counted, and
// the decoder only marks the packet's Tunnel kind. MPLS label stacks and the
// Ethernet-over-MPLS pseudowire (with control word) are walked to reach the
// carried IP packet, because on a gateway that is the flow of interest.
package decode

import (
	"encoding/binary"

	"github.com/exfilwatch/exfilwatch/collector/flow"
)

// LinkType is a pcap/pcapng link-layer header type (LINKTYPE_* values).
type LinkType uint32

// Link types the decoder understands.
const (
	LinkNull     LinkType = 0   // BSD loopback: 4-byte address family, host byte order
	LinkEthernet LinkType = 1   // Ethernet II, 802.1Q/802.1ad tags, MPLS
	LinkRaw      LinkType = 101 // raw IPv4/IPv6, version from the first nibble
	LinkRawAlt   LinkType = 12  // DLT_RAW as written by some BSD-derived tools
	LinkLoop     LinkType = 108 // OpenBSD loopback: address family in network byte order
	LinkSLL      LinkType = 113 // Linux cooked capture v1
	LinkSLL2     LinkType = 276 // Linux cooked capture v2
	LinkIPv4     LinkType = 228 // raw IPv4
	LinkIPv6     LinkType = 229 // raw IPv6
)

// Reason says why a frame was not turned into a counted packet. OK means it was.
type Reason uint8

// Reasons, in the order they are checked. NotIP is not an error: ARP, LLC,
// IS-IS and the like are simply not flows.
const (
	OK Reason = iota
	NotIP
	UnsupportedLink
	Truncated
	BadIPVersion
	BadIPHeader
	TooManyTags
	ExtHeaderLimit
	BadTransport
	numReasons
)

// NumReasons is the number of distinct Reason values, for counter arrays.
const NumReasons = int(numReasons)

var reasonNames = [...]string{
	OK:              "ok",
	NotIP:           "not_ip",
	UnsupportedLink: "unsupported_link",
	Truncated:       "truncated",
	BadIPVersion:    "bad_ip_version",
	BadIPHeader:     "bad_ip_header",
	TooManyTags:     "too_many_tags",
	ExtHeaderLimit:  "ext_header_limit",
	BadTransport:    "bad_transport",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Bounds on header walks. They keep the worst case per packet constant, the
// same way the BPF verifier forces bounded loops on the kernel side.
const (
	maxVLANTags    = 2
	maxMPLSLabels  = 8
	maxIPv6ExtHdrs = 8
	// minEthernetFrame is the smallest Ethernet frame without FCS. Shorter
	// L3 lengths inside frames of at most this size are padding, not
	// GSO/GRO super-packets, so the IP length field is trusted there.
	minEthernetFrame = 60
)

const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherTypeVLAN   = 0x8100
	etherTypeQinQ   = 0x88a8
	etherTypeQinQ2  = 0x9100
	etherTypeMPLS   = 0x8847
	etherTypeMPLSMc = 0x8848
)

// IANA protocol numbers used by the decoder.
const (
	ProtoICMP   = 1
	ProtoIPIP   = 4
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoIPv6   = 41
	ProtoGRE    = 47
	ProtoESP    = 50
	ProtoAH     = 51
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

const (
	portTeredo = 3544
	portGTPU   = 2152
)

// Decode decodes one frame of the given link type into p. wireLen is the
// frame's original length on the wire (pcap orig_len); when it is smaller
// than len(frame) (a broken capture) len(frame) is used. p is overwritten
// entirely except for TimeNs and Interface, which the caller owns.
func Decode(link LinkType, frame []byte, wireLen int, p *flow.Packet) Reason {
	ts, ifc := p.TimeNs, p.Interface
	*p = flow.Packet{TimeNs: ts, Interface: ifc}
	if wireLen < len(frame) {
		wireLen = len(frame)
	}
	switch link {
	case LinkEthernet:
		return decodeEthernet(frame, 0, wireLen, p, true)
	case LinkRaw, LinkRawAlt:
		if len(frame) < 1 {
			return Truncated
		}
		switch frame[0] >> 4 {
		case 4:
			return decodeIPv4(frame, 0, wireLen, p)
		case 6:
			return decodeIPv6(frame, 0, wireLen, p)
		}
		return BadIPVersion
	case LinkIPv4:
		return decodeIPv4(frame, 0, wireLen, p)
	case LinkIPv6:
		return decodeIPv6(frame, 0, wireLen, p)
	case LinkNull, LinkLoop:
		if len(frame) < 4 {
			return Truncated
		}
		af := binary.LittleEndian.Uint32(frame)
		if link == LinkLoop || af > 0xffff {
			af = binary.BigEndian.Uint32(frame)
		}
		switch af {
		case 2: // AF_INET everywhere
			return decodeIPv4(frame, 4, wireLen, p)
		case 10, 24, 28, 30: // AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, Darwin
			return decodeIPv6(frame, 4, wireLen, p)
		}
		return NotIP
	case LinkSLL:
		if len(frame) < 16 {
			return Truncated
		}
		if binary.BigEndian.Uint16(frame[2:]) == 1 && binary.BigEndian.Uint16(frame[4:]) == 6 {
			copy(p.SrcMAC[:], frame[6:12])
			p.HasMAC = true
		}
		return decodeEtherType(frame, binary.BigEndian.Uint16(frame[14:]), 16, wireLen, p, 0)
	case LinkSLL2:
		if len(frame) < 20 {
			return Truncated
		}
		if binary.BigEndian.Uint16(frame[8:]) == 1 && frame[11] == 6 {
			copy(p.SrcMAC[:], frame[12:18])
			p.HasMAC = true
		}
		return decodeEtherType(frame, binary.BigEndian.Uint16(frame), 20, wireLen, p, 0)
	}
	return UnsupportedLink
}

// decodeEthernet decodes an Ethernet header at off. outer is false for the
// inner frame of an MPLS pseudowire, whose MAC is not the device's.
func decodeEthernet(frame []byte, off, wireLen int, p *flow.Packet, outer bool) Reason {
	if len(frame) < off+14 {
		return Truncated
	}
	if outer {
		copy(p.SrcMAC[:], frame[off+6:off+12])
		p.HasMAC = true
	}
	et := binary.BigEndian.Uint16(frame[off+12:])
	if et < 0x0600 { // 802.3 length field: LLC/SNAP, not IP
		return NotIP
	}
	depth := 0
	if !outer {
		depth = 1 // one pseudowire level only
	}
	return decodeEtherType(frame, et, off+14, wireLen, p, depth)
}

// decodeEtherType continues after an EtherType: VLAN tags, MPLS, IP.
func decodeEtherType(frame []byte, et uint16, off, wireLen int, p *flow.Packet, pwDepth int) Reason {
	for tags := 0; et == etherTypeVLAN || et == etherTypeQinQ || et == etherTypeQinQ2; tags++ {
		if tags == maxVLANTags {
			return TooManyTags
		}
		if len(frame) < off+4 {
			return Truncated
		}
		et = binary.BigEndian.Uint16(frame[off+2:])
		off += 4
	}
	switch et {
	case etherTypeIPv4:
		return decodeIPv4(frame, off, wireLen, p)
	case etherTypeIPv6:
		return decodeIPv6(frame, off, wireLen, p)
	case etherTypeMPLS, etherTypeMPLSMc:
		return decodeMPLS(frame, off, wireLen, p, pwDepth)
	}
	return NotIP
}

// decodeMPLS walks a label stack to the bottom and guesses the payload from
// its first nibble, as routers and Wireshark do: 4/6 is IP, 0 is the
// pseudowire control word followed by an Ethernet frame.
func decodeMPLS(frame []byte, off, wireLen int, p *flow.Packet, pwDepth int) Reason {
	for n := 0; ; n++ {
		if n == maxMPLSLabels {
			return TooManyTags
		}
		if len(frame) < off+4 {
			return Truncated
		}
		bos := frame[off+2]&1 == 1
		off += 4
		if bos {
			break
		}
	}
	if len(frame) < off+1 {
		return Truncated
	}
	switch frame[off] >> 4 {
	case 4:
		return decodeIPv4(frame, off, wireLen, p)
	case 6:
		return decodeIPv6(frame, off, wireLen, p)
	case 0:
		if pwDepth > 0 {
			return TooManyTags
		}
		return decodeEthernet(frame, off+4, wireLen, p, false)
	}
	return NotIP
}

// l3Bytes applies the counting rule: the IP length field, unless it is 0 or
// smaller than what a frame larger than a minimum Ethernet frame carries
// (GSO/GRO/BIG TCP super-packets), in which case the real length counts.
func l3Bytes(fieldZero bool, ipLen, l3off, wireLen int) int {
	carried := wireLen - l3off
	if fieldZero || (ipLen < carried && wireLen > minEthernetFrame) {
		return carried
	}
	return ipLen
}

func decodeIPv4(frame []byte, off, wireLen int, p *flow.Packet) Reason {
	if len(frame) < off+20 {
		return Truncated
	}
	h := frame[off:]
	if h[0]>>4 != 4 {
		return BadIPVersion
	}
	ihl := int(h[0]&0x0f) * 4
	if ihl < 20 {
		return BadIPHeader
	}
	if len(h) < ihl {
		return Truncated
	}
	total := int(binary.BigEndian.Uint16(h[2:]))
	if total != 0 && total < ihl {
		return BadIPHeader
	}
	n := l3Bytes(total == 0, total, off, wireLen)
	p.L3Bytes = uint64(n)
	p.Key.IPVersion = 4
	p.Key.Src[10], p.Key.Src[11] = 0xff, 0xff
	p.Key.Dst[10], p.Key.Dst[11] = 0xff, 0xff
	copy(p.Key.Src[12:], h[12:16])
	copy(p.Key.Dst[12:], h[16:20])
	proto := h[9]
	p.Key.Proto = proto
	fragWord := binary.BigEndian.Uint16(h[6:])
	fragOff := fragWord & 0x1fff
	if fragWord&0x2000 != 0 || fragOff != 0 {
		p.Fragment = true
	}
	switch proto {
	case ProtoIPv6:
		p.Tunnel = flow.Tunnel6in4
	case ProtoIPIP:
		p.Tunnel = flow.TunnelIPIP
	case ProtoGRE:
		p.Tunnel = flow.TunnelGRE
	}
	if fragOff != 0 {
		return OK // non-first fragment: L3-only flow, ports 0
	}
	return decodeTransport(frame, off+ihl, off+n, p)
}

// isIPv6ExtHeader reports whether nh is an extension header with the
// generic (next header, length in 8-octet units) layout.
func isIPv6ExtHeader(nh uint8) bool {
	switch nh {
	case 0, 43, 60, 135, 139, 140:
		return true
	}
	return false
}

func decodeIPv6(frame []byte, off, wireLen int, p *flow.Packet) Reason {
	if len(frame) < off+40 {
		return Truncated
	}
	h := frame[off:]
	if h[0]>>4 != 6 {
		return BadIPVersion
	}
	plen := int(binary.BigEndian.Uint16(h[4:]))
	n := l3Bytes(plen == 0, 40+plen, off, wireLen)
	p.L3Bytes = uint64(n)
	p.Key.IPVersion = 6
	copy(p.Key.Src[:], h[8:24])
	copy(p.Key.Dst[:], h[24:40])
	nh := h[6]
	pos := off + 40
	for i := 0; ; i++ {
		if nh != 44 && nh != ProtoAH && !isIPv6ExtHeader(nh) {
			break
		}
		if i == maxIPv6ExtHdrs {
			return ExtHeaderLimit
		}
		if len(frame) < pos+8 {
			return Truncated
		}
		next := frame[pos]
		switch {
		case nh == 44: // fragment header, fixed 8 bytes
			p.Fragment = true
			if binary.BigEndian.Uint16(frame[pos+2:])>>3 != 0 {
				p.Key.Proto = next // non-first fragment: L3-only flow
				return OK
			}
			pos += 8
		case nh == ProtoAH:
			pos += (int(frame[pos+1]) + 2) * 4
		default:
			pos += (int(frame[pos+1]) + 1) * 8
		}
		nh = next
	}
	p.Key.Proto = nh
	return decodeTransport(frame, pos, off+n, p)
}

// decodeTransport reads ports/type/code, TCP flags and the payload. l4 is
// the transport header offset and l3end the end of the packet on the wire.
func decodeTransport(frame []byte, l4, l3end int, p *flow.Packet) Reason {
	capEnd := len(frame)
	if l3end < capEnd {
		capEnd = l3end // strip link padding/trailers
	}
	hdr := 0
	switch p.Key.Proto {
	case ProtoTCP:
		if capEnd < l4+14 {
			return truncatedOrBad(p, l4+14, l3end)
		}
		t := frame[l4:]
		p.Key.SrcPort = binary.BigEndian.Uint16(t)
		p.Key.DstPort = binary.BigEndian.Uint16(t[2:])
		p.TCPSeq = binary.BigEndian.Uint32(t[4:])
		hdr = int(t[12]>>4) * 4
		if hdr < 20 {
			return BadTransport
		}
		p.TCPFlags = t[13]
	case ProtoUDP, ProtoSCTP:
		if capEnd < l4+4 {
			return truncatedOrBad(p, l4+4, l3end)
		}
		p.Key.SrcPort = binary.BigEndian.Uint16(frame[l4:])
		p.Key.DstPort = binary.BigEndian.Uint16(frame[l4+2:])
		hdr = 8
		if p.Key.Proto == ProtoSCTP {
			hdr = 12
		} else if p.Key.SrcPort == portTeredo || p.Key.DstPort == portTeredo {
			p.Tunnel = flow.TunnelTeredo
		} else if p.Key.SrcPort == portGTPU || p.Key.DstPort == portGTPU {
			p.Tunnel = flow.TunnelGTPU
		}
	case ProtoICMP, ProtoICMPv6:
		if capEnd < l4+2 {
			return truncatedOrBad(p, l4+2, l3end)
		}
		p.Key.SrcPort = uint16(frame[l4])   // type
		p.Key.DstPort = uint16(frame[l4+1]) // code
		hdr = 8
	default:
		return OK // other protocols: L3-only flow, no payload view
	}
	start := l4 + hdr
	if start > l3end {
		start = l3end
	}
	p.PayloadLen = l3end - start
	if start < capEnd {
		p.Payload = frame[start:capEnd:capEnd]
	}
	return OK
}

// truncatedOrBad distinguishes a header cut by the snaplen (Truncated) from
// one the IP length says cannot be there (BadTransport). A first fragment
// too small to hold the ports (tiny-fragment evasion) is still counted, to
// the L3-only flow like the later fragments, so its bytes are not lost.
func truncatedOrBad(p *flow.Packet, need, l3end int) Reason {
	if need > l3end {
		if p.Fragment {
			p.Key.SrcPort, p.Key.DstPort = 0, 0
			return OK
		}
		return BadTransport
	}
	return Truncated
}
