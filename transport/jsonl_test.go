package transport

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func writeJSONL(t *testing.T, path string, n int) {
	t.Helper()
	w, err := CreateJSONLWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := 0; i < n; i++ {
		v, err := AppendEncoded(nil, sampleFlow(i), FormatJSON)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, Message{Value: v, Format: FormatJSON})
	}
	if err := w.Write(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAllJSONL(t *testing.T, r Reader) []*flowpb.FlowRecord {
	t.Helper()
	var out []*flowpb.FlowRecord
	for {
		batch, err := r.Fetch(context.Background())
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			rec := &flowpb.FlowRecord{}
			if err := Decode(m.Value, m.Format, rec); err != nil {
				t.Fatalf("line %d: %v", m.Offset, err)
			}
			out = append(out, rec)
		}
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	writeJSONL(t, path, 1000)
	r, err := OpenJSONLReader(path, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := readAllJSONL(t, r)
	if len(got) != 1000 {
		t.Fatalf("read %d records, want 1000", len(got))
	}
	for i, rec := range got {
		if !proto.Equal(rec, sampleFlow(i)) {
			t.Fatalf("record %d changed:\n%v\n%v", i, rec, sampleFlow(i))
		}
	}
}

// TestJSONLReadableByJq checks the files with an independent JSON parser.
func TestJSONLReadableByJq(t *testing.T) {
	jq := testenv.Tool(t, "jq")
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	writeJSONL(t, path, 20)
	out, err := exec.Command(jq, "-r", ".id + \" \" + .tls.sni + \" \" + .direction", path).Output()
	if err != nil {
		t.Fatalf("jq: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 20 {
		t.Fatalf("jq read %d records, want 20", len(lines))
	}
	for i, l := range lines {
		want := sampleFlow(i).Id + " telemetry.example.com DIRECTION_OUTBOUND"
		if l != want {
			t.Fatalf("jq line %d = %q, want %q", i, l, want)
		}
	}
}

func TestJSONLLongLinesAndBlanks(t *testing.T) {
	rec := sampleFlow(3)
	rec.Http = &flowpb.HTTPInfo{Path: "/" + strings.Repeat("a", 3<<20)} // longer than the 1 MiB read buffer
	v, err := AppendEncoded(nil, rec, FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	in := "\n  " + string(v) + "  \r\n\n" + string(v) // no trailing newline on the last line
	r := NewJSONLReader(strings.NewReader(in), "mem", 10)
	got := readAllJSONL(t, r)
	if len(got) != 2 || !proto.Equal(got[0], rec) || !proto.Equal(got[1], rec) {
		t.Fatalf("got %d records", len(got))
	}
}

// TestJSONLBadLine: without a dead-letter writer the stage stops with an
// error naming the line; with one, the line is dead-lettered and later
// records are processed.
func TestJSONLBadLine(t *testing.T) {
	good := func(i int) string {
		v, _ := AppendEncoded(nil, sampleFlow(i), FormatJSON)
		return string(v)
	}
	input := good(0) + "\n" + good(1) + "\n{\"id\": \"x\", \"bytesOut\": \"lots\"}\n" + good(3) + "\n"

	out := &memWriter{format: FormatJSON}
	err := Run(context.Background(), testConfig(), NewJSONLReader(strings.NewReader(input), "flows.jsonl", 100), out, nil, passStage())
	if err == nil || !strings.Contains(err.Error(), "flows.jsonl line 3:") {
		t.Fatalf("want an error naming flows.jsonl line 3, got %v", err)
	}

	dlq := &memWriter{format: FormatJSON}
	if err := Run(context.Background(), testConfig(), NewJSONLReader(strings.NewReader(input), "flows.jsonl", 2), out, dlq, passStage()); err != nil {
		t.Fatal(err)
	}
	vals, _, _ := out.snapshot()
	if got := decodeFlows(t, vals, FormatJSON); len(got) != 3 || got[sampleFlow(3).Id] == nil {
		t.Fatalf("good records not all processed: %d", len(got))
	}
	dls, _, _ := dlq.snapshot()
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := &flowpb.DeadLetter{}
	if err := Decode(dls[0], FormatJSON, dl); err != nil {
		t.Fatal(err)
	}
	if dl.Offset != 3 || dl.SourceTopic != "flows.jsonl" || !strings.Contains(dl.Reason, "bytesOut") || !strings.Contains(string(dl.Payload), "lots") {
		t.Fatalf("dead letter %+v", dl)
	}
}

// TestJSONLStdio runs a stage from "-" (stdin) to "-" (stdout).
func TestJSONLStdio(t *testing.T) {
	inPath := filepath.Join(t.TempDir(), "in.jsonl")
	writeJSONL(t, inPath, 50)
	stdin, err := os.Open(inPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	outPath := filepath.Join(t.TempDir(), "out.jsonl")
	stdout, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = stdin, stdout
	defer func() { os.Stdin, os.Stdout = oldIn, oldOut }()

	r, err := OpenJSONLReader("-", 16)
	if err != nil {
		t.Fatal(err)
	}
	w, err := CreateJSONLWriter("-")
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), testConfig(), r, w, nil, passStage()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	os.Stdin, os.Stdout = oldIn, oldOut
	stdout.Close()

	f, err := OpenJSONLReader(outPath, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := readAllJSONL(t, f)
	if len(got) != 50 {
		t.Fatalf("stdout had %d records, want 50", len(got))
	}
	for i, rec := range got {
		want := sampleFlow(i)
		want.Gateway = "processed"
		if !proto.Equal(rec, want) {
			t.Fatalf("record %d: %v", i, rec)
		}
	}
}
