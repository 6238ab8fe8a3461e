package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/config"
	"github.com/exfilwatch/exfilwatch/pipeline"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExampleConfigIsCurrent(t *testing.T) {
	want, err := os.ReadFile("../../deploy/exfilwatch.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, got, _ := runCLI(t, "config", "example")
	if code != 0 || got != string(want) {
		t.Fatalf("deploy/exfilwatch.example.yaml is stale: run `exfilwatch config example > deploy/exfilwatch.example.yaml` (code %d)", code)
	}
	cfg := pipeline.DefaultConfig()
	if err := config.LoadYAML(want, &cfg); err != nil {
		t.Fatalf("example does not load: %v", err)
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	for name := range commands {
		code, _, errOut := runCLI(t, name, "--help")
		if code != 0 || !strings.Contains(errOut, "Usage: exfilwatch "+name) {
			t.Errorf("%s --help: code %d, output %q", name, code, errOut)
		}
	}
}

// Bad input is one line on stderr and exit code 2, never a panic.
func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"enrich", "--nope"}, "flag provided but not defined: -nope"},
		{"missing config file", []string{"detect", "--config", "/nonexistent.yaml", "--in", "-"}, "config: file not found: /nonexistent.yaml"},
		{"unknown key", []string{"detect", "--config", write("a.yaml", "detect:\n  beaconing:\n    treshold: 0.8\n"), "--in", "-"}, "config: detect.beaconing.treshold: line 3: unknown key"},
		{"bad address", []string{"detect", "--config", write("b.yaml", "metrics_addr: nonsense\n"), "--in", "-"}, "config: metrics_addr: invalid address"},
		{"bad duration env", []string{"detect", "--in", "-", "--detect.suppression", "soon"}, "config: detect.suppression: from --detect.suppression: invalid duration"},
		{"bad lab subnet", []string{"collect", "--lab_subnets", "10.0.0.0/33", "--pcap", "x"}, "lab_subnets: invalid CIDR prefix"},
		{"missing pcap", []string{"collect", "--pcap", "/nonexistent.pcap", "--out", "-"}, "--pcap: stat /nonexistent.pcap"},
		{"missing inventory", []string{"enrich", "--inventory.path", "/nonexistent.yaml", "--in", "-", "--out", "-"}, "config: inventory.path"},
		{"geo without db", []string{"geo", "1.2.3.4"}, "--db: at least one database is required"},
		{"simulate without dir", []string{"simulate"}, "--out-dir is required"},
		{"eval bad threshold", []string{"eval", "--truth", "x", "--alerts", "y", "--min", "recall=1"}, "--min: bad threshold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, c.args...)
			if code != exitUsage {
				t.Fatalf("exit code %d, want 2; stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, c.want) {
				t.Fatalf("stderr %q does not contain %q", errOut, c.want)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Fatalf("stack trace in %q", errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.Contains(out, "flow schema v1") {
		t.Fatalf("%d %q", code, out)
	}
}
