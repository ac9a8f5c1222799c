// SPDX-License-Identifier: Apache-2.0
/*
 * The direct JSON writer (event_json.c) against the generic path (loupe_event_to_json_pb():
 * loupe.v1.Event through pbjson and json-c), byte for byte: every kind and enum value,
 * addresses, strings with escapes and invalid UTF-8, timestamps, policy verdicts with each
 * subject, action, reason and origin, rewrites with every action and masked header, rate
 * limits, thousands of random events
 * from a fixed seed; -ENOSPC at every short buffer size; the output's in-place lines. Not
 * for what the fields mean (test_event_pb.c) nor for pbjson itself (test_pbjson.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "event.h"
#include "event_json.h"
#include "event_pb.h"
#include "output.h"

#define TIME_NS 1795759975123456789ULL /* 2026-11-27T06:12:55.123456789Z */

static const uint8_t v4_src[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 1 };
static const uint8_t v4_dst[16] = { [10] = 0xff, [11] = 0xff, 10, 0, 200, 255 };
static const uint8_t v6_src[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
static const uint8_t v6_dst[16] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 2
};

static unsigned long checked;

/* xorshift64*: a fixed seed, the same events on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

/* Zero, small, 16-, 32- or 64-bit: each often enough to meet its boundaries. */
static uint64_t rnd_num(void)
{
	switch (rnd_below(6)) {
	case 0:
		return 0;
	case 1:
		return rnd_below(10);
	case 2:
		return rnd() & 0xffff;
	case 3:
		return rnd() & 0xffffffff;
	case 4:
		return UINT64_MAX - rnd_below(3);
	default:
		return rnd();
	}
}

static void describe(const char *what, const char *want, const char *got)
{
	size_t i = 0;

	while (want[i] && want[i] == got[i])
		i++;
	cr_assert_fail("%s: lines differ at byte %zu\n  pb:   %s\n  fast: %s", what, i, want, got);
}

/*
 * The acceptance check: loupe_event_to_json() and loupe_event_json_write() write what
 * loupe_event_to_json_pb() writes, or fail with its errno. Returns the line's length.
 */
static size_t check(const struct loupe_event *ev, const char *what)
{
	static char buf[LOUPE_EVENT_JSON_MAX];
	char *want, *got;
	int want_errno, n;
	size_t len = 0;

	errno = 0;
	want = loupe_event_to_json_pb(ev);
	want_errno = errno;
	errno = 0;
	got = loupe_event_to_json(ev);
	n = loupe_event_json_write(ev, buf, sizeof(buf));
	checked++;
	if (!want) {
		cr_assert_null(got, "%s: pb failed (%s), fast wrote %s", what, strerror(want_errno),
			       got);
		cr_assert_eq(errno, want_errno, "%s: errno %d, pb's %d", what, errno, want_errno);
		cr_assert_eq(n, -want_errno, "%s: write returned %d, pb's errno %d", what, n,
			     want_errno);
		return 0;
	}
	cr_assert_not_null(got, "%s: fast failed (%s), pb wrote %s", what, strerror(errno), want);
	if (strcmp(want, got))
		describe(what, want, got);
	len = strlen(want);
	cr_assert_eq(n, (int)len, "%s: write returned %d for %zu bytes", what, n, len);
	if (strcmp(want, buf))
		describe(what, want, buf);
	cr_assert_lt(len, LOUPE_EVENT_JSON_MAX);
	free(want);
	free(got);
	return len;
}

static void base_event(struct loupe_event *ev, enum loupe_event_kind kind)
{
	memset(ev, 0, sizeof(*ev));
	ev->seq = 7;
	ev->time_ns = TIME_NS;
	strcpy(ev->node, "node-1");
	ev->kind = kind;
	strcpy(ev->ifname, "veth1");
	ev->ifindex = 7;
	ev->direction = LOUPE_DIR_POD_EGRESS;
	ev->protocol = 6;
	ev->has_ip = true;
	memcpy(ev->saddr, v4_src, 16);
	memcpy(ev->daddr, v4_dst, 16);
	ev->sport = 40000;
	ev->dport = 80;
}

/* Every kind-specific part filled: only the one of the event's kind may show. */
static void fill_all_kinds(struct loupe_event *ev)
{
	strcpy(ev->http.method, "GET");
	strcpy(ev->http.path, "/a/b?c=d");
	strcpy(ev->http.host, "example.test:8080");
	ev->http.path_truncated = true;
	strcpy(ev->tls.sni, "sni.example.test");
	ev->tls.version = 0x0304;
	ev->tls.legacy_version = 0x0303;
	strcpy(ev->tls.alpn[0], "h2");
	strcpy(ev->tls.alpn[1], "http/1.1");
	ev->tls.alpn_count = 2;
	strcpy(ev->dns.qname, "www.example.test");
	ev->dns.qtype = 28;
	ev->dns.qclass = 1;
	ev->dns.id = 0xbeef;
	ev->flow.dir[0] = (struct loupe_event_flow_dir){ 3, 180, 0x12 };
	ev->flow.first_seen_ns = TIME_NS - 1500000000ULL;
	ev->flow.last_seen_ns = TIME_NS;
	ev->flow.tcp_flags = 0x02;
	ev->flow.end_reason = LOUPE_FLOW_END_IDLE;
	ev->lost.count = 12;
	ev->lost.kind = LOUPE_EV_HTTP_REQUEST;
	ev->verdict.action = LOUPE_EVENT_ACTION_DENY;
	ev->verdict.reason = LOUPE_EVENT_REASON_RULE;
	ev->verdict.generation = 7;
	ev->verdict.origin = LOUPE_DIR_POD_EGRESS;
	ev->verdict.subject = LOUPE_VERDICT_SUBJECT_TLS_SNI;
	strcpy(ev->verdict.policy, "ai-egress");
	strcpy(ev->verdict.rule, "llm");
	ev->rewrite.actions = LOUPE_RW_MAP | LOUPE_RW_DSCP | LOUPE_RW_MASK;
	ev->rewrite.generation = 7;
	ev->rewrite.index = 3;
	memcpy(ev->rewrite.new_addr, v4_src, 16);
	ev->rewrite.new_addr[15] = 99;
	ev->rewrite.new_port = 8080;
	ev->rewrite.dscp = 46;
	ev->rewrite.masked_bits = 0x5;
	strcpy(ev->rewrite.policy, "llm-egress");
	strcpy(ev->rewrite.name, "mask-keys");
	strcpy(ev->rewrite.masked[0], "authorization");
	strcpy(ev->rewrite.masked[2], "x-api-key");
	ev->rate_limited.dropped = 12;
	ev->rate_limited.bytes_per_sec = 1250000;
	ev->rate_limited.burst = 62500;
}

Test(event_json, every_kind_number)
{
	struct loupe_event ev;
	char what[64];

	for (int k = -3; k < 70; k++) {
		base_event(&ev, (enum loupe_event_kind)k);
		fill_all_kinds(&ev);
		snprintf(what, sizeof(what), "kind %d", k);
		check(&ev, what);
		base_event(&ev, (enum loupe_event_kind)k);
		snprintf(what, sizeof(what), "kind %d, empty parts", k);
		check(&ev, what);
	}
}

Test(event_json, flow_start_and_end)
{
	static const struct loupe_event_flow_dir zero, some = { 5, 900, 0x1b },
						       huge = { UINT64_MAX, UINT64_MAX, 0xff },
						       flags = { 0, 0, 0x04 };
	const struct loupe_event_flow_dir *dirs[] = { &zero, &some, &huge, &flags };
	static const uint64_t times[] = { 0, 1, TIME_NS, TIME_NS + 1, 1000000, UINT64_MAX };
	struct loupe_event ev;
	char what[96], *line;

	for (int kind = LOUPE_EV_FLOW_START; kind <= LOUPE_EV_FLOW_END; kind++) {
		for (int e = 0; e < 4; e++) {
			for (int i = 0; i < 4; i++) {
				for (int t = 0; t < 36; t++) {
					base_event(&ev, (enum loupe_event_kind)kind);
					ev.flow.dir[LOUPE_DIR_POD_EGRESS] = *dirs[e];
					ev.flow.dir[LOUPE_DIR_POD_INGRESS] = *dirs[i];
					ev.flow.first_seen_ns = times[t / 6];
					ev.flow.last_seen_ns = times[t % 6];
					ev.flow.tcp_flags = (uint8_t)(t * 7);
					ev.flow.end_reason = (enum loupe_flow_end_reason)(t % 7);
					snprintf(what, sizeof(what), "flow kind %d e %d i %d t %d",
						 kind, e, i, t);
					check(&ev, what);
				}
			}
		}
	}
	/* every end reason, named or not; a FLOW_START with nothing at all: "flow":{} */
	for (int r = -3; r < 40; r++) {
		base_event(&ev, LOUPE_EV_FLOW_END);
		ev.flow.end_reason = (enum loupe_flow_end_reason)r;
		snprintf(what, sizeof(what), "end reason %d", r);
		check(&ev, what);
	}
	base_event(&ev, LOUPE_EV_FLOW_START);
	line = loupe_event_to_json(&ev);
	cr_assert(line && strstr(line, "\"flow\":{}"), "empty flow: %s", line);
	free(line);
	check(&ev, "empty flow start");
}

Test(event_json, http_tls_dns_lost)
{
	struct loupe_event ev;
	char what[64];

	for (int f = 0; f < 4; f++) {
		base_event(&ev, LOUPE_EV_HTTP_REQUEST);
		fill_all_kinds(&ev);
		ev.http.path_truncated = f & 1;
		ev.http.host_truncated = f & 2;
		snprintf(what, sizeof(what), "http flags %d", f);
		check(&ev, what);
		memset(&ev.http, 0, sizeof(ev.http));
		ev.http.path_truncated = f & 1;
		ev.http.host_truncated = f & 2;
		check(&ev, "http empty strings");
	}
	for (int n = -1; n <= LOUPE_EVENT_ALPN_MAX + 1; n++) {
		for (int v = 0; v < 4; v++) {
			static const uint16_t versions[] = { 0, 0x0301, 0x0304, 0xffff };

			base_event(&ev, LOUPE_EV_TLS_CLIENT_HELLO);
			ev.ipv6 = true;
			memcpy(ev.saddr, v6_src, 16);
			memcpy(ev.daddr, v6_dst, 16);
			for (int i = 0; i < LOUPE_EVENT_ALPN_MAX; i++)
				snprintf(ev.tls.alpn[i], sizeof(ev.tls.alpn[i]), "%s%d",
					 i % 3 ? "h" : "", i);
			ev.tls.alpn_count = n;
			ev.tls.version = versions[v];
			ev.tls.legacy_version = versions[3 - v];
			ev.tls.reassembled = v & 1;
			if (v == 2)
				strcpy(ev.tls.sni, "a.example");
			snprintf(what, sizeof(what), "tls alpn %d version %d", n, v);
			check(&ev, what);
		}
	}
	for (int f = 0; f < 8; f++) {
		base_event(&ev, LOUPE_EV_DNS_QUERY);
		ev.protocol = 17;
		if (f & 4)
			strcpy(ev.dns.qname, "x.example");
		ev.dns.qtype = (uint16_t)(f * 9000);
		ev.dns.qclass = (uint16_t)(f & 1 ? 0xffff : f);
		ev.dns.id = (uint16_t)(f * 11);
		ev.dns.name_invalid = f & 1;
		ev.dns.tcp = f & 2;
		snprintf(what, sizeof(what), "dns %d", f);
		check(&ev, what);
	}
	for (int k = -2; k < 70; k++) {
		memset(&ev, 0, sizeof(ev));
		ev.kind = LOUPE_EV_LOST;
		ev.time_ns = TIME_NS;
		ev.direction = -1;
		ev.lost.kind = (enum loupe_event_kind)k;
		ev.lost.count = k < 0 ? UINT64_MAX : (uint64_t)k;
		snprintf(what, sizeof(what), "lost kind %d", k);
		check(&ev, what);
	}
	memset(&ev, 0, sizeof(ev));
	ev.kind = LOUPE_EV_AGENT;
	check(&ev, "agent, all else zero");
	memset(&ev, 0, sizeof(ev));
	check(&ev, "all zero");
}

Test(event_json, verdicts)
{
	static const uint32_t generations[] = { 0, 1, 65535, UINT32_MAX };
	struct loupe_event ev;
	char what[96];

	for (int subject = -1; subject <= 5; subject++) {
		for (int a = -2; a <= 5; a++) {
			for (int r = -2; r <= 5; r++) {
				for (int o = -2; o <= 3; o++) {
					base_event(&ev, LOUPE_EV_POLICY_VERDICT);
					fill_all_kinds(&ev);
					ev.verdict.subject = (enum loupe_verdict_subject)subject;
					ev.verdict.action = (enum loupe_event_action)a;
					ev.verdict.reason = (enum loupe_event_reason)r;
					ev.verdict.origin = o;
					ev.verdict.generation = generations[(a + r + o + 6) % 4];
					ev.http.host_truncated = (a + o) & 1;
					if (r & 1)
						ev.verdict.rule[0] = '\0';
					if (o == 3)
						ev.verdict.policy[0] = '\0';
					snprintf(what, sizeof(what),
						 "verdict subject %d action %d reason %d origin %d",
						 subject, a, r, o);
					check(&ev, what);
				}
			}
		}
		/* every name empty: "verdict":{} and an empty subject message */
		base_event(&ev, LOUPE_EV_POLICY_VERDICT);
		ev.verdict.subject = (enum loupe_verdict_subject)subject;
		ev.verdict.origin = -1;
		snprintf(what, sizeof(what), "empty verdict subject %d", subject);
		check(&ev, what);
	}
}

Test(event_json, rewrites)
{
	static const uint32_t actions[] = {
		0,
		LOUPE_RW_MAP,
		LOUPE_RW_DSCP,
		LOUPE_RW_VLAN_PUSH,
		LOUPE_RW_VLAN_POP,
		LOUPE_RW_MASK,
		LOUPE_RW_MAP | LOUPE_RW_MASK,
		LOUPE_RW_MAP | LOUPE_RW_DSCP | LOUPE_RW_VLAN_PUSH | LOUPE_RW_MASK,
		1u << 5,
		1u << 31 | LOUPE_RW_VLAN_POP,
		UINT32_MAX,
	};
	struct loupe_event ev;
	char what[96];

	for (size_t a = 0; a < sizeof(actions) / sizeof(actions[0]); a++) {
		for (int v = 0; v < 16; v++) {
			for (int m = 0; m < 6; m++) {
				static const uint16_t bits[] = { 0, 1, 0x80, 0x5, 0xff, 0x42 };

				base_event(&ev, LOUPE_EV_REWRITE);
				fill_all_kinds(&ev);
				ev.rewrite.actions = actions[a];
				ev.ipv6 = v & 1;
				if (v & 2)
					memcpy(ev.rewrite.new_addr, v6_dst, 16);
				ev.rewrite.new_port = v & 4 ? 0 : 65535;
				ev.rewrite.dscp = v & 8 ? 0 : 63;
				ev.rewrite.vlan_id = v & 8 ? 4094 : 0;
				ev.rewrite.generation = v & 4 ? 0 : UINT32_MAX;
				ev.rewrite.index = (uint16_t)(v & 2 ? 0 : 255);
				ev.rewrite.masked_bits = bits[m];
				/* some names unknown: only the indexes say which were masked */
				for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
					snprintf(ev.rewrite.masked[i], sizeof(ev.rewrite.masked[i]),
						 "h-%d", i);
					if ((i + m) % 3 == 0)
						ev.rewrite.masked[i][0] = '\0';
				}
				if (m & 1)
					ev.rewrite.policy[0] = ev.rewrite.name[0] = '\0';
				snprintf(what, sizeof(what), "rewrite actions %#x v %d mask %d",
					 actions[a], v, m);
				check(&ev, what);
			}
		}
	}
	/* nothing at all: "rewrite":{} */
	base_event(&ev, LOUPE_EV_REWRITE);
	check(&ev, "empty rewrite");
	for (int i = 0; i < 8; i++) {
		base_event(&ev, LOUPE_EV_RATE_LIMITED);
		ev.rate_limited.dropped = i & 1 ? UINT64_MAX : 0;
		ev.rate_limited.bytes_per_sec = i & 2 ? 1250000 : 0;
		ev.rate_limited.burst = i & 4 ? 1 : 0;
		snprintf(what, sizeof(what), "rate limited %d", i);
		check(&ev, what);
	}
}

Test(event_json, common_fields)
{
	struct loupe_event ev;
	char what[64];

	for (int p = 0; p < 256; p++) {
		base_event(&ev, LOUPE_EV_FLOW_START);
		ev.protocol = (uint8_t)p;
		snprintf(what, sizeof(what), "protocol %d", p);
		check(&ev, what);
	}
	for (int d = -3; d < 5; d++) {
		base_event(&ev, LOUPE_EV_HTTP_REQUEST);
		ev.direction = d;
		snprintf(what, sizeof(what), "direction %d", d);
		check(&ev, what);
	}
	for (int v = 0; v < 16; v++) {
		base_event(&ev, LOUPE_EV_DNS_QUERY);
		ev.has_vlan = v & 1;
		ev.vlan_id = v & 2 ? 4094 : 0;
		ev.has_inner_vlan = v & 4;
		ev.inner_vlan_id = v & 8 ? 1 : 0;
		snprintf(what, sizeof(what), "vlan %d", v);
		check(&ev, what);
	}
	for (int i = 0; i < 8; i++) {
		base_event(&ev, LOUPE_EV_FLOW_END);
		if (i & 1)
			ev.ifname[0] = '\0';
		ev.ifindex = i & 2 ? 0 : (i & 4 ? UINT32_MAX : 3);
		ev.node[0] = i & 4 ? '\0' : 'n';
		ev.seq = i & 4 ? 0 : UINT64_MAX;
		ev.sport = (uint16_t)(i & 1 ? 0 : 65535);
		ev.dport = (uint16_t)(i & 2 ? 0 : 1);
		snprintf(what, sizeof(what), "interface/node/seq/ports %d", i);
		check(&ev, what);
		ev.has_ip = false;
		check(&ev, "no addresses");
	}
	for (int n = -1; n <= LOUPE_EVENT_POD_IPS_MAX + 1; n++) {
		base_event(&ev, LOUPE_EV_HTTP_REQUEST);
		for (int i = 0; i < LOUPE_EVENT_POD_IPS_MAX; i++) {
			ev.pod_ips[i].ipv6 = i & 1;
			memcpy(ev.pod_ips[i].addr, i & 2 ? v6_dst : v4_src, 16);
			ev.pod_ips[i].addr[15] = (uint8_t)(i * 37);
		}
		ev.pod_ip_count = n;
		snprintf(what, sizeof(what), "pod ips %d", n);
		check(&ev, what);
	}
}

/* IPv6 text: zero runs of every length and place, the IPv4-carrying forms, near misses. */
Test(event_json, addresses)
{
	static const uint8_t special[][16] = {
		{ 0 },
		{ [15] = 1 },
		{ [14] = 1 },
		{ [12] = 1, 2, 3, 4 },
		{ [10] = 0xff, 0xff, 1, 2, 3, 4 },
		{ [10] = 0xff, 0xff },
		{ [10] = 0xff, 0xfe, 1, 2, 3, 4 },
		{ [8] = 0, 1, 0xff, 0xff, 1, 2, 3, 4 },
		{ [9] = 1, [12] = 1, 2, 3, 4 },
		{ 0xfe, 0x80, [8] = 0, 0, 0, 0, 0, 0, 0, 1 },
		{ 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0 },
		{ 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1 },
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		  0xff, 0xff, 0xff },
		{ 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1 },
		{ 0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
		{ 0x0a, 0x0b, 0, 0, 0x01, 0x00, 0, 0x10 },
	};
	const size_t n_special = sizeof(special) / sizeof(special[0]);
	struct loupe_event ev;
	char what[64];

	for (size_t i = 0; i < n_special; i++) {
		for (int f = 0; f < 4; f++) {
			base_event(&ev, LOUPE_EV_FLOW_START);
			ev.ipv6 = f & 1;
			memcpy(ev.saddr, special[i], 16);
			memcpy(ev.daddr, special[n_special - 1 - i], 16);
			ev.pod_ip_count = 2;
			ev.pod_ips[0].ipv6 = f & 2;
			memcpy(ev.pod_ips[0].addr, special[i], 16);
			ev.pod_ips[1].ipv6 = !(f & 2);
			memcpy(ev.pod_ips[1].addr, special[i], 16);
			snprintf(what, sizeof(what), "address %zu flags %d", i, f);
			check(&ev, what);
		}
	}
	/* each 16-bit group zero or not: all 256 patterns, 4 fillings each */
	for (int mask = 0; mask < 256; mask++) {
		for (int fill = 0; fill < 4; fill++) {
			base_event(&ev, LOUPE_EV_DNS_QUERY);
			ev.ipv6 = fill & 1;
			for (int g = 0; g < 8; g++) {
				uint16_t v = mask & (1 << g) ? 0 : (uint16_t)(rnd() | 1);

				if (fill & 2 && v)
					v &= 0x0f0f; /* leading zeros inside groups */
				if (!v)
					v = mask & (1 << g) ? 0 : 0x10;
				ev.saddr[2 * g] = (uint8_t)(v >> 8);
				ev.saddr[2 * g + 1] = (uint8_t)v;
				ev.daddr[2 * g] = (uint8_t)(v >> 4);
				ev.daddr[2 * g + 1] = (uint8_t)(v >> 12);
			}
			ev.pod_ip_count = 1;
			ev.pod_ips[0].ipv6 = true;
			memcpy(ev.pod_ips[0].addr, ev.saddr, 16);
			snprintf(what, sizeof(what), "group mask %#x fill %d", mask, fill);
			check(&ev, what);
		}
	}
}

/* Sets every string of @ev that a kind uses to @s (cut to fit). */
static void set_strings(struct loupe_event *ev, const char *s)
{
	snprintf(ev->node, sizeof(ev->node), "%s", s);
	snprintf(ev->ifname, sizeof(ev->ifname), "%s", s);
	snprintf(ev->http.method, sizeof(ev->http.method), "%s", s);
	snprintf(ev->http.path, sizeof(ev->http.path), "%s", s);
	snprintf(ev->http.host, sizeof(ev->http.host), "%s", s);
	snprintf(ev->tls.sni, sizeof(ev->tls.sni), "%s", s);
	for (size_t i = 0, len = strlen(s); i < LOUPE_EVENT_ALPN_MAX; i++)
		snprintf(ev->tls.alpn[i], sizeof(ev->tls.alpn[i]), "%s",
			 s + (i % 3 < len ? i % 3 : len));
	ev->tls.alpn_count = LOUPE_EVENT_ALPN_MAX;
	snprintf(ev->dns.qname, sizeof(ev->dns.qname), "%s", s);
	snprintf(ev->verdict.policy, sizeof(ev->verdict.policy), "%s", s);
	snprintf(ev->verdict.rule, sizeof(ev->verdict.rule), "%s", s);
	snprintf(ev->rewrite.policy, sizeof(ev->rewrite.policy), "%s", s);
	snprintf(ev->rewrite.name, sizeof(ev->rewrite.name), "%s", s);
	for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++)
		snprintf(ev->rewrite.masked[i], sizeof(ev->rewrite.masked[i]), "%s", s);
	ev->rewrite.masked_bits = (1u << LOUPE_MASK_HEADERS_MAX) - 1;
	ev->rewrite.actions = LOUPE_RW_MASK;
}

static void check_strings(const char *s, const char *what)
{
	static const enum loupe_event_kind kinds[] = { LOUPE_EV_HTTP_REQUEST,
						       LOUPE_EV_TLS_CLIENT_HELLO,
						       LOUPE_EV_DNS_QUERY, LOUPE_EV_REWRITE,
						       LOUPE_EV_AGENT };
	struct loupe_event ev;

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		base_event(&ev, kinds[k]);
		set_strings(&ev, s);
		check(&ev, what);
	}
	for (int subject = LOUPE_VERDICT_SUBJECT_NONE; subject <= LOUPE_VERDICT_SUBJECT_DNS_NAME;
	     subject++) {
		base_event(&ev, LOUPE_EV_POLICY_VERDICT);
		set_strings(&ev, s);
		ev.verdict.subject = (enum loupe_verdict_subject)subject;
		check(&ev, what);
	}
}

Test(event_json, strings)
{
	static const char *const samples[] = {
		"quote\" back\\slash /slash/ </script>",
		"\x01\x02\x1f ctl \n\t\r\b\f \x7f del",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd \xf4\x8f\xbf\xbf",
		"\x80 stray",
		"\xbf",
		"\xc0\xaf overlong",
		"\xc1\xbf",
		"\xc2",
		"\xc2\x41",
		"\xe0\x80\xaf",
		"\xe0\xa0",
		"\xe0\xa0\x80 ok",
		"\xed\xa0\x80 surrogate",
		"\xed\x9f\xbf ok",
		"\xf0\x8f\xbf\xbf",
		"\xf0\x90\x80",
		"\xf0\x90\x80\x80 ok",
		"\xf4\x90\x80\x80",
		"\xf5\x80\x80\x80",
		"\xfe\xff",
		"end \xe2\x82",
		"\xe2\x82\xe2\x82\xac",
		"\xf0\x9f\x98",
		"mixed \"\xff\\\x01\xc3\xa9/",
	};
	char s[512], what[64];

	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		snprintf(what, sizeof(what), "string sample %zu", i);
		check_strings(samples[i], what);
	}
	for (int c = 1; c < 256; c++) {
		snprintf(s, sizeof(s), "a%cb", c);
		snprintf(what, sizeof(what), "byte %#x", c);
		check_strings(s, what);
		s[0] = (char)c;
		s[1] = '\0';
		check_strings(s, what);
	}
	/* longest strings: plain, all escapes, all invalid, multi-byte cut at the limit */
	for (int fill = 0; fill < 5; fill++) {
		static const char *const units[] = { "x", "\x01", "\xff", "\xe2\x82\xac", "\"/" };
		size_t ul = strlen(units[fill]);

		for (size_t o = 0; o + ul < sizeof(s); o += ul)
			memcpy(s + o, units[fill], ul);
		s[sizeof(s) - 1 - (sizeof(s) - 1) % ul] = '\0';
		snprintf(what, sizeof(what), "longest strings %d", fill);
		check_strings(s, what);
	}
}

Test(event_json, longest_line_fits)
{
	struct loupe_event ev;
	char s[512];
	size_t len;

	memset(s, 0x01, sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	for (int kind = LOUPE_EV_FLOW_START; kind <= LOUPE_EV_AGENT; kind++) {
		base_event(&ev, (enum loupe_event_kind)kind);
		set_strings(&ev, s);
		ev.seq = UINT64_MAX;
		ev.time_ns = UINT64_MAX - 1;
		ev.ifindex = UINT32_MAX;
		ev.direction = LOUPE_DIR_POD_INGRESS;
		ev.ipv6 = true;
		memset(ev.saddr, 0xff, 16);
		memset(ev.daddr, 0xff, 16);
		ev.sport = ev.dport = 65535;
		ev.protocol = 255;
		ev.has_vlan = ev.has_inner_vlan = true;
		ev.vlan_id = ev.inner_vlan_id = 65535;
		ev.pod_ip_count = LOUPE_EVENT_POD_IPS_MAX;
		for (int i = 0; i < LOUPE_EVENT_POD_IPS_MAX; i++) {
			ev.pod_ips[i].ipv6 = true;
			memset(ev.pod_ips[i].addr, 0xff, 16);
			ev.pod_ips[i].addr[0] = 0xfe;
		}
		ev.http.path_truncated = ev.http.host_truncated = true;
		ev.tls.version = ev.tls.legacy_version = 0xffff;
		ev.tls.reassembled = true;
		ev.dns.qtype = ev.dns.qclass = ev.dns.id = 0xffff;
		ev.dns.name_invalid = ev.dns.tcp = true;
		for (int d = 0; d < LOUPE_DIR_MAX; d++)
			ev.flow.dir[d] =
				(struct loupe_event_flow_dir){ UINT64_MAX, UINT64_MAX, 0xff };
		ev.flow.first_seen_ns = 1;
		ev.flow.last_seen_ns = UINT64_MAX - 1;
		ev.flow.tcp_flags = 0xff;
		ev.flow.end_reason = (enum loupe_flow_end_reason) - 2147483647 - 1;
		ev.lost.count = UINT64_MAX;
		ev.lost.kind = (enum loupe_event_kind) - 2147483647 - 1;
		ev.verdict.action = (enum loupe_event_action) - 2147483647 - 1;
		ev.verdict.reason = (enum loupe_event_reason) - 2147483647 - 1;
		ev.verdict.generation = UINT32_MAX;
		ev.verdict.origin = LOUPE_DIR_POD_INGRESS;
		ev.verdict.subject = LOUPE_VERDICT_SUBJECT_HTTP_HOST;
		ev.rewrite.actions = UINT32_MAX;
		ev.rewrite.generation = UINT32_MAX;
		ev.rewrite.index = UINT16_MAX;
		memset(ev.rewrite.new_addr, 0xff, 16);
		ev.rewrite.new_port = ev.rewrite.vlan_id = UINT16_MAX;
		ev.rewrite.dscp = UINT8_MAX;
		ev.rate_limited.dropped = ev.rate_limited.bytes_per_sec = ev.rate_limited.burst =
			UINT64_MAX;
		len = check(&ev, "longest");
		cr_expect_lt(len, LOUPE_EVENT_JSON_MAX, "kind %d: %zu bytes", kind, len);
	}
}

Test(event_json, timestamps)
{
	static const uint64_t times[] = {
		0,
		1,
		999,
		1000,
		1000000,
		999999999,
		1000000000,
		86399999999999ULL,
		951782400000000000ULL,	/* 2000-02-29 */
		951868800000000000ULL,	/* 2000-03-01 */
		4107542400000000000ULL, /* 2100-03-01 */
		4102444799999999999ULL, /* 2099-12-31T23:59:59.999999999 */
		1795759975123000000ULL,
		1795759975123456000ULL,
		1795759975123456789ULL,
		1795759975000000001ULL,
		1795759975100000000ULL,
		1795759975000100000ULL,
		1795759975000000100ULL,
		UINT64_MAX,
		UINT64_MAX - 709551615ULL,
	};
	struct loupe_event ev;
	char what[64];

	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		base_event(&ev, LOUPE_EV_FLOW_END);
		ev.time_ns = times[i];
		ev.flow.first_seen_ns = times[i];
		ev.flow.last_seen_ns = times[(i + 1) % (sizeof(times) / sizeof(times[0]))];
		snprintf(what, sizeof(what), "time %zu", i);
		check(&ev, what);
	}
	for (int i = 0; i < 20000; i++) {
		base_event(&ev, LOUPE_EV_FLOW_END);
		ev.time_ns = rnd();
		ev.flow.first_seen_ns = rnd() / 1000 * 1000;
		ev.flow.last_seen_ns = rnd() / 1000000 * 1000000;
		snprintf(what, sizeof(what), "random time %d", i);
		check(&ev, what);
	}
}

Test(event_json, unterminated_strings_refused)
{
	struct loupe_event ev;
	char buf[64];

	base_event(&ev, LOUPE_EV_HTTP_REQUEST);
	memset(ev.http.path, 'a', sizeof(ev.http.path));
	check(&ev, "unterminated path");
	cr_expect_eq(loupe_event_json_write(&ev, buf, sizeof(buf)), -EINVAL);
	cr_expect_str_eq(buf, "");
	base_event(&ev, LOUPE_EV_TLS_CLIENT_HELLO);
	ev.tls.alpn_count = 1;
	memset(ev.tls.alpn[0], 'h', sizeof(ev.tls.alpn[0]));
	check(&ev, "unterminated alpn");
	ev.tls.alpn_count = 0;
	check(&ev, "unterminated alpn not counted");
	base_event(&ev, LOUPE_EV_DNS_QUERY);
	memset(ev.node, 'n', sizeof(ev.node));
	check(&ev, "unterminated node");
	base_event(&ev, LOUPE_EV_FLOW_START);
	memset(ev.dns.qname, 'q', sizeof(ev.dns.qname));
	check(&ev, "unterminated qname of another kind");
}

/* A random string of @size at most: ASCII, escapes, valid and invalid UTF-8, all lengths. */
static void rnd_string(char *s, size_t size)
{
	static const char *const pieces[] = {
		"a",
		"Z",
		"0",
		".",
		"-",
		"/",
		"\"",
		"\\",
		"\n",
		"\t",
		"\x01",
		"\x1f",
		"\x7f",
		" ",
		"\xc3\xa9",
		"\xe2\x82\xac",
		"\xf0\x9f\x98\x80",
		"\xed\xa0\x80",
		"\xc0\x80",
		"\xe0\x9f\xbf",
		"\xf4\x90\x80\x80",
		"\xc2",
		"\xe2\x82",
		"\xf0\x9f\x98",
	};
	size_t len = 0, max;

	switch (rnd_below(4)) {
	case 0:
		max = 0;
		break;
	case 1:
		max = size - 1;
		break;
	default:
		max = rnd_below((unsigned)size);
	}
	while (len < max) {
		const char *p;
		char b[2] = { 0 };
		size_t n;

		if (rnd_below(8) == 0) {
			b[0] = (char)(rnd_below(255) + 1); /* any byte but NUL */
			p = b;
		} else {
			p = pieces[rnd_below(sizeof(pieces) / sizeof(pieces[0]))];
		}
		n = strlen(p);
		if (len + n > max)
			break;
		memcpy(s + len, p, n);
		len += n;
	}
	s[len] = '\0';
	/* now and then an array without a NUL: refused, by both paths alike */
	if (rnd_below(400) == 0)
		memset(s, 'u', size);
}

static void rnd_addr(uint8_t *a, bool v4)
{
	uint64_t hi = rnd(), lo = rnd();

	memcpy(a, &hi, 8);
	memcpy(a + 8, &lo, 8);
	if (v4) {
		memset(a, 0, 10);
		a[10] = a[11] = 0xff;
	}
	for (int g = 0; g < 8; g++) {
		if (rnd_below(3) == 0)
			a[2 * g] = a[2 * g + 1] = 0;
	}
}

static void rnd_event(struct loupe_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->seq = rnd_num();
	switch (rnd_below(4)) {
	case 0:
		ev->time_ns = rnd() / 1000000 * 1000000;
		break;
	case 1:
		ev->time_ns = rnd() / 1000 * 1000;
		break;
	default:
		ev->time_ns = rnd_below(20) ? rnd() : 0;
	}
	rnd_string(ev->node, sizeof(ev->node));
	ev->kind = (enum loupe_event_kind)((int)rnd_below(14) - 1);
	if (rnd_below(2))
		rnd_string(ev->ifname, sizeof(ev->ifname));
	ev->ifindex = rnd_below(2) ? (uint32_t)rnd_num() : 0;
	ev->direction = (int)rnd_below(4) - 1;
	ev->protocol =
		rnd_below(2) ? (uint8_t)(int[]){ 1, 6, 17, 58, 132 }[rnd_below(5)] : (uint8_t)rnd();
	ev->has_ip = rnd_below(4) != 0;
	ev->ipv6 = rnd_below(2);
	rnd_addr(ev->saddr, rnd_below(2));
	rnd_addr(ev->daddr, rnd_below(2));
	ev->sport = (uint16_t)rnd_num();
	ev->dport = (uint16_t)rnd_num();
	ev->has_vlan = rnd_below(2);
	ev->vlan_id = (uint16_t)rnd_num();
	ev->has_inner_vlan = rnd_below(2);
	ev->inner_vlan_id = (uint16_t)rnd_num();
	ev->pod_ip_count = (int)rnd_below(LOUPE_EVENT_POD_IPS_MAX + 3) - 1;
	for (int i = 0; i < LOUPE_EVENT_POD_IPS_MAX; i++) {
		ev->pod_ips[i].ipv6 = rnd_below(2);
		rnd_addr(ev->pod_ips[i].addr, !ev->pod_ips[i].ipv6);
	}
	rnd_string(ev->http.method, sizeof(ev->http.method));
	rnd_string(ev->http.path, sizeof(ev->http.path));
	rnd_string(ev->http.host, sizeof(ev->http.host));
	ev->http.path_truncated = rnd_below(2);
	ev->http.host_truncated = rnd_below(2);
	rnd_string(ev->tls.sni, sizeof(ev->tls.sni));
	ev->tls.version = (uint16_t)rnd_num();
	ev->tls.legacy_version = (uint16_t)rnd_num();
	ev->tls.alpn_count = rnd_below(30) ? (int)rnd_below(LOUPE_EVENT_ALPN_MAX + 1)
					   : (int)rnd_below(3) * 10 - 11;
	for (int i = 0; i < LOUPE_EVENT_ALPN_MAX; i++)
		rnd_string(ev->tls.alpn[i], sizeof(ev->tls.alpn[i]));
	ev->tls.reassembled = rnd_below(2);
	rnd_string(ev->dns.qname, sizeof(ev->dns.qname));
	ev->dns.qtype = (uint16_t)rnd_num();
	ev->dns.qclass = (uint16_t)rnd_num();
	ev->dns.id = (uint16_t)rnd_num();
	ev->dns.name_invalid = rnd_below(2);
	ev->dns.tcp = rnd_below(2);
	for (int d = 0; d < LOUPE_DIR_MAX; d++) {
		if (rnd_below(3)) {
			ev->flow.dir[d].packets = rnd_num();
			ev->flow.dir[d].bytes = rnd_num();
			ev->flow.dir[d].tcp_flags = (uint8_t)rnd_num();
		}
	}
	ev->flow.first_seen_ns = rnd_below(5) ? rnd() : 0;
	ev->flow.last_seen_ns = rnd_below(3) ? ev->flow.first_seen_ns + rnd_num() : rnd();
	ev->flow.tcp_flags = (uint8_t)rnd_num();
	ev->flow.end_reason = (enum loupe_flow_end_reason)((int)rnd_below(9) - 1);
	ev->lost.count = rnd_num();
	ev->lost.kind = (enum loupe_event_kind)((int)rnd_below(14) - 1);
	ev->verdict.action = (enum loupe_event_action)((int)rnd_below(7) - 1);
	ev->verdict.reason = (enum loupe_event_reason)((int)rnd_below(7) - 1);
	ev->verdict.generation = (uint32_t)rnd_num();
	ev->verdict.bit = (uint16_t)rnd_num();
	ev->verdict.origin = (int)rnd_below(4) - 1;
	ev->verdict.subject = (enum loupe_verdict_subject)((int)rnd_below(6) - 1);
	rnd_string(ev->verdict.policy, sizeof(ev->verdict.policy));
	rnd_string(ev->verdict.rule, sizeof(ev->verdict.rule));
	ev->rewrite.actions = rnd_below(4) ? (uint32_t)rnd_below(32) : (uint32_t)rnd_num();
	ev->rewrite.generation = (uint32_t)rnd_num();
	ev->rewrite.index = (uint16_t)rnd_num();
	rnd_addr(ev->rewrite.new_addr, rnd_below(2));
	ev->rewrite.new_port = (uint16_t)rnd_num();
	ev->rewrite.dscp = (uint8_t)rnd_num();
	ev->rewrite.vlan_id = (uint16_t)rnd_num();
	ev->rewrite.masked_bits = (uint16_t)rnd_below(1u << LOUPE_MASK_HEADERS_MAX);
	rnd_string(ev->rewrite.policy, sizeof(ev->rewrite.policy));
	rnd_string(ev->rewrite.name, sizeof(ev->rewrite.name));
	for (int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++)
		rnd_string(ev->rewrite.masked[i], sizeof(ev->rewrite.masked[i]));
	ev->rate_limited.dropped = rnd_num();
	ev->rate_limited.bytes_per_sec = rnd_num();
	ev->rate_limited.burst = rnd_num();
}

Test(event_json, random_events)
{
	struct loupe_event ev;
	char what[64];

	for (int i = 0; i < 20000; i++) {
		rnd_event(&ev);
		snprintf(what, sizeof(what), "random event %d", i);
		check(&ev, what);
	}
	cr_log_info("%lu events compared", checked);
}

/* A random event both paths accept. */
static void rnd_valid_event(struct loupe_event *ev)
{
	char *s;

	do {
		rnd_event(ev);
		s = loupe_event_to_json_pb(ev);
	} while (!s);
	free(s);
}

/* Every buffer size short of the line: -ENOSPC, "" left, nothing written past @size. */
static void check_sizes(const struct loupe_event *ev, const char *what)
{
	char *want = loupe_event_to_json_pb(ev), *buf;
	size_t len, guard = 32;
	int n;

	cr_assert_not_null(want, "%s", what);
	len = strlen(want);
	buf = malloc(len + 1 + guard);
	cr_assert_not_null(buf);
	for (size_t size = 0; size <= len + 1; size++) {
		memset(buf, 0x5a, len + 1 + guard);
		n = loupe_event_json_write(ev, buf, size);
		for (size_t i = size; i < len + 1 + guard; i++)
			cr_assert_eq(buf[i], 0x5a, "%s: size %zu: byte %zu written", what, size, i);
		if (size <= len) {
			cr_assert_eq(n, -ENOSPC, "%s: size %zu of %zu: returned %d", what, size,
				     len, n);
			if (size)
				cr_assert_eq(buf[0], '\0', "%s: size %zu: a cut line", what, size);
		} else {
			cr_assert_eq(n, (int)len, "%s: size %zu: returned %d", what, size, n);
			cr_assert_str_eq(buf, want, "%s", what);
		}
	}
	free(buf);
	free(want);
}

Test(event_json, enospc_at_every_short_size)
{
	struct loupe_event ev;
	char what[64];

	base_event(&ev, LOUPE_EV_HTTP_REQUEST);
	fill_all_kinds(&ev);
	strcpy(ev.http.path, "/\x01\"\xff\xc3\xa9\\");
	ev.pod_ip_count = 1;
	check_sizes(&ev, "http");
	base_event(&ev, LOUPE_EV_TLS_CLIENT_HELLO);
	fill_all_kinds(&ev);
	ev.ipv6 = true;
	memcpy(ev.saddr, v6_src, 16);
	check_sizes(&ev, "tls");
	base_event(&ev, LOUPE_EV_FLOW_END);
	fill_all_kinds(&ev);
	check_sizes(&ev, "flow end");
	base_event(&ev, LOUPE_EV_POLICY_VERDICT);
	fill_all_kinds(&ev);
	check_sizes(&ev, "verdict");
	base_event(&ev, LOUPE_EV_REWRITE);
	fill_all_kinds(&ev);
	check_sizes(&ev, "rewrite");
	base_event(&ev, LOUPE_EV_RATE_LIMITED);
	fill_all_kinds(&ev);
	check_sizes(&ev, "rate limited");
	memset(&ev, 0, sizeof(ev));
	check_sizes(&ev, "all zero");
	for (int i = 0; i < 50; i++) {
		rnd_valid_event(&ev);
		snprintf(what, sizeof(what), "random %d", i);
		check_sizes(&ev, what);
	}
}

/* loupe_output_write() formats in place: its file holds the reference lines, in order. */
Test(event_json, output_lines)
{
	char path[] = "/tmp/loupe-test-event-json-XXXXXX";
	struct loupe_output_stats st;
	struct loupe_output *o;
	struct loupe_event ev;
	char *want = NULL, *got, *line;
	size_t want_len = 0, want_cap = 0;
	FILE *f;
	long size;
	int fd;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(loupe_output_open_fd(fd, &o), 0);
	for (int i = 0; i < 3000; i++) {
		rnd_valid_event(&ev);
		line = loupe_event_to_json_pb(&ev);
		cr_assert_not_null(line);
		if (want_len + strlen(line) + 2 > want_cap) {
			want_cap = (want_cap + strlen(line) + 2) * 2;
			want = realloc(want, want_cap);
			cr_assert_not_null(want);
		}
		memcpy(want + want_len, line, strlen(line));
		want_len += strlen(line);
		want[want_len++] = '\n';
		free(line);
		cr_assert_eq(loupe_output_write(o, &ev), 0);
	}
	ev.tls.alpn_count = -1;
	ev.kind = LOUPE_EV_TLS_CLIENT_HELLO;
	cr_expect_eq(loupe_output_write(o, &ev), -EINVAL);
	cr_assert_eq(loupe_output_flush(o), 0);
	loupe_output_get_stats(o, &st);
	cr_expect_eq(st.lines, 3000);
	cr_expect_eq(st.lines_dropped, 1);
	cr_expect_eq(st.bytes, want_len);
	loupe_output_close(o);

	f = fopen(path, "r");
	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	cr_assert_eq((size_t)size, want_len, "file %ld bytes, want %zu", size, want_len);
	got = malloc(want_len);
	cr_assert_eq(fread(got, 1, want_len, f), want_len);
	cr_expect(!memcmp(got, want, want_len), "file content differs");
	fclose(f);
	close(fd);
	unlink(path);
	free(got);
	free(want);
}
