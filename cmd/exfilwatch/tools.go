package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/exfilwatch/exfilwatch/config"
	"github.com/exfilwatch/exfilwatch/enrich"
	"github.com/exfilwatch/exfilwatch/enrich/geo"
	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/pipeline"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func init() {
	register("geo", "print, as JSON lines, what GeoIP enrichment attaches to the given addresses", runGeo)
	register("match", "find lab identifiers in text, a raw HTTP request (stdin) or a pcap (--pcap); print matches as JSON lines", runMatch)
}

// runGeo looks addresses up with the enrich stage's GeoIP configuration
// (the geoip section and lab_subnets, from --config, EXFILWATCH_* variables
// and flags), so it prints what the pipeline would attach; --db replaces
// geoip.databases.
func runGeo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("geo", "geo [--config FILE] [--db FILE [--db FILE...]] IP...", stderr)
	var dbs multiFlag
	fs.Var(&dbs, "db", "MaxMind-format .mmdb or CSV range file (repeatable; merged in order; replaces geoip.databases)")
	labs := fs.String("lab-subnets", "", "comma-separated lab CIDR prefixes (marked LAB; replaces lab_subnets)")
	cfg := pipeline.DefaultConfig()
	loader := config.Bind(fs, &cfg, "geoip")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := loader.LoadOnly(); err != nil {
		return err
	}
	if len(dbs) > 0 {
		cfg.GeoIP.Databases = dbs
	}
	if len(cfg.GeoIP.Databases) == 0 {
		return usagef("--db: at least one database is required (or geoip.databases in --config)")
	}
	if fs.NArg() == 0 {
		return usagef("no address given")
	}
	if *labs != "" {
		cfg.LabSubnets, cfg.GeoIP.LabSubnets = splitComma(*labs), nil
	}
	cfg.GeoIP.ReloadInterval = 0
	if err := config.ValidateSections(&cfg, "geoip"); err != nil {
		return err
	}
	cfg.Resolve()
	db, err := geo.Open(cfg.GeoIP)
	if err != nil {
		return usageError{err}
	}
	if err := geo.LookupJSON(stdout, db, fs.Args()); err != nil {
		return usageError{err}
	}
	return nil
}

func runMatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("match", "match --inventory FILE [--pcap FILE] < input", stderr)
	inv := fs.String("inventory", "", "lab inventory YAML (required)")
	pcap := fs.String("pcap", "", "scan the flows of this capture instead of stdin")
	cfg := pipeline.DefaultConfig()
	loader := config.Bind(fs, &cfg, "identifiers", "collector")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *inv == "" {
		return usagef("--inventory: required")
	}
	cfg.Inventory.Path = *inv
	if err := loader.LoadOnly(); err != nil {
		return err
	}
	if cfg.Identifiers.Secret == "" && cfg.Identifiers.SecretFile == "" {
		cfg.Identifiers.Secret = "match-session-local-secret" // hashes live only in this process
	}
	if err := config.ValidateSections(&cfg, "identifiers", "inventory", "collector"); err != nil {
		return err
	}
	cfg.Resolve()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := enrich.New(geo.Config{}, cfg.Inventory, cfg.Identifiers, log)
	if err != nil {
		return usageError{err}
	}
	idx := e.Index()
	if idx == nil {
		return usagef("--inventory: no identifiers loaded from %s", *inv)
	}
	if *pcap == "" {
		return ident.MatchStream(stdout, idx, os.Stdin)
	}
	w := e.NewWorker()
	out := NewJSONLineEncoder(stdout)
	return collectPcapTo(ctx, &cfg, *pcap, func(rec *flowpb.FlowRecord) error {
		w.Enrich(rec)
		for _, m := range rec.GetEnrichment().GetMatches() {
			if err := out.Encode(m, rec); err != nil {
				return err
			}
		}
		return nil
	}, log)
}

// JSONLineEncoder prints one match per line with its flow's 5-tuple and id.
type JSONLineEncoder struct{ w io.Writer }

// NewJSONLineEncoder returns an encoder writing to w.
func NewJSONLineEncoder(w io.Writer) *JSONLineEncoder { return &JSONLineEncoder{w} }

// Encode writes m (protobuf JSON) wrapped with the flow it was found in.
func (e *JSONLineEncoder) Encode(m *flowpb.IdentifierMatch, rec *flowpb.FlowRecord) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.w, `{"flow_id":%q,"community_id":%q,"match":%s}`+"\n", rec.Id, rec.CommunityId, c.Bytes())
	return err
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func collectPcapTo(ctx context.Context, cfg *pipeline.Config, path string, fn func(*flowpb.FlowRecord) error, log *slog.Logger) error {
	if _, err := os.Stat(path); err != nil {
		return usagef("--pcap: %v", err)
	}
	st, err := pipeline.ReplayPcap(ctx, cfg, path, fn)
	log.Info("pcap scanned", "packets", st.Packets, "flows", st.Flows)
	return err
}
