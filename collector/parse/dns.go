package parse

import (
	"fmt"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// DNS record types and class used here.
const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
	dnsClassIN  = 1
	dnsHeader   = 12
)

var (
	errDNSHeader    = fmt.Errorf("dns: header: %w", ErrTruncated)
	errDNSQuestion  = fmt.Errorf("dns: question: %w", ErrTruncated)
	errDNSRecord    = fmt.Errorf("dns: resource record: %w", ErrTruncated)
	errDNSNameTrunc = fmt.Errorf("dns: name: %w", ErrTruncated)
	errDNSLabel     = fmt.Errorf("dns: name: reserved label type: %w", ErrMalformed)
	errDNSPtrLoop   = fmt.Errorf("dns: name: too many compression pointers: %w", ErrMalformed)
	errDNSPtrFwd    = fmt.Errorf("dns: name: compression pointer beyond message: %w", ErrMalformed)
	errDNSNameLong  = fmt.Errorf("dns: name: longer than 255 octets: %w", ErrMalformed)
	errDNSOpcode    = fmt.Errorf("dns: header: not a standard query: %w", ErrNotThisProtocol)
	errDNSTCPLen    = fmt.Errorf("dns: tcp length prefix: %w", ErrTruncated)
)

// DNS decodes one DNS message (a UDP payload) into out.
//
// A query (QR=0) sets QueryName and QueryType. A response (QR=1) sets
// IsResponseSeen, Rcode and Answers (the A/AAAA records of the answer section,
// 16 bytes each, IPv4 mapped, at most MaxDNSAnswers), and the question fields
// too when out has none yet. Fields already in out that the message does not
// speak about are left alone, so a query and its response can be decoded into
// the same DNSInfo in either order.
//
// On a truncated message every complete part is still decoded.
func DNS(msg []byte, out *flowpb.DNSInfo) error {
	if len(msg) < dnsHeader {
		return errDNSHeader
	}
	flags := be16(msg[2:])
	qd, an := be16(msg[4:]), be16(msg[6:])
	response := flags&0x8000 != 0
	if op := flags >> 11 & 0xf; op != 0 && op != 4 && op != 5 { // QUERY, NOTIFY, UPDATE
		return errDNSOpcode
	}
	if response {
		out.IsResponseSeen = true
		out.Rcode = uint32(flags & 0xf)
	}
	off := dnsHeader
	var name [256]byte
	for i := 0; i < qd && i < maxDNSRecords; i++ {
		n, end, err := readName(msg, off, name[:0])
		if err != nil {
			return err
		}
		if end+4 > len(msg) {
			return errDNSQuestion
		}
		if i == 0 && (!response || out.QueryName == "") {
			out.QueryName = safeString(n, out.QueryName)
			out.QueryType = uint32(be16(msg[end:]))
		}
		off = end + 4
	}
	if !response {
		return nil
	}
	out.Answers = out.Answers[:0]
	for i := 0; i < an && i < maxDNSRecords; i++ {
		end, err := skipName(msg, off)
		if err != nil {
			return err
		}
		if end+10 > len(msg) {
			return errDNSRecord
		}
		typ, class, rdlen := be16(msg[end:]), be16(msg[end+2:]), be16(msg[end+8:])
		rd := end + 10
		if rd+rdlen > len(msg) {
			return errDNSRecord
		}
		if class == dnsClassIN && len(out.Answers) < MaxDNSAnswers &&
			(typ == dnsTypeA && rdlen == 4 || typ == dnsTypeAAAA && rdlen == 16) {
			out.Answers = appendAnswer(out.Answers, msg[rd:rd+rdlen])
		}
		off = rd + rdlen
	}
	return nil
}

// DNSTCP decodes a DNS message carried over TCP (RFC 1035 §4.2.2: a two-byte
// length prefix). A message cut short by the snippet is decoded as far as it
// goes and ErrTruncated is reported.
func DNSTCP(b []byte, out *flowpb.DNSInfo) error {
	if len(b) < 2 {
		return errDNSTCPLen
	}
	n := be16(b)
	msg := b[2:]
	if len(msg) > n {
		msg = msg[:n]
	}
	if err := DNS(msg, out); err != nil {
		return err
	}
	if len(msg) < n {
		return errDNSTCPLen
	}
	return nil
}

// appendAnswer appends the 16-byte form of a 4- or 16-byte address, reusing
// the backing array of a previous answer in that slot when there is one.
func appendAnswer(answers [][]byte, rd []byte) [][]byte {
	var slot []byte
	if len(answers) < cap(answers) {
		slot = answers[:len(answers)+1][len(answers)][:0]
	}
	if cap(slot) < 16 {
		slot = make([]byte, 0, 16)
	}
	if len(rd) == 4 {
		slot = append(slot, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff)
	}
	slot = append(slot, rd...)
	return append(answers, slot)
}

// readName decodes the (possibly compressed) domain name at off into dst in
// presentation form: lower case ASCII, labels joined by dots, no trailing
// dot, the root as "". It returns the name and the offset just past the name
// in the original position (after the first pointer, if any).
func readName(msg []byte, off int, dst []byte) ([]byte, int, error) {
	end := -1
	ptrs := 0
	wire := 0 // wire-format length so far, bounded by 255 (RFC 1035 §3.1)
	for {
		if off >= len(msg) {
			return dst, 0, errDNSNameTrunc
		}
		l := int(msg[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if end < 0 {
					end = off + 1
				}
				return dst, end, nil
			}
			if off+1+l > len(msg) {
				return dst, 0, errDNSNameTrunc
			}
			wire += 1 + l
			if wire > 255 {
				return dst, 0, errDNSNameLong
			}
			if len(dst) > 0 {
				dst = append(dst, '.')
			}
			for _, c := range msg[off+1 : off+1+l] {
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				dst = append(dst, c)
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(msg) {
				return dst, 0, errDNSNameTrunc
			}
			if ptrs++; ptrs > maxNamePointers {
				return dst, 0, errDNSPtrLoop
			}
			if end < 0 {
				end = off + 2
			}
			p := be16(msg[off:]) & 0x3fff
			if p >= len(msg) {
				return dst, 0, errDNSPtrFwd
			}
			off = p
		default:
			return dst, 0, errDNSLabel
		}
	}
}

// skipName returns the offset just past the name at off without decoding it.
func skipName(msg []byte, off int) (int, error) {
	for n := 0; n < 128; n++ {
		if off >= len(msg) {
			return 0, errDNSNameTrunc
		}
		l := int(msg[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				return off + 1, nil
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(msg) {
				return 0, errDNSNameTrunc
			}
			return off + 2, nil
		default:
			return 0, errDNSLabel
		}
	}
	return 0, errDNSNameLong
}
