package ident

// b64Val maps both base64 alphabets to sextets: '+' and '-' are 62, '/' and
// '_' are 63; 0xff marks bytes outside both alphabets.
var b64Val = func() (t [256]uint8) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") {
		t[c] = uint8(i)
	}
	t['+'], t['-'] = 62, 62
	t['/'], t['_'] = 63, 63
	return t
}()

// b64Flag marks the alphabet-specific characters: 1 standard, 2 URL-safe.
var b64Flag = func() (t [256]uint8) {
	t['+'], t['/'] = 1, 1
	t['-'], t['_'] = 2, 2
	return t
}()

// b64Layer is b64Decode followed by plausibleLayer in one pass that gives
// up as soon as the verdict is known: random tokens (session ids,
// signatures, MACs) are the common case in headers and decode to binary, so
// decoding them whole before counting printable bytes was wasted work.
// It returns exactly what b64Decode(dst, src) returns, and ok equal to
// b64Decode's ok && plausibleLayer(out); when ok is false the contents of
// out are unspecified (it is only reused as a buffer).
//
// plausibleLayer accepts n decoded bytes with at most n/10 non-printable
// ones (printable*10 >= n*9), or anything starting with a gzip or zlib
// header; so decoding stops once more than n/10 non-printable bytes have
// been seen and the first bytes are not a compression header.
func b64Layer(dst, src []byte) ([]byte, bool) {
	for len(src) > 0 && src[len(src)-1] == '=' {
		src = src[:len(src)-1]
	}
	if len(src)%4 == 1 {
		src = src[:len(src)-1]
	}
	n := len(src) / 4 * 3
	switch len(src) % 4 {
	case 2:
		n++
	case 3:
		n += 2
	}
	if n < 4 {
		return dst[:0], false
	}
	if cap(dst) < n {
		dst = make([]byte, 0, n*2)
	}
	dst = dst[:n]
	var flags uint8
	nonPrint, limit := 0, n // limit: non-printable bytes allowed, times 10
	compressed := false
	o := 0
	i := 0
	for ; i+4 <= len(src); i += 4 {
		a, b, c, d := src[i], src[i+1], src[i+2], src[i+3]
		va, vb, vc, vd := b64Val[a], b64Val[b], b64Val[c], b64Val[d]
		if va|vb|vc|vd == 0xff {
			return dst[:0], false
		}
		flags |= b64Flag[a] | b64Flag[b] | b64Flag[c] | b64Flag[d]
		v := uint32(va)<<18 | uint32(vb)<<12 | uint32(vc)<<6 | uint32(vd)
		x, y, z := byte(v>>16), byte(v>>8), byte(v)
		dst[o], dst[o+1], dst[o+2] = x, y, z
		o += 3
		if o == 3 {
			compressed = x == gzipMagic[0] && y == gzipMagic[1] && z == gzipMagic[2] || isZlibHeader(dst[:2])
		}
		nonPrint += nonPrintable[x] + nonPrintable[y] + nonPrintable[z]
		if !compressed && nonPrint*10 > limit {
			return dst[:0], false
		}
	}
	// n >= 4 means at least one full quantum was decoded above, so the
	// compression header test has been made.
	if r := len(src) - i; r > 0 {
		var v uint32
		for k := 0; k < r; k++ {
			c := src[i+k]
			if b64Val[c] == 0xff {
				return dst[:0], false
			}
			flags |= b64Flag[c]
			v |= uint32(b64Val[c]) << (18 - 6*k)
		}
		for k := 0; k < r-1; k++ {
			dst[o] = byte(v >> (16 - 8*k))
			nonPrint += nonPrintable[dst[o]]
			o++
		}
	}
	if flags == 3 { // both alphabets: not one base64 encoding
		return dst[:0], false
	}
	return dst, compressed || nonPrint*10 <= limit
}

// nonPrintable is 1 for bytes plausibleLayer does not count as text.
var nonPrintable = func() (t [256]int) {
	for c := range t {
		if !(c >= 0x20 && c < 0x7f || c == '\n' || c == '\r' || c == '\t') {
			t[c] = 1
		}
	}
	return t
}()

// b64Rejected reports, looking only at the first character of each
// quantum, that b64Layer is sure to refuse the base64 run src: that
// character's sextet is the top six bits of the quantum's first decoded
// byte, which can be text as plausibleLayer counts it only for sextets 2
// and 3 (tab, LF, CR) and 8..31 (0x20..0x7f). So every other lead is a
// non-printable byte, and more of them than plausibleLayer allows refuse
// the run, unless it may be a compressed stream ('H' leads the base64 of
// a gzip header, 'e' that of a zlib one). Random tokens (session ids,
// signatures) are the common base64 runs in headers, and two of three of
// their leads are not text: this refuses them without decoding, in a loop
// without data-dependent branches.
func b64Rejected(src []byte) bool {
	if len(src) == 0 || src[0] == 'H' || src[0] == 'e' {
		return false
	}
	n := len(src)
	for n > 0 && src[n-1] == '=' {
		n--
	}
	dec := n / 4 * 3 // bytes b64Layer decodes
	if r := n % 4; r >= 2 {
		dec += r - 1
	}
	bad := 0
	for i := 0; i+4 <= n; i += 4 {
		bad += int(nonTextLead[src[i]])
	}
	return bad*10 > dec
}

// nonTextLead is 1 for base64 characters whose sextet cannot start a byte
// plausibleLayer counts as text (and 0 for other bytes: b64Layer refuses
// those anyway).
var nonTextLead = func() (t [256]uint8) {
	for c := range t {
		if v := b64Val[c]; v != 0xff && !(v == 2 || v == 3 || v >= 8 && v <= 31) {
			t[c] = 1
		}
	}
	return t
}()
