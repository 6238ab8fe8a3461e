package communityid

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

type tuple struct {
	src, dst   netip.Addr
	proto      uint8
	sport, dpt uint16
}

func (tp tuple) hash(h Hasher) string {
	return h.String(tp.src.AsSlice(), tp.dst.AsSlice(), tp.proto, tp.sport, tp.dpt)
}

// randomTuples covers IPv4/IPv6, equal addresses (port ordering), every
// protocol class and ICMP two-way and one-way types.
func randomTuples() []tuple {
	r := rand.New(rand.NewPCG(7, 9))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			b[0], b[1], b[15] = 0x20, 0x01, byte(r.IntN(4))
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(4))})
	}
	protos := []uint8{6, 17, 132, 1, 58, 47, 50}
	icmp4 := []uint16{0, 8, 3, 11, 13, 14, 9, 10, 17, 18, 5}
	icmp6 := []uint16{128, 129, 1, 2, 3, 130, 131, 133, 134, 135, 136, 139, 140, 144, 145, 143}
	var out []tuple
	for i := 0; i < 400; i++ {
		v6 := i%2 == 1
		p := protos[r.IntN(len(protos))]
		if p == 58 && !v6 || p == 1 && v6 {
			p = 6
		}
		tp := tuple{src: addr(v6), dst: addr(v6), proto: p, sport: uint16(r.IntN(3) * 1000), dpt: uint16(r.IntN(3) * 1000)}
		switch p {
		case 1:
			tp.sport, tp.dpt = icmp4[r.IntN(len(icmp4))], uint16(r.IntN(3))
		case 58:
			tp.sport, tp.dpt = icmp6[r.IntN(len(icmp6))], uint16(r.IntN(3))
		}
		out = append(out, tp)
	}
	return out
}

// TestAgainstReference compares with the reference Python implementation
// (PyPI communityid 1.5.0) on random tuples, for seeds 0 and 65535.
func TestAgainstReference(t *testing.T) {
	py := testenv.Tool(t, "python3")
	if err := exec.Command(py, "-c", "import communityid").Run(); err != nil {
		if testenv.Required() {
			t.Fatalf("python package communityid is required (pip install communityid==1.5.0): %v", err)
		}
		t.Skipf("python package communityid not installed: %v", err)
	}
	tuples := randomTuples()
	for _, seed := range []uint16{0, 65535} {
		var in bytes.Buffer
		for _, tp := range tuples {
			fmt.Fprintf(&in, "%d %s %s %d %d\n", tp.proto, tp.src, tp.dst, tp.sport, tp.dpt)
		}
		cmd := exec.Command(py, "-c", `
import sys, communityid
h = communityid.CommunityID(int(sys.argv[1]))
for line in sys.stdin:
    p, s, d, sp, dp = line.split()
    p = int(p)
    t = communityid.FlowTuple(p, s, d, int(sp), int(dp)) if p in (1, 6, 17, 58, 132) else communityid.FlowTuple.make_ip(s, d, p)
    print(h.calc(t))
`, fmt.Sprint(seed))
		cmd.Stdin = &in
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python: %v", err)
		}
		want := strings.Fields(string(out))
		if len(want) != len(tuples) {
			t.Fatalf("%d ids for %d tuples", len(want), len(tuples))
		}
		h := New(seed)
		for i, tp := range tuples {
			if got := tp.hash(h); got != want[i] {
				t.Errorf("seed %d %+v: got %s, reference %s", seed, tp, got, want[i])
			}
		}
	}
}

func TestSpecExampleAndSymmetry(t *testing.T) {
	a, b := netip.MustParseAddr("128.232.110.120"), netip.MustParseAddr("66.35.250.204")
	h := New(0)
	fwd := tuple{a, b, 6, 34855, 80}.hash(h)
	rev := tuple{b, a, 6, 80, 34855}.hash(h)
	if fwd != "1:LQU9qZlK+B5F3KDmev6m5PMibrg=" || rev != fwd {
		t.Errorf("spec example: %s / %s", fwd, rev)
	}
	// Echo request and reply share an ID; a one-way type is not reordered.
	if x, y := (tuple{a, b, 1, 8, 0}).hash(h), (tuple{b, a, 1, 0, 0}).hash(h); x != y {
		t.Errorf("echo request %s != reply %s", x, y)
	}
	if x, y := (tuple{a, b, 1, 3, 1}).hash(h), (tuple{b, a, 1, 3, 1}).hash(h); x == y {
		t.Errorf("one-way ICMP reordered")
	}
}

func TestAppendNoAllocs(t *testing.T) {
	buf := make([]byte, 0, Size)
	src, dst := []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}
	if n := testing.AllocsPerRun(100, func() { buf = New(0).Append(buf[:0], src, dst, 6, 1, 2) }); n != 0 {
		t.Errorf("Append allocates %v", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	buf := make([]byte, 0, Size)
	src, dst := netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()
	h := New(0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = h.Append(buf[:0], src, dst, 6, uint16(i), 443)
	}
}
