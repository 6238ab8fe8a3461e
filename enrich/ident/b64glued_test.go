package ident

import (
	"encoding/base64"
	"testing"
)

// TestB64GluedDigits: a base64 window whose decoded digits continue the
// digits decoded from the neighbouring quantum is a number inside a longer
// number (and is dropped); other neighbours, and neighbours shorter than a
// quantum, are not.
func TestB64GluedDigits(t *testing.T) {
	std, url := base64.StdEncoding, base64.RawURLEncoding
	for _, c := range []struct {
		name      string
		run       string
		off, w    int
		wantGlued bool
	}{
		// "+01" then a 10-digit national number: the window starts at the
		// second quantum.
		{"digit before", std.EncodeToString([]byte("+019812345678")), 4, 14, true},
		{"letter before", std.EncodeToString([]byte("+ab9812345678")), 4, 14, false},
		{"no full quantum before", std.EncodeToString([]byte("9812345678"))[0:14], 0, 14, false},
		// A 9-digit value (12 characters) followed by "0xy" / "xyz".
		{"digit after", std.EncodeToString([]byte("1234567890xy")), 0, 12, true},
		{"letter after", std.EncodeToString([]byte("123456789xyz")), 0, 12, false},
		{"url alphabet, digit after", url.EncodeToString([]byte("123456789\xfb\xff9")), 0, 12, false},
		{"url alphabet, digit before", url.EncodeToString([]byte("\xfb\xef9123456789")), 4, 12, true},
		{"not base64 before", "!!!!" + std.EncodeToString([]byte("123456789")), 4, 12, false},
	} {
		if got := b64GluedDigits([]byte(c.run), c.off, c.w); got != c.wantGlued {
			t.Errorf("%s (%q [%d:%d]): glued %v, want %v", c.name, c.run, c.off, c.off+c.w, got, c.wantGlued)
		}
	}
}
