// SPDX-License-Identifier: Apache-2.0
/*
 * struct loupe_event -> one JSON line, written straight into a caller's buffer: the hot path
 * of the agent's event output. Its bytes are those of the generic path (event_pb.c through
 * proto/pbjson.c and json-c), which stays the reference: field order by proto field number,
 * defaults left out as loupe_event_to_pb() leaves them out, json-c's escaping after pbjson's
 * U+FFFD for invalid UTF-8. tests/unit/test_event_json.c compares the two byte for byte; a
 * field or enum value added to event.proto is to be added here too. Not for any other
 * message, nor for parsing.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "event_json.h"
#include "pbjson.h"

#define NSEC_PER_SEC 1000000000ULL

/* The longest JSON string for a char array of @n (NUL included): "\u00XX" per byte. */
#define STR_MAX(n) (2 + 6 * ((n)-1))
/* Keys, punctuation, numbers and timestamps of every field together stay below this. */
#define FIXED_MAX  1024
#define ADDR_STR   (2 + LOUPE_EVENT_ADDR_MAX)
#define MAX_(a, b) ((a) > (b) ? (a) : (b))
/* a REWRITE's actions (32 bits: a name or a number each) and masked header indexes */
#define REWRITE_LISTS_MAX (32 * 30 + LOUPE_MASK_HEADERS_MAX * 2)
/* the strings of one kind's message: TLS's are the longest */
#define KIND_MAX                                                                                   \
	MAX_(LOUPE_EVENT_ALPN_MAX *(STR_MAX(LOUPE_TLS_ALPN_MAX) + 1) + STR_MAX(LOUPE_TLS_SNI_MAX), \
	     MAX_(STR_MAX(LOUPE_HTTP_METHOD_MAX) + STR_MAX(LOUPE_HTTP_PATH_MAX) +                  \
			  STR_MAX(LOUPE_HTTP_HOST_MAX),                                            \
		  MAX_(STR_MAX(LOUPE_DNS_NAME_MAX),                                                \
		       MAX_(STR_MAX(LOUPE_HTTP_HOST_MAX) +                                         \
				    2 * STR_MAX(LOUPE_EVENT_POLICY_NAME_MAX),                      \
			    2 * STR_MAX(LOUPE_EVENT_POLICY_NAME_MAX) + ADDR_STR +                  \
				    LOUPE_MASK_HEADERS_MAX *                                       \
					    (STR_MAX(LOUPE_EVENT_HEADER_NAME_MAX) + 1) +           \
				    REWRITE_LISTS_MAX))))
_Static_assert(FIXED_MAX + STR_MAX(sizeof(((struct loupe_event *)0)->node)) + STR_MAX(IF_NAMESIZE) +
			       2 * ADDR_STR + LOUPE_EVENT_POD_IPS_MAX * (ADDR_STR + 1) + KIND_MAX +
			       1 <=
		       LOUPE_EVENT_JSON_MAX,
	       "LOUPE_EVENT_JSON_MAX holds the longest event");

/*
 * The output cursor. A write that does not fit sets end = p, so that every later one fails
 * too and the caller checks once, at the end.
 */
struct jw {
	char *p;
	char *end; /* one byte short of the buffer's end: room for the NUL */
	bool full;
	bool sep; /* a member was written in the current object or array: ',' before the next */
};

static const char *const kind_names[] = {
	"EVENT_KIND_UNSPECIFIED", "FLOW_START", "FLOW_END",	  "HTTP_REQUEST",
	"TLS_CLIENT_HELLO",	  "DNS_QUERY",	"POLICY_VERDICT", "REWRITE",
	"RATE_LIMITED",		  "LOST",	"AGENT",
};

static const char *const end_reason_names[] = {
	"FLOW_END_REASON_UNSPECIFIED",
	"IDLE_TIMEOUT",
	"ACTIVE_TIMEOUT",
	"CAPTURE_END",
	"AGENT_STOP",
	"TCP_CLOSE",
};

static const char *const action_names[] = {
	"VERDICT_ACTION_UNSPECIFIED",
	"ALLOW",
	"DENY",
	"AUDIT",
};

static const char *const reason_names[] = {
	"VERDICT_REASON_UNSPECIFIED",
	"RULE",
	"DEFAULT_ACTION",
	"BOUND_EXCEEDED",
};

/* loupe.v1.RewriteAction: the bit of enum loupe_rewrite_actions plus one */
static const char *const rewrite_action_names[] = {
	"REWRITE_ACTION_UNSPECIFIED", "MAP_TO", "SET_DSCP", "VLAN_PUSH", "VLAN_POP", "MASK_HEADERS",
};

static const char hex[] = "0123456789abcdef";

static inline void put(struct jw *w, const char *s, size_t n)
{
	if (n > (size_t)(w->end - w->p)) {
		w->end = w->p;
		w->full = true;
		return;
	}
	memcpy(w->p, s, n);
	w->p += n;
}

static inline void putc_(struct jw *w, char c)
{
	if (w->p == w->end) {
		w->full = true;
		return;
	}
	*w->p++ = c;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static void open_obj(struct jw *w, char c)
{
	putc_(w, c);
	w->sep = false;
}

/* Closes an object or array: what follows it is a sibling of the container. */
static void close_obj(struct jw *w, char c)
{
	putc_(w, c);
	w->sep = true;
}

/* @qkey: the name in quotes with its colon, e.g. "\"seq\":". */
#define KEY(w, qkey)                                                                               \
	do {                                                                                       \
		if ((w)->sep)                                                                      \
			putc_((w), ',');                                                           \
		(w)->sep = true;                                                                   \
		PUT_LIT((w), qkey);                                                                \
	} while (0)

static void put_u64(struct jw *w, uint64_t v)
{
	char tmp[20], *q = tmp + sizeof(tmp);

	do {
		*--q = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(w, q, (size_t)(tmp + sizeof(tmp) - q));
}

/* What json-c writes for an enum number the build does not name. */
static void put_i32(struct jw *w, int32_t v)
{
	if (v < 0) {
		putc_(w, '-');
		put_u64(w, (uint64_t)0 - (uint64_t)(int64_t)v);
	} else {
		put_u64(w, (uint64_t)v);
	}
}

/* uint64 fields are JSON strings in proto3. */
static void put_u64_str(struct jw *w, uint64_t v)
{
	putc_(w, '"');
	put_u64(w, v);
	putc_(w, '"');
}

static void put_enum(struct jw *w, int32_t v, const char *const *names, int n)
{
	if (v >= 0 && v < n) {
		putc_(w, '"');
		put(w, names[v], strlen(names[v]));
		putc_(w, '"');
	} else {
		put_i32(w, v);
	}
}

static const char *protocol_name(uint8_t p)
{
	switch (p) {
	case 1:
		return "ICMP";
	case 6:
		return "TCP";
	case 17:
		return "UDP";
	case 58:
		return "ICMPV6";
	default:
		return NULL;
	}
}

/*
 * A JSON string as pbjson + json-c write it: each byte outside well-formed UTF-8 as U+FFFD;
 * '"', '\\', \b \f \n \r \t with a backslash, other controls as \u00xx (lower-case hex);
 * '/' and DEL as they are.
 */
static void put_str(struct jw *w, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, start = 0, k;
	char esc[6] = { '\\', 'u', '0', '0' };
	unsigned char c;

	putc_(w, '"');
	while (i < n) {
		c = u[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80) {
			k = loupe_pbjson_utf8_len(u + i, n - i);
			if (k) {
				i += k;
				continue;
			}
		}
		put(w, s + start, i - start);
		switch (c) {
		case '"':
			PUT_LIT(w, "\\\"");
			break;
		case '\\':
			PUT_LIT(w, "\\\\");
			break;
		case '\b':
			PUT_LIT(w, "\\b");
			break;
		case '\f':
			PUT_LIT(w, "\\f");
			break;
		case '\n':
			PUT_LIT(w, "\\n");
			break;
		case '\r':
			PUT_LIT(w, "\\r");
			break;
		case '\t':
			PUT_LIT(w, "\\t");
			break;
		default:
			if (c >= 0x80) {
				PUT_LIT(w, "\xef\xbf\xbd");
			} else {
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 0xf];
				put(w, esc, sizeof(esc));
			}
		}
		start = ++i;
	}
	put(w, s + start, i - start);
	putc_(w, '"');
}

/* Two digits, or four for the year: @v < 10^@width. */
static char *digits(char *q, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		q[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return q + width;
}

/*
 * RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as loupe_pbjson_format_timestamp():
 * a uint64 of ns since the epoch stays within its range (year 2554 at most).
 */
static void put_timestamp(struct jw *w, uint64_t ns)
{
	char tmp[40], *q = tmp; /* "\"2554-07-21T23:34:33.709551615Z\"": 32 */
	uint64_t secs = ns / NSEC_PER_SEC;
	uint32_t nanos = (uint32_t)(ns % NSEC_PER_SEC);
	unsigned sod = (unsigned)(secs % 86400), doe, yoe, doy, mp, d, m;
	int64_t z = (int64_t)(secs / 86400) + 719468, era = z / 146097, y;

	/* H. Hinnant's civil_from_days, for days >= 0 */
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;

	*q++ = '"';
	q = digits(q, (unsigned)y, 4);
	*q++ = '-';
	q = digits(q, m, 2);
	*q++ = '-';
	q = digits(q, d, 2);
	*q++ = 'T';
	q = digits(q, sod / 3600, 2);
	*q++ = ':';
	q = digits(q, sod / 60 % 60, 2);
	*q++ = ':';
	q = digits(q, sod % 60, 2);
	if (nanos) {
		*q++ = '.';
		if (nanos % 1000000 == 0)
			q = digits(q, nanos / 1000000, 3);
		else if (nanos % 1000 == 0)
			q = digits(q, nanos / 1000, 6);
		else
			q = digits(q, nanos, 9);
	}
	*q++ = 'Z';
	*q++ = '"';
	put(w, tmp, (size_t)(q - tmp));
}

static char *ipv4_text(char *q, const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		unsigned v = a[i];

		if (i)
			*q++ = '.';
		if (v >= 100)
			*q++ = (char)('0' + v / 100);
		if (v >= 10)
			*q++ = (char)('0' + v / 10 % 10);
		*q++ = (char)('0' + v % 10);
	}
	return q;
}

/*
 * IPv6 text as glibc's inet_ntop() writes it: the first longest run of two or more zero
 * groups as "::", lower-case hex, and "::a.b.c.d" or "::ffff:a.b.c.d" for the two
 * IPv4-carrying forms.
 */
static char *ipv6_text(char *q, const uint8_t *a)
{
	unsigned words[8];
	int best = -1, best_len = 0, cur = -1, cur_len = 0;

	for (int i = 0; i < 8; i++) {
		words[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
		if (words[i] == 0) {
			if (cur == -1) {
				cur = i;
				cur_len = 1;
			} else {
				cur_len++;
			}
		} else if (cur != -1) {
			if (best == -1 || cur_len > best_len) {
				best = cur;
				best_len = cur_len;
			}
			cur = -1;
		}
	}
	if (cur != -1 && (best == -1 || cur_len > best_len)) {
		best = cur;
		best_len = cur_len;
	}
	if (best != -1 && best_len < 2)
		best = -1;

	for (int i = 0; i < 8; i++) {
		if (best != -1 && i >= best && i < best + best_len) {
			if (i == best)
				*q++ = ':';
			continue;
		}
		if (i != 0)
			*q++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)))
			return ipv4_text(q, a + 12);
		for (int shift = 12, lead = 1; shift >= 0; shift -= 4) {
			unsigned nib = words[i] >> shift & 0xf;

			if (nib || !lead || shift == 0) {
				*q++ = hex[nib];
				lead = 0;
			}
		}
	}
	if (best != -1 && best + best_len == 8)
		*q++ = ':';
	return q;
}

/* An address as a JSON string: dotted IPv4 when @v4 (the last 4 bytes), else IPv6. */
static void put_addr(struct jw *w, const uint8_t *a, bool v4)
{
	char tmp[ADDR_STR], *q = tmp;

	*q++ = '"';
	q = v4 ? ipv4_text(q, a + 12) : ipv6_text(q, a);
	*q++ = '"';
	put(w, tmp, (size_t)(q - tmp));
}

static bool counters_zero(const struct loupe_event_flow_dir *d)
{
	return !d->packets && !d->bytes && !d->tcp_flags;
}

static void put_counters(struct jw *w, const struct loupe_event_flow_dir *d)
{
	open_obj(w, '{');
	if (d->packets) {
		KEY(w, "\"packets\":");
		put_u64_str(w, d->packets);
	}
	if (d->bytes) {
		KEY(w, "\"bytes\":");
		put_u64_str(w, d->bytes);
	}
	if (d->tcp_flags) {
		KEY(w, "\"tcpFlags\":");
		put_u64(w, d->tcp_flags);
	}
	close_obj(w, '}');
}

static void put_http(struct jw *w, const struct loupe_event *ev)
{
	KEY(w, "\"http\":");
	open_obj(w, '{');
	if (ev->http.method[0]) {
		KEY(w, "\"method\":");
		put_str(w, ev->http.method);
	}
	if (ev->http.path[0]) {
		KEY(w, "\"path\":");
		put_str(w, ev->http.path);
	}
	if (ev->http.host[0]) {
		KEY(w, "\"host\":");
		put_str(w, ev->http.host);
	}
	if (ev->http.path_truncated)
		KEY(w, "\"pathTruncated\":true");
	if (ev->http.host_truncated)
		KEY(w, "\"hostTruncated\":true");
	close_obj(w, '}');
}

static void put_tls(struct jw *w, const struct loupe_event *ev)
{
	KEY(w, "\"tls\":");
	open_obj(w, '{');
	if (ev->tls.sni[0]) {
		KEY(w, "\"sni\":");
		put_str(w, ev->tls.sni);
	}
	if (ev->tls.version) {
		KEY(w, "\"version\":");
		put_u64(w, ev->tls.version);
	}
	if (ev->tls.alpn_count > 0) {
		KEY(w, "\"alpn\":");
		open_obj(w, '[');
		for (int i = 0; i < ev->tls.alpn_count; i++) {
			if (i)
				putc_(w, ',');
			put_str(w, ev->tls.alpn[i]);
		}
		close_obj(w, ']');
	}
	if (ev->tls.legacy_version) {
		KEY(w, "\"legacyVersion\":");
		put_u64(w, ev->tls.legacy_version);
	}
	if (ev->tls.reassembled)
		KEY(w, "\"reassembled\":true");
	close_obj(w, '}');
}

static void put_dns(struct jw *w, const struct loupe_event *ev)
{
	KEY(w, "\"dns\":");
	open_obj(w, '{');
	if (ev->dns.qname[0]) {
		KEY(w, "\"qname\":");
		put_str(w, ev->dns.qname);
	}
	if (ev->dns.qtype) {
		KEY(w, "\"qtype\":");
		put_u64(w, ev->dns.qtype);
	}
	if (ev->dns.qclass) {
		KEY(w, "\"qclass\":");
		put_u64(w, ev->dns.qclass);
	}
	if (ev->dns.id) {
		KEY(w, "\"id\":");
		put_u64(w, ev->dns.id);
	}
	if (ev->dns.name_invalid)
		KEY(w, "\"nameInvalid\":true");
	if (ev->dns.tcp)
		KEY(w, "\"tcp\":true");
	close_obj(w, '}');
}

/* FLOW_END reports both directions, zero included; FLOW_START only what it has. */
static void put_flow(struct jw *w, const struct loupe_event *ev)
{
	const struct loupe_event_flow_dir *eg = &ev->flow.dir[LOUPE_DIR_POD_EGRESS];
	const struct loupe_event_flow_dir *in = &ev->flow.dir[LOUPE_DIR_POD_INGRESS];
	uint64_t first = ev->flow.first_seen_ns, last = ev->flow.last_seen_ns;

	KEY(w, "\"flow\":");
	open_obj(w, '{');
	if (ev->kind == LOUPE_EV_FLOW_END || !counters_zero(eg)) {
		KEY(w, "\"egress\":");
		put_counters(w, eg);
	}
	if (ev->kind == LOUPE_EV_FLOW_END || !counters_zero(in)) {
		KEY(w, "\"ingress\":");
		put_counters(w, in);
	}
	if (first) {
		KEY(w, "\"firstSeen\":");
		put_timestamp(w, first);
	}
	if (last) {
		KEY(w, "\"lastSeen\":");
		put_timestamp(w, last);
	}
	if (ev->flow.tcp_flags) {
		KEY(w, "\"tcpFlags\":");
		put_u64(w, ev->flow.tcp_flags);
	}
	if (first && last > first) {
		KEY(w, "\"durationNs\":");
		put_u64_str(w, last - first);
	}
	if (ev->flow.end_reason) {
		KEY(w, "\"endReason\":");
		put_enum(w, (int32_t)ev->flow.end_reason, end_reason_names,
			 (int)(sizeof(end_reason_names) / sizeof(end_reason_names[0])));
	}
	close_obj(w, '}');
}

static void put_lost(struct jw *w, const struct loupe_event *ev)
{
	KEY(w, "\"lost\":");
	open_obj(w, '{');
	if (ev->lost.count) {
		KEY(w, "\"count\":");
		put_u64_str(w, ev->lost.count);
	}
	if (ev->lost.kind) {
		KEY(w, "\"kind\":");
		put_enum(w, (int32_t)ev->lost.kind, kind_names,
			 (int)(sizeof(kind_names) / sizeof(kind_names[0])));
	}
	close_obj(w, '}');
}

/* The name the verdict was decided on, in the L7 message that keeps it; then the verdict. */
static void put_verdict(struct jw *w, const struct loupe_event *ev)
{
	switch (ev->verdict.subject) {
	case LOUPE_VERDICT_SUBJECT_HTTP_HOST:
		KEY(w, "\"http\":");
		open_obj(w, '{');
		if (ev->http.host[0]) {
			KEY(w, "\"host\":");
			put_str(w, ev->http.host);
		}
		if (ev->http.host_truncated)
			KEY(w, "\"hostTruncated\":true");
		close_obj(w, '}');
		break;
	case LOUPE_VERDICT_SUBJECT_TLS_SNI:
		KEY(w, "\"tls\":");
		open_obj(w, '{');
		if (ev->tls.sni[0]) {
			KEY(w, "\"sni\":");
			put_str(w, ev->tls.sni);
		}
		close_obj(w, '}');
		break;
	case LOUPE_VERDICT_SUBJECT_DNS_NAME:
		KEY(w, "\"dns\":");
		open_obj(w, '{');
		if (ev->dns.qname[0]) {
			KEY(w, "\"qname\":");
			put_str(w, ev->dns.qname);
		}
		close_obj(w, '}');
		break;
	default:
		break;
	}
	KEY(w, "\"verdict\":");
	open_obj(w, '{');
	if (ev->verdict.action) {
		KEY(w, "\"action\":");
		put_enum(w, (int32_t)ev->verdict.action, action_names,
			 (int)(sizeof(action_names) / sizeof(action_names[0])));
	}
	if (ev->verdict.policy[0]) {
		KEY(w, "\"policy\":");
		put_str(w, ev->verdict.policy);
	}
	if (ev->verdict.rule[0]) {
		KEY(w, "\"rule\":");
		put_str(w, ev->verdict.rule);
	}
	if (ev->verdict.generation) {
		KEY(w, "\"generation\":");
		put_u64(w, ev->verdict.generation);
	}
	if (ev->verdict.reason) {
		KEY(w, "\"reason\":");
		put_enum(w, (int32_t)ev->verdict.reason, reason_names,
			 (int)(sizeof(reason_names) / sizeof(reason_names[0])));
	}
	if (ev->verdict.origin == LOUPE_DIR_POD_EGRESS)
		KEY(w, "\"origin\":\"POD_EGRESS\"");
	else if (ev->verdict.origin == LOUPE_DIR_POD_INGRESS)
		KEY(w, "\"origin\":\"POD_INGRESS\"");
	close_obj(w, '}');
}

/* What a rewrite did; the values of the actions it did not do are zero, so left out. */
static void put_rewrite(struct jw *w, const struct loupe_event *ev)
{
	bool first;

	KEY(w, "\"rewrite\":");
	open_obj(w, '{');
	if (ev->rewrite.actions) {
		KEY(w, "\"actions\":");
		putc_(w, '[');
		first = true;
		for (int i = 0; i < 32; i++) {
			if (!(ev->rewrite.actions >> i & 1))
				continue;
			if (!first)
				putc_(w, ',');
			first = false;
			put_enum(w, i + 1, rewrite_action_names,
				 (int)(sizeof(rewrite_action_names) /
				       sizeof(rewrite_action_names[0])));
		}
		putc_(w, ']');
	}
	if (ev->rewrite.policy[0]) {
		KEY(w, "\"policy\":");
		put_str(w, ev->rewrite.policy);
	}
	if (ev->rewrite.name[0]) {
		KEY(w, "\"name\":");
		put_str(w, ev->rewrite.name);
	}
	if (ev->rewrite.generation) {
		KEY(w, "\"generation\":");
		put_u64(w, ev->rewrite.generation);
	}
	if (ev->rewrite.index) {
		KEY(w, "\"index\":");
		put_u64(w, ev->rewrite.index);
	}
	if (ev->rewrite.actions & LOUPE_RW_MAP) {
		KEY(w, "\"newIp\":");
		put_addr(w, ev->rewrite.new_addr,
			 !ev->ipv6 && loupe_addr_is_v4_mapped(ev->rewrite.new_addr));
	}
	if (ev->rewrite.new_port) {
		KEY(w, "\"newPort\":");
		put_u64(w, ev->rewrite.new_port);
	}
	if (ev->rewrite.dscp) {
		KEY(w, "\"dscp\":");
		put_u64(w, ev->rewrite.dscp);
	}
	if (ev->rewrite.vlan_id) {
		KEY(w, "\"vlanId\":");
		put_u64(w, ev->rewrite.vlan_id);
	}
	first = true;
	for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
		if (!(ev->rewrite.masked_bits >> i & 1) || !ev->rewrite.masked[i][0])
			continue;
		if (first)
			KEY(w, "\"maskedHeaders\":[");
		else
			putc_(w, ',');
		first = false;
		put_str(w, ev->rewrite.masked[i]);
	}
	if (!first)
		putc_(w, ']');
	first = true;
	for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
		if (!(ev->rewrite.masked_bits >> i & 1))
			continue;
		if (first)
			KEY(w, "\"maskedHeaderIndexes\":[");
		else
			putc_(w, ',');
		first = false;
		put_u64(w, (uint64_t)i);
	}
	if (!first)
		putc_(w, ']');
	close_obj(w, '}');
}

static void put_rate_limited(struct jw *w, const struct loupe_event *ev)
{
	KEY(w, "\"rateLimited\":");
	open_obj(w, '{');
	if (ev->rate_limited.dropped) {
		KEY(w, "\"dropped\":");
		put_u64_str(w, ev->rate_limited.dropped);
	}
	if (ev->rate_limited.bytes_per_sec) {
		KEY(w, "\"bytesPerSecond\":");
		put_u64_str(w, ev->rate_limited.bytes_per_sec);
	}
	if (ev->rate_limited.burst) {
		KEY(w, "\"burst\":");
		put_u64_str(w, ev->rate_limited.burst);
	}
	close_obj(w, '}');
}

static void put_pod(struct jw *w, const struct loupe_event *ev)
{
	KEY(w, "\"pod\":");
	PUT_LIT(w, "{\"ips\":[");
	for (int i = 0; i < ev->pod_ip_count; i++) {
		if (i)
			putc_(w, ',');
		put_addr(w, ev->pod_ips[i].addr, !ev->pod_ips[i].ipv6);
	}
	PUT_LIT(w, "]}");
}

int loupe_event_json_write(const struct loupe_event *ev, char *buf, size_t size)
{
	struct jw w = { .p = buf, .end = buf + (size ? size - 1 : 0), .full = size == 0 };
	const char *proto;

	if (size)
		buf[0] = '\0';
	if (!loupe_event_strings_valid(ev))
		return -EINVAL;
	if (size > INT_MAX)
		w.end = buf + INT_MAX;

	open_obj(&w, '{');
	if (ev->seq) {
		KEY(&w, "\"seq\":");
		put_u64_str(&w, ev->seq);
	}
	KEY(&w, "\"time\":");
	put_timestamp(&w, ev->time_ns);
	if (ev->node[0]) {
		KEY(&w, "\"node\":");
		put_str(&w, ev->node);
	}
	if (ev->kind) {
		KEY(&w, "\"kind\":");
		put_enum(&w, (int32_t)ev->kind, kind_names,
			 (int)(sizeof(kind_names) / sizeof(kind_names[0])));
	}
	if (ev->ifname[0] || ev->ifindex) {
		KEY(&w, "\"interface\":");
		open_obj(&w, '{');
		if (ev->ifname[0]) {
			KEY(&w, "\"name\":");
			put_str(&w, ev->ifname);
		}
		if (ev->ifindex) {
			KEY(&w, "\"ifindex\":");
			put_u64(&w, ev->ifindex);
		}
		close_obj(&w, '}');
	}
	if (ev->direction == LOUPE_DIR_POD_EGRESS)
		KEY(&w, "\"direction\":\"POD_EGRESS\"");
	else if (ev->direction == LOUPE_DIR_POD_INGRESS)
		KEY(&w, "\"direction\":\"POD_INGRESS\"");
	if (ev->has_ip) {
		KEY(&w, "\"srcIp\":");
		put_addr(&w, ev->saddr, !ev->ipv6 && loupe_addr_is_v4_mapped(ev->saddr));
		KEY(&w, "\"dstIp\":");
		put_addr(&w, ev->daddr, !ev->ipv6 && loupe_addr_is_v4_mapped(ev->daddr));
		if (ev->sport) {
			KEY(&w, "\"srcPort\":");
			put_u64(&w, ev->sport);
		}
		if (ev->dport) {
			KEY(&w, "\"dstPort\":");
			put_u64(&w, ev->dport);
		}
	}
	if (ev->protocol) {
		KEY(&w, "\"protocol\":");
		proto = protocol_name(ev->protocol);
		if (proto) {
			putc_(&w, '"');
			put(&w, proto, strlen(proto));
			putc_(&w, '"');
		} else {
			put_u64(&w, ev->protocol);
		}
	}
	if (ev->has_vlan) {
		if (ev->vlan_id) {
			KEY(&w, "\"vlanId\":");
			put_u64(&w, ev->vlan_id);
		}
		KEY(&w, "\"hasVlan\":true");
	}
	if (ev->has_inner_vlan) {
		if (ev->inner_vlan_id) {
			KEY(&w, "\"innerVlanId\":");
			put_u64(&w, ev->inner_vlan_id);
		}
		KEY(&w, "\"hasInnerVlan\":true");
	}
	switch (ev->kind) {
	case LOUPE_EV_HTTP_REQUEST:
		put_http(&w, ev);
		break;
	case LOUPE_EV_TLS_CLIENT_HELLO:
		put_tls(&w, ev);
		break;
	case LOUPE_EV_DNS_QUERY:
		put_dns(&w, ev);
		break;
	case LOUPE_EV_FLOW_START:
	case LOUPE_EV_FLOW_END:
		put_flow(&w, ev);
		break;
	case LOUPE_EV_POLICY_VERDICT:
		put_verdict(&w, ev);
		break;
	case LOUPE_EV_LOST:
		put_lost(&w, ev);
		break;
	default:
		break;
	}
	if (ev->pod_ip_count > 0 && ev->pod_ip_count <= LOUPE_EVENT_POD_IPS_MAX)
		put_pod(&w, ev);
	/* after pod: rewrite and rate_limited are fields 27 and 28 */
	if (ev->kind == LOUPE_EV_REWRITE)
		put_rewrite(&w, ev);
	else if (ev->kind == LOUPE_EV_RATE_LIMITED)
		put_rate_limited(&w, ev);
	close_obj(&w, '}');

	if (w.full) {
		if (size)
			buf[0] = '\0';
		return -ENOSPC;
	}
	*w.p = '\0';
	return (int)(w.p - buf);
}

char *loupe_event_to_json(const struct loupe_event *ev)
{
	char buf[LOUPE_EVENT_JSON_MAX], *s;
	int n;

	n = loupe_event_json_write(ev, buf, sizeof(buf));
	if (n < 0) {
		errno = -n;
		return NULL;
	}
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	memcpy(s, buf, (size_t)n + 1);
	return s;
}
