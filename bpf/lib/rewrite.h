/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Rewrites (docs/rewrite.md): a flow's destination mapped to another address and port (and
 * its replies mapped back), DSCP set, an 802.1Q tag pushed or popped, secret HTTP header
 * values masked; and a pod's rate limit per direction (a token bucket). Every checksum is
 * kept right with the kernel's helpers, which also know offloaded (CHECKSUM_PARTIAL) packets.
 * What a flow gets is decided on its first packet by the policy judge and kept in the flow.
 * Not for deciding (policy.h) or parsing (parse.h, l7_*.h).
 */
#ifndef LOUPE_BPF_REWRITE_H
#define LOUPE_BPF_REWRITE_H

#include <linux/if_ether.h>

#include "lib/policy.h"

#define LOUPE_IPV4_CSUM_OFF  10
#define LOUPE_IPV4_SADDR_OFF 12
#define LOUPE_IPV4_DADDR_OFF 16
#define LOUPE_IPV6_SADDR_OFF 8
#define LOUPE_IPV6_DADDR_OFF 24
#define LOUPE_TCP_CSUM_OFF   16
#define LOUPE_UDP_CSUM_OFF   6
#define LOUPE_MASK_BYTE	     '*'
#define LOUPE_MASK_VALUE_MAX (LOUPE_HTTP_HOST_MAX - 8) /* bytes of one value masked */
#define LOUPE_MASK_LINES     32			       /* header lines looked at */
#define LOUPE_MASK_NAME_MAX  40			       /* bytes of a header name hashed */
#define LOUPE_MASK_WORDS     (LOUPE_HTTP_SCAN_MAX / 8)

/* Cursors through memory: the verifier then sees one unknown value after each loop, not one
 * state per way the loop ended (see struct loupe_scratch). */
#define LOUPE_RW_GET(s, f)    (*(volatile __u32 *)&(s)->rw.f)
#define LOUPE_RW_SET(s, f, v) (*(volatile __u32 *)&(s)->rw.f = (v))

/* FNV-1a 64, as policy_compile.c hashes the names to mask. */
#define LOUPE_FNV64_BASIS 0xcbf29ce484222325ULL
#define LOUPE_FNV64_PRIME 0x100000001b3ULL

/* Where the L4 checksum is, and the flags the checksum helpers need for it. */
static __always_inline int loupe_l4_csum(const struct loupe_pkt *pkt, __u32 *off, __u64 *flags)
{
	if (pkt->protocol == IPPROTO_TCP) {
		*off = pkt->l4_off + LOUPE_TCP_CSUM_OFF;
		*flags = 0;
		return 0;
	}
	if (pkt->protocol == IPPROTO_UDP) {
		*off = pkt->l4_off + LOUPE_UDP_CSUM_OFF;
		/* an IPv4 UDP checksum of 0 means none: it stays 0 (and a 0 result becomes
		 * 0xffff) */
		*flags = BPF_F_MARK_MANGLED_0;
		return 0;
	}
	return -1;
}

/*
 * Replaces the address at @addr_off (source or destination) and the port at @port_off with
 * @addr (IPv4-mapped for IPv4) and @port (host order; 0 keeps it), fixing the IPv4 header
 * checksum and the L4 checksum (its pseudo-header holds both). Returns 0, or -1 when a
 * helper refused (the packet may then be half written: the caller drops it).
 */
static __always_inline int loupe_rewrite_addr_port(struct __sk_buff *skb,
						   const struct loupe_pkt *pkt, bool source,
						   const __u8 *addr, __u16 port)
{
	bool ipv6 = pkt->flags & LOUPE_EVF_IPV6;
	const union loupe_addr *old = source ? &pkt->saddr : &pkt->daddr;
	__be16 old_port = source ? pkt->sport : pkt->dport;
	__be16 new_port = bpf_htons(port);
	__u32 csum_off, addr_off, port_off;
	__u64 flags;
	int has_l4 = loupe_l4_csum(pkt, &csum_off, &flags) == 0;

	port_off = pkt->l4_off + (source ? 0 : 2);
	if (ipv6) {
		__u32 new6[4];
		__s64 diff;

		addr_off = pkt->l3_off + (source ? LOUPE_IPV6_SADDR_OFF : LOUPE_IPV6_DADDR_OFF);
		__builtin_memcpy(new6, addr, 16);
		diff = bpf_csum_diff((__be32 *)old->w, 16, (__be32 *)new6, 16, 0);
		if (diff < 0)
			return -1;
		if (has_l4 && bpf_l4_csum_replace(skb, csum_off, 0, diff, flags | BPF_F_PSEUDO_HDR))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, new6, 16, 0))
			return -1;
	} else {
		__be32 old4 = old->w[3], new4;

		__builtin_memcpy(&new4, addr + 12, 4);
		addr_off = pkt->l3_off + (source ? LOUPE_IPV4_SADDR_OFF : LOUPE_IPV4_DADDR_OFF);
		if (bpf_l3_csum_replace(skb, pkt->l3_off + LOUPE_IPV4_CSUM_OFF, old4, new4, 4))
			return -1;
		if (has_l4 &&
		    bpf_l4_csum_replace(skb, csum_off, old4, new4, flags | BPF_F_PSEUDO_HDR | 4))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new4, 4, 0))
			return -1;
	}
	if (!port || new_port == old_port || !has_l4)
		return 0;
	if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, flags | 2))
		return -1;
	return bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) ? -1 : 0;
}

/* DSCP in the IPv4 TOS byte (header checksum fixed) or the IPv6 traffic class; ECN kept. */
static __always_inline int loupe_rewrite_dscp(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					      __u8 dscp)
{
	__u8 b[2];

	if (bpf_skb_load_bytes(skb, pkt->l3_off, b, 2))
		return -1;
	if (pkt->flags & LOUPE_EVF_IPV6) {
		/* version (4 bits), traffic class (8), flow label (20) */
		__u8 tc = (b[0] << 4) | (b[1] >> 4), nb[2];

		tc = (dscp << 2) | (tc & 3);
		nb[0] = 0x60 | (tc >> 4);
		nb[1] = (tc << 4) | (b[1] & 0x0f);
		return bpf_skb_store_bytes(skb, pkt->l3_off, nb, 2, 0) ? -1 : 0;
	} else {
		__u8 nb[2] = { b[0], (dscp << 2) | (b[1] & 3) };
		__be16 old16, new16;

		__builtin_memcpy(&old16, b, 2);
		__builtin_memcpy(&new16, nb, 2);
		if (bpf_l3_csum_replace(skb, pkt->l3_off + LOUPE_IPV4_CSUM_OFF, old16, new16, 2))
			return -1;
		return bpf_skb_store_bytes(skb, pkt->l3_off, nb, 2, 0) ? -1 : 0;
	}
}

/*
 * Masks one header value: the payload bytes [@start, @end) become '*'. The L4 checksum is
 * fixed with the difference over the 4-byte-aligned span around them (aligned to the TCP
 * header, whose length is a multiple of 4); bytes past the packet count as zero on both sides.
 */
__noinline int loupe_mask_value(struct __sk_buff *skb, __u32 start, __u32 end)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 span_start = start & ~3u, span_len, have, j, csum_off, len;
	struct loupe_rewrite_work *rw;
	const struct loupe_pkt *pkt;
	__u64 flags;
	__s64 diff;

	if (!s || !skb)
		return -1;
	rw = &s->rw;
	pkt = &s->pkt;

	if (end <= start || end - start > LOUPE_MASK_VALUE_MAX || start > 0xffff)
		return -1;
	span_len = ((end + 3) & ~3u) - span_start;
	if (span_len > LOUPE_HTTP_HOST_MAX || span_len == 0)
		return -1;
	have = pkt->payload_len > span_start ? pkt->payload_len - span_start : 0;
	if (have > span_len)
		have = span_len;
	for (j = 0; j < (LOUPE_HTTP_HOST_MAX + 8) / 8; j++) {
		*(__u64 *)&rw->old_span[j * 8] = 0;
		asm volatile("" ::: "memory");
	}
	if (have == 0 || have > LOUPE_HTTP_HOST_MAX ||
	    bpf_skb_load_bytes(skb, pkt->payload_off + span_start, rw->old_span, have))
		return -1;
	for (j = 0; j < (LOUPE_HTTP_HOST_MAX + 8) / 8; j++) {
		*(__u64 *)&rw->new_span[j * 8] = *(__u64 *)&rw->old_span[j * 8];
		asm volatile("" ::: "memory");
	}
	len = end - start;
	LOUPE_BARRIER_VAR(len);
	if (len == 0 || len > LOUPE_MASK_VALUE_MAX || start - span_start > 3)
		return -1;
	for (j = 0; j < LOUPE_MASK_VALUE_MAX; j++) {
		if (j >= len)
			break;
		rw->new_span[(start - span_start + j) & 0xff] = LOUPE_MASK_BYTE;
		asm volatile("" ::: "memory"); /* not a memset(): BPF has none */
	}
	if (loupe_l4_csum(pkt, &csum_off, &flags))
		return -1;
	diff = bpf_csum_diff((__be32 *)rw->old_span, span_len & 0x1fc, (__be32 *)rw->new_span,
			     span_len & 0x1fc, 0);
	if (diff < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, pkt->payload_off + start, &rw->new_span[start - span_start],
				len, 0))
		return -1;
	return bpf_l4_csum_replace(skb, csum_off, 0, diff, flags) ? -1 : 0;
}

static __always_inline __u32 loupe_popcount8(__u32 v)
{
	__u32 n = 0;

	for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++)
		n += (v >> i) & 1;
	return n;
}

/* The position after the next '\n' from @pos in s->head, word by word; @head_len if none. */
static __always_inline __u32 loupe_next_line(struct loupe_scratch *s, __u32 pos, __u32 head_len)
{
	for (int k = 0; k < LOUPE_MASK_WORDS; k++) {
		__u64 t;

		if (pos >= head_len)
			return head_len;
		t = loupe_bytes_equal(loupe_buf_u64(&s->head, pos), LOUPE_LANES('\n'));
		if (t)
			return pos + loupe_first_flagged_byte(t) + 1;
		pos += 8;
	}
	return head_len;
}

/*
 * One header line of the request in s->head (@head_len bytes), the one after @pos: masks its
 * value when its name is one of @cfg_idx's (loupe_pol_rewrites). Returns the line's start
 * (pos of the next call) with bit 31 set, or'ed with 1 << (16 + name index) when masked;
 * 0 at the end of the header block or of the head. A global function: checked once.
 */
__noinline __u32 loupe_mask_line(struct __sk_buff *skb, __u32 pos, __u32 head_len, __u32 cfg_idx)
{
	struct loupe_scratch *s = loupe_scratch_get();
	const struct loupe_rewrite *cfg;
	__u32 k, name_len = 0, start, end;
	__u64 h = LOUPE_FNV64_BASIS;
	int hit = -1;
	__u8 c = 0;

	if (!s || !skb || head_len > LOUPE_L7_BUF_MAX)
		return 0;
	cfg = bpf_map_lookup_elem(&loupe_pol_rewrites, &cfg_idx);
	if (!cfg)
		return 0;
	LOUPE_RW_SET(s, pos, loupe_next_line(s, pos, head_len));
	pos = LOUPE_RW_GET(s, pos);
	if (pos >= head_len)
		return 0;
	c = loupe_buf_u8(&s->head, pos);
	if (c == '\r' || c == '\n')
		return 0; /* the end of the header block */
	for (k = 0; k < LOUPE_MASK_NAME_MAX; k++) {
		if (pos + k >= head_len)
			return 0;
		c = loupe_buf_u8(&s->head, pos + k);
		if (c == ':')
			break;
		if (c >= 'A' && c <= 'Z')
			c |= 0x20;
		h = (h ^ c) * LOUPE_FNV64_PRIME;
		name_len++;
	}
	if (c != ':' || name_len == 0)
		return pos | (1u << 31);
	LOUPE_RW_SET(s, start, name_len);
	name_len = LOUPE_RW_GET(s, start);
	for (k = 0; k < LOUPE_MASK_HEADERS_MAX; k++)
		if (k < cfg->n_mask && cfg->mask_hash[k] == h && cfg->mask_len[k] == name_len)
			hit = k;
	if (hit < 0)
		return pos | (1u << 31);
	LOUPE_RW_SET(s, pos, pos);
	LOUPE_RW_SET(s, start, pos + name_len + 1);
	LOUPE_RW_SET(s, end, hit);

	/* the value: after the blanks that follow ':', to the end of the line */
	start = LOUPE_RW_GET(s, start);
	for (k = 0; k < LOUPE_HTTP_OWS_MAX; k++) {
		if (start >= head_len)
			break;
		c = loupe_buf_u8(&s->head, start);
		if (c != ' ' && c != '\t')
			break;
		start++;
	}
	LOUPE_RW_SET(s, start, start);
	start = LOUPE_RW_GET(s, start);
	end = start;
	for (k = 0; k < LOUPE_MASK_VALUE_MAX / 8; k++) {
		__u64 t;

		if (end >= head_len)
			break;
		t = loupe_bytes_equal(loupe_buf_u64(&s->head, end), LOUPE_LANES('\r')) |
		    loupe_bytes_equal(loupe_buf_u64(&s->head, end), LOUPE_LANES('\n'));
		if (t) {
			end += loupe_first_flagged_byte(t);
			break;
		}
		end += 8;
	}
	if (end > head_len)
		end = head_len;
	if (end > start && end - start > LOUPE_MASK_VALUE_MAX)
		end = start + LOUPE_MASK_VALUE_MAX;
	pos = LOUPE_RW_GET(s, pos);
	hit = LOUPE_RW_GET(s, end);
	if (end > start && !loupe_mask_value(skb, start, end))
		return pos | (1u << 31) | (1u << (16 + (hit & 7)));
	return pos | (1u << 31);
}

/*
 * Masks the values of the headers named by rewrite entry @idx (slot * LOUPE_REWRITES_MAX +
 * entry) in the HTTP request at the start of this segment's payload (read into s->head).
 * Returns a bit per name masked. A value that continues in the next segment is masked as far
 * as this one goes; one longer than LOUPE_MASK_VALUE_MAX is masked that far
 * (docs/rewrite.md).
 */
__noinline int loupe_rewrite_mask(struct __sk_buff *skb, __u32 idx)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 head_len, j, masked = 0, r, pos = 0;

	if (!s || !skb)
		return 0;
	head_len = loupe_l7_load_head(skb, &s->pkt, s, LOUPE_HTTP_SCAN_MAX);
	if (head_len < 8 || !loupe_http_method_len(loupe_buf_u64(&s->head, 0)))
		return 0;
	for (j = 0; j < LOUPE_MASK_LINES; j++) {
		r = loupe_mask_line(skb, pos, head_len, idx);
		if (!r)
			break;
		masked |= (r >> 16) & 0xff;
		pos = r & 0xffff;
	}
	return masked;
}

/*
 * Applies the flow's rewrite (its rw_* fields, copied into rw->flow_* by the caller) to the
 * packet in s->pkt going in @dir. Reports it (REWRITE) the first time in each direction
 * (@reported: the flow's bits) and for each request whose headers were masked. Returns the
 * directions now reported (bit per direction), or -1 when the packet could not be rewritten
 * and must be dropped (counted).
 */
__noinline int loupe_rewrite_apply(struct __sk_buff *skb, int dir, int origin, int reported,
				   __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_rewrite_work *rw;
	struct loupe_event_rewrite *ev;
	const struct loupe_pkt *pkt;
	__u32 actions, done = 0, masked = 0;
	bool from_client = dir == origin;

	if (!s || !skb || !cnt)
		return reported;
	rw = &s->rw;
	pkt = &s->pkt;
	actions = rw->flow_actions;
	ev = &rw->ev;
	__builtin_memset(ev->new_addr, 0, sizeof(ev->new_addr));
	ev->new_port = 0;
	ev->dscp = 0;
	ev->vlan_id = 0;
	ev->n_masked = 0;
	ev->masked_bits = 0;

	/* what changes offsets goes last: the tag */
	if ((actions & LOUPE_RW_MAP) && from_client && pkt->has_l4) {
		if (loupe_rewrite_addr_port(skb, pkt, false, rw->flow_addr, rw->flow_port))
			goto failed;
		__builtin_memcpy(ev->new_addr, rw->flow_addr, 16);
		ev->new_port = rw->flow_port ? rw->flow_port : bpf_ntohs(pkt->dport);
		done |= LOUPE_RW_MAP;
	}
	if ((actions & LOUPE_RW_MASK) && from_client && pkt->protocol == IPPROTO_TCP &&
	    pkt->payload_len >= 8 && rw->flow_rewrite) {
		masked = loupe_rewrite_mask(
			skb, (rw->flow_slot & 1) * LOUPE_REWRITES_MAX +
				     ((rw->flow_rewrite - 1) & (LOUPE_REWRITES_MAX - 1)));
		if (masked)
			done |= LOUPE_RW_MASK;
	}
	if ((actions & LOUPE_RW_DSCP) && from_client) {
		if (loupe_rewrite_dscp(skb, pkt, rw->flow_dscp))
			goto failed;
		ev->dscp = rw->flow_dscp;
		done |= LOUPE_RW_DSCP;
	}
	if ((actions & LOUPE_RW_VLAN_PUSH) && from_client) {
		if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), rw->flow_vlan_id))
			goto failed;
		ev->vlan_id = rw->flow_vlan_id;
		done |= LOUPE_RW_VLAN_PUSH;
	} else if ((actions & LOUPE_RW_VLAN_POP) && from_client && (pkt->flags & LOUPE_EVF_VLAN)) {
		if (bpf_skb_vlan_pop(skb))
			goto failed;
		ev->vlan_id = pkt->vlan_id;
		done |= LOUPE_RW_VLAN_POP;
	}
	if (!done)
		return reported;
	cnt->rewritten[dir & 1]++;
	if ((reported & (1 << (dir & 1))) && !(done & LOUPE_RW_MASK))
		return reported;
	loupe_event_hdr_fill(&ev->hdr, skb, pkt, LOUPE_EV_REWRITE, dir, now);
	ev->generation = rw->flow_generation;
	ev->rewrite = rw->flow_rewrite - 1; /* the flow keeps entry + 1 */
	ev->pad = 0;
	ev->actions = done;
	ev->masked_bits = masked;
	ev->n_masked = loupe_popcount8(masked);
	loupe_event_submit(cnt, ev, sizeof(*ev), LOUPE_EV_REWRITE);
	return reported | (1 << (dir & 1));
failed:
	cnt->rewrite_failed++;
	return -1;
}

/*
 * A reply of a mapped flow, as it arrives (from the real peer): its source is put back to the
 * address and port the pod used, before it is tracked, so the pod sees the address it asked
 * for and the reply finds its flow. The packet is s->pkt, updated. Returns 1 when mapped back,
 * 0 when the packet is not such a reply, -1 when it is but could not be rewritten.
 */
__noinline int loupe_rewrite_reverse(struct __sk_buff *skb, int dir)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_nat_reverse *nat;
	struct loupe_rewrite_work *rw;
	struct loupe_pkt *pkt;

	if (!s || !skb)
		return 0;
	rw = &s->rw;
	pkt = &s->pkt;
	if (dir != LOUPE_DIR_POD_INGRESS || !pkt->has_l4)
		return 0;
	loupe_tls_pending_key(&rw->nat_key, pkt, dir);
	nat = bpf_map_lookup_elem(&loupe_nat_reverse, &rw->nat_key);
	if (!nat)
		return 0;
	/* only while the mapped flow lives: a later connection of the pod to the real address
	 * itself, from the same port, is not a reply to it */
	if (pkt->flags & LOUPE_EVF_IPV6) {
		rw->virt_key.v6 = rw->nat_key;
		__builtin_memcpy(rw->virt_key.v6.peer_addr, nat->virt_addr, 16);
		rw->virt_key.v6.peer_port = bpf_htons(nat->virt_port);
		if (!bpf_map_lookup_elem(&loupe_flows6, &rw->virt_key.v6))
			goto stale;
	} else {
		__builtin_memset(&rw->virt_key.v4, 0, sizeof(rw->virt_key.v4));
		rw->virt_key.v4.pod_addr = pkt->daddr.w[3];
		__builtin_memcpy(&rw->virt_key.v4.peer_addr, &nat->virt_addr[12], 4);
		rw->virt_key.v4.pod_port = pkt->dport;
		rw->virt_key.v4.peer_port = bpf_htons(nat->virt_port);
		rw->virt_key.v4.protocol = pkt->protocol;
		if (!bpf_map_lookup_elem(&loupe_flows4, &rw->virt_key.v4))
			goto stale;
	}
	if (loupe_rewrite_addr_port(skb, pkt, true, nat->virt_addr, nat->virt_port))
		return -1;
	__builtin_memcpy(pkt->saddr.b, nat->virt_addr, 16);
	pkt->sport = bpf_htons(nat->virt_port);
	return 1;
stale:
	bpf_map_delete_elem(&loupe_nat_reverse, &rw->nat_key);
	return 0;
}

/*
 * A new flow got rewrite entry @rewrite (+1) of @slot from the judge: its actions go into the
 * flow as they are now, and a mapping gets its reverse entry. @fresh is the flow being
 * created, from the pod's side; the packet is s->pkt (the flow's first, from its client).
 */
static __always_inline void loupe_rewrite_begin(struct loupe_scratch *s, struct loupe_flow *fresh,
						__u32 rewrite, __u32 slot, __u8 dir)
{
	struct loupe_rewrite_work *rw = &s->rw;
	const struct loupe_pkt *pkt = &s->pkt;
	const struct loupe_rewrite *cfg;
	__u32 idx;

	if (!rewrite || rewrite > LOUPE_REWRITES_MAX)
		return;
	idx = (slot & 1) * LOUPE_REWRITES_MAX + rewrite - 1;
	cfg = bpf_map_lookup_elem(&loupe_pol_rewrites, &idx);
	if (!cfg || !cfg->actions)
		return;
	fresh->rewrite = rewrite;
	fresh->rewrite_slot = slot;
	fresh->rewrite_generation = s->pol.generation;
	fresh->rw_actions = cfg->actions;
	fresh->rw_dscp = cfg->dscp;
	fresh->rw_vlan_id = cfg->vlan_id;
	if (!(cfg->actions & LOUPE_RW_MAP))
		return;
	/* a mapping of the other family, or of a flow without ports, is not applied */
	if (!cfg->map_ipv6 != !(pkt->flags & LOUPE_EVF_IPV6) || !pkt->has_l4 ||
	    (pkt->protocol != IPPROTO_TCP && pkt->protocol != IPPROTO_UDP)) {
		fresh->rw_actions &= ~LOUPE_RW_MAP;
		return;
	}
	if (cfg->map_ipv6) {
		__builtin_memcpy(fresh->rw_addr, cfg->map_addr, 16);
	} else {
		__builtin_memset(fresh->rw_addr, 0, 10);
		fresh->rw_addr[10] = fresh->rw_addr[11] = 0xff;
		__builtin_memcpy(&fresh->rw_addr[12], cfg->map_addr, 4);
	}
	fresh->rw_port = cfg->map_port;

	/* replies will come from the real peer: their key, as they arrive, to the virtual */
	__builtin_memcpy(rw->nat_key.pod_addr,
			 dir == LOUPE_DIR_POD_EGRESS ? pkt->saddr.b : pkt->daddr.b, 16);
	__builtin_memcpy(rw->nat_key.peer_addr, fresh->rw_addr, 16);
	rw->nat_key.pod_port = pkt->sport;
	rw->nat_key.peer_port = cfg->map_port ? bpf_htons(cfg->map_port) : pkt->dport;
	rw->nat_key.protocol = pkt->protocol;
	rw->nat_key.pad[0] = rw->nat_key.pad[1] = rw->nat_key.pad[2] = 0;
	__builtin_memcpy(rw->nat.virt_addr, pkt->daddr.b, 16);
	rw->nat.virt_port = bpf_ntohs(pkt->dport);
	rw->nat.pad[0] = rw->nat.pad[1] = rw->nat.pad[2] = 0;
	if (bpf_map_update_elem(&loupe_nat_reverse, &rw->nat_key, &rw->nat, BPF_ANY))
		fresh->rw_actions &= ~LOUPE_RW_MAP;
}

/* The pod of this packet's interface has a rate limit, in either direction. */
static __always_inline bool loupe_rate_limited_pod(struct __sk_buff *skb)
{
	struct loupe_rate_key key = { .ifindex = skb->ifindex, .direction = 0 };

	if (bpf_map_lookup_elem(&loupe_rate, &key))
		return true;
	key.direction = 1;
	return bpf_map_lookup_elem(&loupe_rate, &key) != NULL;
}

/*
 * The pod's rate limit in direction @dir (a token bucket, refilled at bytes_per_sec up to
 * burst): returns 1 when the packet is over it and is to be dropped. Drops are counted and
 * reported (RATE_LIMITED) at most every LOUPE_RATE_EVENT_NS per pod and direction.
 */
__noinline int loupe_rate_check(struct __sk_buff *skb, int dir, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_rate_key key = {};
	struct loupe_rate *r;
	__u64 len, add, elapsed, report = 0, rate, burst;
	int over = 0;

	if (!s || !skb || !cnt)
		return 0;
	key.ifindex = skb->ifindex;
	key.direction = dir & 1;
	r = bpf_map_lookup_elem(&loupe_rate, &key);
	if (!r)
		return 0;
	len = skb->len;
	bpf_spin_lock(&r->lock);
	rate = r->bytes_per_sec;
	burst = r->burst;
	if (!r->last_ns) {
		r->tokens = burst;
		r->last_ns = now;
	}
	elapsed = now > r->last_ns ? now - r->last_ns : 0;
	if (elapsed >= 1000000000ULL) {
		r->tokens = burst;
		r->last_ns = now;
	} else {
		/* microseconds times bytes/s stays within 64 bits up to 2^44 bytes/s */
		add = (elapsed / 1000) * rate / 1000000;
		if (add) {
			r->tokens = r->tokens + add > burst ? burst : r->tokens + add;
			r->last_ns = now;
		}
	}
	if (r->tokens >= len) {
		r->tokens -= len;
	} else {
		over = 1;
		r->dropped++;
		if (now - r->last_event_ns >= LOUPE_RATE_EVENT_NS) {
			report = r->dropped;
			r->dropped = 0;
			r->last_event_ns = now;
		}
	}
	bpf_spin_unlock(&r->lock);
	if (!over)
		return 0;
	cnt->rate_limited[dir & 1]++;
	if (report) {
		struct loupe_event_rate_limited *ev = &s->rw.rate_ev;

		loupe_event_hdr_fill(&ev->hdr, skb, &s->pkt, LOUPE_EV_RATE_LIMITED, dir, now);
		ev->dropped = report;
		ev->bytes_per_sec = rate;
		ev->burst = burst;
		loupe_event_submit(cnt, ev, sizeof(*ev), LOUPE_EV_RATE_LIMITED);
	}
	return 1;
}

#endif
