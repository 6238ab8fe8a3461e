package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestMigrateEmptyThenIdempotent(t *testing.T) {
	cfg := testConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	want, err := Render(ProfilePortable, cfg.Database, cfg.TTLDays)
	if err != nil {
		t.Fatal(err)
	}
	var wantVersions []int
	for _, m := range want {
		wantVersions = append(wantVersions, m.Version)
	}

	applied, err := Migrate(ctx, conn, cfg)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if !slices.Equal(applied, wantVersions) {
		t.Fatalf("first Migrate applied %v, want %v", applied, wantVersions)
	}
	profile, ver, err := DetectProfile(ctx, conn, "auto")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := AppliedMigrations(ctx, conn, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != len(wantVersions) {
		t.Fatalf("schema_migrations has %d rows, want %d: %+v", len(rec), len(wantVersions), rec)
	}
	rendered, _ := Render(profile, cfg.Database, cfg.TTLDays)
	for i, r := range rec {
		m := rendered[i]
		if r.Version != m.Version || r.Name != m.Name || r.Checksum != m.Checksum || r.Profile != profile.String() || r.ServerVersion != ver.String() {
			t.Errorf("schema_migrations row %d = %+v, want version %d name %s checksum %s profile %s server %s",
				i, r, m.Version, m.Name, m.Checksum, profile, ver)
		}
		if time.Since(r.AppliedAt) > 10*time.Minute || time.Since(r.AppliedAt) < -time.Minute {
			t.Errorf("applied_at %v is not now", r.AppliedAt)
		}
	}

	// Every table and the view exist.
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	for _, name := range []string{"alerts", "flows", "flows_by_dst", "flows_by_dst_mv", "matches", "schema_migrations"} {
		if !slices.Contains(tables, name) {
			t.Errorf("table %s missing; have %v", name, tables)
		}
	}

	again, err := Migrate(ctx, conn, cfg)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(again) != 0 {
		t.Fatalf("second Migrate applied %v, want nothing", again)
	}
	rec2, err := AppliedMigrations(ctx, conn, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec2) != len(rec) {
		t.Fatalf("schema_migrations grew from %d to %d rows", len(rec), len(rec2))
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != len(wantVersions) {
		t.Fatalf("schema_migrations holds %d raw rows, want %d", n, len(wantVersions))
	}
}
