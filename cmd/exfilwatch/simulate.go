package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/exfilwatch/exfilwatch/sim"
)

func init() {
	register("simulate", "generate a simulated phone lab: inventory, traffic pcap, ground truth, GeoIP databases", runSimulate)
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := sim.DefaultOptions()
	fs := newFlagSet("simulate", "simulate [--devices N] [--seed S] --out-dir DIR", stderr)
	fs.IntVar(&o.Devices, "devices", o.Devices, "number of lab devices (>= 8 for every scenario)")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "random seed; the same seed gives the same corpus")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "record time the traffic spans (pcap timestamps; generation takes seconds)")
	fs.DurationVar(&o.Learning, "learning", o.Learning, "initial period in which every model meets every benign destination")
	fs.IntVar(&o.Background, "background", o.Background, "benign flows per device after the learning period")
	fs.BoolVar(&o.BenignOnly, "benign-only", false, "benign traffic only (no scenario; the ground truth is empty)")
	start := fs.String("start", o.Start.Format(time.RFC3339), "start of record time (RFC 3339)")
	outDir := fs.String("out-dir", "", "directory to write inventory.yaml, lab.pcap, truth.jsonl, sim-city.mmdb, sim-asn.mmdb (required)")
	iface := fs.String("iface", "", "also send the traffic live onto this interface (e.g. a veth into the gateway's namespace; needs root)")
	netns := fs.String("netns", "", "network namespace of --iface (name under /var/run/netns or a path)")
	rate := fs.Int("rate", 5000, "frames per second when sending live (0: as fast as possible)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *outDir == "" {
		return usagef("--out-dir is required")
	}
	if o.Devices < 1 || o.Devices > 20000 {
		return usagef("--devices: must be between 1 and 20000, not %d", o.Devices)
	}
	t, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return usagef("--start: %v", err)
	}
	o.Start = t
	if o.Learning >= o.Duration {
		return usagef("--learning (%s) must be shorter than --duration (%s)", o.Learning, o.Duration)
	}
	if *iface != "" && *netns == "" {
		if _, err := net.InterfaceByName(*iface); err != nil {
			return usagef("--iface: %v", err)
		}
	}
	began := time.Now()
	files, err := sim.Generate(o).WriteDir(*outDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simulated %d devices: %d frames in %s, %d ground-truth rows in %s, inventory %s, GeoIP %s + %s (%.1fs)\n",
		o.Devices, files.Frames, files.Pcap, files.TruthRows, files.Truth, files.Inventory, files.CityDB, files.ASNDB, time.Since(began).Seconds())
	if *iface == "" {
		return nil
	}
	if *rate < 0 {
		return usagef("--rate: must be >= 0")
	}
	fmt.Fprintf(stdout, "sending %d frames on %s at %d frames/s ...\n", files.Frames, *iface, *rate)
	began = time.Now()
	var sent int
	if *netns != "" {
		sent, err = sim.SendPcapInNetns(ctx, *netns, files.Pcap, *iface, *rate)
	} else {
		sent, err = sim.SendPcap(ctx, files.Pcap, *iface, *rate)
	}
	fmt.Fprintf(stdout, "sent %d frames in %.1fs\n", sent, time.Since(began).Seconds())
	return err
}
