package ident

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// maxStreamInput bounds what MatchStream reads.
const maxStreamInput = 16 << 20

// MatchStream reads text or one raw HTTP request from r and writes one JSON
// object per match to w: the backend of `exfilwatch match --inventory FILE`.
// An HTTP request is split into path, host, headers and body (with its
// Content-Encoding) like the pipeline's HTTP parser does; anything else is
// scanned as one field named "input". At most ident.max_scan_bytes are
// scanned (the rest is ignored, as in the pipeline).
func MatchStream(w io.Writer, idx *Index, r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, maxStreamInput))
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	s := idx.NewScanner()
	enc := json.NewEncoder(w)
	var werr error
	write := func(m *flowpb.IdentifierMatch) {
		if werr != nil {
			return
		}
		werr = enc.Encode(jsonMatch{
			Device: m.DeviceId, Type: m.IdentifierType, Form: m.Form, Field: m.Field,
			Offset: m.Offset, Cleartext: m.Cleartext, Layers: m.Layers,
		})
	}
	if rec, ok := parseHTTPRequest(data); ok {
		s.ScanRecord(rec)
		for _, m := range rec.Enrichment.GetMatches() {
			write(m)
		}
	} else {
		s.Scan("input", data, true, write)
	}
	if werr != nil {
		return fmt.Errorf("write matches: %w", werr)
	}
	return nil
}

type jsonMatch struct {
	Device    string `json:"device_id"`
	Type      string `json:"identifier_type"`
	Form      string `json:"form"`
	Field     string `json:"field"`
	Offset    uint32 `json:"offset"`
	Cleartext bool   `json:"cleartext"`
	Layers    uint32 `json:"layers"`
}

var httpMethods = []string{"GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "HEAD ", "OPTIONS "}

// parseHTTPRequest turns a raw HTTP/1.x request into a FlowRecord's HTTPInfo.
func parseHTTPRequest(data []byte) (*flowpb.FlowRecord, bool) {
	isReq := false
	for _, m := range httpMethods {
		if bytes.HasPrefix(data, []byte(m)) {
			isReq = true
		}
	}
	if !isReq {
		return nil, false
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, false
	}
	h := &flowpb.HTTPInfo{
		Method:          req.Method,
		Host:            req.Host,
		Path:            req.RequestURI,
		UserAgent:       req.UserAgent(),
		ContentType:     req.Header.Get("Content-Type"),
		ContentEncoding: req.Header.Get("Content-Encoding"),
	}
	for name, vals := range req.Header {
		if strings.EqualFold(name, "User-Agent") {
			continue
		}
		for _, v := range vals {
			h.Headers = append(h.Headers, &flowpb.HTTPHeader{Name: name, Value: v})
		}
	}
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20)) // a truncated body is still scanned
	h.BodyPrefix = body
	return &flowpb.FlowRecord{Http: h}, true
}
