// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * exfilwatch TC flow accounting.
 *
 * One program for TC/TCX ingress and one for egress, attached to every lab
 * interface of the gateway. Each packet is parsed (Ethernet, up to two VLAN
 * tags, IPv4/IPv6 with bounded extension headers, TCP/UDP/ICMP/ICMPv6) into
 * a directional flow key and counted into an LRU hash; the first payload
 * bytes of the first few payload packets of each direction and TCP FIN/RST
 * notifications go to user space through a ring buffer.
 *
 * Counting rules (shared with the pure-Go pcap path, collector/flow):
 *  - bytes are L3 bytes: IPv4 total length or 40 + IPv6 payload length,
 *    unless that field is 0, or smaller than the L3 bytes in the frame while
 *    the frame is larger than a minimum Ethernet frame (super-packets): then
 *    skb->len minus the L2 header.
 *  - non-first fragments count to the L3-only flow (ports 0).
 *  - a packet is counted once per gateway: at the ingress of any attached
 *    interface, and at egress only when it did not enter through an attached
 *    interface (locally originated: ingress_ifindex 0). Every hook sets its
 *    interface bit in if_mask of an existing entry.
 *
 * The programs never drop or modify traffic: they always return
 * TC_ACT_UNSPEC (== TCX_NEXT).
 */
#include "headers/types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_SNIPPET 4096 /* hard cap on snippet_bytes, checked by the loader */
#define MAX_EXT_HDRS 8   /* IPv6 extension headers walked before giving up */
#define MAX_L4_OFF 0x7fff /* bound on header offsets, for the verifier */
#define SLOT_ARRAY 1024  /* if_slots is indexed by ifindex % SLOT_ARRAY */
#define MIN_FRAME 60     /* minimum Ethernet frame without FCS */
#define PULL_LEN 256     /* bytes made linear when headers are not */

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ2 0x9100

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

/* Set by the loader before load (rodata). */
volatile const __u32 snippet_packets = 4;
volatile const __u32 snippet_bytes = 1024;

/* Directional flow key; mirrors collector/flow.Key. Ports in host order;
 * for ICMP/ICMPv6 sport is the type and dport the code. */
struct flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 ipver;
	__u8 pad[2];
};

/* Cumulative counters of one direction; mirrors collector/flow.DirStats. */
struct flow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 first_ns; /* bpf_ktime_get_coarse_ns, converted by user space */
	__u64 last_ns;
	__u64 if_mask;
	__u32 fragments;
	__u32 tcp_flags;    /* u32 so that it can be OR-ed atomically */
	__u32 payload_pkts; /* payload packets seen, saturates at snippet_packets */
	__u32 seq_base;     /* TCP: sequence number of the first payload byte */
	__u8 src_mac[6];
	__u8 pad[2];
};

struct if_slot {
	__u32 ifindex;
	__u32 slot; /* slot + 1; 0 = unused */
};

enum counter {
	CNT_SEEN = 0,          /* hook invocations */
	CNT_COUNTED,           /* packets added to the flow table */
	CNT_EGRESS_FORWARDED,  /* egress packets already counted at ingress */
	CNT_NON_IP,            /* not IPv4/IPv6 (ARP, LLDP, ...) */
	CNT_ERR_L2_TRUNC,      /* Ethernet/VLAN header truncated */
	CNT_ERR_VLAN_DEPTH,    /* more than two VLAN tags */
	CNT_ERR_L3_TRUNC,      /* IP header or extension headers truncated */
	CNT_ERR_BAD_VERSION,   /* IP version does not match the ethertype */
	CNT_ERR_BAD_IHL,       /* IPv4 IHL < 5 */
	CNT_ERR_BAD_LEN,       /* IP length shorter than its own headers */
	CNT_ERR_L4_TRUNC,      /* transport header cut short of the IP length */
	CNT_ERR_BAD_L4,        /* transport header beyond the IP length, TCP offset < 5 */
	CNT_EXT_HDR_LIMIT,     /* IPv6 chain longer than MAX_EXT_HDRS */
	CNT_FRAGMENTS,         /* IPv4/IPv6 fragments counted */
	CNT_FLOWS_CREATED,     /* new flow entries */
	CNT_INSERT_FAIL,       /* flow entry could not be created: packet lost */
	CNT_RINGBUF_FULL,      /* events dropped because the ring buffer was full */
	CNT_SNIPPETS,          /* snippet events sent */
	CNT_END_EVENTS,        /* FIN/RST events sent */
	CNT_SNIPPET_LOAD_FAIL, /* bpf_skb_load_bytes failed */
	CNT_MAX,
};

enum event_type {
	EV_SNIPPET = 1,
	EV_END = 2,
};

#define EV_F_TRUNCATED 0x01
#define EV_F_RST 0x02

struct event_hdr {
	__u64 ts;
	struct flow_key key;
	__u32 index;
	__u32 offset;
	__u32 len;         /* bytes of data following the header */
	__u32 payload_len; /* payload bytes of the packet */
	__u8 type;
	__u8 flags;
	__u8 pad[6];
};

struct event {
	struct event_hdr h;
	__u8 data[MAX_SNIPPET];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized by the loader */
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOT_ARRAY);
	__type(key, __u32);
	__type(value, struct if_slot);
} if_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");

/* Force the generation of Go types for bpf2go -type. */
const struct event_hdr *unused_event_hdr __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1; /* per-CPU: no atomics needed */
}

/* slot_bit returns the if_mask bit of ifindex, or 0 when it is not attached. */
static __always_inline __u64 slot_bit(__u32 ifindex)
{
	__u32 idx = ifindex % SLOT_ARRAY;
	struct if_slot *s = bpf_map_lookup_elem(&if_slots, &idx);
	if (!s || s->ifindex != ifindex || s->slot == 0 || s->slot > 64)
		return 0;
	return 1ULL << ((s->slot - 1) & 63);
}

/* Extension headers walked: hop-by-hop, routing, destination options,
 * mobility, HIP, shim6 (all "next header, length in 8-octet units"), plus
 * fragment and AH. */
static __always_inline int is_ext_hdr(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH || nh == 135 || nh == 139 || nh == 140;
}

static __always_inline int is_vlan(__u16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	       proto == bpf_htons(ETH_P_QINQ2);
}

#define WALK_OFF_MASK 0xffff
#define WALK_FRAG (1 << 24)
#define WALK_NONFIRST (1 << 25)

/*
 * ipv6_ext_walk walks up to MAX_EXT_HDRS IPv6 extension headers starting at
 * l4off with next-header nh. It is a global (separately verified) function:
 * inlined, the verifier explored every header count times every later path
 * (225k instructions); as a call, the caller sees one unknown result, which
 * keeps verification ~10x cheaper. Only packets with extension headers pay
 * the call. Returns l4off | nh << 16 | WALK_* flags, or -counter on error.
 */
__attribute__((noinline)) int ipv6_ext_walk(struct __sk_buff *skb, __u32 l4off, __u32 nh)
{
	__u32 flags = 0;
	__u8 h[4];

	for (int i = 0; i < MAX_EXT_HDRS; i++) {
		if (!is_ext_hdr(nh))
			return l4off | (nh << 16) | flags;
		if (l4off > MAX_L4_OFF)
			return -CNT_ERR_L3_TRUNC;
		/* every extension header is at least 8 bytes long */
		if (l4off + 8 > skb->len || bpf_skb_load_bytes(skb, l4off, h, sizeof(h)) < 0)
			return -CNT_ERR_L3_TRUNC;
		if (nh == IPPROTO_FRAGMENT) {
			flags |= WALK_FRAG;
			l4off += 8;
			nh = h[0];
			if (((__u32)h[2] << 8 | h[3]) & 0xfff8)
				return l4off | (nh << 16) | flags | WALK_NONFIRST;
			continue;
		}
		if (nh == IPPROTO_AH)
			l4off += ((__u32)h[1] + 2) * 4;
		else
			l4off += ((__u32)h[1] + 1) * 8;
		nh = h[0];
	}
	if (is_ext_hdr(nh))
		return -CNT_EXT_HDR_LIMIT; /* still one after MAX_EXT_HDRS */
	return l4off | (nh << 16) | flags;
}

struct pkt {
	struct flow_key key;
	__u64 bytes;       /* counted L3 bytes */
	__u32 payload_off; /* offset of the transport payload */
	__u32 payload_len; /* payload bytes per the counted L3 length */
	__u32 seq;
	__u8 tcp_flags;
	__u8 frag;
	__u8 mac[6];
};

static __always_inline void set_mapped_v4(__u8 *dst, __u32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

/* l3_bytes applies the counting rule for the IP length field. */
static __always_inline __u64 l3_bytes(__u32 declared, __u32 frame_l3, __u32 skb_len)
{
	if (declared == 0 || (declared < frame_l3 && skb_len > MIN_FRAME))
		return frame_l3;
	return declared;
}

/*
 * parse fills p from the packet. Returns 0 on success or the counter index of
 * the reason the packet was rejected. The decisions mirror the pcap decoder
 * (collector/decode) so that both paths count the same packets the same way;
 * TestCrossCheckDecoder* and FuzzProgIngress compare them.
 */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 skb_len = skb->len;

	if (data + 14 > end)
		return CNT_ERR_L2_TRUNC;
	__builtin_memcpy(p->mac, data + 6, 6);
	__u16 proto = *(__u16 *)(data + 12);
	__u32 off = 14;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!is_vlan(proto))
			break;
		if (data + off + 4 > end)
			return CNT_ERR_L2_TRUNC;
		proto = *(__u16 *)(data + off + 2);
		off += 4;
	}
	if (is_vlan(proto))
		return CNT_ERR_VLAN_DEPTH;

	__u32 frame_l3 = skb_len > off ? skb_len - off : 0;
	__u32 l4off; /* transport header offset */
	__u8 nh;     /* transport protocol */
	int nonfirst = 0;

	if (proto == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data + off;
		if ((void *)(ip + 20) > end)
			return CNT_ERR_L3_TRUNC;
		if ((ip[0] >> 4) != 4)
			return CNT_ERR_BAD_VERSION;
		__u32 ihl = (ip[0] & 0xf) * 4;
		if (ihl < 20)
			return CNT_ERR_BAD_IHL;
		if ((void *)(ip + ihl) > end)
			return CNT_ERR_L3_TRUNC;
		__u32 tot = bpf_ntohs(*(__u16 *)(ip + 2));
		if (tot != 0 && tot < ihl)
			return CNT_ERR_BAD_LEN;
		p->bytes = l3_bytes(tot, frame_l3, skb_len);
		__u16 fo = bpf_ntohs(*(__u16 *)(ip + 6));
		p->frag = (fo & 0x3fff) != 0; /* MF or offset */
		nonfirst = (fo & 0x1fff) != 0;
		nh = ip[9];
		set_mapped_v4(p->key.src, *(__u32 *)(ip + 12));
		set_mapped_v4(p->key.dst, *(__u32 *)(ip + 16));
		p->key.ipver = 4;
		l4off = off + ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip6 = data + off;
		if ((void *)(ip6 + 40) > end)
			return CNT_ERR_L3_TRUNC;
		if ((ip6[0] >> 4) != 6)
			return CNT_ERR_BAD_VERSION;
		__u32 plen = bpf_ntohs(*(__u16 *)(ip6 + 4));
		/* payload length 0: jumbogram / BIG TCP, use the frame length */
		p->bytes = l3_bytes(plen == 0 ? 0 : 40 + plen, frame_l3, skb_len);
		__builtin_memcpy(p->key.src, ip6 + 8, 16);
		__builtin_memcpy(p->key.dst, ip6 + 24, 16);
		p->key.ipver = 6;
		nh = ip6[6];
		l4off = off + 40;

		if (is_ext_hdr(nh)) {
			int r = ipv6_ext_walk(skb, l4off, nh);
			if (r < 0)
				return -r;
			l4off = r & WALK_OFF_MASK;
			nh = (r >> 16) & 0xff;
			if (r & WALK_FRAG)
				p->frag = 1;
			nonfirst = (r & WALK_NONFIRST) != 0;
		}
	} else {
		return CNT_NON_IP;
	}

	p->key.proto = nh;
	/* l3end: end of the L3 packet per the counted length; capend: of the
	 * bytes actually present (link padding stripped) */
	__u32 l3end = off + (__u32)p->bytes;
	__u32 capend = l3end < skb_len ? l3end : skb_len;
	p->payload_off = l3end;
	p->payload_len = 0;
	if (nonfirst)
		return 0; /* L3-only flow, ports 0 */

	__u32 need, hlen;
	switch (nh) {
	case IPPROTO_TCP:
		need = 14; /* ports, seq, data offset, flags */
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		need = 4;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		need = 2;
		break;
	default:
		return 0; /* other protocols: L3-only flow, no payload */
	}
	if (l4off + need > capend) {
		if (l4off + need <= l3end)
			return CNT_ERR_L4_TRUNC; /* IP length beyond the frame */
		if (p->frag)
			return 0; /* tiny first fragment: L3-only flow like the rest */
		return CNT_ERR_BAD_L4;
	}
	if (l4off > MAX_L4_OFF)
		return CNT_ERR_L3_TRUNC;

	__u8 t[14];
	if (data + l4off + sizeof(t) <= end)
		__builtin_memcpy(t, data + l4off, sizeof(t));
	else if (bpf_skb_load_bytes(skb, l4off, t, need) < 0)
		return CNT_ERR_L4_TRUNC;

	if (nh == IPPROTO_TCP) {
		p->key.sport = (__u16)t[0] << 8 | t[1];
		p->key.dport = (__u16)t[2] << 8 | t[3];
		p->seq = (__u32)t[4] << 24 | (__u32)t[5] << 16 | (__u32)t[6] << 8 | t[7];
		hlen = (t[12] >> 4) * 4;
		if (hlen < 20)
			return CNT_ERR_BAD_L4;
		p->tcp_flags = t[13];
	} else if (nh == IPPROTO_ICMP || nh == IPPROTO_ICMPV6) {
		p->key.sport = t[0]; /* type */
		p->key.dport = t[1]; /* code */
		hlen = 8;
	} else {
		p->key.sport = (__u16)t[0] << 8 | t[1];
		p->key.dport = (__u16)t[2] << 8 | t[3];
		hlen = nh == IPPROTO_SCTP ? 12 : 8;
	}
	if (l4off + hlen < l3end) {
		p->payload_off = l4off + hlen;
		p->payload_len = l3end - p->payload_off;
	}
	return 0;
}

static __always_inline void send_snippet(struct __sk_buff *skb, struct pkt *p, __u32 index,
					 __u32 seq_base, __u64 now)
{
	__u32 zero = 0;
	struct event *ev = bpf_map_lookup_elem(&scratch, &zero);
	if (!ev)
		return;
	__u32 avail = skb->len > p->payload_off ? skb->len - p->payload_off : 0;
	__u32 n = p->payload_len < avail ? p->payload_len : avail;
	__u32 cap = snippet_bytes;
	if (n > cap)
		n = cap;
	if (n > MAX_SNIPPET)
		n = MAX_SNIPPET;
	if (n == 0)
		return;
	ev->h.ts = now;
	ev->h.key = p->key;
	ev->h.index = index;
	ev->h.offset = p->key.proto == IPPROTO_TCP ? p->seq - seq_base : 0;
	ev->h.payload_len = p->payload_len;
	ev->h.type = EV_SNIPPET;
	ev->h.flags = n < p->payload_len ? EV_F_TRUNCATED : 0;
	if (bpf_skb_load_bytes(skb, p->payload_off, ev->data, n) < 0) {
		count(CNT_SNIPPET_LOAD_FAIL);
		return;
	}
	ev->h.len = n;
	if (bpf_ringbuf_output(&events, ev, sizeof(struct event_hdr) + n, 0) < 0) {
		count(CNT_RINGBUF_FULL);
		return;
	}
	count(CNT_SNIPPETS);
}

static __always_inline void send_end(struct pkt *p, __u64 now)
{
	struct event_hdr h = {};
	h.ts = now;
	h.key = p->key;
	h.type = EV_END;
	h.flags = (p->tcp_flags & TCP_RST) ? EV_F_RST : 0;
	if (bpf_ringbuf_output(&events, &h, sizeof(h), 0) < 0) {
		count(CNT_RINGBUF_FULL);
		return;
	}
	count(CNT_END_EVENTS);
}

static __always_inline void update(struct flow_stats *v, struct pkt *p, __u64 bit, __u64 now)
{
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, p->bytes);
	v->last_ns = now;
	if (p->tcp_flags & ~v->tcp_flags)
		__sync_fetch_and_or(&v->tcp_flags, (__u32)p->tcp_flags);
	if (p->frag)
		__sync_fetch_and_add(&v->fragments, 1);
	if (bit & ~v->if_mask)
		__sync_fetch_and_or(&v->if_mask, bit);
}

static __always_inline int handle(struct __sk_buff *skb, int egress)
{
	count(CNT_SEEN);

	struct pkt p = {};
	int err = parse(skb, &p);
	if ((err == CNT_ERR_L2_TRUNC || err == CNT_ERR_L3_TRUNC) &&
	    skb->data_end - skb->data < skb->len) {
		/* The L2/L3 headers are cut at the end of the linear area, not
		 * of the packet: make PULL_LEN bytes linear and parse again.
		 * Rare (the stack keeps headers linear), and done lazily:
		 * bpf_skb_pull_data also unclones the skb, which costs a copy
		 * (doing it up front for every GSO packet cut veth TCP
		 * throughput by a quarter). */
		bpf_skb_pull_data(skb, skb->len < PULL_LEN ? skb->len : PULL_LEN);
		__builtin_memset(&p, 0, sizeof(p));
		err = parse(skb, &p);
	}
	if (err) {
		count(err);
		return TC_ACT_UNSPEC;
	}

	__u64 bit = slot_bit(skb->ifindex);
	if (egress) {
		__u32 iif = skb->ingress_ifindex;
		if (iif != 0 && slot_bit(iif) != 0) {
			/* forwarded from an attached interface: counted there */
			struct flow_stats *v = bpf_map_lookup_elem(&flows, &p.key);
			if (v && (bit & ~v->if_mask))
				__sync_fetch_and_or(&v->if_mask, bit);
			count(CNT_EGRESS_FORWARDED);
			return TC_ACT_UNSPEC;
		}
	}

	/* CLOCK_MONOTONIC_COARSE: one tick (1-4 ms) of resolution for a fraction
	 * of the cost of bpf_ktime_get_ns (~30 ns in VMs without a fast TSC). */
	__u64 now = bpf_ktime_get_coarse_ns();
	int has_payload = p.payload_len > 0;
	__u32 index = 0;
	__u32 seq_base;
	int snip = 0;

	struct flow_stats *v = bpf_map_lookup_elem(&flows, &p.key);
	if (!v) {
		struct flow_stats nv = {};
		nv.packets = 1;
		nv.bytes = p.bytes;
		nv.first_ns = now;
		nv.last_ns = now;
		nv.if_mask = bit;
		nv.fragments = p.frag;
		nv.tcp_flags = p.tcp_flags;
		nv.payload_pkts = has_payload;
		nv.seq_base = p.seq + ((p.tcp_flags & TCP_SYN) ? 1 : 0);
		__builtin_memcpy(nv.src_mac, p.mac, 6);
		err = bpf_map_update_elem(&flows, &p.key, &nv, BPF_NOEXIST);
		if (err == 0) {
			count(CNT_FLOWS_CREATED);
			seq_base = nv.seq_base;
			snip = has_payload && snippet_packets > 0;
			goto counted;
		}
		if (err != -EEXIST) {
			count(CNT_INSERT_FAIL);
			return TC_ACT_UNSPEC;
		}
		/* another CPU created it meanwhile */
		v = bpf_map_lookup_elem(&flows, &p.key);
		if (!v) {
			count(CNT_INSERT_FAIL);
			return TC_ACT_UNSPEC;
		}
	}
	update(v, &p, bit, now);
	seq_base = v->seq_base;
	if (has_payload && v->payload_pkts < snippet_packets) {
		index = __sync_fetch_and_add(&v->payload_pkts, 1);
		snip = index < snippet_packets;
	}

counted:
	count(CNT_COUNTED);
	if (p.frag)
		count(CNT_FRAGMENTS);
	if (snip)
		send_snippet(skb, &p, index, seq_base, now);
	if (p.tcp_flags & (TCP_FIN | TCP_RST))
		send_end(&p, now);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int exfil_ingress(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

SEC("tc")
int exfil_egress(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

/* Baseline for benchmarks: the cost of an empty TC program. */
SEC("tc")
int exfil_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
