package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/exfilwatch/exfilwatch/eval"
)

func init() {
	register("eval", "score alerts and enriched flows against a ground-truth file (precision, recall, F1)", runEvalFiles)
}

// runEvalFiles scores existing outputs. (`demo --eval` runs the pipeline first.)
func runEvalFiles(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", "eval --truth truth.jsonl --alerts alerts.jsonl [--flows enriched.jsonl] [--min recall:identifier_leak=0.99,...]", stderr)
	truthPath := fs.String("truth", "", "ground truth, JSON lines (from exfilwatch simulate)")
	alertsPath := fs.String("alerts", "", "alerts, protobuf-JSON lines (from exfilwatch detect --out)")
	flowsPath := fs.String("flows", "", "enriched flows, protobuf-JSON lines (for leak recall per identifier type and form)")
	mins := fs.String("min", "", "thresholds: comma-separated metric:name=value (metric recall, precision, f1 or leak-recall; name a detector or *); exit 1 when one is not met")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *truthPath == "" || *alertsPath == "" {
		return usagef("--truth and --alerts are required")
	}
	ths, err := eval.ParseThresholds(*mins)
	if err != nil {
		return usagef("--min: %v", err)
	}
	rep, err := evaluateFiles(*truthPath, *alertsPath, *flowsPath)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if fails := rep.Check(ths); len(fails) > 0 {
		for _, f := range fails {
			fmt.Fprintln(stdout, "BELOW THRESHOLD:", f)
		}
		return fmt.Errorf("%d thresholds not met", len(fails))
	}
	return nil
}

func evaluateFiles(truthPath, alertsPath, flowsPath string) (eval.Report, error) {
	open := func(p string) (*os.File, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, usagef("%v", err)
		}
		return f, nil
	}
	tf, err := open(truthPath)
	if err != nil {
		return eval.Report{}, err
	}
	defer tf.Close()
	truth, err := eval.ReadTruth(tf)
	if err != nil {
		return eval.Report{}, fmt.Errorf("%s: %w", truthPath, err)
	}
	af, err := open(alertsPath)
	if err != nil {
		return eval.Report{}, err
	}
	defer af.Close()
	alerts, err := eval.ReadAlerts(af)
	if err != nil {
		return eval.Report{}, fmt.Errorf("%s: %w", alertsPath, err)
	}
	ix := eval.LeakIndex{}
	if flowsPath != "" {
		ff, err := open(flowsPath)
		if err != nil {
			return eval.Report{}, err
		}
		defer ff.Close()
		if err := eval.ReadFlows(ff, ix); err != nil {
			return eval.Report{}, fmt.Errorf("%s: %w", flowsPath, err)
		}
	}
	return eval.Evaluate(truth, alerts, ix), nil
}
