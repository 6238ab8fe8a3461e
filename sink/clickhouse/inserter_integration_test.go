package clickhouse

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// blockInserter reuses one batch across blocks; every block must arrive
// exactly as given (no rows or bytes left over from a bigger previous
// block), and after a failure (bad value, missing table, cancelled call)
// the next block must go through on a fresh batch.
func TestBlockInserterReuseAndRecovery(t *testing.T) {
	cfg := testConfig(t)
	w := openWriter(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	table := cfg.Database + ".inserter_t"
	create := "CREATE TABLE " + table + " (n UInt64, s String, a Array(String)) ENGINE = MergeTree ORDER BY n"
	setupExec(t, ctx, w, create)
	ins := newBlockInserter(w.Conn(), insertSQL(cfg.Database, "inserter_t", []string{"n", "s", "a"}))
	defer ins.discard()

	type row struct {
		n uint64
		s string
		a []string
	}
	var want []row
	next := uint64(0)
	send := func(rows int, width int) error {
		var ns []uint64
		var ss []string
		var as [][]string
		for range rows {
			r := row{n: next, s: strings.Repeat(string(rune('a'+next%26)), width)}
			for k := range int(next % 3) {
				r.a = append(r.a, strings.Repeat("x", k+width))
			}
			next++
			ns, ss, as = append(ns, r.n), append(ss, r.s), append(as, r.a)
			want = append(want, r)
		}
		return ins.send(ctx, []any{ns, ss, as})
	}
	mustSend := func(rows, width int) {
		t.Helper()
		if err := send(rows, width); err != nil {
			t.Fatalf("send %d rows: %v", rows, err)
		}
	}
	mustSend(500, 40) // big block first: buffers grow
	mustSend(3, 1)    // then a small one on the same buffers
	mustSend(1, 0)

	// A value the column cannot take fails the block, not the next one.
	if err := ins.send(ctx, []any{[]uint64{1}, []int{7}, [][]string{nil}}); err == nil {
		t.Fatal("int slice into a String column was accepted")
	}
	mustSend(2, 5)

	// A cancelled call returns an error and stores nothing.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := ins.send(cctx, []any{[]uint64{1 << 40}, []string{"never"}, [][]string{nil}}); err == nil {
		t.Fatal("send with a cancelled context returned nil")
	}
	mustSend(4, 2)

	// The table disappears (server exception) and comes back.
	if err := w.Conn().Exec(ctx, "RENAME TABLE "+table+" TO "+table+"_away"); err != nil {
		t.Fatal(err)
	}
	if err := ins.send(ctx, []any{[]uint64{1 << 41}, []string{"lost"}, [][]string{nil}}); err == nil {
		t.Fatal("send into a missing table returned nil")
	}
	if err := w.Conn().Exec(ctx, "RENAME TABLE "+table+"_away TO "+table); err != nil {
		t.Fatal(err)
	}
	mustSend(300, 3)

	rows, err := w.Conn().Query(ctx, "SELECT n, s, a FROM "+table+" ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.n, &r.s, &r.a); err != nil {
			t.Fatal(err)
		}
		if len(r.a) == 0 {
			r.a = nil
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d rows, sent %d", len(got), len(want))
	}
	for i := range want {
		if got[i].n != want[i].n || got[i].s != want[i].s || !slices.Equal(got[i].a, want[i].a) {
			t.Fatalf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
