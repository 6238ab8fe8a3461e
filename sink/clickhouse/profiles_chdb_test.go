package clickhouse

import (
	"cmp"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestProfilesOnChDB applies both DDL profiles, exactly as Render and
// Migrate produce them, on a current ClickHouse engine (chdb), loads the
// rows the sink's column builders produce with the sink's INSERT column
// lists, and runs every saved query against them. Not covered here: the
// native-protocol INSERT path (chdb has no server; rows go in as
// JSONEachRow with the same values) and version detection over a live
// connection (only the version string is checked).
func TestProfilesOnChDB(t *testing.T) {
	for _, p := range []Profile{ProfileModern, ProfilePortable} {
		t.Run(p.String(), func(t *testing.T) { testProfileOnChDB(t, p) })
	}
}

func testProfileOnChDB(t *testing.T, p Profile) {
	s := newChDB(t)
	modern := p == ProfileModern
	tmp := t.TempDir()

	// A current engine must be told apart from 18.16.
	out, err := s.query("", "SELECT version()", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVersion(out[0][0])
	if err != nil || ProfileFor(v) != ProfileModern {
		t.Errorf("version %q: %v, %v; want the modern profile", out[0][0], v, err)
	}

	recs := queryDataset()
	oldest := slices.MinFunc(recs, func(a, b *flowpb.FlowRecord) int { return int(a.FirstSeenNs/1e9 - b.FirstSeenNs/1e9) })
	// The dataset has fixed dates; the TTL keeps all of it, but is real
	// (checked with an expired row below).
	ttl := int(time.Since(time.Unix(0, oldest.FirstSeenNs)).Hours()/24) + 30

	migrate := func(db string, ttl int) {
		t.Helper()
		ms, err := Render(p, db, ttl)
		if err != nil {
			t.Fatal(err)
		}
		stmts := bootstrapStatements(db)
		for _, m := range ms {
			stmts = append(stmts, m.Statements...)
		}
		// Twice, the second time in a new process on the same data (a
		// restarted sink): every statement must then be a no-op.
		for round := 1; round <= 2; round++ {
			if round == 2 {
				s.restart()
			}
			steps := make([]chdbStep, len(stmts))
			for i, stmt := range stmts {
				steps[i] = chdbStep{SQL: stmt}
			}
			if outs, err := s.run(steps...); err != nil {
				t.Fatalf("round %d, statement %d: %v\n%s", round, len(outs)+1, err, stmts[len(outs)])
			}
		}
		// Record the migrations the way Migrate does and read them back
		// with its query.
		mc := []any{[]uint32{}, []string{}, []string{}, []string{}, []string{}, []int64{}}
		for _, m := range ms {
			mc[0] = append(mc[0].([]uint32), uint32(m.Version))
			mc[1] = append(mc[1].([]string), m.Name)
			mc[2] = append(mc[2].([]string), m.Checksum)
			mc[3] = append(mc[3].([]string), p.String())
			mc[4] = append(mc[4].([]string), v.String())
			mc[5] = append(mc[5].([]int64), time.Now().Unix())
		}
		f := filepath.Join(tmp, db+"_migrations.json")
		writeJSONEachRow(t, f, []string{"version", "name", "checksum", "profile", "server_version", "applied_at"}, mc, len(ms))
		s.exec(insertSQL(db, "schema_migrations", []string{"version", "name", "checksum", "profile", "server_version", "applied_at"}) +
			" FROM INFILE " + quote(f) + " FORMAT JSONEachRow")
		got, err := s.query("", appliedMigrationsSQL(db), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ms) {
			t.Fatalf("schema_migrations: %d rows, want %d", len(got), len(ms))
		}
		for i, m := range ms {
			if got[i][0] != fmt.Sprint(m.Version) || got[i][2] != m.Checksum || got[i][3] != p.String() {
				t.Errorf("schema_migrations row %d = %v, want version %d checksum %s", i, got[i], m.Version, m.Checksum)
			}
		}
	}
	insert := func(db, table string, names []string, cols []any, rows int) {
		t.Helper()
		f := filepath.Join(tmp, fmt.Sprintf("%s_%s_%d.json", db, table, time.Now().UnixNano()))
		writeJSONEachRow(t, f, names, cols, rows)
		s.exec(insertSQL(db, table, names) + " FROM INFILE " + quote(f) + " FORMAT JSONEachRow")
	}
	insertFlows := func(db string, rs []*flowpb.FlowRecord) {
		t.Helper()
		fc, mc := newFlowColumns(modern), newMatchColumns(modern)
		for _, r := range rs {
			fc.add(r)
			mc.add(r)
		}
		insert(db, "flows", flowColumnNames, fc.columns(), fc.rows())
		if mc.rows() > 0 {
			insert(db, "matches", matchColumnNames, mc.columns(), mc.rows())
		}
	}
	count := func(db, table string) string {
		t.Helper()
		got, err := s.query("", "SELECT count() FROM "+db+"."+table, nil)
		if err != nil {
			t.Fatal(err)
		}
		return got[0][0]
	}

	db := "exfw_" + p.String()
	migrate(db, ttl)

	t.Run("server_schema", func(t *testing.T) {
		// The engine's view of each table: the sink's column list in
		// order, the profile's types and codecs, the TTL.
		for table, names := range map[string][]string{"flows": flowColumnNames, "matches": matchColumnNames, "alerts": alertColumnNames} {
			got, err := s.query("", "SELECT name, type, compression_codec FROM system.columns WHERE database = "+quote(db)+
				" AND table = "+quote(table)+" ORDER BY position", nil)
			if err != nil {
				t.Fatal(err)
			}
			var cols []string
			for _, r := range got {
				cols = append(cols, r[0])
			}
			if !slices.Equal(cols, names) {
				t.Errorf("%s columns on the engine:\n %v\nsink inserts:\n %v", table, cols, names)
			}
			types := map[string][2]string{}
			for _, r := range got {
				types[r[0]] = [2]string{r[1], r[2]}
			}
			wantAddr, wantDev := "FixedString(16)", "String"
			if modern {
				wantAddr, wantDev = "IPv6", "LowCardinality(String)"
			}
			if types["dst_addr"][0] != wantAddr || types["device_id"][0] != wantDev {
				t.Errorf("%s: dst_addr %v, device_id %v; want %s, %s", table, types["dst_addr"], types["device_id"], wantAddr, wantDev)
			}
			if table == "flows" && modern && types["time"][1] != "CODEC(DoubleDelta, LZ4)" {
				t.Errorf("flows.time codec on the engine: %q", types["time"][1])
			}
		}
		got, err := s.query("", "SELECT name, engine, engine_full FROM system.tables WHERE database = "+quote(db)+" ORDER BY name", nil)
		if err != nil {
			t.Fatal(err)
		}
		engines := map[string]string{}
		for _, r := range got {
			engines[r[0]] = r[1]
			hasTTL := strings.Contains(r[2], fmt.Sprintf("TTL time + toIntervalDay(%d)", ttl))
			if r[1] != "MaterializedView" && r[0] != "schema_migrations" && hasTTL != modern {
				t.Errorf("%s: TTL in %q: %v, want %v", r[0], r[2], hasTTL, modern)
			}
		}
		want := map[string]string{"flows": "MergeTree", "matches": "MergeTree", "alerts": "ReplacingMergeTree",
			"flows_by_dst": "MergeTree", "flows_by_dst_mv": "MaterializedView", "schema_migrations": "ReplacingMergeTree"}
		if fmt.Sprint(engines) != fmt.Sprint(want) {
			t.Errorf("tables on the engine: %v, want %v", engines, want)
		}
	})

	insertFlows(db, recs)
	nMatches := 0
	for _, r := range recs {
		nMatches += len(r.Enrichment.GetMatches())
	}
	for table, want := range map[string]int{"flows": len(recs), "flows_by_dst": len(recs), "matches": nMatches} {
		if got := count(db, table); got != fmt.Sprint(want) {
			t.Fatalf("%s: %s rows, want %d", table, got, want)
		}
	}

	t.Run("saved_queries", func(t *testing.T) {
		for _, c := range savedQueryCases(recs, datasetWindow()) {
			t.Run(c.name, func(t *testing.T) { runSavedQueryOnChDB(t, s, db, c) })
		}
	})

	t.Run("retried_flow_block", func(t *testing.T) {
		// The sink re-sends a block whose acknowledgement was lost. The
		// modern tables drop the identical block (and the view is not fed
		// again); the portable ones have no deduplication and store it twice.
		insertFlows(db, recs)
		for table, want := range map[string]int{"flows": len(recs), "flows_by_dst": len(recs), "matches": nMatches} {
			if !modern {
				want *= 2
			}
			if got := count(db, table); got != fmt.Sprint(want) {
				t.Errorf("%s after a retried block: %s rows, want %d", table, got, want)
			}
		}
	})

	t.Run("alerts_final", func(t *testing.T) {
		var first, second []*flowpb.Alert
		for i := range 5 {
			first = append(first, sampleAlert(i))
		}
		updated := proto.Clone(first[2]).(*flowpb.Alert)
		updated.Count, updated.CreatedNs, updated.LastSeenNs = 99, first[2].CreatedNs+60e9, first[2].LastSeenNs+60e9
		second = append(second, updated, proto.Clone(first[3]).(*flowpb.Alert)) // an update and a plain retry
		for _, batch := range [][]*flowpb.Alert{first, second} {
			ac := newAlertColumns(modern)
			for _, a := range batch {
				ac.add(a)
			}
			insert(db, "alerts", alertColumnNames, ac.columns(), ac.rows())
		}
		latest := map[string]*flowpb.Alert{}
		for _, a := range append(slices.Clone(first), second...) {
			if old := latest[a.Id]; old == nil || a.CreatedNs > old.CreatedNs {
				latest[a.Id] = a
			}
		}
		var want [][]string
		for _, a := range latest {
			want = append(want, []string{a.Id, fmt.Sprint(a.Count), fmt.Sprint(a.CreatedNs), ts(a.LastSeenNs),
				enumName(a.Severity.String(), "SEVERITY_"), netip.AddrFrom16([16]byte(a.Destination.Addr)).String(),
				fmt.Sprint(a.FlowIds), fmt.Sprintf("%.3f", a.Score)})
		}
		sort.Slice(want, func(i, j int) bool { return want[i][0] < want[j][0] })
		q := "SELECT id, count, version, toDateTime(intDiv(last_seen_ns, 1000000000)), severity, IPv6NumToString(dst_addr), flow_ids, score FROM " +
			db + ".alerts FINAL ORDER BY id"
		for _, when := range []string{"before merge", "after OPTIMIZE FINAL"} {
			if when != "before merge" {
				s.exec("OPTIMIZE TABLE " + db + ".alerts FINAL")
				// Merged: even without FINAL one row per id is left.
				if got := count(db, "alerts"); got != fmt.Sprint(len(want)) {
					t.Errorf("alerts after merge: %s rows, want %d", got, len(want))
				}
			}
			got, err := s.query("", q, nil)
			if err != nil {
				t.Fatal(err)
			}
			compareRows(t, "alerts FINAL "+when, got, want)
		}
	})

	t.Run("round_trip", func(t *testing.T) {
		rt := db + "_rt"
		migrate(rt, ttl)
		var rs []*flowpb.FlowRecord
		for i := range 12 {
			rs = append(rs, sampleFlow(i))
		}
		rs[5].SrcMac = []byte{0xa4, 0x80, 0xff, 0x00, 0x22, 0x7f} // not UTF-8: bytes must pass unchanged
		insertFlows(rt, rs)
		var want [][]string
		for _, r := range rs {
			var types []string
			for _, m := range r.Enrichment.GetMatches() {
				if !slices.Contains(types, m.IdentifierType) {
					types = append(types, m.IdentifierType)
				}
			}
			want = append(want, []string{r.Id, ts(r.FirstSeenNs), fmt.Sprint(r.FirstSeenNs),
				netip.AddrFrom16([16]byte(r.SrcAddr)).String(), netip.AddrFrom16([16]byte(r.DstAddr)).String(),
				strings.ToUpper(fmt.Sprintf("%x", r.SrcMac)), enumName(r.Direction.String(), "DIRECTION_"),
				enumName(r.EndReason.String(), "END_REASON_"), enumName(r.Enrichment.DstGeo.AddrClass.String(), "ADDR_CLASS_"),
				fmt.Sprint(r.Interfaces), fmt.Sprint(r.Tls.Alpn), fmt.Sprint(types), r.Enrichment.Device.Id,
				fmt.Sprint(r.BytesOut), r.Tls.Sni, r.Http.Path})
		}
		sort.Slice(want, func(i, j int) bool { return want[i][0] < want[j][0] })
		got, err := s.query("", `SELECT id, time, first_seen_ns, IPv6NumToString(src_addr), IPv6NumToString(dst_addr), hex(src_mac),
    direction, end_reason, dst_addr_class, interfaces, tls_alpn, match_types, device_id, bytes_out, dst_host, http_path
FROM `+rt+`.flows ORDER BY id`, nil)
		if err != nil {
			t.Fatal(err)
		}
		compareRows(t, "flows read back", got, want)

		// Retention: a row older than the TTL goes at the next merge on
		// the modern profile; the portable profile keeps everything.
		old, fresh := sampleFlow(100), sampleFlow(101)
		old.Id, fresh.Id = "ttl-old", "ttl-fresh"
		old.FirstSeenNs = time.Now().Add(-time.Duration(ttl+5) * 24 * time.Hour).UnixNano()
		fresh.FirstSeenNs = time.Now().Add(-24 * time.Hour).UnixNano()
		insertFlows(rt, []*flowpb.FlowRecord{old, fresh})
		s.exec("OPTIMIZE TABLE "+rt+".flows FINAL", "OPTIMIZE TABLE "+rt+".flows_by_dst FINAL")
		wantIDs := [][]string{{"ttl-fresh"}, {"ttl-old"}}
		if modern {
			wantIDs = wantIDs[:1]
		}
		got, err = s.query("", "SELECT id FROM "+rt+".flows WHERE id LIKE 'ttl-%' ORDER BY id", nil)
		if err != nil {
			t.Fatal(err)
		}
		compareRows(t, "ttl", got, wantIDs)
	})

	t.Run("pcap_flows", func(t *testing.T) {
		// Real captures (shared/testdata, not written here) through the
		// collector, the payload parsers and GeoIP enrichment.
		rs := pcapFlows(t)
		oldest := slices.MinFunc(rs, func(a, b *flowpb.FlowRecord) int { return cmp.Compare(a.FirstSeenNs, b.FirstSeenNs) })
		pdb := db + "_pcap"
		// Captures are years old: a TTL shorter than their age would drop
		// them on insert (see docs/sink.md).
		migrate(pdb, int(time.Since(time.Unix(0, oldest.FirstSeenNs)).Hours()/24)+30)
		insertFlows(pdb, rs)
		var want [][]string
		var bytesOut uint64
		for _, r := range rs {
			host := r.GetTls().GetSni()
			if host == "" {
				host = r.GetHttp().GetHost()
			}
			if host == "" {
				host = r.GetDns().GetQueryName()
			}
			bytesOut += r.BytesOut
			mac := strings.ToUpper(fmt.Sprintf("%x", r.SrcMac))
			if len(r.SrcMac) != 6 {
				mac = "000000000000" // no Ethernet header (loopback captures): zero-filled
			}
			want = append(want, []string{r.Id, ts(r.FirstSeenNs), fmt.Sprint(r.LastSeenNs),
				netip.AddrFrom16([16]byte(r.SrcAddr)).String(), netip.AddrFrom16([16]byte(r.DstAddr)).String(),
				fmt.Sprint(r.SrcPort), fmt.Sprint(r.DstPort), fmt.Sprint(r.Protocol), fmt.Sprint(r.IpVersion),
				fmt.Sprint(r.BytesOut), fmt.Sprint(r.PacketsOut), fmt.Sprint(r.BytesIn), fmt.Sprint(r.PacketsIn),
				mac, r.CommunityId, enumName(r.EndReason.String(), "END_REASON_"),
				host, r.GetDns().GetQueryName(), fmt.Sprint(r.GetTls().GetAlpn()), fmt.Sprint(r.GetHttp().GetPath()),
				r.GetEnrichment().GetDstGeo().GetCountry(), enumName(r.GetEnrichment().GetDstGeo().GetAddrClass().String(), "ADDR_CLASS_")})
		}
		sort.Slice(want, func(i, j int) bool { return want[i][0] < want[j][0] })
		res, err := s.queries("", chdbStep{SQL: `SELECT id, time, last_seen_ns, IPv6NumToString(src_addr), IPv6NumToString(dst_addr),
    src_port, dst_port, protocol, ip_version, bytes_out, packets_out, bytes_in, packets_in, hex(src_mac), community_id,
    end_reason, dst_host, dns_query, tls_alpn, http_path, dst_country, dst_addr_class
FROM ` + pdb + `.flows ORDER BY id`}, chdbStep{SQL: "SELECT count(), sum(bytes_out) FROM " + pdb + ".flows_by_dst"})
		if err != nil {
			t.Fatal(err)
		}
		compareRows(t, "pcap flows read back", res[0], want)
		compareRows(t, "pcap flows_by_dst", res[1], [][]string{{fmt.Sprint(len(rs)), fmt.Sprint(bytesOut)}})

		// The saved queries on real traffic: destinations without a host
		// name come out as IPv6NumToString of the address column (IPv6 or
		// FixedString(16)). Cases these captures give no rows for (no
		// identifier matches, no beacons) are covered by saved_queries.
		newest := slices.MaxFunc(rs, func(a, b *flowpb.FlowRecord) int { return cmp.Compare(a.FirstSeenNs, b.FirstSeenNs) })
		end := time.Unix(0, newest.FirstSeenNs).UTC().Truncate(time.Second).Add(time.Second)
		win := queryWindow{from: time.Unix(0, oldest.FirstSeenNs).UTC().Truncate(time.Second), to: end, now: end, country: "US", top: 10}
		ran := map[string]bool{}
		addrDest := false
		for _, c := range savedQueryCases(rs, win) {
			if len(c.want) == 0 {
				continue
			}
			ran[c.file] = true
			for _, r := range c.want {
				for _, v := range r {
					if _, err := netip.ParseAddr(v); err == nil && strings.Contains(v, ":") {
						addrDest = true
					}
				}
			}
			t.Run(c.name, func(t *testing.T) { runSavedQueryOnChDB(t, s, pdb, c) })
		}
		if !addrDest {
			t.Error("no destination without a host name in the expected rows: IPv6NumToString is not exercised")
		}
		if len(ran) < 3 {
			t.Errorf("only %v have rows on the captures; want egress, first-seen and top-upload", ran)
		}
	})
}

// runSavedQueryOnChDB runs c with literals substituted (what the 18.16 path
// sends) and with native parameters (clickhouse-client --param_*). 26.9 has
// only the new query analyzer (enable_analyzer = 0 is refused), so the old
// one of 22.1-24.2 servers is not covered.
func runSavedQueryOnChDB(t *testing.T, s *chdbSession, db string, c savedQuery) {
	src := loadSavedQuery(t, c.file)
	lit, err := RenderQuery(src, c.params)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		how    string
		sql    string
		params map[string]string
	}{
		{"literals", lit, nil},
		{"parameters", src, chdbParams(t, c.params)},
	} {
		got, err := s.query(db, run.sql, run.params)
		if err != nil {
			t.Errorf("%s: %v", run.how, err)
			continue
		}
		compareRows(t, c.name+" ("+run.how+")", got, c.want)
		if c.check != nil {
			c.check(t, got)
		}
	}
}
