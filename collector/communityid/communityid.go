// Package communityid computes Community ID v1 flow hashes
// (https://github.com/corelight/community-id-spec), the de-facto join key
// between exfilwatch records and Zeek, Suricata, Elastic or Wireshark output
// for the same flow. It takes raw addresses and ports (so the flow table can
// use it without an import cycle) and allocates nothing through Append.
//
// Algorithm: SHA-1 over seed (2 bytes, network order), the ordered source
// and destination addresses (4 bytes for IPv4, 16 for IPv6), the protocol,
// one zero pad byte and, for TCP/UDP/SCTP/ICMP/ICMPv6, the two ordered
// ports; rendered as "1:" + base64. The endpoint with the smaller (address,
// port) goes first so both directions share one ID. ICMP types that have a
// request/response counterpart (echo, timestamp, ...) use the counterpart
// type as the "destination port", which makes request and reply hash alike;
// all other ICMP types are one-way: type and code are used as given and the
// tuple is never reordered.
package communityid

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
)

// Protocol numbers with port semantics in Community ID v1.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// Counterpart types for ICMPv4 (echo, router solicit/advert, timestamp,
// information, address mask), as in Zeek's ICMP-to-port mapping.
var icmp4Pair = map[uint16]uint16{
	8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17,
}

// Counterpart types for ICMPv6 (echo, MLD, router and neighbour discovery,
// who-are-you, home agent address discovery).
var icmp6Pair = map[uint16]uint16{
	128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
	135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144,
}

// ICMPPorts maps an ICMP/ICMPv6 (type, code) to Community ID port
// equivalents: (type, counterpart type, false) for two-way types,
// (type, code, true) for one-way ones. The flow table uses it too, so that
// an echo request and its reply land in one flow.
func ICMPPorts(proto uint8, typ, code uint16) (sport, dport uint16, oneWay bool) {
	m := icmp4Pair
	if proto == protoICMPv6 {
		m = icmp6Pair
	}
	if c, ok := m[typ]; ok {
		return typ, c, false
	}
	return typ, code, true
}

// Hasher computes Community IDs with a fixed seed.
type Hasher struct {
	seed uint16
}

// New returns a Hasher for the given seed (0 is the default everyone uses).
func New(seed uint16) Hasher { return Hasher{seed: seed} }

// Size is the length of the rendered ID: "1:" plus base64 of 20 bytes.
const Size = 2 + 28

// Sum returns the raw SHA-1 digest of a flow. src and dst are 4-byte
// (IPv4) or 16-byte (IPv6) addresses; for ICMP/ICMPv6 sport and dport are
// the message type and code.
func (h Hasher) Sum(src, dst []byte, proto uint8, sport, dport uint16) [sha1.Size]byte {
	var buf [2 + 32 + 2 + 4]byte
	buf[0], buf[1] = byte(h.seed>>8), byte(h.seed)
	hasPorts, oneWay := false, false
	switch proto {
	case protoTCP, protoUDP, protoSCTP:
		hasPorts = true
	case protoICMP, protoICMPv6:
		hasPorts = true
		sport, dport, oneWay = ICMPPorts(proto, sport, dport)
	}
	if !oneWay {
		c := bytes.Compare(src, dst)
		if c > 0 || (c == 0 && hasPorts && sport > dport) {
			src, dst = dst, src
			sport, dport = dport, sport
		}
	}
	n := 2
	n += copy(buf[n:], src)
	n += copy(buf[n:], dst)
	buf[n] = proto
	buf[n+1] = 0
	n += 2
	if hasPorts {
		buf[n], buf[n+1] = byte(sport>>8), byte(sport)
		buf[n+2], buf[n+3] = byte(dport>>8), byte(dport)
		n += 4
	}
	return sha1.Sum(buf[:n])
}

// Append appends the rendered ID ("1:" + base64) of a flow to b.
func (h Hasher) Append(b []byte, src, dst []byte, proto uint8, sport, dport uint16) []byte {
	sum := h.Sum(src, dst, proto, sport, dport)
	b = append(b, '1', ':')
	return base64.StdEncoding.AppendEncode(b, sum[:])
}

// String returns the rendered ID of a flow.
func (h Hasher) String(src, dst []byte, proto uint8, sport, dport uint16) string {
	var b [Size]byte
	return string(h.Append(b[:0], src, dst, proto, sport, dport))
}
