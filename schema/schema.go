// Package schema holds the versioned record types exchanged between stages
// (generated into schema/flowpb from proto/) and small helpers around them.
package schema

import "net/netip"

// Version is the schema_version written into every record this build produces.
const Version = 1

// AddrBytes returns the 16-byte form used on the wire: IPv6 as is, IPv4 as
// IPv4-mapped IPv6 (::ffff:a.b.c.d), so one column type holds both.
func AddrBytes(a netip.Addr) []byte {
	b := a.As16()
	return b[:]
}

// AppendAddr appends the 16-byte wire form of a to dst, without allocating
// when dst has room.
func AppendAddr(dst []byte, a netip.Addr) []byte {
	b := a.As16()
	return append(dst, b[:]...)
}

// Addr decodes a wire address (16 bytes, or 4 for tolerance) and unmaps
// IPv4-mapped addresses so that callers see 1.2.3.4, not ::ffff:1.2.3.4.
func Addr(b []byte) netip.Addr {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b))
	case 16:
		return netip.AddrFrom16([16]byte(b)).Unmap()
	}
	return netip.Addr{}
}
