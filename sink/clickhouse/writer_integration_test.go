package clickhouse

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// enumName maps a proto enum value name (DIRECTION_OUTBOUND) to the Enum8
// label the DDL gives it (outbound), so the test checks the DDL's numbering
// against the generated proto code rather than against itself.
func enumName(protoName, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(protoName, prefix))
}

func parseAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return a.Unmap()
}

func TestWriteFlowsReadBack(t *testing.T) { testWriteFlowsReadBack(t, 1) }

// Every block split into three concurrent INSERTs (parts of 2-3 rows).
func TestWriteFlowsReadBackSplit(t *testing.T) { testWriteFlowsReadBack(t, 3) }

func testWriteFlowsReadBack(t *testing.T, inserts int) {
	cfg := testConfig(t)
	cfg.MaxBatchRows = 7 // force several blocks
	cfg.FlowInserts = inserts
	w := openWriter(t, cfg)
	w.splitMinRows = 1
	batches0 := counterValue(batchesSent.WithLabelValues("flows"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var recs []*flowpb.FlowRecord
	for i := range 30 {
		recs = append(recs, sampleFlow(i))
	}
	// Two calls of different sizes: the second reuses the first's batch
	// and column buffers (blockInserter), so stale rows would show here.
	for _, part := range [][]*flowpb.FlowRecord{recs[:17], recs[17:]} {
		if err := w.WriteFlows(ctx, part); err != nil {
			t.Fatalf("WriteFlows: %v", err)
		}
	}

	rows, err := w.Conn().Query(ctx, `SELECT time, first_seen_ns, last_seen_ns, observed_ns, id, schema_version,
	gateway, interfaces, device_id, device_model, device_group, device_os, attributed_by,
	toString(direction), IPv6NumToString(src_addr), IPv6NumToString(dst_addr), src_port, dst_port, protocol, ip_version,
	bytes_out, packets_out, bytes_in, packets_in, tcp_flags_out, tcp_flags_in, hex(src_mac), community_id,
	toString(end_reason), fragments, dst_host, dns_query, dns_qtype, dns_rcode, tls_sni, tls_alpn, tls_version, tls_quic,
	http_method, http_host, http_path, http_user_agent, http_content_type,
	toString(dst_addr_class), dst_country, dst_city, dst_asn, dst_org, cleartext, match_count, match_types
FROM `+cfg.Database+`.flows ORDER BY first_seen_ns`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if n >= len(recs) {
			t.Fatalf("more rows than records")
		}
		r := recs[n]
		n++
		var (
			tm                                           time.Time
			first, last, observed                        int64
			id, gw, devID, devModel, devGroup, devOS, ab string
			sv, proto, ipv, dnsRcode, quic, clear        uint8
			ifaces, alpn, mtypes                         []string
			dir, src, dst, mac, cid, endr, host          string
			sport, dport, flo, fli, qtype, tlsv, mcount  uint16
			bo, po, bi, pi                               uint64
			frag, asn                                    uint32
			dnsq, sni, hm, hh, hp, hua, hct              string
			class, country, city, org                    string
		)
		if err := rows.Scan(&tm, &first, &last, &observed, &id, &sv, &gw, &ifaces, &devID, &devModel, &devGroup, &devOS, &ab,
			&dir, &src, &dst, &sport, &dport, &proto, &ipv, &bo, &po, &bi, &pi, &flo, &fli, &mac, &cid,
			&endr, &frag, &host, &dnsq, &qtype, &dnsRcode, &sni, &alpn, &tlsv, &quic,
			&hm, &hh, &hp, &hua, &hct, &class, &country, &city, &asn, &org, &clear, &mcount, &mtypes); err != nil {
			t.Fatalf("scan: %v", err)
		}
		e := r.Enrichment
		check := func(name string, got, want any) {
			t.Helper()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("flow %s: %s = %v, want %v", r.Id, name, got, want)
			}
		}
		check("time", tm.Unix(), r.FirstSeenNs/1e9)
		check("first_seen_ns", first, r.FirstSeenNs)
		check("last_seen_ns", last, r.LastSeenNs)
		check("observed_ns", observed, r.ObservedNs)
		check("id", id, r.Id)
		check("schema_version", sv, r.SchemaVersion)
		check("gateway", gw, r.Gateway)
		check("interfaces", ifaces, r.Interfaces)
		check("device_id", devID, e.Device.Id)
		check("device_model", devModel, e.Device.Model)
		check("device_group", devGroup, e.Device.Group)
		check("device_os", devOS, e.Device.OsVersion)
		check("attributed_by", ab, e.Device.AttributedBy)
		check("direction", dir, enumName(r.Direction.String(), "DIRECTION_"))
		check("src_addr", parseAddr(t, src), schema.Addr(r.SrcAddr))
		check("dst_addr", parseAddr(t, dst), schema.Addr(r.DstAddr))
		check("src_port", sport, r.SrcPort)
		check("dst_port", dport, r.DstPort)
		check("protocol", proto, r.Protocol)
		check("ip_version", ipv, r.IpVersion)
		check("bytes_out", bo, r.BytesOut)
		check("packets_out", po, r.PacketsOut)
		check("bytes_in", bi, r.BytesIn)
		check("packets_in", pi, r.PacketsIn)
		check("tcp_flags_out", flo, r.TcpFlagsOut)
		check("tcp_flags_in", fli, r.TcpFlagsIn)
		check("src_mac", strings.ToLower(mac), fmt.Sprintf("%x", r.SrcMac))
		check("community_id", cid, r.CommunityId)
		check("end_reason", endr, enumName(r.EndReason.String(), "END_REASON_"))
		check("fragments", frag, r.Fragments)
		check("dst_host", host, r.Tls.Sni)
		check("dns_query", dnsq, r.Dns.QueryName)
		check("dns_qtype", qtype, r.Dns.QueryType)
		check("dns_rcode", dnsRcode, r.Dns.Rcode)
		check("tls_sni", sni, r.Tls.Sni)
		check("tls_alpn", alpn, r.Tls.Alpn)
		check("tls_version", tlsv, r.Tls.Version)
		check("tls_quic", quic == 1, r.Tls.Quic)
		check("http_method", hm, r.Http.Method)
		check("http_host", hh, r.Http.Host)
		check("http_path", hp, r.Http.Path)
		check("http_user_agent", hua, r.Http.UserAgent)
		check("http_content_type", hct, r.Http.ContentType)
		check("dst_addr_class", class, enumName(e.DstGeo.AddrClass.String(), "ADDR_CLASS_"))
		check("dst_country", country, e.DstGeo.Country)
		check("dst_city", city, e.DstGeo.City)
		check("dst_asn", asn, e.DstGeo.Asn)
		check("dst_org", org, e.DstGeo.Org)
		check("cleartext", clear == 1, e.Cleartext)
		check("match_count", mcount, len(e.Matches))
		var wantTypes []string
		for _, m := range e.Matches {
			if !slices.Contains(wantTypes, m.IdentifierType) {
				wantTypes = append(wantTypes, m.IdentifierType)
			}
		}
		check("match_types", mtypes, wantTypes)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(recs) {
		t.Fatalf("read %d flows, wrote %d", n, len(recs))
	}
	// 17 and 13 rows in blocks of 7: 3 + 2 blocks, each cut into parts.
	if got, want := counterValue(batchesSent.WithLabelValues("flows"))-batches0, float64(5*inserts); got != want {
		t.Fatalf("%v flows INSERTs, want %v", got, want)
	}

	// matches: one row per IdentifierMatch.
	type mrow struct {
		flowID, dev, model, owner, typ, form, field, dst, host, country, org string
		offset, asn                                                          uint32
		layers, clear                                                        uint8
		port                                                                 uint16
		timeNs                                                               int64
	}
	var want []mrow
	for _, r := range recs {
		for _, m := range r.Enrichment.Matches {
			want = append(want, mrow{r.Id, r.Enrichment.Device.Id, r.Enrichment.Device.Model, m.DeviceId, m.IdentifierType,
				m.Form, m.Field, schema.Addr(r.DstAddr).String(), r.Tls.Sni, r.Enrichment.DstGeo.Country, r.Enrichment.DstGeo.Org,
				m.Offset, r.Enrichment.DstGeo.Asn, uint8(m.Layers), b2u8(m.Cleartext), uint16(r.DstPort), r.FirstSeenNs})
		}
	}
	mrows, err := w.Conn().Query(ctx, `SELECT flow_id, device_id, device_model, owner_device_id, identifier_type, form, field,
	IPv6NumToString(dst_addr), dst_host, dst_country, dst_org, offset, dst_asn, layers, cleartext, dst_port, time_ns
FROM `+cfg.Database+`.matches ORDER BY time_ns, owner_device_id, identifier_type, form, field`)
	if err != nil {
		t.Fatal(err)
	}
	defer mrows.Close()
	var got []mrow
	for mrows.Next() {
		var m mrow
		if err := mrows.Scan(&m.flowID, &m.dev, &m.model, &m.owner, &m.typ, &m.form, &m.field, &m.dst, &m.host, &m.country,
			&m.org, &m.offset, &m.asn, &m.layers, &m.clear, &m.port, &m.timeNs); err != nil {
			t.Fatal(err)
		}
		m.dst = parseAddr(t, m.dst).String()
		got = append(got, m)
	}
	key := func(m mrow) string { return fmt.Sprint(m.timeNs, m.owner, m.typ, m.form, m.field) }
	slices.SortFunc(want, func(a, b mrow) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(got, func(a, b mrow) int { return strings.Compare(key(a), key(b)) })
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("matches:\n got %+v\nwant %+v", got, want)
	}

	// The destination-ordered copy saw every flow.
	var byDst uint64
	if err := w.Conn().QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".flows_by_dst").Scan(&byDst); err != nil {
		t.Fatal(err)
	}
	if int(byDst) != len(recs) {
		t.Fatalf("flows_by_dst has %d rows, want %d", byDst, len(recs))
	}
}

type alertRow struct {
	id, dedup, detector, severity, dev, model, group, summary string
	evk, evv, flowIDs                                         []string
	first, last, window, created                              int64
	count, bytes                                              uint64
	dst, host, country, org                                   string
	port                                                      uint16
	asn                                                       uint32
	score                                                     float64
}

func readAlerts(t *testing.T, w *Writer, db string, final bool) []alertRow {
	t.Helper()
	q := `SELECT id, dedup_key, detector, toString(severity), device_id, device_model, device_group, summary,
	evidence_keys, evidence_values, flow_ids, first_seen_ns, last_seen_ns, window_start_ns, created_ns, count, bytes,
	IPv6NumToString(dst_addr), dst_host, dst_country, dst_org, dst_port, dst_asn, score FROM ` + db + `.alerts`
	if final {
		q += " FINAL"
	}
	rows, err := w.Conn().Query(context.Background(), q+" ORDER BY id, created_ns")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []alertRow
	for rows.Next() {
		var a alertRow
		if err := rows.Scan(&a.id, &a.dedup, &a.detector, &a.severity, &a.dev, &a.model, &a.group, &a.summary,
			&a.evk, &a.evv, &a.flowIDs, &a.first, &a.last, &a.window, &a.created, &a.count, &a.bytes,
			&a.dst, &a.host, &a.country, &a.org, &a.port, &a.asn, &a.score); err != nil {
			t.Fatal(err)
		}
		a.dst = parseAddr(t, a.dst).String()
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantAlertRow(a *flowpb.Alert) alertRow {
	r := alertRow{id: a.Id, dedup: a.DedupKey, detector: a.Detector, severity: enumName(a.Severity.String(), "SEVERITY_"),
		dev: a.DeviceId, model: a.DeviceModel, group: a.DeviceGroup, summary: a.Summary, flowIDs: a.FlowIds,
		first: a.FirstSeenNs, last: a.LastSeenNs, window: a.WindowStartNs, created: a.CreatedNs, count: a.Count, bytes: a.Bytes,
		dst: schema.Addr(a.Destination.Addr).String(), host: a.Destination.Host, country: a.Destination.Country,
		org: a.Destination.Org, port: uint16(a.Destination.Port), asn: a.Destination.Asn, score: a.Score}
	for _, e := range a.Evidence {
		r.evk = append(r.evk, e.Key)
		r.evv = append(r.evv, e.Value)
	}
	return r
}

func equalAlerts(t *testing.T, got []alertRow, want []*flowpb.Alert) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d alert rows, want %d", len(got), len(want))
	}
	for i := range want {
		w := wantAlertRow(want[i])
		if fmt.Sprintf("%+v", got[i]) != fmt.Sprintf("%+v", w) {
			t.Errorf("alert %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
}

func TestWriteAlertsReadBackAndCollapse(t *testing.T) {
	cfg := testConfig(t)
	w := openWriter(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var alerts []*flowpb.Alert
	for i := range 12 {
		alerts = append(alerts, sampleAlert(i))
	}
	if err := w.WriteAlerts(ctx, alerts); err != nil {
		t.Fatal(err)
	}
	equalAlerts(t, readAlerts(t, w, cfg.Database, false), alerts)

	// Re-insert the same alerts (a retried delivery) and an updated copy of
	// alert 3 (re-emitted with a later created_ns and a higher count).
	upd := sampleAlert(3)
	upd.Count, upd.CreatedNs, upd.LastSeenNs = 77, upd.CreatedNs+5e9, upd.LastSeenNs+5e9
	if err := w.WriteAlerts(ctx, append(slices.Clone(alerts), upd)); err != nil {
		t.Fatal(err)
	}
	if raw := readAlerts(t, w, cfg.Database, false); len(raw) <= len(alerts) {
		t.Fatalf("expected duplicate rows before merge, got %d", len(raw))
	}
	want := slices.Clone(alerts)
	want[3] = upd
	equalAlerts(t, readAlerts(t, w, cfg.Database, true), want)

	// After OPTIMIZE ... FINAL the duplicates are gone from storage too.
	if err := w.Conn().Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+".alerts FINAL"); err != nil {
		t.Fatal(err)
	}
	equalAlerts(t, readAlerts(t, w, cfg.Database, false), want)
}
