package geo

import (
	"net/netip"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// special lists special-purpose address space (IANA IPv4/IPv6 Special-Purpose
// Address Registries, RFC 6890 and successors). More specific entries win, so
// the globally reachable exceptions inside reserved blocks are listed as
// PUBLIC. Geo databases carry no meaningful answer for these ranges, so they
// are classified instead of looked up.
var special = []struct {
	prefix string
	class  flowpb.AddrClass
}{
	// IPv4
	{"0.0.0.0/8", flowpb.AddrClass_ADDR_CLASS_RESERVED},          // "this network", RFC 791; 0.0.0.0 unspecified
	{"10.0.0.0/8", flowpb.AddrClass_ADDR_CLASS_PRIVATE},          // RFC 1918
	{"100.64.0.0/10", flowpb.AddrClass_ADDR_CLASS_PRIVATE},       // RFC 6598 shared address space (CGNAT)
	{"127.0.0.0/8", flowpb.AddrClass_ADDR_CLASS_LOOPBACK},        // RFC 1122
	{"169.254.0.0/16", flowpb.AddrClass_ADDR_CLASS_LINK_LOCAL},   // RFC 3927
	{"172.16.0.0/12", flowpb.AddrClass_ADDR_CLASS_PRIVATE},       // RFC 1918
	{"192.0.0.0/24", flowpb.AddrClass_ADDR_CLASS_RESERVED},       // RFC 6890 IETF protocol assignments
	{"192.0.0.9/32", flowpb.AddrClass_ADDR_CLASS_PUBLIC},         // PCP anycast, globally reachable (RFC 7723)
	{"192.0.0.10/32", flowpb.AddrClass_ADDR_CLASS_PUBLIC},        // TURN anycast, globally reachable (RFC 8155)
	{"192.0.2.0/24", flowpb.AddrClass_ADDR_CLASS_RESERVED},       // RFC 5737 TEST-NET-1
	{"192.88.99.0/24", flowpb.AddrClass_ADDR_CLASS_RESERVED},     // RFC 7526 deprecated 6to4 relay anycast
	{"192.168.0.0/16", flowpb.AddrClass_ADDR_CLASS_PRIVATE},      // RFC 1918
	{"198.18.0.0/15", flowpb.AddrClass_ADDR_CLASS_RESERVED},      // RFC 2544 benchmarking
	{"198.51.100.0/24", flowpb.AddrClass_ADDR_CLASS_RESERVED},    // RFC 5737 TEST-NET-2
	{"203.0.113.0/24", flowpb.AddrClass_ADDR_CLASS_RESERVED},     // RFC 5737 TEST-NET-3
	{"224.0.0.0/4", flowpb.AddrClass_ADDR_CLASS_MULTICAST},       // RFC 5771
	{"240.0.0.0/4", flowpb.AddrClass_ADDR_CLASS_RESERVED},        // RFC 1112 future use
	{"255.255.255.255/32", flowpb.AddrClass_ADDR_CLASS_RESERVED}, // limited broadcast, RFC 919

	// IPv6. Outside 2000::/3 everything not listed is unassigned ("reserved by
	// IETF" in the IPv6 Address Space registry).
	{"::/0", flowpb.AddrClass_ADDR_CLASS_RESERVED},
	{"2000::/3", flowpb.AddrClass_ADDR_CLASS_PUBLIC},
	{"::1/128", flowpb.AddrClass_ADDR_CLASS_LOOPBACK},       // RFC 4291
	{"100::/64", flowpb.AddrClass_ADDR_CLASS_RESERVED},      // RFC 6666 discard-only
	{"64:ff9b:1::/48", flowpb.AddrClass_ADDR_CLASS_PRIVATE}, // RFC 8215 local-use IPv4/IPv6 translation
	{"2001::/23", flowpb.AddrClass_ADDR_CLASS_RESERVED},     // RFC 2928 IETF protocol assignments
	{"2001::/32", flowpb.AddrClass_ADDR_CLASS_PUBLIC},       // RFC 4380 Teredo, globally reachable
	{"2001:1::1/128", flowpb.AddrClass_ADDR_CLASS_PUBLIC},   // RFC 7723 PCP anycast
	{"2001:1::2/128", flowpb.AddrClass_ADDR_CLASS_PUBLIC},   // RFC 8155 TURN anycast
	{"2001:1::3/128", flowpb.AddrClass_ADDR_CLASS_PUBLIC},   // RFC 9374 DNS-SD SRP anycast
	{"2001:3::/32", flowpb.AddrClass_ADDR_CLASS_PUBLIC},     // RFC 7450 AMT
	{"2001:4:112::/48", flowpb.AddrClass_ADDR_CLASS_PUBLIC}, // RFC 7535 AS112-v6
	{"2001:20::/28", flowpb.AddrClass_ADDR_CLASS_PUBLIC},    // RFC 7343 ORCHIDv2
	{"2001:30::/28", flowpb.AddrClass_ADDR_CLASS_PUBLIC},    // RFC 9374 DRIP DETs
	{"2001:db8::/32", flowpb.AddrClass_ADDR_CLASS_RESERVED}, // RFC 3849 documentation
	{"3fff::/20", flowpb.AddrClass_ADDR_CLASS_RESERVED},     // RFC 9637 documentation
	{"fc00::/7", flowpb.AddrClass_ADDR_CLASS_PRIVATE},       // RFC 4193 unique local
	{"fe80::/10", flowpb.AddrClass_ADDR_CLASS_LINK_LOCAL},   // RFC 4291
	{"ff00::/8", flowpb.AddrClass_ADDR_CLASS_MULTICAST},     // RFC 4291
	{"64:ff9b::/96", flowpb.AddrClass_ADDR_CLASS_PUBLIC},    // RFC 6052 NAT64 well-known prefix (globally reachable)
	{"2002::/16", flowpb.AddrClass_ADDR_CLASS_PUBLIC},       // RFC 3056 6to4
	{"5f00::/16", flowpb.AddrClass_ADDR_CLASS_RESERVED},     // RFC 9602 SRv6 SIDs
}

// classTables flattens special space plus the configured lab subnets (which
// override it) into one flat table per family: starts (IPv4 in the low 32
// bits) and the class from each start on. Open folds them into the geo
// tables, so a lookup finds the class and the answer with one search.
func classTables(lab []netip.Prefix) (st4 []u128, c4 []uint32, st6 []u128, c6 []uint32) {
	var sp4, sp6, lab4, lab6 []span
	add := func(v4, v6 *[]span, p netip.Prefix, c flowpb.AddrClass) {
		f, l := prefixSpan(p)
		if p.Addr().Is4() {
			*v4 = append(*v4, span{f, l, uint32(c)})
		} else {
			*v6 = append(*v6, span{f, l, uint32(c)})
		}
	}
	for _, s := range special {
		add(&sp4, &sp6, netip.MustParsePrefix(s.prefix), s.class)
	}
	for _, p := range lab {
		add(&lab4, &lab6, p, flowpb.AddrClass_ADDR_CLASS_LAB)
	}
	// Longer prefixes are listed after shorter ones they nest in, and
	// normalize lets the later-starting or shorter span win, i.e. the most
	// specific entry. Unlisted space is PUBLIC.
	top := func(ids []uint32) uint32 {
		for i := len(ids) - 1; i >= 0; i-- {
			if ids[i] != 0 {
				return ids[i]
			}
		}
		return uint32(flowpb.AddrClass_ADDR_CLASS_PUBLIC)
	}
	st4, c4 = merge([][]span{normalize(sp4), normalize(lab4)}, max32, top)
	st6, c6 = merge([][]span{normalize(sp6), normalize(lab6)}, max128, top)
	return st4, c4, st6, c6
}
