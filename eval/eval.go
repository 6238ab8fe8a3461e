// Package eval scores exfilwatch's output against a ground-truth file:
// precision, recall and F1 per detector (at device level), and identifier-leak
// recall per identifier type, form and carrier (at flow level). It reads only
// the ground truth (JSON lines) and the pipeline's outputs, never the code
// that generated the corpus, so scoring and simulation stay independent.
package eval

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TruthRow is one labelled event (see the simulator's truth.jsonl).
type TruthRow struct {
	Scenario       string   `json:"scenario"`
	Device         string   `json:"device"`
	Detectors      []string `json:"detectors"`
	IdentifierType string   `json:"identifier_type"`
	Form           string   `json:"form"`
	Carrier        string   `json:"carrier"`
	Observable     bool     `json:"observable"`
	Cleartext      bool     `json:"cleartext"`
	Proto          uint8    `json:"proto"`
	Src            string   `json:"src"`
	Dst            string   `json:"dst"`
	SrcPort        uint16   `json:"src_port"`
	DstPort        uint16   `json:"dst_port"`
	TimeNs         int64    `json:"time_ns"`
}

// ReadTruthFile is ReadTruth on the file at path.
func ReadTruthFile(path string) ([]TruthRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := ReadTruth(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// ReadTruth parses ground truth JSON lines.
func ReadTruth(r io.Reader) ([]TruthRow, error) {
	var out []TruthRow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var t TruthRow
		if err := json.Unmarshal([]byte(line), &t); err != nil {
			return nil, fmt.Errorf("truth line %d: %w", n, err)
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

// ReadAlerts parses alerts as protobuf-JSON lines.
func ReadAlerts(r io.Reader) ([]*flowpb.Alert, error) {
	var out []*flowpb.Alert
	err := eachLine(r, func(n int, line []byte) error {
		a := &flowpb.Alert{}
		if err := protojson.Unmarshal(line, a); err != nil {
			return fmt.Errorf("alert line %d: %w", n, err)
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// FlowKey is a 5-tuple in the device -> remote orientation.
type FlowKey struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

// LeakIndex maps a flow to the (device, identifier type) pairs found in it.
type LeakIndex map[FlowKey]map[[2]string]bool

// Add records the matches of one enriched flow.
func (ix LeakIndex) Add(rec *flowpb.FlowRecord) {
	e := rec.GetEnrichment()
	if e == nil || len(e.Matches) == 0 {
		return
	}
	k := FlowKey{schema.Addr(rec.SrcAddr), schema.Addr(rec.DstAddr), uint16(rec.SrcPort), uint16(rec.DstPort), uint8(rec.Protocol)}
	m := ix[k]
	if m == nil {
		m = map[[2]string]bool{}
		ix[k] = m
	}
	for _, mt := range e.Matches {
		m[[2]string{mt.DeviceId, mt.IdentifierType}] = true
	}
}

// ReadFlows indexes enriched flows given as protobuf-JSON lines.
func ReadFlows(r io.Reader, ix LeakIndex) error {
	return eachLine(r, func(n int, line []byte) error {
		rec := &flowpb.FlowRecord{}
		if err := protojson.Unmarshal(line, rec); err != nil {
			return fmt.Errorf("flow line %d: %w", n, err)
		}
		ix.Add(rec)
		return nil
	})
}

func eachLine(r io.Reader, fn func(int, []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Score is precision/recall/F1 with the counts behind them.
type Score struct {
	Name               string
	TP, FP, FN         int
	Precision, Recall  float64
	F1                 float64
	Expected, Reported int
}

func score(name string, tp, fp, fn int) Score {
	s := Score{Name: name, TP: tp, FP: fp, FN: fn, Expected: tp + fn, Reported: tp + fp}
	s.Precision, s.Recall = 1, 1
	if tp+fp > 0 {
		s.Precision = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		s.Recall = float64(tp) / float64(tp+fn)
	}
	if s.Precision+s.Recall > 0 {
		s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
	}
	return s
}

// Report is the outcome of an evaluation.
type Report struct {
	Detectors  []Score // device-level, per detector
	LeakByType []Score // flow-level recall per identifier type
	LeakByForm []Score // flow-level recall per form
	LeakByCarr []Score // flow-level recall per carrier
	Unobserved int     // truth leaks no gateway can see (not scored)
	Alerts     int
}

// Evaluate scores alerts and enriched-flow matches against truth.
func Evaluate(truth []TruthRow, alerts []*flowpb.Alert, leaks LeakIndex) Report {
	rep := Report{Alerts: len(alerts)}
	expected := map[string]map[string]bool{} // detector -> devices
	for _, t := range truth {
		if !t.Observable {
			if t.Scenario == "leak" {
				rep.Unobserved++
			}
			continue
		}
		for _, d := range t.Detectors {
			if expected[d] == nil {
				expected[d] = map[string]bool{}
			}
			expected[d][t.Device] = true
		}
	}
	reported := map[string]map[string]bool{}
	for _, a := range alerts {
		if reported[a.Detector] == nil {
			reported[a.Detector] = map[string]bool{}
		}
		reported[a.Detector][a.DeviceId] = true
	}
	names := map[string]bool{}
	for d := range expected {
		names[d] = true
	}
	for d := range reported {
		names[d] = true
	}
	for _, d := range sortedNames(names) {
		tp, fp, fn := 0, 0, 0
		for dev := range reported[d] {
			if expected[d][dev] {
				tp++
			} else {
				fp++
			}
		}
		for dev := range expected[d] {
			if !reported[d][dev] {
				fn++
			}
		}
		rep.Detectors = append(rep.Detectors, score(d, tp, fp, fn))
	}

	type acc struct{ tp, fn int }
	byType, byForm, byCarr := map[string]*acc{}, map[string]*acc{}, map[string]*acc{}
	bump := func(m map[string]*acc, k string, hit bool) {
		a := m[k]
		if a == nil {
			a = &acc{}
			m[k] = a
		}
		if hit {
			a.tp++
		} else {
			a.fn++
		}
	}
	for _, t := range truth {
		if t.Scenario != "leak" || !t.Observable {
			continue
		}
		k := FlowKey{netip.MustParseAddr(t.Src), netip.MustParseAddr(t.Dst), t.SrcPort, t.DstPort, t.Proto}
		hit := leaks[k][[2]string{t.Device, t.IdentifierType}]
		bump(byType, t.IdentifierType, hit)
		bump(byForm, t.Form, hit)
		bump(byCarr, t.Carrier, hit)
	}
	flat := func(m map[string]*acc) []Score {
		var out []Score
		for _, k := range sortedKeys(m) {
			out = append(out, score(k, m[k].tp, 0, m[k].fn))
		}
		return out
	}
	rep.LeakByType, rep.LeakByForm, rep.LeakByCarr = flat(byType), flat(byForm), flat(byCarr)
	return rep
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Print writes the report as aligned tables.
func (r Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DETECTOR\tEXPECTED\tREPORTED\tTP\tFP\tFN\tPRECISION\tRECALL\tF1\n")
	for _, s := range r.Detectors {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\n", s.Name, s.Expected, s.Reported, s.TP, s.FP, s.FN, s.Precision, s.Recall, s.F1)
	}
	tw.Flush()
	for _, sec := range []struct {
		title  string
		scores []Score
	}{{"IDENTIFIER TYPE", r.LeakByType}, {"FORM", r.LeakByForm}, {"CARRIER", r.LeakByCarr}} {
		fmt.Fprintln(w)
		fmt.Fprintf(tw, "LEAKS BY %s\tFLOWS\tFOUND\tRECALL\n", sec.title)
		for _, s := range sec.scores {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\n", s.Name, s.Expected, s.TP, s.Recall)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\n%d alert messages scored; %d leaks hidden inside encrypted payloads (no gateway can observe them; not scored)\n", r.Alerts, r.Unobserved)
}

// Threshold is a minimum score, e.g. recall of identifier_leak >= 0.99.
type Threshold struct {
	Metric string // "recall", "precision", "f1", "leak-recall" (every type, form and carrier)
	Name   string // detector name, or "*" for all
	Min    float64
}

// ParseThresholds reads "recall:identifier_leak=0.99,precision:*=0.9,leak-recall:*=0.99".
func ParseThresholds(s string) ([]Threshold, error) {
	var out []Threshold
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mn, v, ok := strings.Cut(part, "=")
		metric, name, ok2 := strings.Cut(mn, ":")
		var min float64
		if _, err := fmt.Sscanf(v, "%g", &min); err != nil || !ok || !ok2 {
			return nil, fmt.Errorf("bad threshold %q (want metric:name=value, e.g. recall:beaconing=0.95)", part)
		}
		switch metric {
		case "recall", "precision", "f1", "leak-recall":
		default:
			return nil, fmt.Errorf("bad threshold %q: metric must be recall, precision, f1 or leak-recall", part)
		}
		out = append(out, Threshold{metric, name, min})
	}
	return out, nil
}

// Check returns one line per threshold not met.
func (r Report) Check(ths []Threshold) []string {
	var fails []string
	for _, th := range ths {
		var scores []Score
		if th.Metric == "leak-recall" {
			scores = append(append(append(scores, r.LeakByType...), r.LeakByForm...), r.LeakByCarr...)
		} else {
			scores = r.Detectors
		}
		found := false
		for _, s := range scores {
			if th.Name != "*" && s.Name != th.Name {
				continue
			}
			found = true
			v := map[string]float64{"recall": s.Recall, "precision": s.Precision, "f1": s.F1, "leak-recall": s.Recall}[th.Metric]
			if v < th.Min {
				fails = append(fails, fmt.Sprintf("%s of %s is %.3f < %.3f", th.Metric, s.Name, v, th.Min))
			}
		}
		if !found && th.Name != "*" {
			fails = append(fails, fmt.Sprintf("%s of %s: nothing expected or reported", th.Metric, th.Name))
		}
	}
	return fails
}
