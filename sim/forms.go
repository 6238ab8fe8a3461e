package sim

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
)

// Form is one way an app dresses an identifier before sending it.
type Form struct {
	Name  string
	Value string
	// DNSSafe: usable as a DNS label / SNI label (letters, digits, '-', <= 63).
	DNSSafe bool
}

// normalised variants of an identifier value as apps commonly send them.
func variants(typ, v string) map[string]string {
	out := map[string]string{"raw": v}
	switch typ {
	case "msisdn":
		out["e164-noplus"] = strings.TrimPrefix(v, "+")
	case "wifi_mac":
		out["mac-nosep"] = strings.ReplaceAll(v, ":", "")
		out["mac-upper"] = strings.ToUpper(v)
		out["mac-dash"] = strings.ReplaceAll(v, ":", "-")
	case "advertising_id":
		out["uuid-nodash"] = strings.ReplaceAll(v, "-", "")
		out["uuid-upper"] = strings.ToUpper(v)
	case "imei":
		out["imei-14"] = v[:14]
		out["imei-14-0"] = v[:14] + "0"
	case "iccid":
		out["iccid-f"] = v + "F"
	}
	return out
}

func dnsSafe(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Forms lists the encodings of an identifier the simulator exercises: the
// normalised variants, hashes (md5/sha1/sha256/sha512 hex lower/upper and
// base64), base64 (std/url, padded or not), URL-encoding, hex of the bytes and
// the reversed string. Names are the simulator's own labels.
func Forms(typ, v string) []Form {
	var out []Form
	add := func(name, val string) {
		out = append(out, Form{Name: name, Value: val, DNSSafe: dnsSafe(val)})
	}
	vs := variants(typ, v)
	for _, name := range sortedKeys(vs) {
		add(name, vs[name])
	}
	raw := []byte(v)
	m5 := md5.Sum(raw)
	s1 := sha1.Sum(raw)
	s256 := sha256.Sum256(raw)
	s512 := sha512.Sum512(raw)
	for _, h := range []struct {
		n string
		b []byte
	}{{"md5", m5[:]}, {"sha1", s1[:]}, {"sha256", s256[:]}, {"sha512", s512[:]}} {
		add(h.n+"-hex-lower", hex.EncodeToString(h.b))
		add(h.n+"-hex-upper", strings.ToUpper(hex.EncodeToString(h.b)))
		add(h.n+"-base64", base64.StdEncoding.EncodeToString(h.b))
	}
	add("base64-std", base64.StdEncoding.EncodeToString(raw))
	add("base64-std-nopad", base64.RawStdEncoding.EncodeToString(raw))
	add("base64-url", base64.URLEncoding.EncodeToString(raw))
	add("base64-url-nopad", base64.RawURLEncoding.EncodeToString(raw))
	add("urlencoded", url.QueryEscape(v))
	add("hex", hex.EncodeToString(raw))
	add("reversed", reverse(v))
	return out
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}
