package ident

import (
	"errors"
	"fmt"
	"strings"
)

// Validation helpers for the identifier kinds a lab inventory holds. They are
// strict about shape (so a typo in the inventory is reported instead of
// silently expanding into forms that never match) and return the canonical
// normalised value used as the seed of the expansion.

// DigitsOnly returns s without any byte that is not an ASCII digit.
func DigitsOnly(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// LuhnValid reports whether the digit string s passes the Luhn (mod 10)
// check used by IMEIs, ICCIDs and payment cards. Non-digits make it false.
func LuhnValid(s string) bool {
	if len(s) == 0 {
		return false
	}
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// LuhnDigit returns the check digit that makes s+digit Luhn-valid.
func LuhnDigit(s string) byte {
	for d := byte('0'); d <= '9'; d++ {
		if LuhnValid(s + string(d)) {
			return d
		}
	}
	return '0'
}

// ErrChecksum is wrapped by validation errors caused only by a bad check digit,
// so callers (the inventory loader) may choose to warn and keep the value.
var ErrChecksum = errors.New("check digit mismatch")

// IMEIKind is what NormalizeIMEI recognised.
type IMEIKind int

const (
	// IMEI14 is TAC+SNR without the check digit (how 3GPP TS 23.003 transmits it).
	IMEI14 IMEIKind = 14
	// IMEI15 is TAC+SNR+Luhn check digit.
	IMEI15 IMEIKind = 15
	// IMEISV16 is TAC+SNR+2-digit software version (no check digit).
	IMEISV16 IMEIKind = 16
)

// NormalizeIMEI strips separators (spaces, '-', '/', '.') and checks length
// (14, 15 or 16 digits) and, for 15 digits, the Luhn check digit. On a bad
// check digit it still returns the digits, with an error wrapping ErrChecksum.
func NormalizeIMEI(s string) (string, IMEIKind, error) {
	d, err := digitsWithSeparators(s, " -/.")
	if err != nil {
		return "", 0, fmt.Errorf("imei %w", err)
	}
	switch len(d) {
	case 14:
		return d, IMEI14, nil
	case 15:
		if !LuhnValid(d) {
			return d, IMEI15, fmt.Errorf("imei: %w (want %c)", ErrChecksum, LuhnDigit(d[:14]))
		}
		return d, IMEI15, nil
	case 16:
		return d, IMEISV16, nil
	}
	return "", 0, fmt.Errorf("imei: want 14, 15 or 16 digits, got %d", len(d))
}

// NormalizeIMSI checks an IMSI: 6 to 15 digits (MCC 3 + MNC 2-3 + MSIN).
func NormalizeIMSI(s string) (string, error) {
	d, err := digitsWithSeparators(s, " -")
	if err != nil {
		return "", fmt.Errorf("imsi %w", err)
	}
	if len(d) < 6 || len(d) > 15 {
		return "", fmt.Errorf("imsi: want 6 to 15 digits, got %d", len(d))
	}
	return d, nil
}

// NormalizeICCID checks an ICCID: 18 to 20 digits, optionally followed by the
// filler 'F' that SIM files carry; a 19/20-digit ICCID whose last digit fails
// Luhn is reported with ErrChecksum (some issuers do not use Luhn).
func NormalizeICCID(s string) (string, error) {
	s = strings.TrimRight(s, "fF")
	d, err := digitsWithSeparators(s, " -")
	if err != nil {
		return "", fmt.Errorf("iccid %w", err)
	}
	if len(d) < 18 || len(d) > 20 {
		return "", fmt.Errorf("iccid: want 18 to 20 digits, got %d", len(d))
	}
	if !LuhnValid(d) {
		return d, fmt.Errorf("iccid: %w", ErrChecksum)
	}
	return d, nil
}

func digitsWithSeparators(s, seps string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case strings.IndexByte(seps, c) >= 0:
		default:
			return "", fmt.Errorf("has an invalid character at offset %d", i)
		}
	}
	return b.String(), nil
}

// ParseMAC parses a 48-bit MAC written with ':' or '-' between octets, Cisco
// dotted (aaaa.bbbb.cccc) or as 12 bare hex digits. It rejects the all-zero
// address and group (multicast, broadcast) addresses, which never identify
// one device.
func ParseMAC(s string) ([6]byte, error) {
	var m [6]byte
	var hexd []byte
	switch {
	case len(s) == 17 && (allSep(s, ':') || allSep(s, '-')):
		for i := 0; i < 6; i++ {
			hexd = append(hexd, s[i*3], s[i*3+1])
		}
	case len(s) == 14 && s[4] == '.' && s[9] == '.':
		hexd = []byte(s[0:4] + s[5:9] + s[10:14])
	case len(s) == 12:
		hexd = []byte(s)
	default:
		return m, fmt.Errorf("mac: want 6 octets as aa:bb:cc:dd:ee:ff, aa-bb-..., aabb.ccdd.eeff or 12 hex digits")
	}
	for i := 0; i < 6; i++ {
		hi, ok1 := unhex(hexd[2*i])
		lo, ok2 := unhex(hexd[2*i+1])
		if !ok1 || !ok2 {
			return m, fmt.Errorf("mac: invalid hex digit")
		}
		m[i] = hi<<4 | lo
	}
	if m == [6]byte{} {
		return m, fmt.Errorf("mac: all-zero address")
	}
	if m[0]&1 != 0 {
		return m, fmt.Errorf("mac: multicast/broadcast address (group bit set)")
	}
	return m, nil
}

func allSep(s string, sep byte) bool {
	for i := 2; i < len(s); i += 3 {
		if s[i] != sep {
			return false
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FormatMAC writes m with sep between octets (0 for none) in lower or upper case.
func FormatMAC(m [6]byte, sep byte, upper bool) string {
	digits := "0123456789abcdef"
	if upper {
		digits = "0123456789ABCDEF"
	}
	b := make([]byte, 0, 17)
	for i, o := range m {
		if i > 0 && sep != 0 {
			b = append(b, sep)
		}
		b = append(b, digits[o>>4], digits[o&15])
	}
	return string(b)
}

// NormalizeUUID accepts a UUID with or without dashes, in any case, and
// returns the 32 lower-case hex digits.
func NormalizeUUID(s string) (string, error) {
	t := strings.ReplaceAll(s, "-", "")
	if len(t) != 32 || (len(s) != 32 && len(s) != 36) {
		return "", fmt.Errorf("uuid: want 32 hex digits (with or without dashes)")
	}
	if len(s) == 36 && (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') {
		return "", fmt.Errorf("uuid: dashes must be at 8-4-4-4-12")
	}
	if !isHex(t) {
		return "", fmt.Errorf("uuid: invalid hex digit")
	}
	return strings.ToLower(t), nil
}

// NormalizeHexID checks an Android ID style value: hex digits of a fixed length.
func NormalizeHexID(s string, n int) (string, error) {
	if len(s) != n || !isHex(s) {
		return "", fmt.Errorf("want %d hex digits", n)
	}
	return strings.ToLower(s), nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if _, ok := unhex(s[i]); !ok {
			return false
		}
	}
	return len(s) > 0
}
