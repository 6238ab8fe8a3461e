package enrich

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
)

// TestRedactedFlowRowsInClickHouse: records carrying an IMEI in each
// searched field, enriched and written by the ClickHouse sink, leave no
// form of the IMEI in the flows and matches rows; the same records
// enriched with redaction off do (the check can see a leak).
func TestRedactedFlowRowsInClickHouse(t *testing.T) {
	addr := testenv.ClickHouse(t)
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = addr
	cfg.Compression = "none"
	cfg.Database = fmt.Sprintf("exfw_redact_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sw, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		sw.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
		sw.Close()
	})

	fx := newFixture(t, 4)
	d := fx.lab.Devices[2]
	var recs []*flowpb.FlowRecord
	for _, redact := range []bool{true, false} {
		fx.e.SetConfig(Config{Redact: redact})
		w := fx.e.NewWorker()
		for i, p := range placements {
			rec := record(d, "36.110.10.10", "")
			rec.Id = fmt.Sprintf("redact=%v/%d", redact, i)
			rec.Gateway = "gw-test"
			rec.FirstSeenNs = time.Now().UnixNano()
			rec.LastSeenNs = rec.FirstSeenNs
			p.put(rec, d.IMEI)
			w.Enrich(rec)
			if len(rec.Enrichment.Matches) == 0 {
				t.Fatalf("%s: no match", p.field)
			}
			recs = append(recs, proto.Clone(rec).(*flowpb.FlowRecord)) // the worker reuses its matches
		}
	}
	if err := sw.WriteFlows(ctx, recs); err != nil {
		t.Fatalf("WriteFlows: %v", err)
	}

	queries := map[string]string{
		"flows": `SELECT id, concat(id, '|', gateway, '|', device_id, '|', dst_host, '|', dns_query, '|', tls_sni, '|',
			arrayStringConcat(tls_alpn, ','), '|', http_method, '|', http_host, '|', http_path, '|', http_user_agent, '|',
			http_content_type, '|', arrayStringConcat(match_types, ',')) FROM ` + cfg.Database + `.flows`,
		"matches": `SELECT flow_id, concat(flow_id, '|', device_id, '|', owner_device_id, '|', identifier_type, '|', form, '|',
			field, '|', dst_host, '|', dst_org) FROM ` + cfg.Database + `.matches`,
	}
	for table, q := range queries {
		rows, err := sw.Conn().Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		seen := map[bool]int{}
		leaks := map[bool]int{}
		for rows.Next() {
			var id, row string
			if err := rows.Scan(&id, &row); err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			redacted := strings.HasPrefix(id, "redact=true/")
			seen[redacted]++
			for _, f := range plainForms(d.IMEI) {
				if strings.Contains(row, f) {
					leaks[redacted]++
					if redacted {
						t.Errorf("%s row of a redacted record holds %q: %s", table, f, row)
					}
					break
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		rows.Close()
		if seen[true] < len(placements) || seen[false] < len(placements) {
			t.Fatalf("%s: rows redacted/not %d/%d, want at least %d each", table, seen[true], seen[false], len(placements))
		}
		// The string columns hold the path, host, user agent, DNS name and
		// SNI (the header, body and snippet placements are not columns).
		if table == "flows" && leaks[false] < 5 {
			t.Fatalf("flows: only %d rows of unredacted records show the IMEI; the check cannot see leaks", leaks[false])
		}
	}
}
