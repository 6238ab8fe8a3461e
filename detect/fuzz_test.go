package detect

import (
	"bytes"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"google.golang.org/protobuf/proto"
)

// FuzzProcess feeds arbitrary (wire-decoded) records through every detector:
// Process must never panic whatever enrich or a corrupt topic hands it, and
// a snapshot of the resulting state must restore.
func FuzzProcess(f *testing.F) {
	for _, r := range []*flowpb.FlowRecord{
		flow("dev1", at(time.Minute), "203.0.113.9", sni("a.example.com"), match("imei", "raw", "http.path", true)),
		flow("dev1", at(time.Minute), "10.0.0.53", dnsQuery("x.y.example.co.uk")),
		flow("", 0, "8.8.8.8", func(r *flowpb.FlowRecord) { r.Enrichment = nil; r.DstAddr = nil }),
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	c := DefaultConfig()
	c.Policy.Groups = map[string]GroupPolicy{"lab": {DenyCountries: []string{"CN"}}, "*": {AllowASNs: []uint32{15169}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r flowpb.FlowRecord
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		e, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		emit := func(a *flowpb.Alert) {
			if a.Id != AlertID(a.DedupKey, a.WindowStartNs) {
				t.Fatalf("alert id %s not derived from %q", a.Id, a.DedupKey)
			}
		}
		e.Process(&r, emit)
		e.Process(&r, emit)
		e.Flush(recordTime(&r)+int64(48*time.Hour), emit)
		var buf bytes.Buffer
		if err := e.Snapshot(&buf); err != nil {
			t.Fatal(err)
		}
		if err := newEngine(t, c).Restore(&buf); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRestore checks that a corrupt snapshot file yields an error, not a
// panic, and that whatever restores can be processed against.
func FuzzRestore(f *testing.F) {
	e := newEngine(f, DefaultConfig())
	var s sink
	for i := 0; i < 8; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Hour), "203.0.113.7", sni("c2.example.net"), match("imei", "raw", "http.path", true)), s.emit)
		e.Process(flow("dev1", at(time.Duration(i)*time.Hour), "10.0.0.53", dnsQuery("n1.exfil.example")), s.emit)
	}
	var buf bytes.Buffer
	if err := e.Snapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := newEngine(t, DefaultConfig())
		if e.Restore(bytes.NewReader(b)) != nil {
			return
		}
		var s sink
		e.Process(flow("dev1", at(9*time.Hour), "203.0.113.7", sni("c2.example.net")), s.emit)
		e.Process(flow("dev1", at(9*time.Hour), "10.0.0.53", dnsQuery("n2.exfil.example")), s.emit)
		e.Flush(at(100*time.Hour), s.emit)
	})
}
