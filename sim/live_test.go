package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/exfilwatch/exfilwatch/internal/netns"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// vethNS is a network namespace holding a veth pair tx <-> rx. IPv6 is off
// in it, so the kernel itself puts no frame (router solicitation, DAD) on
// the link: whatever rx receives was sent by the test.
type vethNS struct{ ns, tx, rx string }

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newVethNS(t testing.TB, mtu int) *vethNS {
	t.Helper()
	testenv.Root(t)
	testenv.Tool(t, "ip")
	var r [3]byte
	_, _ = rand.Read(r[:])
	v := &vethNS{ns: "exw-sim-" + hex.EncodeToString(r[:]), tx: "simtx", rx: "simrx"}
	ipCmd(t, "netns", "add", v.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", v.ns).Run() })
	if err := netns.Do(v.ns, func() error {
		for _, f := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("disable IPv6: %v", err)
	}
	ipCmd(t, "-n", v.ns, "link", "add", v.tx, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", v.rx, "mtu", fmt.Sprint(mtu))
	ipCmd(t, "-n", v.ns, "link", "set", v.tx, "up")
	ipCmd(t, "-n", v.ns, "link", "set", v.rx, "up")
	return v
}

// capture is an AF_PACKET socket receiving every frame that arrives on an
// interface: the independent reference for what SendPcap put on the wire.
type capture struct{ fd int }

func newCapture(t testing.TB, ns, ifname string) *capture {
	t.Helper()
	fd, err := netns.PacketSocket(ns, ifname)
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &capture{fd: fd}
}

// frames returns the frames received so far, in arrival order.
func (c *capture) frames(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 1<<16)
	err := netns.EachReceived(c.fd, buf, 300*time.Millisecond, func(data []byte, n int) {
		if n > len(buf) {
			t.Fatalf("received frame of %d bytes, larger than the buffer", n)
		}
		out = append(out, append([]byte(nil), data...))
	})
	if err != nil {
		t.Fatalf("reference capture: %v", err)
	}
	return out
}

// linkStats reads an interface's kernel counters with `ip -s -j link`, a
// second reference independent of the capture socket.
func linkStats(t testing.TB, ns, ifname string) (rxPackets, rxBytes, rxDropped uint64) {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", ifname).Output()
	if err != nil {
		t.Fatalf("ip -s -j link show %s: %v", ifname, err)
	}
	var v []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
				Bytes   uint64 `json:"bytes"`
				Dropped uint64 `json:"dropped"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		t.Fatalf("ip -s -j link: %v: %s", err, out)
	}
	return v[0].Stats64.RX.Packets, v[0].Stats64.RX.Bytes, v[0].Stats64.RX.Dropped
}

// smallCorpus writes a small simulated lab and returns its pcap and frames.
// It includes QUIC Initials longer than 1500 bytes.
func smallCorpus(t testing.TB) (string, [][]byte) {
	t.Helper()
	o := DefaultOptions()
	o.Devices, o.Background = 9, 2
	files, err := Generate(o).WriteDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return files.Pcap, readFrames(t, files.Pcap)
}

func readFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
}

func checkSame(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("received %d frames, sent %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs:\n got %x\nwant %x", i+1, got[i][:min(64, len(got[i]))], want[i][:min(64, len(want[i]))])
		}
	}
}

// Every frame arrives on the peer, byte-identical and in order; the
// interface counters agree; a rate limit makes the replay take at least
// frames/pps.
func TestSendPcapVeth(t *testing.T) {
	v := newVethNS(t, 9000)
	pcap, want := smallCorpus(t)
	var total uint64
	big := 0
	for _, f := range want {
		total += uint64(len(f))
		if len(f) > 1514 {
			big++
		}
	}
	c := newCapture(t, v.ns, v.rx)
	const pps = 20000
	began := time.Now()
	sent, err := SendPcapInNetns(context.Background(), v.ns, pcap, v.tx, pps)
	elapsed := time.Since(began)
	if err != nil {
		t.Fatalf("SendPcapInNetns: %v (sent %d)", err, sent)
	}
	if sent != len(want) {
		t.Fatalf("sent %d, pcap has %d frames", sent, len(want))
	}
	checkSame(t, c.frames(t), want)
	pk, by, dr := linkStats(t, v.ns, v.rx)
	if pk != uint64(len(want)) || by != total || dr != 0 {
		t.Fatalf("%s counters: %d packets %d bytes %d dropped, want %d %d 0", v.rx, pk, by, dr, len(want), total)
	}
	// Frame n leaves no earlier than (n-1)/pps after the first.
	if minDur := time.Duration(len(want)-1) * time.Second / pps; elapsed < minDur {
		t.Fatalf("%d frames at %d/s took %s, less than %s", len(want), pps, elapsed, minDur)
	}
	t.Logf("%d frames (%d above 1514 bytes), %d bytes in %s at a %d frames/s limit", sent, big, total, elapsed.Round(time.Millisecond), pps)

	// At the standard MTU an oversize frame (a jumbo frame appended to the
	// first frames of the corpus) stops the replay with an error that says
	// what to do.
	ipCmd(t, "-n", v.ns, "link", "set", v.tx, "mtu", "1500")
	jumbo := append(append([]byte(nil), want[0][:14]...), make([]byte, 2000)...)
	mixed := append(append([][]byte(nil), want[:10]...), jumbo)
	jpath := filepath.Join(t.TempDir(), "jumbo.pcap")
	jf, err := os.Create(jpath)
	if err != nil {
		t.Fatal(err)
	}
	pw := pcapgo.NewWriter(jf)
	pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for _, f := range mixed {
		pw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(0, 0), CaptureLength: len(f), Length: len(f)}, f)
	}
	jf.Close()
	sent, err = SendPcapInNetns(context.Background(), v.ns, jpath, v.tx, 0)
	if err == nil || !errors.Is(err, unix.EMSGSIZE) || !strings.Contains(err.Error(), "mtu 9000") {
		t.Fatalf("oversize frame: err %v, want EMSGSIZE with a hint", err)
	}
	if sent != 10 {
		t.Fatalf("stopped after %d frames, want 10 (the jumbo frame is the 11th)", sent)
	}
}

// tcpreplay, an independent implementation reading the file with libpcap,
// puts exactly the same bytes on the wire.
func TestSendPcapMatchesTcpreplay(t *testing.T) {
	tcpreplay := testenv.Tool(t, "tcpreplay")
	v := newVethNS(t, 9000)
	pcap, _ := smallCorpus(t)
	c := newCapture(t, v.ns, v.rx)
	if out, err := exec.Command("ip", "netns", "exec", v.ns, tcpreplay, "-q", "-i", v.tx, "--topspeed", pcap).CombinedOutput(); err != nil {
		t.Fatalf("tcpreplay: %v: %s", err, out)
	}
	ref := c.frames(t)
	if _, err := SendPcapInNetns(context.Background(), v.ns, pcap, v.tx, 0); err != nil {
		t.Fatal(err)
	}
	checkSame(t, c.frames(t), ref)
}

// Cancelling stops the replay between frames; what was reported sent
// arrived.
func TestSendPcapCancel(t *testing.T) {
	v := newVethNS(t, 9000)
	pcap, want := smallCorpus(t)
	c := newCapture(t, v.ns, v.rx)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	sent, err := SendPcapInNetns(ctx, v.ns, pcap, v.tx, 1000)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if sent == 0 || sent >= len(want) {
		t.Fatalf("sent %d of %d frames before the deadline", sent, len(want))
	}
	checkSame(t, c.frames(t), want[:sent])
}

// dropNetRaw runs fn on a locked thread whose effective capabilities lack
// CAP_NET_RAW (capabilities are per thread; the thread is discarded after).
func dropNetRaw(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		data[unix.CAP_NET_RAW/32].Effective &^= 1 << (unix.CAP_NET_RAW % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	return <-done
}

func TestSendPcapErrors(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "one.pcap")
	writePcap(t, pcap, layers.LinkTypeEthernet, make([]byte, 60))
	ctx := context.Background()

	_, err := SendPcap(ctx, pcap, "nosuchif0", 0)
	if err == nil || !strings.Contains(err.Error(), `interface "nosuchif0" not found`) {
		t.Errorf("missing interface: %v", err)
	}
	_, err = SendPcapInNetns(ctx, "exw-no-such-ns", pcap, "lo", 0)
	if err == nil || !strings.Contains(err.Error(), `network namespace "exw-no-such-ns"`) {
		t.Errorf("missing namespace: %v", err)
	}
	_, err = SendPcap(ctx, filepath.Join(dir, "missing.pcap"), "lo", 0)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err = SendPcap(ctx, pcap, "lo", -1); err == nil || !strings.Contains(err.Error(), "rate") {
		t.Errorf("negative rate: %v", err)
	}
	raw := filepath.Join(dir, "raw.pcap")
	writePcap(t, raw, layers.LinkTypeRaw, make([]byte, 40))
	if _, err = SendPcap(ctx, raw, "lo", 0); err == nil || !strings.Contains(err.Error(), "only Ethernet") {
		t.Errorf("raw-IP capture: %v", err)
	}
	notPcap := filepath.Join(dir, "text.pcap")
	os.WriteFile(notPcap, []byte("hello, not a capture\n"), 0o644)
	if _, err = SendPcap(ctx, notPcap, "lo", 0); err == nil {
		t.Errorf("text file accepted as a capture")
	}

	if os.Geteuid() == 0 {
		// Without CAP_NET_RAW the socket is refused, with a clear message.
		err := dropNetRaw(func() error { _, err := SendPcap(ctx, pcap, "lo", 0); return err })
		if err == nil || !strings.Contains(err.Error(), "needs root or CAP_NET_RAW") || !errors.Is(err, unix.EPERM) {
			t.Errorf("without CAP_NET_RAW: %v", err)
		}
	}
}

func TestSendPcapNg(t *testing.T) {
	v := newVethNS(t, 1500)
	frames := [][]byte{bytes.Repeat([]byte{0xaa}, 60), bytes.Repeat([]byte{0x55}, 1514)}
	for _, f := range frames {
		copy(f, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5}) // local experimental ethertype
	}
	path := filepath.Join(t.TempDir(), "x.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	f.Close()
	c := newCapture(t, v.ns, v.rx)
	if n, err := SendPcapInNetns(context.Background(), v.ns, path, v.tx, 0); err != nil || n != 2 {
		t.Fatalf("sent %d: %v", n, err)
	}
	checkSame(t, c.frames(t), frames)
}

func writePcap(t testing.TB, path string, lt layers.LinkType, frames ...[]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(fr), Length: len(fr)}, fr); err != nil {
			t.Fatal(err)
		}
	}
}

// loopFrames serves the same frames over and over, n in total.
type loopFrames struct {
	frames [][]byte
	n, i   int
}

func (l *loopFrames) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	if l.i >= l.n {
		return nil, gopacket.CaptureInfo{}, io.EOF
	}
	f := l.frames[l.i%len(l.frames)]
	l.i++
	return f, gopacket.CaptureInfo{}, nil
}

// BenchmarkSendFrame is the per-frame cost of the send loop (one op = one
// frame onto a veth): it must allocate nothing.
func BenchmarkSendFrame(b *testing.B) {
	v := newVethNS(b, 9000)
	_, frames := smallCorpus(b)
	var t *tx
	if err := netns.Do(v.ns, func() error {
		var err error
		t, err = openTx(v.tx)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer t.close()
	var bytes int64
	for _, f := range frames {
		bytes += int64(len(f))
	}
	b.SetBytes(bytes / int64(len(frames)))
	b.ReportAllocs()
	b.ResetTimer()
	n, err := t.replay(context.Background(), &loopFrames{frames: frames, n: b.N}, 0)
	if err != nil || n != b.N {
		b.Fatalf("sent %d of %d: %v", n, b.N, err)
	}
}

// BenchmarkSendPcapFile replays a whole capture file per op, unpaced, and
// BenchmarkTcpreplayFile does the same with tcpreplay --topspeed (the
// baseline; its time includes starting the process).
func BenchmarkSendPcapFile(b *testing.B) {
	v := newVethNS(b, 9000)
	pcap, frames := smallCorpus(b)
	b.ResetTimer()
	for b.Loop() {
		if n, err := SendPcapInNetns(context.Background(), v.ns, pcap, v.tx, 0); err != nil || n != len(frames) {
			b.Fatalf("sent %d: %v", n, err)
		}
	}
	b.ReportMetric(float64(len(frames))*float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

func BenchmarkTcpreplayFile(b *testing.B) {
	tcpreplay := testenv.Tool(b, "tcpreplay")
	v := newVethNS(b, 9000)
	pcap, frames := smallCorpus(b)
	b.ResetTimer()
	for b.Loop() {
		if out, err := exec.Command("ip", "netns", "exec", v.ns, tcpreplay, "-q", "-i", v.tx, "--topspeed", pcap).CombinedOutput(); err != nil {
			b.Fatalf("tcpreplay: %v: %s", err, out)
		}
	}
	b.ReportMetric(float64(len(frames))*float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
