/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow table: one entry per connection as one pod sees it, both directions together,
 * keyed from the pod's side. Creates entries (and FLOW_START events) and keeps per-direction
 * counters. Not for L7 or policy.
 */
#ifndef LOUPE_BPF_FLOW_H
#define LOUPE_BPF_FLOW_H

#include "lib/events.h"

/* The flow key of @pkt as seen by a pod for which the packet goes in direction @dir. */
static __always_inline void loupe_flow_key_of(struct loupe_flow_key *key,
					      const struct loupe_pkt *pkt, __u8 dir)
{
	const union loupe_addr *pod = dir == LOUPE_DIR_POD_EGRESS ? &pkt->saddr : &pkt->daddr;
	const union loupe_addr *peer = dir == LOUPE_DIR_POD_EGRESS ? &pkt->daddr : &pkt->saddr;

	__builtin_memcpy(key->pod_addr, pod->b, 16);
	__builtin_memcpy(key->peer_addr, peer->b, 16);
	key->pod_port = dir == LOUPE_DIR_POD_EGRESS ? pkt->sport : pkt->dport;
	key->peer_port = dir == LOUPE_DIR_POD_EGRESS ? pkt->dport : pkt->sport;
	key->protocol = pkt->protocol;
	key->pad[0] = 0;
	key->pad[1] = 0;
	key->pad[2] = 0;
}

static __always_inline void loupe_flow_account(struct loupe_flow *flow, __u8 dir, __u64 now,
					       __u32 len, __u8 tcp_flags)
{
	if (dir >= LOUPE_DIR_MAX)
		return;
	flow->last_seen_ns = now;
	flow->packets[dir]++;
	flow->bytes[dir] += len;
	flow->tcp_flags[dir] |= tcp_flags;
}

/*
 * Finds the flow of @pkt, or creates it (and reports FLOW_START). @dir is in/out: in replay
 * mode a packet of a known flow takes that flow's direction. Returns the entry, or NULL when
 * the table refused a new entry (counted).
 */
static __always_inline struct loupe_flow *loupe_flow_track(struct __sk_buff *skb,
							   const struct loupe_pkt *pkt, __u8 *dir,
							   __u64 now, struct loupe_counters *cnt,
							   struct loupe_flow_key *key)
{
	struct loupe_flow *flow;
	struct loupe_flow fresh = {};

	loupe_flow_key_of(key, pkt, *dir);
	flow = bpf_map_lookup_elem(&loupe_flows, key);
	if (likely(flow))
		goto account;

	if (loupe_cfg_replay) {
		/* a capture has no hooks: the flow's first packet decides who the pod is */
		__u8 other = *dir ^ 1;

		loupe_flow_key_of(key, pkt, other);
		flow = bpf_map_lookup_elem(&loupe_flows, key);
		if (flow) {
			*dir = other;
			goto account;
		}
		loupe_flow_key_of(key, pkt, *dir);
	}

	fresh.first_seen_ns = now;
	fresh.ifindex = skb->ifindex;
	fresh.ipv6 = !!(pkt->flags & LOUPE_EVF_IPV6);
	fresh.vlan_id = pkt->flags & LOUPE_EVF_VLAN ? pkt->vlan_id : LOUPE_VLAN_NONE;
	if (bpf_map_update_elem(&loupe_flows, key, &fresh, BPF_NOEXIST)) {
		/* lost a race with another CPU, or no memory */
		flow = bpf_map_lookup_elem(&loupe_flows, key);
		if (!flow) {
			if (cnt)
				cnt->flow_create_failed++;
			return NULL;
		}
		goto account;
	}
	flow = bpf_map_lookup_elem(&loupe_flows, key);
	if (!flow)
		return NULL;
	if (cnt)
		cnt->flows_created++;
	{
		struct loupe_event_flow ev = {};

		loupe_event_hdr_fill(&ev.hdr, skb, pkt, LOUPE_EV_FLOW_START, *dir, now);
		ev.tcp_flags = pkt->tcp_flags;
		loupe_event_submit(cnt, &ev, sizeof(ev), LOUPE_EV_FLOW_START);
	}
account:
	loupe_flow_account(flow, *dir, now, skb->len, pkt->tcp_flags);
	return flow;
}

#endif
