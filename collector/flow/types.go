// Package flow holds the flow-accounting types shared by the two ways the
// collector observes traffic: the eBPF programs on a live gateway (bpf/) and
// the pure-Go packet decoder used for pcap replay. Both produce the same
// Key/DirStats/PacketSnippet values, so one table turns either into records.
//
// Counting rules (identical in BPF C and in Go; see docs/collector.md):
//   - Bytes are L3 bytes: the IPv4 total length, or 40 + IPv6 payload length.
//     When that field is 0 (BIG TCP, jumbogram) or smaller than the L3 bytes
//     the frame actually carries and the frame is larger than a minimum
//     Ethernet frame (GSO/GRO super-packets), the real length is used:
//     frame length minus the L2 header (Ethernet + VLAN tags).
//   - A non-first IPv4/IPv6 fragment carries no ports: it is counted to the
//     L3-only flow of its addresses and protocol (ports 0); the first
//     fragment counts to its transport flow.
//   - A flow is counted once per gateway: at ingress of every attached
//     interface, and at egress only for packets the gateway itself
//     originated (not forwarded); each interface that saw it sets a bit in
//     IfMask.
package flow

// Key identifies one direction of a flow. Addresses are 16 bytes, IPv4 as
// IPv4-mapped IPv6. For ICMP/ICMPv6, SrcPort holds the type and DstPort the code.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	IPVersion        uint8
}

// Reverse returns the key of the opposite direction.
func (k Key) Reverse() Key {
	return Key{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto, IPVersion: k.IPVersion}
}

// DirStats are the cumulative counters of one direction of a flow.
type DirStats struct {
	Packets, Bytes  uint64
	FirstNs, LastNs int64 // wall-clock ns (pcap timestamps in replay)
	TCPFlags        uint8 // OR of flags seen
	Fragments       uint32
	SrcMAC          [6]byte // source MAC of the first packet seen on a lab interface
	IfMask          uint64  // bit i set: attached interface slot i saw this direction
}

// PacketSnippet is the first payload bytes of one payload-carrying packet.
type PacketSnippet struct {
	Key       Key
	TimeNs    int64
	Index     uint32 // index among payload packets of this direction
	Offset    uint32 // TCP: seq - ISN-ish relative offset when known, else 0
	Data      []byte // valid only during the callback; copy to keep
	Truncated bool
}

// Sink receives flow observations from a source (kernel maps or pcap
// decoder). Implementations must not retain Data slices past the call.
type Sink interface {
	// UpdateFlow reports cumulative counters for one direction.
	UpdateFlow(k Key, s DirStats)
	// Snippet reports captured payload bytes.
	Snippet(s PacketSnippet)
	// EndFlow reports that the kernel saw TCP FIN or RST on k (either direction).
	EndFlow(k Key, rst bool)
}
