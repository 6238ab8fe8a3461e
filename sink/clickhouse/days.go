package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	_ "time/tzdata" // the server's zone may not be installed on the sink's host

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Every table is partitioned by toYYYYMMDD(time), evaluated in the server's
// time zone, and the server writes one part per partition of a block, each
// atomically. A block holding two days is two parts: a failure between them
// leaves half the block stored, and on 18.16 (no insert deduplication outside
// replicated tables) the resend duplicates that half. So the writer sends one
// INSERT per server-local day: then a block is either stored whole or not at
// all, and the check in landed.go always decides.

// serverLocation asks the server for its time zone.
func serverLocation(ctx context.Context, conn driver.Conn) (*time.Location, error) {
	var name string
	if err := conn.QueryRow(ctx, "SELECT timezone()").Scan(&name); err != nil {
		return nil, fmt.Errorf("query server time zone: %w", err)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, &zoneError{name, err}
	}
	return loc, nil
}

// dayRange is [start, end) in unix seconds of the server-local day holding sec.
func dayRange(loc *time.Location, sec int64) (start, end int64) {
	t := time.Unix(sec, 0).In(loc)
	y, m, d := t.Date()
	s := time.Date(y, m, d, 0, 0, 0, 0, loc)
	return s.Unix(), s.AddDate(0, 0, 1).Unix()
}

// splitByDay returns recs as one slice per server-local day of their
// partition time (first_seen in seconds), each in arrival order. A
// single-day slice (the common case: a block covers seconds of traffic) is
// returned as is without allocating. Only the outer slice of groups is
// reused: its elements may alias a caller's recs from an earlier call.
func splitByDay(loc *time.Location, recs []*flowpb.FlowRecord, groups [][]*flowpb.FlowRecord) [][]*flowpb.FlowRecord {
	groups = groups[:0]
	if len(recs) == 0 {
		return groups
	}
	start, end := dayRange(loc, sec(recs[0].GetFirstSeenNs()))
	i := 0
	for ; i < len(recs); i++ {
		if s := sec(recs[i].GetFirstSeenNs()); s < start || s >= end {
			break
		}
	}
	if i == len(recs) {
		return append(groups, recs)
	}
	type day struct{ start, end int64 }
	var days []day
	for _, r := range recs {
		s := sec(r.GetFirstSeenNs())
		g := -1
		for j, d := range days {
			if s >= d.start && s < d.end {
				g = j
				break
			}
		}
		if g < 0 {
			st, en := dayRange(loc, s)
			days = append(days, day{st, en})
			g = len(days) - 1
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], r)
	}
	return groups
}

// isUnknownZone reports a zone name this binary cannot load (not a server
// failure worth retrying).
func isUnknownZone(err error) bool {
	var q *zoneError
	return errors.As(err, &q)
}

type zoneError struct {
	name string
	err  error
}

func (e *zoneError) Error() string { return fmt.Sprintf("server time zone %q: %v", e.name, e.err) }
func (e *zoneError) Unwrap() error { return e.err }
