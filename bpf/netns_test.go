package bpf

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"github.com/exfilwatch/exfilwatch/internal/netns"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// topo is phone ns --veth-- gateway ns (forwarding) --veth-- internet ns.
//
//	phone0 10.99.1.2 fd00:99:1::2  <->  gwp 10.99.1.1 fd00:99:1::1  (gw)
//	gwi 10.99.2.1 fd00:99:2::1 (gw) <->  inet0 10.99.2.2 fd00:99:2::2
type topo struct {
	phone, gw, inet string
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newTopo(t testing.TB) *topo {
	t.Helper()
	testenv.Root(t)
	testenv.Tool(t, "ip")
	var r [3]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	tp := &topo{phone: "exw-ph-" + id, gw: "exw-gw-" + id, inet: "exw-in-" + id}
	for _, ns := range []string{tp.phone, tp.gw, tp.inet} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ipCmd(t, "-n", tp.gw, "link", "add", "gwp", "type", "veth", "peer", "name", "phone0", "netns", tp.phone)
	ipCmd(t, "-n", tp.gw, "link", "add", "gwi", "type", "veth", "peer", "name", "inet0", "netns", tp.inet)
	for _, a := range [][]string{
		{tp.phone, "phone0", "10.99.1.2/24", "fd00:99:1::2/64"},
		{tp.gw, "gwp", "10.99.1.1/24", "fd00:99:1::1/64"},
		{tp.gw, "gwi", "10.99.2.1/24", "fd00:99:2::1/64"},
		{tp.inet, "inet0", "10.99.2.2/24", "fd00:99:2::2/64"},
	} {
		ipCmd(t, "-n", a[0], "addr", "add", a[2], "dev", a[1])
		ipCmd(t, "-n", a[0], "addr", "add", a[3], "dev", a[1], "nodad")
		ipCmd(t, "-n", a[0], "link", "set", a[1], "up")
		ipCmd(t, "-n", a[0], "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", tp.phone, "route", "add", "default", "via", "10.99.1.1")
	ipCmd(t, "-n", tp.phone, "-6", "route", "add", "default", "via", "fd00:99:1::1")
	ipCmd(t, "-n", tp.inet, "route", "add", "default", "via", "10.99.2.1")
	ipCmd(t, "-n", tp.inet, "-6", "route", "add", "default", "via", "fd00:99:2::1")
	if err := netns.Do(tp.gw, func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("enable forwarding: %v", err)
	}
	return tp
}

// capture is an AF_PACKET socket on one gateway interface that records, per
// flow key, the frames received on it: the same skbs the ingress hook sees
// (packet taps run just before TC ingress). It is the independent
// reference for TCP, whose packet count the test cannot predict.
type capture struct {
	fd int
}

func newCapture(t testing.TB, ns, ifname string) *capture {
	t.Helper()
	fd, err := netns.PacketSocket(ns, ifname)
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &capture{fd: fd}
}

type counts struct{ packets, bytes uint64 }

// collect reads everything captured so far and returns, for received frames
// only, packets and counted bytes per flow key.
func (c *capture) collect(t testing.TB) map[flow.Key]counts {
	t.Helper()
	out := map[flow.Key]counts{}
	err := netns.EachReceived(c.fd, make([]byte, 256), 200*time.Millisecond, func(data []byte, n int) {
		k, declared, ok := parseRef(data)
		if !ok {
			return
		}
		e := out[k]
		e.packets++
		e.bytes += countedBytes(declared, n, 14)
		out[k] = e
	})
	if err != nil {
		t.Fatalf("reference capture: %v", err)
	}
	return out
}

// parseRef extracts the TCP/UDP key and declared L3 length of an untagged
// frame without IPv6 extension headers (all this test sends).
func parseRef(b []byte) (flow.Key, int, bool) {
	var k flow.Key
	if len(b) < 14 {
		return k, 0, false
	}
	et := binary.BigEndian.Uint16(b[12:])
	ip := b[14:]
	var l4 []byte
	var declared int
	switch {
	case et == 0x0800 && len(ip) >= 20:
		ihl := int(ip[0]&0xf) * 4
		declared = int(binary.BigEndian.Uint16(ip[2:]))
		k.Src = netip.AddrFrom4([4]byte(ip[12:16])).As16()
		k.Dst = netip.AddrFrom4([4]byte(ip[16:20])).As16()
		k.Proto, k.IPVersion = ip[9], 4
		l4 = ip[ihl:]
	case et == 0x86dd && len(ip) >= 40:
		declared = 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if declared == 40 {
			declared = 0
		}
		k.Src, k.Dst = [16]byte(ip[8:24]), [16]byte(ip[24:40])
		k.Proto, k.IPVersion = ip[6], 6
		l4 = ip[40:]
	default:
		return k, 0, false
	}
	if (k.Proto != 6 && k.Proto != 17) || len(l4) < 4 {
		return k, 0, false
	}
	k.SrcPort, k.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	return k, declared, true
}

func keyOf(src, dst net.Addr, proto uint8) flow.Key {
	ap := func(a net.Addr) netip.AddrPort {
		switch a := a.(type) {
		case *net.UDPAddr:
			return a.AddrPort()
		case *net.TCPAddr:
			return a.AddrPort()
		}
		panic(a)
	}
	s, d := ap(src), ap(dst)
	ver := uint8(6)
	if s.Addr().Unmap().Is4() {
		ver = 4
	}
	return flow.Key{Src: s.Addr().As16(), Dst: d.Addr().As16(), SrcPort: s.Port(), DstPort: d.Port(), Proto: proto, IPVersion: ver}
}

// udpExchange sends datagrams of the given sizes from the phone to the
// internet host, which answers each with a 50-byte datagram. It returns the
// forward key and the expected counts per direction.
func udpExchange(t *testing.T, tp *topo, fromNS, dst string, sizes []int) (flow.Key, counts, counts) {
	t.Helper()
	var srv *net.UDPConn
	if err := netns.Do(tp.inet, func() error {
		var err error
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(dst), 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var cli *net.UDPConn
	if err := netns.Do(fromNS, func() error {
		var err error
		cli, err = net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	hdr := 28
	if netip.MustParseAddr(dst).Is6() {
		hdr = 48
	}
	var fwd, rev counts
	buf := make([]byte, 2048)
	for _, n := range sizes {
		if _, err := cli.Write(payload(n)); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, from, err := srv.ReadFromUDP(buf)
		if err != nil || m != n {
			t.Fatalf("server read %d (want %d): %v", m, n, err)
		}
		if _, err := srv.WriteToUDP(payload(50), from); err != nil {
			t.Fatal(err)
		}
		_ = cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if m, err := cli.Read(buf); err != nil || m != 50 {
			t.Fatalf("client read %d: %v", m, err)
		}
		fwd.packets++
		fwd.bytes += uint64(hdr + n)
		rev.packets++
		rev.bytes += uint64(hdr + 50)
	}
	return keyOf(cli.LocalAddr(), cli.RemoteAddr(), 17), fwd, rev
}

// tcpExchange sends req from the phone, the server answers resp bytes and
// both close. It returns the forward key.
func tcpExchange(t *testing.T, tp *topo, dst string, req []byte, resp int) flow.Key {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(tp.inet, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(dst, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(req))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Errorf("server read: %v", err)
			return
		}
		_, _ = c.Write(payload(resp))
	}()
	var c net.Conn
	if err := netns.Do(tp.phone, func() error {
		var err error
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, c); err != nil || n != int64(resp) {
		t.Fatalf("client read %d of %d: %v", n, resp, err)
	}
	k := keyOf(c.LocalAddr(), c.RemoteAddr(), 6)
	c.Close()
	wg.Wait()
	return k
}

func TestVethGateway(t *testing.T) {
	for _, mode := range []string{AttachTCX, AttachTC} {
		t.Run(mode, func(t *testing.T) { testVethGateway(t, mode) })
	}
}

func testVethGateway(t *testing.T, mode string) {
	testenv.Tool(t, "bpftool") // lists clsact filters
	testenv.Tool(t, "tc")
	tp := newTopo(t)
	cfg := DefaultConfig()
	cfg.AttachMode = mode
	cfg.PollInterval = 50 * time.Millisecond
	p, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := netns.Do(tp.gw, func() error {
		if err := p.Attach("gwp"); err != nil {
			return err
		}
		if err := p.Attach("nosuchif0"); err == nil || !strings.Contains(err.Error(), "interface not found") {
			return fmt.Errorf("attach to a missing interface: %v, want interface not found", err)
		}
		return p.Attach("gwi")
	}); err != nil {
		t.Fatal(err)
	}
	// hooks describes what is attached in the gateway: TC filters from
	// bpftool, TCX programs from BPF_PROG_QUERY.
	hooks := func() string {
		out, _ := exec.Command("ip", "netns", "exec", tp.gw, "bpftool", "net", "show").CombinedOutput()
		s := string(out)
		_ = netns.Do(tp.gw, func() error {
			for _, ifn := range []string{"gwp", "gwi"} {
				ifc, err := net.InterfaceByName(ifn)
				if err != nil {
					return err
				}
				for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
					r, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: at})
					if err != nil {
						return err
					}
					for _, pr := range r.Programs {
						if prog, err := ebpf.NewProgramFromID(pr.ID); err == nil {
							info, _ := prog.Info()
							s += fmt.Sprintf("tcx %s %s %s\n", ifn, at, info.Name)
							prog.Close()
						}
					}
				}
			}
			return nil
		})
		return s
	}
	wantHook := map[string]string{AttachTCX: "tcx gwi TCXEgress exfil_egress", AttachTC: "gwi(3) clsact/egress exfilwatch_egress"}[mode]
	if h := hooks(); strings.Count(h, "exfil") != 4 || !strings.Contains(h, wantHook) {
		t.Fatalf("attached in the gateway after attaching in %s mode:\n%s", mode, h)
	}
	if got := p.Interfaces(); len(got) != 2 || got[0] != "gwp" || got[1] != "gwi" {
		t.Fatalf("Interfaces() = %v, want [gwp gwi]", got)
	}
	capP := newCapture(t, tp.gw, "gwp") // phone -> internet, as received by the gateway
	capI := newCapture(t, tp.gw, "gwi") // internet -> phone

	sink := newRecSink()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx, sink) }()

	const both = 0b11 // slot 0 (gwp) and slot 1 (gwi)
	type exp struct {
		name string
		k    flow.Key
		c    counts
		mask uint64
	}
	var exps []exp
	sizes := []int{1, 100, 1000, 1400, 0}
	for _, v := range []struct{ name, dst string }{{"udp4", "10.99.2.2"}, {"udp6", "fd00:99:2::2"}} {
		k, fwd, rev := udpExchange(t, tp, tp.phone, v.dst, sizes)
		exps = append(exps, exp{v.name + " phone->inet", k, fwd, both}, exp{v.name + " inet->phone", k.Reverse(), rev, both})
	}
	// Locally originated by the gateway: counted at gwi egress only.
	k, fwd, rev := udpExchange(t, tp, tp.gw, "10.99.2.2", []int{10, 20})
	exps = append(exps, exp{"udp4 gw->inet", k, fwd, 0b10}, exp{"udp4 inet->gw", k.Reverse(), rev, 0b10})

	req := []byte("GET /upload?imei=356938035643809 HTTP/1.1\r\nHost: 10.99.2.2\r\nUser-Agent: exfilwatch-test\r\n\r\n")
	req = append(req, payload(20000)...) // a body large enough for several segments
	var tcpKeys []flow.Key
	for _, dst := range []string{"10.99.2.2", "fd00:99:2::2"} {
		tcpKeys = append(tcpKeys, tcpExchange(t, tp, dst, req, 30000))
	}

	time.Sleep(3 * cfg.PollInterval)
	refFwd, refRev := capP.collect(t), capI.collect(t)
	for i, k := range tcpKeys {
		name := []string{"tcp4", "tcp6"}[i]
		if refFwd[k].packets == 0 || refRev[k.Reverse()].packets == 0 {
			t.Fatalf("%s: capture saw nothing for %s: %v", name, fmtKey(k), refFwd)
		}
		exps = append(exps, exp{name + " phone->inet", k, refFwd[k], both}, exp{name + " inet->phone", k.Reverse(), refRev[k.Reverse()], both})
	}
	// The UDP expectations computed from the sizes must also match what the
	// capture saw: checks the reference itself.
	for i, e := range exps[:4] {
		ref := refFwd[e.k]
		if i%2 == 1 {
			ref = refRev[e.k]
		}
		if ref != e.c {
			t.Errorf("%s: capture %+v disagrees with computed %+v", e.name, ref, e.c)
		}
	}

	// Run reports the kernel entries of a TCP flow when its FIN event
	// arrives but keeps them (deleting an entry the program is updating
	// would lose the last ACK): every flow, TCP too, is whole in the map.
	flows := p.dumpFlows(t)
	for _, e := range exps {
		v, ok := flows[e.k]
		if !ok {
			t.Errorf("%s: no flow entry for %s", e.name, fmtKey(e.k))
			continue
		}
		if v.Packets != e.c.packets || v.Bytes != e.c.bytes || v.IfMask != e.mask {
			t.Errorf("%s: map packets=%d bytes=%d mask=%#b, want %d %d %#b", e.name, v.Packets, v.Bytes, v.IfMask, e.c.packets, e.c.bytes, e.mask)
		}
	}

	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	// Run's final poll reported the same cumulative counters.
	for _, e := range exps {
		if u := sink.updates[e.k]; u.Packets != e.c.packets || u.Bytes != e.c.bytes || u.IfMask != e.mask {
			t.Errorf("%s: sink got %+v, want packets %d bytes %d mask %#b", e.name, u, e.c.packets, e.c.bytes, e.mask)
		}
	}
	for i, k := range tcpKeys {
		if f := sink.updates[k].TCPFlags; f&(flow.TCPSyn|flow.TCPFin|flow.TCPAck) != flow.TCPSyn|flow.TCPFin|flow.TCPAck {
			t.Errorf("tcp%d flags %#x lack SYN|ACK|FIN", 4+2*i, f)
		}
		if flows[k].Packets != sink.updates[k].Packets {
			t.Errorf("tcp%d: kernel entry not kept after FIN: map %d packets, sink total %d", 4+2*i, flows[k].Packets, sink.updates[k].Packets)
		}
	}
	// The HTTP request arrives as snippet 0 of the forward direction.
	for _, k := range tcpKeys {
		var got *flow.PacketSnippet
		for i := range sink.snippets {
			if sink.snippets[i].Key == k && sink.snippets[i].Index == 0 {
				got = &sink.snippets[i]
			}
		}
		if got == nil {
			t.Errorf("no snippet 0 for %s", fmtKey(k))
			continue
		}
		n := min(len(req), int(cfg.SnippetBytes))
		if got.Offset != 0 || len(got.Data) != n || string(got.Data) != string(req[:n]) || !got.Truncated {
			t.Errorf("snippet for %s: offset %d len %d trunc %v data %q", fmtKey(k), got.Offset, len(got.Data), got.Truncated, got.Data[:min(80, len(got.Data))])
		}
		ended := false
		for _, e := range sink.ends {
			ended = ended || e.k == k || e.k == k.Reverse()
		}
		if !ended {
			t.Errorf("no EndFlow for %s", fmtKey(k))
		}
	}
	c := p.Counters()
	if c["packets_egress_forwarded"] == 0 || c["ringbuf_full_drops"] != 0 || c["flow_insert_failures"] != 0 {
		t.Errorf("counters: %v", c)
	}
	t.Logf("counters: %v", c)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if h := hooks(); strings.Contains(h, "exfil") {
		t.Errorf("programs still attached after Close:\n%s", h)
	}
	if out, _ := exec.Command("ip", "netns", "exec", tp.gw, "tc", "qdisc", "show", "dev", "gwp").CombinedOutput(); strings.Contains(string(out), "clsact") {
		t.Errorf("clsact qdisc left behind: %s", out)
	}
}

// TestVethLabSideOnly attaches only the phone-facing interface, the
// deployment for NAT gateways (the lab side sees pre-NAT addresses): the
// download direction enters through the unattached uplink and is counted at
// the lab interface's egress, so both directions are counted exactly once.
func TestVethLabSideOnly(t *testing.T) {
	tp := newTopo(t)
	p, err := Load(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := netns.Do(tp.gw, func() error { return p.Attach("gwp") }); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"10.99.2.2", "fd00:99:2::2"} {
		k, fwd, rev := udpExchange(t, tp, tp.phone, dst, []int{10, 300, 1200})
		flows := p.dumpFlows(t)
		for _, e := range []struct {
			k flow.Key
			c counts
		}{{k, fwd}, {k.Reverse(), rev}} {
			v := flows[e.k]
			if v.Packets != e.c.packets || v.Bytes != e.c.bytes || v.IfMask != 1 {
				t.Errorf("%s: packets=%d bytes=%d mask=%#b, want %d %d 0b1", fmtKey(e.k), v.Packets, v.Bytes, v.IfMask, e.c.packets, e.c.bytes)
			}
		}
	}
}
