package transport

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// AppendEncoded appends m encoded in format f to dst. Binary encoding into a
// dst with enough capacity does not allocate.
func AppendEncoded(dst []byte, m proto.Message, f Format) ([]byte, error) {
	if f == FormatJSON {
		return protojson.MarshalOptions{}.MarshalAppend(dst, m)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// Decode parses b (encoded in format f) into m, replacing its contents.
func Decode(b []byte, f Format, m proto.Message) error {
	if f == FormatJSON {
		return protojson.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

// versionField returns the schema_version field of messages like m, or nil.
func versionField(m proto.Message) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByName("schema_version")
	if fd == nil || fd.Kind() != protoreflect.Uint32Kind {
		return nil
	}
	return fd
}

// decoder decodes input values and rejects those from a newer schema.
type decoder struct {
	version protoreflect.FieldDescriptor
	// flow, when set, decodes binary FlowRecords into the reused input
	// message without allocating its parts (Run only: RunSink keeps many
	// decoded records at once).
	flow *flowDecoder
}

// decode returns "" on success, or a reason class and a reason.
func (d decoder) decode(msg *Message, into proto.Message) (class, reason string) {
	var err error
	if fr, ok := into.(*flowpb.FlowRecord); ok && d.flow != nil && msg.Format == FormatProto {
		err = d.flow.decode(msg.Value, fr)
	} else {
		err = Decode(msg.Value, msg.Format, into)
	}
	if err != nil {
		return "decode", fmt.Sprintf("cannot decode %s value: %v", msg.Format, err)
	}
	if d.version != nil {
		if v := into.ProtoReflect().Get(d.version).Uint(); v > schema.Version {
			return "schema_version", fmt.Sprintf("schema_version %d is newer than supported %d", v, schema.Version)
		}
	}
	return "", ""
}

// DefaultKey is the Kafka key used when a stage gives none: a flow record's
// FlowKey, an alert's device id, a dead letter's original key.
func DefaultKey(dst []byte, m proto.Message) []byte {
	switch v := m.(type) {
	case *flowpb.FlowRecord:
		return FlowKey(dst, v)
	case *flowpb.Alert:
		return append(dst, v.GetDeviceId()...)
	case *flowpb.DeadLetter:
		return append(dst, v.GetKey()...)
	}
	return dst
}

// FlowKey appends a flow record's Kafka key to dst: the attributed device id
// once enrich has set one, else the device-side (source) address. Keying by
// device keeps all of a device's records (IPv4 and IPv6, before and after a
// DHCP renewal) in one partition, in order, so the detector state that shards
// with the partitions is not split across detect instances.
func FlowKey(dst []byte, rec *flowpb.FlowRecord) []byte {
	if id := rec.GetEnrichment().GetDevice().GetId(); id != "" {
		return append(dst, id...)
	}
	return append(dst, rec.GetSrcAddr()...)
}
