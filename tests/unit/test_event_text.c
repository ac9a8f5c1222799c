// SPDX-License-Identifier: Apache-2.0
/*
 * The readable line of a POLICY_VERDICT (event_text.c): action, policy and rule, a default,
 * a verdict past the hold bound, the name it was decided on, who opened the flow, unknown
 * names and hostile bytes; the lines of a REWRITE and a RATE_LIMITED. Not for the JSON form
 * (test_event_json.c, test_event_pb.c).
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "event.h"
#include "event_text.h"

#define TIME_NS 1795759975123456789ULL /* 2026-11-27T06:12:55.123456Z */

static const uint8_t src[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 100, 3 };
static const uint8_t dst[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 100, 2 };

static struct loupe_event ev;
static char line[LOUPE_EVENT_TEXT_MAX];

static void verdict(enum loupe_event_action action, enum loupe_event_reason reason,
		    enum loupe_verdict_subject subject)
{
	memset(&ev, 0, sizeof(ev));
	ev.kind = LOUPE_EV_POLICY_VERDICT;
	ev.time_ns = TIME_NS;
	ev.direction = LOUPE_DIR_POD_EGRESS;
	ev.protocol = 6;
	ev.has_ip = true;
	memcpy(ev.saddr, src, 16);
	memcpy(ev.daddr, dst, 16);
	ev.sport = 41702;
	ev.dport = 443;
	ev.verdict.action = action;
	ev.verdict.reason = reason;
	ev.verdict.generation = 3;
	ev.verdict.origin = LOUPE_DIR_POD_EGRESS;
	ev.verdict.subject = subject;
	strcpy(ev.verdict.policy, "ai-egress-denied");
	strcpy(ev.verdict.rule, "llm-apis");
}

/* The line after its address columns: "VERDICT ...". */
static const char *what(void)
{
	int n = loupe_event_text_format(&ev, line, sizeof(line));
	const char *v;

	cr_assert_gt(n, 0, "format: %d", n);
	cr_assert_eq((size_t)n, strlen(line));
	cr_expect_null(strchr(line, '\n'));
	cr_expect_eq(strncmp(line, "2026-11-27T06:12:55.123456Z egress  198.18.100.3:41702", 54), 0,
		     "%s", line);
	v = strstr(line, "VERDICT ");
	cr_assert_not_null(v, "%s", line);
	return v;
}

Test(event_text, verdicts)
{
	verdict(LOUPE_EVENT_ACTION_DENY, LOUPE_EVENT_REASON_RULE, LOUPE_VERDICT_SUBJECT_TLS_SNI);
	strcpy(ev.tls.sni, "api.openai.com");
	cr_expect_str_eq(what(), "VERDICT deny policy=ai-egress-denied rule=llm-apis "
				 "sni=api.openai.com gen=3");

	verdict(LOUPE_EVENT_ACTION_AUDIT, LOUPE_EVENT_REASON_DEFAULT_ACTION,
		LOUPE_VERDICT_SUBJECT_HTTP_HOST);
	ev.verdict.rule[0] = '\0';
	strcpy(ev.http.host, "audited.example.test:8080");
	cr_expect_str_eq(what(), "VERDICT audit policy=ai-egress-denied rule=(default) "
				 "host=audited.example.test:8080 gen=3");

	verdict(LOUPE_EVENT_ACTION_DENY, LOUPE_EVENT_REASON_BOUND_EXCEEDED,
		LOUPE_VERDICT_SUBJECT_HTTP_HOST);
	cr_expect_str_eq(what(), "VERDICT deny bound-exceeded host=- gen=3");

	verdict(LOUPE_EVENT_ACTION_ALLOW, LOUPE_EVENT_REASON_RULE, LOUPE_VERDICT_SUBJECT_DNS_NAME);
	ev.protocol = 17;
	ev.dport = 53;
	strcpy(ev.dns.qname, "llm.example.test");
	ev.verdict.origin = LOUPE_DIR_POD_INGRESS;
	cr_expect_str_eq(what(), "VERDICT allow policy=ai-egress-denied rule=llm-apis "
				 "qname=llm.example.test opened-by=peer gen=3");

	/* an L4 rule; a generation whose names the agent forgot */
	verdict(LOUPE_EVENT_ACTION_DENY, LOUPE_EVENT_REASON_RULE, LOUPE_VERDICT_SUBJECT_NONE);
	ev.verdict.policy[0] = ev.verdict.rule[0] = '\0';
	cr_expect_str_eq(what(), "VERDICT deny policy=? rule=? gen=3");

	/* numbers this build does not know */
	verdict((enum loupe_event_action)9, LOUPE_EVENT_REASON_RULE, (enum loupe_verdict_subject)9);
	cr_expect_str_eq(what(), "VERDICT ? policy=ai-egress-denied rule=llm-apis gen=3");
}

Test(event_text, verdict_bytes_escaped)
{
	verdict(LOUPE_EVENT_ACTION_DENY, LOUPE_EVENT_REASON_RULE, LOUPE_VERDICT_SUBJECT_HTTP_HOST);
	strcpy(ev.http.host, "evil\n\x1b[31mhost\\");
	cr_expect_str_eq(what(), "VERDICT deny policy=ai-egress-denied rule=llm-apis "
				 "host=evil\\x0a\\x1b[31mhost\\x5c gen=3");
}

Test(event_text, verdict_cut_to_fit)
{
	char small[40];

	verdict(LOUPE_EVENT_ACTION_DENY, LOUPE_EVENT_REASON_RULE, LOUPE_VERDICT_SUBJECT_TLS_SNI);
	memset(ev.tls.sni, 'a', sizeof(ev.tls.sni) - 1);
	cr_expect_eq(loupe_event_text_format(&ev, small, sizeof(small)), -ENOSPC);
	cr_expect_eq(strlen(small), sizeof(small) - 1);
	cr_expect_gt(loupe_event_text_format(&ev, line, sizeof(line)), 0);
}

/* The line after its address columns, from @marker on. */
static const char *from(const char *marker)
{
	int n = loupe_event_text_format(&ev, line, sizeof(line));
	const char *v;

	cr_assert_gt(n, 0, "format: %d", n);
	v = strstr(line, marker);
	cr_assert_not_null(v, "%s", line);
	return v;
}

Test(event_text, rewrites)
{
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 100, 9 };
	static const uint8_t v6[16] = { 0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, [15] = 9 };

	verdict(LOUPE_EVENT_ACTION_UNSPECIFIED, LOUPE_EVENT_REASON_UNSPECIFIED,
		LOUPE_VERDICT_SUBJECT_NONE);
	ev.kind = LOUPE_EV_REWRITE;
	ev.dport = 80;
	ev.rewrite.actions = LOUPE_RW_MAP | LOUPE_RW_DSCP | LOUPE_RW_MASK;
	memcpy(ev.rewrite.new_addr, mapped, 16);
	ev.rewrite.new_port = 8080;
	ev.rewrite.dscp = 46;
	ev.rewrite.masked_bits = 0x5;
	ev.rewrite.generation = 2;
	strcpy(ev.rewrite.policy, "llm-egress");
	strcpy(ev.rewrite.name, "gateway");
	strcpy(ev.rewrite.masked[0], "authorization");
	cr_expect_str_eq(from("REWRITE"), "REWRITE map=198.18.100.9:8080 dscp=46 "
					  "masked=authorization,#2 policy=llm-egress "
					  "rewrite=gateway gen=2");
	cr_expect(strstr(line, "\u2192 198.18.100.2:80 "), "the address before: %s", line);

	ev.ipv6 = true;
	ev.rewrite.actions = LOUPE_RW_MAP | LOUPE_RW_VLAN_PUSH;
	memcpy(ev.rewrite.new_addr, v6, 16);
	ev.rewrite.new_port = 53;
	ev.rewrite.vlan_id = 100;
	ev.rewrite.policy[0] = ev.rewrite.name[0] = '\0';
	ev.rewrite.index = 4;
	cr_expect_str_eq(from("REWRITE"), "REWRITE map=[fd00:198:18::9]:53 vlan-push=100 "
					  "policy=? rewrite=#4 gen=2");
	ev.rewrite.actions = LOUPE_RW_VLAN_POP;
	ev.rewrite.vlan_id = 7;
	cr_expect_str_eq(from("REWRITE"), "REWRITE vlan-pop=7 policy=? rewrite=#4 gen=2");
}

Test(event_text, rate_limited)
{
	verdict(LOUPE_EVENT_ACTION_UNSPECIFIED, LOUPE_EVENT_REASON_UNSPECIFIED,
		LOUPE_VERDICT_SUBJECT_NONE);
	ev.kind = LOUPE_EV_RATE_LIMITED;
	ev.rate_limited.dropped = 12;
	ev.rate_limited.bytes_per_sec = 1250000;
	ev.rate_limited.burst = 62500;
	cr_expect_str_eq(from("RATE_LIMITED"),
			 "RATE_LIMITED dropped=12 limit=1250000 B/s burst=62500 B");
}
