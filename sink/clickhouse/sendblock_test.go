package clickhouse

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// fakeBatchConn records the context clickhouse-go would keep for the batch
// (Batch.Send watches it from a goroutine that may run after Send returns).
type fakeBatchConn struct {
	driver.Conn
	ctx  context.Context
	sent int
}

func (c *fakeBatchConn) PrepareBatch(ctx context.Context, _ string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	c.ctx = ctx
	return &fakeBatch{conn: c}, nil
}

type fakeBatch struct {
	driver.Batch
	conn *fakeBatchConn
}

func (b *fakeBatch) Column(int) driver.BatchColumn { return fakeColumn{} }
func (b *fakeBatch) Send() error {
	if b.conn.ctx.Done() == nil {
		panic("batch context detached before Send")
	}
	b.conn.sent++
	return nil
}
func (b *fakeBatch) Abort() error { return nil }

type fakeColumn struct{ driver.BatchColumn }

func (fakeColumn) Append(any) error { return nil }

// The context sendBlock hands to clickhouse-go follows the caller's while
// the call runs and never ends afterwards, so cancelling the caller's
// context once sendBlock has returned (as Open's is) cannot make Send's
// late watchdog close a pooled connection.
func TestSendBlockDetachesContext(t *testing.T) {
	conn := &fakeBatchConn{}
	ctx, cancel := context.WithCancel(context.Background())
	if err := sendBlock(ctx, conn, "INSERT INTO t (n)", []any{[]uint32{1}}); err != nil {
		t.Fatal(err)
	}
	if conn.sent != 1 {
		t.Fatalf("sent %d blocks", conn.sent)
	}
	cancel()
	if conn.ctx.Done() != nil || conn.ctx.Err() != nil {
		t.Fatalf("the batch context still follows the cancelled caller after sendBlock returned (err %v)", conn.ctx.Err())
	}
}
