package flow

// TCP flag bits as they appear in the TCP header's flags byte.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// Packet is one decoded packet as the pcap path hands it to the flow table.
// The decoder (collector/decode) fills it in place so that decoding
// allocates nothing; Payload aliases the caller's frame buffer and is only
// valid until the next packet.
type Packet struct {
	Key     Key
	TimeNs  int64  // capture timestamp
	L3Bytes uint64 // bytes counted for this packet per the counting rules

	TCPFlags uint8
	TCPSeq   uint32

	// Payload is the captured transport payload (after the TCP/UDP/ICMP
	// header), clipped to the IP-declared length so link padding is not
	// taken for data. PayloadLen is the payload length on the wire, which is
	// larger than len(Payload) when the capture was cut by a snaplen.
	Payload    []byte
	PayloadLen int

	SrcMAC    [6]byte
	HasMAC    bool
	Fragment  bool  // the packet is an IPv4/IPv6 fragment (first or not)
	Tunnel    uint8 // TunnelNone, or the kind of tunnel the outer flow carries
	Interface uint8 // interface slot (IfMask bit) the packet was seen on
}

// Tunnel kinds the decoder recognises in outer flows. The decoder never
// decapsulates: the outer flow is what crosses the gateway and is counted.
const (
	TunnelNone   = 0
	Tunnel6in4   = 1 // IPv4 protocol 41
	TunnelTeredo = 2 // UDP port 3544
	TunnelGTPU   = 3 // UDP port 2152
	TunnelIPIP   = 4 // IP protocol 4 (IPv4-in-IP)
	TunnelGRE    = 5 // IP protocol 47
)
