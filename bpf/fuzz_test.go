package bpf

import (
	"testing"
)

// FuzzProgIngress is a differential fuzz target: every frame goes through
// the ingress program and the pure-Go decoder, and crossCheck reports any
// disagreement (rejection class, key, bytes, flags, fragment, MAC, payload).
// It also fails if the program accounts for a frame under anything but
// exactly one terminal counter. Seeds: testdata/fuzz and the crafted cases.
func FuzzProgIngress(f *testing.F) {
	for _, c := range runCases() {
		for _, p := range c.pkts {
			f.Add(p)
		}
	}
	p := crossProbe(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 3000 {
			return // beyond BPF_PROG_TEST_RUN's frame size
		}
		crossCheck(t, p, frame)
	})
}
