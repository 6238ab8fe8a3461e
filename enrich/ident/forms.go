package ident

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/url"
	"strings"
)

// Type is an identifier kind. The numeric values are packed into 4 bits of
// an index entry, so there can be at most 16.
type Type uint8

// Identifier types, named as in the inventory YAML and in IdentifierMatch.identifier_type.
const (
	TypeIMEI Type = iota
	TypeIMEISV
	TypeIMSI
	TypeICCID
	TypeMSISDN
	TypeWiFiMAC
	TypeBTMAC
	TypeAndroidID
	TypeAdvertisingID
	TypeSerial
	TypeEmail
	TypeCanary
	TypeBSSID
	TypeSSID
	TypeMEID
	numTypes
)

var typeNames = [numTypes]string{
	"imei", "imeisv", "imsi", "iccid", "msisdn", "wifi_mac", "bt_mac", "android_id",
	"advertising_id", "serial", "email", "canary", "bssid", "ssid", "meid",
}

func (t Type) String() string {
	if t < numTypes {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType maps an inventory key ("imei", "wifi_mac", ...) to its Type.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), true
		}
	}
	return 0, false
}

// TypeNames lists the identifier type names accepted by ParseType.
func TypeNames() []string { return append([]string(nil), typeNames[:]...) }

// A form is (base variant, reversed?, transform), packed in 11 bits:
// base 5 bits, reversed 1 bit, transform 5 bits. Its name is
// "<base>[/reversed][/<transform>]", e.g. "e164-noplus/sha256-base64".
type form uint16

type base uint8

const (
	baseRaw base = iota
	baseDigits
	baseIMEI14
	baseIMEI14Zero
	baseICCIDF
	baseE164
	baseE164NoPlus
	baseNational
	baseNationalTrunk
	baseIntl00
	baseColonLower
	baseColonUpper
	baseDashLower
	baseDashUpper
	baseNoSepLower
	baseNoSepUpper
	baseDotLower
	baseLower
	baseUpper
	baseRawUpper // scan-time only: raw value seen in upper case
	numBases
)

var baseNames = [numBases]string{
	"raw", "digits", "imei14", "imei14-0", "iccid-f", "e164", "e164-noplus", "national",
	"national-trunk", "intl-00", "colon-lower", "colon-upper", "dash-lower", "dash-upper",
	"no-sep-lower", "no-sep-upper", "dot-lower", "lower", "upper", "raw-upper",
}

// upperTwin is the base to report when a case-folded (hex-class) match was
// seen with upper-case letters.
var upperTwin = [numBases]base{
	baseColonLower: baseColonUpper, baseDashLower: baseDashUpper,
	baseNoSepLower: baseNoSepUpper, baseLower: baseUpper, baseRaw: baseRawUpper,
	baseDotLower: baseDotLower,
}

type transform uint8

const (
	tNone transform = iota
	tMD5Hex
	tMD5HexUpper
	tMD5B64
	tMD5B64URL
	tSHA1Hex
	tSHA1HexUpper
	tSHA1B64
	tSHA1B64URL
	tSHA256Hex
	tSHA256HexUpper
	tSHA256B64
	tSHA256B64URL
	tSHA512Hex
	tSHA512HexUpper
	tSHA512B64
	tSHA512B64URL
	tB64
	tB64NoPad
	tB64URL
	tB64URLNoPad
	tURLEnc
	tHex
	tHexUpper
	numTransforms
)

var transformNames = [numTransforms]string{
	"", "md5-hex-lower", "md5-hex-upper", "md5-base64", "md5-base64-url-nopad",
	"sha1-hex-lower", "sha1-hex-upper", "sha1-base64", "sha1-base64-url-nopad",
	"sha256-hex-lower", "sha256-hex-upper", "sha256-base64", "sha256-base64-url-nopad",
	"sha512-hex-lower", "sha512-hex-upper", "sha512-base64", "sha512-base64-url-nopad",
	"base64", "base64-nopad", "base64-url", "base64-url-nopad", "urlenc", "hex", "hex-upper",
}

func mkForm(b base, rev bool, t transform) form {
	f := form(b)<<6 | form(t)
	if rev {
		f |= 1 << 5
	}
	return f
}

func (f form) base() base           { return base(f >> 6) }
func (f form) reversed() bool       { return f&(1<<5) != 0 }
func (f form) transform() transform { return transform(f & 31) }

// upper returns the form to report for a case-folded match seen in upper case.
func (f form) upper() form {
	t := f.transform()
	switch t {
	case tMD5Hex, tSHA1Hex, tSHA256Hex, tSHA512Hex, tHex:
		return mkForm(f.base(), f.reversed(), t+1)
	case tNone:
		if u := upperTwin[f.base()]; u != 0 {
			return mkForm(u, f.reversed(), t)
		}
	}
	return f
}

const numForms = 1 << 11

// formNames is precomputed so reporting a match never allocates.
var formNames = func() (n [numForms]string) {
	for b := base(0); b < numBases; b++ {
		for r := 0; r < 2; r++ {
			for t := transform(0); t < numTransforms; t++ {
				s := baseNames[b]
				if r == 1 {
					s += "/reversed"
				}
				if t != tNone {
					s += "/" + transformNames[t]
				}
				n[mkForm(b, r == 1, t)] = s
			}
		}
	}
	return n
}()

func (f form) String() string { return formNames[f] }

// FormNames lists every form name the expansion can produce (for docs/tests).
func FormNames() []string {
	var out []string
	for _, n := range formNames {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// variant is one string an identifier may be sent as, with its form.
// plainOnly marks the reversal of a non-canonical base: it is indexed as
// is, but not hashed or encoded further (see canonicalBase).
type variant struct {
	s         string
	f         form
	plainOnly bool
}

// canonicalBase reports whether base b is a canonical (normalised) shape of
// type t: the reversal of a canonical base gets every transform, like a base
// of its own; the reversal of any other base (separator and case variants,
// imei14, the stored raw value, ...) is indexed only as the plain reversed
// string. This bounds the growth: reversing every variant and hashing and
// encoding each would add about 20 entries per variant.
func canonicalBase(t Type, b base) bool {
	switch t {
	case TypeIMEI, TypeIMEISV, TypeIMSI, TypeICCID:
		return b == baseDigits
	case TypeMSISDN:
		return b == baseE164 || b == baseE164NoPlus
	case TypeCanary:
		return b == baseE164 || b == baseE164NoPlus || b == baseRaw
	case TypeWiFiMAC, TypeBTMAC, TypeBSSID:
		return b == baseColonLower
	case TypeAndroidID, TypeAdvertisingID:
		return b == baseLower
	case TypeMEID:
		return b == baseUpper
	case TypeSerial, TypeEmail, TypeSSID:
		return b == baseRaw
	}
	return false
}

// baseVariants returns the per-type normalised shapes of value v (already
// validated by the caller or not: unparseable values fall back to raw).
func baseVariants(t Type, v string) ([]variant, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, fmt.Errorf("empty value")
	}
	var out []variant
	add := func(b base, s string) {
		if s == "" {
			return
		}
		for _, o := range out {
			if o.s == s {
				return
			}
		}
		out = append(out, variant{s: s, f: mkForm(b, false, tNone)})
	}
	switch t {
	case TypeIMEI, TypeIMEISV:
		d, kind, err := NormalizeIMEI(v)
		if d == "" {
			return nil, err
		}
		switch kind {
		case IMEI15:
			add(baseDigits, d)
			add(baseIMEI14, d[:14])
			add(baseIMEI14Zero, d[:14]+"0")
		case IMEI14:
			add(baseIMEI14, d)
			add(baseIMEI14Zero, d+"0")
			add(baseDigits, d+string(LuhnDigit(d)))
		case IMEISV16:
			add(baseDigits, d)
			add(baseIMEI14, d[:14])
		}
	case TypeIMSI:
		d, err := NormalizeIMSI(v)
		if err != nil {
			return nil, err
		}
		add(baseDigits, d)
	case TypeICCID:
		d, err := NormalizeICCID(v)
		if d == "" {
			return nil, err
		}
		add(baseDigits, d)
		add(baseICCIDF, d+"F")
	case TypeMSISDN:
		p, err := ParseE164(v)
		if err != nil {
			return nil, err
		}
		addPhone(add, p)
	case TypeWiFiMAC, TypeBTMAC, TypeBSSID:
		m, err := ParseMAC(v)
		if err != nil {
			return nil, err
		}
		add(baseColonLower, FormatMAC(m, ':', false))
		add(baseColonUpper, FormatMAC(m, ':', true))
		add(baseDashLower, FormatMAC(m, '-', false))
		add(baseDashUpper, FormatMAC(m, '-', true))
		add(baseNoSepLower, FormatMAC(m, 0, false))
		add(baseNoSepUpper, FormatMAC(m, 0, true))
		n := FormatMAC(m, 0, false)
		add(baseDotLower, n[0:4]+"."+n[4:8]+"."+n[8:12])
	case TypeAndroidID:
		h, err := NormalizeHexID(v, 16)
		if err != nil {
			return nil, fmt.Errorf("android_id: %w", err)
		}
		add(baseLower, h)
		add(baseUpper, strings.ToUpper(h))
	case TypeAdvertisingID:
		h, err := NormalizeUUID(v)
		if err != nil {
			return nil, err
		}
		d := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
		add(baseLower, d)
		add(baseUpper, strings.ToUpper(d))
		add(baseNoSepLower, h)
		add(baseNoSepUpper, strings.ToUpper(h))
	case TypeMEID:
		if !isHex(v) || len(v) < 14 || len(v) > 15 {
			return nil, fmt.Errorf("meid: want 14 hex digits")
		}
		// lower first: hex is matched case-insensitively and a match seen in
		// upper case is reported as the upper twin of the first form.
		add(baseLower, strings.ToLower(v[:14]))
		add(baseUpper, strings.ToUpper(v[:14]))
	case TypeSerial, TypeEmail, TypeSSID:
		add(baseRaw, v)
		add(baseLower, strings.ToLower(v))
		if t == TypeSerial {
			add(baseUpper, strings.ToUpper(v))
		}
	case TypeCanary:
		// A canary contact's phone number is matched in all phone shapes.
		if p, err := ParseE164(v); err == nil {
			addPhone(add, p)
		}
		add(baseRaw, v)
	default:
		return nil, fmt.Errorf("unknown identifier type %d", t)
	}
	if t != TypeCanary && t != TypeSerial && t != TypeEmail && t != TypeSSID {
		add(baseRaw, v) // as stored, when it differs from every normalised shape
	}
	// Reversed strings: every base reversed, as a base of its own; only
	// the canonical ones are hashed and encoded (canonicalBase).
	n := len(out)
outer:
	for i := 0; i < n; i++ {
		r := reverse(out[i].s)
		for _, o := range out {
			if o.s == r {
				continue outer // a palindrome, or equal to another shape
			}
		}
		b := out[i].f.base()
		out = append(out, variant{s: r, f: mkForm(b, true, tNone), plainOnly: !canonicalBase(t, b)})
	}
	return out, nil
}

func addPhone(add func(base, string), p Phone) {
	add(baseE164, p.E164())
	add(baseE164NoPlus, p.CountryCode+p.National)
	add(baseIntl00, "00"+p.CountryCode+p.National)
	if p.Trunk != "" {
		add(baseNationalTrunk, p.Trunk+p.National)
	}
	add(baseNational, p.National)
}

// expander turns base variants into every transformed form. It reuses its
// hash states; index building is not a hot path but runs for 10^5-10^6
// identifiers.
type expander struct {
	h   [4]hash.Hash
	sum []byte
}

func newExpander() *expander {
	return &expander{h: [4]hash.Hash{md5.New(), sha1.New(), sha256.New(), sha512.New()}}
}

// expand calls fn for every form of every base variant (reversed bases
// included: their transforms keep the reversed bit). Identical strings from
// different forms are reported once (first form wins).
func (e *expander) expand(vs []variant, fn func(s string, f form)) {
	for _, v := range vs {
		b, rev := v.f.base(), v.f.reversed()
		fn(v.s, v.f)
		if v.plainOnly {
			continue
		}
		for i, h := range e.h {
			h.Reset()
			h.Write([]byte(v.s))
			e.sum = h.Sum(e.sum[:0])
			t0 := transform(1 + 4*i)
			fn(hex.EncodeToString(e.sum), mkForm(b, rev, t0))
			fn(base64.StdEncoding.EncodeToString(e.sum), mkForm(b, rev, t0+2))
			fn(base64.RawURLEncoding.EncodeToString(e.sum), mkForm(b, rev, t0+3))
		}
		raw := []byte(v.s)
		fn(base64.StdEncoding.EncodeToString(raw), mkForm(b, rev, tB64))
		fn(base64.RawStdEncoding.EncodeToString(raw), mkForm(b, rev, tB64NoPad))
		fn(base64.URLEncoding.EncodeToString(raw), mkForm(b, rev, tB64URL))
		fn(base64.RawURLEncoding.EncodeToString(raw), mkForm(b, rev, tB64URLNoPad))
		if u := url.QueryEscape(v.s); u != v.s {
			fn(u, mkForm(b, rev, tURLEnc))
			if p := url.PathEscape(v.s); p != u && p != v.s {
				fn(p, mkForm(b, rev, tURLEnc))
			}
		}
		fn(hex.EncodeToString(raw), mkForm(b, rev, tHex))
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
