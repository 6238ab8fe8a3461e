package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/exfilwatch/exfilwatch/config"
	"github.com/exfilwatch/exfilwatch/internal/obs"
	"github.com/exfilwatch/exfilwatch/pipeline"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
	"github.com/exfilwatch/exfilwatch/transport"
)

func init() {
	register("collect", "capture flows on the gateway with eBPF (--iface) or replay a pcap (--pcap); write flow records", runCollect)
	register("enrich", "attach GeoIP, the owning device and identifier matches to flow records", runEnrich)
	register("detect", "run the detectors over enriched flow records; write alerts", runDetect)
	register("sink", "store flows, matches and alerts in ClickHouse and deliver alerts to webhooks ('sink migrate' applies the schema alone)", runSink)
}

// stageEnv is what every stage command sets up before running.
type stageEnv struct {
	cfg   *pipeline.Config
	log   *slog.Logger
	ready *obs.Ready
	io    stageIO
}

// stageIO names where a stage reads and writes: a JSON-lines file ("-" for
// the standard streams) or, when empty, the stage's Kafka topic.
type stageIO struct{ In, Out, DeadLetter string }

// setup binds the config sections to fs, parses args, loads and validates
// the configuration, builds the logger and starts the metrics endpoint.
func setup(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer, withIO bool, sections ...string) (*stageEnv, error) {
	cfg := pipeline.DefaultConfig()
	env := &stageEnv{cfg: &cfg, ready: &obs.Ready{}}
	if withIO {
		fs.StringVar(&env.io.In, "in", "", "read records from this JSON-lines file ('-' for stdin) instead of Kafka")
		fs.StringVar(&env.io.Out, "out", "", "write records to this JSON-lines file ('-' for stdout) instead of Kafka")
		fs.StringVar(&env.io.DeadLetter, "dead-letter", "", "write undecodable records to this JSON-lines file (default: the Kafka dead-letter topic, or the log when not using Kafka)")
	}
	loader := config.Bind(fs, &cfg, sections...)
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := loader.Load(); err != nil {
		return nil, err
	}
	cfg.Resolve()
	env.log = obs.Logger(cfg.Config, stderr)
	slog.SetDefault(env.log)
	go func() {
		if err := obs.Serve(ctx, cfg.MetricsAddr, env.ready, env.log); err != nil {
			env.log.Error("metrics endpoint", "err", err)
		}
	}()
	return env, nil
}

func (e *stageEnv) usesKafka() bool { return e.io.In == "" || e.io.Out == "" }

// ensureTopics creates the Kafka topics a stage uses when configured to.
func (e *stageEnv) ensureTopics(ctx context.Context) error {
	if !e.usesKafka() || !e.cfg.Kafka.CreateTopics || len(e.cfg.Kafka.Brokers) == 0 {
		return nil
	}
	t := e.cfg.Kafka.Topics
	return transport.EnsureTopics(ctx, e.cfg.Kafka, t.Raw, t.Enriched, t.Alerts, t.DeadLetter)
}

func runCollect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collect", "collect (--iface IF [--iface IF...] | --pcap FILE) [--out FILE|-] [flags]", stderr)
	pcap := fs.String("pcap", "", "replay this pcap or pcapng file (optionally gzipped) instead of capturing live")
	var ifaces multiFlag
	fs.Var(&ifaces, "iface", "capture on this interface (repeatable; overrides collector.interfaces)")
	env, err := setup(ctx, fs, args, stderr, true, "kafka", "collector", "bpf")
	if err != nil {
		return err
	}
	if env.io.In != "" {
		return usagef("--in: collect reads packets, not records (use --pcap)")
	}
	if len(ifaces) > 0 {
		env.cfg.Collector.Interfaces = ifaces
	}
	if *pcap != "" {
		// A usage error before any broker is contacted.
		if _, err := os.Stat(*pcap); err != nil {
			return usagef("--pcap: %v", err)
		}
	}
	if err := env.ensureTopics(ctx); err != nil {
		return err
	}
	out, err := transport.OpenWriter(env.cfg.Kafka, env.io.Out, env.cfg.Kafka.Topics.Raw, env.log)
	if err != nil {
		return usageError{err}
	}
	defer out.Close()
	env.ready.Set(true)
	if *pcap != "" {
		if _, err := os.Stat(*pcap); err != nil {
			return usagef("--pcap: %v", err)
		}
		st, err := pipeline.CollectPcap(ctx, env.cfg, *pcap, out, nil, env.log)
		fmt.Fprintf(stderr, "collect: %d packets, %d counted, %d flows, %d records\n", st.Packets, st.Counted, st.Flows, st.Records)
		return err
	}
	return pipeline.CollectLive(ctx, env.cfg, out, nil, env.log)
}

func runEnrich(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("enrich", "enrich [--in FILE|-] [--out FILE|-] [flags]", stderr)
	env, err := setup(ctx, fs, args, stderr, true, "kafka", "geoip", "inventory", "identifiers", "enrich")
	if err != nil {
		return err
	}
	return env.runStage(ctx, env.cfg.Kafka.Topics.Raw, env.cfg.Kafka.Topics.Enriched, "enrich", pipeline.Enrich)
}

func runDetect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("detect", "detect [--in FILE|-] [--out FILE|-] [flags]", stderr)
	env, err := setup(ctx, fs, args, stderr, true, "kafka", "detect", "detect_state")
	if err != nil {
		return err
	}
	if env.io.In != "" && env.cfg.DetectState.SnapshotPath != "" {
		// A file is re-read from its first line and has no committed
		// offsets to keep a checkpoint in step with.
		env.log.Info("reading a file: detector state is not checkpointed", "in", env.io.In)
		env.cfg.DetectState.SnapshotPath = ""
	}
	return env.runStage(ctx, env.cfg.Kafka.Topics.Enriched, env.cfg.Kafka.Topics.Alerts, "detect", pipeline.Detect)
}

type stageFunc func(ctx context.Context, cfg *pipeline.Config, in transport.Reader, out, dlq transport.Writer, cnt *pipeline.Counters, log *slog.Logger) error

func (e *stageEnv) runStage(ctx context.Context, inTopic, outTopic, name string, run stageFunc) error {
	if err := e.ensureTopics(ctx); err != nil {
		return err
	}
	in, err := transport.OpenReader(e.cfg.Kafka, e.io.In, inTopic, name, e.log)
	if err != nil {
		return usageError{err}
	}
	defer in.Close()
	out, err := transport.OpenWriter(e.cfg.Kafka, e.io.Out, outTopic, e.log)
	if err != nil {
		return usageError{err}
	}
	defer out.Close()
	dlq, err := pipeline.OpenDeadLetter(e.cfg, e.io.DeadLetter, e.usesKafka(), e.log)
	if err != nil {
		return usageError{err}
	}
	defer dlq.Close()
	e.ready.Set(true)
	return run(ctx, e.cfg, in, out, dlq, nil, e.log)
}

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "migrate" {
		return runMigrate(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("sink", "sink [--alerts-in FILE|-] [--flows-in FILE|-] [flags]   |   sink migrate --clickhouse HOST:PORT", stderr)
	alertsIn := fs.String("alerts-in", "", "read alerts from this JSON-lines file instead of the Kafka alerts topic")
	flowsIn := fs.String("flows-in", "", "read enriched flows from this JSON-lines file instead of the Kafka enriched topic")
	noFlows := fs.Bool("no-flows", false, "do not store flows (alerts only)")
	env, err := setup(ctx, fs, args, stderr, false, "kafka", "clickhouse", "webhooks")
	if err != nil {
		return err
	}
	env.io.In = *alertsIn
	if env.cfg.ClickHouse.Addr == "" && len(env.cfg.Webhooks.Endpoints) == 0 {
		return usagef("clickhouse.addr: nothing to sink to (set clickhouse.addr and/or webhooks.endpoints)")
	}
	if err := env.ensureTopics(ctx); err != nil {
		return err
	}
	var ch *clickhouse.Writer
	if env.cfg.ClickHouse.Addr != "" {
		ch, err = clickhouse.Open(ctx, env.cfg.ClickHouse)
		if err != nil {
			return err
		}
		defer ch.Close()
	}
	var hook *webhook.Notifier
	if len(env.cfg.Webhooks.Endpoints) > 0 {
		hook, err = webhook.New(env.cfg.Webhooks)
		if err != nil {
			return usageError{err}
		}
	}
	dlq, err := pipeline.OpenDeadLetter(env.cfg, "", *alertsIn == "" || *flowsIn == "", env.log)
	if err != nil {
		return err
	}
	defer dlq.Close()
	alerts, err := transport.OpenReader(env.cfg.Kafka, *alertsIn, env.cfg.Kafka.Topics.Alerts, "sink-alerts", env.log)
	if err != nil {
		return usageError{err}
	}
	defer alerts.Close()
	env.ready.Set(true)
	errc := make(chan error, 2)
	go func() {
		as := &pipeline.AlertSink{CH: ch, Hook: hook, DLQ: dlq}
		errc <- transport.RunSink(ctx, env.cfg.Kafka, alerts, dlq, transport.Sink[*flowpb.Alert]{Name: "sink-alerts", Log: env.log, WriteBatch: as.WriteBatch})
	}()
	n := 1
	if ch != nil && !*noFlows {
		flows, err := transport.OpenReader(env.cfg.Kafka, *flowsIn, env.cfg.Kafka.Topics.Enriched, "sink-flows", env.log)
		if err != nil {
			return usageError{err}
		}
		defer flows.Close()
		n++
		go func() {
			fsk := &pipeline.FlowSink{CH: ch}
			errc <- transport.RunSink(ctx, env.cfg.Kafka, flows, dlq, transport.Sink[*flowpb.FlowRecord]{Name: "sink-flows", Log: env.log, WriteBatch: fsk.WriteBatch})
		}()
	}
	var errs []error
	for i := 0; i < n; i++ {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sink migrate", "sink migrate --clickhouse HOST:PORT [flags]", stderr)
	addr := fs.String("clickhouse", "", "ClickHouse native address (overrides clickhouse.addr)")
	env, err := setup(ctx, fs, args, stderr, false, "clickhouse")
	if err != nil {
		return err
	}
	if *addr != "" {
		env.cfg.ClickHouse.Addr = *addr
	}
	if env.cfg.ClickHouse.Addr == "" {
		return usagef("--clickhouse: required")
	}
	conn, err := clickhouse.Connect(ctx, env.cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied, err := clickhouse.Migrate(ctx, conn, env.cfg.ClickHouse)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrations applied: %v (database %s)\n", applied, env.cfg.ClickHouse.Database)
	return nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
