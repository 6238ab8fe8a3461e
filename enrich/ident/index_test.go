package ident

import "testing"

// TestSecretKeysHashes: the same inventory under two secrets shares no hash,
// so an index (or a dump of it) is useless outside its deployment.
func TestSecretKeysHashes(t *testing.T) {
	ids := []Identifier{{Device: "d", Type: TypeIMEI, Value: "356938035643809"}}
	c1, c2 := DefaultConfig(), DefaultConfig()
	c1.Secret, c2.Secret = "secret-one-0123456789", "secret-two-0123456789"
	i1, _, _ := BuildIndex(c1, ids)
	i2, _, _ := BuildIndex(c2, ids)
	keys := map[uint64]bool{}
	for _, k := range i1.keys {
		if k != 0 {
			keys[k] = true
		}
	}
	if len(keys) == 0 || len(keys) != i2.count {
		t.Fatalf("entries: %d vs %d", len(keys), i2.count)
	}
	for _, k := range i2.keys {
		if k != 0 && keys[k] {
			t.Fatal("a hash is shared between two secrets")
		}
	}
}

// TestFormNamesRoundTrip: every packed form has a distinct name.
func TestFormNamesRoundTrip(t *testing.T) {
	seen := map[string]form{}
	for f, n := range formNames {
		if n == "" {
			continue
		}
		if g, dup := seen[n]; dup {
			t.Fatalf("forms %d and %d both named %s", g, f, n)
		}
		seen[n] = form(f)
	}
	if len(seen) != int(numBases)*2*int(numTransforms) {
		t.Errorf("%d names", len(seen))
	}
	if mkForm(baseColonLower, false, tNone).upper().String() != "colon-upper" ||
		mkForm(baseDigits, false, tSHA1Hex).upper().String() != "digits/sha1-hex-upper" {
		t.Error("upper twins")
	}
}

func TestLiveSwap(t *testing.T) {
	var l Live
	if l.Scanner(nil) != nil {
		t.Fatal("scanner before store")
	}
	c := DefaultConfig()
	c.Secret = "live-secret-0123456789"
	a, _, _ := BuildIndex(c, []Identifier{{Device: "a", Type: TypeIMSI, Value: "404450123456789"}})
	b, _, _ := BuildIndex(c, []Identifier{{Device: "b", Type: TypeIMSI, Value: "404450123456789"}})
	l.Store(a)
	s := l.Scanner(nil)
	if l.Scanner(s) != s {
		t.Error("scanner replaced without a swap")
	}
	l.Store(b)
	s2 := l.Scanner(s)
	if s2 == s || s2.idx != b {
		t.Error("scanner not rebound after swap")
	}
}
