package parse

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// QUIC versions whose Initial protection this package knows (RFC 9000/9001,
// RFC 9369).
const (
	quicV1 = 0x00000001
	quicV2 = 0x6b3343cf
)

var (
	quicV1Salt = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	quicV2Salt = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}

	// HkdfLabel structures (RFC 8446 §7.1, empty context) are constant, so
	// they are built once rather than per packet.
	infoClientIn = hkdfLabel("client in", 32)
	infoV1Key    = hkdfLabel("quic key", 16)
	infoV1IV     = hkdfLabel("quic iv", 12)
	infoV1HP     = hkdfLabel("quic hp", 16)
	infoV2Key    = hkdfLabel("quicv2 key", 16)
	infoV2IV     = hkdfLabel("quicv2 iv", 12)
	infoV2HP     = hkdfLabel("quicv2 hp", 16)
)

var (
	errQUICShort     = fmt.Errorf("quic: long header: %w", ErrTruncated)
	errQUICNotLong   = fmt.Errorf("quic: not a long-header packet: %w", ErrNotThisProtocol)
	errQUICVersion   = fmt.Errorf("quic: version: %w", ErrUnsupported)
	errQUICNotInit   = fmt.Errorf("quic: no Initial packet: %w", ErrNotThisProtocol)
	errQUICCID       = fmt.Errorf("quic: connection ID longer than 20 bytes: %w", ErrMalformed)
	errQUICSample    = fmt.Errorf("quic: packet too short for header protection sample: %w", ErrTruncated)
	errQUICAEAD      = fmt.Errorf("quic: Initial payload: %w", ErrDecrypt)
	errQUICReserved  = fmt.Errorf("quic: cut Initial: reserved header bits set after unmasking: %w", ErrDecrypt)
	errQUICFrame     = fmt.Errorf("quic: frame not allowed in Initial: %w", ErrMalformed)
	errQUICFrameCut  = fmt.Errorf("quic: frame: %w", ErrTruncated)
	errQUICNoCrypto  = fmt.Errorf("quic: no CRYPTO data at offset 0: %w", ErrTruncated)
	errQUICTooMany   = fmt.Errorf("quic: too many CRYPTO fragments: %w", ErrUnsupported)
	errQUICKeyDerive = fmt.Errorf("quic: key derivation: %w", ErrMalformed)
)

// hkdfLabel builds the info argument of HKDF-Expand-Label with "tls13 "
// prefix and empty context.
func hkdfLabel(label string, length int) string {
	full := "tls13 " + label
	b := []byte{byte(length >> 8), byte(length), byte(len(full))}
	b = append(b, full...)
	b = append(b, 0)
	return string(b)
}

// initialKeys are the client Initial packet protection keys of one
// connection (RFC 9001 §5.2).
type initialKeys struct {
	version uint32
	dcid    [20]byte
	dcidLen int
	key     [16]byte
	iv      [12]byte
	hpKey   [16]byte
	block   cipher.Block // AES-128 with key, for GCM and the CTR fallback
	hp      cipher.Block // AES-128 with hpKey
	aead    cipher.AEAD
}

// deriveClientInitial derives the client Initial keys from the Destination
// Connection ID of the client's first Initial packet.
func deriveClientInitial(version uint32, dcid []byte, k *initialKeys) error {
	salt, infoKey, infoIV, infoHP := quicV1Salt, infoV1Key, infoV1IV, infoV1HP
	if version == quicV2 {
		salt, infoKey, infoIV, infoHP = quicV2Salt, infoV2Key, infoV2IV, infoV2HP
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	client, err := hkdf.Expand(sha256.New, initial, infoClientIn, 32)
	if err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	key, err := hkdf.Expand(sha256.New, client, infoKey, 16)
	if err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	iv, err := hkdf.Expand(sha256.New, client, infoIV, 12)
	if err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	hp, err := hkdf.Expand(sha256.New, client, infoHP, 16)
	if err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	k.version = version
	k.dcidLen = copy(k.dcid[:], dcid)
	copy(k.key[:], key)
	copy(k.iv[:], iv)
	copy(k.hpKey[:], hp)
	if k.block, err = aes.NewCipher(k.key[:]); err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	if k.hp, err = aes.NewCipher(k.hpKey[:]); err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	if k.aead, err = cipher.NewGCM(k.block); err != nil {
		return fmt.Errorf("%w: %w", errQUICKeyDerive, err)
	}
	return nil
}

// scratch is per-call working memory, pooled so that steady-state parsing
// does not allocate: decrypted packets, reassembled CRYPTO data and TCP
// streams.
type scratch struct {
	pkt     []byte
	stream  []byte // client TCP stream
	stream2 []byte // server TCP stream (DNS over TCP responses)
	asm     [maxClientHello]byte
	ranges  [64][2]int
	nr      int
	keys    initialKeys
	mask    [16]byte // header protection mask, kept here so it does not escape per call
	nonce   [12]byte
	ctr     [16]byte
	ok      bool // keys hold a derivation
	quic    bool // at least one Initial was decrypted
	authed  bool // at least one Initial passed AEAD authentication
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch {
	s := scratchPool.Get().(*scratch)
	s.nr, s.quic, s.authed = 0, false, false
	return s
}

func putScratch(s *scratch) {
	if cap(s.pkt) > 1<<16 || cap(s.stream) > maxStream*2 || cap(s.stream2) > maxStream*2 {
		s.pkt, s.stream, s.stream2 = nil, nil, nil
	}
	scratchPool.Put(s)
}

// QUICInitial decodes the ClientHello carried in the client Initial
// packet(s) of one UDP datagram (coalesced packets included) into out and
// sets out.Quic. Keys come from the Destination Connection ID (QUIC v1 and
// v2). A datagram cut short by the capture is decrypted without
// authentication as far as it goes (AES-GCM is CTR mode underneath), so a
// truncated snippet still yields the SNI when its bytes are present.
func QUICInitial(b []byte, out *flowpb.TLSInfo) error {
	s := getScratch()
	defer putScratch(s)
	if err := s.quicDatagram(b, true); err != nil {
		return err
	}
	return s.quicFinish(out)
}

// looksLikeQUICInitial is Fill's cheap content test: a long header of a
// version we can decrypt.
func looksLikeQUICInitial(b []byte) bool {
	if len(b) < 7 || b[0]&0xc0 != 0xc0 {
		return false
	}
	v := uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	return v == quicV1 && b[0]>>4&3 == 0 || v == quicV2 && b[0]>>4&3 == 1
}

// quicDatagram walks the long-header packets of one datagram, decrypting
// client Initials and collecting their CRYPTO frames. With first set, an
// error on the first packet is returned; later problems end the walk quietly
// (trailing 0-RTT data, padding datagrams, etc.).
func (s *scratch) quicDatagram(b []byte, first bool) error {
	if len(b) == 0 && first {
		return errQUICShort
	}
	seen := false
	for len(b) > 0 {
		n, initial, err := s.quicPacket(b)
		if err != nil {
			if first && !seen {
				return err
			}
			return nil
		}
		seen = seen || initial
		b = b[n:]
	}
	if first && !seen {
		return errQUICNotInit
	}
	return nil
}

// quicPacket processes one long-header packet at the start of b and returns
// its length and whether it was a client Initial.
func (s *scratch) quicPacket(b []byte) (int, bool, error) {
	if len(b) < 7 {
		return 0, false, errQUICShort
	}
	if b[0]&0x80 == 0 {
		return 0, false, errQUICNotLong
	}
	version := uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	var typ byte
	switch version {
	case quicV1:
		typ = b[0] >> 4 & 3
	case quicV2:
		typ = (b[0]>>4&3 + 3) & 3 // v2 rotates the type codes: Initial=1 -> 0
	default:
		return 0, false, errQUICVersion
	}
	if typ == 3 { // Retry: no Length field, nothing for us
		return 0, false, errQUICNotInit
	}
	p := 5
	dcidLen := int(b[p])
	if dcidLen > 20 {
		return 0, false, errQUICCID
	}
	p++
	if p+dcidLen+1 > len(b) {
		return 0, false, errQUICShort
	}
	dcid := b[p : p+dcidLen]
	p += dcidLen
	scidLen := int(b[p])
	if scidLen > 20 {
		return 0, false, errQUICCID
	}
	p += 1 + scidLen
	if typ == 0 {
		tokLen, n := varint(b[min(p, len(b)):])
		if n == 0 {
			return 0, false, errQUICShort
		}
		p += n
		if tokLen > uint64(len(b)-p) {
			return 0, false, errQUICShort
		}
		p += int(tokLen)
	}
	if p > len(b) {
		return 0, false, errQUICShort
	}
	length, n := varint(b[p:])
	if n == 0 {
		return 0, false, errQUICShort
	}
	pnOff := p + n
	end := len(b)
	complete := false
	if length <= uint64(len(b)-pnOff) {
		end = pnOff + int(length)
		complete = true
	}
	if typ != 0 {
		return end, false, nil // 0-RTT or Handshake: skip
	}
	if err := s.initial(b[:end], dcid, version, pnOff, complete); err != nil {
		return 0, false, err
	}
	return end, true, nil
}

// initial removes header protection from and decrypts one client Initial
// packet (pkt ends at the packet's end, or where the capture cut it), then
// walks its frames.
func (s *scratch) initial(pkt, dcid []byte, version uint32, pnOff int, complete bool) error {
	if pnOff+4+16 > len(pkt) {
		return errQUICSample
	}
	k := &s.keys
	sameCID := s.ok && k.version == version && string(k.dcid[:k.dcidLen]) == string(dcid)
	if !sameCID && (!s.quic || k.version != version) {
		// Keys derive from the DCID of the client's first Initial; later
		// client Initials (after the server chose a CID) keep them. The
		// cache survives across calls, so a refill of the same flow
		// does not derive again.
		s.ok = false
		if err := deriveClientInitial(version, dcid, k); err != nil {
			return err
		}
		s.ok = true
	}
	err := s.decryptInitial(pkt, pnOff, complete)
	if err == errQUICAEAD && string(k.dcid[:k.dcidLen]) != string(dcid) {
		// Maybe a new connection (or after Retry): keys from this DCID.
		s.ok = false
		if err := deriveClientInitial(version, dcid, k); err != nil {
			return err
		}
		s.ok = true
		err = s.decryptInitial(pkt, pnOff, complete)
	}
	return err
}

func (s *scratch) decryptInitial(pkt []byte, pnOff int, complete bool) error {
	k := &s.keys
	mask := &s.mask
	k.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	s.pkt = append(s.pkt[:0], pkt...)
	buf := s.pkt
	buf[0] ^= mask[0] & 0x0f
	pnLen := int(buf[0]&3) + 1
	nonce := &s.nonce
	*nonce = k.iv
	for i := 0; i < pnLen; i++ {
		buf[pnOff+i] ^= mask[1+i]
		nonce[12-pnLen+i] ^= buf[pnOff+i]
	}
	hdr := buf[:pnOff+pnLen]
	payload := buf[pnOff+pnLen:]
	var plain []byte
	if complete {
		var err error
		plain, err = k.aead.Open(payload[:0], nonce[:], payload, hdr)
		if err != nil {
			return errQUICAEAD
		}
		s.authed = true
	} else {
		if buf[0]&0x0c != 0 {
			// Reserved bits must be 0 (RFC 9000 §17.2); without an AEAD
			// tag to check, this is the one sanity check on the keys.
			return errQUICReserved
		}
		// Truncated capture: GCM's keystream is AES-CTR from counter 2
		// (NIST SP 800-38D with a 96-bit IV), so the visible prefix can be
		// decrypted, though not authenticated.
		ctr := &s.ctr
		*ctr = [16]byte{}
		copy(ctr[:], nonce[:])
		ctr[15] = 2
		cipher.NewCTR(k.block, ctr[:]).XORKeyStream(payload, payload)
		plain = payload
	}
	s.quic = true
	return s.frames(plain, complete)
}

// frames walks the frames of a decrypted Initial payload. Only the frame
// types RFC 9000 §12.4 allows in Initial packets are understood.
func (s *scratch) frames(p []byte, complete bool) error {
	for len(p) > 0 {
		switch p[0] {
		case 0x00: // PADDING
			i := 1
			for i < len(p) && p[i] == 0 {
				i++
			}
			p = p[i:]
		case 0x01: // PING
			p = p[1:]
		case 0x02, 0x03: // ACK, ACK with ECN counts
			ecn := p[0] == 0x03
			q := p[1:]
			var v [4]uint64
			for i := range v {
				x, n := varint(q)
				if n == 0 {
					return s.cut(complete)
				}
				v[i], q = x, q[n:]
			}
			ranges := v[2]
			if ranges > uint64(len(q)) { // each range takes >= 2 bytes
				return s.cut(complete)
			}
			for i := uint64(0); i < 2*ranges; i++ {
				_, n := varint(q)
				if n == 0 {
					return s.cut(complete)
				}
				q = q[n:]
			}
			if ecn {
				for i := 0; i < 3; i++ {
					_, n := varint(q)
					if n == 0 {
						return s.cut(complete)
					}
					q = q[n:]
				}
			}
			p = q
		case 0x06: // CRYPTO
			q := p[1:]
			off, n := varint(q)
			if n == 0 {
				return s.cut(complete)
			}
			q = q[n:]
			l, n := varint(q)
			if n == 0 {
				return s.cut(complete)
			}
			q = q[n:]
			data := q
			if l <= uint64(len(q)) {
				data = q[:l]
			} else if complete {
				return errQUICFrameCut
			}
			if err := s.crypto(off, data); err != nil {
				return err
			}
			if l > uint64(len(q)) {
				return nil // cut inside this frame
			}
			p = q[l:]
		case 0x1c: // CONNECTION_CLOSE (transport): nothing after matters
			return nil
		default:
			if !complete {
				return nil // probably the cut-off AEAD tag or garbage
			}
			return errQUICFrame
		}
	}
	return nil
}

func (s *scratch) cut(complete bool) error {
	if complete {
		return errQUICFrameCut
	}
	return nil
}

// crypto stores CRYPTO frame data at its stream offset.
func (s *scratch) crypto(off uint64, data []byte) error {
	if off >= maxClientHello {
		return nil // beyond any ClientHello we parse; ignore
	}
	if uint64(len(data)) > maxClientHello-off {
		data = data[:maxClientHello-off]
	}
	if len(data) == 0 {
		return nil
	}
	if s.nr == len(s.ranges) {
		return errQUICTooMany
	}
	o := int(off)
	copy(s.asm[o:], data)
	s.ranges[s.nr] = [2]int{o, o + len(data)}
	s.nr++
	return nil
}

// prefix returns the length of CRYPTO data contiguous from offset 0.
func (s *scratch) prefix() int {
	end := 0
	for changed := true; changed; {
		changed = false
		for _, r := range s.ranges[:s.nr] {
			if r[0] <= end && r[1] > end {
				end, changed = r[1], true
			}
		}
	}
	return end
}

// quicFinish parses the ClientHello from the reassembled CRYPTO data.
func (s *scratch) quicFinish(out *flowpb.TLSInfo) error {
	if !s.quic {
		return errQUICNotInit
	}
	out.Quic = true
	n := s.prefix()
	if n == 0 {
		return errQUICNoCrypto
	}
	return clientHelloMsg(s.asm[:n], out)
}

// varint decodes a QUIC variable-length integer (RFC 9000 §16); n is 0 when
// b is too short.
func varint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}
