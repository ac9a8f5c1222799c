// SPDX-License-Identifier: Apache-2.0
/*
 * loupe_event_decode() on crafted ring buffer records: each kind (REWRITE and RATE_LIMITED
 * included), sizes, lengths, strings without terminators, ALPN lists; kind names and address
 * formatting. Not for protobuf or
 * JSON (test_event_pb.c) nor for records made by the real datapath (tests/bpf).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <criterion/criterion.h>

#include "event.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define TS_NS  1000000000ULL
#define OFFSET 1700000000000000000LL

static void fill_hdr(struct loupe_event_hdr *h, enum loupe_event_kind kind)
{
	static const uint8_t src[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 1 };
	static const uint8_t dst[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 2 };

	memset(h, 0, sizeof(*h));
	h->ts_ns = TS_NS;
	h->ifindex = 7;
	h->kind = kind;
	h->direction = LOUPE_DIR_POD_EGRESS;
	h->protocol = 6;
	memcpy(h->saddr, src, sizeof(src));
	memcpy(h->daddr, dst, sizeof(dst));
	h->sport = 40000;
	h->dport = 80;
}

/* Sets a string field and its length the way the datapath does. */
#define SET_STR(field, len_field, s)                                                               \
	do {                                                                                       \
		memset((field), 0, sizeof(field));                                                 \
		memcpy((field), (s), strlen(s));                                                   \
		(len_field) = (__u16)strlen(s);                                                    \
	} while (0)

static struct loupe_event ev;

static void expect_rejected(const void *rec, size_t size)
{
	memset(&ev, 0xaa, sizeof(ev));
	cr_expect_eq(loupe_event_decode(rec, size, 0, &ev), -EINVAL);
	/* nothing half-decoded is left behind */
	cr_expect_eq(ev.kind, 0);
	cr_expect_eq(ev.time_ns, 0);
	cr_expect_eq(ev.http.path[0], '\0');
}

Test(event_decode, flow_start)
{
	struct loupe_event_flow rec;

	fill_hdr(&rec.hdr, LOUPE_EV_FLOW_START);
	memset(rec.pad, 0, sizeof(rec.pad));
	rec.tcp_flags = 0x02;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), OFFSET, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_FLOW_START);
	cr_expect_eq(ev.time_ns, TS_NS + OFFSET);
	cr_expect_eq(ev.seq, 0);
	cr_expect_str_eq(ev.node, "");
	cr_expect_str_eq(ev.ifname, "");
	cr_expect_eq(ev.ifindex, 7);
	cr_expect_eq(ev.direction, LOUPE_DIR_POD_EGRESS);
	cr_expect_eq(ev.protocol, 6);
	cr_expect(ev.has_ip);
	cr_expect_not(ev.ipv6);
	cr_expect_arr_eq(ev.saddr, rec.hdr.saddr, 16);
	cr_expect_arr_eq(ev.daddr, rec.hdr.daddr, 16);
	cr_expect_eq(ev.sport, 40000);
	cr_expect_eq(ev.dport, 80);
	cr_expect_not(ev.has_vlan);
	cr_expect_not(ev.has_inner_vlan);
	cr_expect_eq(ev.flow.tcp_flags, 0x02);
	cr_expect_eq(ev.flow.first_seen_ns, TS_NS + OFFSET);
	cr_expect_eq(ev.flow.last_seen_ns, TS_NS + OFFSET);
	cr_expect_eq(ev.flow.dir[0].packets, 0);
}

Test(event_decode, header_fields)
{
	struct loupe_event_flow rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_FLOW_START);
	rec.hdr.direction = LOUPE_DIR_POD_INGRESS;
	rec.hdr.protocol = 17;
	rec.hdr.flags = LOUPE_EVF_IPV6 | LOUPE_EVF_VLAN | LOUPE_EVF_VLAN_INNER;
	rec.hdr.vlan_id = 100;
	rec.hdr.inner_vlan_id = 200;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), -500000000LL, &ev), 0);
	cr_expect_eq(ev.time_ns, TS_NS - 500000000ULL, "negative offset");
	cr_expect_eq(ev.direction, LOUPE_DIR_POD_INGRESS);
	cr_expect_eq(ev.protocol, 17);
	cr_expect(ev.ipv6);
	cr_expect(ev.has_vlan);
	cr_expect_eq(ev.vlan_id, 100);
	cr_expect(ev.has_inner_vlan);
	cr_expect_eq(ev.inner_vlan_id, 200);

	/* VIDs without their flags are not reported; an out-of-range direction is unknown */
	rec.hdr.flags = 0;
	rec.hdr.direction = 5;
	rec.hdr.protocol = 0;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_not(ev.has_vlan);
	cr_expect_eq(ev.vlan_id, 0);
	cr_expect_not(ev.has_inner_vlan);
	cr_expect_eq(ev.inner_vlan_id, 0);
	cr_expect_eq(ev.direction, -1);
	cr_expect_not(ev.has_ip);
	cr_expect_not(ev.ipv6);

	/* a priority tag: VID 0 with the flag */
	rec.hdr.flags = LOUPE_EVF_VLAN;
	rec.hdr.vlan_id = 0;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect(ev.has_vlan);
	cr_expect_eq(ev.vlan_id, 0);
}

/* Packs the path and the Host value the way the datapath does; returns the record's size. */
static size_t set_http(struct loupe_event_http *rec, const char *path, const char *host)
{
	size_t plen = strlen(path), hlen = strlen(host);

	memset(rec->strings, 0, sizeof(rec->strings));
	memcpy(rec->strings, path, plen);
	memcpy(rec->strings + plen + 1, host, hlen);
	rec->path_len = (__u16)plen;
	rec->host_len = (__u16)hlen;
	return offsetof(struct loupe_event_http, strings) + plen + 1 + hlen + 1;
}

Test(event_decode, http)
{
	struct loupe_event_http rec;
	size_t size;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_HTTP_REQUEST);
	strcpy(rec.method, "GET");
	size = set_http(&rec, "/index.html?q=1", "example.com:8080");
	rec.flags = LOUPE_L7F_PATH_TRUNCATED;
	/* the record as the datapath sends it: cut after the Host's NUL */
	cr_assert_eq(loupe_event_decode(&rec, size, 0, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_HTTP_REQUEST);
	cr_expect_eq(ev.time_ns, TS_NS);
	cr_expect_str_eq(ev.http.method, "GET");
	cr_expect_str_eq(ev.http.path, "/index.html?q=1");
	cr_expect_str_eq(ev.http.host, "example.com:8080");
	cr_expect(ev.http.path_truncated);
	cr_expect_not(ev.http.host_truncated);
	/* and whole */
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.http.host, "example.com:8080");

	/* a missing Host header: empty host */
	size = set_http(&rec, "/index.html?q=1", "");
	rec.flags = LOUPE_L7F_HOST_MISSING | LOUPE_L7F_HOST_TRUNCATED;
	cr_assert_eq(loupe_event_decode(&rec, size, 0, &ev), 0);
	cr_expect_str_eq(ev.http.path, "/index.html?q=1");
	cr_expect_str_eq(ev.http.host, "");
	cr_expect_not(ev.http.path_truncated);
	cr_expect(ev.http.host_truncated);
}

Test(event_decode, http_strings_not_trusted)
{
	struct loupe_event_http rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_HTTP_REQUEST);

	/* no terminator anywhere: the length fields bound the strings */
	memset(rec.method, 'M', sizeof(rec.method));
	memset(rec.strings, 'p', sizeof(rec.strings));
	rec.path_len = LOUPE_HTTP_PATH_MAX - 1;
	memset(rec.strings + LOUPE_HTTP_PATH_MAX, 'h', LOUPE_HTTP_HOST_MAX);
	rec.host_len = LOUPE_HTTP_HOST_MAX - 2;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(strlen(ev.http.method), sizeof(rec.method) - 1);
	cr_expect_eq(strlen(ev.http.path), LOUPE_HTTP_PATH_MAX - 1);
	cr_expect_eq(ev.http.path[0], 'p');
	cr_expect_eq(strlen(ev.http.host), LOUPE_HTTP_HOST_MAX - 2);
	cr_expect_eq(ev.http.host[0], 'h');

	/* the length field wins over the bytes behind it, and the first NUL over both */
	memset(rec.strings, 'p', sizeof(rec.strings));
	memcpy(rec.strings, "/abcdef", 7);
	rec.path_len = 3;
	memcpy(rec.strings + 4, "ab\0cd", 5);
	rec.host_len = 5;
	strcpy(rec.method, "POST");
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.http.method, "POST");
	cr_expect_str_eq(ev.http.path, "/ab");
	cr_expect_str_eq(ev.http.host, "ab");
	cr_expect_not(ev.http.path_truncated);
	cr_expect_not(ev.http.host_truncated);
}

Test(event_decode, http_length_fields_oversize)
{
	struct loupe_event_http rec;
	size_t size;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_HTTP_REQUEST);
	set_http(&rec, "/x", "h");
	rec.path_len = LOUPE_HTTP_PATH_MAX;
	expect_rejected(&rec, sizeof(rec));

	set_http(&rec, "/x", "h");
	rec.host_len = 0xffff;
	expect_rejected(&rec, sizeof(rec));

	/* lengths that reach past the record's end */
	size = set_http(&rec, "/x", "host.test");
	expect_rejected(&rec, size - 1);
	rec.host_len = 10;
	expect_rejected(&rec, size);
}

Test(event_decode, tls)
{
	static const char alpn[] = "\x02h2\x08http/1.1";
	struct loupe_event_tls rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_TLS_CLIENT_HELLO);
	rec.hdr.dport = 443;
	SET_STR(rec.sni, rec.sni_len, "example.org");
	rec.legacy_version = 0x0303;
	rec.max_version = 0x0304;
	memcpy(rec.alpn, alpn, sizeof(alpn) - 1);
	rec.alpn_len = sizeof(alpn) - 1;
	rec.flags = LOUPE_L7F_TLS_REASSEMBLED;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_TLS_CLIENT_HELLO);
	cr_expect_eq(ev.dport, 443);
	cr_expect_str_eq(ev.tls.sni, "example.org");
	cr_expect_eq(ev.tls.version, 0x0304);
	cr_expect_eq(ev.tls.legacy_version, 0x0303);
	cr_expect(ev.tls.reassembled);
	cr_assert_eq(ev.tls.alpn_count, 2);
	cr_expect_str_eq(ev.tls.alpn[0], "h2");
	cr_expect_str_eq(ev.tls.alpn[1], "http/1.1");

	/* no supported_versions: the legacy version stands */
	rec.max_version = 0;
	rec.flags = 0;
	rec.alpn_len = 0;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.tls.version, 0x0303);
	cr_expect_not(ev.tls.reassembled);
	cr_expect_eq(ev.tls.alpn_count, 0);
}

Test(event_decode, tls_alpn_malformed)
{
	static const struct {
		const char *name;
		const char *list;
		size_t len;
		int count;
		const char *first;
	} rows[] = {
		{ "entry longer than the list", "\x02h2\x09http/1.1", 12, 1, "h2" },
		{ "cut list (ALPN_TRUNCATED)", "\x02h2\x08http/1", 10, 1, "h2" },
		{ "empty entry stops", "\x00\x02h2", 4, 0, "" },
		{ "empty entry after a good one", "\x02h2\x00\x02h3", 7, 1, "h2" },
		{ "length byte only", "\x05", 1, 0, "" },
		{ "NUL inside a name",
		  "\x03"
		  "a\0b",
		  4, 1, "a" },
	};
	struct loupe_event_tls rec;

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		memset(&rec, 0, sizeof(rec));
		fill_hdr(&rec.hdr, LOUPE_EV_TLS_CLIENT_HELLO);
		memcpy(rec.alpn, rows[i].list, rows[i].len);
		rec.alpn_len = (__u16)rows[i].len;
		cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0, "%s", rows[i].name);
		cr_expect_eq(ev.tls.alpn_count, rows[i].count, "%s", rows[i].name);
		if (rows[i].count)
			cr_expect_str_eq(ev.tls.alpn[0], rows[i].first, "%s", rows[i].name);
	}
}

Test(event_decode, tls_alpn_limits)
{
	struct loupe_event_tls rec;

	/* ten one-letter names: the first LOUPE_EVENT_ALPN_MAX are kept */
	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_TLS_CLIENT_HELLO);
	for (int i = 0; i < 10; i++) {
		rec.alpn[2 * i] = 1;
		rec.alpn[2 * i + 1] = (__u8)('a' + i);
	}
	rec.alpn_len = 20;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_assert_eq(ev.tls.alpn_count, LOUPE_EVENT_ALPN_MAX);
	cr_expect_str_eq(ev.tls.alpn[0], "a");
	cr_expect_str_eq(ev.tls.alpn[7], "h");

	/* one name filling the whole list: 63 bytes */
	memset(rec.alpn, 'z', sizeof(rec.alpn));
	rec.alpn[0] = sizeof(rec.alpn) - 1;
	rec.alpn_len = sizeof(rec.alpn);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_assert_eq(ev.tls.alpn_count, 1);
	cr_expect_eq(strlen(ev.tls.alpn[0]), sizeof(rec.alpn) - 1);

	rec.alpn_len = sizeof(rec.alpn) + 1;
	expect_rejected(&rec, sizeof(rec));
}

Test(event_decode, tls_sni)
{
	struct loupe_event_tls rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_TLS_CLIENT_HELLO);
	memset(rec.sni, 'x', sizeof(rec.sni));
	rec.sni_len = sizeof(rec.sni);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(strlen(ev.tls.sni), sizeof(rec.sni) - 1);

	rec.sni_len = 4;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.tls.sni, "xxxx");

	rec.sni_len = sizeof(rec.sni) + 1;
	expect_rejected(&rec, sizeof(rec));
}

Test(event_decode, dns)
{
	struct loupe_event_dns rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_DNS_QUERY);
	rec.hdr.protocol = 17;
	rec.hdr.dport = 53;
	SET_STR(rec.qname, rec.qname_len, "www.example.com");
	rec.qtype = 28;
	rec.qclass = 1;
	rec.id = 0x1234;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_DNS_QUERY);
	cr_expect_str_eq(ev.dns.qname, "www.example.com");
	cr_expect_eq(ev.dns.qtype, 28);
	cr_expect_eq(ev.dns.qclass, 1);
	cr_expect_eq(ev.dns.id, 0x1234);
	cr_expect_not(ev.dns.name_invalid);
	cr_expect_not(ev.dns.tcp);

	rec.flags = LOUPE_L7F_DNS_NAME_INVALID | LOUPE_L7F_DNS_OVER_TCP;
	memset(rec.qname, 0, sizeof(rec.qname));
	rec.qname_len = 0;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.dns.qname, "");
	cr_expect(ev.dns.name_invalid);
	cr_expect(ev.dns.tcp);

	memset(rec.qname, 'a', sizeof(rec.qname));
	rec.qname_len = sizeof(rec.qname);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(strlen(ev.dns.qname), sizeof(rec.qname) - 1);

	rec.qname_len = sizeof(rec.qname) + 1;
	expect_rejected(&rec, sizeof(rec));
}

static void fill_verdict(struct loupe_event_verdict *rec, __u8 subject_kind, const char *subject)
{
	memset(rec, 0, sizeof(*rec));
	fill_hdr(&rec->hdr, LOUPE_EV_POLICY_VERDICT);
	rec->generation = 42;
	rec->bit = 3;
	rec->action = LOUPE_VERDICT_DENY;
	rec->reason = LOUPE_VERDICT_RULE;
	rec->subject_kind = subject_kind;
	rec->origin = LOUPE_DIR_POD_EGRESS;
	SET_STR(rec->subject, rec->subject_len, subject);
}

Test(event_decode, verdict)
{
	static const struct {
		__u8 action;
		enum loupe_event_action want;
	} actions[] = {
		{ LOUPE_VERDICT_ALLOW, LOUPE_EVENT_ACTION_ALLOW },
		{ LOUPE_VERDICT_DENY, LOUPE_EVENT_ACTION_DENY },
		{ LOUPE_VERDICT_AUDIT, LOUPE_EVENT_ACTION_AUDIT },
		/* NONE and PENDING are never sent; unknown numbers are kept as unspecified */
		{ LOUPE_VERDICT_NONE, LOUPE_EVENT_ACTION_UNSPECIFIED },
		{ LOUPE_VERDICT_PENDING, LOUPE_EVENT_ACTION_UNSPECIFIED },
		{ 200, LOUPE_EVENT_ACTION_UNSPECIFIED },
	};
	struct loupe_event_verdict rec;

	fill_verdict(&rec, LOUPE_VERDICT_SUBJECT_TLS_SNI, "api.openai.com");
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), OFFSET, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_POLICY_VERDICT);
	cr_expect_eq(ev.time_ns, TS_NS + OFFSET);
	cr_expect_eq(ev.ifindex, 7);
	cr_expect_eq(ev.direction, LOUPE_DIR_POD_EGRESS);
	cr_expect(ev.has_ip);
	cr_expect_eq(ev.dport, 80);
	cr_expect_eq(ev.verdict.action, LOUPE_EVENT_ACTION_DENY);
	cr_expect_eq(ev.verdict.reason, LOUPE_EVENT_REASON_RULE);
	cr_expect_eq(ev.verdict.generation, 42);
	cr_expect_eq(ev.verdict.bit, 3);
	cr_expect_eq(ev.verdict.origin, LOUPE_DIR_POD_EGRESS);
	cr_expect_eq(ev.verdict.subject, LOUPE_VERDICT_SUBJECT_TLS_SNI);
	cr_expect_str_eq(ev.tls.sni, "api.openai.com");
	cr_expect_str_eq(ev.http.host, "");
	cr_expect_str_eq(ev.dns.qname, "");
	/* names come from the pipeline, not from the record */
	cr_expect_str_eq(ev.verdict.policy, "");
	cr_expect_str_eq(ev.verdict.rule, "");

	for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
		rec.action = actions[i].action;
		cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
		cr_expect_eq(ev.verdict.action, actions[i].want, "action %u", actions[i].action);
	}

	fill_verdict(&rec, LOUPE_VERDICT_SUBJECT_HTTP_HOST, "api.example.test:8080");
	rec.origin = LOUPE_DIR_POD_INGRESS;
	rec.hdr.direction = LOUPE_DIR_POD_INGRESS;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.http.host, "api.example.test:8080");
	cr_expect_not(ev.http.host_truncated);
	cr_expect_str_eq(ev.tls.sni, "");
	cr_expect_eq(ev.verdict.origin, LOUPE_DIR_POD_INGRESS);

	fill_verdict(&rec, LOUPE_VERDICT_SUBJECT_DNS_NAME, "llm.example.test");
	rec.hdr.protocol = 17;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.dns.qname, "llm.example.test");
	cr_expect_eq(ev.verdict.subject, LOUPE_VERDICT_SUBJECT_DNS_NAME);

	/* an L4 rule: no subject; BOUND_EXCEEDED has no rule */
	fill_verdict(&rec, LOUPE_VERDICT_SUBJECT_NONE, "");
	rec.reason = LOUPE_VERDICT_BOUND_EXCEEDED;
	rec.bit = LOUPE_POLICY_BIT_NONE;
	rec.origin = 7;
	cr_assert_eq(
		loupe_event_decode(&rec, offsetof(struct loupe_event_verdict, subject) + 1, 0, &ev),
		0);
	cr_expect_eq(ev.verdict.subject, LOUPE_VERDICT_SUBJECT_NONE);
	cr_expect_eq(ev.verdict.reason, LOUPE_EVENT_REASON_BOUND_EXCEEDED);
	cr_expect_eq(ev.verdict.bit, LOUPE_POLICY_BIT_NONE);
	cr_expect_eq(ev.verdict.origin, -1);
	rec.reason = 99;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.verdict.reason, LOUPE_EVENT_REASON_UNSPECIFIED);
}

Test(event_decode, verdict_subject_not_trusted)
{
	struct loupe_event_verdict rec;

	/* an unknown subject kind: the name is not put anywhere */
	fill_verdict(&rec, 9, "x.example");
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.verdict.subject, LOUPE_VERDICT_SUBJECT_NONE);
	cr_expect_str_eq(ev.http.host, "");
	cr_expect_str_eq(ev.tls.sni, "");
	cr_expect_str_eq(ev.dns.qname, "");

	/* cut at its length field, at its first NUL, at the buffer's last byte */
	fill_verdict(&rec, LOUPE_VERDICT_SUBJECT_TLS_SNI, "abcdef");
	rec.subject_len = 3;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.tls.sni, "abc");
	rec.subject_len = 40;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.tls.sni, "abcdef");
	memset(rec.subject, 'h', sizeof(rec.subject));
	rec.subject_kind = LOUPE_VERDICT_SUBJECT_HTTP_HOST;
	rec.subject_len = sizeof(rec.subject);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(strlen(ev.http.host), sizeof(rec.subject) - 1);
	cr_expect(ev.http.host_truncated);

	rec.subject_len = sizeof(rec.subject) + 1;
	expect_rejected(&rec, sizeof(rec));
	rec.subject_kind = LOUPE_VERDICT_SUBJECT_NONE;
	expect_rejected(&rec, sizeof(rec));
}

Test(event, verdict_names)
{
	cr_expect_str_eq(loupe_event_action_name(LOUPE_EVENT_ACTION_DENY), "DENY");
	cr_expect_str_eq(loupe_event_action_name(LOUPE_EVENT_ACTION_AUDIT), "AUDIT");
	cr_expect_str_eq(loupe_event_action_name((enum loupe_event_action)4), "?");
	cr_expect_str_eq(loupe_event_reason_name(LOUPE_EVENT_REASON_DEFAULT_ACTION),
			 "DEFAULT_ACTION");
	cr_expect_str_eq(loupe_event_reason_name((enum loupe_event_reason) - 1), "?");
}

static void fill_rewrite(struct loupe_event_rewrite *rec, __u32 actions)
{
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 6, 6 };

	/* the fields of actions not done hold the datapath's leftovers: not zero */
	memset(rec, 0x5a, sizeof(*rec));
	fill_hdr(&rec->hdr, LOUPE_EV_REWRITE);
	rec->generation = 9;
	rec->rewrite = 2;
	rec->actions = actions;
	memcpy(rec->new_addr, mapped, sizeof(mapped));
	rec->new_port = 8080;
	rec->dscp = 46;
	rec->n_masked = 2;
	rec->vlan_id = 100;
	rec->masked_bits = 0x5;
}

Test(event_decode, rewrite)
{
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 6, 6 };
	struct loupe_event_rewrite rec;

	fill_rewrite(&rec, LOUPE_RW_MAP | LOUPE_RW_DSCP | LOUPE_RW_MASK);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), OFFSET, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_REWRITE);
	cr_expect_eq(ev.time_ns, TS_NS + OFFSET);
	cr_expect_eq(ev.dport, 80, "the header is the packet as it came");
	cr_expect_eq(ev.rewrite.actions, LOUPE_RW_MAP | LOUPE_RW_DSCP | LOUPE_RW_MASK);
	cr_expect_eq(ev.rewrite.generation, 9);
	cr_expect_eq(ev.rewrite.index, 2);
	cr_expect_arr_eq(ev.rewrite.new_addr, mapped, 16);
	cr_expect_eq(ev.rewrite.new_port, 8080);
	cr_expect_eq(ev.rewrite.dscp, 46);
	cr_expect_eq(ev.rewrite.vlan_id, 0, "no VLAN action: no VID");
	cr_expect_eq(ev.rewrite.masked_bits, 0x5);
	/* names come from the pipeline, not from the record */
	cr_expect_str_eq(ev.rewrite.policy, "");
	cr_expect_str_eq(ev.rewrite.name, "");
	cr_expect_str_eq(ev.rewrite.masked[0], "");

	/* only the values of what was done */
	fill_rewrite(&rec, LOUPE_RW_VLAN_PUSH);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.rewrite.vlan_id, 100);
	cr_expect_eq(ev.rewrite.new_port, 0);
	cr_expect_eq(ev.rewrite.new_addr[15], 0);
	cr_expect_eq(ev.rewrite.dscp, 0);
	cr_expect_eq(ev.rewrite.masked_bits, 0);
	fill_rewrite(&rec, LOUPE_RW_VLAN_POP);
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.rewrite.vlan_id, 100);

	/* masked bits past the names a rewrite can have are not kept; unknown actions are */
	fill_rewrite(&rec, LOUPE_RW_MASK | 1u << 30);
	rec.masked_bits = 0xff81;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.rewrite.masked_bits, 0x81);
	cr_expect_eq(ev.rewrite.actions, LOUPE_RW_MASK | 1u << 30);
	cr_expect(loupe_event_strings_valid(&ev));
	memset(ev.rewrite.masked[7], 'x', sizeof(ev.rewrite.masked[7]));
	cr_expect_not(loupe_event_strings_valid(&ev), "an unterminated name of a masked bit");
	ev.rewrite.masked_bits = 0x1;
	cr_expect(loupe_event_strings_valid(&ev), "the name of a bit not masked is not read");
	memset(ev.rewrite.name, 'n', sizeof(ev.rewrite.name));
	cr_expect_not(loupe_event_strings_valid(&ev));
}

Test(event_decode, rate_limited)
{
	struct loupe_event_rate_limited rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_RATE_LIMITED);
	rec.hdr.direction = LOUPE_DIR_POD_INGRESS;
	rec.dropped = 17;
	rec.bytes_per_sec = 1250000;
	rec.burst = UINT64_MAX;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 0, &ev), 0);
	cr_expect_eq(ev.kind, LOUPE_EV_RATE_LIMITED);
	cr_expect_eq(ev.direction, LOUPE_DIR_POD_INGRESS);
	cr_expect_eq(ev.rate_limited.dropped, 17);
	cr_expect_eq(ev.rate_limited.bytes_per_sec, 1250000);
	cr_expect_eq(ev.rate_limited.burst, UINT64_MAX);
}

Test(event_decode, wrong_size)
{
	static union {
		struct loupe_event_flow flow;
		struct loupe_event_http http;
		struct loupe_event_tls tls;
		struct loupe_event_dns dns;
		struct loupe_event_verdict verdict;
		struct loupe_event_rewrite rewrite;
		struct loupe_event_rate_limited rate_limited;
		char bytes[2048];
	} rec;
	/* records with a string at their end may stop after that string's NUL */
	static const struct {
		enum loupe_event_kind kind;
		size_t min, max;
	} rows[] = {
		{ LOUPE_EV_FLOW_START, sizeof(struct loupe_event_flow),
		  sizeof(struct loupe_event_flow) },
		{ LOUPE_EV_HTTP_REQUEST, offsetof(struct loupe_event_http, strings) + 2,
		  sizeof(struct loupe_event_http) },
		{ LOUPE_EV_TLS_CLIENT_HELLO, offsetof(struct loupe_event_tls, sni) + 1,
		  sizeof(struct loupe_event_tls) },
		{ LOUPE_EV_DNS_QUERY, offsetof(struct loupe_event_dns, qname) + 1,
		  sizeof(struct loupe_event_dns) },
		{ LOUPE_EV_POLICY_VERDICT, offsetof(struct loupe_event_verdict, subject) + 1,
		  sizeof(struct loupe_event_verdict) },
		{ LOUPE_EV_REWRITE, sizeof(struct loupe_event_rewrite),
		  sizeof(struct loupe_event_rewrite) },
		{ LOUPE_EV_RATE_LIMITED, sizeof(struct loupe_event_rate_limited),
		  sizeof(struct loupe_event_rate_limited) },
	};

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		memset(&rec, 0, sizeof(rec));
		fill_hdr(&rec.flow.hdr, rows[i].kind);
		cr_expect_eq(loupe_event_decode(&rec, rows[i].max, 0, &ev), 0, "kind %d",
			     rows[i].kind);
		cr_expect_eq(loupe_event_decode(&rec, rows[i].min, 0, &ev), 0, "kind %d, short",
			     rows[i].kind);
		expect_rejected(&rec, rows[i].min - 1);
		expect_rejected(&rec, rows[i].max + 1);
		expect_rejected(&rec, rows[i].max + 8);
		expect_rejected(&rec, sizeof(struct loupe_event_hdr));
		expect_rejected(&rec, sizeof(struct loupe_event_hdr) - 1);
		expect_rejected(&rec, 0);
	}
	/* the HTTP record's size with a FLOW_START header */
	fill_hdr(&rec.flow.hdr, LOUPE_EV_FLOW_START);
	expect_rejected(&rec, sizeof(struct loupe_event_http));
	expect_rejected(NULL, sizeof(struct loupe_event_flow));
}

Test(event_decode, unknown_kind)
{
	static const unsigned kinds[] = {
		LOUPE_EV_UNSPECIFIED, LOUPE_EV_FLOW_END, LOUPE_EV_AGENT,
		LOUPE_EV_LOST,	      LOUPE_EV_KIND_MAX, 0xffff,
	};
	struct loupe_event_flow rec;

	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		memset(&rec, 0, sizeof(rec));
		fill_hdr(&rec.hdr, LOUPE_EV_FLOW_START);
		rec.hdr.kind = (__u16)kinds[i];
		expect_rejected(&rec, sizeof(rec));
		expect_rejected(&rec, sizeof(rec.hdr));
	}
}

Test(event_decode, unaligned_record)
{
	static char buf[sizeof(struct loupe_event_dns) + 1];
	struct loupe_event_dns rec;

	memset(&rec, 0, sizeof(rec));
	fill_hdr(&rec.hdr, LOUPE_EV_DNS_QUERY);
	SET_STR(rec.qname, rec.qname_len, "a.b");
	memcpy(buf + 1, &rec, sizeof(rec));
	cr_assert_eq(loupe_event_decode(buf + 1, sizeof(rec), 0, &ev), 0);
	cr_expect_str_eq(ev.dns.qname, "a.b");
}

Test(event, kind_names)
{
	static const char *const want[] = {
		"EVENT_KIND_UNSPECIFIED", "FLOW_START", "FLOW_END",	  "HTTP_REQUEST",
		"TLS_CLIENT_HELLO",	  "DNS_QUERY",	"POLICY_VERDICT", "REWRITE",
		"RATE_LIMITED",		  "LOST",	"AGENT",
	};

	cr_assert_eq(ARRAY_SIZE(want), LOUPE_EV_KIND_MAX);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		cr_expect_str_eq(loupe_event_kind_name((enum loupe_event_kind)i), want[i]);
	errno = 0;
	cr_expect_null(loupe_event_kind_name(LOUPE_EV_KIND_MAX));
	cr_expect_eq(errno, EINVAL);
	cr_expect_null(loupe_event_kind_name((enum loupe_event_kind) - 1));
}

Test(event, format_addr)
{
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 10, 0, 0, 254 };
	struct loupe_event e;
	char buf[LOUPE_EVENT_ADDR_MAX];

	memset(&e, 0, sizeof(e));
	e.has_ip = true;
	memcpy(e.saddr, mapped, 16);
	memcpy(e.daddr, v6, 16);

	cr_expect_eq(loupe_event_format_addr(&e, true, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "10.0.0.254");
	/* an IPv4 event whose address is not mapped: shown as it is */
	cr_expect_eq(loupe_event_format_addr(&e, false, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "2001:db8::1");

	e.ipv6 = true;
	cr_expect_eq(loupe_event_format_addr(&e, false, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "2001:db8::1");
	/* a mapped address inside an IPv6 packet stays IPv6 */
	cr_expect_eq(loupe_event_format_addr(&e, true, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "::ffff:10.0.0.254");

	cr_expect_eq(loupe_event_format_addr(&e, false, buf, 4), -ENOSPC);
	e.ipv6 = false;
	cr_expect_eq(loupe_event_format_addr(&e, true, buf, 10), -ENOSPC);
	cr_expect_eq(loupe_event_format_addr(&e, true, buf, 11), 0);
	cr_expect_str_eq(buf, "10.0.0.254");

	e.has_ip = false;
	cr_expect_eq(loupe_event_format_addr(&e, true, buf, sizeof(buf)), -EINVAL);

	/* a REWRITE's new address: written by the same rule, addresses or not */
	cr_expect_eq(loupe_event_format_other_addr(&e, mapped, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "10.0.0.254");
	cr_expect_eq(loupe_event_format_other_addr(&e, v6, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "2001:db8::1");
	e.ipv6 = true;
	cr_expect_eq(loupe_event_format_other_addr(&e, mapped, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "::ffff:10.0.0.254");
	cr_expect_eq(loupe_event_format_other_addr(&e, v6, buf, 4), -ENOSPC);
}
