package collector_test

import (
	"net/netip"

	"github.com/exfilwatch/exfilwatch/schema"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// cloneRec deep-copies a record: emitted records are reused by the table.
func cloneRec(r *flowpb.FlowRecord) *flowpb.FlowRecord {
	return proto.Clone(r).(*flowpb.FlowRecord)
}

func addrOf(b []byte) netip.Addr { return schema.Addr(b) }
