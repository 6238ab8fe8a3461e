package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/exfilwatch/exfilwatch/detect"
	"github.com/exfilwatch/exfilwatch/eval"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sim"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
	"github.com/exfilwatch/exfilwatch/transport"
)

// DemoConfig is DefaultConfig plus what a simulated lab needs: its subnet,
// a destination policy for the india-retail group and a one-hour learning
// period for first-seen destinations (the simulated day is 12 hours long),
// one partition per topic; detector state is not checkpointed.
func DemoConfig() Config {
	c := DefaultConfig()
	c.MetricsAddr = ""
	c.LabSubnets = []string{"10.20.0.0/16"}
	c.Detect.Policy.Groups = map[string]detect.GroupPolicy{"india-retail": {DenyCountries: []string{"CN"}}}
	c.Detect.FirstSeen.Learning = time.Hour
	c.DetectState.FlushInterval = time.Second
	c.DetectState.SnapshotPath = "" // every demo run starts from scratch
	// One partition per topic: the demo replays 12 hours of record time in
	// seconds, so a partition lagging by a second is hours behind, and
	// first-seen (learned per model, across devices on different
	// partitions) would see a device's post-learning flow before another
	// device's learning-period flow to the same place. On a gateway the lag
	// is seconds against a 24 h learning period (docs/detectors.md).
	c.Kafka.Partitions = 1
	return c
}

// DemoOptions selects the demo's inputs and outputs.
type DemoOptions struct {
	Dir        string   // working directory for generated and output files
	Devices    int      // simulated devices (when Pcap is empty)
	Seed       uint64   // simulation seed
	BenignOnly bool     // simulate benign traffic only (every alert is then a false positive)
	Background int      // benign flows per device after learning (0: the simulator's default)
	Pcap       string   // replay this capture instead of simulating
	Truth      string   // ground truth for Pcap (optional)
	Ifaces     []string // capture live with eBPF instead of replaying
	Kafka      string   // broker address; empty: an embedded in-process broker
	ClickHouse string   // "auto" (use 127.0.0.1:9000 when it answers), "" (none) or an address
	Thresholds []eval.Threshold
	// Watch, if set, receives the live progress counters once the stages
	// start (tests use it to inject failures mid-stream).
	Watch func(*Counters)
}

// DemoResult summarises a demo run.
type DemoResult struct {
	Flows, Alerts int64
	AlertsFile    string
	FlowsFile     string
	ClickHouse    string
	Report        *eval.Report
	LatencyP50    time.Duration // flow export -> alert stored
	LatencyP99    time.Duration
	Failures      []string
}

// Demo runs every stage in one process over Kafka: collector (pcap or live)
// -> enrich -> detect -> sinks (JSON-lines files, ClickHouse when available,
// webhooks when configured), prints progress to progress and a summary to
// out.
func Demo(ctx context.Context, cfg *Config, o DemoOptions, out, progress io.Writer, log *slog.Logger) (*DemoResult, error) {
	res := &DemoResult{}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if cfg.Identifiers.Secret == "" && cfg.Identifiers.SecretFile == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.Identifiers.Secret = "0x" + hex.EncodeToString(b)[:16]
	}
	truthPath := o.Truth
	pcap := o.Pcap
	if pcap == "" && len(o.Ifaces) == 0 {
		opts := sim.DefaultOptions()
		opts.Devices, opts.Seed, opts.BenignOnly = o.Devices, o.Seed, o.BenignOnly
		if o.Background > 0 {
			opts.Background = o.Background
		}
		fmt.Fprintf(progress, "simulating a lab of %d phones ...\n", opts.Devices)
		files, err := sim.Generate(opts).WriteDir(o.Dir)
		if err != nil {
			return nil, err
		}
		pcap, truthPath = files.Pcap, files.Truth
		fmt.Fprintf(progress, "  %d frames in %s, %d labelled events in %s\n", files.Frames, files.Pcap, files.TruthRows, files.Truth)
		if len(cfg.GeoIP.Databases) == 0 {
			cfg.GeoIP.Databases = []string{files.CityDB, files.ASNDB}
		}
		if cfg.Inventory.Path == "" {
			cfg.Inventory.Path = files.Inventory
		}
	}
	cfg.Resolve()

	// Kafka: the embedded broker unless one is named.
	brokers := o.Kafka
	if brokers == "" {
		addr, stop, err := transport.StartEmbedded(ctx)
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		defer stop()
		brokers = addr
		fmt.Fprintf(progress, "embedded Kafka broker on %s\n", addr)
	}
	cfg.Kafka.Brokers = []string{brokers}
	cfg.Kafka.StartFromOldest = true
	run := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	t := &cfg.Kafka.Topics
	t.Raw, t.Enriched, t.Alerts, t.DeadLetter = t.Raw+"."+run, t.Enriched+"."+run, t.Alerts+"."+run, t.DeadLetter+"."+run
	cfg.Kafka.GroupPrefix = "exfilwatch-" + run
	if err := transport.EnsureTopics(ctx, cfg.Kafka, t.Raw, t.Enriched, t.Alerts, t.DeadLetter); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}

	// ClickHouse when available.
	var ch *clickhouse.Writer
	chAddr := o.ClickHouse
	if chAddr == "auto" {
		chAddr = ""
		if c, err := net.DialTimeout("tcp", "127.0.0.1:9000", 500*time.Millisecond); err == nil {
			c.Close()
			chAddr = "127.0.0.1:9000"
		}
	}
	if chAddr != "" {
		cfg.ClickHouse.Addr = chAddr
		w, err := clickhouse.Open(ctx, cfg.ClickHouse)
		if err != nil {
			log.Warn("ClickHouse not usable; alerts go to files only", "addr", chAddr, "err", err)
		} else {
			ch = w
			defer ch.Close()
			res.ClickHouse = chAddr + "/" + cfg.ClickHouse.Database
			fmt.Fprintf(progress, "ClickHouse %s (server %v)\n", res.ClickHouse, w.ServerVersion())
		}
	}
	var hook *webhook.Notifier
	if len(cfg.Webhooks.Endpoints) > 0 {
		h, err := webhook.New(cfg.Webhooks)
		if err != nil {
			return nil, err
		}
		hook = h
	}

	res.AlertsFile = filepath.Join(o.Dir, "alerts.jsonl")
	res.FlowsFile = filepath.Join(o.Dir, "flows.jsonl")
	alertsCopy, err := transport.CreateJSONLWriter(res.AlertsFile)
	if err != nil {
		return nil, err
	}
	defer alertsCopy.Close()
	flowsCopy, err := transport.CreateJSONLWriter(res.FlowsFile)
	if err != nil {
		return nil, err
	}
	defer flowsCopy.Close()

	cnt := &Counters{Latency: NewLatencyTracker()}
	if o.Watch != nil {
		o.Watch(cnt)
	}
	// Close every reader and writer before the (embedded) broker stops.
	var closers []io.Closer
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	}()
	reader := func(topic, stage string) transport.Reader {
		r := transport.NewKafkaReader(cfg.Kafka, topic, cfg.Kafka.GroupID(stage), log)
		closers = append(closers, r)
		return r
	}
	writer := func(topic string) transport.Writer {
		w := transport.NewKafkaWriter(cfg.Kafka, topic, log)
		closers = append(closers, w)
		return w
	}

	stageCtx, stopStages := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStages()
	detectCtx, stopDetect := context.WithCancel(stageCtx)
	defer stopDetect()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	dlq := writer(t.DeadLetter)
	enrIn, enrOut := reader(t.Raw, "enrich"), writer(t.Enriched)
	start("enrich", func() error { return Enrich(stageCtx, cfg, enrIn, enrOut, dlq, cnt, log) })
	detIn, detOut := reader(t.Enriched, "detect"), writer(t.Alerts)
	detectDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(detectDone)
		if err := Detect(detectCtx, cfg, detIn, detOut, dlq, cnt, log); err != nil && !errors.Is(err, context.Canceled) {
			errs <- fmt.Errorf("detect: %w", err)
		}
	}()
	flIn := reader(t.Enriched, "sink-flows")
	fsk := &FlowSink{CH: ch, Copy: flowsCopy, Cnt: cnt}
	start("sink-flows", func() error {
		return transport.RunSink(stageCtx, cfg.Kafka, flIn, dlq, transport.Sink[*flowpb.FlowRecord]{Name: "sink-flows", Log: log, WriteBatch: fsk.WriteBatch})
	})
	alIn := reader(t.Alerts, "sink-alerts")
	ask := &AlertSink{CH: ch, Hook: hook, Copy: alertsCopy, DLQ: dlq, Cnt: cnt}
	start("sink-alerts", func() error {
		return transport.RunSink(stageCtx, cfg.Kafka, alIn, dlq, transport.Sink[*flowpb.Alert]{Name: "sink-alerts", Log: log, WriteBatch: ask.WriteBatch})
	})

	// Progress, once a second.
	progDone := make(chan struct{})
	var progOnce sync.Once
	stopProgress := func() { progOnce.Do(func() { close(progDone) }) }
	defer stopProgress()
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-progDone:
				return
			case <-tk.C:
				fmt.Fprintf(progress, "  collected %d · enriched %d · detected %d · alerts %d · stored flows %d · stored alerts %d\n",
					cnt.Collected.Load(), cnt.Enriched.Load(), cnt.Detected.Load(), cnt.Alerts.Load(), cnt.SunkFlows.Load(), cnt.SunkAlerts.Load())
			}
		}
	}()

	// Collect.
	rawOut := writer(t.Raw)
	began := time.Now()
	if len(o.Ifaces) > 0 {
		cfg.Collector.Interfaces = o.Ifaces
		fmt.Fprintf(progress, "capturing on %v; Ctrl-C to stop and drain\n", o.Ifaces)
		err = CollectLive(ctx, cfg, rawOut, cnt, log)
	} else {
		fmt.Fprintf(progress, "replaying %s through collector -> enrich -> detect -> sinks\n", pcap)
		_, err = CollectPcap(ctx, cfg, pcap, rawOut, cnt, log)
	}
	rawOut.Close()
	if err != nil {
		stopStages()
		wg.Wait()
		return nil, fmt.Errorf("collect: %w", err)
	}

	// Drain: wait until every stage has seen every record, then let detect
	// score its open windows a last time and the sinks store what it raised.
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancelDrain()
	wait := func(cond func() bool) error {
		for !cond() {
			select {
			case err := <-errs:
				return err
			case <-drainCtx.Done():
				return fmt.Errorf("demo: pipeline did not drain in time (collected %d, enriched %d, detected %d, stored %d)",
					cnt.Collected.Load(), cnt.Enriched.Load(), cnt.Detected.Load(), cnt.SunkFlows.Load())
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	}
	n := cnt.Collected.Load()
	if err := wait(func() bool {
		return cnt.Enriched.Load() >= n && cnt.Detected.Load() >= n && cnt.SunkFlows.Load() >= n
	}); err != nil {
		stopStages()
		wg.Wait()
		return nil, err
	}
	stopDetect()
	<-detectDone
	if err := wait(func() bool { return cnt.SunkAlerts.Load() >= cnt.Alerts.Load() }); err != nil {
		stopStages()
		wg.Wait()
		return nil, err
	}
	stopStages()
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	elapsed := time.Since(began)
	stopProgress()
	res.Flows, res.Alerts = n, cnt.SunkAlerts.Load()
	fmt.Fprintf(progress, "pipeline drained: %d flows, %d alerts in %.1fs (%.0f flows/s end to end)\n", n, res.Alerts, elapsed.Seconds(), float64(n)/elapsed.Seconds())
	if p50, p99, ns := cnt.Latency.Quantiles(); ns > 0 {
		res.LatencyP50, res.LatencyP99 = p50, p99
		fmt.Fprintf(progress, "flow export -> alert stored latency: p50 %s, p99 %s over %d alerts\n", p50.Round(time.Millisecond), p99.Round(time.Millisecond), ns)
	}
	alertsCopy.Close()
	flowsCopy.Close()
	return res, summarize(res, truthPath, o.Thresholds, out)
}

// summarize prints alerts by detector and device, and the evaluation when a
// ground truth is known.
func summarize(res *DemoResult, truthPath string, ths []eval.Threshold, out io.Writer) error {
	f, err := os.Open(res.AlertsFile)
	if err != nil {
		return err
	}
	alerts, err := eval.ReadAlerts(f)
	f.Close()
	if err != nil {
		return err
	}
	type row struct {
		detector string
		devices  map[string]int
		n        int
		maxSev   flowpb.Severity
	}
	rows := map[string]*row{}
	// An alert id may arrive several times (open, escalation, close): the
	// table counts alerts, not updates.
	seen := map[string]bool{}
	for _, a := range alerts {
		if seen[a.Id] {
			continue
		}
		seen[a.Id] = true
		r := rows[a.Detector]
		if r == nil {
			r = &row{detector: a.Detector, devices: map[string]int{}}
			rows[a.Detector] = r
		}
		r.n++
		r.devices[a.DeviceId]++
		if a.Severity > r.maxSev {
			r.maxSev = a.Severity
		}
	}
	names := make([]string, 0, len(rows))
	for k := range rows {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "DETECTOR\tALERTS\tDEVICES\tMAX SEVERITY\tTOP DEVICES\n")
	for _, n := range names {
		r := rows[n]
		type dc struct {
			d string
			c int
		}
		var top []dc
		for d, c := range r.devices {
			top = append(top, dc{d, c})
		}
		sort.Slice(top, func(i, j int) bool { return top[i].c > top[j].c || top[i].c == top[j].c && top[i].d < top[j].d })
		s := ""
		for i, x := range top {
			if i == 3 {
				s += " ..."
				break
			}
			if i > 0 {
				s += ", "
			}
			s += fmt.Sprintf("%s (%d)", x.d, x.c)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", n, r.n, len(r.devices), webhook.SeverityName(r.maxSev), s)
	}
	tw.Flush()
	if truthPath != "" {
		tf, err := os.Open(truthPath)
		if err != nil {
			return err
		}
		truth, err := eval.ReadTruth(tf)
		tf.Close()
		if err != nil {
			return err
		}
		ix := eval.LeakIndex{}
		ff, err := os.Open(res.FlowsFile)
		if err != nil {
			return err
		}
		err = eval.ReadFlows(ff, ix)
		ff.Close()
		if err != nil {
			return err
		}
		rep := eval.Evaluate(truth, alerts, ix)
		res.Report = &rep
		fmt.Fprintf(out, "\nDetection quality against the ground truth (%s):\n\n", truthPath)
		rep.Print(out)
		res.Failures = rep.Check(ths)
		for _, f := range res.Failures {
			fmt.Fprintln(out, "BELOW THRESHOLD:", f)
		}
	}
	fmt.Fprintf(out, "\n%d alerts (%d messages with their updates)\n", len(seen), len(alerts))
	fmt.Fprintf(out, "\nWhere to look next:\n  alerts:         %s   (jq -c 'select(.detector==\"identifier_leak\")' %s)\n  enriched flows: %s\n",
		res.AlertsFile, res.AlertsFile, res.FlowsFile)
	if res.ClickHouse != "" {
		fmt.Fprintf(out, "  ClickHouse:     %s — saved analyst queries in deploy/clickhouse/queries/\n", res.ClickHouse)
	}
	return nil
}
