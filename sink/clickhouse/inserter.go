package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// blockInserter sends column blocks to one table through a single
// clickhouse-go batch that lives as long as the writer.
//
// Why: a fresh batch per block (PrepareBatch, Column(i).Append, Send) makes
// clickhouse-go grow every column buffer from zero again; for the 51-column
// flows table that was ~440 MB allocated per 100k-row block, and the copying
// and garbage collection, not the protocol, dominated the client CPU. The
// batch's columns (driver.Batch.Columns) keep their buffers across Reset, and
// Send on an already sent batch opens a new INSERT on a pooled connection and
// sends the block again (clickhouse-go's resetConnection path). So each block
// is still its own INSERT, acknowledged by the server before send returns
// (the at-least-once contract is unchanged), but the buffers are reused.
//
// An error discards the batch (a partly filled or half-sent block is never
// reused); the next send prepares a new one. Not safe for concurrent use: the
// writer serialises sends per table.
type blockInserter struct {
	conn  driver.Conn
	query string
	ctx   *callContext
	batch driver.Batch
	cols  []column.Interface
}

func newBlockInserter(conn driver.Conn, query string) *blockInserter {
	return &blockInserter{conn: conn, query: query, ctx: &callContext{}}
}

// send stores one block: each element of parts holds one Go slice per
// column, in the order of the INSERT's column list, and the block is their
// rows in order (parts built concurrently become one INSERT). It returns nil
// only once the server has acknowledged the INSERT.
func (b *blockInserter) send(ctx context.Context, parts ...[]any) error {
	// The batch remembers the context it was prepared with and uses it for
	// every later Send (cancellation, query settings); route it to this call.
	b.ctx.set(ctx)
	defer b.ctx.clear()
	if b.batch == nil {
		batch, err := b.conn.PrepareBatch(b.ctx, b.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", shortSQL(b.query), err)
		}
		b.batch, b.cols = batch, batch.Columns()
	}
	for _, cols := range parts {
		if len(b.cols) != len(cols) {
			n := len(b.cols)
			b.discard()
			return fmt.Errorf("%s: server block has %d columns, writer has %d", shortSQL(b.query), n, len(cols))
		}
	}
	for _, c := range b.cols {
		c.Reset()
	}
	if err := b.appendParts(parts); err != nil {
		b.discard()
		return err
	}
	if err := b.batch.Send(); err != nil {
		b.discard()
		return fmt.Errorf("send block: %w", err)
	}
	return nil
}

// appendParts appends every part's slices to the batch's columns. With
// several parts it runs one goroutine per part, each taking every n-th
// column (columns are independent buffers): copying into the column buffers
// is the larger half of the client's CPU per block.
func (b *blockInserter) appendParts(parts [][]any) error {
	appendCols := func(first, step int) error {
		for i := first; i < len(b.cols); i += step {
			for _, cols := range parts {
				if err := appendColumn(b.cols[i], cols[i]); err != nil {
					return fmt.Errorf("append column %s: %w", b.cols[i].Name(), err)
				}
			}
		}
		return nil
	}
	if len(parts) <= 1 {
		return appendCols(0, 1)
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for k := range parts {
		wg.Go(func() { errs[k] = appendCols(k, len(parts)) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// appendColumn appends a whole column slice. Array(String) rows given as
// []*string go row by row through AppendRow, which clickhouse-go serves
// with a typed loop; its Append of a [][]*string would walk every row and
// element by reflection.
func appendColumn(col column.Interface, v any) error {
	if rows, ok := v.([][]*string); ok {
		for _, r := range rows {
			if err := col.AppendRow(r); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := col.Append(v)
	return err
}

// discard drops the batch; an unsent one (prepared, send never reached)
// still holds a connection with an open INSERT, which Abort releases.
func (b *blockInserter) discard() {
	if b.batch != nil && !b.batch.IsSent() {
		_ = b.batch.Abort()
	}
	b.batch, b.cols = nil, nil
}

// callContext is the context a long-lived batch is prepared with. It
// forwards to the context of the send in progress (so a cancelled WriteFlows
// aborts its INSERT, and per-call settings apply), and to an empty
// background context between sends.
type callContext struct {
	mu  sync.Mutex
	cur context.Context
}

func (c *callContext) set(ctx context.Context) {
	c.mu.Lock()
	c.cur = ctx
	c.mu.Unlock()
}

// clear detaches the finished call's context.
func (c *callContext) clear() {
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
}

func (c *callContext) current() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return context.Background()
	}
	return c.cur
}

func (c *callContext) Deadline() (time.Time, bool) { return c.current().Deadline() }
func (c *callContext) Done() <-chan struct{}       { return c.current().Done() }
func (c *callContext) Err() error                  { return c.current().Err() }
func (c *callContext) Value(key any) any           { return c.current().Value(key) }
