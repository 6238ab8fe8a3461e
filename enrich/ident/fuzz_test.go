package ident

import (
	"testing"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// FuzzScan: arbitrary bytes never panic, work stays within the budgets and
// every reported match is well-formed.
func FuzzScan(f *testing.F) {
	cfg := DefaultConfig()
	cfg.Secret = "fuzz-secret-0123456789"
	idx, _, err := BuildIndex(cfg, []Identifier{
		{Device: "d", Type: TypeIMEI, Value: "865123456789018"},
		{Device: "d", Type: TypeWiFiMAC, Value: "a4:50:46:12:34:56"},
		{Device: "d", Type: TypeMSISDN, Value: "+919812345678"},
		{Device: "d", Type: TypeCanary, Value: "Canary Contact 7"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("id=865123456789018&m=A4-50-46-12-34-56"))
	f.Add([]byte(`{"x":"ODY1MTIzNDU2Nzg5MDE4","y":"\u0041"}`))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3})
	f.Add([]byte("%2B919812345678+Canary+Contact+7"))
	sc := idx.NewScanner()
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		sc.Scan("fuzz", data, true, func(m *flowpb.IdentifierMatch) {
			n++
			if m.DeviceId != "d" || m.Form == "" || m.IdentifierType == "" || m.Layers > maxLayers {
				t.Fatalf("bad match %v", m)
			}
		})
		if sc.budgetBytes < 0 || sc.budgetWin < 0 {
			t.Fatalf("budget overrun: bytes %d windows %d", sc.budgetBytes, sc.budgetWin)
		}
		if n > len(data)*4+64 {
			t.Fatalf("%d matches from %d bytes", n, len(data))
		}
	})
}
