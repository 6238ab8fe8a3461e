package clickhouse

import (
	"net/netip"
	"slices"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// The column builders turn records into one Go slice per column, appended
// to an INSERT block with batch.Column(i).Append(slice). Slices are reused
// between batches and mostly reference the records' own strings and bytes,
// so a steady-state batch allocates nothing per row.

var zeroMAC = make([]byte, 6)

// addrCol holds one address column in the form the server's column type
// takes: 16-byte slices for FixedString(16), netip.Addr for IPv6.
type addrCol struct {
	modern bool
	raw    [][]byte
	ip     []netip.Addr
}

func (c *addrCol) reset() { c.raw, c.ip = c.raw[:0], c.ip[:0] }

func (c *addrCol) add(b []byte) {
	if !c.modern && len(b) == 16 {
		// FixedString(16) holds the wire form as is; checked first, as
		// parsing it for nothing was a fifth of add in the CPU profile.
		c.raw = append(c.raw, b)
		return
	}
	a := schema.Addr(b) // unmaps; zero Addr when absent or malformed
	if c.modern {
		if !a.IsValid() {
			a = netip.IPv6Unspecified()
		}
		c.ip = append(c.ip, a)
		return
	}
	if a.IsValid() {
		c.raw = append(c.raw, schema.AddrBytes(a))
		return
	}
	c.raw = append(c.raw, nil) // zero-filled by the driver
}

func (c *addrCol) slice() any {
	if c.modern {
		return c.ip
	}
	return c.raw
}

// strArrCol holds one Array(String) column. On the portable profile rows
// are []*string pointing at the records' own strings: clickhouse-go appends
// arrays by reflection, and a *string element passes through it without
// the per-element allocation a string element costs (~3 allocations per
// flow row fewer, measured in BenchmarkInsertFlows). The modern profile's
// Array(LowCardinality(String)) dictionary is keyed by the appended value,
// where pointers would defeat deduplication, so it keeps []string rows.
type strArrCol struct {
	modern   bool
	vals     [][]string
	ptrs     [][]*string
	arena    []*string // backing store of ptrs rows
	strArena []string  // backing store of addSet's vals rows
}

func (c *strArrCol) reset() {
	c.vals, c.ptrs = c.vals[:0], c.ptrs[:0]
	clear(c.arena) // drop references to old records' strings
	clear(c.strArena)
	c.arena, c.strArena = c.arena[:0], c.strArena[:0]
}

// add appends the row s; s must stay unmodified until the block is sent.
func (c *strArrCol) add(s []string) {
	if c.modern {
		c.vals = append(c.vals, s)
		return
	}
	start := len(c.arena)
	for i := range s {
		c.arena = append(c.arena, &s[i])
	}
	c.ptrs = append(c.ptrs, c.arena[start:len(c.arena):len(c.arena)])
}

// addSet appends the distinct values among v(0), ..., v(n-1) as one row;
// the pointed-to strings must stay unmodified until the block is sent.
func (c *strArrCol) addSet(n int, v func(int) *string) {
	if c.modern {
		start := len(c.strArena)
		for i := range n {
			if s := *v(i); !slices.Contains(c.strArena[start:], s) {
				c.strArena = append(c.strArena, s)
			}
		}
		c.vals = append(c.vals, c.strArena[start:len(c.strArena):len(c.strArena)])
		return
	}
	start := len(c.arena)
	for i := range n {
		if p := v(i); !containsPtr(c.arena[start:], *p) {
			c.arena = append(c.arena, p)
		}
	}
	c.ptrs = append(c.ptrs, c.arena[start:len(c.arena):len(c.arena)])
}

func containsPtr(s []*string, v string) bool {
	for _, p := range s {
		if *p == v {
			return true
		}
	}
	return false
}

// row is row j as one value, for row-wise appends (benchmark baseline).
func (c *strArrCol) row(j int) any {
	if c.modern {
		return c.vals[j]
	}
	return c.ptrs[j]
}

func (c *strArrCol) slice() any {
	if c.modern {
		return c.vals
	}
	return c.ptrs
}

// destHost names the remote end the way an analyst reads it: TLS SNI, else
// the HTTP Host, else the DNS question.
func destHost(r *flowpb.FlowRecord) string {
	if s := r.GetTls().GetSni(); s != "" {
		return s
	}
	if s := r.GetHttp().GetHost(); s != "" {
		return s
	}
	return r.GetDns().GetQueryName()
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func sec(ns int64) int64 {
	if ns < 0 {
		return 0
	}
	return ns / 1e9
}

// flowColumnNames is the INSERT column list of flows, in append order.
var flowColumnNames = []string{
	"time", "first_seen_ns", "last_seen_ns", "observed_ns", "id", "schema_version",
	"gateway", "interfaces", "device_id", "device_model", "device_group", "device_os", "attributed_by",
	"direction", "src_addr", "dst_addr", "src_port", "dst_port", "protocol", "ip_version",
	"bytes_out", "packets_out", "bytes_in", "packets_in", "tcp_flags_out", "tcp_flags_in",
	"src_mac", "community_id", "end_reason", "fragments", "dst_host",
	"dns_query", "dns_qtype", "dns_rcode", "tls_sni", "tls_alpn", "tls_version", "tls_quic",
	"http_method", "http_host", "http_path", "http_user_agent", "http_content_type",
	"dst_addr_class", "dst_country", "dst_city", "dst_asn", "dst_org",
	"cleartext", "match_count", "match_types",
}

type flowColumns struct {
	time                                     []int64
	firstNs, lastNs, observedNs              []int64
	id                                       []string
	schemaVersion                            []uint8
	gateway                                  []string
	interfaces                               strArrCol
	devID, devModel, devGroup, devOS, attrBy []string
	direction                                []int8
	src, dst                                 addrCol
	srcPort, dstPort                         []uint16
	proto, ipVer                             []uint8
	bytesOut, pktsOut, bytesIn, pktsIn       []uint64
	flagsOut, flagsIn                        []uint16
	srcMAC                                   [][]byte
	communityID                              []string
	endReason                                []int8
	fragments                                []uint32
	dstHost                                  []string
	dnsQuery                                 []string
	dnsQtype                                 []uint16
	dnsRcode                                 []uint8
	tlsSNI                                   []string
	tlsALPN                                  strArrCol
	tlsVersion                               []uint16
	tlsQUIC                                  []uint8
	httpMethod, httpHost, httpPath, httpUA   []string
	httpCT                                   []string
	dstClass                                 []int8
	dstCountry, dstCity                      []string
	dstASN                                   []uint32
	dstOrg                                   []string
	cleartext                                []uint8
	matchCount                               []uint16
	matchTypes                               strArrCol
	cols                                     []any
}

func newFlowColumns(modern bool) *flowColumns {
	c := &flowColumns{}
	c.src.modern, c.dst.modern = modern, modern
	c.interfaces.modern, c.tlsALPN.modern, c.matchTypes.modern = modern, modern, modern
	return c
}

func (c *flowColumns) reset() {
	c.time, c.firstNs, c.lastNs, c.observedNs = c.time[:0], c.firstNs[:0], c.lastNs[:0], c.observedNs[:0]
	c.id, c.schemaVersion, c.gateway = c.id[:0], c.schemaVersion[:0], c.gateway[:0]
	c.interfaces.reset()
	c.devID, c.devModel, c.devGroup, c.devOS, c.attrBy = c.devID[:0], c.devModel[:0], c.devGroup[:0], c.devOS[:0], c.attrBy[:0]
	c.direction = c.direction[:0]
	c.src.reset()
	c.dst.reset()
	c.srcPort, c.dstPort, c.proto, c.ipVer = c.srcPort[:0], c.dstPort[:0], c.proto[:0], c.ipVer[:0]
	c.bytesOut, c.pktsOut, c.bytesIn, c.pktsIn = c.bytesOut[:0], c.pktsOut[:0], c.bytesIn[:0], c.pktsIn[:0]
	c.flagsOut, c.flagsIn, c.srcMAC, c.communityID = c.flagsOut[:0], c.flagsIn[:0], c.srcMAC[:0], c.communityID[:0]
	c.endReason, c.fragments, c.dstHost = c.endReason[:0], c.fragments[:0], c.dstHost[:0]
	c.dnsQuery, c.dnsQtype, c.dnsRcode = c.dnsQuery[:0], c.dnsQtype[:0], c.dnsRcode[:0]
	c.tlsSNI, c.tlsVersion, c.tlsQUIC = c.tlsSNI[:0], c.tlsVersion[:0], c.tlsQUIC[:0]
	c.tlsALPN.reset()
	c.httpMethod, c.httpHost, c.httpPath, c.httpUA, c.httpCT = c.httpMethod[:0], c.httpHost[:0], c.httpPath[:0], c.httpUA[:0], c.httpCT[:0]
	c.dstClass, c.dstCountry, c.dstCity, c.dstASN, c.dstOrg = c.dstClass[:0], c.dstCountry[:0], c.dstCity[:0], c.dstASN[:0], c.dstOrg[:0]
	c.cleartext, c.matchCount = c.cleartext[:0], c.matchCount[:0]
	c.matchTypes.reset()
}

func (c *flowColumns) add(r *flowpb.FlowRecord) {
	e := r.GetEnrichment()
	d := e.GetDevice()
	g := e.GetDstGeo()
	c.time = append(c.time, sec(r.GetFirstSeenNs()))
	c.firstNs = append(c.firstNs, r.GetFirstSeenNs())
	c.lastNs = append(c.lastNs, r.GetLastSeenNs())
	c.observedNs = append(c.observedNs, r.GetObservedNs())
	c.id = append(c.id, r.GetId())
	c.schemaVersion = append(c.schemaVersion, uint8(r.GetSchemaVersion()))
	c.gateway = append(c.gateway, r.GetGateway())
	c.interfaces.add(r.GetInterfaces())
	c.devID = append(c.devID, d.GetId())
	c.devModel = append(c.devModel, d.GetModel())
	c.devGroup = append(c.devGroup, d.GetGroup())
	c.devOS = append(c.devOS, d.GetOsVersion())
	c.attrBy = append(c.attrBy, d.GetAttributedBy())
	c.direction = append(c.direction, int8(r.GetDirection()))
	c.src.add(r.GetSrcAddr())
	c.dst.add(r.GetDstAddr())
	c.srcPort = append(c.srcPort, uint16(r.GetSrcPort()))
	c.dstPort = append(c.dstPort, uint16(r.GetDstPort()))
	c.proto = append(c.proto, uint8(r.GetProtocol()))
	c.ipVer = append(c.ipVer, uint8(r.GetIpVersion()))
	c.bytesOut = append(c.bytesOut, r.GetBytesOut())
	c.pktsOut = append(c.pktsOut, r.GetPacketsOut())
	c.bytesIn = append(c.bytesIn, r.GetBytesIn())
	c.pktsIn = append(c.pktsIn, r.GetPacketsIn())
	c.flagsOut = append(c.flagsOut, uint16(r.GetTcpFlagsOut()))
	c.flagsIn = append(c.flagsIn, uint16(r.GetTcpFlagsIn()))
	if m := r.GetSrcMac(); len(m) == 6 {
		c.srcMAC = append(c.srcMAC, m)
	} else {
		c.srcMAC = append(c.srcMAC, zeroMAC)
	}
	c.communityID = append(c.communityID, r.GetCommunityId())
	c.endReason = append(c.endReason, int8(r.GetEndReason()))
	c.fragments = append(c.fragments, r.GetFragments())
	c.dstHost = append(c.dstHost, destHost(r))
	c.dnsQuery = append(c.dnsQuery, r.GetDns().GetQueryName())
	c.dnsQtype = append(c.dnsQtype, uint16(r.GetDns().GetQueryType()))
	c.dnsRcode = append(c.dnsRcode, uint8(r.GetDns().GetRcode()))
	c.tlsSNI = append(c.tlsSNI, r.GetTls().GetSni())
	c.tlsALPN.add(r.GetTls().GetAlpn())
	c.tlsVersion = append(c.tlsVersion, uint16(r.GetTls().GetVersion()))
	c.tlsQUIC = append(c.tlsQUIC, b2u8(r.GetTls().GetQuic()))
	h := r.GetHttp()
	c.httpMethod = append(c.httpMethod, h.GetMethod())
	c.httpHost = append(c.httpHost, h.GetHost())
	c.httpPath = append(c.httpPath, h.GetPath())
	c.httpUA = append(c.httpUA, h.GetUserAgent())
	c.httpCT = append(c.httpCT, h.GetContentType())
	c.dstClass = append(c.dstClass, int8(g.GetAddrClass()))
	c.dstCountry = append(c.dstCountry, g.GetCountry())
	c.dstCity = append(c.dstCity, g.GetCity())
	c.dstASN = append(c.dstASN, g.GetAsn())
	c.dstOrg = append(c.dstOrg, g.GetOrg())
	c.cleartext = append(c.cleartext, b2u8(e.GetCleartext()))
	ms := e.GetMatches()
	c.matchCount = append(c.matchCount, uint16(min(len(ms), 65535)))
	c.matchTypes.addSet(len(ms), func(i int) *string { return &ms[i].IdentifierType })
}

// columns returns the slices in flowColumnNames order.
func (c *flowColumns) columns() []any {
	c.cols = append(c.cols[:0],
		c.time, c.firstNs, c.lastNs, c.observedNs, c.id, c.schemaVersion,
		c.gateway, c.interfaces.slice(), c.devID, c.devModel, c.devGroup, c.devOS, c.attrBy,
		c.direction, c.src.slice(), c.dst.slice(), c.srcPort, c.dstPort, c.proto, c.ipVer,
		c.bytesOut, c.pktsOut, c.bytesIn, c.pktsIn, c.flagsOut, c.flagsIn,
		c.srcMAC, c.communityID, c.endReason, c.fragments, c.dstHost,
		c.dnsQuery, c.dnsQtype, c.dnsRcode, c.tlsSNI, c.tlsALPN.slice(), c.tlsVersion, c.tlsQUIC,
		c.httpMethod, c.httpHost, c.httpPath, c.httpUA, c.httpCT,
		c.dstClass, c.dstCountry, c.dstCity, c.dstASN, c.dstOrg,
		c.cleartext, c.matchCount, c.matchTypes.slice(),
	)
	return c.cols
}

func (c *flowColumns) rows() int { return len(c.id) }

// matchColumnNames is the INSERT column list of matches, in append order.
var matchColumnNames = []string{
	"time", "time_ns", "flow_id", "device_id", "device_model", "owner_device_id",
	"identifier_type", "form", "field", "offset", "layers", "cleartext",
	"dst_addr", "dst_port", "dst_host", "dst_country", "dst_asn", "dst_org",
}

type matchColumns struct {
	time, timeNs                   []int64
	flowID, devID, devModel, owner []string
	idType, form, field            []string
	offset                         []uint32
	layers, cleartext              []uint8
	dst                            addrCol
	dstPort                        []uint16
	dstHost, dstCountry            []string
	dstASN                         []uint32
	dstOrg                         []string
	cols                           []any
}

func newMatchColumns(modern bool) *matchColumns {
	c := &matchColumns{}
	c.dst.modern = modern
	return c
}

func (c *matchColumns) reset() {
	c.time, c.timeNs, c.flowID, c.devID, c.devModel, c.owner = c.time[:0], c.timeNs[:0], c.flowID[:0], c.devID[:0], c.devModel[:0], c.owner[:0]
	c.idType, c.form, c.field, c.offset, c.layers, c.cleartext = c.idType[:0], c.form[:0], c.field[:0], c.offset[:0], c.layers[:0], c.cleartext[:0]
	c.dst.reset()
	c.dstPort, c.dstHost, c.dstCountry, c.dstASN, c.dstOrg = c.dstPort[:0], c.dstHost[:0], c.dstCountry[:0], c.dstASN[:0], c.dstOrg[:0]
}

// add appends one row per identifier match of r.
func (c *matchColumns) add(r *flowpb.FlowRecord) {
	e := r.GetEnrichment()
	ms := e.GetMatches()
	if len(ms) == 0 {
		return
	}
	g := e.GetDstGeo()
	host := destHost(r)
	for _, m := range ms {
		c.time = append(c.time, sec(r.GetFirstSeenNs()))
		c.timeNs = append(c.timeNs, r.GetFirstSeenNs())
		c.flowID = append(c.flowID, r.GetId())
		c.devID = append(c.devID, e.GetDevice().GetId())
		c.devModel = append(c.devModel, e.GetDevice().GetModel())
		c.owner = append(c.owner, m.GetDeviceId())
		c.idType = append(c.idType, m.GetIdentifierType())
		c.form = append(c.form, m.GetForm())
		c.field = append(c.field, m.GetField())
		c.offset = append(c.offset, m.GetOffset())
		c.layers = append(c.layers, uint8(min(m.GetLayers(), 255)))
		c.cleartext = append(c.cleartext, b2u8(m.GetCleartext()))
		c.dst.add(r.GetDstAddr())
		c.dstPort = append(c.dstPort, uint16(r.GetDstPort()))
		c.dstHost = append(c.dstHost, host)
		c.dstCountry = append(c.dstCountry, g.GetCountry())
		c.dstASN = append(c.dstASN, g.GetAsn())
		c.dstOrg = append(c.dstOrg, g.GetOrg())
	}
}

func (c *matchColumns) columns() []any {
	c.cols = append(c.cols[:0],
		c.time, c.timeNs, c.flowID, c.devID, c.devModel, c.owner,
		c.idType, c.form, c.field, c.offset, c.layers, c.cleartext,
		c.dst.slice(), c.dstPort, c.dstHost, c.dstCountry, c.dstASN, c.dstOrg,
	)
	return c.cols
}

func (c *matchColumns) rows() int { return len(c.time) }

// alertColumnNames is the INSERT column list of alerts, in append order.
var alertColumnNames = []string{
	"time", "id", "version", "schema_version", "dedup_key", "detector", "severity",
	"device_id", "device_model", "device_group", "summary", "evidence_keys", "evidence_values",
	"first_seen_ns", "last_seen_ns", "window_start_ns", "created_ns", "count",
	"dst_addr", "dst_port", "dst_host", "dst_country", "dst_asn", "dst_org",
	"flow_ids", "bytes", "score",
}

type alertColumns struct {
	time                                 []int64
	id                                   []string
	version                              []uint64
	schemaVersion                        []uint8
	dedupKey, detector                   []string
	severity                             []int8
	devID, devModel, devGroup, summary   []string
	evKeys, evValues                     [][]string
	firstNs, lastNs, windowNs, createdNs []int64
	count                                []uint64
	dst                                  addrCol
	dstPort                              []uint16
	dstHost, dstCountry                  []string
	dstASN                               []uint32
	dstOrg                               []string
	flowIDs                              [][]string
	bytes                                []uint64
	score                                []float64
	cols                                 []any
}

func newAlertColumns(modern bool) *alertColumns {
	c := &alertColumns{}
	c.dst.modern = modern
	return c
}

func (c *alertColumns) reset() { *c = alertColumns{dst: addrCol{modern: c.dst.modern}} }

// alertTime is the partition time of an alert: its window start (part of
// the deterministic id, so re-emitted copies share a partition and merge),
// else its first sighting.
func alertTime(a *flowpb.Alert) int64 {
	if a.GetWindowStartNs() > 0 {
		return sec(a.GetWindowStartNs())
	}
	return sec(a.GetFirstSeenNs())
}

func (c *alertColumns) add(a *flowpb.Alert) {
	dst := a.GetDestination()
	c.time = append(c.time, alertTime(a))
	c.id = append(c.id, a.GetId())
	c.version = append(c.version, uint64(max(a.GetCreatedNs(), 0)))
	c.schemaVersion = append(c.schemaVersion, uint8(a.GetSchemaVersion()))
	c.dedupKey = append(c.dedupKey, a.GetDedupKey())
	c.detector = append(c.detector, a.GetDetector())
	c.severity = append(c.severity, int8(a.GetSeverity()))
	c.devID = append(c.devID, a.GetDeviceId())
	c.devModel = append(c.devModel, a.GetDeviceModel())
	c.devGroup = append(c.devGroup, a.GetDeviceGroup())
	c.summary = append(c.summary, a.GetSummary())
	keys := make([]string, len(a.GetEvidence()))
	vals := make([]string, len(a.GetEvidence()))
	for i, ev := range a.GetEvidence() {
		keys[i], vals[i] = ev.GetKey(), ev.GetValue()
	}
	c.evKeys = append(c.evKeys, keys)
	c.evValues = append(c.evValues, vals)
	c.firstNs = append(c.firstNs, a.GetFirstSeenNs())
	c.lastNs = append(c.lastNs, a.GetLastSeenNs())
	c.windowNs = append(c.windowNs, a.GetWindowStartNs())
	c.createdNs = append(c.createdNs, a.GetCreatedNs())
	c.count = append(c.count, a.GetCount())
	c.dst.add(dst.GetAddr())
	c.dstPort = append(c.dstPort, uint16(dst.GetPort()))
	c.dstHost = append(c.dstHost, dst.GetHost())
	c.dstCountry = append(c.dstCountry, dst.GetCountry())
	c.dstASN = append(c.dstASN, dst.GetAsn())
	c.dstOrg = append(c.dstOrg, dst.GetOrg())
	c.flowIDs = append(c.flowIDs, a.GetFlowIds())
	c.bytes = append(c.bytes, a.GetBytes())
	c.score = append(c.score, a.GetScore())
}

func (c *alertColumns) columns() []any {
	c.cols = append(c.cols[:0],
		c.time, c.id, c.version, c.schemaVersion, c.dedupKey, c.detector, c.severity,
		c.devID, c.devModel, c.devGroup, c.summary, c.evKeys, c.evValues,
		c.firstNs, c.lastNs, c.windowNs, c.createdNs, c.count,
		c.dst.slice(), c.dstPort, c.dstHost, c.dstCountry, c.dstASN, c.dstOrg,
		c.flowIDs, c.bytes, c.score,
	)
	return c.cols
}

func (c *alertColumns) rows() int { return len(c.id) }
