package transport

import (
	"bytes"
	"context"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// FuzzJSONLReader: any input splits into exactly the non-blank lines an
// independent strings-based split finds, with correct line numbers.
func FuzzJSONLReader(f *testing.F) {
	f.Add([]byte("{\"id\":\"a\"}\n\n  {\"id\":\"b\"}  \r\n{\"id\":\"c\"}"), 3)
	f.Add([]byte(""), 1)
	f.Add([]byte("\n\n\n"), 2)
	f.Fuzz(func(t *testing.T, data []byte, batch int) {
		batch = 1 + (batch&0xff)%16
		type line struct {
			n int64
			v string
		}
		var want []line
		for i, l := range bytes.Split(data, []byte("\n")) {
			if tl := bytes.TrimSpace(l); len(tl) > 0 {
				want = append(want, line{int64(i + 1), string(tl)})
			}
		}
		r := NewJSONLReader(bytes.NewReader(data), "fuzz", batch)
		var got []line
		for {
			msgs, err := r.Fetch(context.Background())
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 || len(msgs) > batch {
				t.Fatalf("batch of %d (max %d)", len(msgs), batch)
			}
			for _, m := range msgs {
				got = append(got, line{m.Offset, string(m.Value)})
			}
		}
		if len(got) != len(want) {
			t.Fatalf("got %d lines, want %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("line %d: got %+v want %+v", i, got[i], want[i])
			}
		}
	})
}

// FuzzDecodeFlow: arbitrary bytes never crash the decoder, and whatever
// decodes re-encodes to an equal record.
func FuzzDecodeFlow(f *testing.F) {
	f.Add(mustMarshal(sampleFlow(1)))
	f.Add(mustMarshal(flowWithSnippets(2)))
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := &flowpb.FlowRecord{}
		if Decode(data, FormatProto, rec) != nil {
			return
		}
		b, err := AppendEncoded(nil, rec, FormatProto)
		if err != nil {
			t.Fatal(err)
		}
		again := &flowpb.FlowRecord{}
		if err := Decode(b, FormatProto, again); err != nil || !proto.Equal(rec, again) {
			t.Fatalf("re-encode changed the record: %v", err)
		}
	})
}
