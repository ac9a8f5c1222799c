/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow tables: one entry per connection as one pod sees it, both directions together,
 * keyed from the pod's side, IPv4 and IPv6 apart. Creates entries (and FLOW_START events),
 * keeps per-direction counters and the policy's verdict. Not for L7 or judging.
 */
#ifndef LOUPE_BPF_FLOW_H
#define LOUPE_BPF_FLOW_H

#include "lib/rewrite.h"

/* The flow key of @pkt as seen by a pod for which the packet goes in direction @dir. */
static __always_inline void loupe_flow_key_of(union loupe_any_flow_key *key,
					      const struct loupe_pkt *pkt, __u8 dir)
{
	bool egress = dir == LOUPE_DIR_POD_EGRESS;
	const union loupe_addr *pod = egress ? &pkt->saddr : &pkt->daddr;
	const union loupe_addr *peer = egress ? &pkt->daddr : &pkt->saddr;
	__be16 pod_port = egress ? pkt->sport : pkt->dport;
	__be16 peer_port = egress ? pkt->dport : pkt->sport;

	if (pkt->flags & LOUPE_EVF_IPV6) {
		__builtin_memcpy(key->v6.pod_addr, pod->b, 16);
		__builtin_memcpy(key->v6.peer_addr, peer->b, 16);
		key->v6.pod_port = pod_port;
		key->v6.peer_port = peer_port;
		key->v6.protocol = pkt->protocol;
		key->v6.pad[0] = key->v6.pad[1] = key->v6.pad[2] = 0;
	} else {
		key->v4.pod_addr = pod->w[3];
		key->v4.peer_addr = peer->w[3];
		key->v4.pod_port = pod_port;
		key->v4.peer_port = peer_port;
		key->v4.protocol = pkt->protocol;
		key->v4.pad[0] = key->v4.pad[1] = key->v4.pad[2] = 0;
	}
}

/* loupe_flow_miss(): the packet was a mapped flow's reply, rewritten: look it up again. */
#define LOUPE_FLOW_MISS_REVERSED 0x100

/*
 * One call site per map: a call site that may see either map gets no inlined lookup from
 * the verifier. The barrier after one call keeps clang from sinking both into one.
 */
static __always_inline struct loupe_flow *loupe_flow_lookup(bool ipv6,
							    const union loupe_any_flow_key *key)
{
	struct loupe_flow *flow;

	if (ipv6) {
		flow = bpf_map_lookup_elem(&loupe_flows6, &key->v6);
		LOUPE_BARRIER_VAR(flow);
		return flow;
	}
	return bpf_map_lookup_elem(&loupe_flows4, &key->v4);
}

static __always_inline long loupe_flow_create(bool ipv6, const union loupe_any_flow_key *key,
					      const struct loupe_flow *fresh)
{
	long err;

	if (ipv6) {
		err = bpf_map_update_elem(&loupe_flows6, &key->v6, fresh, BPF_NOEXIST);
		LOUPE_BARRIER_VAR(err);
		return err;
	}
	return bpf_map_update_elem(&loupe_flows4, &key->v4, fresh, BPF_NOEXIST);
}

static __always_inline void loupe_flow_account(struct loupe_flow *flow, __u8 dir, __u64 now,
					       __u32 len, __u8 tcp_flags)
{
	dir &= 1;
	flow->last_seen_ns = now;
	flow->packets[dir]++;
	flow->bytes[dir] += len;
	flow->tcp_flags[dir] |= tcp_flags;
}

/* FLOW_START, built in scratch memory: the stack is short (512 bytes for all frames). */
static __always_inline void loupe_flow_report_start(struct __sk_buff *skb,
						    const struct loupe_pkt *pkt, __u8 dir,
						    __u64 now, struct loupe_counters *cnt)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_event_flow *ev;

	if (!s) {
		cnt->events_lost[LOUPE_EV_FLOW_START]++;
		return;
	}
	ev = &s->ev.flow;
	loupe_event_hdr_fill(&ev->hdr, skb, pkt, LOUPE_EV_FLOW_START, dir, now);
	ev->tcp_flags = pkt->tcp_flags;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	loupe_event_submit(cnt, ev, sizeof(*ev), LOUPE_EV_FLOW_START);
}

/*
 * The flow table's slow path, out of line: the hot path then keeps neither its stack nor
 * its code, and the verifier checks it once (a global function). In replay mode a packet of
 * a flow known from its other side takes that side's direction; otherwise the flow is
 * created, FLOW_START reported and the flow judged by the policy in force (on this packet
 * when no rule needs L7). The packet is s->pkt. Returns the packet's direction,
 * or -1 when the table refused the entry (counted).
 */
__noinline int loupe_flow_miss(struct __sk_buff *skb, int dir, __u64 now)
{
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_scratch *s = loupe_scratch_get();
	const struct loupe_pkt *pkt;
	union loupe_any_flow_key *key;
	struct loupe_flow *fresh;
	bool ipv6, limited;
	int verdict;

	if (!s || !cnt || !skb)
		return -1;
	/* in scratch memory: the stack is short, and the calls below need theirs */
	key = &s->miss_key;
	fresh = &s->miss_flow;
	__builtin_memset(fresh, 0, sizeof(*fresh));
	pkt = &s->pkt;
	ipv6 = pkt->flags & LOUPE_EVF_IPV6;
	dir &= 1;

	/* a reply of a mapped flow comes from the real peer: back to the virtual, then retry */
	verdict = loupe_rewrite_reverse(skb, dir);
	if (verdict < 0) {
		cnt->rewrite_failed++;
		return -1;
	}
	if (verdict > 0) {
		cnt->rewritten[dir]++;
		return dir | LOUPE_FLOW_MISS_REVERSED;
	}

	if (loupe_cfg_replay) {
		/* a capture has no hooks: the flow's first packet decides who the pod is */
		loupe_flow_key_of(key, pkt, dir ^ 1);
		if (loupe_flow_lookup(ipv6, key))
			return dir ^ 1;
	}

	loupe_flow_key_of(key, pkt, dir);
	fresh->first_seen_ns = now;
	fresh->ifindex = skb->ifindex;
	fresh->ipv6 = ipv6;
	fresh->vlan_id = pkt->flags & LOUPE_EVF_VLAN ? pkt->vlan_id : LOUPE_VLAN_NONE;
	fresh->origin = dir;
	if (pkt->protocol == IPPROTO_TCP &&
	    (pkt->tcp_flags & (LOUPE_TCP_SYN | LOUPE_TCP_ACK)) == LOUPE_TCP_SYN) {
		fresh->client_seq = pkt->tcp_seq + 1;
		fresh->state = LOUPE_FLOW_SEQ_KNOWN;
	}
	if (loupe_flow_create(ipv6, key, fresh)) {
		/* lost a race with another CPU (then the entry is there), or no memory */
		if (!loupe_flow_lookup(ipv6, key)) {
			cnt->flow_create_failed++;
			return -1;
		}
		return dir;
	}
	cnt->flows_created++;
	loupe_flow_report_start(skb, pkt, dir, now, cnt);

	verdict = loupe_policy_judge(skb, dir, LOUPE_JUDGE_FIRST, now);
	/* metered when its pod has a limit: looked up only when the set in force has limits */
	limited = (s->pol.flags & LOUPE_POL_HAS_RATE_LIMITS) && loupe_rate_limited_pod(skb);
	if (LOUPE_JUDGED_VERDICT(verdict) != LOUPE_VERDICT_NONE || s->pol.rewrite || limited) {
		struct loupe_flow *flow = loupe_flow_lookup(ipv6, key);

		if (flow) {
			flow->verdict = LOUPE_JUDGED_VERDICT(verdict);
			flow->verdict_bit = LOUPE_JUDGED_BIT(verdict);
			loupe_rewrite_begin(s, flow, s->pol.rewrite, s->pol.slot, dir);
			if (limited)
				flow->state |= LOUPE_FLOW_RATE_LIMITED;
		}
	}
	return dir;
}

/*
 * Finds the flow of @pkt (creating it on a miss) and accounts the packet. @dir is in/out:
 * in replay mode a packet of a known flow takes that flow's direction. Returns the entry,
 * or NULL when the table refused a new one.
 */
static __always_inline struct loupe_flow *
loupe_flow_track(struct __sk_buff *skb, struct loupe_pkt *pkt, __u8 *dir, __u64 now)
{
	union loupe_any_flow_key key __attribute__((aligned(8)));
	bool ipv6 = pkt->flags & LOUPE_EVF_IPV6;
	struct loupe_flow *flow;
	int d;

	loupe_flow_key_of(&key, pkt, *dir);
	flow = loupe_flow_lookup(ipv6, &key);
	if (unlikely(!flow)) {
		struct loupe_scratch *s = loupe_scratch_get();

		if (!s)
			return NULL;
		s->pkt = *pkt; /* for the out-of-line slow path */
		d = loupe_flow_miss(skb, *dir, now);
		if (d < 0)
			return NULL;
		if (d & LOUPE_FLOW_MISS_REVERSED) {
			/* a mapped reply, now from the virtual address: its flow exists */
			*pkt = s->pkt;
			d &= 1;
			loupe_flow_key_of(&key, pkt, d);
			flow = loupe_flow_lookup(ipv6, &key);
			if (!flow) {
				d = loupe_flow_miss(skb, d, now);
				if (d < 0)
					return NULL;
			}
		}
		if (d != *dir) {
			*dir = d;
			loupe_flow_key_of(&key, pkt, *dir);
			flow = NULL;
		}
		if (!flow)
			flow = loupe_flow_lookup(ipv6, &key);
		if (!flow)
			return NULL;
	}
	loupe_flow_account(flow, *dir, now, loupe_wire_bytes(skb), pkt->tcp_flags);
	return flow;
}

/* Keeps what the policy judge said (LOUPE_JUDGED_*) in the flow. */
static __always_inline void loupe_flow_judged(struct loupe_flow *flow, int judged)
{
	__u8 verdict = LOUPE_JUDGED_VERDICT(judged);

	flow->verdict = verdict;
	if (verdict != LOUPE_VERDICT_PENDING)
		flow->verdict_bit = LOUPE_JUDGED_BIT(judged);
	if (judged & LOUPE_JUDGED_HELD_SET)
		flow->state |= LOUPE_FLOW_L7_HELD;
	if (judged & LOUPE_JUDGED_HELD_CLEAR)
		flow->state &= ~LOUPE_FLOW_L7_HELD;
	if (judged & LOUPE_JUDGED_TLS_SEEN)
		flow->state |= LOUPE_FLOW_TLS_SEEN;
}

#endif
