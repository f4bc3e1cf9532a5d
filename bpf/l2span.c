//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// l2span gateway TC programs, attached to the gateway's port toward the
// pod-local segment (a port of the bridge that joins it to the overlay):
//
//   l2s_to_pod      (egress: frames from the overlay, leaving toward the pod)
//                   rewrites a source MAC inside a remote pod's dvr_base_mac
//                   prefix to this gateway's own DVR MAC.
//   l2s_to_overlay  (ingress: frames from the pod, going to the overlay)
//                   drops DHCP, DHCPv6, ARP and IPv6 NS/NA about a gateway IP,
//                   and router advertisements, so they stay in the pod.
//
// Both pass anything they do not understand (truncated, malformed, unknown
// protocols) untouched: they return TC_ACT_UNSPEC ("next program / default"),
// never TC_ACT_OK, so programs attached after them still run.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// Counter indices; keep in step with the action names in counters.go.
enum action {
	ACT_PASSED_TO_OVERLAY = 0,
	ACT_PASSED_TO_POD,
	ACT_REWRITTEN,
	ACT_REWRITE_FAILED,
	ACT_DROPPED_DHCP,
	ACT_DROPPED_DHCPV6,
	ACT_DROPPED_ARP,
	ACT_DROPPED_ND,
	ACT_DROPPED_RA,
	ACT_FENCED,
	ACT_MAX,
};

// dvr_key is an LPM-trie key: the interface index (always matched in full,
// 32 bits) followed by the MAC prefix. prefixlen = 32 + MAC prefix length.
struct dvr_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 mac[6];
} __attribute__((packed));

// dvr_val is the MAC that replaces a matching source MAC: the gateway's own
// DVR MAC.
struct dvr_val {
	__u8 mac[6];
};

// gw_val holds the gateway IPs of one interface: v4[0..n4) and v6[0..n6),
// network byte order. One lookup per ARP/ND frame fetches them all and the
// few addresses are compared inline. Positions inside the bounds that hold
// no address, and all positions past them, are all-ones (255.255.255.255,
// ffff:...:ffff): never an ARP or ND address worth keeping.
//
// The Manager updates an array element in place, so a frame racing an update
// may read a byte-wise mix of the old and new value. It therefore never moves
// an address: one that stays a gateway keeps its position (its bytes do not
// change, it is never missed), a removed one leaves a hole of all-ones, a new
// one fills the first hole. A racing frame sees each position old or new.
#define MAX_GW4 8
#define MAX_GW6 8
struct gw_val {
	__u32 n4;
	__u32 n6;
	__u8 v4[MAX_GW4][4];
	__u8 v6[MAX_GW6][16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dvr_key);
	__type(value, struct dvr_val);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2s_dvr SEC(".maps");

// Gateway IPs by ifindex. Interfaces with ifindex < GW_DIRECT (all of them on
// most hosts) are looked up in an array, which the verifier inlines (a bounds
// check and an address computation, no call, no hash); any higher ifindex in
// a hash map. The zero value (n4 = n6 = 0) means no gateway IPs.
#define GW_DIRECT 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); // ifindex
	__type(value, struct gw_val);
	__uint(max_entries, GW_DIRECT);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2s_gwip SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); // ifindex >= GW_DIRECT
	__type(value, struct gw_val);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2s_gwip_hi SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, ACT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2s_counters SEC(".maps");

// lease is the agent's node-local fencing lease (one element). While armed,
// a gateway whose agent stopped renewing it (dead, hung, or withdrawn on
// purpose) drops every frame between its overlay and its pod at the local
// port: it fails closed, so a standby that took over is the only forwarder.
// Unarmed (a pod with no other gateway), nothing is dropped: a lone gateway
// keeps forwarding while its agent restarts.
struct lease {
	__u64 expires_ns; // CLOCK_MONOTONIC (bpf_ktime_get_ns)
	__u32 armed;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lease);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2s_lease SEC(".maps");

static __always_inline int fenced(void)
{
	__u32 k = 0;
	struct lease *l = bpf_map_lookup_elem(&l2s_lease, &k);
	return l && l->armed && bpf_ktime_get_ns() > l->expires_ns;
}

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct arp_eth_ip4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

#define ICMPV6_RA 134
#define ICMPV6_NS 135
#define ICMPV6_NA 136
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT 4

static __always_inline void count(__u32 act)
{
	__u64 *c = bpf_map_lookup_elem(&l2s_counters, &act);
	if (c)
		*c += 1;
}

// readable makes the first n bytes of the frame directly readable, pulling
// them into the linear part when a driver left them in fragments. It returns
// 0 when the frame is shorter than n (truncated). Only the few frames that
// might be dropped ever get here, so the hot path never pulls.
static __always_inline int readable(struct __sk_buff *skb, __u32 n)
{
	if ((void *)(long)skb->data + n <= (void *)(long)skb->data_end)
		return 1;
	if (skb->len < n)
		return 0;
	return bpf_skb_pull_data(skb, n) == 0;
}

// A call of its own, so that clang cannot merge the two lookups into one call
// site taking either map: the verifier inlines an array lookup only where the
// call site always sees that one array.
static __attribute__((noinline)) const struct gw_val *gateways_hi(__u32 ifindex)
{
	return bpf_map_lookup_elem(&l2s_gwip_hi, &ifindex);
}

static __always_inline const struct gw_val *gateways(__u32 ifindex)
{
	if (ifindex < GW_DIRECT)
		return bpf_map_lookup_elem(&l2s_gwip, &ifindex);
	return gateways_hi(ifindex);
}

// Whether a or b (IPv4, as loaded from the frame) is one of g's gateway IPs.
static __always_inline int is_gateway4(const struct gw_val *g, __u32 a, __u32 b)
{
	__u32 n = g->n4;
#pragma unroll
	for (int i = 0; i < MAX_GW4; i++) {
		if (i >= n)
			break;
		__u32 v = *(const __u32 *)g->v4[i];
		if (v == a || v == b)
			return 1;
	}
	return 0;
}

// Whether the IPv6 address a0:a1 or b0:b1 is one of g's gateway IPs.
static __always_inline int is_gateway6(const struct gw_val *g, __u64 a0,
				       __u64 a1, __u64 b0, __u64 b1)
{
	__u32 n = g->n6;
#pragma unroll
	for (int i = 0; i < MAX_GW6; i++) {
		if (i >= n)
			break;
		const __u64 *v = (const __u64 *)g->v6[i];
		__u64 v0 = v[0], v1 = v[1];
		if ((v0 == a0 && v1 == a1) || (v0 == b0 && v1 == b1))
			return 1;
	}
	return 0;
}

// Bounds-checked pointer to n bytes at off into the frame, or NULL.
#define AT(skb, off, n)                                                        \
	({                                                                     \
		void *__d = (void *)(long)(skb)->data;                         \
		void *__e = (void *)(long)(skb)->data_end;                     \
		void *__p = __d + (off);                                       \
		(__p + (n) > __e) ? NULL : __p;                                \
	})

static __always_inline __u32 classify_arp(struct __sk_buff *skb, __u32 off)
{
	if (!readable(skb, off + sizeof(struct arp_eth_ip4)))
		return ACT_PASSED_TO_OVERLAY;
	struct arp_eth_ip4 *a = AT(skb, off, sizeof(*a));
	if (!a)
		return ACT_PASSED_TO_OVERLAY;
	if (a->htype != bpf_htons(1) || a->ptype != bpf_htons(ETH_P_IP) ||
	    a->hlen != 6 || a->plen != 4)
		return ACT_PASSED_TO_OVERLAY;
	if (a->op != bpf_htons(1) && a->op != bpf_htons(2))
		return ACT_PASSED_TO_OVERLAY;
	// A request or reply for the gateway IP, and also one *from* it: the
	// pod's router asking for a VM would teach that VM (in another pod)
	// this pod's router MAC for its own default gateway.
	const struct gw_val *g = gateways(skb->ifindex);
	if (!g)
		return ACT_PASSED_TO_OVERLAY;
	if (is_gateway4(g, *(__u32 *)a->tpa, *(__u32 *)a->spa))
		return ACT_DROPPED_ARP;
	return ACT_PASSED_TO_OVERLAY;
}

static __always_inline __u32 classify_ipv4(struct __sk_buff *skb, __u32 off)
{
	if (!readable(skb, off + sizeof(struct iphdr)))
		return ACT_PASSED_TO_OVERLAY;
	struct iphdr *ip = AT(skb, off, sizeof(*ip));
	if (!ip)
		return ACT_PASSED_TO_OVERLAY;
	if (ip->version != 4 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x1fff)))
		return ACT_PASSED_TO_OVERLAY;
	__u32 ihl = (ip->ihl & 0xf) * 4;
	if (ihl < sizeof(struct iphdr))
		return ACT_PASSED_TO_OVERLAY;
	__u32 l4 = off + ihl;
	if (!readable(skb, l4 + sizeof(struct udphdr)))
		return ACT_PASSED_TO_OVERLAY;
	struct udphdr *u = AT(skb, l4, sizeof(*u));
	if (!u)
		return ACT_PASSED_TO_OVERLAY;
	if (u->dest == bpf_htons(67) || u->dest == bpf_htons(68))
		return ACT_DROPPED_DHCP;
	return ACT_PASSED_TO_OVERLAY;
}

static __always_inline __u32 classify_ipv6(struct __sk_buff *skb, __u32 off)
{
	if (!readable(skb, off + sizeof(struct ipv6hdr)))
		return ACT_PASSED_TO_OVERLAY;
	struct ipv6hdr *ip6 = AT(skb, off, sizeof(*ip6));
	if (!ip6 || ip6->version != 6)
		return ACT_PASSED_TO_OVERLAY;
	__u8 nh = ip6->nexthdr;
	__u32 l4 = off + sizeof(struct ipv6hdr);

	// Skip the extension headers that may precede UDP or ICMPv6.
#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING &&
		    nh != IPPROTO_DSTOPTS && nh != IPPROTO_FRAGMENT)
			break;
		if (!readable(skb, l4 + 8))
			return ACT_PASSED_TO_OVERLAY;
		__u8 *ext = AT(skb, l4, 8);
		if (!ext)
			return ACT_PASSED_TO_OVERLAY;
		if (nh == IPPROTO_FRAGMENT) {
			// Only the first fragment carries the L4 header.
			if ((ext[2] << 8 | ext[3]) & 0xfff8)
				return ACT_PASSED_TO_OVERLAY;
			nh = ext[0];
			l4 += 8;
		} else {
			nh = ext[0];
			l4 += ((__u32)ext[1] + 1) * 8;
		}
	}

	if (nh == IPPROTO_UDP) {
		if (!readable(skb, l4 + sizeof(struct udphdr)))
			return ACT_PASSED_TO_OVERLAY;
		struct udphdr *u = AT(skb, l4, sizeof(*u));
		if (!u)
			return ACT_PASSED_TO_OVERLAY;
		if (u->dest == bpf_htons(546) || u->dest == bpf_htons(547))
			return ACT_DROPPED_DHCPV6;
		return ACT_PASSED_TO_OVERLAY;
	}
	if (nh != IPPROTO_ICMPV6)
		return ACT_PASSED_TO_OVERLAY;

	// type(1) code(1) csum(2) reserved/flags(4) target(16)
	if (!readable(skb, l4 + 4))
		return ACT_PASSED_TO_OVERLAY;
	__u8 *icmp = AT(skb, l4, 4);
	if (!icmp)
		return ACT_PASSED_TO_OVERLAY;
	__u8 type = icmp[0];
	if (type == ICMPV6_RA)
		return ACT_DROPPED_RA;
	if (type != ICMPV6_NS && type != ICMPV6_NA)
		return ACT_PASSED_TO_OVERLAY;
	if (!readable(skb, l4 + 24))
		return ACT_PASSED_TO_OVERLAY;
	__u64 *target = AT(skb, l4 + 8, 16);
	if (!target)
		return ACT_PASSED_TO_OVERLAY;
	// For the gateway address, or from it: the pod's router resolving a VM
	// (see ARP).
	ip6 = AT(skb, off, sizeof(*ip6));
	if (!ip6)
		return ACT_PASSED_TO_OVERLAY;
	__u64 *saddr = (__u64 *)&ip6->saddr;
	__u64 t0 = target[0], t1 = target[1], s0 = saddr[0], s1 = saddr[1];
	const struct gw_val *g = gateways(skb->ifindex);
	if (g && is_gateway6(g, t0, t1, s0, s1))
		return ACT_DROPPED_ND;
	return ACT_PASSED_TO_OVERLAY;
}

static __always_inline __u32 classify_to_overlay(struct __sk_buff *skb)
{
	struct ethhdr *eth = AT(skb, 0, sizeof(*eth));
	if (!eth)
		return ACT_PASSED_TO_OVERLAY;
	__be16 proto = eth->h_proto;
	__u32 off = sizeof(*eth);

	// A tag the NIC or the stack moved out of the frame (skb->vlan_present,
	// skb->vlan_tci) is not in the data: h_proto is then already the inner
	// type. Tags still in the frame (802.1Q, 802.1ad, QinQ) are skipped.
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) &&
		    proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = AT(skb, off, sizeof(*vh));
		if (!vh)
			return ACT_PASSED_TO_OVERLAY;
		proto = vh->proto;
		off += sizeof(*vh);
	}

	if (proto == bpf_htons(ETH_P_IP))
		return classify_ipv4(skb, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return classify_ipv6(skb, off);
	if (proto == bpf_htons(ETH_P_ARP))
		return classify_arp(skb, off);
	return ACT_PASSED_TO_OVERLAY;
}

SEC("tc")
int l2s_to_overlay(struct __sk_buff *skb)
{
	if (fenced()) {
		count(ACT_FENCED);
		return TC_ACT_SHOT;
	}
	__u32 act = classify_to_overlay(skb);
	count(act);
	return act == ACT_PASSED_TO_OVERLAY ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

SEC("tc")
int l2s_to_pod(struct __sk_buff *skb)
{
	if (fenced()) {
		count(ACT_FENCED);
		return TC_ACT_SHOT;
	}
	struct ethhdr *eth = AT(skb, 0, sizeof(*eth));
	if (!eth) {
		count(ACT_PASSED_TO_POD);
		return TC_ACT_UNSPEC;
	}
	struct dvr_key k = {.prefixlen = 32 + 48, .ifindex = skb->ifindex};
	__builtin_memcpy(k.mac, eth->h_source, 6);
	struct dvr_val *v = bpf_map_lookup_elem(&l2s_dvr, &k);
	if (!v) {
		count(ACT_PASSED_TO_POD);
		return TC_ACT_UNSPEC;
	}
	// A direct write: the verifier makes the program unclone a cloned skb
	// (the bridge clones flooded frames) before it runs, so a rewrite never
	// changes another port's copy.
	eth = AT(skb, 0, sizeof(*eth));
	if (!eth) {
		count(ACT_REWRITE_FAILED);
		return TC_ACT_UNSPEC;
	}
	__builtin_memcpy(eth->h_source, v->mac, 6);
	count(ACT_REWRITTEN);
	return TC_ACT_UNSPEC;
}
