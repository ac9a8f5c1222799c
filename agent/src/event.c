// SPDX-License-Identifier: Apache-2.0
/*
 * Ring buffer records -> struct loupe_event, checked field by field, and the small helpers
 * every output needs (kind names, addresses). A record is kernel memory shaped by packets:
 * nothing in it is trusted to be terminated or in range. Not for protobuf or JSON
 * (event_pb.c), nor for printing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "event.h"

_Static_assert(LOUPE_EVENT_ADDR_MAX >= INET6_ADDRSTRLEN, "LOUPE_EVENT_ADDR_MAX too small");

static const char *const kind_names[] = {
	[LOUPE_EV_UNSPECIFIED] = "EVENT_KIND_UNSPECIFIED",
	[LOUPE_EV_FLOW_START] = "FLOW_START",
	[LOUPE_EV_FLOW_END] = "FLOW_END",
	[LOUPE_EV_HTTP_REQUEST] = "HTTP_REQUEST",
	[LOUPE_EV_TLS_CLIENT_HELLO] = "TLS_CLIENT_HELLO",
	[LOUPE_EV_DNS_QUERY] = "DNS_QUERY",
	[LOUPE_EV_POLICY_VERDICT] = "POLICY_VERDICT",
	[LOUPE_EV_REWRITE] = "REWRITE",
	[LOUPE_EV_RATE_LIMITED] = "RATE_LIMITED",
	[LOUPE_EV_LOST] = "LOST",
	[LOUPE_EV_AGENT] = "AGENT",
};

_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == LOUPE_EV_KIND_MAX,
	       "a new event kind needs its name here");

/* Every record kind the datapath emits; the copy gives alignment-free access. */
union record {
	struct loupe_event_hdr hdr;
	struct loupe_event_flow flow;
	struct loupe_event_http http;
	struct loupe_event_tls tls;
	struct loupe_event_dns dns;
	struct loupe_event_verdict verdict;
	struct loupe_event_rewrite rewrite;
	struct loupe_event_rate_limited rate_limited;
};

const char *loupe_event_kind_name(enum loupe_event_kind kind)
{
	if ((unsigned)kind >= LOUPE_EV_KIND_MAX) {
		errno = EINVAL;
		return NULL;
	}
	return kind_names[kind];
}

/* The largest record of @kind (0: unknown kind); *ret_min: the shortest. */
static size_t record_size(unsigned kind, size_t *ret_min)
{
	switch (kind) {
	case LOUPE_EV_FLOW_START:
		*ret_min = sizeof(struct loupe_event_flow);
		return sizeof(struct loupe_event_flow);
	case LOUPE_EV_HTTP_REQUEST:
		*ret_min = offsetof(struct loupe_event_http, strings) + 2;
		return sizeof(struct loupe_event_http);
	case LOUPE_EV_TLS_CLIENT_HELLO:
		*ret_min = offsetof(struct loupe_event_tls, sni) + 1;
		return sizeof(struct loupe_event_tls);
	case LOUPE_EV_DNS_QUERY:
		*ret_min = offsetof(struct loupe_event_dns, qname) + 1;
		return sizeof(struct loupe_event_dns);
	case LOUPE_EV_POLICY_VERDICT:
		*ret_min = offsetof(struct loupe_event_verdict, subject) + 1;
		return sizeof(struct loupe_event_verdict);
	case LOUPE_EV_REWRITE:
		*ret_min = sizeof(struct loupe_event_rewrite);
		return sizeof(struct loupe_event_rewrite);
	case LOUPE_EV_RATE_LIMITED:
		*ret_min = sizeof(struct loupe_event_rate_limited);
		return sizeof(struct loupe_event_rate_limited);
	default:
		*ret_min = 0;
		return 0;
	}
}

/*
 * Copies at most @len bytes of @src (a field of @size bytes) into @dst (also @size bytes),
 * stopping at the first NUL and leaving room for the one it writes. Returns 1 when the
 * last byte had to be dropped for the NUL, 0, or -EINVAL when @len exceeds the field.
 */
static int copy_string(char *dst, const char *src, size_t size, size_t len)
{
	size_t n;
	int cut = 0;

	if (len > size)
		return -EINVAL;
	n = strnlen(src, len);
	if (n == size) {
		n = size - 1;
		cut = 1;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
	return cut;
}

/* ProtocolNameList without its length prefix: (u8 len, bytes)*; stops at a malformed entry. */
static void decode_alpn(const __u8 *list, size_t len, struct loupe_event *ev)
{
	size_t pos = 0, n;

	ev->tls.alpn_count = 0;
	while (pos < len && ev->tls.alpn_count < LOUPE_EVENT_ALPN_MAX) {
		n = list[pos];
		/* empty names are invalid (RFC 7301); a cut list ends in a partial entry */
		if (n == 0 || n > len - pos - 1 || n >= LOUPE_TLS_ALPN_MAX)
			break;
		copy_string(ev->tls.alpn[ev->tls.alpn_count], (const char *)list + pos + 1,
			    LOUPE_TLS_ALPN_MAX, n);
		ev->tls.alpn_count++;
		pos += 1 + n;
	}
}

static int decode_http(const struct loupe_event_http *rec, size_t strings_size,
		       struct loupe_event *ev)
{
	size_t path_len = rec->path_len, host_len = rec->host_len;
	int err, cut;

	/* the path, its NUL, the Host value and its NUL, within the record */
	if (path_len + 1 + host_len + 1 > strings_size || path_len >= LOUPE_HTTP_PATH_MAX ||
	    host_len >= LOUPE_HTTP_HOST_MAX) {
		err = -EINVAL;
		goto out;
	}
	ev->http.path_truncated = rec->flags & LOUPE_L7F_PATH_TRUNCATED;
	ev->http.host_truncated = rec->flags & LOUPE_L7F_HOST_TRUNCATED;
	err = copy_string(ev->http.method, rec->method, sizeof(rec->method), sizeof(rec->method));
	if (err < 0)
		goto out;
	cut = copy_string(ev->http.path, rec->strings, sizeof(ev->http.path), path_len);
	if (cut < 0) {
		err = cut;
		goto out;
	}
	ev->http.path_truncated |= cut;
	cut = copy_string(ev->http.host, rec->strings + path_len + 1, sizeof(ev->http.host),
			  host_len);
	if (cut < 0) {
		err = cut;
		goto out;
	}
	ev->http.host_truncated |= cut;
	err = 0;
out:
	return err;
}

static int decode_tls(const struct loupe_event_tls *rec, struct loupe_event *ev)
{
	int err;

	if (rec->alpn_len > sizeof(rec->alpn)) {
		err = -EINVAL;
		goto out;
	}
	err = copy_string(ev->tls.sni, rec->sni, sizeof(rec->sni), rec->sni_len);
	if (err < 0)
		goto out;
	ev->tls.legacy_version = rec->legacy_version;
	ev->tls.version = rec->max_version ? rec->max_version : rec->legacy_version;
	ev->tls.reassembled = rec->flags & LOUPE_L7F_TLS_REASSEMBLED;
	decode_alpn(rec->alpn, rec->alpn_len, ev);
	err = 0;
out:
	return err;
}

static int decode_dns(const struct loupe_event_dns *rec, struct loupe_event *ev)
{
	int err;

	err = copy_string(ev->dns.qname, rec->qname, sizeof(rec->qname), rec->qname_len);
	if (err < 0)
		goto out;
	ev->dns.qtype = rec->qtype;
	ev->dns.qclass = rec->qclass;
	ev->dns.id = rec->id;
	ev->dns.name_invalid = rec->flags & LOUPE_L7F_DNS_NAME_INVALID;
	ev->dns.tcp = rec->flags & LOUPE_L7F_DNS_OVER_TCP;
	err = 0;
out:
	return err;
}

_Static_assert(sizeof(((struct loupe_event *)0)->http.host) >= LOUPE_HTTP_HOST_MAX &&
		       sizeof(((struct loupe_event *)0)->tls.sni) >= LOUPE_HTTP_HOST_MAX &&
		       sizeof(((struct loupe_event *)0)->dns.qname) >= LOUPE_HTTP_HOST_MAX,
	       "a verdict's subject fits where the event keeps it");

/*
 * The datapath's numbers are mapped, not trusted: a value this build does not know reads as
 * unspecified, so that a verdict is never lost to a newer datapath's addition.
 */
static int decode_verdict(const struct loupe_event_verdict *rec, struct loupe_event *ev)
{
	char *dst = NULL;
	int err;

	if (rec->subject_len > sizeof(rec->subject)) {
		err = -EINVAL;
		goto out;
	}
	switch (rec->action) {
	case LOUPE_VERDICT_ALLOW:
		ev->verdict.action = LOUPE_EVENT_ACTION_ALLOW;
		break;
	case LOUPE_VERDICT_DENY:
		ev->verdict.action = LOUPE_EVENT_ACTION_DENY;
		break;
	case LOUPE_VERDICT_AUDIT:
		ev->verdict.action = LOUPE_EVENT_ACTION_AUDIT;
		break;
	default:
		ev->verdict.action = LOUPE_EVENT_ACTION_UNSPECIFIED;
		break;
	}
	switch (rec->reason) {
	case LOUPE_VERDICT_RULE:
		ev->verdict.reason = LOUPE_EVENT_REASON_RULE;
		break;
	case LOUPE_VERDICT_BOUND_EXCEEDED:
		ev->verdict.reason = LOUPE_EVENT_REASON_BOUND_EXCEEDED;
		break;
	default:
		ev->verdict.reason = LOUPE_EVENT_REASON_UNSPECIFIED;
		break;
	}
	ev->verdict.generation = rec->generation;
	ev->verdict.bit = rec->bit;
	ev->verdict.origin = rec->origin < LOUPE_DIR_MAX ? rec->origin : -1;
	switch (rec->subject_kind) {
	case LOUPE_VERDICT_SUBJECT_HTTP_HOST:
		dst = ev->http.host;
		break;
	case LOUPE_VERDICT_SUBJECT_TLS_SNI:
		dst = ev->tls.sni;
		break;
	case LOUPE_VERDICT_SUBJECT_DNS_NAME:
		dst = ev->dns.qname;
		break;
	default:
		break;
	}
	ev->verdict.subject = dst ? rec->subject_kind : LOUPE_VERDICT_SUBJECT_NONE;
	err = dst ? copy_string(dst, rec->subject, sizeof(rec->subject), rec->subject_len) : 0;
	if (err > 0 && rec->subject_kind == LOUPE_VERDICT_SUBJECT_HTTP_HOST)
		ev->http.host_truncated = true;
	if (err > 0)
		err = 0;
out:
	return err;
}

/*
 * What was done, and the values of what was done only: the record's other fields are the
 * datapath's scratch and say nothing. Names are the caller's (the set's names).
 */
static void decode_rewrite(const struct loupe_event_rewrite *rec, struct loupe_event *ev)
{
	uint32_t a = rec->actions;

	ev->rewrite.actions = a;
	ev->rewrite.generation = rec->generation;
	ev->rewrite.index = rec->rewrite;
	if (a & LOUPE_RW_MAP) {
		memcpy(ev->rewrite.new_addr, rec->new_addr, sizeof(ev->rewrite.new_addr));
		ev->rewrite.new_port = rec->new_port;
	}
	if (a & LOUPE_RW_DSCP)
		ev->rewrite.dscp = rec->dscp;
	if (a & (LOUPE_RW_VLAN_PUSH | LOUPE_RW_VLAN_POP))
		ev->rewrite.vlan_id = rec->vlan_id;
	if (a & LOUPE_RW_MASK)
		ev->rewrite.masked_bits = rec->masked_bits & ((1u << LOUPE_MASK_HEADERS_MAX) - 1);
}

static void decode_rate_limited(const struct loupe_event_rate_limited *rec, struct loupe_event *ev)
{
	ev->rate_limited.dropped = rec->dropped;
	ev->rate_limited.bytes_per_sec = rec->bytes_per_sec;
	ev->rate_limited.burst = rec->burst;
}

int loupe_event_decode(const void *record, size_t size, int64_t mono_to_real_ns,
		       struct loupe_event *ret_ev)
{
	union record rec;
	const struct loupe_event_hdr *hdr = &rec.hdr;
	size_t min_size, max_size;
	int err;

	memset(ret_ev, 0, sizeof(*ret_ev));
	if (!record || size < sizeof(rec.hdr)) {
		err = -EINVAL;
		goto out;
	}
	memcpy(&rec.hdr, record, sizeof(rec.hdr));
	max_size = record_size(rec.hdr.kind, &min_size);
	if (size < min_size || size > max_size) {
		err = -EINVAL;
		goto out;
	}
	/* a record cut after its last string: the rest reads as zeros */
	memset(&rec, 0, sizeof(rec));
	memcpy(&rec, record, size);

	ret_ev->kind = hdr->kind;
	/* unsigned arithmetic: a negative offset wraps into the right sum */
	ret_ev->time_ns = hdr->ts_ns + (uint64_t)mono_to_real_ns;
	ret_ev->ifindex = hdr->ifindex;
	ret_ev->direction = hdr->direction < LOUPE_DIR_MAX ? hdr->direction : -1;
	ret_ev->protocol = hdr->protocol;
	ret_ev->has_ip = hdr->protocol != 0;
	ret_ev->ipv6 = hdr->flags & LOUPE_EVF_IPV6;
	memcpy(ret_ev->saddr, hdr->saddr, sizeof(ret_ev->saddr));
	memcpy(ret_ev->daddr, hdr->daddr, sizeof(ret_ev->daddr));
	ret_ev->sport = hdr->sport;
	ret_ev->dport = hdr->dport;
	ret_ev->has_vlan = hdr->flags & LOUPE_EVF_VLAN;
	ret_ev->vlan_id = ret_ev->has_vlan ? hdr->vlan_id : 0;
	ret_ev->has_inner_vlan = hdr->flags & LOUPE_EVF_VLAN_INNER;
	ret_ev->inner_vlan_id = ret_ev->has_inner_vlan ? hdr->inner_vlan_id : 0;

	switch (hdr->kind) {
	case LOUPE_EV_FLOW_START:
		ret_ev->flow.tcp_flags = rec.flow.tcp_flags;
		ret_ev->flow.first_seen_ns = ret_ev->time_ns;
		ret_ev->flow.last_seen_ns = ret_ev->time_ns;
		err = 0;
		break;
	case LOUPE_EV_HTTP_REQUEST:
		err = decode_http(&rec.http, size - offsetof(struct loupe_event_http, strings),
				  ret_ev);
		break;
	case LOUPE_EV_TLS_CLIENT_HELLO:
		err = decode_tls(&rec.tls, ret_ev);
		break;
	case LOUPE_EV_DNS_QUERY:
		err = decode_dns(&rec.dns, ret_ev);
		break;
	case LOUPE_EV_POLICY_VERDICT:
		err = decode_verdict(&rec.verdict, ret_ev);
		break;
	case LOUPE_EV_REWRITE:
		decode_rewrite(&rec.rewrite, ret_ev);
		err = 0;
		break;
	case LOUPE_EV_RATE_LIMITED:
		decode_rate_limited(&rec.rate_limited, ret_ev);
		err = 0;
		break;
	default:
		err = -EINVAL; /* record_size() has refused it already */
		break;
	}
out:
	if (err < 0)
		memset(ret_ev, 0, sizeof(*ret_ev));
	return err;
}

bool loupe_addr_is_v4_mapped(const uint8_t *a)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return !memcmp(a, prefix, sizeof(prefix));
}

/* True when the char array @a holds a NUL. */
#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

bool loupe_event_strings_valid(const struct loupe_event *ev)
{
	if (!TERMINATED(ev->node) || !TERMINATED(ev->ifname))
		return false;
	switch (ev->kind) {
	case LOUPE_EV_HTTP_REQUEST:
		return TERMINATED(ev->http.method) && TERMINATED(ev->http.path) &&
		       TERMINATED(ev->http.host);
	case LOUPE_EV_TLS_CLIENT_HELLO:
		if (ev->tls.alpn_count < 0 || ev->tls.alpn_count > LOUPE_EVENT_ALPN_MAX)
			return false;
		for (int i = 0; i < ev->tls.alpn_count; i++) {
			if (!TERMINATED(ev->tls.alpn[i]))
				return false;
		}
		return TERMINATED(ev->tls.sni);
	case LOUPE_EV_DNS_QUERY:
		return TERMINATED(ev->dns.qname);
	case LOUPE_EV_POLICY_VERDICT:
		if (!TERMINATED(ev->verdict.policy) || !TERMINATED(ev->verdict.rule))
			return false;
		switch (ev->verdict.subject) {
		case LOUPE_VERDICT_SUBJECT_HTTP_HOST:
			return TERMINATED(ev->http.host);
		case LOUPE_VERDICT_SUBJECT_TLS_SNI:
			return TERMINATED(ev->tls.sni);
		case LOUPE_VERDICT_SUBJECT_DNS_NAME:
			return TERMINATED(ev->dns.qname);
		default:
			return true;
		}
	case LOUPE_EV_REWRITE:
		if (!TERMINATED(ev->rewrite.policy) || !TERMINATED(ev->rewrite.name))
			return false;
		for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
			if ((ev->rewrite.masked_bits >> i & 1) &&
			    !TERMINATED(ev->rewrite.masked[i]))
				return false;
		}
		return true;
	default:
		return true;
	}
}

int loupe_event_format_addr(const struct loupe_event *ev, bool src, char *buf, size_t len)
{
	const uint8_t *a = src ? ev->saddr : ev->daddr;
	const char *s;

	if (!ev->has_ip)
		return -EINVAL;
	if (len > (socklen_t)-1)
		len = (socklen_t)-1;
	if (!ev->ipv6 && loupe_addr_is_v4_mapped(a))
		s = inet_ntop(AF_INET, a + 12, buf, (socklen_t)len);
	else
		s = inet_ntop(AF_INET6, a, buf, (socklen_t)len);
	return s ? 0 : -errno;
}

int loupe_event_format_other_addr(const struct loupe_event *ev, const uint8_t *addr, char *buf,
				  size_t len)
{
	const char *s;

	if (len > (socklen_t)-1)
		len = (socklen_t)-1;
	if (!ev->ipv6 && loupe_addr_is_v4_mapped(addr))
		s = inet_ntop(AF_INET, addr + 12, buf, (socklen_t)len);
	else
		s = inet_ntop(AF_INET6, addr, buf, (socklen_t)len);
	return s ? 0 : -errno;
}

void loupe_event_from_flow(const struct loupe_flow_key *key, const struct loupe_flow *flow,
			   int64_t mono_to_real_ns, struct loupe_event *ret_ev)
{
	memset(ret_ev, 0, sizeof(*ret_ev));
	ret_ev->kind = LOUPE_EV_FLOW_END;
	ret_ev->time_ns = flow->last_seen_ns + (uint64_t)mono_to_real_ns;
	ret_ev->ifindex = flow->ifindex;
	ret_ev->direction = -1; /* both directions: the pod is the source */
	ret_ev->protocol = key->protocol;
	ret_ev->has_ip = true;
	ret_ev->ipv6 = flow->ipv6;
	memcpy(ret_ev->saddr, key->pod_addr, sizeof(ret_ev->saddr));
	memcpy(ret_ev->daddr, key->peer_addr, sizeof(ret_ev->daddr));
	ret_ev->sport = ntohs(key->pod_port);
	ret_ev->dport = ntohs(key->peer_port);
	ret_ev->has_vlan = flow->vlan_id != LOUPE_VLAN_NONE;
	ret_ev->vlan_id = ret_ev->has_vlan ? flow->vlan_id : 0;
	for (int d = 0; d < LOUPE_DIR_MAX; d++) {
		ret_ev->flow.dir[d].packets = flow->packets[d];
		ret_ev->flow.dir[d].bytes = flow->bytes[d];
		ret_ev->flow.dir[d].tcp_flags = flow->tcp_flags[d];
	}
	ret_ev->flow.first_seen_ns = flow->first_seen_ns + (uint64_t)mono_to_real_ns;
	ret_ev->flow.last_seen_ns = flow->last_seen_ns + (uint64_t)mono_to_real_ns;
}

static const char *const action_names[] = {
	[LOUPE_EVENT_ACTION_UNSPECIFIED] = "VERDICT_ACTION_UNSPECIFIED",
	[LOUPE_EVENT_ACTION_ALLOW] = "ALLOW",
	[LOUPE_EVENT_ACTION_DENY] = "DENY",
	[LOUPE_EVENT_ACTION_AUDIT] = "AUDIT",
};

static const char *const reason_names[] = {
	[LOUPE_EVENT_REASON_UNSPECIFIED] = "VERDICT_REASON_UNSPECIFIED",
	[LOUPE_EVENT_REASON_RULE] = "RULE",
	[LOUPE_EVENT_REASON_DEFAULT_ACTION] = "DEFAULT_ACTION",
	[LOUPE_EVENT_REASON_BOUND_EXCEEDED] = "BOUND_EXCEEDED",
};

const char *loupe_event_action_name(enum loupe_event_action action)
{
	if ((unsigned int)action >= sizeof(action_names) / sizeof(action_names[0]))
		return "?";
	return action_names[action];
}

const char *loupe_event_reason_name(enum loupe_event_reason reason)
{
	if ((unsigned int)reason >= sizeof(reason_names) / sizeof(reason_names[0]))
		return "?";
	return reason_names[reason];
}

static const char *const parse_error_names[] = {
	[LOUPE_PERR_NONE] = "NONE",
	[LOUPE_PERR_ETH_TRUNCATED] = "ETH_TRUNCATED",
	[LOUPE_PERR_VLAN_TRUNCATED] = "VLAN_TRUNCATED",
	[LOUPE_PERR_VLAN_TOO_DEEP] = "VLAN_TOO_DEEP",
	[LOUPE_PERR_IPV4_TRUNCATED] = "IPV4_TRUNCATED",
	[LOUPE_PERR_IPV4_BAD_HEADER] = "IPV4_BAD_HEADER",
	[LOUPE_PERR_IPV6_TRUNCATED] = "IPV6_TRUNCATED",
	[LOUPE_PERR_IPV6_EXT_TRUNCATED] = "IPV6_EXT_TRUNCATED",
	[LOUPE_PERR_IPV6_EXT_TOO_MANY] = "IPV6_EXT_TOO_MANY",
	[LOUPE_PERR_L4_TRUNCATED] = "L4_TRUNCATED",
	[LOUPE_PERR_TCP_BAD_HEADER] = "TCP_BAD_HEADER",
	[LOUPE_PERR_HTTP_MALFORMED] = "HTTP_MALFORMED",
	[LOUPE_PERR_TLS_MALFORMED] = "TLS_MALFORMED",
	[LOUPE_PERR_DNS_MALFORMED] = "DNS_MALFORMED",
};

_Static_assert(sizeof(parse_error_names) / sizeof(parse_error_names[0]) == LOUPE_PERR_MAX,
	       "a new parse error needs its name here");

const char *loupe_parse_error_name(enum loupe_parse_error reason)
{
	if ((unsigned int)reason >= LOUPE_PERR_MAX)
		return "?";
	return parse_error_names[reason];
}
