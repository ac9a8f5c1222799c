// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * loupe's TC programs for the host side of a pod's veth: clsact ingress sees what the pod
 * sends, clsact egress what it receives. Parse, track the flow, judge it by the policy in
 * force, read the first bytes of L7, report. A packet of a denied flow is dropped; every
 * other gets "continue".
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/events.h"
#include "lib/flow.h"

const volatile __u8 loupe_cfg_replay = 0;
const volatile __u8 loupe_cfg_coarse_clock = 0;

enum {
	LOUPE_REWRITE_PASS,
	LOUPE_REWRITE_DROP,
	LOUPE_REWRITE_RATE_DROP
};

/* A flow with a rate-limited pod or a rewrite: meter the packet, then change it. */
static __always_inline int loupe_handle_rewrite(struct __sk_buff *skb, struct loupe_flow *flow,
						const struct loupe_pkt *pkt, __u8 dir, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	int reported;

	if (!s)
		return LOUPE_REWRITE_PASS;
	s->pkt = *pkt;
	if ((flow->state & LOUPE_FLOW_RATE_LIMITED) && loupe_rate_check(skb, dir, now))
		return LOUPE_REWRITE_RATE_DROP;
	if (!flow->rw_actions)
		return LOUPE_REWRITE_PASS;
	s->rw.flow_actions = flow->rw_actions;
	s->rw.flow_rewrite = flow->rewrite;
	s->rw.flow_slot = flow->rewrite_slot;
	s->rw.flow_generation = flow->rewrite_generation;
	s->rw.flow_port = flow->rw_port;
	s->rw.flow_vlan_id = flow->rw_vlan_id;
	s->rw.flow_dscp = flow->rw_dscp;
	__builtin_memcpy(s->rw.flow_addr, flow->rw_addr, 16);
	reported = loupe_rewrite_apply(skb, dir, flow->origin, flow->rewrite_reported, now);
	if (reported < 0)
		return LOUPE_REWRITE_DROP;
	flow->rewrite_reported = reported;
	return LOUPE_REWRITE_PASS;
}

static __always_inline int loupe_handle(struct __sk_buff *skb, __u8 dir)
{
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_pkt stack_pkt __attribute__((aligned(8))) = {};
	struct loupe_pkt *pkt = &stack_pkt;
	enum loupe_l7_kind kind;
	struct loupe_flow *flow;
	__u64 now;
	int ret;

	if (!cnt)
		return LOUPE_TC_CONTINUE;
	ret = loupe_parse(skb, pkt);
	if (ret != LOUPE_PARSED_IP) {
		if (ret < 0)
			loupe_count_parse_error(cnt, -ret);
		else
			cnt->non_ip[dir & 1]++;
		goto count;
	}
	if (pkt->later_fragment) {
		cnt->fragments[dir & 1]++;
		goto count;
	}

	now = loupe_now(skb);
	flow = loupe_flow_track(skb, pkt, &dir, now);
	if (flow && unlikely(flow->verdict == LOUPE_VERDICT_DENY))
		goto drop;
	if (flow && unlikely(flow->verdict == LOUPE_VERDICT_PENDING) && dir == flow->origin &&
	    pkt->payload_len) {
		/* the request decides: judged on the segment that completes it */
		struct loupe_scratch *s = loupe_scratch_get();
		int judged;

		if (!s)
			goto count;
		s->pkt = stack_pkt;
		judged = loupe_policy_on_payload(skb, dir, flow->state, flow->client_seq, now);
		loupe_flow_judged(flow, judged);
		if ((judged & LOUPE_JUDGED_DROP) || flow->verdict == LOUPE_VERDICT_DENY)
			goto drop;
		goto rewrite; /* its L7 was read by the judge */
	}
	kind = loupe_l7_classify(skb, pkt, flow);
	if (kind != LOUPE_L7_NONE) {
		/* the L7 handlers are global functions: the packet goes to them in scratch */
		struct loupe_scratch *s = loupe_scratch_get();

		if (s) {
			s->pkt = stack_pkt;
			loupe_l7_run(skb, kind, flow, dir, now);
		}
	}
rewrite:
	if (flow && unlikely(flow->state & LOUPE_FLOW_RATE_LIMITED || flow->rw_actions)) {
		if (loupe_handle_rewrite(skb, flow, &stack_pkt, dir, now) != LOUPE_REWRITE_PASS)
			goto dropped; /* counted as rate-limited or as a failed rewrite */
	}
count:
	dir &= 1;
	cnt->packets[dir]++;
	cnt->bytes[dir] += loupe_wire_bytes(skb);
	return LOUPE_TC_CONTINUE;
drop:
	dir &= 1;
	cnt->packets[dir]++;
	cnt->bytes[dir] += loupe_wire_bytes(skb);
	cnt->policy_dropped[dir]++;
	return TC_ACT_SHOT;
dropped:
	dir &= 1;
	cnt->packets[dir]++;
	cnt->bytes[dir] += loupe_wire_bytes(skb);
	return TC_ACT_SHOT;
}

SEC("tc")
int loupe_pod_egress(struct __sk_buff *skb)
{
	return loupe_handle(skb, LOUPE_DIR_POD_EGRESS);
}

SEC("tc")
int loupe_pod_ingress(struct __sk_buff *skb)
{
	return loupe_handle(skb, LOUPE_DIR_POD_INGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
