package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/exfilwatch/exfilwatch/config"
	"github.com/exfilwatch/exfilwatch/eval"
	"github.com/exfilwatch/exfilwatch/internal/obs"
	"github.com/exfilwatch/exfilwatch/pipeline"
)

func init() {
	register("demo", "run the whole pipeline in one process on a simulated lab (embedded Kafka unless --kafka) and print the alerts", runDemo)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "demo [--devices N] [--pcap FILE [--truth FILE]] [--iface IF] [--kafka HOST:PORT] [--clickhouse HOST:PORT|auto|none] [flags]", stderr)
	o := pipeline.DemoOptions{Devices: 50, Seed: 1}
	fs.StringVar(&o.Dir, "dir", "var/demo", "directory for the simulated lab and the output files")
	fs.IntVar(&o.Devices, "devices", o.Devices, "simulated lab devices (>= 8 for every scenario)")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "simulation seed")
	fs.IntVar(&o.Background, "background", 0, "benign flows per simulated device after the learning period (0: simulator default, 20)")
	fs.BoolVar(&o.BenignOnly, "benign-only", false, "simulate benign traffic only: any alert is a false positive")
	fs.StringVar(&o.Pcap, "pcap", "", "replay this capture instead of simulating (with --inventory.path and --geoip.databases)")
	fs.StringVar(&o.Truth, "truth", "", "ground truth (JSON lines) for --pcap, to print precision and recall")
	var ifaces multiFlag
	fs.Var(&ifaces, "iface", "capture live on this interface with the eBPF collector (repeatable; needs root)")
	fs.StringVar(&o.Kafka, "kafka", "", "use this Kafka broker instead of the embedded one")
	fs.StringVar(&o.ClickHouse, "clickhouse", "auto", "ClickHouse native address for alerts and flows; auto: 127.0.0.1:9000 if it answers; none: files only")
	mins := fs.String("min", "", "fail (exit 1) below these scores, e.g. recall:identifier_leak=0.99,leak-recall:*=0.99 (see exfilwatch eval)")
	cfg := pipeline.DemoConfig()
	loader := config.Bind(fs, &cfg, "geoip", "inventory", "identifiers", "enrich", "detect", "webhooks")
	if err := parse(fs, args); err != nil {
		return err
	}
	// inventory and identifiers are validated once the simulated lab exists.
	if err := loader.LoadOnly(); err != nil {
		return err
	}
	if err := config.ValidateSections(&cfg, "geoip", "detect", "webhooks"); err != nil {
		return err
	}
	if o.ClickHouse == "none" {
		o.ClickHouse = ""
	}
	o.Ifaces = ifaces
	if o.Devices < 8 && o.Pcap == "" {
		return usagef("--devices: at least 8 for every scenario, not %d", o.Devices)
	}
	ths, err := eval.ParseThresholds(*mins)
	if err != nil {
		return usagef("--min: %v", err)
	}
	o.Thresholds = ths
	logCfg := cfg.Config
	if logCfg.LogLevel == "info" {
		// The demo prints its own progress; failures surface as its error.
		// (kafka-go also warns about fetch deadlines racing the embedded
		// broker's long-poll, which it retries: noise in a demo.)
		logCfg.LogLevel = "error"
	}
	log := obs.Logger(logCfg, stderr)
	slog.SetDefault(log)
	res, err := pipeline.Demo(ctx, &cfg, o, stdout, stderr, log)
	if err != nil {
		return err
	}
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d detection-quality thresholds not met", len(res.Failures))
	}
	return nil
}
