package parse

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const (
	protoTCP = 6
	protoUDP = 17
)

// parsed counts Fill's decode attempts by protocol and outcome, so a rise in
// errors (new client behaviour, capture length too short) is visible.
var parsed = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "exfilwatch_collector_parse_total",
	Help: "Payload decode attempts by Fill, by protocol (dns, tls, http, quic) and result (ok, partial = input cut short, error).",
}, []string{"protocol", "result"})

// outcome counters resolved once: WithLabelValues on the hot path would
// hash the labels for every record.
type outcome struct{ ok, partial, failed prometheus.Counter }

func newOutcome(proto string) outcome {
	return outcome{parsed.WithLabelValues(proto, "ok"), parsed.WithLabelValues(proto, "partial"), parsed.WithLabelValues(proto, "error")}
}

var (
	dnsOutcome  = newOutcome("dns")
	tlsOutcome  = newOutcome("tls")
	httpOutcome = newOutcome("http")
	quicOutcome = newOutcome("quic")
)

func (o outcome) count(err error) {
	switch {
	case err == nil:
		o.ok.Inc()
	case errors.Is(err, ErrTruncated):
		o.partial.Inc()
	default:
		o.failed.Inc()
	}
}

// Fill decodes rec.Snippets into rec.Dns, rec.Tls and rec.Http. It is the
// hook the collector calls before exporting a record.
//
// The client side is the OUTBOUND snippets (device to remote), or the
// INBOUND ones when the remote opened the flow (rec.Direction INBOUND); the
// server port is chosen the same way. DNS is recognised by port (53, 5353,
// 5355); TLS, HTTP and QUIC by content, on any port, since exfiltration
// likes odd ports. Consecutive TCP snippets are joined by stream offset.
//
// Fill owns the three fields: each ends up either describing this record or
// nil. Sub-messages already present are reused (with their slices) rather
// than reallocated, so a collector that recycles records allocates only for
// new strings.
func Fill(rec *flowpb.FlowRecord) {
	if rec == nil {
		return
	}
	client, server := flowpb.Direction_DIRECTION_OUTBOUND, flowpb.Direction_DIRECTION_INBOUND
	serverPort := rec.DstPort
	if rec.Direction == flowpb.Direction_DIRECTION_INBOUND {
		client, server = server, client
		serverPort = rec.SrcPort
	}
	snips := rec.Snippets
	if len(snips) > maxSnippets {
		snips = snips[:maxSnippets]
	}
	var dns, tls, http bool
	switch rec.Protocol {
	case protoUDP:
		if isDNSPort(serverPort) {
			dns = fillDNS(rec, dataOf(firstOf(snips, client)), dataOf(firstOf(snips, server)), DNS)
		} else if c := firstOf(snips, client); c != nil && looksLikeQUICInitial(c.Data) {
			tls = fillQUIC(rec, snips, client)
		}
	case protoTCP:
		s := getScratch()
		stream := s.tcpStream(snips, client, &s.stream)
		switch {
		case len(stream) >= 3 && stream[0] == tlsContentHS && stream[1] == 3:
			if rec.Tls == nil {
				rec.Tls = &flowpb.TLSInfo{}
			}
			resetTLS(rec.Tls)
			err := tlsRecords(stream, rec.Tls, s.stream[len(s.stream):])
			tlsOutcome.count(err)
			tls = rec.Tls.Version != 0
		case len(stream) > 0 && looksLikeHTTPRequest(stream):
			if rec.Http == nil {
				rec.Http = &flowpb.HTTPInfo{}
			}
			err := HTTPRequest(stream, rec.Http)
			httpOutcome.count(err)
			http = rec.Http.Method != ""
		case isDNSPort(serverPort):
			dns = fillDNS(rec, stream, s.tcpStream(snips, server, &s.stream2), DNSTCP)
		}
		putScratch(s)
	}
	if !dns {
		rec.Dns = nil
	}
	if !tls {
		rec.Tls = nil
	}
	if !http {
		rec.Http = nil
	}
}

func isDNSPort(p uint32) bool { return p == 53 || p == 5353 || p == 5355 }

// firstOf returns the snippet of direction d with the lowest packet_index
// (the collector emits them in order; this does not rely on it).
func firstOf(snips []*flowpb.Snippet, d flowpb.Direction) *flowpb.Snippet {
	var first *flowpb.Snippet
	for _, s := range snips {
		if s != nil && s.Direction == d && (first == nil || s.PacketIndex < first.PacketIndex) {
			first = s
		}
	}
	return first
}

// dataOf returns a snippet's bytes (nil for no snippet).
func dataOf(s *flowpb.Snippet) []byte {
	if s == nil {
		return nil
	}
	return s.Data
}

// fillDNS decodes the client's first message as the query and the server's
// first message as the response. It reports whether anything was found.
func fillDNS(rec *flowpb.FlowRecord, query, response []byte, decode func([]byte, *flowpb.DNSInfo) error) bool {
	if rec.Dns == nil {
		rec.Dns = &flowpb.DNSInfo{}
	}
	d := rec.Dns
	d.QueryName, d.QueryType, d.Rcode, d.IsResponseSeen = "", 0, 0, false
	d.Answers = d.Answers[:0]
	found := false
	for _, msg := range [2][]byte{query, response} {
		if len(msg) > 0 {
			err := decode(msg, d)
			dnsOutcome.count(err)
			found = found || err == nil || errors.Is(err, ErrTruncated)
		}
	}
	return found && (d.QueryName != "" || d.IsResponseSeen)
}

// fillQUIC decrypts the client Initials of the first client datagrams and
// parses the ClientHello reassembled from their CRYPTO frames.
func fillQUIC(rec *flowpb.FlowRecord, snips []*flowpb.Snippet, client flowpb.Direction) bool {
	s := getScratch()
	defer putScratch(s)
	first := true
	var err error
	for _, sn := range snips {
		if sn == nil || sn.Direction != client {
			continue
		}
		if !looksLikeQUICInitial(sn.Data) {
			break // client Initials come first; a short header ends them
		}
		if e := s.quicDatagram(sn.Data, first); e != nil && first {
			err = e
			break
		}
		first = false
		if done, _ := s.clientHelloComplete(); done {
			break
		}
	}
	if rec.Tls == nil {
		rec.Tls = &flowpb.TLSInfo{}
	}
	resetTLS(rec.Tls)
	if err == nil {
		err = s.quicFinish(rec.Tls)
	}
	quicOutcome.count(err)
	// A cut datagram is decrypted without authentication, so garbage that
	// merely looks like a long header would "decrypt" too: without an
	// authenticated packet, require at least a well-formed CRYPTO frame.
	return rec.Tls.Quic && (s.authed || s.nr > 0)
}

// clientHelloComplete reports whether the CRYPTO data holds a whole
// handshake message from offset 0.
func (s *scratch) clientHelloComplete() (bool, int) {
	n := s.prefix()
	if n < tlsHSHeader {
		return false, n
	}
	return n >= tlsHSHeader+be24(s.asm[1:]), n
}

func resetTLS(t *flowpb.TLSInfo) {
	t.Sni, t.Version, t.Quic = "", 0, false
	t.Alpn = t.Alpn[:0]
}

// tcpStream returns the client's bytes from the start of the stream, joining
// snippets whose stream offsets are contiguous (overlaps from
// retransmissions are trimmed) and stopping at a gap or a truncated snippet.
// A single snippet is returned in place; joins are copied into *buf.
func (s *scratch) tcpStream(snips []*flowpb.Snippet, dir flowpb.Direction, buf *[]byte) []byte {
	base := firstOf(snips, dir)
	if base == nil {
		return nil
	}
	out := base.Data
	if len(out) > maxStream {
		out = out[:maxStream]
	}
	next := uint64(base.StreamOffset) + uint64(len(out))
	truncated := base.Truncated
	copied := false
	for i := 0; i < len(snips) && !truncated && len(out) < maxStream; i++ {
		var found *flowpb.Snippet
		for _, c := range snips {
			// A snippet at the base's own offset is a retransmission of the
			// first segment, or the offsets are unknown (all 0): never join.
			if c == nil || c.Direction != dir || len(c.Data) == 0 || c.StreamOffset == base.StreamOffset {
				continue
			}
			lo, hi := uint64(c.StreamOffset), uint64(c.StreamOffset)+uint64(len(c.Data))
			if lo <= next && hi > next {
				found = c
				break
			}
		}
		if found == nil {
			break
		}
		if !copied {
			*buf = append((*buf)[:0], out...)
			copied = true
		}
		piece := found.Data[next-uint64(found.StreamOffset):]
		if room := maxStream - len(*buf); len(piece) > room {
			piece = piece[:room]
		}
		*buf = append(*buf, piece...)
		out = *buf
		next += uint64(len(piece))
		truncated = found.Truncated
	}
	return out
}
