package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Addr    string        `yaml:"addr" help:"listen address"`
	Timeout time.Duration `yaml:"timeout" help:"a timeout"`
}

func (i inner) Validate() error {
	if i.Addr == "bad" {
		return fmt.Errorf("addr: invalid address %q", i.Addr)
	}
	return nil
}

type testCfg struct {
	Name    string            `yaml:"name" help:"name"`
	Count   int               `yaml:"count" help:"count"`
	Brokers []string          `yaml:"brokers" help:"brokers"`
	Debug   bool              `yaml:"debug" help:"debug"`
	Groups  map[string]string `yaml:"groups" help:"groups"`
	Inner   inner             `yaml:"inner"`
}

func defaults() testCfg {
	return testCfg{Name: "d", Count: 1, Inner: inner{Addr: "x", Timeout: time.Second}}
}

func TestLayersPrecedence(t *testing.T) {
	cfg := defaults()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	l := Bind(fs, &cfg)
	t.Setenv("EXFILWATCH_COUNT", "7")
	t.Setenv("EXFILWATCH_INNER_TIMEOUT", "3s")
	t.Setenv("EXFILWATCH_NAME", "from-env")
	if err := fs.Parse([]string{"--name", "from-flag", "--brokers", "a:1,b:2"}); err != nil {
		t.Fatal(err)
	}
	if err := LoadYAML([]byte("name: from-file\ncount: 5\ndebug: true\ninner:\n  addr: y\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	want := testCfg{Name: "from-flag", Count: 7, Brokers: []string{"a:1", "b:2"}, Debug: true, Inner: inner{Addr: "y", Timeout: 3 * time.Second}}
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, yaml, env, wantSub string
	}{
		{"unknown key", "nmae: x\n", "", "config: nmae: line 1: unknown key"},
		{"unknown nested key", "inner:\n  adr: x\n", "", "config: inner.adr: line 2: unknown key"},
		{"wrong type", "count: lots\n", "", "config: count: line 1:"},
		{"bad duration", "inner:\n  timeout: forever\n", "", "config: inner.timeout: line 2: invalid duration"},
		{"invalid yaml", "name: [\n", "", "config: invalid YAML"},
		{"section validator", "inner:\n  addr: bad\n", "", "config: inner.addr: invalid address"},
		{"bad env", "", "EXFILWATCH_COUNT=abc", "config: count: from EXFILWATCH_COUNT: invalid integer"},
		{"section not mapping", "inner: 3\n", "", "config: inner: line 1: expected a mapping"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := defaults()
			err := LoadYAML([]byte(c.yaml), &cfg)
			if err == nil && c.env != "" {
				err = ApplyEnv(&cfg, []string{c.env})
			}
			if err == nil {
				err = Validate(&cfg)
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.wantSub)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *config.Error", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, c.wantSub) {
				t.Fatalf("got %q, want prefix %q", msg, c.wantSub)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	cfg := defaults()
	err := LoadFile("/nonexistent/x.yaml", &cfg)
	if err == nil || !strings.Contains(err.Error(), "file not found: /nonexistent/x.yaml") {
		t.Fatalf("got %v", err)
	}
}

func TestFieldsEnvNames(t *testing.T) {
	cfg := defaults()
	var envs []string
	for _, f := range Fields(&cfg) {
		envs = append(envs, f.Env)
	}
	got := strings.Join(envs, " ")
	want := "EXFILWATCH_NAME EXFILWATCH_COUNT EXFILWATCH_BROKERS EXFILWATCH_DEBUG EXFILWATCH_GROUPS EXFILWATCH_INNER_ADDR EXFILWATCH_INNER_TIMEOUT"
	if got != want {
		t.Fatalf("got %s", got)
	}
}
