package parse

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// writeRequest serialises a request with net/http (independent encoder).
func writeRequest(t testing.TB, method, target string, header http.Header, body []byte) []byte {
	t.Helper()
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHTTPRequestFromNetHTTP(t *testing.T) {
	form := url.Values{"imei": {"356938035643809"}, "note": {"a b&c"}}.Encode()
	tests := []struct {
		name   string
		method string
		target string
		header http.Header
		body   []byte
	}{
		{"get with query", "GET", "http://tracker.example.com:8080/v1/collect?id=42&q=%2Fx&flag", http.Header{
			"User-Agent": {"Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7)"}, "X-Device-Id": {"abc123"}, "Accept": {"*/*"}}, nil},
		{"form post", "POST", "http://api.example.org/login", http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"}, "X-Imei": {"356938035643809"}, "Cookie": {"s=1; t=2"}}, []byte(form)},
		{"gzip post", "PUT", "http://upload.example.net/blob?name=x.bin", http.Header{
			"Content-Type": {"application/octet-stream"}, "Content-Encoding": {"gzip"}}, gzipped(t, bytes.Repeat([]byte("secret "), 200))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := writeRequest(t, tc.method, tc.target, tc.header, tc.body)
			// The reference: net/http's own reader.
			ref, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			var got flowpb.HTTPInfo
			if err := HTTPRequest(raw, &got); err != nil {
				t.Fatalf("HTTPRequest: %v", err)
			}
			if got.Method != ref.Method || got.Host != ref.Host || got.Path != ref.RequestURI || got.UserAgent != ref.UserAgent() ||
				got.ContentType != ref.Header.Get("Content-Type") || got.ContentEncoding != ref.Header.Get("Content-Encoding") {
				t.Errorf("got %s %q host=%q ua=%q ct=%q ce=%q; net/http %s %q host=%q ua=%q ct=%q ce=%q",
					got.Method, got.Path, got.Host, got.UserAgent, got.ContentType, got.ContentEncoding,
					ref.Method, ref.RequestURI, ref.Host, ref.UserAgent(), ref.Header.Get("Content-Type"), ref.Header.Get("Content-Encoding"))
			}
			// Other headers: exactly net/http's set minus the four promoted
			// ones, in wire order.
			want := 0
			for k := range ref.Header {
				switch k {
				case "User-Agent", "Content-Type", "Content-Encoding":
				default:
					want++
				}
			}
			if len(got.Headers) != want {
				t.Errorf("%d other headers, net/http has %d: %v", len(got.Headers), want, got.Headers)
			}
			last := -1
			for _, h := range got.Headers {
				if v := ref.Header.Get(h.Name); v != h.Value {
					t.Errorf("header %s = %q, net/http %q", h.Name, h.Value, v)
				}
				at := bytes.Index(raw, []byte("\r\n"+h.Name+": "))
				if at <= last {
					t.Errorf("header %s out of wire order", h.Name)
				}
				last = at
			}
			wantBody := tc.body[:min(len(tc.body), MaxHTTPBodyPrefix)]
			if !bytes.Equal(got.BodyPrefix, wantBody) {
				t.Errorf("body prefix %q, want %q", got.BodyPrefix, wantBody)
			}
			// Cut anywhere: complete header lines are still decoded.
			for n := 1; n < len(raw); n++ {
				var p flowpb.HTTPInfo
				err := HTTPRequest(raw[:n], &p)
				headEnd := bytes.Index(raw, []byte("\r\n\r\n")) + 4
				if n < headEnd && !errors.Is(err, ErrTruncated) || n >= headEnd && err != nil {
					t.Fatalf("cut at %d (head ends %d): err %v", n, headEnd, err)
				}
				if ua := bytes.Index(raw, []byte("\r\nUser-Agent: ")); ua > 0 && n >= ua+2+bytes.IndexByte(raw[ua+2:], '\n')+1 && p.UserAgent != ref.UserAgent() {
					t.Fatalf("cut at %d: user agent %q not decoded", n, p.UserAgent)
				}
				if lineEnd := bytes.IndexByte(raw, '\n'); n > lineEnd && p.Path != ref.RequestURI {
					t.Fatalf("cut at %d: path %q", n, p.Path)
				}
			}
		})
	}
}

func TestHTTPHostile(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"tls bytes", "\x16\x03\x01\x02\x00", ErrNotThisProtocol},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrNotThisProtocol},
		{"response", "HTTP/1.1 200 OK\r\n\r\n", ErrNotThisProtocol},
		{"no target", "GET  HTTP/1.1\r\n\r\n", ErrMalformed},
		{"simple request", "GET /\r\n", ErrNotThisProtocol},
		{"only method", "GET", ErrTruncated},
		{"too many lines", "GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", 200) + "\r\n", ErrUnsupported},
	}
	for _, tc := range tests {
		var out flowpb.HTTPInfo
		if err := HTTPRequest([]byte(tc.in), &out); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Bounds: header count, value length, path length; invalid UTF-8 escaped.
	var b strings.Builder
	b.WriteString("POST /" + strings.Repeat("p", 5000) + " HTTP/1.1\r\nHost: h\xff\r\n")
	b.WriteString("User-Agent: " + strings.Repeat("u", 3000) + "\r\n" + strings.Repeat("N", 3000) + ": v\r\n")
	for i := 0; i < 100; i++ {
		b.WriteString("X-" + strconv.Itoa(i) + ": " + strings.Repeat("v", 1000) + "\r\n")
	}
	b.WriteString("\r\n" + strings.Repeat("B", 5000))
	var out flowpb.HTTPInfo
	if err := HTTPRequest([]byte(b.String()), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Headers) != MaxHTTPHeaders || len(out.Headers[0].Name) != MaxHTTPHeaderName || len(out.Headers[1].Value) != MaxHTTPHeaderValue ||
		len(out.UserAgent) != MaxHTTPHeaderValue || len(out.Path) != MaxHTTPPath ||
		len(out.BodyPrefix) != MaxHTTPBodyPrefix || out.Host != `h\255` {
		t.Errorf("bounds: %d headers, value %d, path %d, body %d, host %q", len(out.Headers), len(out.Headers[1].Value), len(out.Path), len(out.BodyPrefix), out.Host)
	}
}

// TestHTTPPcapsVsTshark compares the first request of every TCP stream with
// tshark (body desegmentation off, so requests with cut bodies are listed).
func TestHTTPPcapsVsTshark(t *testing.T) {
	for _, name := range []string{"sv-http-android-dalvik-ua.pcap", "sv-http-post-file.pcap", "zeek-http-putty-upload.pcap", "zeek-communityid-tcp.pcap"} {
		t.Run(name, func(t *testing.T) {
			path := pcapPath(t, name)
			rows := tsharkFields(t, path, "http.request", []string{"-o", "http.desegment_body:FALSE"},
				"tcp.stream", "http.request.method", "http.host", "http.request.uri", "http.user_agent", "http.content_type", "http.content_encoding")
			if len(rows) == 0 {
				t.Fatal("tshark found no request")
			}
			var tcp []*flowpb.FlowRecord
			for _, r := range pcapFlows(t, path, 0) {
				if r.Protocol == protoTCP {
					tcp = append(tcp, r)
				}
			}
			done := map[string]bool{}
			for _, row := range rows {
				if done[row[0]] {
					continue
				}
				done[row[0]] = true
				stream, _ := strconv.Atoi(row[0])
				if stream >= len(tcp) {
					t.Fatalf("tshark stream %d, gopacket found %d TCP flows", stream, len(tcp))
				}
				Fill(tcp[stream])
				got := tcp[stream].Http
				if got == nil {
					t.Fatalf("stream %d: Fill set no HTTP info", stream)
				}
				if got.Method != row[1] || got.Host != row[2] || got.Path != row[3] || got.UserAgent != row[4] || got.ContentType != row[5] || got.ContentEncoding != row[6] {
					t.Errorf("stream %d: got %q %q %q %q %q %q; tshark %q", stream, got.Method, got.Host, got.Path, got.UserAgent, got.ContentType, got.ContentEncoding, row[1:])
				}
				t.Logf("stream %d: %s %s%s (%d other headers, %d body bytes)", stream, got.Method, got.Host, got.Path, len(got.Headers), len(got.BodyPrefix))
			}
		})
	}
}
