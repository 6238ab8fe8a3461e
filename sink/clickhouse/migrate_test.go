package clickhouse

import (
	"regexp"
	"strings"
	"testing"
)

func TestParseVersionAndProfile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ServerVersion
		prof Profile
	}{
		{"18.16.1", ServerVersion{18, 16, 1}, ProfilePortable},
		{"21.8.15.7", ServerVersion{21, 8, 15}, ProfilePortable},
		{"22.1.3.7", ServerVersion{22, 1, 3}, ProfileModern},
		{"25.3.1.2703-lts", ServerVersion{25, 3, 1}, ProfileModern},
		{"24.8", ServerVersion{24, 8, 0}, ProfileModern},
	} {
		got, err := ParseVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if p := ProfileFor(got); p != tc.prof {
			t.Errorf("ProfileFor(%v) = %v, want %v", got, p, tc.prof)
		}
	}
	for _, bad := range []string{"", "x", "abc.def"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

// columnTypes extracts "name type" pairs from a CREATE TABLE statement.
func columnTypes(t *testing.T, stmt string) map[string]string {
	t.Helper()
	open, closeIdx := strings.Index(stmt, "(\n"), strings.Index(stmt, "\n)")
	if open < 0 || closeIdx < open {
		t.Fatalf("no column list in %s", stmt)
	}
	out := map[string]string{}
	for _, line := range strings.Split(stmt[open+2:closeIdx], "\n") {
		line = strings.TrimSuffix(strings.TrimSpace(line), ",")
		if line == "" {
			continue
		}
		name, typ, _ := strings.Cut(line, " ")
		out[name] = strings.TrimSpace(typ)
	}
	return out
}

func render(t *testing.T, p Profile, ttl int) map[string]string {
	t.Helper()
	ms, err := Render(p, "exfw", ttl)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range ms {
		if m.Checksum == "" || len(m.Statements) == 0 {
			t.Fatalf("migration %d has no statements or checksum", m.Version)
		}
		for _, s := range m.Statements {
			if strings.Contains(s, "--") || strings.HasSuffix(s, ";") || strings.Contains(s, "{{") {
				t.Errorf("statement not clean: %q", s)
			}
			if m := regexp.MustCompile(`CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS exfw\.(\w+)`).FindStringSubmatch(s); m != nil {
				out[m[2]] = s
			} else {
				t.Errorf("statement is not an idempotent CREATE on exfw: %q", s)
			}
		}
	}
	for _, want := range []string{"flows", "alerts", "matches", "flows_by_dst", "flows_by_dst_mv"} {
		if out[want] == "" {
			t.Fatalf("no DDL for %s", want)
		}
	}
	return out
}

func TestRenderPortable(t *testing.T) {
	ddl := render(t, ProfilePortable, 30)
	for name, s := range ddl {
		for _, forbidden := range []string{"CODEC", "LowCardinality", "IPv6", "IPv4", "TTL", "DateTime64", "non_replicated_deduplication_window", "Bool"} {
			if strings.Contains(s, forbidden) {
				t.Errorf("portable %s uses %s (unknown to 18.16):\n%s", name, forbidden, s)
			}
		}
	}
	flows := columnTypes(t, ddl["flows"])
	for col, typ := range map[string]string{
		"src_addr": "FixedString(16)", "dst_addr": "FixedString(16)", "device_id": "String",
		"time": "DateTime", "interfaces": "Array(String)", "bytes_out": "UInt64",
	} {
		if flows[col] != typ {
			t.Errorf("portable flows.%s = %q, want %q", col, flows[col], typ)
		}
	}
	if !strings.Contains(ddl["flows"], "PARTITION BY toYYYYMMDD(time)") || !strings.Contains(ddl["flows"], "ORDER BY (device_id, time)") {
		t.Errorf("flows partitioning/order:\n%s", ddl["flows"])
	}
	if !strings.Contains(ddl["alerts"], "ENGINE = ReplacingMergeTree(version)") || !strings.Contains(ddl["alerts"], "ORDER BY id") {
		t.Errorf("alerts engine:\n%s", ddl["alerts"])
	}
	if !strings.Contains(ddl["flows_by_dst"], "ORDER BY (dst_addr, time)") {
		t.Errorf("flows_by_dst order:\n%s", ddl["flows_by_dst"])
	}
}

func TestRenderModern(t *testing.T) {
	ddl := render(t, ProfileModern, 30)
	flows := columnTypes(t, ddl["flows"])
	for col, typ := range map[string]string{
		"src_addr":   "IPv6 CODEC(ZSTD(1))",
		"device_id":  "LowCardinality(String)",
		"time":       "DateTime CODEC(DoubleDelta, LZ4)",
		"bytes_out":  "UInt64 CODEC(T64, LZ4)",
		"interfaces": "Array(LowCardinality(String))",
	} {
		if flows[col] != typ {
			t.Errorf("modern flows.%s = %q, want %q", col, flows[col], typ)
		}
	}
	for _, table := range []string{"flows", "alerts", "matches", "flows_by_dst"} {
		if !strings.Contains(ddl[table], "TTL time + INTERVAL 30 DAY") {
			t.Errorf("modern %s has no TTL:\n%s", table, ddl[table])
		}
	}
	// The view's target too: a current server feeds the view with a
	// retried block that flows itself drops (TestProfilesOnChDB).
	for _, table := range []string{"flows", "matches", "flows_by_dst"} {
		if !strings.Contains(ddl[table], "non_replicated_deduplication_window") {
			t.Errorf("modern %s lacks insert deduplication:\n%s", table, ddl[table])
		}
	}
	if strings.Contains(ddl["alerts"], "non_replicated_deduplication_window") {
		t.Errorf("alerts must not drop re-emitted blocks (updates share content with retries)")
	}
	// Without TTL days no TTL clause.
	for name, s := range render(t, ProfileModern, 0) {
		if strings.Contains(s, "TTL") {
			t.Errorf("ttl_days=0 still renders TTL in %s", name)
		}
	}
	// Both profiles define the same columns (queries must run on both).
	port := render(t, ProfilePortable, 0)
	for _, table := range []string{"flows", "alerts", "matches", "flows_by_dst"} {
		a, b := columnTypes(t, port[table]), columnTypes(t, ddl[table])
		if len(a) != len(b) {
			t.Errorf("%s: portable has %d columns, modern %d", table, len(a), len(b))
		}
		for c := range a {
			if _, ok := b[c]; !ok {
				t.Errorf("%s.%s only in portable", table, c)
			}
		}
	}
}

// The insert column lists name exactly the table's columns, in DDL order.
func TestInsertColumnsMatchDDL(t *testing.T) {
	ddl := render(t, ProfilePortable, 0)
	for table, cols := range map[string][]string{"flows": flowColumnNames, "matches": matchColumnNames, "alerts": alertColumnNames} {
		types := columnTypes(t, ddl[table])
		if len(types) != len(cols) {
			t.Errorf("%s: DDL has %d columns, insert names %d", table, len(types), len(cols))
		}
		for _, c := range cols {
			if _, ok := types[c]; !ok {
				t.Errorf("%s: insert column %s not in DDL", table, c)
			}
		}
	}
	if n := len(newFlowColumns(false).columns()); n != len(flowColumnNames) {
		t.Errorf("flow builder yields %d columns, want %d", n, len(flowColumnNames))
	}
	if n := len(newMatchColumns(false).columns()); n != len(matchColumnNames) {
		t.Errorf("match builder yields %d columns, want %d", n, len(matchColumnNames))
	}
	if n := len(newAlertColumns(false).columns()); n != len(alertColumnNames) {
		t.Errorf("alert builder yields %d columns, want %d", n, len(alertColumnNames))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for key, mut := range map[string]func(*Config){
		"addr:":           func(c *Config) { c.Addr = "nohost" },
		"database:":       func(c *Config) { c.Database = "a-b; DROP" },
		"compression:":    func(c *Config) { c.Compression = "gzip" },
		"profile:":        func(c *Config) { c.Profile = "ancient" },
		"ttl_days:":       func(c *Config) { c.TTLDays = -1 },
		"max_batch_rows:": func(c *Config) { c.MaxBatchRows = 0 },
		"max_batch_wait:": func(c *Config) { c.MaxBatchWait = 0 },
		"flow_inserts:":   func(c *Config) { c.FlowInserts = maxFlowInserts + 1 },
		"retry_max:":      func(c *Config) { c.RetryMax = 1 },
	} {
		c := DefaultConfig()
		mut(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), key) {
			t.Errorf("%s: got %v", key, err)
		}
	}
}

// compression "auto" must pick none only for a server on this host.
func TestConfigCompressionAuto(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9000":  "none",
		"127.0.0.53:9000": "none",
		"[::1]:9000":      "none",
		"localhost:9000":  "none",
		"10.0.0.5:9000":   "lz4",
		"[2001:db8::1]:9": "lz4",
		"ch.lab:9000":     "lz4",
	} {
		c := DefaultConfig()
		c.Addr = addr
		if got := c.compression(); got != want {
			t.Errorf("auto, %s: %s, want %s", addr, got, want)
		}
		c.Compression = "zstd"
		if got := c.compression(); got != "zstd" {
			t.Errorf("zstd, %s: %s", addr, got)
		}
	}
}
