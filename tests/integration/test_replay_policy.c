// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl replay --policy, the real binary on tests/data: the verdicts a set gives the
 * captures' HTTP, TLS and DNS flows as POLICY_VERDICT events naming policy and rule (a
 * default's too), the dropped-packet summary, the same events without --policy as before,
 * --iface for policies that select pods by interface name, and the command line's errors
 * (a refused policy: exit 1 with its JSON path; --iface alone: exit 2). Not for the matching
 * itself (the datapath's fixtures) nor for replay without policies (test_replay.c).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "jsonget.h"
#include "proc.h"

#define LOUPECTL LOUPE_BIN_DIR "/loupectl"
#define DATA	 LOUPE_TEST_DATA

static char tmpdir[LOUPE_TMPDIR_MAX];

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root: replay loads the BPF programs");
	if (access(LOUPECTL, X_OK))
		cr_skip_test("%s is missing: make build", LOUPECTL);
	loupe_tmpdir_create(tmpdir, "/tmp/loupe-test-replay-policy.XXXXXX");
}

static void teardown(void)
{
	loupe_tmpdir_remove(tmpdir);
}

TestSuite(replay_policy, .init = setup, .fini = teardown, .timeout = 120);

#define RUN(...) loupe_proc_run(tmpdir, (char *const[]){ __VA_ARGS__, NULL })

/* Denies an SNI and a Host, audits a DNS name, allows the rest by default. */
static const char policy[] =
	"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"dry-run\"},"
	"\"spec\":{\"podSelector\":{%s},\"defaultAction\":\"allow\",\"rules\":["
	"{\"name\":\"deny-llm\",\"direction\":\"egress\","
	"\"match\":{\"tls\":{\"sni\":[\"llm.example.test\"]}},\"action\":\"deny\"},"
	"{\"name\":\"deny-api-host\",\"direction\":\"egress\","
	"\"match\":{\"http\":{\"hosts\":[\"api.example.test\"]}},\"action\":\"deny\"},"
	"{\"name\":\"audit-api-dns\",\"direction\":\"egress\","
	"\"match\":{\"dns\":{\"names\":[\"api.example.test\"]}},\"action\":\"audit\"}]}}";

static char *write_policy(const char *name, const char *selector)
{
	char *path = loupe_tmpdir_path(tmpdir, "%s", name);
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fprintf(f, policy, selector);
	cr_assert_eq(fclose(f), 0);
	return path;
}

struct verdicts {
	size_t n;
	char line[32][2048];
};

/* The POLICY_VERDICT lines of a replay's JSON output; every line must be JSON. */
static void verdicts_of(const char *out, struct verdicts *v)
{
	char *text = strdup(out), *line, *save = NULL;

	memset(v, 0, sizeof(*v));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = json_tokener_parse(line);

		cr_assert_not_null(o, "not JSON: %s", line);
		if (!strcmp(loupe_json_str(o, "kind"), "POLICY_VERDICT")) {
			cr_assert_lt(v->n, 32);
			snprintf(v->line[v->n++], sizeof(v->line[0]), "%s", line);
		}
		json_object_put(o);
	}
	free(text);
}

/*
 * How many verdicts are @action by @rule ("" for the default) with @key ("tls.sni", ...) = @name
 * (or no L7 name when @key is NULL).
 */
static size_t count(const struct verdicts *v, const char *action, const char *rule, const char *key,
		    const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < v->n; i++) {
		struct json_object *o = json_tokener_parse(v->line[i]);
		struct json_object *vd = loupe_json_obj(o, "verdict");
		bool ok = !strcmp(loupe_json_str(vd, "action"), action) &&
			  !strcmp(loupe_json_str(vd, "policy"), "dry-run") &&
			  !strcmp(loupe_json_str(vd, "rule"), rule) &&
			  !strcmp(loupe_json_str(vd, "reason"),
				  rule[0] ? "RULE" : "DEFAULT_ACTION") &&
			  loupe_json_u64(vd, "generation") == 1 &&
			  !strcmp(loupe_json_str(vd, "origin"), "POD_EGRESS");

		if (ok && key) {
			char msg[16];
			const char *dot = strchr(key, '.');

			snprintf(msg, sizeof(msg), "%.*s", (int)(dot - key), key);
			ok = !strcmp(loupe_json_str(loupe_json_obj(o, msg), dot + 1), name);
		}
		n += ok;
		json_object_put(o);
	}
	return n;
}

Test(replay_policy, verdicts_of_each_kind)
{
	char *p = write_policy("p.json", "");
	struct loupe_proc_result r;
	struct verdicts v;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--stats", "--policy", p, DATA "/tls-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_eq(count(&v, "DENY", "deny-llm", "tls.sni", "llm.example.test"), 1, "%s", r.out);
	cr_expect_eq(count(&v, "ALLOW", "", "tls.sni", "tls12.example.test"), 1, "%s", r.out);
	cr_expect_not_null(strstr(r.err, "policies: generation 1"), "%s", r.err);
	cr_expect_not_null(strstr(r.err, "DENY 1"), "%s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_geq(count(&v, "DENY", "deny-api-host", "http.host", "api.example.test"), 2, "%s",
		      r.out);
	cr_expect_eq(count(&v, "ALLOW", "", "http.host", "static.example.test"), 1, "%s", r.out);
	cr_expect_str_eq(r.err, "", "json without --stats keeps stderr quiet");
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, DATA "/dns-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_eq(count(&v, "AUDIT", "audit-api-dns", "dns.qname", "api.example.test"), 1, "%s",
		     r.out);
	cr_expect_eq(count(&v, "ALLOW", "", "dns.qname", "www.example.test"), 1, "%s", r.out);
	loupe_proc_result_free(&r);
	free(p);
}

/* Text: a VERDICT line, and the summary counts the frames a deny drops. */
Test(replay_policy, text_and_dropped_frames)
{
	static const char dropped[] = "dropped by policy (a dry run: the capture is unchanged): ";
	char *p = write_policy("p.json", "");
	struct loupe_proc_result r;
	unsigned long long frames = 0;
	const char *s;

	r = RUN(LOUPECTL, "replay", "--policy", p, DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_not_null(strstr(r.out, "VERDICT deny policy=dry-run rule=deny-api-host "
					 "host=api.example.test gen=1"),
			   "%s", r.out);
	cr_expect_not_null(strstr(r.out, "VERDICT allow policy=dry-run rule=(default) "
					 "host=static.example.test gen=1"),
			   "%s", r.out);
	s = strstr(r.err, dropped);
	cr_assert_not_null(s, "%s", r.err);
	sscanf(s + strlen(dropped), "%llu", &frames);
	cr_expect_gt(frames, 0, "%s", r.err);
	loupe_proc_result_free(&r);
	free(p);
}

/* Without --policy nothing changes: no verdict, the same events. */
Test(replay_policy, none_without_policy)
{
	struct loupe_proc_result r;
	struct verdicts v;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--stats", DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_eq(v.n, 0);
	cr_expect_null(strstr(r.err, "policies:"), "%s", r.err);
	cr_expect_not_null(strstr(r.err, "HTTP_REQUEST 6"), "%s", r.err);
	loupe_proc_result_free(&r);
}

/* A policy that selects pods by interface name selects the frames only with --iface. */
Test(replay_policy, iface)
{
	char *p = write_policy("veth.json", "\"interfaces\":[\"veth*\"]");
	struct loupe_proc_result r;
	struct verdicts v;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, DATA "/tls-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_eq(v.n, 0, "%s", r.out);
	cr_expect_not_null(strstr(r.err, "without --iface NAME it selects no frame"), "%s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, "--iface", "veth12",
		DATA "/tls-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_eq(count(&v, "DENY", "deny-llm", "tls.sni", "llm.example.test"), 1, "%s", r.out);
	cr_expect_str_eq(r.err, "");
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, "--iface", "eth0",
		DATA "/tls-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	verdicts_of(r.out, &v);
	cr_expect_eq(v.n, 0, "eth0 is not veth*: %s", r.out);
	loupe_proc_result_free(&r);
	free(p);
}

Test(replay_policy, errors)
{
	struct loupe_proc_result r;

	/* refused before any frame, as loupectl policy check prints it */
	r = RUN(LOUPECTL, "replay", "--policy", DATA "/bad-policies/port-end-below-port.json",
		DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 1);
	cr_expect_not_null(strstr(r.err,
				  "port-end-below-port.json: "
				  "spec.rules[2].match.ports[0].endPort: 79 is below port 80"),
			   "%s", r.err);
	cr_expect_str_eq(r.out, "");
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--policy", DATA "/no-such-policy.json", DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 1);
	cr_expect_not_null(strstr(r.err, "no-such-policy.json"), "%s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--iface", "veth1", DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 2);
	cr_expect_not_null(strstr(r.err, "--iface goes with --policy"), "%s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--policy", DATA "/policies", "--iface",
		"a-name-longer-than-sixteen", DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 2);
	loupe_proc_result_free(&r);

	/* a directory is one set, as the agent reads it */
	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", DATA "/policies",
		DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	loupe_proc_result_free(&r);
}
