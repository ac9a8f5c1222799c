// SPDX-License-Identifier: Apache-2.0
/*
 * Policies judged by the production programs: a policy set put in force with the real apply
 * step, then crafted packets through BPF_PROG_TEST_RUN; each row checks the TC action, the
 * POLICY_VERDICT event (action, rule, the name it was reached on) and the flow's cached
 * verdict. Covers every match kind, wildcards, precedence, defaults, IPv4 and IPv6, and
 * requests split across segments in the ways a client can split them to slip past a rule.
 * Needs root; skips without BPF. Not for the compiler's output (test_policy_compile.c) nor
 * for the apply step's bookkeeping (test_policy_apply.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "fixtures.h"
#include "policy_apply.h"

#define POLICY(name, spec)                                                                         \
	"{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'" name "'},'spec':" spec \
	"}"

struct pol_fx {
	struct fx *fx;
	struct loupe_policy_runtime *rt;
	uint16_t next_port; /* a fresh client port per connection */
};

static struct pol_fx *pol_open(void)
{
	struct pol_fx *p = calloc(1, sizeof(*p));
	int err;

	cr_assert_not_null(p);
	p->fx = fx_open(false);
	err = loupe_policy_runtime_open(p->fx->dp, &p->rt);
	cr_assert_eq(err, 0, "loupe_policy_runtime_open: %s", strerror(-err));
	p->next_port = 41000;
	return p;
}

static void pol_close(struct pol_fx *p)
{
	loupe_policy_runtime_free(p->rt);
	fx_close(p->fx);
	free(p);
}

/* Puts the policies of @text (JSON with ' for ") in force; fails the test when refused. */
static void pol_apply(struct pol_fx *p, const char *text)
{
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_iface lo = { .ifindex = 1, .name = "lo" };
	struct loupe_policy_error e = { 0 };
	char *json = strdup(text);
	int err;

	cr_assert_not_null(json);
	for (char *c = json; *c; c++)
		if (*c == '\'')
			*c = '"';
	err = loupe_policy_parse(json, strlen(json), "test.json", &set, &e);
	cr_assert_eq(err, 0, "parse: %s: %s\n%s", e.path, e.message, json);
	err = loupe_policy_apply(p->rt, &set, &lo, 1, &e);
	cr_assert_eq(err, 0, "apply: %s: %s", e.path, e.message);
	loupe_policy_set_clear(&set);
	free(json);
}

/* Builds and runs one frame; returns the TC action. */
static int pol_run(struct pol_fx *p, const char *row, enum loupe_direction dir,
		   const struct loupe_pkt_spec *spec)
{
	static struct loupe_pkt pkt;
	int rc, err;

	cr_assert_eq(loupe_pkt_build(spec, &pkt), 0, "row %s: loupe_pkt_build", row);
	fx_row(p->fx, row, pkt.buf, pkt.len);
	err = fx_run(p->fx, dir, pkt.buf, pkt.len, 0, &rc);
	cr_assert_eq(err, 0, "row %s: loupe_datapath_run: %s", row, strerror(-err));
	fx_check_decode(p->fx);
	return rc;
}

#define PASS TC_ACT_UNSPEC
#define DROP TC_ACT_SHOT

/* The verdict event of the last run: action, "policy/rule" and subject; NULL when none. */
static const struct loupe_event_verdict *pol_verdict(struct pol_fx *p)
{
	const struct fx_record *r = fx_find(p->fx, LOUPE_EV_POLICY_VERDICT);

	return r ? (const struct loupe_event_verdict *)r->raw : NULL;
}

static void expect_verdict(struct pol_fx *p, uint8_t action, const char *policy, const char *rule,
			   const char *subject)
{
	const struct loupe_event_verdict *v = pol_verdict(p);
	const struct loupe_policy_bit_info *info;

	fx_eq(p->fx, "POLICY_VERDICT events", fx_count(p->fx, LOUPE_EV_POLICY_VERDICT), 1);
	if (!v)
		return;
	fx_eq(p->fx, "verdict.action", v->action, action);
	fx_eq(p->fx, "verdict.generation", v->generation, loupe_policy_generation(p->rt));
	if (!policy) {
		fx_eq(p->fx, "verdict.reason", v->reason, LOUPE_VERDICT_BOUND_EXCEEDED);
		fx_eq(p->fx, "verdict.bit", v->bit, LOUPE_POLICY_BIT_NONE);
	} else {
		fx_eq(p->fx, "verdict.reason", v->reason, LOUPE_VERDICT_RULE);
		info = loupe_policy_bit_lookup(p->rt, v->generation, v->bit);
		fx_true(p->fx, info, "bit %u of generation %u has no name", v->bit, v->generation);
		if (info) {
			fx_streq(p->fx, "verdict policy", info->policy, strlen(info->policy) + 1,
				 policy);
			fx_streq(p->fx, "verdict rule", info->rule, strlen(info->rule) + 1, rule);
		}
	}
	if (subject)
		fx_streq(p->fx, "verdict.subject", v->subject, sizeof(v->subject), subject);
}

static void expect_no_verdict(struct pol_fx *p)
{
	fx_eq(p->fx, "POLICY_VERDICT events", fx_count(p->fx, LOUPE_EV_POLICY_VERDICT), 0);
}

/* A TCP segment of a connection from the pod (client port @port) to @dst:@dport. */
static struct loupe_pkt_spec tcp_seg(bool ipv6, const char *dst, uint16_t port, uint16_t dport,
				     uint8_t flags, uint32_t seq, const char *payload, size_t len)
{
	struct loupe_pkt_spec s = {
		.ipv6 = ipv6,
		.dst = dst,
		.proto = IPPROTO_TCP,
		.sport = port,
		.dport = dport,
		.tcp = { .flags = flags, .seq = seq },
		.payload = payload,
		.payload_len = len,
	};
	return s;
}

#define SYN	 LOUPE_TCP_SYN
#define DATA	 (LOUPE_TCP_PSH | LOUPE_TCP_ACK)
#define ISN	 1000u
#define PEER4	 LOUPE_PKT_PEER4
#define PEER6	 LOUPE_PKT_PEER6
#define SEG(...) spec_ref(tcp_seg(__VA_ARGS__))

/* A spec that lives until the next call: pol_run() uses it at once. */
static const struct loupe_pkt_spec *spec_ref(struct loupe_pkt_spec s)
{
	static struct loupe_pkt_spec kept;

	kept = s;
	return &kept;
}

/* Opens a connection (SYN): returns its client port. */
static uint16_t pol_connect(struct pol_fx *p, const char *row, bool ipv6, const char *dst,
			    uint16_t dport, int want)
{
	uint16_t port = p->next_port++;
	struct loupe_pkt_spec syn = tcp_seg(ipv6, dst, port, dport, SYN, ISN, NULL, 0);

	fx_eq(p->fx, "SYN: TC action", pol_run(p, row, LOUPE_DIR_POD_EGRESS, &syn), want);
	return port;
}

/* The flow's cached verdict. */
static void expect_flow_verdict(struct pol_fx *p, bool ipv6, const char *dst, uint16_t port,
				uint16_t dport, uint8_t verdict)
{
	struct loupe_pkt_spec s = tcp_seg(ipv6, dst, port, dport, SYN, ISN, NULL, 0);
	static struct loupe_pkt pkt;
	struct loupe_flow_key key;
	struct loupe_flow flow;

	cr_assert_eq(loupe_pkt_build(&s, &pkt), 0);
	fx_flow_key(&key, &pkt, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, -1);
	if (!fx_flow(p->fx, &key, &flow)) {
		fx_fail(p->fx, "no flow entry");
		return;
	}
	fx_eq(p->fx, "flow.verdict", flow.verdict, verdict);
}

static const char L4_SET[] =
	"[" POLICY("deny-web",
		   "{'priority':20,'podSelector':{},'rules':["
		   "{'name':'web4','direction':'egress','match':{'cidrs':['198.19.0.0/"
		   "16'],'ports':[{'port':80},{'port':8000,'endPort':8100}]},"
		   "'action':'deny'},"
		   "{'name':'web6','direction':'egress','match':{'cidrs':['fd00:198:18:"
		   "1::/64'],'ports':[{'port':80}]},'action':'deny'},"
		   "{'name':'dns-udp','direction':'egress','match':{'ports':[{'"
		   "protocol':'UDP','port':5353}]},'action':'deny'},"
		   "{'name':'ping','direction':'egress','match':{'cidrs':['198.19.0."
		   "21/32'],'ports':[{'protocol':'ICMP'}]},'action':'deny'},"
		   "{'name':'audit-all','direction':'egress','match':{'ports':[{'"
		   "port':443}]},'action':'audit'}]}") "," POLICY("exception", "{'priority':10,'"
									       "podSelector':{},'"
									       "rules':[{'name':'"
									       "one-host','"
									       "direction':'egress'"
									       ",'match':{'cidrs':"
									       "['198.19.0.99/"
									       "32']},'action':'"
									       "allow'}]}") "]";

Test(policy, cidr_port_deny_both_ways_v4)
{
	struct pol_fx *p = pol_open();
	struct loupe_pkt_spec reply;
	uint16_t port;

	pol_apply(p, L4_SET);
	port = pol_connect(p, "syn_denied", false, PEER4, 80, DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "deny-web", "web4", "");
	expect_flow_verdict(p, false, PEER4, port, 80, LOUPE_VERDICT_DENY);
	fx_eq(p->fx, "counters.policy_dropped[egress]",
	      p->fx->after.policy_dropped[0] - p->fx->before.policy_dropped[0], 1);

	/* the peer's answer to a denied flow is dropped too, and judged no more */
	reply = tcp_seg(false, PEER4, port, 80, LOUPE_TCP_SYN | LOUPE_TCP_ACK, 5000, NULL, 0);
	reply.reply = true;
	fx_eq(p->fx, "reply: TC action", pol_run(p, "reply", LOUPE_DIR_POD_INGRESS, &reply), DROP);
	expect_no_verdict(p);

	/* a port in the range, one outside it, and another address */
	pol_connect(p, "range_8050", false, PEER4, 8050, DROP);
	pol_connect(p, "port_81", false, PEER4, 81, PASS);
	expect_no_verdict(p);
	pol_connect(p, "other_net", false, "198.18.9.9", 80, PASS);
	expect_no_verdict(p);
	pol_close(p);
}

Test(policy, cidr_port_deny_v6)
{
	struct pol_fx *p = pol_open();

	pol_apply(p, L4_SET);
	pol_connect(p, "syn6_denied", true, PEER6, 80, DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "deny-web", "web6", "");
	pol_connect(p, "syn6_other_net", true, "fd00:198:18:2::20", 80, PASS);
	expect_no_verdict(p);
	/* an IPv4 prefix never matches IPv6, nor the other way round */
	pol_connect(p, "syn6_range", true, PEER6, 8050, PASS);
	pol_close(p);
}

Test(policy, precedence_priority_then_name)
{
	struct pol_fx *p = pol_open();

	pol_apply(p, L4_SET);
	/* "exception" (priority 10) comes before "deny-web" (20) */
	pol_connect(p, "exception_first", false, "198.19.0.99", 80, PASS);
	expect_verdict(p, LOUPE_VERDICT_ALLOW, "exception", "one-host", "");
	pol_connect(p, "audit", false, PEER4, 443, PASS);
	expect_verdict(p, LOUPE_VERDICT_AUDIT, "deny-web", "audit-all", "");

	/* same priority: by name; "a-allow" before "b-deny" */
	pol_apply(
		p,
		"[" POLICY(
			"b-deny",
			"{'podSelector':{},'rules':[{'name':'d','direction':"
			"'egress','match':{},'action':'deny'}]}") "," POLICY("a-allow",
									     "{'podSelector':{},'"
									     "rules':[{'name':'a','"
									     "direction':'egress','"
									     "match':{'ports':[{'"
									     "port':22}]},'action':"
									     "'allow'}]}") "]");
	pol_connect(p, "by_name_allow", false, PEER4, 22, PASS);
	expect_verdict(p, LOUPE_VERDICT_ALLOW, "a-allow", "a", "");
	pol_connect(p, "by_name_deny", false, PEER4, 23, DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "b-deny", "d", "");
	pol_close(p);
}

Test(policy, udp_and_icmp)
{
	struct pol_fx *p = pol_open();
	struct loupe_pkt_spec udp = { .proto = IPPROTO_UDP, .dport = 5353, .payload = "x" };
	struct loupe_pkt_spec ping = { .dst = "198.19.0.21",
				       .proto = IPPROTO_ICMP,
				       .icmp = { .id = 7, .seq = 1 } };
	struct loupe_pkt_spec ping_other = ping;

	pol_apply(p, L4_SET);
	fx_eq(p->fx, "udp 5353", pol_run(p, "udp_5353", LOUPE_DIR_POD_EGRESS, &udp), DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "deny-web", "dns-udp", "");
	udp.dport = 5354;
	fx_eq(p->fx, "udp 5354", pol_run(p, "udp_5354", LOUPE_DIR_POD_EGRESS, &udp), PASS);
	fx_eq(p->fx, "ping", pol_run(p, "ping_denied", LOUPE_DIR_POD_EGRESS, &ping), DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "deny-web", "ping", "");
	ping_other.dst = "198.19.0.22";
	fx_eq(p->fx, "ping other", pol_run(p, "ping_other", LOUPE_DIR_POD_EGRESS, &ping_other),
	      PASS);
	pol_close(p);
}

Test(policy, default_action_and_selectors)
{
	struct pol_fx *p = pol_open();
	/* the peer opens a flow to the pod's port 8080 (.reply swaps addresses and ports) */
	struct loupe_pkt_spec in = tcp_seg(false, NULL, 8080, 50000, SYN, ISN, NULL, 0);

	pol_apply(p,
		  "[" POLICY("lockdown",
			     "{'podSelector':{'cidrs':['198.18.0.0/24']},'defaultAction':'deny',"
			     "'rules':[{'name':'dns','direction':'egress','match':{'ports':[{"
			     "'protocol':'UDP','port':53}]},'action':'allow'},"
			     "{'name':'web-in','direction':'ingress','match':{'ports':[{'port':"
			     "8080}]},'action':'allow'}]}") "," POLICY("other-pods",
								       "{'podSelector':{'cidrs':['"
								       "198.18.5.0/"
								       "24']},'defaultAction':'"
								       "allow','rules':[]}") "]");
	/* the pod 198.18.0.10 is selected by "lockdown" only: its default decides */
	pol_connect(p, "default_deny", false, PEER4, 443, DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "lockdown", "", "");
	/* ingress: the peer opens a flow to the pod's port 8080 */
	in.reply = true;
	fx_eq(p->fx, "ingress 8080", pol_run(p, "ingress_allowed", LOUPE_DIR_POD_INGRESS, &in),
	      PASS);
	expect_verdict(p, LOUPE_VERDICT_ALLOW, "lockdown", "web-in", "");
	in.sport = 8081;
	fx_eq(p->fx, "ingress 8081", pol_run(p, "ingress_default", LOUPE_DIR_POD_INGRESS, &in),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "lockdown", "", "");

	/* a pod no policy selects: nothing judged */
	{
		struct loupe_pkt_spec s = tcp_seg(false, PEER4, 42000, 443, SYN, ISN, NULL, 0);

		s.src = "198.18.7.7";
		fx_eq(p->fx, "unselected pod", pol_run(p, "unselected", LOUPE_DIR_POD_EGRESS, &s),
		      PASS);
		expect_no_verdict(p);
	}
	pol_close(p);
}

Test(policy, interface_and_label_selectors)
{
	struct pol_fx *p = pol_open();

	/* test runs see ifindex 1 ("lo"): a glob that fits it selects, one that does not,
	 * or a label selector (not known yet), selects nothing */
	pol_apply(p,
		  "[" POLICY(
			  "by-iface",
			  "{'podSelector':{'interfaces':['l?']},'rules':[{'name':"
			  "'r','direction':'egress','match':{'ports':[{'port':"
			  "80}]},'action':'deny'}]}") "," POLICY("by-other-iface",
								 "{'podSelector':{'interfaces':['"
								 "veth*']},'rules':[{'name':'r','"
								 "direction':'egress','match':{'"
								 "ports':[{'port':81}]},'action':'"
								 "deny'}]}") "," POLICY("by-label",
											"{'"
											"podSelecto"
											"r':{'"
											"labels':{'"
											"app':'x'}}"
											",'rules':["
											"{'name':'"
											"r','"
											"direction'"
											":'egress',"
											"'match':{'"
											"ports':[{'"
											"port':82}]"
											"},'action'"
											":'deny'}]"
											"}") "]");
	pol_connect(p, "iface_glob", false, PEER4, 80, DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "by-iface", "r", "");
	pol_connect(p, "other_iface", false, PEER4, 81, PASS);
	pol_connect(p, "label", false, PEER4, 82, PASS);
	pol_close(p);
}

/* The AI egress example of docs/policy.md, for the pods not selected for AI. */
static const char AI_SET[] = "[" POLICY(
	"ai-egress-allowed",
	"{'priority':10,'podSelector':{'cidrs':['198.18.100.0/"
	"28']},'rules':["
	"{'name':'llm-tls','direction':'egress','match':{'ports':[{'"
	"port':443}],'tls':{'"
	"sni':['api.openai.com','*.anthropic.com']}},'action':'allow'}"
	"]}") "," POLICY("ai-egress-denied", "{'priority':20,'podSelector':{},'rules':["
					     "{'name':'llm-sni','direction':'egress','"
					     "match':{'tls':{'sni':['api.openai.com','*."
					     "anthropic.com','generativelanguage."
					     "googleapis.com']}},'action':'deny'},"
					     "{'name':'llm-host','direction':'egress','"
					     "match':{'http':{'hosts':['api.openai.com','*"
					     ".anthropic.com','generativelanguage."
					     "googleapis.com']}},'action':'deny'},"
					     "{'name':'llm-dns','direction':'egress','"
					     "match':{'dns':{'names':['api.openai.com','*."
					     "anthropic.com']}},'action':'deny'},"
					     "{'name':'admin-path','direction':'egress','"
					     "match':{'http':{'methods':['POST'],'paths':["
					     "'/admin/']}},'action':'deny'},"
					     "{'name':'ports-host','direction':'egress','"
					     "match':{'http':{'hosts':['svc.test:8080']}},"
					     "'action':'deny'},"
					     "{'name':'audit-http','direction':'egress','"
					     "match':{'http':{}},'action':'audit'}]}") "]";

static const char *http_req(char *buf, size_t size, const char *method, const char *path,
			    const char *host_line)
{
	snprintf(buf, size, "%s %s HTTP/1.1\r\nUser-Agent: t\r\n%s\r\nAccept: */*\r\n\r\n", method,
		 path, host_line);
	return buf;
}

/* One request in one segment on a fresh connection: the TC action of the request. */
static int http_once(struct pol_fx *p, const char *row, const char *method, const char *path,
		     const char *host_line)
{
	char req[512];
	uint16_t port = pol_connect(p, row, false, PEER4, 80, PASS);

	http_req(req, sizeof(req), method, path, host_line);
	return pol_run(p, row, LOUPE_DIR_POD_EGRESS,
		       SEG(false, PEER4, port, 80, DATA, ISN + 1, req, strlen(req)));
}

Test(policy, http_hosts_methods_paths)
{
	struct pol_fx *p = pol_open();

	pol_apply(p, AI_SET);
	fx_eq(p->fx, "openai", http_once(p, "host_exact", "GET", "/", "Host: api.openai.com"),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-host", "api.openai.com");
	fx_eq(p->fx, "HTTP_REQUEST reported", fx_count(p->fx, LOUPE_EV_HTTP_REQUEST), 1);

	/* case, blanks, a trailing dot and a port do not hide a name */
	fx_eq(p->fx, "padded", http_once(p, "host_padded", "GET", "/", "HOST:   API.OpenAI.com  "),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-host", "API.OpenAI.com");
	fx_eq(p->fx, "lower", http_once(p, "host_lower", "GET", "/", "host: api.openai.com."),
	      DROP);
	fx_eq(p->fx, "port", http_once(p, "host_port", "GET", "/", "Host: api.openai.com:80"),
	      DROP);
	fx_eq(p->fx, "wildcard",
	      http_once(p, "host_wildcard", "GET", "/", "Host: a.b.anthropic.com"), DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-host", "a.b.anthropic.com");
	/* "*." needs one more label; a longer name is another name */
	fx_eq(p->fx, "apex", http_once(p, "host_apex", "GET", "/", "Host: anthropic.com"), PASS);
	expect_verdict(p, LOUPE_VERDICT_AUDIT, "ai-egress-denied", "audit-http", "anthropic.com");
	fx_eq(p->fx, "xanthropic", http_once(p, "host_suffix", "GET", "/", "Host: xanthropic.com"),
	      PASS);
	fx_eq(p->fx, "sub of exact",
	      http_once(p, "host_sub_exact", "GET", "/", "Host: x.api.openai.com"), PASS);

	/* a host with a port matches that port only */
	fx_eq(p->fx, "svc:8080", http_once(p, "hostport", "GET", "/", "Host: svc.test:8080"), DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "ports-host", "svc.test:8080");
	fx_eq(p->fx, "svc:8081", http_once(p, "hostport_other", "GET", "/", "Host: svc.test:8081"),
	      PASS);
	fx_eq(p->fx, "svc", http_once(p, "hostport_none", "GET", "/", "Host: svc.test"), PASS);

	/* method and path prefix together */
	fx_eq(p->fx, "POST /admin/", http_once(p, "admin_post", "POST", "/admin/users", "Host: a"),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "admin-path", "a");
	fx_eq(p->fx, "GET /admin/", http_once(p, "admin_get", "GET", "/admin/users", "Host: a"),
	      PASS);
	fx_eq(p->fx, "POST /adminx", http_once(p, "admin_prefix", "POST", "/adminx", "Host: a"),
	      PASS);

	/* HTTP/0.9: a request line without a version is whole at its end, with no Host */
	{
		static const char req09[] = "GET /admin/x\r\n";
		uint16_t port = pol_connect(p, "http09", false, PEER4, 80, PASS);

		fx_eq(p->fx, "HTTP/0.9",
		      pol_run(p, "http09", LOUPE_DIR_POD_EGRESS,
			      SEG(false, PEER4, port, 80, DATA, ISN + 1, req09, strlen(req09))),
		      PASS);
		expect_verdict(p, LOUPE_VERDICT_AUDIT, "ai-egress-denied", "audit-http", "");
	}
	pol_close(p);
}

/* A ClientHello for @sni, built by the test's packet builder. */
static size_t client_hello(uint8_t *out, size_t size, const char *sni, size_t padding)
{
	struct loupe_pkt_spec s = {
		.proto = IPPROTO_TCP,
		.dport = 443,
		.tls = &(const struct loupe_pkt_tls){ .sni = sni, .padding = padding },
	};
	static struct loupe_pkt pkt;

	cr_assert_eq(loupe_pkt_build(&s, &pkt), 0);
	cr_assert_leq(pkt.payload_len, size);
	memcpy(out, pkt.buf + pkt.payload_off, pkt.payload_len);
	return pkt.payload_len;
}

Test(policy, tls_sni)
{
	struct pol_fx *p = pol_open();
	uint8_t hello[4096];
	size_t len;
	uint16_t port;

	pol_apply(p, AI_SET);
	len = client_hello(hello, sizeof(hello), "generativelanguage.googleapis.com", 0);
	port = pol_connect(p, "tls_syn", false, PEER4, 443, PASS);
	fx_eq(p->fx, "denied SNI",
	      pol_run(p, "tls_denied", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 443, DATA, ISN + 1, (char *)hello, len)),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-sni",
		       "generativelanguage.googleapis.com");
	expect_flow_verdict(p, false, PEER4, port, 443, LOUPE_VERDICT_DENY);

	len = client_hello(hello, sizeof(hello), "example.test", 0);
	port = pol_connect(p, "tls_syn2", false, PEER4, 443, PASS);
	fx_eq(p->fx, "other SNI",
	      pol_run(p, "tls_other", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 443, DATA, ISN + 1, (char *)hello, len)),
	      PASS);
	expect_no_verdict(p);
	expect_flow_verdict(p, false, PEER4, port, 443, LOUPE_VERDICT_NONE);

	/* the AI pods: their own policy allows it first */
	{
		struct loupe_pkt_spec syn = tcp_seg(false, PEER4, 43000, 443, SYN, ISN, NULL, 0);
		struct loupe_pkt_spec seg;

		len = client_hello(hello, sizeof(hello), "API.Anthropic.com", 0);
		syn.src = "198.18.100.3";
		fx_eq(p->fx, "ai syn", pol_run(p, "ai_syn", LOUPE_DIR_POD_EGRESS, &syn), PASS);
		seg = tcp_seg(false, PEER4, 43000, 443, DATA, ISN + 1, (char *)hello, len);
		seg.src = "198.18.100.3";
		fx_eq(p->fx, "ai hello", pol_run(p, "ai_hello", LOUPE_DIR_POD_EGRESS, &seg), PASS);
		expect_verdict(p, LOUPE_VERDICT_ALLOW, "ai-egress-allowed", "llm-tls",
			       "API.Anthropic.com");
	}
	pol_close(p);
}

Test(policy, dns_names)
{
	struct pol_fx *p = pol_open();
	struct loupe_pkt_spec q = {
		.proto = IPPROTO_UDP,
		.dport = 53,
		.sport = 45000,
		.dns = &(const struct loupe_pkt_dns){ .id = 1, .qname = "claude.anthropic.com" },
	};

	pol_apply(p, AI_SET);
	fx_eq(p->fx, "denied name", pol_run(p, "dns_denied", LOUPE_DIR_POD_EGRESS, &q), DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-dns",
		       "claude.anthropic.com");
	fx_eq(p->fx, "DNS_QUERY reported", fx_count(p->fx, LOUPE_EV_DNS_QUERY), 1);

	q.sport = 45001;
	q.dns = &(const struct loupe_pkt_dns){ .id = 2, .qname = "example.test" };
	fx_eq(p->fx, "other name", pol_run(p, "dns_other", LOUPE_DIR_POD_EGRESS, &q), PASS);
	expect_no_verdict(p);
	pol_close(p);
}

/*
 * Requests split so that the Host, the SNI or the request line's end comes in a later
 * segment: every way still meets the rule. The verdict may come as soon as the Host line is
 * complete; from then on every segment is dropped, and the segment that ends the header
 * block never passes.
 */
static void http_split(struct pol_fx *p, const char *row, const char *req, const size_t *cuts,
		       size_t ncuts)
{
	size_t len = strlen(req), at = 0, verdicts = 0;
	uint16_t port = pol_connect(p, row, false, PEER4, 80, PASS);
	bool denied = false;

	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		char what[64];
		int rc;

		snprintf(what, sizeof(what), "segment %zu (bytes %zu..%zu)", i, at, end);
		rc = pol_run(p, row, LOUPE_DIR_POD_EGRESS,
			     SEG(false, PEER4, port, 80, DATA, ISN + 1 + at, req + at, end - at));
		if (denied || i == ncuts)
			fx_eq(p->fx, what, rc, DROP);
		if (rc == DROP && !denied) {
			denied = true;
			expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-host",
				       "api.openai.com");
		}
		verdicts += fx_count(p->fx, LOUPE_EV_POLICY_VERDICT);
		at = end;
	}
	fx_eq(p->fx, "POLICY_VERDICT events in all", verdicts, 1);
	expect_flow_verdict(p, false, PEER4, port, 80, LOUPE_VERDICT_DENY);
}

Test(policy, evasion_http_segments)
{
	static const char req[] = "GET /v1/chat HTTP/1.1\r\nUser-Agent: t\r\nHost: "
				  "api.openai.com\r\nAccept: */*\r\n\r\n";
	const char *host = strstr(req, "Host");
	size_t h = host - req;
	struct pol_fx *p = pol_open();

	pol_apply(p, AI_SET);
	http_split(p, "split_in_method", req, (size_t[]){ 2 }, 1);
	http_split(p, "split_in_path", req, (size_t[]){ 7 }, 1);
	http_split(p, "split_after_line", req, (size_t[]){ 23 }, 1);
	http_split(p, "split_in_host_name", req, (size_t[]){ h + 2 }, 1);
	http_split(p, "split_in_host_value", req, (size_t[]){ h + 10 }, 1);
	http_split(p, "split_before_crlf", req, (size_t[]){ h + 20 }, 1);
	http_split(p, "split_three", req, (size_t[]){ 3, h + 1, h + 12 }, 3);
	{
		size_t cuts[sizeof(req)];

		for (size_t i = 0; i < sizeof(req) - 2; i++)
			cuts[i] = i + 1;
		http_split(p, "one_byte_each", req, cuts, sizeof(req) - 2);
	}
	pol_close(p);
}

Test(policy, evasion_out_of_order)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: api.openai.com\r\n\r\n";
	struct pol_fx *p = pol_open();
	uint16_t port;
	size_t cut = 20, len = strlen(req);

	pol_apply(p, AI_SET);
	/* the second half first: not the client's first byte, dropped until sent in order */
	port = pol_connect(p, "ooo", false, PEER4, 80, PASS);
	fx_eq(p->fx, "second half first",
	      pol_run(p, "ooo_second", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1 + cut, req + cut, len - cut)),
	      DROP);
	expect_no_verdict(p);
	fx_eq(p->fx, "counters.policy_out_of_order",
	      p->fx->after.policy_out_of_order - p->fx->before.policy_out_of_order, 1);
	fx_eq(p->fx, "first half",
	      pol_run(p, "ooo_first", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1, req, cut)),
	      PASS);
	/* held: a gap after what is held is dropped too */
	fx_eq(p->fx, "gap",
	      pol_run(p, "ooo_gap", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1 + cut + 5, req + cut + 5,
			  len - cut - 5)),
	      DROP);
	/* a copy of what is held passes (the client sends it again) */
	fx_eq(p->fx, "copy",
	      pol_run(p, "ooo_copy", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1, req, cut)),
	      PASS);
	fx_eq(p->fx, "rest in order",
	      pol_run(p, "ooo_rest", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1 + cut, req + cut, len - cut)),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-host", "api.openai.com");
	pol_close(p);
}

Test(policy, evasion_tls_segments)
{
	struct pol_fx *p = pol_open();
	/* in the record header, in the handshake header, before the SNI, after it */
	static const size_t cuts[] = { 1, 3, 5, 9, 60, 200, 450 };
	uint8_t hello[4096];
	size_t len = client_hello(hello, sizeof(hello), "api.openai.com", 400);

	pol_apply(p, AI_SET);
	for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		uint16_t port = pol_connect(p, "tls_split", false, PEER4, 443, PASS);
		char row[32];

		snprintf(row, sizeof(row), "tls_split_at_%zu", cuts[c]);
		cr_assert_lt(cuts[c], len);
		fx_eq(p->fx, "first part",
		      pol_run(p, row, LOUPE_DIR_POD_EGRESS,
			      SEG(false, PEER4, port, 443, DATA, ISN + 1, (char *)hello, cuts[c])),
		      PASS);
		expect_no_verdict(p);
		fx_eq(p->fx, "completing part",
		      pol_run(p, row, LOUPE_DIR_POD_EGRESS,
			      SEG(false, PEER4, port, 443, DATA, ISN + 1 + cuts[c],
				  (char *)hello + cuts[c], len - cuts[c])),
		      DROP);
		expect_verdict(p, LOUPE_VERDICT_DENY, "ai-egress-denied", "llm-sni",
			       "api.openai.com");
	}
	pol_close(p);
}

Test(policy, bound_exceeded_fails_closed)
{
	struct pol_fx *p = pol_open();
	static char req[3000];
	uint16_t port;
	size_t len;

	pol_apply(p, AI_SET);
	/* headers that never end within LOUPE_POLICY_HOLD_MAX bytes, sent in two segments */
	len = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Pad: ");
	memset(req + len, 'a', 2600);
	len += 2600;
	port = pol_connect(p, "bound", false, PEER4, 80, PASS);
	fx_eq(p->fx, "first 1200",
	      pol_run(p, "bound_first", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1, req, 1200)),
	      PASS);
	fx_eq(p->fx, "past the bound",
	      pol_run(p, "bound_rest", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1 + 1200, req + 1200, len - 1200)),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, NULL, NULL, "");
	fx_eq(p->fx, "counters.policy_bound_exceeded",
	      p->fx->after.policy_bound_exceeded - p->fx->before.policy_bound_exceeded, 1);
	pol_close(p);
}

Test(policy, records_and_fragments_fail_closed)
{
	struct pol_fx *p = pol_open();
	uint8_t hello[4096];
	size_t len = client_hello(hello, sizeof(hello), "example.test", 0);
	uint16_t port;

	pol_apply(p, AI_SET);
	/* the handshake message says it is longer than its record: more records follow */
	cr_assert_gt(len, 60);
	hello[3] = 0;
	hello[4] = 50; /* the first record: 50 bytes of the handshake */
	port = pol_connect(p, "two_records", false, PEER4, 443, PASS);
	fx_eq(p->fx, "first record",
	      pol_run(p, "two_records", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 443, DATA, ISN + 1, (char *)hello, 55)),
	      DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, NULL, NULL, "");

	/* a request in IP fragments: the first one (ports, the request's start) is denied */
	{
		static const char req[] = "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
		struct loupe_pkt_spec frag;

		port = pol_connect(p, "fragments", false, PEER4, 80, PASS);
		frag = tcp_seg(false, PEER4, port, 80, DATA, ISN + 1, req, 24);
		frag.ip4.mf = true;
		fx_eq(p->fx, "first fragment",
		      pol_run(p, "first_fragment", LOUPE_DIR_POD_EGRESS, &frag), DROP);
		expect_verdict(p, LOUPE_VERDICT_DENY, NULL, NULL, "");
	}
	pol_close(p);
}

Test(policy, not_http_when_an_http_rule_comes_first)
{
	struct pol_fx *p = pol_open();
	static const char junk[] = "\x01\x02 binary protocol bytes";
	uint16_t port;

	pol_apply(p, AI_SET);
	/* the first payload is neither HTTP nor TLS: L7 rules do not fit, nothing decides */
	port = pol_connect(p, "junk", false, PEER4, 80, PASS);
	fx_eq(p->fx, "junk",
	      pol_run(p, "junk", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, port, 80, DATA, ISN + 1, junk, sizeof(junk) - 1)),
	      PASS);
	expect_no_verdict(p);
	expect_flow_verdict(p, false, PEER4, port, 80, LOUPE_VERDICT_NONE);
	pol_close(p);
}

Test(policy, update_applies_to_new_flows)
{
	struct pol_fx *p = pol_open();
	uint16_t old_port;

	pol_apply(p, "[" POLICY("v1", "{'podSelector':{},'rules':[{'name':'r','direction':'egress',"
				      "'match':{'ports':[{'port':9000}]},'action':'allow'}]}") "]");
	old_port = pol_connect(p, "v1_flow", false, PEER4, 9000, PASS);
	expect_verdict(p, LOUPE_VERDICT_ALLOW, "v1", "r", "");
	pol_apply(p, "[" POLICY("v2", "{'podSelector':{},'rules':[{'name':'r','direction':'egress',"
				      "'match':{'ports':[{'port':9000}]},'action':'deny'}]}") "]");
	pol_connect(p, "v2_flow", false, PEER4, 9000, DROP);
	expect_verdict(p, LOUPE_VERDICT_DENY, "v2", "r", "");
	/* the flow judged under v1 keeps its verdict */
	fx_eq(p->fx, "old flow",
	      pol_run(p, "v1_flow_data", LOUPE_DIR_POD_EGRESS,
		      SEG(false, PEER4, old_port, 9000, DATA, ISN + 1, "x", 1)),
	      PASS);
	/* no policy at all: nothing judged */
	pol_apply(p, "[]");
	pol_connect(p, "none", false, PEER4, 9000, PASS);
	expect_no_verdict(p);
	pol_close(p);
}
