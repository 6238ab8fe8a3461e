package clickhouse

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const benchBatch = 100_000

func benchFlows(n int) []*flowpb.FlowRecord {
	recs := make([]*flowpb.FlowRecord, n)
	for i := range recs {
		recs[i] = sampleFlow(i)
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
	for i := 0; i < b.N; i++ {
		if i%len(recs) == 0 {
			c.reset()
		}
		c.add(recs[i%len(recs)])
	}
}

// BenchmarkInsertFlows compares, in one run, the sink's columnar paths with
// the row-by-row batch.Append(values...) baseline on the dev-stack server.
// Each op is one 100k-row block; rows/s is the figure to read.
//
//   - write_flows: WriteFlows end to end (flows, split into 2 concurrent
//     INSERTs, + the flows_by_dst view + one matches row per identifier
//     match, here 1 per flow on average)
//   - {reused,columnar,row_append}/mergetree: the flows block alone into a
//     copy of flows without the view; reused is the sink's path (one batch
//     whose column buffers survive across blocks, see blockInserter),
//     columnar the former one (a fresh batch per block, Column(i).Append),
//     row_append the row-by-row batch.Append(values...) baseline
//   - {reused,columnar,row_append}/null: the same into ENGINE = Null (client and
//     protocol cost only, no storage); reused_lz4/null with lz4 compression
//     (the other paths send uncompressed, as the tests' config does)
func BenchmarkInsertFlows(b *testing.B) {
	cfg := testConfig(b)
	cfg.MaxBatchRows = benchBatch
	cfg.FlowInserts = 2
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
	// is the transferable figure.
	var cpu0 time.Duration
	rate := func(b *testing.B, start time.Time) {
		rows := float64(b.N * len(recs))
		b.ReportMetric(rows/time.Since(start).Seconds(), "rows/s")
		b.ReportMetric(float64(processCPU()-cpu0)/rows, "client-cpu-ns/row")
	}

	b.Run("write_flows", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 = processCPU()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if err := w.WriteFlows(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
		rate(b, start)
	})
	c := newFlowColumns(w.Profile() == ProfileModern)
	for _, table := range []string{"mergetree", "null"} {
		query := insertSQL(cfg.Database, map[string]string{"mergetree": "flows_mt", "null": "flows_null"}[table], flowColumnNames)
		b.Run("columnar/"+table, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 = processCPU()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				c.reset()
				for _, r := range recs {
					c.add(r)
				}
				if err := sendBlock(ctx, w.Conn(), query, c.columns()); err != nil {
					b.Fatal(err)
				}
			}
			rate(b, start)
		})
		ins := newBlockInserter(w.Conn(), query)
		b.Run("reused/"+table, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 = processCPU()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				c.reset()
				for _, r := range recs {
					c.add(r)
				}
				if err := ins.send(ctx, c.columns()); err != nil {
					b.Fatal(err)
				}
			}
			rate(b, start)
		})
		// Two halves of each block built and sent concurrently on two
		// connections (what WriteFlows does with flow_inserts: 2).
		var halves [2]*flowColumns
		var inss [2]*blockInserter
		for k := range halves {
			halves[k] = newFlowColumns(w.Profile() == ProfileModern)
			inss[k] = newBlockInserter(w.Conn(), query)
			defer inss[k].discard()
		}
		b.Run("reused_x2/"+table, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 = processCPU()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				var errs [2]error
				var wg sync.WaitGroup
				for k := range halves {
					wg.Go(func() {
						part := recs[k*len(recs)/2 : (k+1)*len(recs)/2]
						halves[k].reset()
						for _, r := range part {
							halves[k].add(r)
						}
						errs[k] = inss[k].send(ctx, halves[k].columns())
					})
				}
				wg.Wait()
				if err := errors.Join(errs[:]...); err != nil {
					b.Fatal(err)
				}
			}
			rate(b, start)
		})
		if table == "null" {
			// The same with lz4 block compression (the config default).
			lcfg := cfg
			lcfg.Compression = "lz4"
			lconn, err := Connect(ctx, lcfg)
			if err != nil {
				b.Fatal(err)
			}
			lins := newBlockInserter(lconn, query)
			b.Run("reused_lz4/"+table, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 = processCPU()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					c.reset()
					for _, r := range recs {
						c.add(r)
					}
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
			cpu0 = processCPU()
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

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
