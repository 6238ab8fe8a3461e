package clickhouse

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/clickhouse/schema/*.sql from the embedded migrations")

// renderScript is the whole schema of a profile as one SQL script.
func renderScript(t *testing.T, p Profile) string {
	t.Helper()
	ms, err := Render(p, "exfilwatch", DefaultConfig().TTLDays)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("-- Generated from sink/clickhouse/migrations (profile " + p.String() + ", database exfilwatch,\n")
	b.WriteString("-- ttl_days 90) by `go test ./sink/clickhouse -run Golden -update`. Do not edit:\n")
	b.WriteString("-- the sink applies the embedded migrations itself (exfilwatch sink migrate).\n")
	b.WriteString("CREATE DATABASE IF NOT EXISTS exfilwatch;\n")
	for _, m := range ms {
		b.WriteString(fmt.Sprintf("\n-- migration %04d_%s\n", m.Version, m.Name))
		for _, s := range m.Statements {
			b.WriteString(s + ";\n")
		}
	}
	return b.String()
}

// TestRenderGolden keeps the rendered DDL of both profiles, committed for
// readers under deploy/clickhouse/schema, in step with the migrations.
func TestRenderGolden(t *testing.T) {
	for _, p := range []Profile{ProfilePortable, ProfileModern} {
		path := filepath.Join("..", "..", "deploy", "clickhouse", "schema", p.String()+".sql")
		got := renderScript(t, p)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if string(want) != got {
			t.Errorf("%s is stale: run go test ./sink/clickhouse -run Golden -update", path)
		}
	}
}
