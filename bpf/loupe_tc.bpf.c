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
		goto count;
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
