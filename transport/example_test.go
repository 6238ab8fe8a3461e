package transport_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/transport"
)

// A stage reads flow records, emits an alert for flows to port 23, and
// writes JSON lines. With Kafka, src would be transport.OpenReader(cfg, "",
// cfg.Topics.Enriched, "detect", log) and dst/dlq KafkaWriters.
func ExampleRun() {
	in := `{"schemaVersion":1,"id":"f1","dstPort":443}
{"schemaVersion":1,"id":"f2","dstPort":23}
`
	src := transport.NewJSONLReader(strings.NewReader(in), "flows.jsonl", 100)
	dst := transport.NewJSONLWriter(os.Stdout)
	defer dst.Close()
	alert := &flowpb.Alert{} // reused: emit encodes at once
	st := transport.Stage[*flowpb.FlowRecord, *flowpb.Alert]{
		Name: "detect",
		Process: func(_ context.Context, f *flowpb.FlowRecord, emit func(*flowpb.Alert)) error {
			if f.DstPort == 23 {
				alert.Reset()
				alert.SchemaVersion, alert.Detector, alert.FlowIds = 1, "telnet", []string{f.Id}
				emit(alert)
			}
			return nil
		},
	}
	if err := transport.Run(context.Background(), transport.DefaultConfig(), src, dst, nil, st); err != nil {
		fmt.Println("error:", err)
	}
	// Output is protojson and may vary in spacing, so it is not checked here.
}
