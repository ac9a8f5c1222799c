/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * L7 dispatch: which parser a payload deserves (from ports and four bytes), and the three
 * handlers that parse and report. Not for the parsing itself (l7_http.h, l7_tls.h,
 * l7_dns.h).
 */
#ifndef LOUPE_BPF_L7_REPORT_H
#define LOUPE_BPF_L7_REPORT_H

#include "lib/l7_http.h"
#include "lib/l7_tls.h"
#include "lib/l7_dns.h"

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
/* Sends the event built in s->ev: its header from s->pkt, then @size bytes in all. */
static __always_inline int loupe_l7_emit(struct __sk_buff *skb, struct loupe_scratch *s, __u16 kind,
					 int dir, __u64 now, __u64 size)
{
	loupe_event_hdr_fill(&s->ev.hdr, skb, &s->pkt, kind, dir, now);
	loupe_event_submit(loupe_counters_get(), &s->ev, size, kind);
	return LOUPE_L7_REPORTED;
}

/* Parses the HTTP request at the start of s->head (@head_len bytes) into s->ev.http. */
__noinline int loupe_l7_http_parse_head(struct __sk_buff *skb, __u32 head_len)
{
	struct loupe_scratch *s = loupe_scratch_get();

	if (!s || !skb || head_len == 0 || head_len > LOUPE_L7_BUF_MAX)
		return 0;
	return loupe_http_parse(skb, &s->pkt, s, head_len);
}

/* Parses the ClientHello at the start of s->head into s->ev.tls. */
__noinline int loupe_l7_tls_parse_head(struct __sk_buff *skb)
{
	struct loupe_scratch *s = loupe_scratch_get();

	if (!s || !skb)
		return 0;
	return loupe_tls_parse(skb, &s->pkt, s, &s->head);
}

static __always_inline int loupe_l7_emit_http(struct __sk_buff *skb, struct loupe_scratch *s,
					      int dir, __u64 now)
{
	return loupe_l7_emit(skb, s, LOUPE_EV_HTTP_REQUEST, dir, now,
			     loupe_record_size(offsetof(struct loupe_event_http, strings) + 1,
					       s->ev.http.path_len + s->ev.http.host_len,
					       sizeof(s->ev.http)));
}

static __always_inline int loupe_l7_emit_tls(struct __sk_buff *skb, struct loupe_scratch *s,
					     int dir, __u64 now)
{
	return loupe_l7_emit(skb, s, LOUPE_EV_TLS_CLIENT_HELLO, dir, now,
			     loupe_record_size(offsetof(struct loupe_event_tls, sni),
					       s->ev.tls.sni_len, sizeof(s->ev.tls)));
}

__noinline int loupe_l7_http(struct __sk_buff *skb, int dir, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 head_len;

	if (!s || !skb)
		return LOUPE_L7_NOTHING;
	head_len = loupe_l7_load_head(skb, &s->pkt, s, LOUPE_HTTP_SCAN_MAX);
	if (!head_len || !loupe_l7_http_parse_head(skb, head_len))
		return LOUPE_L7_NOTHING;
	return loupe_l7_emit_http(skb, s, dir, now);
}

/* @more: this segment continues a ClientHello being reassembled. */
__noinline int loupe_l7_tls(struct __sk_buff *skb, int more, int dir, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_flow_key key __attribute__((aligned(8)));
	struct loupe_tls_pending *pending;
	const struct loupe_pkt *pkt;

	if (!s || !skb)
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
		if (!loupe_tls_append(skb, pkt, pending, dir))
			return LOUPE_L7_PENDING;
		if (!loupe_tls_parse(skb, pkt, s, &pending->buf)) {
			bpf_map_delete_elem(&loupe_tls_pending, &key);
			return LOUPE_L7_NOTHING;
		}
		s->ev.tls.flags |= LOUPE_L7F_TLS_REASSEMBLED;
		bpf_map_delete_elem(&loupe_tls_pending, &key);
	}
	return loupe_l7_emit_tls(skb, s, dir, now);
}

__noinline int loupe_l7_dns(struct __sk_buff *skb, int dir, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 head_len;

	if (!s || !skb)
		return LOUPE_L7_NOTHING;
	head_len = loupe_l7_load_head(skb, &s->pkt, s, LOUPE_L7_BUF_MAX);
	if (!head_len || !loupe_dns_parse(skb, &s->pkt, s, head_len))
		return LOUPE_L7_NOTHING;
	return loupe_l7_emit(skb, s, LOUPE_EV_DNS_QUERY, dir, now,
			     loupe_record_size(offsetof(struct loupe_event_dns, qname),
					       s->ev.dns.qname_len, sizeof(s->ev.dns)));
}

/* Runs the handler of @kind on the packet in scratch and keeps the flow's TLS state. */
static __always_inline void loupe_l7_run(struct __sk_buff *skb, enum loupe_l7_kind kind,
					 struct loupe_flow *flow, __u8 dir, __u64 now)
{
	int ret;

	switch (kind) {
	case LOUPE_L7_HTTP:
		loupe_l7_http(skb, dir, now);
		return;
	case LOUPE_L7_DNS:
		loupe_l7_dns(skb, dir, now);
		return;
	case LOUPE_L7_TLS:
	case LOUPE_L7_TLS_MORE:
		ret = loupe_l7_tls(skb, kind == LOUPE_L7_TLS_MORE, dir, now);
		break;
	default:
		return;
	}
	if (!flow)
		return;
	flow->state &= ~LOUPE_FLOW_TLS_PENDING;
	if (ret == LOUPE_L7_PENDING)
		flow->state |= LOUPE_FLOW_TLS_PENDING;
	else if (ret == LOUPE_L7_REPORTED)
		flow->state |= LOUPE_FLOW_TLS_SEEN;
}

#endif
