package clickhouse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one rendered schema step.
type Migration struct {
	Version    int
	Name       string
	Statements []string // executed in order, one per round trip
	Checksum   string   // sha256 of the rendered statements
}

// Render returns the migrations rendered for a profile, database and TTL,
// in version order. It does not touch a server (unit tests compare its
// output for both profiles).
func Render(p Profile, database string, ttlDays int) ([]Migration, error) {
	if !identRE.MatchString(database) {
		return nil, fmt.Errorf("render migrations: bad database name %q", database)
	}
	modern := p == ProfileModern
	funcs := template.FuncMap{
		"codec": func(c string) string {
			if !modern {
				return ""
			}
			return " CODEC(" + c + ")"
		},
		"lc": func(t string) string {
			if !modern {
				return t
			}
			return "LowCardinality(" + t + ")"
		},
		"addr": func() string {
			if !modern {
				return "FixedString(16)"
			}
			return "IPv6"
		},
		"ttl": func(col string) string {
			if !modern || ttlDays <= 0 {
				return ""
			}
			return fmt.Sprintf("TTL %s + INTERVAL %d DAY\n", col, ttlDays)
		},
		// settings of the append-only tables: on modern servers a retried
		// identical block is dropped by insert deduplication, so a retry
		// after a lost acknowledgement does not duplicate flows.
		"settings": func() string {
			if !modern {
				return ""
			}
			return "SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000\n"
		},
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	var out []Migration
	for _, name := range names {
		base := path.Base(name)
		num, label, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_label.sql", base)
		}
		src, err := migrationFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		tmpl, err := template.New(base).Funcs(funcs).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("parse migration %s: %w", base, err)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, struct{ DB string }{database}); err != nil {
			return nil, fmt.Errorf("render migration %s: %w", base, err)
		}
		stmts := splitStatements(buf.String())
		sum := sha256.Sum256([]byte(strings.Join(stmts, ";\n")))
		out = append(out, Migration{Version: v, Name: label, Statements: stmts, Checksum: hex.EncodeToString(sum[:])})
	}
	return out, nil
}

// splitStatements cuts a script at semicolons ending a line and drops
// comment lines (old servers reject a query that is only a comment).
func splitStatements(script string) []string {
	var lines []string
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "--") {
			continue
		}
		lines = append(lines, l)
	}
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		t := strings.TrimRight(l, " \t")
		if strings.HasSuffix(t, ";") {
			cur.WriteString(strings.TrimSuffix(t, ";"))
			if s := strings.TrimSpace(cur.String()); s != "" {
				out = append(out, s)
			}
			cur.Reset()
			continue
		}
		cur.WriteString(l)
		cur.WriteByte('\n')
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// AppliedMigration is one row of schema_migrations.
type AppliedMigration struct {
	Version       int
	Name          string
	Checksum      string
	Profile       string
	ServerVersion string
	AppliedAt     time.Time
}

// DetectProfile asks the server its version and returns the DDL profile
// for it (or the one forced by cfg.Profile).
func DetectProfile(ctx context.Context, conn driver.Conn, forced string) (Profile, ServerVersion, error) {
	var s string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&s); err != nil {
		return 0, ServerVersion{}, fmt.Errorf("query server version: %w", err)
	}
	v, err := ParseVersion(s)
	if err != nil {
		return 0, ServerVersion{}, err
	}
	switch forced {
	case "portable":
		return ProfilePortable, v, nil
	case "modern":
		return ProfileModern, v, nil
	}
	return ProfileFor(v), v, nil
}

// bootstrapStatements create the database and its schema_migrations table;
// Migrate runs them before any migration (both profiles: tests run them on
// 18.16 and on a current engine).
func bootstrapStatements(db string) []string {
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		`CREATE TABLE IF NOT EXISTS ` + db + `.schema_migrations
(
    version        UInt32,
    name           String,
    checksum       String,
    profile        String,
    server_version String,
    applied_at     DateTime
)
ENGINE = ReplacingMergeTree
ORDER BY version`,
	}
}

// Migrate creates cfg.Database if missing and applies the migrations not yet
// recorded in its schema_migrations table, in order. It is idempotent: on a
// migrated database it applies nothing and returns no versions. Statements
// use IF NOT EXISTS, so a step interrupted half way is safely re-run.
func Migrate(ctx context.Context, conn driver.Conn, cfg Config) (applied []int, err error) {
	if !identRE.MatchString(cfg.Database) {
		return nil, fmt.Errorf("migrate: bad database name %q", cfg.Database)
	}
	profile, ver, err := DetectProfile(ctx, conn, cfg.Profile)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	db := cfg.Database
	for i, stmt := range bootstrapStatements(db) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("migrate: bootstrap %s statement %d: %w", db, i+1, err)
		}
	}
	done, err := AppliedMigrations(ctx, conn, db)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	have := make(map[int]AppliedMigration, len(done))
	for _, m := range done {
		have[m.Version] = m
	}
	ms, err := Render(profile, db, cfg.TTLDays)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if old, ok := have[m.Version]; ok {
			if old.Checksum != m.Checksum {
				// Settings such as ttl_days changed since it was applied;
				// existing tables are not altered automatically.
				slog.Warn("clickhouse: applied migration differs from the current rendering; not re-applied",
					"version", m.Version, "name", m.Name, "applied_profile", old.Profile, "profile", profile.String())
			}
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migrate: %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		// A one-row block, not INSERT ... VALUES with bound args: 18.16
		// never answers the latter over the native protocol.
		if err := sendBlock(ctx, conn, insertSQL(db, "schema_migrations",
			[]string{"version", "name", "checksum", "profile", "server_version", "applied_at"}),
			[]any{[]uint32{uint32(m.Version)}, []string{m.Name}, []string{m.Checksum}, []string{profile.String()},
				[]string{ver.String()}, []time.Time{time.Now().UTC().Truncate(time.Second)}}); err != nil {
			return applied, fmt.Errorf("migrate: record %04d_%s: %w", m.Version, m.Name, err)
		}
		migrationsApplied.Inc()
		slog.Info("clickhouse: applied migration", "database", db, "version", m.Version, "name", m.Name, "profile", profile.String(), "server", ver.String())
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// AppliedMigrations lists schema_migrations, one row per version.
func AppliedMigrations(ctx context.Context, conn driver.Conn, database string) ([]AppliedMigration, error) {
	rows, err := conn.Query(ctx, appliedMigrationsSQL(database))
	if err != nil {
		return nil, fmt.Errorf("read %s.schema_migrations: %w", database, err)
	}
	defer rows.Close()
	var out []AppliedMigration
	for rows.Next() {
		var m AppliedMigration
		var v uint32
		if err := rows.Scan(&v, &m.Name, &m.Checksum, &m.Profile, &m.ServerVersion, &m.AppliedAt); err != nil {
			return nil, fmt.Errorf("scan schema_migrations: %w", err)
		}
		m.Version = int(v)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return out, nil
}

func appliedMigrationsSQL(db string) string {
	return `SELECT version, name, checksum, profile, server_version, applied_at
FROM ` + db + `.schema_migrations FINAL ORDER BY version`
}
