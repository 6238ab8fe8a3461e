package parse

import (
	"fmt"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const (
	tlsRecordHeader   = 5
	tlsContentHS      = 22
	tlsClientHello    = 1
	tlsHSHeader       = 4
	extServerName     = 0
	extALPN           = 16
	extSupportedVers  = 43
	sniHostName       = 0
	tlsMaxRecordBytes = 16384 + 2048 // TLSCiphertext limit; plaintext handshake records are smaller
)

var (
	errTLSRecord    = fmt.Errorf("tls: record header: %w", ErrTruncated)
	errTLSNotHS     = fmt.Errorf("tls: record is not a handshake: %w", ErrNotThisProtocol)
	errTLSVersion   = fmt.Errorf("tls: record version is not 3.x: %w", ErrNotThisProtocol)
	errTLSRecordLen = fmt.Errorf("tls: record length: %w", ErrMalformed)
	errTLSNotCH     = fmt.Errorf("tls: handshake is not a ClientHello: %w", ErrNotThisProtocol)
	errTLSHSTrunc   = fmt.Errorf("tls: ClientHello: %w", ErrTruncated)
	errTLSHSLong    = fmt.Errorf("tls: ClientHello longer than %d bytes: %w", maxClientHello, ErrUnsupported)
	errTLSFields    = fmt.Errorf("tls: ClientHello fixed fields: %w", ErrMalformed)
	errTLSExtTrunc  = fmt.Errorf("tls: ClientHello extensions: %w", ErrTruncated)
	errTLSExtBad    = fmt.Errorf("tls: ClientHello extensions: %w", ErrMalformed)
	errTLSSNI       = fmt.Errorf("tls: server_name extension: %w", ErrMalformed)
	errTLSALPN      = fmt.Errorf("tls: alpn extension: %w", ErrMalformed)
	errTLSSuppVers  = fmt.Errorf("tls: supported_versions extension: %w", ErrMalformed)
)

// TLSClientHello decodes a TLS ClientHello from TLS record-layer bytes (the
// start of a TCP stream from the client) into out: Sni, Alpn and Version (the
// highest non-GREASE supported_versions entry, else the legacy version).
//
// A ClientHello fragmented over several handshake records is reassembled when
// the records are all present. If the bytes end early, whatever extensions
// are complete are still decoded and ErrTruncated is returned.
func TLSClientHello(b []byte, out *flowpb.TLSInfo) error {
	var stack [2048]byte
	return tlsRecords(b, out, stack[:0])
}

// tlsRecords strips the record layer. The handshake message is parsed in
// place when one record holds it (the common case); otherwise the fragments
// are copied into scratch (grown up to maxClientHello).
func tlsRecords(b []byte, out *flowpb.TLSInfo, scratch []byte) error {
	if len(b) < tlsRecordHeader {
		return errTLSRecord
	}
	if b[0] != tlsContentHS {
		return errTLSNotHS
	}
	if b[1] != 3 {
		return errTLSVersion
	}
	n := be16(b[3:])
	if n == 0 || n > tlsMaxRecordBytes {
		return errTLSRecordLen
	}
	first := b[tlsRecordHeader:]
	truncated := len(first) < n
	if !truncated {
		first = first[:n]
	}
	// Does the first record hold the whole message (or all there is)?
	if truncated || len(first) >= tlsHSHeader && len(first) >= tlsHSHeader+be24(first[1:]) {
		return clientHelloMsg(first, out)
	}
	buf := append(scratch[:0], first...)
	rest := b[tlsRecordHeader+n:]
	for len(buf) < tlsHSHeader || len(buf) < tlsHSHeader+be24(buf[1:]) {
		if len(buf) >= tlsHSHeader && tlsHSHeader+be24(buf[1:]) > maxClientHello {
			return errTLSHSLong
		}
		if len(rest) < tlsRecordHeader {
			break // cut: parse what we have
		}
		if rest[0] != tlsContentHS || rest[1] != 3 {
			return errTLSNotHS
		}
		m := be16(rest[3:])
		if m == 0 || m > tlsMaxRecordBytes {
			return errTLSRecordLen
		}
		frag := rest[tlsRecordHeader:]
		if len(frag) > m {
			frag = frag[:m]
		}
		if len(buf)+len(frag) > maxClientHello {
			return errTLSHSLong
		}
		buf = append(buf, frag...)
		if len(frag) < m {
			break
		}
		rest = rest[tlsRecordHeader+m:]
	}
	return clientHelloMsg(buf, out)
}

// clientHelloMsg decodes a handshake message (4-byte header + body) that must
// be a ClientHello. It is shared by TLS over TCP and QUIC CRYPTO frames.
func clientHelloMsg(m []byte, out *flowpb.TLSInfo) error {
	if len(m) < tlsHSHeader {
		return errTLSHSTrunc
	}
	if m[0] != tlsClientHello {
		return errTLSNotCH
	}
	body := m[tlsHSHeader:]
	truncated := false
	if l := be24(m[1:]); len(body) >= l {
		body = body[:l]
	} else {
		truncated = true
	}
	// legacy_version(2) random(32) session_id<0..32>
	if len(body) < 35 {
		return errTLSHSTrunc
	}
	legacy := be16(body)
	if body[0] != 3 {
		return errTLSFields
	}
	out.Version = uint32(legacy)
	p := 34
	sid := int(body[p])
	if sid > 32 {
		return errTLSFields
	}
	p += 1 + sid
	if p+2 > len(body) {
		return errTLSHSTrunc
	}
	cs := be16(body[p:])
	if cs%2 != 0 {
		return errTLSFields
	}
	p += 2 + cs
	if p+1 > len(body) {
		return errTLSHSTrunc
	}
	p += 1 + int(body[p])
	if p == len(body) && !truncated {
		return nil // no extensions (SSL 3.0 style)
	}
	if p+2 > len(body) {
		return errTLSHSTrunc
	}
	extEnd := p + 2 + be16(body[p:])
	p += 2
	if extEnd > len(body) {
		if !truncated {
			return errTLSExtBad
		}
		extEnd = len(body)
	}
	for p < extEnd {
		if p+4 > extEnd {
			return errTLSExtTrunc
		}
		typ, l := be16(body[p:]), be16(body[p+2:])
		p += 4
		if p+l > extEnd {
			return errTLSExtTrunc
		}
		ext := body[p : p+l]
		p += l
		var err error
		switch typ {
		case extServerName:
			err = parseSNI(ext, out)
		case extALPN:
			err = parseALPN(ext, out)
		case extSupportedVers:
			err = parseSupportedVersions(ext, out)
		}
		if err != nil {
			return err
		}
	}
	if truncated {
		return errTLSHSTrunc
	}
	return nil
}

func parseSNI(ext []byte, out *flowpb.TLSInfo) error {
	if len(ext) < 2 || be16(ext)+2 != len(ext) {
		return errTLSSNI
	}
	for l := ext[2:]; len(l) > 0; {
		if len(l) < 3 {
			return errTLSSNI
		}
		typ, n := l[0], be16(l[1:])
		if 3+n > len(l) {
			return errTLSSNI
		}
		if typ == sniHostName {
			name := l[3 : 3+n]
			if len(name) > 0 && name[len(name)-1] == '.' {
				name = name[:len(name)-1]
			}
			out.Sni = safeString(name, out.Sni)
			return nil
		}
		l = l[3+n:]
	}
	return nil
}

func parseALPN(ext []byte, out *flowpb.TLSInfo) error {
	if len(ext) < 2 || be16(ext)+2 != len(ext) {
		return errTLSALPN
	}
	out.Alpn = out.Alpn[:0]
	for l := ext[2:]; len(l) > 0; {
		n := int(l[0])
		if n == 0 || 1+n > len(l) {
			return errTLSALPN
		}
		if len(out.Alpn) < MaxALPN {
			out.Alpn = append(out.Alpn, alpnString(l[1:1+n], out.Alpn[:cap(out.Alpn)], len(out.Alpn)))
		}
		l = l[1+n:]
	}
	return nil
}

// alpnString returns well-known protocol IDs as constants (no allocation) and
// reuses the string previously held in the same slot when equal.
func alpnString(b []byte, prev []string, i int) string {
	switch string(b) {
	case "h2":
		return "h2"
	case "http/1.1":
		return "http/1.1"
	case "h3":
		return "h3"
	case "http/1.0":
		return "http/1.0"
	case "spdy/3.1":
		return "spdy/3.1"
	case "h2c":
		return "h2c"
	case "acme-tls/1":
		return "acme-tls/1"
	case "dot":
		return "dot"
	case "doq":
		return "doq"
	}
	p := ""
	if i < len(prev) {
		p = prev[i]
	}
	return safeString(b, p)
}

func parseSupportedVersions(ext []byte, out *flowpb.TLSInfo) error {
	if len(ext) < 1 || int(ext[0])+1 != len(ext) || ext[0]%2 != 0 {
		return errTLSSuppVers
	}
	best := 0
	for l := ext[1:]; len(l) >= 2; l = l[2:] {
		v := be16(l)
		if isGREASE(v) {
			continue
		}
		if v > best {
			best = v
		}
	}
	if best != 0 {
		out.Version = uint32(best)
	}
	return nil
}

// isGREASE reports RFC 8701 reserved values (0x?A?A with equal bytes).
func isGREASE(v int) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }
