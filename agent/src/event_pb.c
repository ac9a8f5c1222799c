// SPDX-License-Identifier: Apache-2.0
/*
 * struct loupe_event -> loupe.v1.Event and its JSON (see event_pb.h). Sub-messages live in
 * struct loupe_event_pb and strings are borrowed, so a conversion allocates nothing; only
 * the JSON text is allocated. The JSON here is the reference that event_json.c's direct
 * writer reproduces. Not for the wire transport (rpc) nor for decoding records.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "event_pb.h"
#include "pbjson.h"

_Static_assert((int)LOUPE__V1__EVENT_KIND__AGENT == LOUPE_EV_AGENT &&
		       (int)LOUPE__V1__EVENT_KIND__FLOW_START == LOUPE_EV_FLOW_START,
	       "loupe.v1.EventKind mirrors enum loupe_event_kind");
_Static_assert((int)LOUPE__V1__VERDICT_ACTION__AUDIT == LOUPE_EVENT_ACTION_AUDIT &&
		       (int)LOUPE__V1__VERDICT_REASON__BOUND_EXCEEDED ==
			       LOUPE_EVENT_REASON_BOUND_EXCEEDED &&
		       (int)LOUPE__V1__VERDICT_REASON__DEFAULT_ACTION ==
			       LOUPE_EVENT_REASON_DEFAULT_ACTION,
	       "loupe.v1.VerdictAction and VerdictReason mirror event.h's enums");

#define NSEC_PER_SEC 1000000000ULL

static void set_timestamp(Google__Protobuf__Timestamp *ts, uint64_t ns)
{
	google__protobuf__timestamp__init(ts);
	ts->seconds = (int64_t)(ns / NSEC_PER_SEC);
	ts->nanos = (int32_t)(ns % NSEC_PER_SEC);
}

static void set_counters(Loupe__V1__FlowCounters *c, const struct loupe_event_flow_dir *d)
{
	loupe__v1__flow_counters__init(c);
	c->packets = d->packets;
	c->bytes = d->bytes;
	c->tcp_flags = d->tcp_flags;
}

static bool counters_zero(const struct loupe_event_flow_dir *d)
{
	return !d->packets && !d->bytes && !d->tcp_flags;
}

static void set_flow(const struct loupe_event *ev, struct loupe_event_pb *pb)
{
	const struct loupe_event_flow_dir *eg = &ev->flow.dir[LOUPE_DIR_POD_EGRESS];
	const struct loupe_event_flow_dir *in = &ev->flow.dir[LOUPE_DIR_POD_INGRESS];

	loupe__v1__flow__init(&pb->flow);
	/* FLOW_END reports both directions, zero included; FLOW_START only what it has */
	if (ev->kind == LOUPE_EV_FLOW_END || !counters_zero(eg)) {
		set_counters(&pb->egress, eg);
		pb->flow.egress = &pb->egress;
	}
	if (ev->kind == LOUPE_EV_FLOW_END || !counters_zero(in)) {
		set_counters(&pb->ingress, in);
		pb->flow.ingress = &pb->ingress;
	}
	if (ev->flow.first_seen_ns) {
		set_timestamp(&pb->first_seen, ev->flow.first_seen_ns);
		pb->flow.first_seen = &pb->first_seen;
	}
	if (ev->flow.last_seen_ns) {
		set_timestamp(&pb->last_seen, ev->flow.last_seen_ns);
		pb->flow.last_seen = &pb->last_seen;
	}
	if (ev->flow.first_seen_ns && ev->flow.last_seen_ns > ev->flow.first_seen_ns)
		pb->flow.duration_ns = ev->flow.last_seen_ns - ev->flow.first_seen_ns;
	pb->flow.tcp_flags = ev->flow.tcp_flags;
	pb->flow.end_reason = (Loupe__V1__FlowEndReason)ev->flow.end_reason;
	pb->msg.flow = &pb->flow;
}

static Loupe__V1__Direction direction_pb(int direction)
{
	if (direction == LOUPE_DIR_POD_EGRESS)
		return LOUPE__V1__DIRECTION__POD_EGRESS;
	if (direction == LOUPE_DIR_POD_INGRESS)
		return LOUPE__V1__DIRECTION__POD_INGRESS;
	return LOUPE__V1__DIRECTION__DIRECTION_UNSPECIFIED;
}

/* A verdict and the one name it was decided on, where the L7 events keep that name. */
static void set_verdict(const struct loupe_event *ev, struct loupe_event_pb *pb)
{
	switch (ev->verdict.subject) {
	case LOUPE_VERDICT_SUBJECT_HTTP_HOST:
		loupe__v1__http__init(&pb->http);
		pb->http.host = (char *)ev->http.host;
		pb->http.host_truncated = ev->http.host_truncated;
		pb->msg.http = &pb->http;
		break;
	case LOUPE_VERDICT_SUBJECT_TLS_SNI:
		loupe__v1__tls__init(&pb->tls);
		pb->tls.sni = (char *)ev->tls.sni;
		pb->msg.tls = &pb->tls;
		break;
	case LOUPE_VERDICT_SUBJECT_DNS_NAME:
		loupe__v1__dns__init(&pb->dns);
		pb->dns.qname = (char *)ev->dns.qname;
		pb->msg.dns = &pb->dns;
		break;
	default:
		break;
	}
	loupe__v1__verdict__init(&pb->verdict);
	/* numbers pbjson does not name are written as numbers, as for the other enums */
	pb->verdict.action = (Loupe__V1__VerdictAction)ev->verdict.action;
	pb->verdict.policy = (char *)ev->verdict.policy;
	pb->verdict.rule = (char *)ev->verdict.rule;
	pb->verdict.generation = ev->verdict.generation;
	pb->verdict.reason = (Loupe__V1__VerdictReason)ev->verdict.reason;
	pb->verdict.origin = direction_pb(ev->verdict.origin);
	pb->msg.verdict = &pb->verdict;
}

_Static_assert((int)LOUPE__V1__REWRITE_ACTION__MAP_TO == 1 &&
		       (int)LOUPE__V1__REWRITE_ACTION__MASK_HEADERS == 5 && LOUPE_RW_MASK == 1 << 4,
	       "loupe.v1.RewriteAction is the bit of enum loupe_rewrite_actions plus one");

static int set_rewrite(const struct loupe_event *ev, struct loupe_event_pb *pb)
{
	Loupe__V1__Rewrite *r = &pb->rewrite;
	int err;

	loupe__v1__rewrite__init(r);
	for (int i = 0; i < 32; i++) {
		if (ev->rewrite.actions >> i & 1)
			pb->rw_actions[r->n_actions++] = (Loupe__V1__RewriteAction)(i + 1);
	}
	r->actions = pb->rw_actions;
	r->policy = (char *)ev->rewrite.policy;
	r->name = (char *)ev->rewrite.name;
	r->generation = ev->rewrite.generation;
	r->index = ev->rewrite.index;
	if (ev->rewrite.actions & LOUPE_RW_MAP) {
		err = loupe_event_format_other_addr(ev, ev->rewrite.new_addr, pb->rw_new_ip,
						    sizeof(pb->rw_new_ip));
		if (err < 0)
			return err;
		r->new_ip = pb->rw_new_ip;
	}
	r->new_port = ev->rewrite.new_port;
	r->dscp = ev->rewrite.dscp;
	r->vlan_id = ev->rewrite.vlan_id;
	for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
		if (!(ev->rewrite.masked_bits >> i & 1))
			continue;
		pb->rw_masked_idx[r->n_masked_header_indexes++] = (uint32_t)i;
		if (ev->rewrite.masked[i][0])
			pb->rw_masked[r->n_masked_headers++] = (char *)ev->rewrite.masked[i];
	}
	r->masked_headers = pb->rw_masked;
	r->masked_header_indexes = pb->rw_masked_idx;
	pb->msg.rewrite = r;
	return 0;
}

/* The protobuf-c structs take char *: the borrowed strings are only ever read through them. */
static int set_kind_message(const struct loupe_event *ev, struct loupe_event_pb *pb)
{
	switch (ev->kind) {
	case LOUPE_EV_HTTP_REQUEST:
		loupe__v1__http__init(&pb->http);
		pb->http.method = (char *)ev->http.method;
		pb->http.path = (char *)ev->http.path;
		pb->http.host = (char *)ev->http.host;
		pb->http.path_truncated = ev->http.path_truncated;
		pb->http.host_truncated = ev->http.host_truncated;
		pb->msg.http = &pb->http;
		break;
	case LOUPE_EV_TLS_CLIENT_HELLO:
		loupe__v1__tls__init(&pb->tls);
		pb->tls.sni = (char *)ev->tls.sni;
		pb->tls.version = ev->tls.version;
		pb->tls.legacy_version = ev->tls.legacy_version;
		pb->tls.reassembled = ev->tls.reassembled;
		for (int i = 0; i < ev->tls.alpn_count; i++)
			pb->alpn[i] = (char *)ev->tls.alpn[i];
		pb->tls.n_alpn = (size_t)ev->tls.alpn_count;
		pb->tls.alpn = pb->alpn;
		pb->msg.tls = &pb->tls;
		break;
	case LOUPE_EV_DNS_QUERY:
		loupe__v1__dns__init(&pb->dns);
		pb->dns.qname = (char *)ev->dns.qname;
		pb->dns.qtype = ev->dns.qtype;
		pb->dns.qclass = ev->dns.qclass;
		pb->dns.id = ev->dns.id;
		pb->dns.name_invalid = ev->dns.name_invalid;
		pb->dns.tcp = ev->dns.tcp;
		pb->msg.dns = &pb->dns;
		break;
	case LOUPE_EV_FLOW_START:
	case LOUPE_EV_FLOW_END:
		set_flow(ev, pb);
		break;
	case LOUPE_EV_POLICY_VERDICT:
		set_verdict(ev, pb);
		break;
	case LOUPE_EV_LOST:
		loupe__v1__lost__init(&pb->lost);
		pb->lost.count = ev->lost.count;
		pb->lost.kind = (Loupe__V1__EventKind)ev->lost.kind;
		pb->msg.lost = &pb->lost;
		break;
	case LOUPE_EV_REWRITE:
		return set_rewrite(ev, pb);
	case LOUPE_EV_RATE_LIMITED:
		loupe__v1__rate_limited__init(&pb->rate_limited);
		pb->rate_limited.dropped = ev->rate_limited.dropped;
		pb->rate_limited.bytes_per_second = ev->rate_limited.bytes_per_sec;
		pb->rate_limited.burst = ev->rate_limited.burst;
		pb->msg.rate_limited = &pb->rate_limited;
		break;
	default:
		break;
	}
	return 0;
}

int loupe_event_to_pb(const struct loupe_event *ev, struct loupe_event_pb *ret_pb)
{
	Loupe__V1__Event *m = &ret_pb->msg;
	int err;

	memset(ret_pb, 0, sizeof(*ret_pb));
	loupe__v1__event__init(m);
	if (!loupe_event_strings_valid(ev)) {
		err = -EINVAL;
		goto out;
	}

	m->seq = ev->seq;
	set_timestamp(&ret_pb->time, ev->time_ns);
	m->time = &ret_pb->time;
	m->node = (char *)ev->node;
	m->kind = (Loupe__V1__EventKind)ev->kind;
	if (ev->ifname[0] || ev->ifindex) {
		loupe__v1__interface__init(&ret_pb->iface);
		ret_pb->iface.name = (char *)ev->ifname;
		ret_pb->iface.ifindex = ev->ifindex;
		m->interface = &ret_pb->iface;
	}
	m->direction = direction_pb(ev->direction);

	if (ev->has_ip) {
		err = loupe_event_format_addr(ev, true, ret_pb->src_ip, sizeof(ret_pb->src_ip));
		if (err < 0)
			goto out;
		err = loupe_event_format_addr(ev, false, ret_pb->dst_ip, sizeof(ret_pb->dst_ip));
		if (err < 0)
			goto out;
		m->src_ip = ret_pb->src_ip;
		m->dst_ip = ret_pb->dst_ip;
		m->src_port = ev->sport;
		m->dst_port = ev->dport;
	}
	/* IPPROTO_* numbers: pbjson writes a number for one the enum does not name */
	m->protocol = (Loupe__V1__Protocol)ev->protocol;
	if (ev->has_vlan) {
		m->has_vlan = true;
		m->vlan_id = ev->vlan_id;
	}
	if (ev->has_inner_vlan) {
		m->has_inner_vlan = true;
		m->inner_vlan_id = ev->inner_vlan_id;
	}
	if (ev->pod_ip_count > 0 && ev->pod_ip_count <= LOUPE_EVENT_POD_IPS_MAX) {
		loupe__v1__pod__init(&ret_pb->pod);
		for (int i = 0; i < ev->pod_ip_count; i++) {
			const uint8_t *a = ev->pod_ips[i].addr;

			if (!inet_ntop(ev->pod_ips[i].ipv6 ? AF_INET6 : AF_INET,
				       ev->pod_ips[i].ipv6 ? a : a + 12, ret_pb->pod_ip_text[i],
				       sizeof(ret_pb->pod_ip_text[i]))) {
				err = -errno;
				goto out;
			}
			ret_pb->pod_ips[i] = ret_pb->pod_ip_text[i];
		}
		ret_pb->pod.n_ips = ev->pod_ip_count;
		ret_pb->pod.ips = ret_pb->pod_ips;
		m->pod = &ret_pb->pod;
	}
	err = set_kind_message(ev, ret_pb);
out:
	if (err < 0) {
		memset(ret_pb, 0, sizeof(*ret_pb));
		loupe__v1__event__init(m);
	}
	return err;
}

char *loupe_event_to_json_pb(const struct loupe_event *ev)
{
	struct loupe_event_pb pb;
	int err;

	err = loupe_event_to_pb(ev, &pb);
	if (err < 0) {
		errno = -err;
		return NULL;
	}
	return loupe_pbjson_to_string(&pb.msg.base);
}
