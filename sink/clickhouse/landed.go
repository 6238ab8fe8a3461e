package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A block whose INSERT failed without a server exception (connection reset,
// EOF, timeout) may or may not be stored: the server can have written it and
// lost the acknowledgement. flows and matches are plain MergeTree tables on
// 18.16 (no insert deduplication outside replicated tables), so resending a
// stored block doubles every count the analysts run. Before such a retry the
// writer asks whether the block is there.
//
// A block is written as one part per partition (a day of time here), each
// part atomically, and a block never exceeds max_insert_block_size rows; the
// writer sends one INSERT per server-local day (days.go). So one row decides:
// all present, the whole block is stored; none, nothing is; a mix (possible
// only if the block did span two partitions, e.g. the zone could not be
// loaded) is resent and accepts the duplicates rather than losing rows.
// Representatives are taken per 15 minutes of time, so they cover every day
// partition whatever the server's time zone.

// rep is one representative row of a block: its key column and time.
type rep struct {
	key  string
	time int64 // seconds
}

const repBucket = 15 * 60

// blockReps returns one (key, time) per 15-minute bucket of times.
func blockReps(keys []string, times []int64) []rep {
	seen := map[int64]bool{}
	var out []rep
	for i, t := range times {
		b := t / repBucket
		if seen[b] || keys[i] == "" {
			continue
		}
		seen[b] = true
		out = append(out, rep{keys[i], t})
	}
	return out
}

// ambiguous reports whether err leaves it open whether the server stored
// the block: anything but a server exception.
func ambiguous(err error) bool {
	var ex *ch.Exception
	return err != nil && !errors.As(err, &ex)
}

// blockStored counts how many of reps are in db.table (keyCol, time) and
// reports whether all are.
func blockStored(ctx context.Context, conn driver.Conn, db, table, keyCol string, reps []rep) (all bool, found uint64, err error) {
	if len(reps) == 0 {
		return false, 0, nil
	}
	lo, hi := reps[0].time, reps[0].time
	var keys strings.Builder
	for i, r := range reps {
		lo, hi = min(lo, r.time), max(hi, r.time)
		if i > 0 {
			keys.WriteByte(',')
		}
		keys.WriteString(quote(r.key))
	}
	q := fmt.Sprintf("SELECT uniqExact(%s) FROM %s.%s WHERE time >= toDateTime(%d) AND time <= toDateTime(%d) AND %s IN (%s)",
		keyCol, db, table, lo, hi, keyCol, keys.String())
	if err := conn.QueryRow(ctx, q).Scan(&found); err != nil {
		return false, 0, fmt.Errorf("check %s.%s for an unacknowledged block: %w", db, table, err)
	}
	return found == uint64(len(uniqKeys(reps))), found, nil
}

func uniqKeys(reps []rep) map[string]bool {
	m := make(map[string]bool, len(reps))
	for _, r := range reps {
		m[r.key] = true
	}
	return m
}
