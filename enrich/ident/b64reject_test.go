package ident

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

// TestB64RejectedImpliesB64LayerRefuses: b64Rejected may only refuse base64
// runs b64Layer refuses too, including compressed streams (which b64Layer
// accepts whatever their bytes), and it must refuse most encodings of
// random bytes (else it would be a test that cannot fail).
func TestB64RejectedImpliesB64LayerRefuses(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789 =&:/\n\t\r\r\r"[rng.IntN(46)]
		}
		if n > 4 && rng.IntN(2) == 0 {
			b[rng.IntN(n)] = byte(rng.IntN(32)) // a few control bytes: near the limit
		}
		return b
	}
	compress := func(p []byte, gz bool) []byte {
		var buf bytes.Buffer
		if gz {
			w := gzip.NewWriter(&buf)
			w.Write(p)
			w.Close()
		} else {
			w := zlib.NewWriter(&buf)
			w.Write(p)
			w.Close()
		}
		return buf.Bytes()
	}
	encs := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
	randomRejected, randomN := 0, 0
	for k := 0; k < 8000; k++ {
		var plain []byte
		kind := k % 4
		switch kind {
		case 0:
			plain = rnd(3 + rng.IntN(120))
		case 1:
			plain = text(3 + rng.IntN(120))
		case 2:
			plain = compress(rnd(1+rng.IntN(100)), k%8 == 2)
		case 3:
			plain = compress(text(1+rng.IntN(100)), k%8 == 3)
		}
		enc := encs[rng.IntN(len(encs))].EncodeToString(plain)
		if k%16 == 5 && len(enc) > 1 {
			enc = enc[:1+rng.IntN(len(enc)-1)] // truncated runs too
		}
		rej := b64Rejected([]byte(enc))
		_, ok := b64Layer(nil, []byte(enc))
		if rej && ok {
			t.Fatalf("kind %d: b64Rejected refused %q, which b64Layer accepts", kind, enc)
		}
		if kind == 0 && len(enc) >= 16 {
			randomN++
			if rej {
				randomRejected++
			}
		}
	}
	if randomRejected*10 < randomN*8 {
		t.Fatalf("b64Rejected refused only %d of %d encodings of random bytes", randomRejected, randomN)
	}
}
