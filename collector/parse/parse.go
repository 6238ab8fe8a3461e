// Package parse turns the first payload bytes of a flow (flowpb.Snippet) into
// the structured DNS, TLS and HTTP fields of a flowpb.FlowRecord.
//
// The same code runs for live eBPF capture and for pcap replay. Every byte it
// reads comes from the network, so the parsers are written for hostile input:
// they never panic, do work bounded by the input size (and by the constants
// below), allocate only for the output fields, and report failures with
// wrapped sentinel errors (ErrTruncated, ErrMalformed, ErrNotThisProtocol,
// ErrDecrypt, ErrUnsupported) that callers can test with errors.Is.
//
// Partial input is the normal case (snippets are cut at a capture length), so
// each parser fills every field whose bytes are complete before reporting
// ErrTruncated for the rest.
package parse

import (
	"errors"
	"unicode/utf8"
)

// Sentinel errors. Every error returned by this package wraps exactly one.
var (
	// ErrTruncated: the input ended before the structure was complete.
	// Fields decoded before the cut are still set.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: the input violates the protocol's encoding rules.
	ErrMalformed = errors.New("malformed")
	// ErrNotThisProtocol: the input does not start like the protocol the
	// parser was asked for (e.g. a TLS record that is not a handshake).
	ErrNotThisProtocol = errors.New("not this protocol")
	// ErrDecrypt: QUIC Initial payload failed AEAD authentication.
	ErrDecrypt = errors.New("decryption failed")
	// ErrUnsupported: well-formed but outside what the parser handles
	// (e.g. an unknown QUIC version).
	ErrUnsupported = errors.New("unsupported")
)

// Bounds on work and output size. They are constants rather than settings:
// they protect the collector from hostile input, and the output schema's
// consumers assume them.
const (
	// MaxDNSAnswers is the most A/AAAA answers kept per response.
	MaxDNSAnswers = 16
	// maxDNSRecords bounds the resource records walked in one message.
	maxDNSRecords = 64
	// maxNamePointers bounds compression pointers followed for one name.
	maxNamePointers = 16
	// MaxHTTPHeaders is the most "other" headers kept per request.
	MaxHTTPHeaders = 32
	// MaxHTTPHeaderName is the longest header name kept (longer ones are cut).
	MaxHTTPHeaderName = 128
	// MaxHTTPHeaderValue is the longest header value kept (longer ones are cut).
	MaxHTTPHeaderValue = 512
	// MaxHTTPPath is the longest request target kept (longer ones are cut).
	MaxHTTPPath = 2048
	// MaxHTTPBodyPrefix is the most body bytes kept after the header block.
	MaxHTTPBodyPrefix = 512
	// maxHTTPLines bounds the header lines scanned (kept or not).
	maxHTTPLines = 128
	// MaxALPN is the most ALPN protocol names kept.
	MaxALPN = 16
	// maxClientHello bounds a reassembled ClientHello (records or CRYPTO
	// frames). Real ones, even with post-quantum key shares, are < 8 KiB.
	maxClientHello = 16384
	// maxStream bounds the TCP bytes Fill reassembles from snippets.
	maxStream = 16384
	// maxSnippets bounds the snippets Fill looks at per record.
	maxSnippets = 64
)

// be16 and be24 read big-endian integers; callers check lengths first.
func be16(b []byte) int { return int(b[0])<<8 | int(b[1]) }
func be24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// needsEscape reports whether c cannot appear verbatim in a presentation
// string: control characters, DEL, the escape character itself and any
// non-ASCII byte (names and SNIs on the wire are opaque octets, while proto3
// strings must be valid UTF-8).
func needsEscape(c byte) bool { return c < 0x20 || c >= 0x7f || c == '\\' }

// appendEscaped appends b with every byte for which needsEscape holds written
// as \DDD (decimal, as in RFC 1035 master files and dig output).
func appendEscaped(dst, b []byte) []byte {
	for _, c := range b {
		if !needsEscape(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
	}
	return dst
}

// safeString converts opaque wire bytes to a valid UTF-8 string, escaping
// bytes as appendEscaped does. It returns prev unchanged (no allocation) when
// the result would equal it, which is common when a record is refilled.
func safeString(b []byte, prev string) string {
	clean := true
	for _, c := range b {
		if needsEscape(c) {
			clean = false
			break
		}
	}
	if clean {
		if string(b) == prev {
			return prev
		}
		return string(b)
	}
	var buf [1024]byte
	e := appendEscaped(buf[:0], b)
	if string(e) == prev {
		return prev
	}
	return string(e)
}

// textString is safeString for text protocols (HTTP) where UTF-8 is common and
// legitimate: valid UTF-8 without control characters is kept verbatim.
func textString(b []byte, prev string) string {
	if utf8.Valid(b) {
		ok := true
		for _, c := range b {
			if c < 0x20 && c != '\t' || c == 0x7f {
				ok = false
				break
			}
		}
		if ok {
			if string(b) == prev {
				return prev
			}
			return string(b)
		}
	}
	return safeString(b, prev)
}
