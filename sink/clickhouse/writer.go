package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Connect opens a native-protocol connection pool to cfg.Addr. Tables are
// always named with their database, so the session database is "default"
// (which lets Migrate create cfg.Database).
func Connect(ctx context.Context, cfg Config) (driver.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("clickhouse config: %w", err)
	}
	opts := &ch.Options{
		Addr:            []string{cfg.Addr},
		Auth:            ch.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    maxFlowInserts + 2, // + alerts and one query
		MaxIdleConns:    2,
		ConnMaxLifetime: time.Hour,
	}
	switch cfg.compression() {
	case "lz4":
		opts.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	case "zstd":
		opts.Compression = &ch.Compression{Method: ch.CompressionZSTD}
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// Writer inserts flows, their identifier matches and alerts. It is safe for
// concurrent use; flows and alerts are written independently.
type Writer struct {
	cfg     Config
	conn    driver.Conn
	profile Profile
	version ServerVersion
	log     *slog.Logger

	flowMu  sync.Mutex
	flows   []*flowColumns // pieces of a block, built concurrently
	matches *matchColumns
	loc     *time.Location         // server time zone: partitions are its days (days.go)
	days    [][]*flowpb.FlowRecord // scratch for splitByDay

	alertMu sync.Mutex
	alerts  *alertColumns

	// One inserter per table (flows: one per concurrent INSERT), guarded
	// by the mutex of the columns it sends.
	flowInsert               []*blockInserter
	matchInsert, alertInsert *blockInserter
	splitMinRows             int // smallest flows block split into parts
}

// maxFlowInserts bounds Config.FlowInserts; flowBuilders is how many
// goroutines build a flows block's columns (at most maxFlowInserts);
// defaultSplitMinRows keeps small (time-flushed) blocks to one goroutine
// and one INSERT, so a quiet lab does not multiply its MergeTree parts.
const (
	maxFlowInserts      = 3
	defaultSplitMinRows = 4096
)

var flowBuilders = min(runtime.GOMAXPROCS(0), 2)

// Open connects, waits for the server (retrying with backoff while ctx
// lives), detects its version and, if cfg.MigrateOnOpen, applies pending
// migrations.
func Open(ctx context.Context, cfg Config) (*Writer, error) {
	conn, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	w := &Writer{cfg: cfg, conn: conn, log: slog.Default().With("component", "sink.clickhouse")}
	err = w.retry(ctx, "startup", func(ctx context.Context) error {
		p, v, err := DetectProfile(ctx, conn, cfg.Profile)
		if err != nil {
			return err
		}
		w.profile, w.version = p, v
		loc, err := serverLocation(ctx, conn)
		if err != nil {
			if Transient(err) && !isUnknownZone(err) {
				return err
			}
			// Blocks may then span two partitions: still safe, see landed.go.
			w.log.Warn("clickhouse server time zone unknown here; flows blocks are split by UTC day", "err", err)
			loc = time.UTC
		}
		w.loc = loc
		if cfg.MigrateOnOpen {
			if _, err := Migrate(ctx, conn, cfg); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	modern := w.profile == ProfileModern
	w.matches, w.alerts = newMatchColumns(modern), newAlertColumns(modern)
	inserts := max(cfg.FlowInserts, 1)
	for range max(inserts, flowBuilders) {
		w.flows = append(w.flows, newFlowColumns(modern))
	}
	for range inserts {
		w.flowInsert = append(w.flowInsert, newBlockInserter(conn, insertSQL(cfg.Database, "flows", flowColumnNames)))
	}
	w.splitMinRows = defaultSplitMinRows
	w.matchInsert = newBlockInserter(conn, insertSQL(cfg.Database, "matches", matchColumnNames))
	w.alertInsert = newBlockInserter(conn, insertSQL(cfg.Database, "alerts", alertColumnNames))
	w.log.Info("clickhouse sink ready", "addr", cfg.Addr, "database", cfg.Database,
		"server", w.version.String(), "profile", w.profile.String())
	return w, nil
}

// insertSQL always names the columns: 18.16 answers an INSERT without a
// column list with an empty block header, and the batch would have no
// columns to append to.
func insertSQL(db, table string, cols []string) string {
	return "INSERT INTO " + db + "." + table + " (" + strings.Join(cols, ", ") + ")"
}

// Profile is the DDL profile chosen for the server.
func (w *Writer) Profile() Profile { return w.profile }

// ServerVersion is the version the server reported at Open.
func (w *Writer) ServerVersion() ServerVersion { return w.version }

// Conn exposes the connection pool (for queries and tests).
func (w *Writer) Conn() driver.Conn { return w.conn }

// Close releases the inserters' connections and closes the pool.
func (w *Writer) Close() error {
	w.flowMu.Lock()
	for _, ins := range w.flowInsert {
		ins.discard()
	}
	w.matchInsert.discard()
	w.flowMu.Unlock()
	w.alertMu.Lock()
	w.alertInsert.discard()
	w.alertMu.Unlock()
	return w.conn.Close()
}

// WriteFlows stores recs in flows (and their identifier matches in
// matches), in blocks of at most MaxBatchRows rows. It returns nil only
// when every row has been acknowledged; while the server is unreachable it
// retries with backoff until ctx ends. A permanent server error (bad
// schema, type mismatch) is returned at once, with the rows not stored.
func (w *Writer) WriteFlows(ctx context.Context, recs []*flowpb.FlowRecord) error {
	w.flowMu.Lock()
	defer w.flowMu.Unlock()
	w.days = splitByDay(w.loc, recs, w.days)
	defer clear(w.days)
	for _, day := range w.days {
		if err := w.writeFlowsDay(ctx, day); err != nil {
			return err
		}
	}
	for _, c := range w.flows {
		c.reset()
	}
	w.matches.reset()
	return nil
}

// writeFlowsDay writes flows of one partition day in blocks of at most
// MaxBatchRows.
func (w *Writer) writeFlowsDay(ctx context.Context, recs []*flowpb.FlowRecord) error {
	for len(recs) > 0 {
		n := min(len(recs), w.cfg.MaxBatchRows)
		chunk := recs[:n]
		recs = recs[n:]
		if err := w.writeFlowBlock(ctx, chunk); err != nil {
			return err
		}
		w.matches.reset()
		for _, r := range chunk {
			w.matches.add(r)
		}
		// Matches may exceed the block size (several per flow); that is
		// bounded by the flows per block times matches per flow.
		if w.matches.rows() > 0 {
			if err := w.insert(ctx, "matches", w.matchInsert, w.matches.rows(), blockReps(w.matches.flowID, w.matches.time), "flow_id", w.matches.columns()); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFlowBlock inserts one block of flows. Its rows are cut into
// len(w.flows) pieces whose columns are built (and appended to the batch)
// concurrently, and sent as len(w.flowInsert) concurrent INSERTs, each a run
// of consecutive pieces retried on its own. The default is one INSERT:
// every INSERT costs the server a new part per partition (on 18.16 114
// files and their buffers, then merging it), which measured 0.5-1.4 µs/row
// of server CPU more for two 50k-row INSERTs than for one 100k-row INSERT,
// for no client CPU saved (BenchmarkInsertFlows, built_x2 vs reused_x2).
// A block under splitMinRows rows is one piece and one INSERT. It returns
// nil only when every INSERT is acknowledged; a failed INSERT does not undo
// the others, as with any multi-block write (see WriteFlows).
func (w *Writer) writeFlowBlock(ctx context.Context, recs []*flowpb.FlowRecord) error {
	pieces, inserts := len(w.flows), len(w.flowInsert)
	if len(recs) < w.splitMinRows || len(recs) < pieces {
		pieces, inserts = 1, 1
	}
	parallel(pieces, func(p int) {
		c := w.flows[p]
		c.reset()
		for _, r := range recs[p*len(recs)/pieces : (p+1)*len(recs)/pieces] {
			c.add(r)
		}
	})
	out := w.flows[:pieces]
	errs := make([]error, inserts)
	parallel(inserts, func(k int) {
		part := out[k*pieces/inserts : (k+1)*pieces/inserts]
		var cols [maxFlowInserts][]any
		var reps []rep
		rows := 0
		for p, c := range part {
			cols[p] = c.columns()
			rows += c.rows()
			reps = append(reps, blockReps(c.id, c.time)...)
		}
		errs[k] = w.insert(ctx, "flows", w.flowInsert[k], rows, reps, "id", cols[:len(part)]...)
	})
	return errors.Join(errs...)
}

// parallel runs f(0), ..., f(n-1), concurrently when n > 1, and waits.
func parallel(n int, f func(int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// WriteAlerts stores alerts with the same guarantees as WriteFlows. A
// retried insert may store an alert twice; the table collapses copies
// (ReplacingMergeTree on id, read with FINAL).
func (w *Writer) WriteAlerts(ctx context.Context, alerts []*flowpb.Alert) error {
	w.alertMu.Lock()
	defer w.alertMu.Unlock()
	for len(alerts) > 0 {
		n := min(len(alerts), w.cfg.MaxBatchRows)
		chunk := alerts[:n]
		alerts = alerts[n:]
		w.alerts.reset()
		for _, a := range chunk {
			w.alerts.add(a)
		}
		// Alerts collapse on their id (ReplacingMergeTree): a resent block is harmless.
		if err := w.insert(ctx, "alerts", w.alertInsert, w.alerts.rows(), nil, "", w.alerts.columns()); err != nil {
			return err
		}
	}
	w.alerts.reset()
	return nil
}

// insert sends one block (the rows of parts, see blockInserter.send),
// retrying transient failures.
// insert sends one block to table and retries it until acknowledged. After a
// failure that leaves open whether the server stored the block (see
// landed.go), reps, when given, decide whether to resend it.
func (w *Writer) insert(ctx context.Context, table string, ins *blockInserter, rows int, reps []rep, keyCol string, parts ...[]any) error {
	if w.profile == ProfileModern {
		// A replayed capture can span many days; the default limit of 100
		// partitions per block would refuse it (18.16 has no such limit).
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"max_partitions_per_insert_block": 1000}))
	}
	var unsure bool
	return w.retry(ctx, table, func(ctx context.Context) error {
		if unsure && len(reps) > 0 {
			all, found, err := blockStored(ctx, w.conn, w.cfg.Database, table, keyCol, reps)
			if err != nil {
				return err // still unsure: checked again on the next attempt
			}
			if all {
				w.log.Info("clickhouse block was stored before its acknowledgement was lost; not resent", "table", table, "rows", rows)
				blocksNotResent.WithLabelValues(table).Inc()
				return nil
			}
			if found > 0 {
				w.log.Warn("clickhouse block partly stored before the failure; resending it whole (duplicates over losses)", "table", table, "rows", rows, "representatives", len(reps), "found", found)
			}
			unsure = false
		}
		start := time.Now()
		if err := ins.send(ctx, parts...); err != nil {
			unsure = ambiguous(err)
			return err
		}
		insertSeconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
		rowsInserted.WithLabelValues(table).Add(float64(rows))
		batchesSent.WithLabelValues(table).Inc()
		return nil
	})
}

// sendBlock appends each column slice to a fresh batch and sends it: for
// one-off inserts (migration records) where buffer reuse does not matter.
func sendBlock(ctx context.Context, conn driver.Conn, query string, cols []any) error {
	// Batch.Send starts a goroutine that closes the connection's socket when
	// the batch context ends, and stops it on return; if that goroutine is
	// first scheduled after both (Open's context is cancelled as soon as Open
	// returns), select may pick the cancellation and close a connection that
	// is back in the pool: the next statement on it fails with "use of
	// closed network connection", and a block sent on it can be stored twice
	// after the retry (seen in CI under load). The call context is detached
	// when sendBlock returns, so a late goroutine sees a context that never
	// ends.
	cc := &callContext{}
	cc.set(ctx)
	defer cc.clear()
	batch, err := conn.PrepareBatch(cc, query)
	if err != nil {
		return fmt.Errorf("prepare %q: %w", shortSQL(query), err)
	}
	defer batch.Abort() // no-op once sent
	for i, c := range cols {
		if err := batch.Column(i).Append(c); err != nil {
			return fmt.Errorf("append column %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send block: %w", err)
	}
	return nil
}

func shortSQL(q string) string {
	if i := strings.IndexByte(q, '('); i > 0 {
		return strings.TrimSpace(q[:i])
	}
	return q
}

// retry runs op until it succeeds, fails permanently or ctx ends. Backoff
// doubles from RetryInitial to RetryMax with ±20 % jitter.
func (w *Writer) retry(ctx context.Context, what string, op func(context.Context) error) error {
	backoff := w.cfg.RetryInitial
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			if attempt > 1 {
				w.log.Info("clickhouse operation recovered", "op", what, "attempts", attempt)
			}
			return nil
		}
		insertErrors.WithLabelValues(what).Inc()
		if ctx.Err() != nil {
			return fmt.Errorf("clickhouse %s: gave up after %d attempts: %w (last error: %v)", what, attempt, ctx.Err(), err)
		}
		if !Transient(err) {
			return fmt.Errorf("clickhouse %s: permanent error: %w", what, err)
		}
		insertRetries.WithLabelValues(what).Inc()
		sleep := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		w.log.Warn("clickhouse operation failed; retrying", "op", what, "attempt", attempt, "backoff", sleep, "err", err)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("clickhouse %s: gave up after %d attempts: %w (last error: %v)", what, attempt, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, w.cfg.RetryMax)
	}
}

// transientCodes are server exceptions worth retrying: overload and
// timeouts, not schema or data errors.
var transientCodes = map[int32]bool{
	159: true, // TIMEOUT_EXCEEDED
	164: true, // READONLY (e.g. a replica catching up)
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203: true, // NO_FREE_CONNECTION
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY
	252: true, // TOO_MANY_PARTS
	319: true, // UNKNOWN_STATUS_OF_INSERT
	425: true, // SYSTEM_ERROR
	999: true, // KEEPER_EXCEPTION
}

// Transient reports whether err is worth retrying: connection and network
// failures, and the server exceptions in transientCodes. Conversion errors
// and other server exceptions (unknown table, type mismatch) are permanent:
// retrying would block the pipeline forever.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var ex *ch.Exception
	if errors.As(err, &ex) {
		if ex.Code == 252 && strings.Contains(ex.Message, "partitions for single INSERT block") {
			return false // the same block would be refused again
		}
		return transientCodes[ex.Code]
	}
	var conv *column.ColumnConverterError
	if errors.As(err, &conv) {
		return false
	}
	var unsupported *column.UnsupportedColumnTypeError
	return !errors.As(err, &unsupported)
}
