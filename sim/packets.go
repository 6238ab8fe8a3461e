package sim

import (
	"encoding/binary"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// packet is one frame with its capture time.
type packet struct {
	t    time.Time
	data []byte
}

// endpoint is one side of a flow.
type endpoint struct {
	mac  [6]byte
	ip   netip.Addr
	port uint16
}

// wire accumulates frames of many flows, then writes them in time order.
type wire struct {
	pkts []packet
	buf  gopacket.SerializeBuffer
	gw   [6]byte
}

func newWire(gwMAC [6]byte) *wire {
	return &wire{buf: gopacket.NewSerializeBuffer(), gw: gwMAC}
}

// frame serialises one packet from src to dst. Frames are seen on the lab
// side of the gateway: the device's MAC on one side, the gateway's on the other.
func (w *wire) frame(t time.Time, src, dst endpoint, l4 gopacket.SerializableLayer, payload []byte) {
	eth := &layers.Ethernet{SrcMAC: src.mac[:], DstMAC: dst.mac[:]}
	var ip gopacket.NetworkLayer
	if src.ip.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.ip.AsSlice(), DstIP: dst.ip.AsSlice(), Protocol: protoOf(l4)}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.ip.AsSlice(), DstIP: dst.ip.AsSlice(), NextHeader: protoOf(l4)}
	}
	switch l := l4.(type) {
	case *layers.TCP:
		l.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		l.SetNetworkLayerForChecksum(ip)
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	w.buf.Clear()
	if err := gopacket.SerializeLayers(w.buf, opts, eth, ip.(gopacket.SerializableLayer), l4, gopacket.Payload(payload)); err != nil {
		panic("sim: serialize: " + err.Error()) // only on a programming error in the simulator
	}
	w.pkts = append(w.pkts, packet{t: t, data: append([]byte(nil), w.buf.Bytes()...)})
}

func protoOf(l gopacket.SerializableLayer) layers.IPProtocol {
	switch l.(type) {
	case *layers.TCP:
		return layers.IPProtocolTCP
	case *layers.UDP:
		return layers.IPProtocolUDP
	}
	return layers.IPProtocolICMPv4
}

const mss = 1400

// tcpSession writes a full TCP conversation: handshake, the client's request
// bytes, the server's response bytes, and a FIN exchange. It returns the time
// the session ended.
func (w *wire) tcpSession(t time.Time, c, s endpoint, req []byte, respLen int, rtt time.Duration) time.Time {
	half := rtt / 2
	cseq, sseq := uint32(1000), uint32(50000)
	seg := func(from, to endpoint, seq, ack uint32, syn, ackf, psh, fin bool, data []byte) {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(from.port), DstPort: layers.TCPPort(to.port), Seq: seq, Ack: ack,
			SYN: syn, ACK: ackf, PSH: psh, FIN: fin, Window: 65535}
		w.frame(t, from, to, tcp, data)
	}
	seg(c, s, cseq, 0, true, false, false, false, nil)
	cseq++
	t = t.Add(half)
	seg(s, c, sseq, cseq, true, true, false, false, nil)
	sseq++
	t = t.Add(half)
	seg(c, s, cseq, sseq, false, true, false, false, nil)
	for off := 0; off < len(req); off += mss {
		end := min(off+mss, len(req))
		t = t.Add(50 * time.Microsecond)
		seg(c, s, cseq, sseq, false, true, true, false, req[off:end])
		cseq += uint32(end - off)
	}
	t = t.Add(half)
	resp := make([]byte, mss)
	for i := range resp {
		resp[i] = byte(i*7 + 3)
	}
	for sent := 0; sent < respLen; sent += mss {
		n := min(mss, respLen-sent)
		seg(s, c, sseq, cseq, false, true, true, false, resp[:n])
		sseq += uint32(n)
		t = t.Add(50 * time.Microsecond)
	}
	t = t.Add(half)
	seg(c, s, cseq, sseq, false, true, false, false, nil)
	t = t.Add(time.Millisecond)
	seg(c, s, cseq, sseq, false, true, false, true, nil)
	cseq++
	t = t.Add(half)
	seg(s, c, sseq, cseq, false, true, false, true, nil)
	sseq++
	t = t.Add(half)
	seg(c, s, cseq, sseq, false, true, false, false, nil)
	return t
}

// udpExchange writes a request datagram and, if resp is non-nil, its answer.
func (w *wire) udpExchange(t time.Time, c, s endpoint, req, resp []byte, rtt time.Duration) time.Time {
	w.frame(t, c, s, &layers.UDP{SrcPort: layers.UDPPort(c.port), DstPort: layers.UDPPort(s.port)}, req)
	if resp != nil {
		t = t.Add(rtt)
		w.frame(t, s, c, &layers.UDP{SrcPort: layers.UDPPort(s.port), DstPort: layers.UDPPort(c.port)}, resp)
	}
	return t
}

// writePcap writes every frame in capture-time order.
func (w *wire) writePcap(out io.Writer) (int, error) {
	sort.SliceStable(w.pkts, func(i, j int) bool { return w.pkts[i].t.Before(w.pkts[j].t) })
	pw := pcapgo.NewWriter(out)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return 0, err
	}
	for _, p := range w.pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.t, CaptureLength: len(p.data), Length: len(p.data)}
		if err := pw.WritePacket(ci, p.data); err != nil {
			return 0, err
		}
	}
	return len(w.pkts), nil
}

// dnsQuery builds a DNS query message for name and qtype.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := make([]byte, 12, 64+len(name))
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], 0x0100) // RD
	binary.BigEndian.PutUint16(b[4:], 1)
	b = appendName(b, name)
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, 1)
	return b
}

// dnsAnswer builds the response to q with one A/AAAA answer (or none).
func dnsAnswer(q []byte, ans netip.Addr, rcode int) []byte {
	b := append([]byte(nil), q...)
	binary.BigEndian.PutUint16(b[2:], 0x8180|uint16(rcode))
	if !ans.IsValid() || rcode != 0 {
		return b
	}
	binary.BigEndian.PutUint16(b[6:], 1)
	b = append(b, 0xc0, 12) // pointer to the question name
	if ans.Is4() {
		b = binary.BigEndian.AppendUint16(b, 1)
	} else {
		b = binary.BigEndian.AppendUint16(b, 28)
	}
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint32(b, 300)
	a := ans.AsSlice()
	b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
	return append(b, a...)
}

func appendName(b []byte, name string) []byte {
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if i > start {
				b = append(b, byte(i-start))
				b = append(b, name[start:i]...)
			}
			start = i + 1
		}
	}
	return append(b, 0)
}
