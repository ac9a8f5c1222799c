// SPDX-License-Identifier: Apache-2.0
/*
 * Policies enforced on live CNI pods by loupe-agent --standalone --policy DIR, with real
 * clients: curl to a denied Host fails and to an allowed one succeeds, openssl s_client to a
 * denied SNI fails, dig for a denied name gets no answer while an allowed one resolves, a
 * denied peer address and a denied port are blocked, an audited request passes and is
 * reported; POLICY_VERDICT events name the policy and the rule, /metrics counts them. Then
 * without restarting the agent: a file change (inotify) and SIGHUP each take effect on new
 * connections, and a refused change keeps the set in force enforcing. Not for the matching's
 * corner cases (the datapath's fixtures) nor for evasion by segmentation.
 *
 * The node is a network namespace of its own, the agent pins into a private bpffs, pods come
 * from scripts/pods (ptp). Names carry the Criterion runner's pid (loupe-pn<pid>, lpl<pid>-,
 * /tmp/loupe-pl-<pid>-*): the runner sweeps them after the run, and a later run sweeps those
 * of runs that died. Every wait has a deadline; none is a fixed sleep.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "jsonget.h"
#include "live.h"

#define ID_ENV	"LOUPE_TEST_POLICY_LIVE_ID" /* the runner's pid, set once (PRE_ALL) */
#define METRICS "127.0.0.1:9750"	    /* in the node's own namespace: no clash */

/* Deadlines, seconds. */
#define ATTACH_S 5.0
#define CLIENT_S 15.0 /* a backstop: each client is bounded itself */
#define EVENT_S	 10.0 /* an event in the output file: flushed every second */
#define RELOAD_S 10.0 /* a change noticed and applied */

/* What the agent's log says once a set is in force or refused. */
#define APPLIED	 "msg=\"policies applied\""
#define REFUSED	 "msg=\"policies refused: the set in force stays\""
#define HOST_OK	 "allowed.example.test"
#define HOST_BAD "denied.example.test"
#define PORT_OK	 "8080"
#define PORT_BAD "8082" /* denied requests: see pods_up() */

/* loupe_live: the node (loupe-pn<id>), pods (lpl<id>-), temp dir (/tmp/loupe-pl-<id>-*) */
static struct {
	char policies[112]; /* --policy DIR */
	char store[112];    /* outside DIR: a change there is not seen by the watch */
	char events[112];
} t;

static struct loupe_live_pod server = { .name = "server" }, client = { .name = "client" };

static void teardown(void);

static const struct loupe_live_names live_names = {
	.id_env = ID_ENV,
	.node = "loupe-pn",
	.pods = "lpl",
	.tmp = "loupe-pl",
	.teardown = teardown,
};

/* ------------------------------------------------------------------ setup and cleanup */

static void teardown(void)
{
	loupe_live_teardown();
	memset(&t, 0, sizeof(t));
}

LOUPE_LIVE_PRE_ALL(&live_names)
LOUPE_LIVE_POST_ALL(&live_names)

static const char *missing_tool(void)
{
	static const char *const tools[] = {
		"/usr/bin/curl",	   "/usr/bin/dig",	    "/usr/bin/openssl",
		"/usr/bin/python3",	   "/usr/bin/timeout",	    "/usr/lib/cni/ptp",
		"/usr/lib/cni/host-local", "/usr/lib/cni/loopback", LOUPE_LIVE_AGENT_BIN,
		LOUPE_LIVE_PODS,
	};

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (access(tools[i], X_OK))
			return tools[i];
	return NULL;
}

static void setup(void)
{
	const char *tool;

	if (geteuid() != 0)
		cr_skip_test("needs root: network namespaces, CNI plugins, bpffs, BPF programs");
	tool = missing_tool();
	if (tool)
		cr_skip_test("%s is missing (curl, dnsutils, openssl, python3, "
			     "containernetworking-plugins; the agent: make build)",
			     tool);
	loupe_live_setup(&live_names);
	loupe_live_tmp_path(t.policies, sizeof(t.policies), "policies");
	loupe_live_tmp_path(t.store, sizeof(t.store), "store");
	loupe_live_tmp_path(t.events, sizeof(t.events), "events.jsonl");
	LOUPE_LIVE_CHECK(mkdir(t.policies, 0700) == 0 && mkdir(t.store, 0700) == 0, "mkdir: %s",
			 strerror(errno));
}

TestSuite(policy_live, .init = setup, .fini = teardown, .timeout = 300);

/* ------------------------------------------------------------------ pods and servers */

/*
 * Both pods at once, then the server's HTTP, DNS and TLS servers. The HTTP and TLS servers
 * serve one connection at a time, and a connection whose request was dropped hangs there for
 * good (its FIN is dropped too): denied requests go to a server of their own, 8082 (8081 is
 * denied by port, its SYN never arrives), so that 8080 keeps answering what is allowed.
 */
static void pods_up(void)
{
	static const char *const servers[][2] = {
		{ "http", "8080" }, { "http", "8081" }, { "http", "8082" },
		{ "dns", "53" },    { "tls", "443" },
	};
	struct loupe_live_pod *pods[] = { &server, &client };
	char name[32];

	loupe_live_pods_up(pods, 2);
	for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
		snprintf(name, sizeof(name), "serve-%s-%s", servers[i][0], servers[i][1]);
		loupe_live_pods_serve("server", servers[i][0], servers[i][1], name);
	}
}

/* ------------------------------------------------------------------ the policies */

/*
 * The client's egress: the server's IPv6 address and port 8081 denied on the first packet,
 * then a Host, an SNI and a DNS name denied, a Host audited; anything else allowed by the
 * default. @extra: more rules, appended (",{...}"), or "".
 */
static void write_live_policy(const char *extra)
{
	char text[4096], path[PATH_MAX];

	snprintf(
		text, sizeof(text),
		"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
		"\"metadata\":{\"name\":\"live\"},"
		"\"spec\":{\"priority\":10,\"podSelector\":{\"interfaces\":[\"%s\"]},"
		"\"defaultAction\":\"allow\",\"rules\":["
		"{\"name\":\"deny-server-v6\",\"direction\":\"egress\","
		"\"match\":{\"cidrs\":[\"%s/128\"]},\"action\":\"deny\"},"
		"{\"name\":\"deny-port\",\"direction\":\"egress\","
		"\"match\":{\"ports\":[{\"port\":8081,\"protocol\":\"TCP\"}]},\"action\":\"deny\"},"
		"{\"name\":\"deny-host\",\"direction\":\"egress\","
		"\"match\":{\"http\":{\"hosts\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		"{\"name\":\"deny-sni\",\"direction\":\"egress\","
		"\"match\":{\"tls\":{\"sni\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		"{\"name\":\"deny-dns\",\"direction\":\"egress\","
		"\"match\":{\"dns\":{\"names\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		"{\"name\":\"audit-host\",\"direction\":\"egress\","
		"\"match\":{\"http\":{\"hosts\":[\"audited.example.test\"]}},\"action\":\"audit\"}"
		"%s]}}\n",
		client.host_if, server.v6, extra);
	snprintf(path, sizeof(path), "%s/live.json", t.policies);
	loupe_live_write_file(path, text);
}

/* A second policy whose file lives in the store, linked from the policy directory. */
static void write_store_policy(const char *action)
{
	char text[1024], path[PATH_MAX];

	snprintf(text, sizeof(text),
		 "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
		 "\"metadata\":{\"name\":\"linked\"},"
		 "\"spec\":{\"priority\":5,\"podSelector\":{\"interfaces\":[\"%s\"]},\"rules\":["
		 "{\"name\":\"sighup-host\",\"direction\":\"egress\","
		 "\"match\":{\"http\":{\"hosts\":[\"sighup.example.test\"]}},\"action\":\"%s\"}]}}"
		 "\n",
		 client.host_if, action);
	snprintf(path, sizeof(path), "%s/linked.json", t.store);
	loupe_live_write_file(path, text);
}

/* ------------------------------------------------------------------ the agent */

static void agent_start(void)
{
	const struct loupe_live_agent agent = {
		.policy = t.policies, .events = t.events, .metrics = METRICS, .idle_timeout = "2s"
	};
	char needle[64];

	loupe_live_agent_start(&agent);
	loupe_live_agent_wait(APPLIED " trigger=start", 1, ATTACH_S);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", client.host_if);
	loupe_live_agent_wait(needle, 1, ATTACH_S);
}

/* /metrics, fetched inside the node's namespace. */
static char *metrics(void)
{
	return loupe_live_metrics(METRICS, CLIENT_S);
}

/*
 * Waits until /metrics shows @series at least @min (or exactly @min when @exact): the agent
 * publishes every second and after each reload. Returns the last value seen.
 */
static long long wait_sample(const char *series, long long min, bool exact)
{
	double end = loupe_live_now_s() + EVENT_S;
	long long v;
	char *m;

	for (;;) {
		m = metrics();
		v = loupe_live_sample(m, series);
		free(m);
		if (exact ? v == min : v >= min)
			return v;
		if (loupe_live_now_s() > end) {
			cr_expect_fail("/metrics: %s is %lld within %.0f s, expected %s%lld",
				       series, v, EVENT_S, exact ? "" : "at least ", min);
			return v;
		}
		loupe_live_pause_ms(100);
	}
}

/* ------------------------------------------------------------------ the clients */

/* `scripts/pods exec client -- ARGV...`: its exit code; its stdout in *@ret_out. */
static int client_run(const char *what, char **ret_out, char *const cmd[])
{
	char *argv[LOUPE_LIVE_ARGV_MAX];

	loupe_live_pods_exec_argv(argv, "client", cmd);
	return loupe_live_proc_run(argv, what, CLIENT_S, ret_out);
}

#define CLIENT(what, out, ...) client_run(what, out, (char *const[]){ __VA_ARGS__, NULL })

/*
 * curl http://@addr:@port/ with Host @host: the HTTP status ("200"), or "" when it got none
 * (its exit code in *@ret_rc: 28 for a timeout, the way a dropped request ends).
 */
static char *curl(const char *what, const char *addr, const char *port, const char *host,
		  int *ret_rc)
{
	char url[128], hdr[128], *out;
	bool v6 = strchr(addr, ':') != NULL;

	snprintf(url, sizeof(url), "http://%s%s%s:%s/policy-live", v6 ? "[" : "", addr,
		 v6 ? "]" : "", port);
	snprintf(hdr, sizeof(hdr), "Host: %s", host);
	*ret_rc = CLIENT(what, &out, "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w",
			 "%{http_code}", "-H", hdr, url);
	if (*ret_rc != 0)
		out[0] = '\0';
	return out;
}

static void expect_http_ok(const char *what, const char *addr, const char *port, const char *host)
{
	int rc;
	char *code = curl(what, addr, port, host, &rc);

	cr_expect(rc == 0 && strcmp(code, "200") == 0,
		  "%s: curl to %s:%s Host %s: exit %d, status '%s'; expected 200", what, addr, port,
		  host, rc, code);
	free(code);
}

static void expect_http_blocked(const char *what, const char *addr, const char *port,
				const char *host)
{
	int rc;
	char *code = curl(what, addr, port, host, &rc);

	cr_expect(rc != 0 && !code[0],
		  "%s: curl to %s:%s Host %s got through: exit %d, status '%s'", what, addr, port,
		  host, rc, code);
	free(code);
}

/* openssl s_client with SNI @sni: true when the handshake completed (ALPN agreed). */
static bool tls_handshake(const char *what, const char *sni)
{
	char connect[80], *out;
	bool ok;
	int rc;

	snprintf(connect, sizeof(connect), "%s:443", server.v4);
	rc = CLIENT(what, &out, "timeout", "4", "openssl", "s_client", "-connect", connect,
		    "-servername", (char *)sni, "-alpn", "h2,http/1.1");
	ok = rc == 0 && strstr(out, "ALPN protocol: h2");
	free(out);
	return ok;
}

/* dig @server A @name: the answer's first line ("" when no answer came). */
static char *dig(const char *what, const char *name)
{
	char at[64], *out;
	int rc;

	snprintf(at, sizeof(at), "@%s", server.v4);
	rc = CLIENT(what, &out, "dig", "+short", "+time=2", "+tries=1", at, (char *)name, "A");
	if (rc != 0)
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* ------------------------------------------------------------------ the events */

struct verdict_want {
	const char *action;  /* "DENY", "AUDIT", "ALLOW" */
	const char *rule;    /* "" for a default */
	const char *subject; /* "http.host", "tls.sni", "dns.qname" or NULL */
	const char *name;
	const char *policy; /* NULL: "live" */
};

static bool verdict_matches(struct json_object *o, const struct verdict_want *w)
{
	struct json_object *v = loupe_json_obj(o, "verdict"), *m;
	char key[32];
	const char *dot;

	if (strcmp(loupe_json_str(o, "kind"), "POLICY_VERDICT") || !v)
		return false;
	if (strcmp(loupe_json_str(v, "action"), w->action) ||
	    strcmp(loupe_json_str(v, "rule"), w->rule) ||
	    strcmp(loupe_json_str(v, "policy"), w->policy ? w->policy : "live"))
		return false;
	if (strcmp(loupe_json_str(o, "direction"), "POD_EGRESS") ||
	    strcmp(loupe_json_str(loupe_json_obj(o, "interface"), "name"), client.host_if))
		return false;
	if (!w->subject)
		return true;
	dot = strchr(w->subject, '.');
	snprintf(key, sizeof(key), "%.*s", (int)(dot - w->subject), w->subject);
	m = loupe_json_obj(o, key);
	return m && strcmp(loupe_json_str(m, dot + 1), w->name) == 0;
}

/* Waits for a POLICY_VERDICT event as @w says in the agent's output. */
static void expect_verdict(const struct verdict_want *w)
{
	double end = loupe_live_now_s() + EVENT_S;
	char *text, *line, *nl;

	for (;;) {
		text = loupe_live_slurp(t.events);
		for (line = text; (nl = strchr(line, '\n')); line = nl + 1) {
			struct json_object *o;
			bool found;

			*nl = '\0';
			o = json_tokener_parse(line);
			found = o && verdict_matches(o, w);
			json_object_put(o);
			if (found) {
				free(text);
				return;
			}
		}
		free(text);
		if (loupe_live_now_s() > end) {
			cr_expect_fail("no POLICY_VERDICT %s %s/%s%s%s%s within %.0f s in %s",
				       w->action, w->policy ? w->policy : "live", w->rule,
				       w->subject ? " " : "", w->subject ? w->subject : "",
				       w->subject ? w->name : "", EVENT_S, t.events);
			return;
		}
		loupe_live_pause_ms(50);
	}
}

/* ------------------------------------------------------------------ the tests */

Test(policy_live, enforced_with_real_clients)
{
	char *m, *answer;
	double t0 = loupe_live_now_s();

	pods_up();
	write_live_policy("");
	agent_start();
	fprintf(stderr, "[policy] client %s/%s on %s, server %s/%s; setup %.1f s\n", client.v4,
		client.v6, client.host_if, server.v4, server.v6, loupe_live_now_s() - t0);

	/* HTTP: by Host */
	expect_http_ok("curl-allowed", server.v4, PORT_OK, HOST_OK);
	/* the server of denied requests answers what is allowed: a failure there is the policy's */
	expect_http_ok("curl-allowed-8082", server.v4, PORT_BAD, HOST_OK);
	expect_http_blocked("curl-denied", server.v4, PORT_BAD, HOST_BAD);
	expect_http_ok("curl-allowed-after", server.v4, PORT_OK, HOST_OK);
	/* audit: passes, and is reported */
	expect_http_ok("curl-audited", server.v4, PORT_OK, "audited.example.test");

	/* TLS: by SNI */
	cr_expect(tls_handshake("tls-allowed", HOST_OK), "s_client with SNI " HOST_OK " failed");
	cr_expect_not(tls_handshake("tls-denied", HOST_BAD),
		      "s_client with SNI " HOST_BAD " completed its handshake");

	/* DNS: by query name */
	answer = dig("dig-allowed", HOST_OK);
	cr_expect_str_eq(answer, "198.18.10.2", "dig " HOST_OK ": '%s'", answer);
	free(answer);
	answer = dig("dig-denied", HOST_BAD);
	cr_expect_str_eq(answer, "", "dig " HOST_BAD " got an answer: '%s'", answer);
	free(answer);

	/* L3/L4: the server's IPv6 address, port 8081 */
	expect_http_blocked("curl-denied-v6", server.v6, PORT_OK, HOST_OK);
	expect_http_blocked("curl-denied-port", server.v4, "8081", HOST_OK);
	expect_http_ok("curl-allowed-port", server.v4, PORT_OK, HOST_OK);

	/* the verdicts, named */
	expect_verdict(&(struct verdict_want){ "DENY", "deny-host", "http.host", HOST_BAD, NULL });
	expect_verdict(&(struct verdict_want){ "AUDIT", "audit-host", "http.host",
					       "audited.example.test", NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-sni", "tls.sni", HOST_BAD, NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-dns", "dns.qname", HOST_BAD, NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-server-v6", NULL, NULL, NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-port", NULL, NULL, NULL });
	expect_verdict(&(struct verdict_want){ "ALLOW", "", "http.host", HOST_OK, NULL });

	/* /metrics: per-rule flows, drops, the generation */
	wait_sample("loupe_policy_rule_flows_total{policy=\"live\",rule=\"deny-host\","
		    "action=\"deny\"}",
		    1, false);
	wait_sample("loupe_policy_rule_flows_total{policy=\"live\",rule=\"audit-host\","
		    "action=\"audit\"}",
		    1, false);
	wait_sample("loupe_policy_rule_flows_total{policy=\"live\",rule=\"\",action=\"allow\"}", 1,
		    false);
	wait_sample("loupe_policy_dropped_packets_total{direction=\"pod_egress\"}", 1, false);
	m = metrics();
	cr_expect_geq(loupe_live_sample(m, "loupe_policy_generation"), 1);
	cr_expect_eq(loupe_live_sample(m, "loupe_policy_reloads_total{result=\"refused\"}"), 0);
	free(m);
	fprintf(stderr, "[policy] enforced: %.1f s in all\n", loupe_live_now_s() - t0);
}

Test(policy_live, reloads_without_restart)
{
	char link[PATH_MAX], target[PATH_MAX], bad[PATH_MAX], *m;
	long long gen;
	size_t applied;

	pods_up();
	write_live_policy("");
	write_store_policy("audit");
	snprintf(target, sizeof(target), "%s/linked.json", t.store);
	snprintf(link, sizeof(link), "%s/linked.json", t.policies);
	cr_assert_eq(symlink(target, link), 0, "%s: %s", link, strerror(errno));
	agent_start();
	gen = wait_sample("loupe_policy_generation", 1, false);
	cr_assert_geq(gen, 1);

	/* a file change: inotify, no restart */
	expect_http_ok("late-before", server.v4, PORT_OK, "late.example.test");
	expect_http_ok("late-before-8082", server.v4, PORT_BAD, "late.example.test");
	applied = loupe_live_agent_log_count(APPLIED " trigger=file-change");
	write_live_policy(",{\"name\":\"deny-late\",\"direction\":\"egress\","
			  "\"match\":{\"http\":{\"hosts\":[\"late.example.test\"]}},"
			  "\"action\":\"deny\"}");
	loupe_live_agent_wait(APPLIED " trigger=file-change", applied + 1, RELOAD_S);
	expect_http_blocked("late-after", server.v4, PORT_BAD, "late.example.test");
	expect_http_ok("allowed-after-change", server.v4, PORT_OK, HOST_OK);
	expect_verdict(&(struct verdict_want){ "DENY", "deny-late", "http.host",
					       "late.example.test", NULL });

	/* SIGHUP: a change the watch cannot see (the link's target is elsewhere) */
	expect_http_ok("sighup-before", server.v4, PORT_OK, "sighup.example.test");
	write_store_policy("deny");
	expect_http_ok("sighup-unseen", server.v4, PORT_OK, "sighup.example.test");
	applied = loupe_live_agent_log_count(APPLIED " trigger=sighup");
	cr_assert_eq(kill(loupe_live.agent, SIGHUP), 0);
	loupe_live_agent_wait(APPLIED " trigger=sighup", applied + 1, RELOAD_S);
	expect_http_blocked("sighup-after", server.v4, PORT_BAD, "sighup.example.test");
	expect_verdict(&(struct verdict_want){ "DENY", "sighup-host", "http.host",
					       "sighup.example.test", "linked" });
	wait_sample("loupe_policy_reloads_total{result=\"ok\"}", 2, true);
	m = metrics();
	gen = loupe_live_sample(m, "loupe_policy_generation");
	free(m);

	/* a refused change: logged, counted, and the set in force goes on enforcing */
	snprintf(bad, sizeof(bad), "%s/zz-bad.json", t.policies);
	loupe_live_write_file(
		bad, "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{");
	loupe_live_agent_wait(REFUSED, 1, RELOAD_S);
	loupe_live_agent_wait("zz-bad.json", 1, RELOAD_S);
	expect_http_blocked("denied-after-refusal", server.v4, PORT_BAD, HOST_BAD);
	expect_http_blocked("late-after-refusal", server.v4, PORT_BAD, "late.example.test");
	expect_http_ok("allowed-after-refusal", server.v4, PORT_OK, HOST_OK);
	cr_expect(!tls_handshake("tls-after-refusal", HOST_BAD), "SNI denied before the refusal");
	wait_sample("loupe_policy_reloads_total{result=\"refused\"}", 1, true);
	m = metrics();
	cr_expect_eq(loupe_live_sample(m, "loupe_policy_generation"), gen, "the generation moved");
	free(m);

	/* fixed: the set is the one in force, not applied again */
	cr_assert_eq(unlink(bad), 0);
	expect_http_ok("allowed-after-fix", server.v4, PORT_OK, HOST_OK);
	m = metrics();
	cr_expect_eq(loupe_live_sample(m, "loupe_policy_generation"), gen,
		     "an unchanged set applied again");
	free(m);
	cr_expect_eq(loupe_live_agent_log_count(REFUSED), 1);
}
