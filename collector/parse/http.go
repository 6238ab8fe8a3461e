package parse

import (
	"bytes"
	"fmt"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

var (
	errHTTPLine    = fmt.Errorf("http: request line: %w", ErrTruncated)
	errHTTPMethod  = fmt.Errorf("http: request line: method is not a token: %w", ErrNotThisProtocol)
	errHTTPVersion = fmt.Errorf("http: request line: not HTTP/1.x: %w", ErrNotThisProtocol)
	errHTTPTarget  = fmt.Errorf("http: request line: bad request target: %w", ErrMalformed)
	errHTTPHeaders = fmt.Errorf("http: header block: %w", ErrTruncated)
	errHTTPTooMany = fmt.Errorf("http: header block: more than %d lines: %w", maxHTTPLines, ErrUnsupported)
)

// maxMethod bounds the method token (the longest registered one is 17 bytes).
const maxMethod = 24

// HTTPRequest decodes the start of an HTTP/1.0 or HTTP/1.1 request into out:
// the request line (Method, Path including the query string), Host,
// User-Agent, Content-Type and Content-Encoding, the other headers in order
// (at most MaxHTTPHeaders, values cut at MaxHTTPHeaderValue bytes) and, after
// the blank line, up to MaxHTTPBodyPrefix body bytes. Header names are cut at
// MaxHTTPHeaderName and all values (Host and User-Agent included) at
// MaxHTTPHeaderValue bytes.
//
// Header names are kept as sent. Line endings may be CRLF or bare LF. When the
// bytes end inside the header block, the complete lines are decoded and
// ErrTruncated is returned.
func HTTPRequest(b []byte, out *flowpb.HTTPInfo) error {
	out.Method, out.Path = "", ""
	out.Host, out.UserAgent, out.ContentType, out.ContentEncoding = "", "", "", ""
	out.Headers = out.Headers[:0]
	out.BodyPrefix = out.BodyPrefix[:0]
	line, rest, ok := cutLine(b)
	if !ok {
		// Without the line end we cannot know the version, but a cut request
		// line still names the method and a prefix of the target; decode it
		// when it looks like HTTP, since long URLs are where data leaks.
		if err := requestLine(line, out, true); err != nil {
			return err
		}
		return errHTTPLine
	}
	if err := requestLine(line, out, false); err != nil {
		return err
	}
	for n := 0; ; n++ {
		if n >= maxHTTPLines {
			return errHTTPTooMany
		}
		line, rest, ok = cutLine(rest)
		if !ok {
			return errHTTPHeaders
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obsolete line folding (RFC 9112 §5.2): ignore continuation
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue // not a header field; tolerate like most servers do
		}
		name := line[:colon]
		if len(name) > MaxHTTPHeaderName {
			name = name[:MaxHTTPHeaderName]
		}
		value := bytes.TrimRight(bytes.TrimLeft(line[colon+1:], " \t"), " \t")
		if len(value) > MaxHTTPHeaderValue {
			value = value[:MaxHTTPHeaderValue]
		}
		switch {
		case asciiEqualFold(name, "host"):
			out.Host = textString(value, out.Host)
		case asciiEqualFold(name, "user-agent"):
			out.UserAgent = textString(value, out.UserAgent)
		case asciiEqualFold(name, "content-type"):
			out.ContentType = textString(value, out.ContentType)
		case asciiEqualFold(name, "content-encoding"):
			out.ContentEncoding = textString(value, out.ContentEncoding)
		default:
			if len(out.Headers) >= MaxHTTPHeaders {
				continue
			}
			out.Headers = appendHeader(out.Headers, name, value)
		}
	}
	if len(rest) > MaxHTTPBodyPrefix {
		rest = rest[:MaxHTTPBodyPrefix]
	}
	if len(rest) > 0 {
		out.BodyPrefix = append(out.BodyPrefix, rest...)
	}
	return nil
}

// requestLine decodes "METHOD SP target SP HTTP/1.x". With cut set the line
// was not terminated: the version may be missing and the target incomplete.
func requestLine(line []byte, out *flowpb.HTTPInfo, cut bool) error {
	if cut && len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		if cut && len(line) <= maxMethod && isToken(line) {
			return errHTTPLine
		}
		return errHTTPMethod
	}
	if sp == 0 || sp > maxMethod || !isToken(line[:sp]) {
		return errHTTPMethod
	}
	method := line[:sp]
	target := line[sp+1:]
	if sp2 := bytes.IndexByte(target, ' '); sp2 >= 0 {
		version := target[sp2+1:]
		target = target[:sp2]
		// A cut line may end inside the version; a complete one must
		// name HTTP/1.0 or HTTP/1.1 exactly.
		if !bytes.Equal(version, []byte("HTTP/1.1")) && !bytes.Equal(version, []byte("HTTP/1.0")) &&
			!(cut && len(version) < 8 && bytes.HasPrefix([]byte("HTTP/1.1"), version)) {
			return errHTTPVersion
		}
	} else if !cut {
		return errHTTPVersion // HTTP/0.9 simple requests are not supported
	}
	if len(target) == 0 {
		if cut && len(line) == sp+1 {
			return errHTTPLine
		}
		return errHTTPTarget
	}
	if len(target) > MaxHTTPPath {
		target = target[:MaxHTTPPath]
	}
	out.Method = methodString(method, out.Method)
	out.Path = textString(target, out.Path)
	return nil
}

// cutLine splits b at the first LF, dropping a CR before it. ok is false when
// there is no LF (line is then all of b).
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

// isToken reports whether b is an RFC 9110 token.
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

// looksLikeHTTPRequest is the cheap content test Fill uses before parsing:
// a method token of known shape followed by a space.
func looksLikeHTTPRequest(b []byte) bool {
	sp := bytes.IndexByte(b[:min(len(b), maxMethod+1)], ' ')
	return sp > 0 && isToken(b[:sp]) && b[0] >= 'A' && b[0] <= 'Z'
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// methodString returns registered methods as constants (no allocation).
func methodString(b []byte, prev string) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "HEAD":
		return "HEAD"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return textString(b, prev)
}

// appendHeader appends a header, reusing a *HTTPHeader (and its strings when
// equal) left in the slice's spare capacity by a previous fill.
func appendHeader(hs []*flowpb.HTTPHeader, name, value []byte) []*flowpb.HTTPHeader {
	var h *flowpb.HTTPHeader
	if len(hs) < cap(hs) {
		h = hs[:len(hs)+1][len(hs)]
	}
	if h == nil {
		h = &flowpb.HTTPHeader{}
	}
	h.Name = textString(name, h.Name)
	h.Value = textString(value, h.Value)
	return append(hs, h)
}
