// SPDX-License-Identifier: Apache-2.0
/*
 * Readable one-line form of an event for terminals:
 *   TIME DIRECTION SRC → DST  KIND DETAILS [vlan=..]
 * e.g. "2024-05-01T10:00:00.123456Z egress  198.18.10.1:40000 → 198.18.10.2:8080  HTTP GET
 * api.example.test /v1/chat", or "... VERDICT deny policy=ai rule=llm sni=x.test gen=2", or
 * "... REWRITE map=198.18.6.6:8080 policy=p rewrite=r gen=2".
 * Not for machines: -o json is the stable form.
 */
#include <netinet/in.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "event_text.h"

struct text_buf {
	char *buf;
	size_t size;
	size_t len;
	bool cut;
};

static void text_printf(struct text_buf *tb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void text_printf(struct text_buf *tb, const char *fmt, ...)
{
	size_t room = tb->size - tb->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tb->buf + tb->len, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= room) {
		tb->len = tb->size - 1;
		tb->cut = true;
		return;
	}
	tb->len += n;
}

/* Strings from packets may hold anything: keep the terminal safe and the line one line. */
static void text_escaped(struct text_buf *tb, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			text_printf(tb, "%c", *p);
		else
			text_printf(tb, "\\x%02x", *p);
	}
}

static void text_pad(struct text_buf *tb, size_t from, size_t width)
{
	while (tb->len - from < width && !tb->cut)
		text_printf(tb, " ");
}

static void text_addr(struct text_buf *tb, const struct loupe_event *ev, bool src)
{
	bool ports = ev->protocol == IPPROTO_TCP || ev->protocol == IPPROTO_UDP;
	char s[LOUPE_EVENT_ADDR_MAX];

	if (loupe_event_format_addr(ev, src, s, sizeof(s))) {
		text_printf(tb, "-");
		return;
	}
	if (!ports)
		text_printf(tb, "%s", s);
	else if (strchr(s, ':'))
		text_printf(tb, "[%s]:%u", s, src ? ev->sport : ev->dport);
	else
		text_printf(tb, "%s:%u", s, src ? ev->sport : ev->dport);
}

static const char *text_protocol(uint8_t protocol, char *buf, size_t size)
{
	switch (protocol) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "icmpv6";
	default:
		snprintf(buf, size, "proto-%u", protocol);
		return buf;
	}
}

static void text_tcp_flags(struct text_buf *tb, uint8_t flags)
{
	static const char *const names[8] = {
		"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"
	};
	bool first = true;
	int i;

	for (i = 0; i < 8; i++) {
		if (!(flags & (1u << i)))
			continue;
		text_printf(tb, "%s%s", first ? "" : ",", names[i]);
		first = false;
	}
	if (first)
		text_printf(tb, "none");
}

static const char *text_tls_version(uint16_t v, char *buf, size_t size)
{
	switch (v) {
	case 0x0300:
		return "SSL3.0";
	case 0x0301:
		return "TLS1.0";
	case 0x0302:
		return "TLS1.1";
	case 0x0303:
		return "TLS1.2";
	case 0x0304:
		return "TLS1.3";
	default:
		snprintf(buf, size, "0x%04x", v);
		return buf;
	}
}

static const char *text_dns_type(uint16_t qtype, char *buf, size_t size)
{
	static const struct {
		uint16_t type;
		const char *name;
	} types[] = {
		{ 1, "A" },	 { 2, "NS" },	  { 5, "CNAME" },   { 6, "SOA" },   { 12, "PTR" },
		{ 15, "MX" },	 { 16, "TXT" },	  { 28, "AAAA" },   { 33, "SRV" },  { 35, "NAPTR" },
		{ 43, "DS" },	 { 46, "RRSIG" }, { 48, "DNSKEY" }, { 64, "SVCB" }, { 65, "HTTPS" },
		{ 252, "AXFR" }, { 255, "ANY" },  { 257, "CAA" },
	};
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == qtype)
			return types[i].name;
	snprintf(buf, size, "TYPE%u", qtype);
	return buf;
}

static void text_http(struct text_buf *tb, const struct loupe_event *ev)
{
	text_printf(tb, "HTTP ");
	text_escaped(tb, ev->http.method);
	text_printf(tb, " ");
	if (ev->http.host[0])
		text_escaped(tb, ev->http.host);
	else
		text_printf(tb, "-");
	text_printf(tb, " ");
	text_escaped(tb, ev->http.path);
	if (ev->http.path_truncated)
		text_printf(tb, " (path truncated)");
	if (ev->http.host_truncated)
		text_printf(tb, " (host truncated)");
}

static void text_tls(struct text_buf *tb, const struct loupe_event *ev)
{
	char vbuf[8];
	int i;

	text_printf(tb, "TLS sni=");
	if (ev->tls.sni[0])
		text_escaped(tb, ev->tls.sni);
	else
		text_printf(tb, "-");
	text_printf(tb, " alpn=");
	for (i = 0; i < ev->tls.alpn_count && i < LOUPE_EVENT_ALPN_MAX; i++) {
		if (i)
			text_printf(tb, ",");
		text_escaped(tb, ev->tls.alpn[i]);
	}
	if (ev->tls.alpn_count <= 0)
		text_printf(tb, "-");
	text_printf(tb, " v=%s", text_tls_version(ev->tls.version, vbuf, sizeof(vbuf)));
	if (ev->tls.reassembled)
		text_printf(tb, " reassembled");
}

static void text_dns(struct text_buf *tb, const struct loupe_event *ev)
{
	char tbuf[16];

	text_printf(tb, "DNS %s ", text_dns_type(ev->dns.qtype, tbuf, sizeof(tbuf)));
	if (ev->dns.qname[0])
		text_escaped(tb, ev->dns.qname);
	else
		text_printf(tb, ev->dns.name_invalid ? "<invalid name>" : "<root>");
	if (ev->dns.qname[0] && ev->dns.name_invalid)
		text_printf(tb, " (invalid name)");
	if (ev->dns.qclass != 1)
		text_printf(tb, " class=%u", ev->dns.qclass);
	if (ev->dns.tcp)
		text_printf(tb, " over-tcp");
}

static void text_flow(struct text_buf *tb, const struct loupe_event *ev)
{
	const struct loupe_event_flow_dir *eg = &ev->flow.dir[LOUPE_DIR_POD_EGRESS];
	const struct loupe_event_flow_dir *in = &ev->flow.dir[LOUPE_DIR_POD_INGRESS];
	char pbuf[16];

	text_printf(tb, "FLOW %s %s", ev->kind == LOUPE_EV_FLOW_START ? "start" : "end",
		    text_protocol(ev->protocol, pbuf, sizeof(pbuf)));
	if (ev->kind == LOUPE_EV_FLOW_START) {
		if (ev->protocol == IPPROTO_TCP) {
			text_printf(tb, " flags=");
			text_tcp_flags(tb, ev->flow.tcp_flags);
		}
		return;
	}
	text_printf(tb, " egress=%llu pkts/%llu B ingress=%llu pkts/%llu B",
		    (unsigned long long)eg->packets, (unsigned long long)eg->bytes,
		    (unsigned long long)in->packets, (unsigned long long)in->bytes);
	if (ev->flow.last_seen_ns >= ev->flow.first_seen_ns)
		text_printf(tb, " duration=%.6fs",
			    (double)(ev->flow.last_seen_ns - ev->flow.first_seen_ns) / 1e9);
}

/*
 * "VERDICT deny policy=P rule=R sni=NAME gen=G": rule=(default) for a defaultAction, policy=?
 * when the agent no longer knows the generation's names; "opened-by=peer" when the peer
 * opened the flow (an ingress rule decided).
 */
static void text_verdict(struct text_buf *tb, const struct loupe_event *ev)
{
	static const char *const actions[] = { "?", "allow", "deny", "audit" };
	unsigned int a = (unsigned int)ev->verdict.action;

	text_printf(tb, "VERDICT %s", a < sizeof(actions) / sizeof(actions[0]) ? actions[a] : "?");
	if (ev->verdict.reason == LOUPE_EVENT_REASON_BOUND_EXCEEDED) {
		text_printf(tb, " bound-exceeded");
	} else {
		text_printf(tb, " policy=");
		if (ev->verdict.policy[0])
			text_escaped(tb, ev->verdict.policy);
		else
			text_printf(tb, "?");
		text_printf(tb, " rule=");
		if (ev->verdict.reason == LOUPE_EVENT_REASON_DEFAULT_ACTION)
			text_printf(tb, "(default)");
		else if (ev->verdict.rule[0])
			text_escaped(tb, ev->verdict.rule);
		else
			text_printf(tb, "?");
	}
	switch (ev->verdict.subject) {
	case LOUPE_VERDICT_SUBJECT_HTTP_HOST:
		text_printf(tb, " host=");
		text_escaped(tb, ev->http.host[0] ? ev->http.host : "-");
		break;
	case LOUPE_VERDICT_SUBJECT_TLS_SNI:
		text_printf(tb, " sni=");
		text_escaped(tb, ev->tls.sni[0] ? ev->tls.sni : "-");
		break;
	case LOUPE_VERDICT_SUBJECT_DNS_NAME:
		text_printf(tb, " qname=");
		text_escaped(tb, ev->dns.qname[0] ? ev->dns.qname : "<root>");
		break;
	default:
		break;
	}
	if (ev->verdict.origin == LOUPE_DIR_POD_INGRESS)
		text_printf(tb, " opened-by=peer");
	text_printf(tb, " gen=%u", ev->verdict.generation);
}

/*
 * "REWRITE map=198.18.6.6:8080 dscp=46 vlan-push=100 masked=authorization,x-api-key
 * policy=P rewrite=R gen=G": what was done (the addresses before it lead the line);
 * rewrite=#N when the agent no longer knows the generation's names, masked=#i for a header
 * whose name it does not know.
 */
static void text_rewrite(struct text_buf *tb, const struct loupe_event *ev)
{
	uint32_t a = ev->rewrite.actions;
	char addr[LOUPE_EVENT_ADDR_MAX];
	bool first = true;

	text_printf(tb, "REWRITE");
	if (a & LOUPE_RW_MAP) {
		if (loupe_event_format_other_addr(ev, ev->rewrite.new_addr, addr, sizeof(addr)))
			snprintf(addr, sizeof(addr), "?");
		if (strchr(addr, ':'))
			text_printf(tb, " map=[%s]:%u", addr, ev->rewrite.new_port);
		else
			text_printf(tb, " map=%s:%u", addr, ev->rewrite.new_port);
	}
	if (a & LOUPE_RW_DSCP)
		text_printf(tb, " dscp=%u", ev->rewrite.dscp);
	if (a & LOUPE_RW_VLAN_PUSH)
		text_printf(tb, " vlan-push=%u", ev->rewrite.vlan_id);
	if (a & LOUPE_RW_VLAN_POP)
		text_printf(tb, " vlan-pop=%u", ev->rewrite.vlan_id);
	if (a & LOUPE_RW_MASK) {
		text_printf(tb, " masked=");
		for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
			if (!(ev->rewrite.masked_bits >> i & 1))
				continue;
			text_printf(tb, "%s", first ? "" : ",");
			first = false;
			if (ev->rewrite.masked[i][0])
				text_escaped(tb, ev->rewrite.masked[i]);
			else
				text_printf(tb, "#%d", i);
		}
		if (first)
			text_printf(tb, "-");
	}
	text_printf(tb, " policy=");
	if (ev->rewrite.policy[0])
		text_escaped(tb, ev->rewrite.policy);
	else
		text_printf(tb, "?");
	text_printf(tb, " rewrite=");
	if (ev->rewrite.name[0])
		text_escaped(tb, ev->rewrite.name);
	else
		text_printf(tb, "#%u", ev->rewrite.index);
	text_printf(tb, " gen=%u", ev->rewrite.generation);
}

const char *loupe_event_text_direction(int direction)
{
	switch (direction) {
	case LOUPE_DIR_POD_EGRESS:
		return "egress";
	case LOUPE_DIR_POD_INGRESS:
		return "ingress";
	default:
		return "-";
	}
}

int loupe_event_text_format(const struct loupe_event *ev, char *buf, size_t size)
{
	struct text_buf tb = { .buf = buf, .size = size };
	time_t secs = (time_t)(ev->time_ns / 1000000000ull);
	size_t from;
	struct tm tm;

	if (!size)
		return -ENOSPC;
	buf[0] = '\0';

	gmtime_r(&secs, &tm);
	text_printf(&tb, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ ", tm.tm_year + 1900, tm.tm_mon + 1,
		    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		    (unsigned int)(ev->time_ns % 1000000000ull / 1000));
	text_printf(&tb, "%-7s ", loupe_event_text_direction(ev->direction));

	/* "→" is three bytes but one column wide: pad by columns, not bytes */
	from = tb.len;
	text_addr(&tb, ev, true);
	text_pad(&tb, from, 21);
	text_printf(&tb, " \u2192 ");
	from = tb.len;
	text_addr(&tb, ev, false);
	text_pad(&tb, from, 21);
	text_printf(&tb, "  ");

	switch (ev->kind) {
	case LOUPE_EV_HTTP_REQUEST:
		text_http(&tb, ev);
		break;
	case LOUPE_EV_TLS_CLIENT_HELLO:
		text_tls(&tb, ev);
		break;
	case LOUPE_EV_DNS_QUERY:
		text_dns(&tb, ev);
		break;
	case LOUPE_EV_FLOW_START:
	case LOUPE_EV_FLOW_END:
		text_flow(&tb, ev);
		break;
	case LOUPE_EV_POLICY_VERDICT:
		text_verdict(&tb, ev);
		break;
	case LOUPE_EV_REWRITE:
		text_rewrite(&tb, ev);
		break;
	case LOUPE_EV_RATE_LIMITED:
		text_printf(&tb, "RATE_LIMITED dropped=%llu limit=%llu B/s burst=%llu B",
			    (unsigned long long)ev->rate_limited.dropped,
			    (unsigned long long)ev->rate_limited.bytes_per_sec,
			    (unsigned long long)ev->rate_limited.burst);
		break;
	case LOUPE_EV_LOST:
		text_printf(&tb, "LOST %llu %s events", (unsigned long long)ev->lost.count,
			    loupe_event_kind_name(ev->lost.kind));
		break;
	default:
		text_printf(&tb, "%s", loupe_event_kind_name(ev->kind));
		break;
	}

	if (ev->has_vlan)
		text_printf(&tb, " vlan=%u", ev->vlan_id);
	if (ev->has_inner_vlan)
		text_printf(&tb, " inner-vlan=%u", ev->inner_vlan_id);
	return tb.cut ? -ENOSPC : (int)tb.len;
}
