package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const benchBatch = 100_000

// benchFlows are n sample flows from 3 interleaved devices (so not in the
// table's key order), 10 µs apart: a 100k-row block is 1 s of a busy lab's
// flows, in one day partition. (sampleFlow's own spacing, 1 s per flow,
// spreads a block over 28 hours and two partitions: two parts per INSERT.)
func benchFlows(n int) []*flowpb.FlowRecord {
	recs := make([]*flowpb.FlowRecord, n)
	for i := range recs {
		r := sampleFlow(i)
		shift := baseNs + int64(i)*10_000 - r.FirstSeenNs
		r.FirstSeenNs += shift
		r.LastSeenNs += shift
		r.ObservedNs += shift
		recs[i] = r
	}
	return recs
}

// BenchmarkFlowColumnsAdd is the client-side cost of turning a record into
// column values; steady state must not allocate.
func BenchmarkFlowColumnsAdd(b *testing.B) {
	recs := benchFlows(1024)
	c := newFlowColumns(false)
	for _, r := range recs { // grow the slices once
		c.add(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if i%len(recs) == 0 {
			c.reset()
		}
		c.add(recs[i%len(recs)])
	}
	// CPU time, unlike ns/op, does not count waiting for a core.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkInsertFlows compares, in one run, the sink's columnar paths with
// the row-by-row batch.Append(values...) baseline on the dev-stack server.
// Each op is one 100k-row block; rows/s is the figure to read.
//
//   - write_flows: WriteFlows end to end with the default flow_inserts (1):
//     columns built by 2 goroutines, one INSERT, + the flows_by_dst view +
//     one matches row per identifier match (here 1 per flow on average)
//   - {built_x2,reused_x2,reused,row_append}/{mergetree,null}: the flows
//     block alone, into a copy of flows without the view (mergetree) or
//     into ENGINE = Null (client and protocol cost only, no storage). All but
//     row_append use one batch whose column buffers survive across blocks
//     (blockInserter). built_x2 is the writer's path (2 pieces built and
//     appended concurrently, one INSERT); reused_x2 the former default (2
//     concurrent INSERTs of one piece each: two parts per block); reused
//     one piece, one INSERT; row_append the row-by-row baseline.
//     reused_lz4/null is reused with lz4 compression (the others send
//     uncompressed, as the tests' config does).
func BenchmarkInsertFlows(b *testing.B) {
	cfg := testConfig(b)
	cfg.MaxBatchRows = benchBatch
	w := openWriter(b, cfg)
	recs := benchFlows(benchBatch)
	ctx := context.Background()
	for _, q := range []string{
		"CREATE TABLE " + cfg.Database + ".flows_mt AS " + cfg.Database + ".flows",
		"CREATE TABLE " + cfg.Database + ".flows_null AS " + cfg.Database + ".flows ENGINE = Null",
	} {
		if err := w.Conn().Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	// rows/s is wall clock and shares 2 cores with the server (and whatever
	// else runs); client-cpu-ns/row (getrusage of this process, GC included)
	// is the transferable figure. With EXFILWATCH_BENCH_SERVER_PID set to the
	// server's pid (a server of your own: the shared one serves other tests
	// too), server-cpu-ns/row is the server's user+sys CPU over the same
	// interval, background merges that ran in it included.
	// server-query-cpu-ns/row is the part of it spent in query threads
	// (system.events, the INSERTs themselves), the rest is merges and other
	// background work.
	var cpu0, srv0, qry0 time.Duration
	srvPID := os.Getenv("EXFILWATCH_BENCH_SERVER_PID")
	queryCPU := func() time.Duration {
		var us uint64
		if err := w.Conn().QueryRow(ctx, `SELECT sum(value) FROM system.events
WHERE event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds')`).Scan(&us); err != nil {
			b.Fatal(err)
		}
		return time.Duration(us) * time.Microsecond
	}
	mark := func() {
		cpu0 = processCPU()
		if srvPID != "" {
			srv0, qry0 = pidCPU(b, srvPID), queryCPU()
		}
	}
	rate := func(b *testing.B, start time.Time) {
		rows := float64(b.N * len(recs))
		b.ReportMetric(rows/time.Since(start).Seconds(), "rows/s")
		b.ReportMetric(float64(processCPU()-cpu0)/rows, "client-cpu-ns/row")
		if srvPID != "" {
			b.ReportMetric(float64(pidCPU(b, srvPID)-srv0)/rows, "server-cpu-ns/row")
			b.ReportMetric(float64(queryCPU()-qry0)/rows, "server-query-cpu-ns/row")
		}
	}

	b.Run("write_flows", func(b *testing.B) {
		b.ReportAllocs()
		mark()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if err := w.WriteFlows(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
		rate(b, start)
	})
	modern := w.Profile() == ProfileModern
	pieces := []*flowColumns{newFlowColumns(modern), newFlowColumns(modern)}
	// build fills n pieces with recs, concurrently, and returns them.
	build := func(n int) []*flowColumns {
		parallel(n, func(k int) {
			pieces[k].reset()
			for _, r := range recs[k*len(recs)/n : (k+1)*len(recs)/n] {
				pieces[k].add(r)
			}
		})
		return pieces[:n]
	}
	for _, table := range []string{"mergetree", "null"} {
		query := insertSQL(cfg.Database, map[string]string{"mergetree": "flows_mt", "null": "flows_null"}[table], flowColumnNames)
		inss := [2]*blockInserter{newBlockInserter(w.Conn(), query), newBlockInserter(w.Conn(), query)}
		defer inss[0].discard()
		defer inss[1].discard()
		// One INSERT of 1 or 2 pieces.
		for _, v := range []struct {
			name   string
			pieces int
		}{{"built_x2", 2}, {"reused", 1}} {
			b.Run(v.name+"/"+table, func(b *testing.B) {
				b.ReportAllocs()
				mark()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					var parts [2][]any
					for k, c := range build(v.pieces) {
						parts[k] = c.columns()
					}
					if err := inss[0].send(ctx, parts[:v.pieces]...); err != nil {
						b.Fatal(err)
					}
				}
				rate(b, start)
			})
		}
		// Two concurrent INSERTs, one piece each.
		b.Run("reused_x2/"+table, func(b *testing.B) {
			b.ReportAllocs()
			mark()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				build(2)
				var errs [2]error
				var wg sync.WaitGroup
				for k := range inss {
					wg.Go(func() { errs[k] = inss[k].send(ctx, pieces[k].columns()) })
				}
				wg.Wait()
				if err := errors.Join(errs[:]...); err != nil {
					b.Fatal(err)
				}
			}
			rate(b, start)
		})
		c := pieces[0]
		if table == "null" {
			// The same with lz4 block compression.
			lcfg := cfg
			lcfg.Compression = "lz4"
			lconn, err := Connect(ctx, lcfg)
			if err != nil {
				b.Fatal(err)
			}
			lins := newBlockInserter(lconn, query)
			b.Run("reused_lz4/"+table, func(b *testing.B) {
				b.ReportAllocs()
				mark()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					build(1)
					if err := lins.send(ctx, c.columns()); err != nil {
						b.Fatal(err)
					}
				}
				rate(b, start)
			})
			lins.discard()
			lconn.Close()
		}
		b.Run("row_append/"+table, func(b *testing.B) {
			b.ReportAllocs()
			mark()
			start := time.Now()
			row := make([]any, len(flowColumnNames))
			for i := 0; i < b.N; i++ {
				batch, err := w.Conn().PrepareBatch(ctx, query)
				if err != nil {
					b.Fatal(err)
				}
				c.reset()
				for _, r := range recs {
					c.add(r)
					j := c.rows() - 1
					row = append(row[:0],
						c.time[j], c.firstNs[j], c.lastNs[j], c.observedNs[j], c.id[j], c.schemaVersion[j],
						c.gateway[j], c.interfaces.row(j), c.devID[j], c.devModel[j], c.devGroup[j], c.devOS[j], c.attrBy[j],
						c.direction[j], c.src.raw[j], c.dst.raw[j], c.srcPort[j], c.dstPort[j], c.proto[j], c.ipVer[j],
						c.bytesOut[j], c.pktsOut[j], c.bytesIn[j], c.pktsIn[j], c.flagsOut[j], c.flagsIn[j],
						c.srcMAC[j], c.communityID[j], c.endReason[j], c.fragments[j], c.dstHost[j],
						c.dnsQuery[j], c.dnsQtype[j], c.dnsRcode[j], c.tlsSNI[j], c.tlsALPN.row(j), c.tlsVersion[j], c.tlsQUIC[j],
						c.httpMethod[j], c.httpHost[j], c.httpPath[j], c.httpUA[j], c.httpCT[j],
						c.dstClass[j], c.dstCountry[j], c.dstCity[j], c.dstASN[j], c.dstOrg[j],
						c.cleartext[j], c.matchCount[j], c.matchTypes.row(j))
					if err := batch.Append(row...); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Send(); err != nil {
					b.Fatal(err)
				}
			}
			rate(b, start)
		})
	}
}

// pidCPU is the user+sys CPU time of process pid, from /proc/pid/stat
// (clock ticks of 10 ms).
func pidCPU(b *testing.B, pid string) time.Duration {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatalf("server cpu: %v", err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th of the whole line.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("server cpu: short /proc/%s/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("server cpu: bad /proc/%s/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
