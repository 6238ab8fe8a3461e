package strarena

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
)

// TestStringsStayIntact: strings carved early keep their contents while the
// arena goes through many slabs, the source buffer is overwritten and the
// garbage collector runs.
func TestStringsStayIntact(t *testing.T) {
	a := New(256)
	buf := make([]byte, 0, 64)
	type kept struct{ s, want string }
	var keep []kept
	total := 0
	for i := 0; i < 100_000; i++ {
		buf = strconv.AppendInt(append(buf[:0], "id-"...), int64(i), 10)
		s := a.String(buf)
		total += len(buf)
		if s != string(buf) {
			t.Fatalf("carved %q from %q", s, buf)
		}
		if i%9973 == 0 {
			keep = append(keep, kept{s, string(buf)})
		}
		clear(buf[:cap(buf)]) // the arena must not alias its input
		if i%25_000 == 0 {
			runtime.GC()
		}
	}
	for _, k := range keep {
		if k.s != k.want {
			t.Fatalf("retained string changed: %q, want %q", k.s, k.want)
		}
	}
	if a.Slabs < total/256 {
		t.Fatalf("%d slabs for %d bytes of strings: slabs are being reused", a.Slabs, total)
	}
}

func TestLongAndEmpty(t *testing.T) {
	a := New(64)
	if a.String(nil) != "" || a.String([]byte{}) != "" || a.Slabs != 0 {
		t.Fatal("empty strings must not take a slab")
	}
	long := make([]byte, 17) // > 64/4: allocated on its own
	for i := range long {
		long[i] = 'a' + byte(i)
	}
	if s := a.String(long); s != string(long) || a.Slabs != 0 {
		t.Fatalf("long string %q (slabs %d)", s, a.Slabs)
	}
	var z Arena // zero value: SlabSize slabs
	if s := z.String([]byte("x")); s != "x" || z.Slabs != 1 || cap(z.slab) != SlabSize {
		t.Fatalf("zero arena: %q, %d slabs of %d", s, z.Slabs, cap(z.slab))
	}
}

// TestAllocsAmortised: steady state allocates one slab per SlabSize bytes
// carved, i.e. rounds to 0 allocations per string.
func TestAllocsAmortised(t *testing.T) {
	var a Arena
	b := []byte("0123456789abcdef0123456789abcdef") // 32 bytes, like a record id
	const perRun = 1000
	n := testing.AllocsPerRun(20, func() {
		for i := 0; i < perRun; i++ {
			_ = a.String(b)
		}
	})
	if limit := float64(perRun*len(b)/SlabSize + 1); n > limit {
		t.Fatalf("%v allocations per %d strings, want at most %v (one per slab)", n, perRun, limit)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = a.String(b) }); n != 0 {
		t.Fatalf("%v allocations per string", n)
	}
}

// BenchmarkSlabSize: the cost per 32-byte string against the slab size (the
// memory one retained string can pin); "alloc" is a plain string(b).
func BenchmarkSlabSize(b *testing.B) {
	src := []byte("0123456789abcdef0123456789abcdef")
	b.Run("alloc", func(b *testing.B) {
		b.ReportAllocs()
		var s string
		for b.Loop() {
			s = string(src)
		}
		_ = s
	})
	for _, size := range []int{256, 1024, 4096, 16384} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			a := New(size)
			b.ReportAllocs()
			var s string
			for b.Loop() {
				s = a.String(src)
			}
			_ = s
		})
	}
}
