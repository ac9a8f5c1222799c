// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * loupe's TC programs for the host side of a pod's veth: clsact ingress sees what the pod
 * sends, clsact egress what it receives. Parse, track the flow, read the first bytes of L7,
 * report. Forwarding is not changed: every packet gets "continue".
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/events.h"
#include "lib/flow.h"
#include "lib/l7_http.h"
#include "lib/l7_tls.h"
#include "lib/l7_dns.h"

const volatile __u8 loupe_cfg_replay = 0;
const volatile __u8 loupe_cfg_coarse_clock = 0;

enum loupe_l7_kind {
	LOUPE_L7_NONE,
	LOUPE_L7_HTTP,
	LOUPE_L7_TLS,
	LOUPE_L7_TLS_MORE, /* the next segment of a ClientHello being reassembled */
	LOUPE_L7_DNS,
};

/* What an L7 handler did, for the flow's state. */
enum loupe_l7_result {
	LOUPE_L7_NOTHING = 0,
	LOUPE_L7_REPORTED = 1,
	LOUPE_L7_PENDING = 2, /* part of a message: waiting for the next segment */
};

/* The first four payload bytes, little-endian; 0 when there are fewer. */
static __always_inline __u32 loupe_payload_first4(struct __sk_buff *skb,
						  const struct loupe_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 off = pkt->payload_off;
	__u32 v = 0;

	__u8 *p;

	if (pkt->payload_len < 4 || off > 0x3fff)
		return 0;
	p = data + off;
	if ((void *)(p + 4) <= data_end)
		return *(__u32 *)p;
	if (bpf_skb_load_bytes(skb, off, &v, 4))
		return 0;
	return v;
}

/* Which parser, if any, the payload deserves: decided from ports and four bytes. */
static __always_inline enum loupe_l7_kind
loupe_l7_classify(struct __sk_buff *skb, const struct loupe_pkt *pkt, const struct loupe_flow *flow)
{
	bool dns_port =
		pkt->sport == bpf_htons(LOUPE_DNS_PORT) || pkt->dport == bpf_htons(LOUPE_DNS_PORT);
	__u32 first4;

	if (!pkt->has_l4 || pkt->payload_len == 0)
		return LOUPE_L7_NONE;
	if (pkt->protocol == IPPROTO_UDP)
		return dns_port ? LOUPE_L7_DNS : LOUPE_L7_NONE;
	if (pkt->protocol != IPPROTO_TCP)
		return LOUPE_L7_NONE;
	if (flow && (flow->state & (LOUPE_FLOW_TLS_SEEN | LOUPE_FLOW_TLS_PENDING))) {
		if (flow->state & LOUPE_FLOW_TLS_SEEN)
			return LOUPE_L7_NONE; /* the rest of the connection is ciphertext */
		return LOUPE_L7_TLS_MORE;
	}
	if (dns_port)
		return LOUPE_L7_DNS;
	first4 = loupe_payload_first4(skb, pkt);
	if (loupe_http_maybe_request(first4))
		return LOUPE_L7_HTTP;
	if (loupe_tls_maybe_client_hello(first4))
		return LOUPE_L7_TLS;
	return LOUPE_L7_NONE;
}

/*
 * The L7 handlers are global functions: the verifier checks each once, on its own, instead
 * of once for every state a caller reaches it in (and instead of once for every path through
 * a shared tail). The packet comes through scratch memory (s->pkt) for the same reason.
 */
__noinline int loupe_l7_http(struct __sk_buff *skb, int dir, __u64 now)
{
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_scratch *s = loupe_scratch_get();
	const struct loupe_pkt *pkt;
	__u32 head_len;

	if (!s || !cnt || !skb)
		return LOUPE_L7_NOTHING;
	pkt = &s->pkt;
	head_len = loupe_l7_load_head(skb, pkt, s, LOUPE_HTTP_SCAN_MAX);
	if (!head_len || !loupe_http_parse(skb, pkt, s, head_len))
		return LOUPE_L7_NOTHING;
	loupe_event_hdr_fill(&s->ev.hdr, skb, pkt, LOUPE_EV_HTTP_REQUEST, dir, now);
	loupe_event_submit(cnt, &s->ev.http,
			   loupe_record_size(offsetof(struct loupe_event_http, strings) + 1,
					     s->ev.http.path_len + s->ev.http.host_len,
					     sizeof(s->ev.http)),
			   LOUPE_EV_HTTP_REQUEST);
	return LOUPE_L7_REPORTED;
}

/* @more: this segment continues a ClientHello being reassembled. */
__noinline int loupe_l7_tls(struct __sk_buff *skb, int more, int dir, __u64 now)
{
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_flow_key key __attribute__((aligned(8)));
	struct loupe_tls_pending *pending;
	const struct loupe_pkt *pkt;

	if (!s || !cnt || !skb)
		return LOUPE_L7_NOTHING;
	pkt = &s->pkt;

	if (!more) {
		if (!loupe_l7_load_head(skb, pkt, s, LOUPE_L7_BUF_MAX))
			return LOUPE_L7_NOTHING;
		if (loupe_tls_start_pending(skb, pkt, s, dir))
			return LOUPE_L7_PENDING;
		if (!loupe_tls_parse(skb, pkt, s, &s->head))
			return LOUPE_L7_NOTHING;
	} else {
		loupe_tls_pending_key(&key, pkt, dir);
		pending = bpf_map_lookup_elem(&loupe_tls_pending, &key);
		if (!pending)
			return LOUPE_L7_NOTHING; /* evicted: give up on this ClientHello */
		if (!loupe_tls_append(skb, pkt, pending))
			return LOUPE_L7_PENDING;
		if (!loupe_tls_parse(skb, pkt, s, &pending->buf)) {
			bpf_map_delete_elem(&loupe_tls_pending, &key);
			return LOUPE_L7_NOTHING;
		}
		s->ev.tls.flags |= LOUPE_L7F_TLS_REASSEMBLED;
		bpf_map_delete_elem(&loupe_tls_pending, &key);
	}
	loupe_event_hdr_fill(&s->ev.hdr, skb, pkt, LOUPE_EV_TLS_CLIENT_HELLO, dir, now);
	loupe_event_submit(cnt, &s->ev.tls,
			   loupe_record_size(offsetof(struct loupe_event_tls, sni),
					     s->ev.tls.sni_len, sizeof(s->ev.tls)),
			   LOUPE_EV_TLS_CLIENT_HELLO);
	return LOUPE_L7_REPORTED;
}

__noinline int loupe_l7_dns(struct __sk_buff *skb, int dir, __u64 now)
{
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_scratch *s = loupe_scratch_get();
	const struct loupe_pkt *pkt;
	__u32 head_len;

	if (!s || !cnt || !skb)
		return LOUPE_L7_NOTHING;
	pkt = &s->pkt;
	head_len = loupe_l7_load_head(skb, pkt, s, LOUPE_L7_BUF_MAX);
	if (!head_len || !loupe_dns_parse(skb, pkt, s, head_len))
		return LOUPE_L7_NOTHING;
	loupe_event_hdr_fill(&s->ev.hdr, skb, pkt, LOUPE_EV_DNS_QUERY, dir, now);
	loupe_event_submit(cnt, &s->ev.dns,
			   loupe_record_size(offsetof(struct loupe_event_dns, qname),
					     s->ev.dns.qname_len, sizeof(s->ev.dns)),
			   LOUPE_EV_DNS_QUERY);
	return LOUPE_L7_REPORTED;
}

static __always_inline int loupe_handle(struct __sk_buff *skb, __u8 dir)
{
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_pkt stack_pkt __attribute__((aligned(8))) = {};
	struct loupe_pkt *pkt = &stack_pkt;
	enum loupe_l7_kind kind;
	struct loupe_flow *flow;
	__u64 now;
	int ret;

	if (!cnt || !s)
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
	kind = loupe_l7_classify(skb, pkt, flow);
	if (kind == LOUPE_L7_NONE)
		goto count;
	/* the L7 handlers are global functions: the packet goes to them through scratch */
	s->pkt = stack_pkt;
	switch (kind) {
	case LOUPE_L7_HTTP:
		ret = loupe_l7_http(skb, dir, now);
		break;
	case LOUPE_L7_TLS:
	case LOUPE_L7_TLS_MORE:
		ret = loupe_l7_tls(skb, kind == LOUPE_L7_TLS_MORE, dir, now);
		break;
	default:
		ret = loupe_l7_dns(skb, dir, now);
		break;
	}
	if (flow && (kind == LOUPE_L7_TLS || kind == LOUPE_L7_TLS_MORE)) {
		flow->state &= ~LOUPE_FLOW_TLS_PENDING;
		if (ret == LOUPE_L7_PENDING)
			flow->state |= LOUPE_FLOW_TLS_PENDING;
		else if (ret == LOUPE_L7_REPORTED)
			flow->state |= LOUPE_FLOW_TLS_SEEN;
	}
count:
	dir &= 1;
	cnt->packets[dir]++;
	cnt->bytes[dir] += loupe_wire_bytes(skb);
	return LOUPE_TC_CONTINUE;
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
