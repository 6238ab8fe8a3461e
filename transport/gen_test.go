package transport

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// fillRandom sets every field of m (recursively, lists with 1-3 elements)
// to random values, driven by the descriptor so that fields added to the
// schema later are covered without touching this test.
func fillRandom(rng *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			continue // the schema has none
		case fd.IsList():
			l := m.Mutable(fd).List()
			for n := 1 + rng.IntN(3); n > 0; n-- {
				if fd.Message() != nil {
					e := l.NewElement()
					if depth < 4 {
						fillRandom(rng, e.Message(), depth+1)
					}
					l.Append(e)
				} else {
					l.Append(randScalar(rng, fd))
				}
			}
		case fd.Message() != nil:
			if depth < 4 {
				fillRandom(rng, m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, randScalar(rng, fd))
		}
	}
}

func randScalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 1)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(rng.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(rng.Uint32()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(rng.Uint64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(rng.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(rng.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(rng.NormFloat64() * 1e3))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(rng.NormFloat64() * 1e6)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randString(rng))
	case protoreflect.BytesKind:
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic(fmt.Sprintf("unhandled kind %v", fd.Kind()))
}

// randString mixes ASCII, JSON-special characters and multi-byte runes
// (valid UTF-8, as proto3 requires for strings).
func randString(rng *rand.Rand) string {
	const alphabet = "abcXYZ019 ./:-_\"\\\n\t{}<>&ßé漢字🙂\u2028"
	runes := []rune(alphabet)
	var sb strings.Builder
	for n := rng.IntN(24); n > 0; n-- {
		sb.WriteRune(runes[rng.IntN(len(runes))])
	}
	return sb.String()
}

// sampleFlow returns a realistic flow record (about 200 bytes encoded) whose
// contents are a pure function of i, so tests can regenerate the expected
// record instead of keeping 100k of them in memory.
func sampleFlow(i int) *flowpb.FlowRecord {
	rng := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	src := netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)})
	dst := netip.AddrFrom4([4]byte{93, 184, byte(rng.IntN(256)), byte(rng.IntN(256))})
	first := int64(1_790_000_000_000_000_000) + int64(i)*1_000_000
	return &flowpb.FlowRecord{
		SchemaVersion: schema.Version,
		Id:            fmt.Sprintf("gw-lab-1/1:%08x/%d", rng.Uint32(), i),
		ObservedNs:    first + 30_000_000_000,
		FirstSeenNs:   first,
		LastSeenNs:    first + int64(rng.IntN(30_000_000_000)),
		Gateway:       "gw-lab-1",
		Interfaces:    []string{"lab0"},
		Direction:     flowpb.Direction_DIRECTION_OUTBOUND,
		SrcAddr:       schema.AddrBytes(src),
		DstAddr:       schema.AddrBytes(dst),
		SrcPort:       uint32(32768 + rng.IntN(28000)),
		DstPort:       443,
		Protocol:      6,
		IpVersion:     4,
		BytesOut:      uint64(rng.IntN(1 << 20)),
		PacketsOut:    uint64(rng.IntN(1000)),
		BytesIn:       uint64(rng.IntN(1 << 22)),
		PacketsIn:     uint64(rng.IntN(3000)),
		TcpFlagsOut:   0x1b,
		TcpFlagsIn:    0x1b,
		SrcMac:        []byte{0x02, 0x00, 0x5e, byte(i >> 16), byte(i >> 8), byte(i)},
		CommunityId:   "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
		EndReason:     flowpb.EndReason_END_REASON_TCP_FIN,
		Tls:           &flowpb.TLSInfo{Sni: "telemetry.example.com", Alpn: []string{"h2"}, Version: 0x0304},
	}
}

// flowWithSnippets adds two 512-byte payload snippets (1 KB) to sampleFlow(i).
func flowWithSnippets(i int) *flowpb.FlowRecord {
	f := sampleFlow(i)
	for d := 0; d < 2; d++ {
		data := make([]byte, 512)
		for j := range data {
			data[j] = byte(i + j*7 + d)
		}
		f.Snippets = append(f.Snippets, &flowpb.Snippet{
			Direction: flowpb.Direction(1 + d), PacketIndex: uint32(d), Data: data, Truncated: true,
		})
	}
	return f
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
