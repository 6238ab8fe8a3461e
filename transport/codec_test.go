package transport

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestEncodeDecodeProperty: random records with every field set survive
// binary and JSON round trips unchanged.
func TestEncodeDecodeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	news := []func() proto.Message{
		func() proto.Message { return &flowpb.FlowRecord{} },
		func() proto.Message { return &flowpb.Alert{} },
		func() proto.Message { return &flowpb.DeadLetter{} },
	}
	var buf []byte
	for i := 0; i < 600; i++ {
		newMsg := news[i%len(news)]
		want := newMsg()
		fillRandom(rng, want.ProtoReflect(), 0)
		for _, f := range []Format{FormatProto, FormatJSON} {
			var err error
			buf, err = AppendEncoded(buf[:0], want, f)
			if err != nil {
				t.Fatalf("%d %s encode: %v", i, f, err)
			}
			if f == FormatJSON {
				if bytes.IndexByte(buf, '\n') >= 0 {
					t.Fatalf("%d: JSON encoding spans lines: %s", i, buf)
				}
				if !json.Valid(buf) {
					t.Fatalf("%d: not valid JSON per encoding/json: %s", i, buf)
				}
			}
			got := newMsg()
			if err := Decode(buf, f, got); err != nil {
				t.Fatalf("%d %s decode: %v", i, f, err)
			}
			if !proto.Equal(want, got) {
				t.Fatalf("%d %s round trip changed the record:\nwant %v\ngot  %v", i, f, want, got)
			}
		}
	}
}

// TestFillRandomSetsEveryField guards the property test itself: the
// generator must populate every field of FlowRecord, nested ones included.
func TestFillRandomSetsEveryField(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := &flowpb.FlowRecord{}
	for i := 0; i < 20; i++ { // bools/enums can come out zero in one draw
		fillRandom(rng, m.ProtoReflect(), 0)
		if m.Enrichment.GetDevice().GetId() != "" && len(m.Snippets) > 0 && m.Http.GetHeaders() != nil &&
			len(m.Enrichment.GetMatches()) > 0 && m.Dns.GetQueryName() != "" && m.Enrichment.GetSrcGeo().GetLatitude() != 0 {
			return
		}
	}
	t.Fatalf("generator left nested fields empty: %v", m)
}

func TestDecodeRejectsNewerSchema(t *testing.T) {
	d := decoder{version: versionField(&flowpb.FlowRecord{})}
	if d.version == nil {
		t.Fatal("FlowRecord has no schema_version field?")
	}
	rec := sampleFlow(1)
	rec.SchemaVersion = 99
	m := Message{Value: mustMarshal(rec)}
	class, reason := d.decode(&m, &flowpb.FlowRecord{})
	if class != "schema_version" || !strings.Contains(reason, "99") {
		t.Fatalf("got %q %q", class, reason)
	}
	rec.SchemaVersion = 1
	m.Value = mustMarshal(rec)
	if class, reason := d.decode(&m, &flowpb.FlowRecord{}); class != "" {
		t.Fatalf("current version rejected: %s", reason)
	}
	m.Value = []byte{0xff, 0xff, 0xff}
	if class, _ := d.decode(&m, &flowpb.FlowRecord{}); class != "decode" {
		t.Fatalf("garbage accepted: %q", class)
	}
}

func TestDefaultKey(t *testing.T) {
	f := sampleFlow(7)
	if got := DefaultKey(nil, f); !bytes.Equal(got, f.SrcAddr) {
		t.Fatalf("flow key %x, want src_addr %x", got, f.SrcAddr)
	}
	if got := DefaultKey([]byte("x"), &flowpb.Alert{DeviceId: "pixel-7"}); string(got) != "xpixel-7" {
		t.Fatalf("alert key %q", got)
	}
}

func TestFlowKeyIsDeviceOnceAttributed(t *testing.T) {
	raw := &flowpb.FlowRecord{SrcAddr: []byte{10, 20, 0, 17}}
	if got := FlowKey(nil, raw); !bytes.Equal(got, raw.SrcAddr) {
		t.Fatalf("unattributed key %x, want src_addr %x", got, raw.SrcAddr)
	}
	attributed := func(src []byte) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{SrcAddr: src, Enrichment: &flowpb.Enrichment{Device: &flowpb.Device{Id: "lab-0007", Model: "Redmi 1S"}}}
	}
	if got := FlowKey([]byte("x"), attributed(raw.SrcAddr)); string(got) != "xlab-0007" {
		t.Fatalf("attributed key %q, want the device id appended", got)
	}
	if got := DefaultKey(nil, attributed(raw.SrcAddr)); string(got) != "lab-0007" {
		t.Fatalf("DefaultKey %q disagrees with FlowKey", got)
	}
}

// One device over IPv4 and IPv6 (or before and after a DHCP renewal) must
// land on one partition of the enriched topic, or its detector state splits
// across detect instances.
func TestFlowKeyOneDeviceOnePartition(t *testing.T) {
	v4 := []byte{10, 20, 0, 17}
	v4renewed := []byte{10, 20, 3, 201}
	v6 := []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0xa6, 0x50, 0x46, 0xff, 0xfe, 0x12, 0x34, 0x56}
	const partitions = 12
	parts := make([]int, partitions)
	for i := range parts {
		parts[i] = i
	}
	partition := func(key []byte) int { return (&kafka.Hash{}).Balance(kafka.Message{Key: key}, parts...) }
	// The addresses alone spread over partitions, so the test means something.
	if p4, p4r, p6 := partition(v4), partition(v4renewed), partition(v6); p4 == p4r && p4 == p6 {
		t.Fatalf("test addresses all hash to partition %d; pick others", p4)
	}
	var keys [][]byte
	for _, src := range [][]byte{v4, v4renewed, v6} {
		rec := &flowpb.FlowRecord{SrcAddr: src, Enrichment: &flowpb.Enrichment{Device: &flowpb.Device{Id: "lab-0007"}}}
		keys = append(keys, FlowKey(nil, rec))
	}
	for i, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) || partition(k) != partition(keys[0]) {
			t.Fatalf("record %d of the device: key %q partition %d, first record: key %q partition %d",
				i+1, k, partition(k), keys[0], partition(keys[0]))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Brokers = nil }, "brokers: "},
		{func(c *Config) { c.Brokers = []string{"nohost"} }, "brokers: invalid address"},
		{func(c *Config) { c.Topics.DeadLetter = "bad topic" }, "topics.dead_letter: invalid topic name"},
		{func(c *Config) { c.Topics.Raw = "" }, "topics.raw: must not be empty"},
		{func(c *Config) { c.Partitions = 0 }, "partitions: "},
		{func(c *Config) { c.Compression = "brotli" }, "compression: unknown codec"},
		{func(c *Config) { c.BatchSize = 0 }, "batch_size: "},
		{func(c *Config) { c.HeartbeatInterval = c.SessionTimeout }, "heartbeat_interval: "},
		{func(c *Config) { c.RetryBackoffMax = 0 }, "retry_backoff_max: "},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("want error starting %q, got %v", tc.want, err)
		}
	}
}
