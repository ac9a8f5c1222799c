// SPDX-License-Identifier: Apache-2.0
/*
 * The bad-policy corpus against a datapath that enforces: a good set is put in force the way
 * the agent does it (loupe_policy_watch_open + _load, then loupe_policy_apply), then every
 * file of tests/data/bad-policies goes through the same path and must be refused with the
 * JSON path EXPECTED.tsv names; after each refusal the generation is unchanged and the good
 * set still decides: a frame it denies comes back TC_ACT_SHOT with a POLICY_VERDICT naming
 * its rule, a frame it lets through TC_ACT_UNSPEC. And the agent's pipeline names those
 * verdicts: policy, rule, a default's DEFAULT_ACTION, each generation's own names. Not for the
 * parser's sentences (tests/unit/test_policy.c) nor for the matching itself (the datapath's
 * policy fixtures).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fixtures.h"
#include "pipeline.h"
#include "policy_apply.h"
#include "policy_watch.h"
#include "proc.h"

#define BAD_DIR	      LOUPE_TEST_DATA "/bad-policies"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Denies the peer's SMTP port (TCP 25), IPv4 and IPv6; everything else passes (no default). */
static const char good_policy[] =
	"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
	"\"metadata\":{\"name\":\"corpus-good\"},"
	"\"spec\":{\"podSelector\":{},\"rules\":["
	"{\"name\":\"deny-smtp\",\"direction\":\"egress\","
	"\"match\":{\"cidrs\":[\"" LOUPE_PKT_PEER4 "/32\",\"" LOUPE_PKT_PEER6 "/128\"],"
	"\"ports\":[{\"port\":25,\"protocol\":\"TCP\"}]},\"action\":\"deny\"}]}}";

struct expected {
	char file[128];
	char path[256];
	char word[128];
};

static char tmpdir[LOUPE_TMPDIR_MAX];

static void setup(void)
{
	loupe_tmpdir_create(tmpdir, "/tmp/loupe-test-policy-corpus.XXXXXX");
}

static void teardown(void)
{
	loupe_tmpdir_remove(tmpdir);
}

TestSuite(policy_corpus, .init = setup, .fini = teardown, .timeout = 120);

static unsigned int read_expected(struct expected *v, unsigned int max)
{
	char *text = loupe_proc_read_all(BAD_DIR "/EXPECTED.tsv", NULL), *line, *save = NULL;
	unsigned int n = 0;

	cr_assert_not_null(text, "cannot read EXPECTED.tsv");
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[3] = { 0 }, *s = line;

		if (line[0] == '#' || !line[0])
			continue;
		for (int k = 0; k < 3 && s; k++) {
			f[k] = s;
			s = strchr(s, '\t');
			if (s)
				*s++ = '\0';
		}
		cr_assert(f[0] && f[1] && f[2], "EXPECTED.tsv: a line with fewer than 3 fields");
		cr_assert_lt(n, max);
		snprintf(v[n].file, sizeof(v[n].file), "%s", f[0]);
		snprintf(v[n].path, sizeof(v[n].path), "%s", strcmp(f[1], "-") ? f[1] : "");
		snprintf(v[n].word, sizeof(v[n].word), "%s", f[2]);
		n++;
	}
	free(text);
	return n;
}

/*
 * The agent's way from a file to the set in force (main.c's reload): watch, load, apply.
 * Returns 0, or the first error with @ret_err filled.
 */
static int load_and_apply(struct loupe_policy_runtime *rt, const char *path,
			  struct loupe_policy_error *ret_err)
{
	struct loupe_policy_watch *w = NULL;
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_iface lo = { .ifindex = 1,
					 .name = "lo" }; /* BPF_PROG_TEST_RUN's skb device */
	int err;

	err = loupe_policy_watch_open(path, &w);
	cr_assert_eq(err, 0, "%s: cannot watch: %s", path, strerror(-err));
	err = loupe_policy_watch_load(w, &set, ret_err);
	if (!err)
		err = loupe_policy_apply(rt, set, &lo, 1, ret_err);
	loupe_policy_set_free(set);
	loupe_policy_watch_free(w);
	return err;
}

/* The verdict of one SYN from the pod to the peer's @dport, on a flow of its own. */
static int syn_verdict(struct fx *fx, bool ipv6, uint16_t sport, uint16_t dport,
		       struct loupe_event *ret_verdict)
{
	struct loupe_pkt_spec spec = {
		.ipv6 = ipv6, .proto = IPPROTO_TCP, .sport = sport, .dport = dport
	};
	struct loupe_pkt pkt;
	int rc, err;

	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	err = fx_run(fx, LOUPE_DIR_POD_EGRESS, pkt.buf, pkt.len, fx_mono_ns(), &rc);
	cr_assert_eq(err, 0, "loupe_datapath_run: %s", strerror(-err));
	memset(ret_verdict, 0, sizeof(*ret_verdict));
	for (size_t i = 0; i < fx->nrec; i++) {
		if (fx->rec[i].hdr.kind != LOUPE_EV_POLICY_VERDICT)
			continue;
		cr_assert_eq(loupe_event_decode(fx->rec[i].raw, fx->rec[i].size, 0, ret_verdict), 0,
			     "a POLICY_VERDICT record that does not decode");
	}
	return rc;
}

/*
 * The good set decides: SMTP to the peer is dropped and reported as corpus-good/deny-smtp
 * of generation @gen, IPv4 and IPv6; HTTP to the same peer passes.
 */
static void check_enforces(struct fx *fx, struct loupe_policy_runtime *rt, uint32_t gen,
			   const char *after)
{
	static uint16_t sport = 20000;
	const struct loupe_policy_bit_info *info;
	struct loupe_event v;
	int rc;

	for (int ipv6 = 0; ipv6 <= 1; ipv6++) {
		rc = syn_verdict(fx, ipv6, sport++, 25, &v);
		cr_expect_eq(rc, TC_ACT_SHOT, "after %s: a denied %s SYN returned %d, not SHOT",
			     after, ipv6 ? "IPv6" : "IPv4", rc);
		cr_expect_eq(v.kind, LOUPE_EV_POLICY_VERDICT, "after %s: no POLICY_VERDICT", after);
		cr_expect_eq(v.verdict.action, LOUPE_EVENT_ACTION_DENY, "after %s", after);
		cr_expect_eq(v.verdict.generation, gen, "after %s: verdict of generation %u", after,
			     v.verdict.generation);
		info = loupe_policy_bit_lookup(rt, v.verdict.generation, v.verdict.bit);
		cr_expect(info && !strcmp(info->policy, "corpus-good") &&
				  !strcmp(info->rule, "deny-smtp"),
			  "after %s: bit %u of generation %u is %s/%s", after, v.verdict.bit,
			  v.verdict.generation, info ? info->policy : "?", info ? info->rule : "?");

		rc = syn_verdict(fx, ipv6, sport++, 80, &v);
		cr_expect_eq(rc, TC_ACT_UNSPEC, "after %s: an allowed %s SYN returned %d", after,
			     ipv6 ? "IPv6" : "IPv4", rc);
		cr_expect_eq(v.kind, 0, "after %s: a verdict without a rule", after);
	}
}

Test(policy_corpus, refused_files_leave_the_set_enforcing)
{
	static struct expected ex[256];
	struct loupe_policy_runtime *rt = NULL;
	struct loupe_policy_error e;
	unsigned int n, listed = 0;
	char *good, *path = NULL;
	struct dirent *de;
	struct fx *fx;
	uint32_t gen;
	DIR *d;
	FILE *f;
	int err;

	n = read_expected(ex, ARRAY_SIZE(ex));
	cr_assert_geq(n, 40, "the corpus has %u files, the issue asks for at least 40", n);
	d = opendir(BAD_DIR);
	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name), i;

		if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		for (i = 0; i < n && strcmp(ex[i].file, de->d_name); i++)
			;
		cr_expect_lt(i, n, "%s is not in EXPECTED.tsv", de->d_name);
		listed++;
	}
	closedir(d);
	cr_expect_eq(listed, n, "EXPECTED.tsv lists files that are not there");

	fx = fx_open(false);
	err = loupe_policy_runtime_open(fx->dp, &rt);
	if (err == -ENOENT) {
		fx_close(fx);
		cr_skip_test("the datapath has no policy maps (%s): built without enforcement",
			     strerror(-err));
	}
	cr_assert_eq(err, 0, "loupe_policy_runtime_open: %s", strerror(-err));

	good = loupe_tmpdir_path(tmpdir, "good.json");
	f = fopen(good, "w");
	cr_assert_not_null(f);
	fputs(good_policy, f);
	cr_assert_eq(fclose(f), 0);
	err = load_and_apply(rt, good, &e);
	cr_assert_eq(err, 0, "the good policy: %s: %s", e.path, e.message);
	gen = loupe_policy_generation(rt);
	cr_assert_gt(gen, 0);
	check_enforces(fx, rt, gen, "the good set");

	for (unsigned int i = 0; i < n; i++) {
		free(path);
		cr_assert(asprintf(&path, "%s/%s", BAD_DIR, ex[i].file) > 0);
		memset(&e, 0, sizeof(e));
		err = load_and_apply(rt, path, &e);
		cr_expect_lt(err, 0, "%s: put in force", ex[i].file);
		cr_expect_str_eq(e.path, ex[i].path, "%s: refused at \"%s\", expected \"%s\" (%s)",
				 ex[i].file, e.path, ex[i].path, e.message);
		cr_expect_not_null(strstr(e.message, ex[i].word), "%s: message \"%s\" lacks \"%s\"",
				   ex[i].file, e.message, ex[i].word);
		cr_expect_eq(loupe_policy_generation(rt), gen, "%s: the generation moved",
			     ex[i].file);
		check_enforces(fx, rt, gen, ex[i].file);
	}
	free(path);
	free(good);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

/* ------------------------------------------------------------------ the pipeline's names */

static struct {
	struct loupe_event ev[16];
	size_t n;
} seen;

static int keep_verdicts(void *ctx, const struct loupe_event *ev)
{
	if (ev->kind == LOUPE_EV_POLICY_VERDICT && seen.n < 16)
		seen.ev[seen.n++] = *ev;
	return 0;
}

/* Parses and applies @json (one document) through the runtime. */
static void apply_json(struct loupe_policy_runtime *rt, const char *json)
{
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error e;
	int err;

	err = loupe_policy_parse(json, strlen(json), "test", &set, &e);
	cr_assert_eq(err, 0, "%s: %s", e.path, e.message);
	err = loupe_policy_apply(rt, &set, NULL, 0, &e);
	cr_assert_eq(err, 0, "apply: %s", e.message);
	loupe_policy_set_clear(&set);
}

/* One SYN to the peer's @dport through the pipeline: the verdict it named, if any. */
static const struct loupe_event *pipeline_syn(struct loupe_datapath *dp, uint16_t sport,
					      uint16_t dport)
{
	struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .sport = sport, .dport = dport };
	struct loupe_pkt pkt;
	int rc;

	seen.n = 0;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	cr_assert_eq(
		loupe_datapath_run(dp, LOUPE_DIR_POD_EGRESS, pkt.buf, pkt.len, fx_mono_ns(), &rc),
		0);
	cr_assert_geq(loupe_datapath_drain(dp), 0);
	cr_assert_leq(seen.n, 1, "%zu verdicts for one SYN", seen.n);
	return seen.n ? &seen.ev[0] : NULL;
}

Test(policy_corpus, pipeline_names_verdicts)
{
	static const char gen1[] =
		"{\"apiVersion\":\"loupe.dev/"
		"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"first\"},"
		"\"spec\":{\"podSelector\":{},\"defaultAction\":\"audit\",\"rules\":["
		"{\"name\":\"deny-smtp\",\"direction\":\"egress\","
		"\"match\":{\"ports\":[{\"port\":25}]},\"action\":\"deny\"}]}}";
	static const char gen2[] = "{\"apiVersion\":\"loupe.dev/"
				   "v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"second\"},"
				   "\"spec\":{\"podSelector\":{},\"rules\":["
				   "{\"name\":\"allow-smtp\",\"direction\":\"egress\","
				   "\"match\":{\"ports\":[{\"port\":25}]},\"action\":\"allow\"}]}}";
	struct loupe_pipeline_opts opts = { .node = "n",
					    .flow_idle_ns = 1000000000ull,
					    .flow_active_ns = 1000000000ull,
					    .sink = keep_verdicts };
	struct loupe_datapath_opts dp_opts = { 0 };
	struct loupe_policy_runtime *rt = NULL;
	struct loupe_pipeline_stats st;
	struct loupe_datapath *dp = NULL;
	struct loupe_pipeline *p = NULL;
	const struct loupe_event *ev;
	int err;

	cr_assert_eq(loupe_pipeline_new(&opts, &p), 0);
	err = loupe_datapath_open(&dp_opts, loupe_pipeline_on_record, p, &dp);
	if (err == -EPERM || err == -EACCES) {
		loupe_pipeline_free(p);
		cr_skip_test("BPF needs root (CAP_BPF, CAP_NET_ADMIN)");
	}
	cr_assert_eq(err, 0, "loupe_datapath_open: %s", strerror(-err));
	cr_assert_eq(loupe_pipeline_attach_datapath(p, dp), 0);
	err = loupe_policy_runtime_open(dp, &rt);
	if (err == -ENOENT) {
		loupe_datapath_free(dp);
		loupe_pipeline_free(p);
		cr_skip_test("the datapath has no policy maps: built without enforcement");
	}
	cr_assert_eq(err, 0, "loupe_policy_runtime_open: %s", strerror(-err));
	loupe_pipeline_set_policy(p, rt);

	apply_json(rt, gen1);
	ev = pipeline_syn(dp, 30001, 25);
	cr_assert_not_null(ev, "no verdict for a denied SYN");
	cr_expect_eq(ev->verdict.action, LOUPE_EVENT_ACTION_DENY);
	cr_expect_eq(ev->verdict.reason, LOUPE_EVENT_REASON_RULE);
	cr_expect_str_eq(ev->verdict.policy, "first");
	cr_expect_str_eq(ev->verdict.rule, "deny-smtp");
	cr_expect_eq(ev->verdict.generation, loupe_policy_generation(rt));
	cr_expect_str_eq(ev->node, "n");
	cr_expect_gt(ev->seq, 0);

	ev = pipeline_syn(dp, 30002, 80);
	cr_assert_not_null(ev, "no verdict for the default");
	cr_expect_eq(ev->verdict.action, LOUPE_EVENT_ACTION_AUDIT);
	cr_expect_eq(ev->verdict.reason, LOUPE_EVENT_REASON_DEFAULT_ACTION);
	cr_expect_str_eq(ev->verdict.policy, "first");
	cr_expect_str_eq(ev->verdict.rule, "");

	/* a new generation: its own names */
	apply_json(rt, gen2);
	ev = pipeline_syn(dp, 30003, 25);
	cr_assert_not_null(ev);
	cr_expect_eq(ev->verdict.action, LOUPE_EVENT_ACTION_ALLOW);
	cr_expect_str_eq(ev->verdict.policy, "second");
	cr_expect_str_eq(ev->verdict.rule, "allow-smtp");
	loupe_pipeline_get_stats(p, &st);
	cr_expect_eq(st.verdicts_unnamed, 0);

	/* without the runtime: the verdict still comes, unnamed and counted */
	loupe_pipeline_set_policy(p, NULL);
	ev = pipeline_syn(dp, 30004, 25);
	cr_assert_not_null(ev);
	cr_expect_eq(ev->verdict.action, LOUPE_EVENT_ACTION_ALLOW);
	cr_expect_str_eq(ev->verdict.policy, "");
	loupe_pipeline_get_stats(p, &st);
	cr_expect_eq(st.verdicts_unnamed, 1);

	loupe_policy_runtime_free(rt);
	loupe_datapath_free(dp);
	loupe_pipeline_free(p);
}
