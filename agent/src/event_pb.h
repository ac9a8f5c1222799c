/* SPDX-License-Identifier: Apache-2.0 */
/*
 * struct loupe_event -> loupe.v1.Event (protobuf-c), and its canonical JSON. The rpc side:
 * protobuf-c types stay behind this header and proto/, the rest of the agent sees only
 * event.h. Not for decoding records (event.c) nor for the table output.
 */
#ifndef LOUPE_EVENT_PB_H
#define LOUPE_EVENT_PB_H

#include "event.h"
#include "event_json.h"
#include "loupe/v1/event.pb-c.h"

/*
 * A loupe.v1.Event and every sub-message and string it points to, in one block (on the
 * stack is fine): nothing to free. .msg borrows the strings of the source event, so it is
 * valid while both live; it points into itself, so the block is not to be copied.
 */
struct loupe_event_pb {
	Loupe__V1__Event msg;
	Google__Protobuf__Timestamp time;
	Loupe__V1__Interface iface;
	Loupe__V1__Http http;
	Loupe__V1__Tls tls;
	Loupe__V1__Dns dns;
	Loupe__V1__Flow flow;
	Loupe__V1__FlowCounters egress;
	Loupe__V1__FlowCounters ingress;
	Google__Protobuf__Timestamp first_seen;
	Google__Protobuf__Timestamp last_seen;
	Loupe__V1__Lost lost;
	Loupe__V1__Verdict verdict;
	char *alpn[LOUPE_EVENT_ALPN_MAX];
	char src_ip[LOUPE_EVENT_ADDR_MAX];
	char dst_ip[LOUPE_EVENT_ADDR_MAX];
	Loupe__V1__Pod pod;
	char *pod_ips[LOUPE_EVENT_POD_IPS_MAX];
	char pod_ip_text[LOUPE_EVENT_POD_IPS_MAX][LOUPE_EVENT_ADDR_MAX];
	Loupe__V1__Rewrite rewrite;
	Loupe__V1__RewriteAction rw_actions[32]; /* one per bit of rewrite.actions */
	char rw_new_ip[LOUPE_EVENT_ADDR_MAX];
	char *rw_masked[LOUPE_MASK_HEADERS_MAX];
	uint32_t rw_masked_idx[LOUPE_MASK_HEADERS_MAX];
	Loupe__V1__RateLimited rate_limited;
};

/*
 * Fills @ret_pb from @ev: common fields always, the sub-message of the event's kind
 * (http, tls, dns, flow for FLOW_START/FLOW_END, lost; verdict for POLICY_VERDICT, with the
 * one of http.host, tls.sni and dns.qname its subject names; rewrite, rate_limited). A
 * REWRITE's actions are RewriteAction bit + 1 for each bit set; masked_headers holds the names
 * of the masked bits that have one, masked_header_indexes every masked bit. Returns 0, or
 * -EINVAL for an event
 * whose strings are not terminated within their arrays or whose ALPN count is out of range.
 */
int loupe_event_to_pb(const struct loupe_event *ev, struct loupe_event_pb *ret_pb);

/*
 * @ev as one JSON line through loupe_event_to_pb() and pbjson: the generic path, the
 * reference loupe_event_to_json() is tested against (slower: a json-c tree per event). A
 * malloc'd string, or NULL with errno set.
 */
char *loupe_event_to_json_pb(const struct loupe_event *ev);

#endif /* LOUPE_EVENT_PB_H */
