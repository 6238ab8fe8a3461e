package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Hand-rolled packet builders for BPF_PROG_TEST_RUN: every length field is
// computed here (or deliberately overridden), independently of the C parser.

type l4seg struct {
	proto   uint8
	b       []byte // header + payload
	payload int    // payload bytes after the transport header
}

func tcpSeg(sport, dport uint16, seq uint32, flags uint8, payload []byte) l4seg {
	h := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	h[12] = 5 << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], 65535)
	return l4seg{proto: 6, b: append(h, payload...), payload: len(payload)}
}

func udpSeg(sport, dport uint16, payload []byte) l4seg {
	h := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return l4seg{proto: 17, b: append(h, payload...), payload: len(payload)}
}

func icmpSeg(proto, typ, code uint8, payload []byte) l4seg {
	h := make([]byte, 8, 8+len(payload))
	h[0], h[1] = typ, code
	return l4seg{proto: proto, b: append(h, payload...), payload: len(payload)}
}

// rawSeg is an arbitrary transport (or fragment) body.
func rawSeg(proto uint8, b []byte) l4seg { return l4seg{proto: proto, b: b} }

type v4opts struct {
	options []byte // multiple of 4
	fragOff uint16 // in 8-byte units
	mf      bool
	totLen  int // override when != 0; -1 means write 0
	ihl     int // override when != 0
	version int // override when != 0
}

func ipv4(src, dst string, l l4seg, o v4opts) []byte {
	hl := 20 + len(o.options)
	h := make([]byte, hl, hl+len(l.b))
	ihl := hl / 4
	if o.ihl != 0 {
		ihl = o.ihl
	}
	ver := 4
	if o.version != 0 {
		ver = o.version
	}
	h[0] = byte(ver<<4 | ihl)
	tot := hl + len(l.b)
	switch {
	case o.totLen == -1:
		tot = 0
	case o.totLen != 0:
		tot = o.totLen
	}
	binary.BigEndian.PutUint16(h[2:], uint16(tot))
	fo := o.fragOff
	if o.mf {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	h[8] = 64
	h[9] = l.proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	copy(h[20:], o.options)
	return append(h, l.b...)
}

// ext6 is one IPv6 extension header.
type ext6 struct {
	typ     uint8 // 0, 43, 60, 51 (AH) or 44 (fragment)
	size    int   // total bytes (multiple of 8, AH multiple of 4); fragment: 8
	fragOff uint16
	more    bool
}

type v6opts struct {
	ext     []ext6
	plen    int // override when != 0; -1 means write 0
	version int
}

func ipv6(src, dst string, l l4seg, o v6opts) []byte {
	var body []byte
	for i, e := range o.ext {
		next := l.proto
		if i+1 < len(o.ext) {
			next = o.ext[i+1].typ
		}
		b := make([]byte, e.size)
		b[0] = next
		switch e.typ {
		case 44:
			v := e.fragOff << 3
			if e.more {
				v |= 1
			}
			binary.BigEndian.PutUint16(b[2:], v)
		case 51:
			b[1] = byte(e.size/4 - 2)
		default:
			b[1] = byte(e.size/8 - 1)
		}
		body = append(body, b...)
	}
	body = append(body, l.b...)
	h := make([]byte, 40, 40+len(body))
	ver := 6
	if o.version != 0 {
		ver = o.version
	}
	h[0] = byte(ver << 4)
	plen := len(body)
	switch {
	case o.plen == -1:
		plen = 0
	case o.plen != 0:
		plen = o.plen
	}
	binary.BigEndian.PutUint16(h[4:], uint16(plen))
	h[6] = l.proto
	if len(o.ext) > 0 {
		h[6] = o.ext[0].typ
	}
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, body...)
}

var (
	testSrcMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	testDstMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// ether frames l3 with the given VLAN TPIDs (outermost first).
func ether(ethertype uint16, l3 []byte, vlanTPIDs ...uint16) []byte {
	b := make([]byte, 0, 14+4*len(vlanTPIDs)+len(l3))
	b = append(b, testDstMAC[:]...)
	b = append(b, testSrcMAC[:]...)
	for i, tpid := range vlanTPIDs {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // TCI: VLAN id
	}
	b = binary.BigEndian.AppendUint16(b, ethertype)
	return append(b, l3...)
}

func eth4(l3 []byte, vlans ...uint16) []byte { return ether(0x0800, l3, vlans...) }
func eth6(l3 []byte, vlans ...uint16) []byte { return ether(0x86dd, l3, vlans...) }

// countedBytes is the counting rule of collector/flow, applied to a frame
// whose IP header declares `declared` L3 bytes (0 when the field is 0) and
// whose L2 header is l2 bytes long.
func countedBytes(declared, frameLen, l2 int) uint64 {
	frameL3 := frameLen - l2
	if declared == 0 || (declared < frameL3 && frameLen > 60) {
		return uint64(frameL3)
	}
	return uint64(declared)
}

func addr16(s string) [16]byte {
	a := netip.MustParseAddr(s)
	if a.Is4() {
		return netip.AddrFrom16(a.As16()).As16()
	}
	return a.As16()
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}
