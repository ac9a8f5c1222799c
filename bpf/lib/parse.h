/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing: Ethernet, 802.1Q/802.1ad tags (in the packet and in skb metadata), IPv4
 * (options, fragments), IPv6 (extension headers), TCP, UDP, ICMP, ICMPv6. Reads only what
 * the packet holds; never trusts a length field further than the bytes present. Not for
 * L7 (l7_*.h) or flows (flow.h).
 */
#ifndef LOUPE_BPF_PARSE_H
#define LOUPE_BPF_PARSE_H

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include "lib/common.h"

#define LOUPE_VLAN_TAGS_MAX 4	/* in-packet tags followed; more is a parse error */
#define LOUPE_IPV6_EXT_MAX  6	/* extension headers skipped before giving up */
#define LOUPE_PULL_LEN	    128 /* bytes of headers we want in the linear area */

/* linux/icmp.h drags in libc headers, so the few numbers needed are here */
#define LOUPE_ICMP_ECHOREPLY	  0
#define LOUPE_ICMP_ECHO		  8
#define LOUPE_ICMPV6_ECHO_REQUEST 128
#define LOUPE_ICMPV6_ECHO_REPLY	  129

struct loupe_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

#define LOUPE_IP_MF	    0x2000
#define LOUPE_IP_OFFSET	    0x1fff
#define LOUPE_VLAN_VID_MASK 0x0fff

union loupe_addr {
	__u8 b[16];
	__u32 w[4];
	__u64 d[2];
};

/* TCP flag bits (the 14th byte of the header) */
#define LOUPE_TCP_FIN 0x01
#define LOUPE_TCP_SYN 0x02
#define LOUPE_TCP_RST 0x04
#define LOUPE_TCP_ACK 0x10

struct loupe_pkt {
	union loupe_addr saddr; /* IPv4-mapped for IPv4 */
	union loupe_addr daddr;
	__be16 sport; /* network order; echo id for ICMP echo */
	__be16 dport;
	__u32 payload_off; /* from skb->data */
	__u32 payload_len; /* what the headers claim, cut to the bytes present */
	__u32 tcp_seq;	   /* host order */
	__u16 flags;	   /* LOUPE_EVF_* */
	__u16 vlan_id;
	__u16 inner_vlan_id;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 has_l4;	     /* ports are valid: not a non-first fragment, L4 header present */
	__u8 later_fragment; /* a non-first fragment: no L4 header, not tracked */
	__u8 pad[2];
	__u16 l3_off; /* the IP header, from skb->data (rewrites write there) */
	__u16 l4_off; /* the L4 header */
};

enum loupe_parse_result {
	LOUPE_PARSED_IP = 0,	 /* L3 parsed; see has_l4 */
	LOUPE_PARSED_NOT_IP = 1, /* ARP, LLDP, ...: nothing to track */
				 /* negative: -enum loupe_parse_error */
};

static __always_inline void loupe_pkt_add_vlan(struct loupe_pkt *pkt, __u16 tci)
{
	__u16 vid = tci & LOUPE_VLAN_VID_MASK;

	if (!(pkt->flags & LOUPE_EVF_VLAN)) {
		pkt->flags |= LOUPE_EVF_VLAN;
		pkt->vlan_id = vid;
	} else if (!(pkt->flags & LOUPE_EVF_VLAN_INNER)) {
		pkt->flags |= LOUPE_EVF_VLAN_INNER;
		pkt->inner_vlan_id = vid;
	}
}

static __always_inline int loupe_parse_l4(struct loupe_pkt *pkt, void *data, void *data_end,
					  __u32 l4_off, __u32 l3_end, __u32 skb_len)
{
	void *l4 = data + l4_off;
	__u32 hlen;

	if (l4_off > 0xffff)
		return -LOUPE_PERR_L4_TRUNCATED;
	/* the L4 header must lie within what the IP header claims, not in padding after it */
	switch (pkt->protocol) {
	case IPPROTO_TCP:
		hlen = sizeof(struct tcphdr);
		break;
	case IPPROTO_UDP:
		hlen = sizeof(struct udphdr);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		hlen = sizeof(struct loupe_icmphdr);
		break;
	default:
		hlen = 0;
		break;
	}
	if (l4_off + hlen > l3_end)
		return -LOUPE_PERR_L4_TRUNCATED;

	switch (pkt->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -LOUPE_PERR_L4_TRUNCATED;
		pkt->sport = th->source;
		pkt->dport = th->dest;
		pkt->tcp_flags = ((__u8 *)th)[13];
		pkt->tcp_seq = bpf_ntohl(th->seq);
		pkt->has_l4 = 1;
		hlen = th->doff * 4;
		if (hlen < sizeof(*th))
			return -LOUPE_PERR_TCP_BAD_HEADER;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -LOUPE_PERR_L4_TRUNCATED;
		pkt->sport = uh->source;
		pkt->dport = uh->dest;
		pkt->has_l4 = 1;
		hlen = sizeof(*uh);
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct loupe_icmphdr *ih = l4; /* same layout for ICMPv6 */
		bool echo;

		if ((void *)(ih + 1) > data_end)
			return -LOUPE_PERR_L4_TRUNCATED;
		if (pkt->protocol == IPPROTO_ICMP)
			echo = ih->type == LOUPE_ICMP_ECHO || ih->type == LOUPE_ICMP_ECHOREPLY;
		else
			echo = ih->type == LOUPE_ICMPV6_ECHO_REQUEST ||
			       ih->type == LOUPE_ICMPV6_ECHO_REPLY;
		if (echo) {
			/* both ports carry the echo id: request and reply share one flow */
			pkt->sport = ih->id;
			pkt->dport = ih->id;
		}
		pkt->has_l4 = 1;
		return LOUPE_PARSED_IP;
	}
	default:
		return LOUPE_PARSED_IP;
	}

	/* the payload: what the IP header claims, cut to what the frame holds */
	pkt->l4_off = l4_off;
	pkt->payload_off = l4_off + hlen;
	if (l3_end > skb_len)
		l3_end = skb_len;
	if (l3_end > pkt->payload_off)
		pkt->payload_len = l3_end - pkt->payload_off;
	return LOUPE_PARSED_IP;
}

static __always_inline int loupe_parse_ipv4(struct loupe_pkt *pkt, void *data, void *data_end,
					    __u32 off, __u32 skb_len)
{
	struct iphdr *iph = data + off;
	__u32 hlen, tot_len;
	__u16 frag;

	pkt->l3_off = off;
	if ((void *)(iph + 1) > data_end)
		return -LOUPE_PERR_IPV4_TRUNCATED;
	if (iph->version != 4 || iph->ihl < 5)
		return -LOUPE_PERR_IPV4_BAD_HEADER;
	hlen = iph->ihl * 4;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < hlen)
		return -LOUPE_PERR_IPV4_BAD_HEADER;
	if ((void *)iph + hlen > data_end)
		return -LOUPE_PERR_IPV4_TRUNCATED;

	pkt->saddr.d[0] = 0;
	pkt->saddr.w[2] = bpf_htonl(0xffff);
	pkt->saddr.w[3] = iph->saddr;
	pkt->daddr.d[0] = 0;
	pkt->daddr.w[2] = bpf_htonl(0xffff);
	pkt->daddr.w[3] = iph->daddr;
	pkt->protocol = iph->protocol;

	frag = bpf_ntohs(iph->frag_off);
	if (frag & LOUPE_IP_OFFSET) {
		pkt->later_fragment = 1; /* no L4 header here */
		return LOUPE_PARSED_IP;
	}
	if (frag & LOUPE_IP_MF)
		pkt->flags |= LOUPE_EVF_FRAGMENT;
	return loupe_parse_l4(pkt, data, data_end, off + hlen, off + tot_len, skb_len);
}

static __always_inline int loupe_parse_ipv6(struct loupe_pkt *pkt, void *data, void *data_end,
					    __u32 off, __u32 skb_len)
{
	struct ipv6hdr *ip6 = data + off;
	__u32 l3_end;
	__u8 nexthdr;
	int i;

	pkt->l3_off = off;
	if ((void *)(ip6 + 1) > data_end)
		return -LOUPE_PERR_IPV6_TRUNCATED;
	if (ip6->version != 6)
		return -LOUPE_PERR_IPV6_TRUNCATED;
	pkt->flags |= LOUPE_EVF_IPV6;
	__builtin_memcpy(pkt->saddr.b, &ip6->saddr, 16);
	__builtin_memcpy(pkt->daddr.b, &ip6->daddr, 16);
	l3_end = off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	nexthdr = ip6->nexthdr;
	off += sizeof(*ip6);

	/* one turn per extension header, and one more for the header that follows them */
	for (i = 0; i <= LOUPE_IPV6_EXT_MAX; i++) {
		__u8 *ext = data + off;

		if (off > 0xffff)
			return -LOUPE_PERR_IPV6_EXT_TRUNCATED;
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if ((void *)(ext + 2) > data_end)
				return -LOUPE_PERR_IPV6_EXT_TRUNCATED;
			if (i == LOUPE_IPV6_EXT_MAX)
				return -LOUPE_PERR_IPV6_EXT_TOO_MANY;
			nexthdr = ext[0];
			off += (ext[1] + 1) * 8;
			break;
		case IPPROTO_AH:
			if ((void *)(ext + 2) > data_end)
				return -LOUPE_PERR_IPV6_EXT_TRUNCATED;
			if (i == LOUPE_IPV6_EXT_MAX)
				return -LOUPE_PERR_IPV6_EXT_TOO_MANY;
			nexthdr = ext[0];
			off += (ext[1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT: {
			__u16 frag;

			if ((void *)(ext + 8) > data_end)
				return -LOUPE_PERR_IPV6_EXT_TRUNCATED;
			if (i == LOUPE_IPV6_EXT_MAX)
				return -LOUPE_PERR_IPV6_EXT_TOO_MANY;
			nexthdr = ext[0];
			frag = bpf_ntohs(*(__be16 *)(ext + 2));
			pkt->protocol = nexthdr;
			if (frag & 0xfff8) {
				pkt->later_fragment = 1;
				return LOUPE_PARSED_IP;
			}
			if (frag & 1)
				pkt->flags |= LOUPE_EVF_FRAGMENT;
			off += 8;
			break;
		}
		default:
			pkt->protocol = nexthdr;
			return loupe_parse_l4(pkt, data, data_end, off, l3_end, skb_len);
		}
	}
	return -LOUPE_PERR_IPV6_EXT_TOO_MANY;
}

/* Parses the headers in the skb's linear area; see loupe_parse(). */
static __always_inline int loupe_parse_linear(struct __sk_buff *skb, struct loupe_pkt *pkt)
{
	void *data, *data_end;
	__u32 off = ETH_HLEN;
	__be16 proto;
	int i;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN > data_end)
		return -LOUPE_PERR_ETH_TRUNCATED;
	proto = ((struct ethhdr *)data)->h_proto;

	/* the kernel moves the outer tag into the skb before tc ingress; further tags stay */
	if (skb->vlan_present) {
		pkt->flags |= LOUPE_EVF_VLAN_FROM_SKB;
		loupe_pkt_add_vlan(pkt, skb->vlan_tci);
	}
	for (i = 0; i < LOUPE_VLAN_TAGS_MAX; i++) {
		__be16 *tag = data + off;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(tag + 2) > data_end)
			return -LOUPE_PERR_VLAN_TRUNCATED;
		loupe_pkt_add_vlan(pkt, bpf_ntohs(tag[0]));
		proto = tag[1];
		off += 4;
	}

	switch (proto) {
	case bpf_htons(ETH_P_IP):
		return loupe_parse_ipv4(pkt, data, data_end, off, skb->len);
	case bpf_htons(ETH_P_IPV6):
		return loupe_parse_ipv6(pkt, data, data_end, off, skb->len);
	case bpf_htons(ETH_P_8021Q):
	case bpf_htons(ETH_P_8021AD):
		return -LOUPE_PERR_VLAN_TOO_DEEP;
	default:
		return LOUPE_PARSED_NOT_IP;
	}
}

static __always_inline bool loupe_perr_truncated(int perr)
{
	switch (perr) {
	case LOUPE_PERR_ETH_TRUNCATED:
	case LOUPE_PERR_VLAN_TRUNCATED:
	case LOUPE_PERR_IPV4_TRUNCATED:
	case LOUPE_PERR_IPV6_TRUNCATED:
	case LOUPE_PERR_IPV6_EXT_TRUNCATED:
	case LOUPE_PERR_L4_TRUNCATED:
		return true;
	default:
		return false;
	}
}

/*
 * Parses @skb's headers into @pkt (zeroed by the caller). Returns LOUPE_PARSED_IP,
 * LOUPE_PARSED_NOT_IP, or -LOUPE_PERR_*: the packet is then counted, never dropped.
 * Headers that lie in page fragments (GRO, some large sends) are pulled into the linear area
 * and parsed again, but only then: a pull on every packet whose linear area is short (TCP
 * from the local stack: headers only) reallocates cloned heads and cost 9% of throughput.
 */
static __always_inline int loupe_parse(struct __sk_buff *skb, struct loupe_pkt *pkt)
{
	int ret = loupe_parse_linear(skb, pkt);

	if (ret < 0 && loupe_perr_truncated(-ret) && skb->len > skb->data_end - skb->data) {
		__builtin_memset(pkt, 0, sizeof(*pkt));
		bpf_skb_pull_data(skb, skb->len < LOUPE_PULL_LEN ? skb->len : LOUPE_PULL_LEN);
		ret = loupe_parse_linear(skb, pkt);
	}
	return ret;
}

#endif
