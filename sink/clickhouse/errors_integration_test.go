package clickhouse

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// A permanent server error (here: the table is gone) is returned at once,
// not retried until the context ends.
func TestWriteFlowsPermanentErrorReturns(t *testing.T) {
	cfg := testConfig(t)
	w := openWriter(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	setupExec(t, ctx, w, "DROP TABLE "+cfg.Database+".flows_by_dst_mv")
	setupExec(t, ctx, w, "DROP TABLE "+cfg.Database+".flows")
	retries0 := counterValue(insertRetries.WithLabelValues("flows"))
	start := time.Now()
	err := w.WriteFlows(ctx, []*flowpb.FlowRecord{sampleFlow(1)})
	if err == nil {
		t.Fatal("WriteFlows into a dropped table returned nil")
	}
	var ex *ch.Exception
	if !errors.As(err, &ex) || ex.Code != 60 { // UNKNOWN_TABLE
		t.Fatalf("want UNKNOWN_TABLE exception, got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("permanent error took %v", d)
	}
	if r := counterValue(insertRetries.WithLabelValues("flows")) - retries0; r != 0 {
		t.Fatalf("permanent error retried %v times", r)
	}
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&ch.Exception{Code: 252, Message: "Too many parts (300). Merges are processing significantly slower than inserts"}, true},
		{&ch.Exception{Code: 252, Message: "Too many partitions for single INSERT block (more than 100)"}, false},
		{&ch.Exception{Code: 241, Message: "Memory limit"}, true},
		{&ch.Exception{Code: 60, Message: "Unknown table"}, false},
		{&ch.Exception{Code: 53, Message: "Type mismatch"}, false},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{io.EOF, true},
		{syscall.ECONNRESET, true},
		{nil, false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
