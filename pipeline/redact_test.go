package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/enrich/inventory"
	"github.com/exfilwatch/exfilwatch/eval"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestDemoEnrichedFlowsRedacted: the enriched flows of the simulated lab
// (embedded broker) carry identifier matches but no inventory identifier
// in its stored spelling, lower or upper case, while the detection targets
// still hold; with enrich.redact off the same run leaks them (the check
// can fail).
func TestDemoEnrichedFlowsRedacted(t *testing.T) {
	for _, redact := range []bool{true, false} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cfg := DemoConfig()
		cfg.Enrich.Redact = redact
		ths, _ := eval.ParseThresholds("recall:identifier_leak=0.99,leak-recall:*=0.99,precision:*=0.9")
		var out bytes.Buffer
		res, err := Demo(ctx, &cfg, DemoOptions{Dir: t.TempDir(), Devices: 12, Seed: 5, Thresholds: ths}, &out, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
		cancel()
		if err != nil {
			t.Fatalf("redact=%v: demo: %v", redact, err)
		}
		if len(res.Failures) > 0 {
			t.Fatalf("redact=%v: detection targets not met: %v\n%s", redact, res.Failures, out.String())
		}
		inv, err := inventory.Load(cfg.Inventory.Path)
		if err != nil {
			t.Fatal(err)
		}
		leaks, matched, examples := scanFlowsFile(t, res.FlowsFile, inv)
		t.Logf("redact=%v: %d flows with matches, %d identifier occurrences in clear %v", redact, matched, leaks, examples)
		if matched == 0 {
			t.Fatalf("redact=%v: no flow with identifier matches", redact)
		}
		if redact && leaks > 0 {
			t.Fatalf("%d identifier occurrences in clear in enriched flows, e.g. %v", leaks, examples)
		}
		if !redact && leaks == 0 {
			t.Fatal("redaction off, yet no identifier in clear: the check cannot see leaks")
		}
	}
}

// scanFlowsFile counts occurrences of the inventory's identifiers (as
// stored, lower and upper case) in the protobuf encoding of every record of
// a JSON-lines flows file (bytes fields appear verbatim in protobuf).
func scanFlowsFile(t *testing.T, path string, inv *inventory.Snapshot) (leaks, matched int, examples []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var needles []string
	for _, id := range inv.Identifiers {
		if len(id.Value) < 8 {
			continue // too short to tell from other bytes
		}
		needles = append(needles, id.Value, strings.ToLower(id.Value), strings.ToUpper(id.Value))
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		rec := &flowpb.FlowRecord{}
		if err := protojson.Unmarshal(sc.Bytes(), rec); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(rec.GetEnrichment().GetMatches()) > 0 {
			matched++
		}
		rec.Enrichment = nil // device ids only; not payload
		b, err := proto.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				leaks++
				if len(examples) < 5 {
					examples = append(examples, rec.Id)
				}
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return leaks, matched, examples
}
