package collector_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// completeRecords walks a little-endian classic pcap's record headers and
// returns how many records end at or before cut, and where the next starts.
func completeRecords(t *testing.T, data []byte, cut int) (n int, next int) {
	t.Helper()
	if binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		t.Fatalf("test expects a little-endian microsecond pcap")
	}
	off := 24
	for off+16 <= len(data) {
		end := off + 16 + int(binary.LittleEndian.Uint32(data[off+8:]))
		if end > cut {
			break
		}
		n++
		off = end
	}
	return n, off
}

func replayBytes(t *testing.T, data []byte) (uint64, collector.Stats, error) {
	t.Helper()
	var pkts uint64
	cfg := collector.DefaultConfig()
	st, err := collector.ReadPcap(context.Background(), bytes.NewReader(data), cfg, func(r *flowpb.FlowRecord) error {
		pkts += r.PacketsIn + r.PacketsOut
		return nil
	})
	return pkts, st, err
}

func TestTruncatedPcapKeepsFlows(t *testing.T) {
	file := filepath.Join(testenv.SharedTestdata(t), "pcap", "zeek-tls-conn-with-extensions.pcap")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := len(data) / 2
	n, next := completeRecords(t, data, cut)
	if next == cut {
		cut++ // make sure the cut is inside a record
	}
	pkts, st, err := replayBytes(t, data[:cut])
	if err == nil {
		t.Fatal("want an error for the truncated file")
	}
	want := fmt.Sprintf("packet %d (byte offset %d)", n+1, next)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if st.Packets != uint64(n) || pkts != st.Counted || st.Counted == 0 || st.Records == 0 {
		t.Errorf("read %d packets, records carry %d, %d records; want %d packets before the damage", st.Packets, pkts, st.Records, n)
	}
}

func TestDamagedRecordHeader(t *testing.T) {
	file := filepath.Join(testenv.SharedTestdata(t), "pcap", "elastic-dns-tunnel-iodine.pcap")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Clone(data)
	n, off := completeRecords(t, data, len(data)/3)
	binary.LittleEndian.PutUint32(data[off+8:], 0x7fffffff) // absurd capture length
	pkts, st, err := replayBytes(t, data)
	want := fmt.Sprintf("packet %d (byte offset %d)", n+1, off)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v does not say %q", err, want)
	}
	if st.Packets != uint64(n) || pkts != st.Counted || st.Counted == 0 || st.Records == 0 {
		t.Errorf("read %d, records carry %d of %d counted; want the %d before the damage", st.Packets, pkts, st.Counted, n)
	}
}

func TestTruncatedPcapng(t *testing.T) {
	file := filepath.Join(testenv.SharedTestdata(t), "pcap", "zeek-quic-merlinc2.pcapng")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, full, err := replayBytes(t, data)
	if err != nil {
		t.Fatal(err)
	}
	pkts, st, err := replayBytes(t, data[:len(data)/2])
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("packet %d", st.Packets+1)) {
		t.Fatalf("error %v does not name packet %d", err, st.Packets+1)
	}
	if st.Packets == 0 || st.Packets >= full.Packets || pkts != st.Counted || st.Records == 0 {
		t.Errorf("truncated: %d of %d packets read, records carry %d", st.Packets, full.Packets, pkts)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := collector.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c := collector.DefaultConfig()
	c.LabSubnets = []string{"10.0.0.0/8", "nope"}
	c.IdleTimeout = 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "lab_subnets[1]: invalid CIDR") || !strings.Contains(err.Error(), "idle_timeout:") {
		t.Errorf("Validate: %v", err)
	}
	if _, err := collector.ReadPcap(context.Background(), bytes.NewReader(nil), c, nil); err == nil {
		t.Errorf("ReadPcap accepted an invalid config")
	}
}

func TestReadPcapCancelled(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.SharedTestdata(t), "pcap", "elastic-dns-tunnel-iodine.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	recs := 0
	_, err = collector.ReadPcap(ctx, bytes.NewReader(data), collector.DefaultConfig(), func(*flowpb.FlowRecord) error { recs++; return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("want context.Canceled, got %v", err)
	}
}
