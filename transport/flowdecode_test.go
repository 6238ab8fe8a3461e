package transport

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/exfilwatch/exfilwatch/internal/strarena"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// randomFlow returns a FlowRecord with every field random (fillRandom), then
// with a random subset of fields cleared, so that sub-messages and lists
// come and go between consecutive records decoded into the same message.
func randomFlow(rng *rand.Rand) *flowpb.FlowRecord {
	switch rng.IntN(8) {
	case 0:
		return &flowpb.FlowRecord{}
	case 1:
		return sampleFlow(rng.IntN(1 << 16))
	case 2:
		return flowWithSnippets(rng.IntN(1 << 16))
	}
	r := &flowpb.FlowRecord{}
	fillRandom(rng, r.ProtoReflect(), 0)
	clearSome(rng, r.ProtoReflect())
	return r
}

// clearSome clears each populated field with probability 1/3, recursively.
func clearSome(rng *rand.Rand, m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case rng.IntN(3) == 0:
			m.Clear(fd)
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				clearSome(rng, v.List().Get(i).Message())
			}
		case !fd.IsList() && fd.Message() != nil:
			clearSome(rng, v.Message())
		}
		return true
	})
}

// checkDecode decodes b with d into into and compares the result, and the
// error, with proto.Unmarshal into a fresh message.
func checkDecode(t *testing.T, d *flowDecoder, into *flowpb.FlowRecord, b []byte) {
	t.Helper()
	want := &flowpb.FlowRecord{}
	werr := proto.Unmarshal(b, want)
	gerr := d.decode(b, into)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("decode error %v, proto.Unmarshal error %v, input %x", gerr, werr, b)
	}
	if werr != nil {
		return
	}
	if !proto.Equal(into, want) {
		t.Fatalf("decoded record differs from proto.Unmarshal:\n got %v\nwant %v", into, want)
	}
	// Re-encoding must give the same bytes too (unknown fields included).
	o := proto.MarshalOptions{Deterministic: true}
	gb, err1 := o.Marshal(into)
	wb, err2 := o.Marshal(want)
	if err1 != nil || err2 != nil || string(gb) != string(wb) {
		t.Fatalf("re-encoding differs (%v, %v)", err1, err2)
	}
}

// TestFlowDecoderMatchesUnmarshal: thousands of random records decoded one
// after another into one reused message equal proto.Unmarshal's results,
// and the fast path (not the fallback) decoded them.
func TestFlowDecoderMatchesUnmarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	d := newFlowDecoder()
	d.internMax = 64 // exercise the intern-cache reset
	into := &flowpb.FlowRecord{}
	const n = 5000
	for i := 0; i < n; i++ {
		checkDecode(t, d, into, mustMarshal(randomFlow(rng)))
	}
	if d.fallbacks != 0 || d.fastDecodes != n {
		t.Fatalf("%d fast decodes, %d fallbacks; want all %d on the fast path", d.fastDecodes, d.fallbacks, n)
	}
}

// TestFlowDecoderMerges: concatenated encodings merge (scalars: last wins,
// lists append, singular messages merge), as proto.Unmarshal does.
func TestFlowDecoderMerges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	d := newFlowDecoder()
	into := &flowpb.FlowRecord{}
	for i := 0; i < 1000; i++ {
		b := mustMarshal(randomFlow(rng))
		b = append(b, mustMarshal(randomFlow(rng))...)
		checkDecode(t, d, into, b)
	}
	if d.fallbacks != 0 {
		t.Fatalf("%d fallbacks on merged valid records", d.fallbacks)
	}
}

// TestFlowDecoderFallback: inputs the fast path leaves to proto.Unmarshal
// (unknown fields, a known field with another wire type, invalid UTF-8,
// truncation, garbage) give proto.Unmarshal's result or error, and the
// decoder works normally afterwards.
func TestFlowDecoderFallback(t *testing.T) {
	d := newFlowDecoder()
	into := &flowpb.FlowRecord{}
	base := mustMarshal(flowWithSnippets(7))
	enriched := flowWithSnippets(8)
	enriched.Enrichment = &flowpb.Enrichment{SrcGeo: &flowpb.Geo{Country: "DE"}, Matches: []*flowpb.IdentifierMatch{{DeviceId: "d1"}}}
	cases := map[string][]byte{
		"unknown varint field":   protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), base...), 99, protowire.VarintType), 5),
		"unknown nested field":   protowire.AppendBytes(protowire.AppendTag(nil, 31, protowire.BytesType), protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1)),
		"wire type mismatch":     protowire.AppendBytes(protowire.AppendTag(append([]byte(nil), base...), 1, protowire.BytesType), []byte("x")),
		"fixed32 field":          protowire.AppendFixed32(protowire.AppendTag(nil, 3, protowire.Fixed32Type), 7),
		"invalid utf-8 id":       protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xff, 0xfe}),
		"invalid utf-8 nested":   protowire.AppendBytes(protowire.AppendTag(nil, 31, protowire.BytesType), protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xc3})),
		"truncated":              base[:len(base)-3],
		"truncated enrichment":   mustMarshal(enriched)[:len(mustMarshal(enriched))-2],
		"garbage":                []byte("\xff\xfenot protobuf"),
		"field number zero":      {0x00, 0x01},
		"group":                  protowire.AppendTag(protowire.AppendTag(nil, 50, protowire.StartGroupType), 50, protowire.EndGroupType),
		"empty":                  {},
		"enriched (fast)":        mustMarshal(enriched),
		"duplicate nested merge": append(mustMarshal(enriched), mustMarshal(enriched)...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			checkDecode(t, d, into, b)
			checkDecode(t, d, into, base) // and recovers
		})
	}
}

// TestFlowDecoderOwnership: objects a stage put into the record are never
// written by the next decode, and byte fields cannot overwrite each other
// through append.
func TestFlowDecoderOwnership(t *testing.T) {
	d := newFlowDecoder()
	into := &flowpb.FlowRecord{}
	b := mustMarshal(sampleFlow(3))
	if err := d.decode(b, into); err != nil {
		t.Fatal(err)
	}
	mine := &flowpb.TLSInfo{Sni: "mine"}
	into.Tls = mine
	enr := &flowpb.Enrichment{Matches: []*flowpb.IdentifierMatch{{DeviceId: "mine"}}}
	into.Enrichment = enr
	other := sampleFlow(4)
	other.Enrichment = &flowpb.Enrichment{Matches: []*flowpb.IdentifierMatch{{DeviceId: "theirs"}}}
	if err := d.decode(mustMarshal(other), into); err != nil {
		t.Fatal(err)
	}
	if mine.Sni != "mine" || enr.Matches[0].DeviceId != "mine" || into.Tls == mine || into.Enrichment == enr {
		t.Fatalf("decode wrote into stage-owned objects: %v %v", mine, enr)
	}
	dst := append([]byte(nil), into.DstAddr...)
	into.SrcAddr = append(into.SrcAddr, 1, 2, 3, 4)
	if string(into.DstAddr) != string(dst) {
		t.Fatal("appending to src_addr changed dst_addr")
	}
}

// FuzzFlowDecoder: for any input the decoder agrees with proto.Unmarshal,
// including after a previous record left state in the reused message.
func FuzzFlowDecoder(f *testing.F) {
	f.Add(mustMarshal(sampleFlow(1)), mustMarshal(flowWithSnippets(2)))
	f.Add([]byte{}, []byte("\xff\xfe"))
	rec := randomFlow(rand.New(rand.NewPCG(5, 6)))
	f.Add(mustMarshal(rec), mustMarshal(sampleFlow(9))[:40])
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := newFlowDecoder()
		into := &flowpb.FlowRecord{}
		checkDecode(t, d, into, a)
		id, cid := into.Id, into.CommunityId // kept past the record, as a stage may
		wantID, wantCID := strings.Clone(id), strings.Clone(cid)
		checkDecode(t, d, into, b)
		checkDecode(t, d, into, append(append([]byte(nil), a...), b...))
		if id != wantID || cid != wantCID {
			t.Fatalf("strings kept from the first record changed: %q %q, want %q %q", id, cid, wantID, wantCID)
		}
	})
}

// BenchmarkFlowDecoder: decoding into the reused message (as Run does);
// compare with BenchmarkDecode/*/proto (proto.Unmarshal).
func BenchmarkFlowDecoder(b *testing.B) {
	for _, c := range []struct {
		name string
		rec  *flowpb.FlowRecord
	}{{"flow200B", sampleFlow(1)}, {"flow1KBsnippets", flowWithSnippets(1)}} {
		b.Run(c.name, func(b *testing.B) {
			buf := mustMarshal(c.rec)
			d, into := newFlowDecoder(), &flowpb.FlowRecord{}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.decode(buf, into); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// distinctFlow is sampleFlow(i) with a unique id and Community ID and an
// HTTP request, so every string the decoder does not intern differs from
// the previous record's.
func distinctFlow(i int) *flowpb.FlowRecord {
	r := sampleFlow(i % 512)
	r.Id = fmt.Sprintf("gw-lab-1/%016x", uint64(i)*0x9e3779b97f4a7c15)
	r.CommunityId = fmt.Sprintf("1:%028d", i)
	r.Http = &flowpb.HTTPInfo{Method: "POST", Host: "api.example.com", Path: fmt.Sprintf("/v1/upload?n=%d", i)}
	return r
}

// TestFlowDecoderStringsOutliveRecords: strings taken from decoded records
// (as a detector keeping state, or an alert keeping a flow id, does) still
// equal their original values after the same decoder and message decoded
// 100k more records from a reused input buffer.
func TestFlowDecoderStringsOutliveRecords(t *testing.T) {
	d := newFlowDecoder()
	into := &flowpb.FlowRecord{}
	var buf []byte
	type kept struct{ id, cid, path, wantID, wantCID, wantPath string }
	var keep []kept
	for i := 0; i <= 100_000; i++ {
		rec := distinctFlow(i)
		var err error
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], rec); err != nil {
			t.Fatal(err)
		}
		if err := d.decode(buf, into); err != nil {
			t.Fatal(err)
		}
		if i == 0 || i%997 == 0 {
			keep = append(keep, kept{into.Id, into.CommunityId, into.GetHttp().GetPath(), rec.Id, rec.CommunityId, rec.Http.Path})
		}
		clear(buf) // the decoder must not alias its input either
	}
	for _, k := range keep {
		if k.id != k.wantID || k.cid != k.wantCID || k.path != k.wantPath {
			t.Fatalf("retained strings changed: %q %q %q, want %q %q %q", k.id, k.cid, k.path, k.wantID, k.wantCID, k.wantPath)
		}
	}
	if d.fallbacks != 0 {
		t.Fatalf("%d fallbacks", d.fallbacks)
	}
}

// TestFlowDecoderNoAllocs: in steady state decoding a record allocates
// nothing but, every ~16 records, one string-arena slab.
func TestFlowDecoderNoAllocs(t *testing.T) {
	const n = 64
	bufs := make([][]byte, n)
	strBytes := 0
	for i := range bufs {
		r := distinctFlow(i)
		bufs[i] = mustMarshal(r)
		strBytes += len(r.Id) + len(r.CommunityId) + len(r.Http.Path)
	}
	d, into := newFlowDecoder(), &flowpb.FlowRecord{}
	var i int
	one := func() {
		if err := d.decode(bufs[i%n], into); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range n { // warm: interned values, pooled sub-messages
		one()
	}
	if a := testing.AllocsPerRun(10*n, one); a != 0 {
		t.Errorf("%v allocations per decode", a)
	}
	// Exactly: at most one slab per SlabSize bytes of strings (plus one
	// partly filled), never one allocation per string.
	const rounds = 50
	slabs := d.sa.Slabs
	a := testing.AllocsPerRun(rounds, func() {
		for range n {
			one()
		}
	})
	if limit := float64(strBytes/strarena.SlabSize + 1); a > limit {
		t.Errorf("%v allocations per %d records, want at most %v", a, n, limit)
	}
	if got := d.sa.Slabs - slabs; got < (rounds+1)*strBytes/strarena.SlabSize {
		t.Errorf("%d slabs for %d bytes of strings: slabs reused?", got, (rounds+1)*strBytes)
	}
}
