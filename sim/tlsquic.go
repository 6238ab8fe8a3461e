package sim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// clientHello returns a TLS ClientHello record exactly as Go's crypto/tls
// client sends it for serverName and alpn.
func clientHello(serverName string, alpn []string) []byte {
	return hello(&tls.Config{ServerName: serverName, NextProtos: alpn, MinVersion: tls.VersionTLS12})
}

// quicClientHello is a ClientHello small enough for one 1200-byte Initial:
// X25519 only (Go's default post-quantum key share alone is 1.2 KB, and real
// clients then split the hello over two Initials), so every simulated QUIC
// datagram fits a 1500-byte MTU for live replay.
func quicClientHello(serverName string, alpn []string) []byte {
	return hello(&tls.Config{ServerName: serverName, NextProtos: alpn, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}})
}

func hello(cfg *tls.Config) []byte {
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tc := tls.Client(c, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Handshake() // fails when s closes; only its first flight matters
		c.Close()
	}()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		return nil
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(s, body); err != nil {
		return nil
	}
	return append(hdr, body...)
}

var quicV1Salt = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}

func expandLabel(secret []byte, label string, n int) []byte {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(sha256.New, secret, string(info), n)
	if err != nil {
		panic(err)
	}
	return out
}

// quicInitial builds a QUIC v1 client Initial packet (RFC 9000/9001) carrying
// the ClientHello of a TLS record, protected with the Initial keys derived
// from dcid, padded to 1200 bytes as clients must.
func quicInitial(dcid, scid []byte, record []byte) []byte {
	handshake := record[5:] // CRYPTO frames carry handshake messages, not records
	initial, err := hkdf.Extract(sha256.New, dcid, quicV1Salt)
	if err != nil {
		panic(err)
	}
	cs := expandLabel(initial, "client in", 32)
	key, iv, hp := expandLabel(cs, "quic key", 16), expandLabel(cs, "quic iv", 12), expandLabel(cs, "quic hp", 16)

	var payload []byte
	payload = append(payload, 0x06, 0x00) // CRYPTO, offset 0
	payload = appendVarint(payload, uint64(len(handshake)))
	payload = append(payload, handshake...)
	const pnLen = 4
	hdrLen := 1 + 4 + 1 + len(dcid) + 1 + len(scid) + 1 + 2 + pnLen
	if pad := 1200 - hdrLen - len(payload) - 16; pad > 0 {
		payload = append(payload, make([]byte, pad)...)
	}
	hdr := []byte{0xc0 | (pnLen - 1)}
	hdr = binary.BigEndian.AppendUint32(hdr, 1)
	hdr = append(hdr, byte(len(dcid)))
	hdr = append(hdr, dcid...)
	hdr = append(hdr, byte(len(scid)))
	hdr = append(hdr, scid...)
	hdr = append(hdr, 0) // token length
	length := uint64(pnLen + len(payload) + 16)
	hdr = append(hdr, byte(0x40|length>>8), byte(length)) // 2-byte varint
	pnOff := len(hdr)
	hdr = append(hdr, 0, 0, 0, 0) // packet number 0

	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := append([]byte(nil), iv...) // pn 0: iv XOR 0
	pkt := aead.Seal(append([]byte(nil), hdr...), nonce, payload, hdr)

	hpBlock, _ := aes.NewCipher(hp)
	mask := make([]byte, 16)
	hpBlock.Encrypt(mask, pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := 0; i < pnLen; i++ {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(0x40|v>>8), byte(v))
	case v < 1<<30:
		return append(b, byte(0x80|v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, byte(0xc0|v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
