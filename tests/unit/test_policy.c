// SPDX-License-Identifier: Apache-2.0
/*
 * The policy parser and validator (policy.c): the good examples to their exact structs,
 * every file of the bad corpus (tests/data/bad-policies, EXPECTED.tsv) refused with its JSON
 * path and a word, normalisation, limits, names and prefixes, strict JSON, directories and
 * the ConfigMap layout, the normalised JSON round trip, rewrites and rate limits (every
 * refusal, defaults, limits), and loupectl policy check's exit codes. Not for compiling or
 * enforcing policies.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "policy.h"
#include "proc.h"

extern char **environ;

#define GOOD_DIR      LOUPE_TEST_DATA "/policies"
#define BAD_DIR	      LOUPE_TEST_DATA "/bad-policies"
#define LOUPECTL      LOUPE_BIN_DIR "/loupectl"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ helpers */

static char tmpdir[LOUPE_TMPDIR_MAX];

static void tmp_setup(void)
{
	loupe_tmpdir_create(tmpdir, "/tmp/loupe-test-policy.XXXXXX");
}

static void tmp_teardown(void)
{
	loupe_tmpdir_remove(tmpdir);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* In the temp directory: a file with @text, a directory, a symbolic link. */
static void tmp_write(const char *name, const char *text)
{
	char *p = loupe_tmpdir_path(tmpdir, "%s", name);

	write_file(p, text);
	free(p);
}

static void tmp_mkdir(const char *name)
{
	char *p = loupe_tmpdir_path(tmpdir, "%s", name);

	cr_assert_eq(mkdir(p, 0755), 0, "mkdir %s: %s", p, strerror(errno));
	free(p);
}

static void tmp_symlink(const char *target, const char *name)
{
	char *p = loupe_tmpdir_path(tmpdir, "%s", name);

	cr_assert_eq(symlink(target, p), 0, "symlink %s: %s", p, strerror(errno));
	free(p);
}

/* Parses @json into a fresh *@set; returns what loupe_policy_parse() does. */
static int parse_str(const char *json, struct loupe_policy_set *set, struct loupe_policy_error *e)
{
	memset(set, 0, sizeof(*set));
	return loupe_policy_parse(json, strlen(json), "test.json", set, e);
}

static struct loupe_policy_set *load_ok(const char *path)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error e;
	char line[1280];
	int r;

	r = loupe_policy_load_path(path, &set, &e);
	loupe_policy_error_format(&e, line, sizeof(line));
	cr_assert_eq(r, 0, "%s refused: %s", path, line);
	cr_assert_not_null(set);
	return set;
}

/* A valid policy around one rule's match (JSON text of the match object). */
static char *policy_with_match(const char *match)
{
	char *s;

	cr_assert(asprintf(&s,
			   "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
			   "\"metadata\":{\"name\":\"p\"},\"spec\":{\"podSelector\":{},"
			   "\"rules\":[{\"name\":\"r\",\"direction\":\"egress\",\"match\":%s,"
			   "\"action\":\"deny\"}]}}",
			   match) > 0);
	return s;
}

static char *policy_with_selector(const char *sel)
{
	char *s;

	cr_assert(asprintf(&s,
			   "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
			   "\"metadata\":{\"name\":\"p\"},\"spec\":{\"podSelector\":%s,"
			   "\"defaultAction\":\"deny\"}}",
			   sel) > 0);
	return s;
}

static void expect_cidr(const struct loupe_policy_cidr *c, const char *text)
{
	char addr[INET6_ADDRSTRLEN], got[INET6_ADDRSTRLEN + 8];

	inet_ntop(c->family, c->addr, addr, sizeof(addr));
	snprintf(got, sizeof(got), "%s/%u", addr, c->prefix_len);
	cr_expect_str_eq(got, text);
}

static void expect_name(const struct loupe_policy_name *n, const char *name, bool wildcard,
			uint16_t port)
{
	cr_expect_str_eq(n->name, name);
	cr_expect_eq(n->wildcard, wildcard, "%s: wildcard %d", name, n->wildcard);
	cr_expect_eq(n->port, port, "%s: port %u", name, n->port);
}

static void expect_port(const struct loupe_policy_port *p, enum loupe_policy_protocol proto,
			uint16_t port, uint16_t end)
{
	cr_expect_eq(p->protocol, proto);
	cr_expect_eq(p->port, port);
	cr_expect_eq(p->end_port, end);
}

#define RUN(...) loupe_proc_run(tmpdir, (char *const[]){ __VA_ARGS__, NULL })

/* ------------------------------------------------------------------ good examples */

Test(policy, format_example)
{
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/format-example.json");
	const struct loupe_policy *p;
	const struct loupe_policy_rule *r;

	cr_assert_eq(set->n_policies, 1);
	cr_expect_eq(set->n_rules, 3);
	cr_expect_eq(set->n_warnings, 0);
	p = &set->policies[0];
	cr_expect_str_eq(p->name, "format-example");
	cr_expect_str_eq(p->source, GOOD_DIR "/format-example.json");
	cr_expect_str_eq(p->doc_path, "");
	cr_assert_eq(p->n_labels, 1);
	cr_expect_str_eq(p->labels[0].key, "team");
	cr_expect_str_eq(p->labels[0].value, "ml");
	cr_expect_eq(p->priority, 10);
	cr_assert_eq(p->selector.n_interfaces, 1);
	cr_expect_str_eq(p->selector.interfaces[0], "veth*");
	cr_assert_eq(p->selector.n_cidrs, 2);
	cr_expect_eq(p->selector.cidrs[0].family, AF_INET);
	expect_cidr(&p->selector.cidrs[0], "198.18.100.0/28");
	cr_expect_eq(p->selector.cidrs[1].family, AF_INET6);
	expect_cidr(&p->selector.cidrs[1], "fd00:198:18:100::/124");
	cr_expect_eq(p->selector.n_labels, 0);
	cr_expect_eq(p->default_action, LOUPE_POLICY_ACTION_ALLOW);
	cr_assert_eq(p->n_rules, 3);

	r = &p->rules[0];
	cr_expect_str_eq(r->name, "llm-apis");
	cr_expect_eq(r->direction, LOUPE_POLICY_EGRESS);
	cr_expect_eq(r->action, LOUPE_POLICY_ACTION_ALLOW);
	cr_assert_eq(r->match.n_cidrs, 2);
	expect_cidr(&r->match.cidrs[0], "0.0.0.0/0");
	expect_cidr(&r->match.cidrs[1], "::/0");
	cr_assert_eq(r->match.n_ports, 2);
	expect_port(&r->match.ports[0], LOUPE_POLICY_TCP, 443, 443);
	expect_port(&r->match.ports[1], LOUPE_POLICY_TCP, 8000, 8099);
	cr_expect_eq(r->match.l7, LOUPE_POLICY_L7_TLS);
	cr_assert_eq(r->match.tls_sni.n, 2);
	expect_name(&r->match.tls_sni.v[0], "api.openai.com", false, 0);
	expect_name(&r->match.tls_sni.v[1], "*.anthropic.com", true, 0);
	cr_expect_eq(r->match.http.methods, 0);
	cr_expect_eq(r->match.dns_names.n, 0);

	r = &p->rules[1];
	cr_expect_str_eq(r->name, "plain-http-llm");
	cr_expect_eq(r->action, LOUPE_POLICY_ACTION_AUDIT);
	cr_expect_eq(r->match.n_cidrs, 0);
	cr_expect_eq(r->match.n_ports, 0);
	cr_expect_eq(r->match.l7, LOUPE_POLICY_L7_HTTP);
	cr_expect_eq(r->match.http.methods, 1u << LOUPE_POLICY_HTTP_POST);
	cr_assert_eq(r->match.http.n_paths, 1);
	cr_expect_str_eq(r->match.http.paths[0], "/v1/");
	cr_assert_eq(r->match.http.hosts.n, 1);
	expect_name(&r->match.http.hosts.v[0], "api.openai.com", false, 0);

	r = &p->rules[2];
	cr_expect_str_eq(r->name, "dns");
	cr_expect_eq(r->match.l7, LOUPE_POLICY_L7_DNS);
	cr_assert_eq(r->match.dns_names.n, 1);
	expect_name(&r->match.dns_names.v[0], "*.anthropic.com", true, 0);
	loupe_policy_set_free(set);
}

Test(policy, ai_egress_example)
{
	static const char *const names[] = { "api.openai.com", "*.anthropic.com",
					     "generativelanguage.googleapis.com" };
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/ai-egress.json");
	const struct loupe_policy *allow, *deny;
	unsigned int i;

	cr_assert_eq(set->n_policies, 2);
	cr_expect_eq(set->n_rules, 6);
	allow = &set->policies[0];
	deny = &set->policies[1];
	cr_expect_str_eq(allow->name, "ai-egress-allowed");
	cr_expect_str_eq(allow->doc_path, "[0]");
	cr_expect_str_eq(deny->name, "ai-egress-denied");
	cr_expect_str_eq(deny->doc_path, "[1]");
	cr_expect_eq(allow->priority, 10);
	cr_expect_eq(deny->priority, 20);
	cr_expect_eq(allow->default_action, LOUPE_POLICY_ACTION_NONE);
	cr_expect_eq(allow->selector.n_interfaces, 0);
	cr_expect_eq(allow->selector.n_cidrs, 2);
	expect_port(&allow->rules[0].match.ports[0], LOUPE_POLICY_TCP, 443, 443);
	cr_expect_eq(allow->rules[0].action, LOUPE_POLICY_ACTION_ALLOW);
	cr_expect_eq(allow->rules[1].action, LOUPE_POLICY_ACTION_AUDIT);
	cr_expect_eq(allow->rules[2].action, LOUPE_POLICY_ACTION_ALLOW);
	cr_expect_eq(deny->default_action, LOUPE_POLICY_ACTION_NONE);
	cr_expect_eq(deny->selector.n_interfaces + deny->selector.n_cidrs + deny->selector.n_labels,
		     0, "podSelector {} selects every pod");
	cr_assert_eq(deny->n_rules, 3);
	cr_expect_eq(deny->rules[0].match.l7, LOUPE_POLICY_L7_TLS);
	cr_expect_eq(deny->rules[1].match.l7, LOUPE_POLICY_L7_HTTP);
	cr_expect_eq(deny->rules[2].match.l7, LOUPE_POLICY_L7_DNS);
	for (i = 0; i < 3; i++) {
		cr_expect_eq(deny->rules[i].action, LOUPE_POLICY_ACTION_DENY);
		cr_assert_eq(deny->rules[0].match.tls_sni.n, 3);
		cr_expect_str_eq(deny->rules[0].match.tls_sni.v[i].name, names[i]);
		cr_expect_str_eq(deny->rules[1].match.http.hosts.v[i].name, names[i]);
		cr_expect_str_eq(deny->rules[2].match.dns_names.v[i].name, names[i]);
		cr_expect_str_eq(allow->rules[0].match.tls_sni.v[i].name, names[i]);
	}
	loupe_policy_set_free(set);
}

Test(policy, allowlist_policylist)
{
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/egress-allowlist.json");
	const struct loupe_policy *p;

	cr_assert_eq(set->n_policies, 1);
	p = &set->policies[0];
	cr_expect_str_eq(p->name, "payments-egress");
	cr_expect_str_eq(p->doc_path, "items[0]");
	cr_expect_eq(p->default_action, LOUPE_POLICY_ACTION_DENY);
	cr_assert_eq(p->n_rules, 5);
	expect_cidr(&p->rules[0].match.cidrs[0], "10.96.0.10/32");
	expect_port(&p->rules[0].match.ports[0], LOUPE_POLICY_UDP, 53, 53);
	expect_port(&p->rules[0].match.ports[1], LOUPE_POLICY_TCP, 53, 53);
	expect_port(&p->rules[1].match.ports[0], LOUPE_POLICY_TCP, 5432, 5432);
	expect_port(&p->rules[3].match.ports[0], LOUPE_POLICY_ICMP, 0, 0);
	cr_expect_eq(p->rules[4].direction, LOUPE_POLICY_INGRESS);
	cr_expect_eq(p->rules[4].match.n_cidrs + p->rules[4].match.n_ports, 0);
	cr_expect_eq(p->rules[4].match.l7, LOUPE_POLICY_L7_NONE);
	loupe_policy_set_free(set);
}

Test(policy, normalisation)
{
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/normalise.json");
	const struct loupe_policy *p;
	const struct loupe_policy_rule *r;

	cr_assert_eq(set->n_policies, 1);
	p = &set->policies[0];
	cr_expect_str_eq(p->name, "normalise");
	cr_expect_eq(p->priority, LOUPE_POLICY_PRIORITY_DEFAULT);
	cr_expect_eq(p->default_action, LOUPE_POLICY_ACTION_NONE);
	/* labels sorted by key; Kubernetes' metadata fields ignored */
	cr_assert_eq(p->n_labels, 3);
	cr_expect_str_eq(p->labels[0].key, "a_first");
	cr_expect_str_eq(p->labels[0].value, "");
	cr_expect_str_eq(p->labels[1].key, "app.kubernetes.io/name");
	cr_expect_str_eq(p->labels[2].key, "z-last");
	/* a bare address is a /32; IPv6 in its canonical form */
	cr_assert_eq(p->selector.n_cidrs, 2);
	expect_cidr(&p->selector.cidrs[0], "10.1.2.3/32");
	expect_cidr(&p->selector.cidrs[1], "2001:db8::/32");
	cr_assert_eq(p->selector.n_labels, 1);
	cr_expect_str_eq(p->selector.labels[0].key, "app");
	cr_expect_str_eq(p->selector.labels[0].value, "web");

	r = &p->rules[0];
	cr_assert_eq(r->match.n_ports, 3);
	expect_port(&r->match.ports[0], LOUPE_POLICY_TCP, 80, 80); /* TCP by default */
	expect_port(&r->match.ports[1], LOUPE_POLICY_UDP, 53, 53);
	expect_port(&r->match.ports[2], LOUPE_POLICY_ICMP, 0, 0);

	r = &p->rules[1];
	cr_expect_eq(r->direction, LOUPE_POLICY_INGRESS);
	cr_expect_eq(r->match.http.methods, 1u << LOUPE_POLICY_HTTP_GET |
						    1u << LOUPE_POLICY_HTTP_POST |
						    1u << LOUPE_POLICY_HTTP_PATCH);
	cr_assert_eq(r->match.http.hosts.n, 3);
	expect_name(&r->match.http.hosts.v[0], "api.example.com", false, 0);
	expect_name(&r->match.http.hosts.v[1], "*.internal.example.com", true, 8080);
	expect_name(&r->match.http.hosts.v[2], "host_name.example", false, 0);
	expect_name(&p->rules[2].match.tls_sni.v[0], "www.example.org", false, 0);

	/* the selector's labels: a warning, with its path, line and column */
	cr_assert_eq(set->n_warnings, 1);
	cr_expect_str_eq(set->warnings[0].path, "items[0].spec.podSelector.labels");
	cr_expect_not_null(strstr(set->warnings[0].message, "selects no pod"));
	cr_expect_eq(set->warnings[0].line, 19);
	loupe_policy_set_free(set);
}

/* Every good file: to JSON, back, and to JSON again gives the same text. */
Test(policy, json_round_trip)
{
	static const char *const files[] = {
		"format-example.json",	 "ai-egress.json",     "deny-cidr-port.json",
		"egress-allowlist.json", "audit-dns.json",     "normalise.json",
		"rewrite-map.json",	 "mask-api-keys.json", "rate-limit.json",
	};
	struct loupe_policy_set again;
	struct loupe_policy_error e;
	unsigned int i;
	char path[512];
	char *a, *b;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		struct loupe_policy_set *set;

		snprintf(path, sizeof(path), "%s/%s", GOOD_DIR, files[i]);
		set = load_ok(path);
		a = loupe_policy_set_to_json(set);
		cr_assert_not_null(a);
		memset(&again, 0, sizeof(again));
		cr_assert_eq(loupe_policy_parse(a, strlen(a), path, &again, &e), 0,
			     "%s: normalised JSON refused: %s: %s", files[i], e.path, e.message);
		b = loupe_policy_set_to_json(&again);
		cr_assert_not_null(b);
		cr_expect_str_eq(a, b, "%s: not stable", files[i]);
		cr_expect_eq(again.n_policies, set->n_policies);
		cr_expect_eq(again.n_rules, set->n_rules);
		cr_expect_eq(again.n_rewrites, set->n_rewrites);
		free(a);
		free(b);
		loupe_policy_set_clear(&again);
		loupe_policy_set_free(set);
	}
}

/* The whole directory is one valid set: names are unique across the examples. */
Test(policy, good_directory)
{
	struct loupe_policy_set *set = load_ok(GOOD_DIR);

	cr_expect_eq(set->n_policies, 10);
	cr_expect_eq(set->n_rules, 21);
	cr_expect_eq(set->n_rewrites, 6);
	/* name order of the files */
	cr_expect_str_eq(set->policies[0].name, "ai-egress-allowed");
	cr_expect_str_eq(set->policies[2].name, "audit-dns");
	cr_expect_str_eq(set->policies[6].name, "mask-api-keys");
	cr_expect_str_eq(set->policies[7].name, "normalise");
	cr_expect_str_eq(set->policies[9].name, "rewrite-map");
	cr_expect_str_eq(set->policies[2].source, GOOD_DIR "/audit-dns.json");
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ the bad corpus */

struct expected {
	char file[128];
	char path[256];
	char word[128];
};

static unsigned int read_expected(struct expected *v, unsigned int max)
{
	char *text = loupe_proc_read_all(BAD_DIR "/EXPECTED.tsv", NULL), *line, *save = NULL;
	unsigned int n = 0;

	cr_assert_not_null(text, "cannot read EXPECTED.tsv");
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[4] = { 0 }, *s = line;
		int k;

		if (line[0] == '#' || !line[0])
			continue;
		for (k = 0; k < 4 && s; k++) {
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

Test(policy, bad_corpus)
{
	static struct expected ex[256];
	struct loupe_policy_set *set, *base;
	struct loupe_policy_error e;
	unsigned int n, i, listed = 0;
	char *path = NULL, *before, *after, *text;
	struct dirent *de;
	DIR *d;
	int r;

	n = read_expected(ex, ARRAY_SIZE(ex));
	cr_expect_geq(n, 45, "the corpus has %u files", n);

	/* every *.json of the directory is listed */
	d = opendir(BAD_DIR);
	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		for (i = 0; i < n; i++)
			if (strcmp(ex[i].file, de->d_name) == 0)
				break;
		cr_expect_lt(i, n, "%s is not in EXPECTED.tsv", de->d_name);
		listed++;
	}
	closedir(d);
	cr_expect_eq(listed, n, "EXPECTED.tsv lists files that are not there");

	/* a set in force, into which every bad file is parsed: it must not change */
	base = load_ok(GOOD_DIR "/ai-egress.json");
	before = loupe_policy_set_to_json(base);

	for (i = 0; i < n; i++) {
		free(path);
		cr_assert(asprintf(&path, "%s/%s", BAD_DIR, ex[i].file) > 0);
		set = NULL;
		r = loupe_policy_load_path(path, &set, &e);
		cr_expect_lt(r, 0, "%s: accepted", ex[i].file);
		if (r >= 0) {
			loupe_policy_set_free(set);
			continue;
		}
		cr_expect_null(set, "%s: a set came back with the error", ex[i].file);
		cr_expect_str_eq(e.source, path);
		cr_expect_str_eq(e.path, ex[i].path, "%s: path \"%s\", expected \"%s\" (%s)",
				 ex[i].file, e.path, ex[i].path, e.message);
		cr_expect_not_null(strstr(e.message, ex[i].word), "%s: message \"%s\" lacks \"%s\"",
				   ex[i].file, e.message, ex[i].word);
		cr_expect_null(strchr(e.message, '\n'), "%s: a newline in the message", ex[i].file);
		/* every error but the empty file says where it is */
		if (strcmp(ex[i].file, "syntax-empty.json") != 0)
			cr_expect_gt(e.line, 0, "%s: no line", ex[i].file);

		text = loupe_proc_read_all(path, NULL);
		cr_assert_not_null(text);
		r = loupe_policy_parse(text, strlen(text), ex[i].file, base, &e);
		cr_expect_lt(r, 0, "%s: accepted into a set", ex[i].file);
		free(text);
		cr_expect_eq(base->n_policies, 2, "%s: the set in force changed", ex[i].file);
		cr_expect_eq(base->n_rules, 6, "%s: the set in force changed", ex[i].file);
		cr_expect_eq(base->n_warnings, 0, "%s: the set in force changed", ex[i].file);
	}
	after = loupe_policy_set_to_json(base);
	cr_expect_str_eq(after, before, "the set in force changed");
	free(path);
	free(before);
	free(after);
	loupe_policy_set_free(base);
}

/* ------------------------------------------------------------------ single checks */

static void expect_refused(const char *json, const char *path, const char *word)
{
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	int r = parse_str(json, &set, &e);

	cr_expect_eq(r, -EINVAL, "accepted: %s", json);
	if (r == 0) {
		loupe_policy_set_clear(&set);
		return;
	}
	cr_expect_eq(set.n_policies, 0);
	cr_expect_str_eq(e.path, path, "path \"%s\" (%s), expected \"%s\"", e.path, e.message,
			 path);
	cr_expect_not_null(strstr(e.message, word), "\"%s\" lacks \"%s\"", e.message, word);
}

static void expect_match_refused(const char *match, const char *path, const char *word)
{
	char *json = policy_with_match(match);
	char full[256];

	snprintf(full, sizeof(full), "spec.rules[0].match%s", path);
	expect_refused(json, full, word);
	free(json);
}

/* Parses a policy around @match; the rule's match in *@ret (the set is cleared by caller). */
static const struct loupe_policy_match *match_ok(const char *match, struct loupe_policy_set *set)
{
	struct loupe_policy_error e;
	char *json = policy_with_match(match);
	int r = parse_str(json, set, &e);

	cr_assert_eq(r, 0, "%s refused: %s: %s", match, e.path, e.message);
	free(json);
	return &set->policies[0].rules[0].match;
}

Test(policy, names)
{
	static const struct {
		const char *in, *out;
		bool wildcard;
	} ok[] = {
		{ "api.openai.com", "api.openai.com", false },
		{ "API.OpenAI.com.", "api.openai.com", false },
		{ "*.anthropic.com", "*.anthropic.com", true },
		{ "*.COM.", "*.com", true },
		{ "_dmarc.example.com", "_dmarc.example.com", false },
		{ "xn--bcher-kva.example", "xn--bcher-kva.example", false },
		{ "localhost", "localhost", false },
		{ "1.2.3.4", "1.2.3.4", false },
	};
	static const struct {
		const char *in, *word;
	} bad[] = {
		{ "*", "suffix" },
		{ "*.", "suffix" },
		{ "**.a.com", "first label" },
		{ "a.*.com", "first label" },
		{ "a*.com", "first label" },
		{ "*a.com", "first label" },
		{ ".a.com", "empty label" },
		{ "a..com", "empty label" },
		{ "a.com..", "empty label" },
		{ "a.com:443", "port" },
		{ "a/b.com", "not allowed" },
		{ "a b.com", "not allowed" },
		{ "bücher.de", "xn--" },
		{ "", "empty" },
	};
	struct loupe_policy_set set;
	char match[1024], long_label[70], name[300];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		const struct loupe_policy_match *m;

		snprintf(match, sizeof(match), "{\"dns\":{\"names\":[\"%s\"]}}", ok[i].in);
		m = match_ok(match, &set);
		expect_name(&m->dns_names.v[0], ok[i].out, ok[i].wildcard, 0);
		loupe_policy_set_clear(&set);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(match, sizeof(match), "{\"tls\":{\"sni\":[\"%s\"]}}", bad[i].in);
		expect_match_refused(match, ".tls.sni[0]", bad[i].word);
	}

	/* labels up to 63, names up to 253 (a trailing dot not counted) */
	memset(long_label, 'a', 63);
	long_label[63] = '\0';
	snprintf(match, sizeof(match), "{\"dns\":{\"names\":[\"%s.com\"]}}", long_label);
	match_ok(match, &set);
	loupe_policy_set_clear(&set);
	snprintf(match, sizeof(match), "{\"dns\":{\"names\":[\"a%s.com\"]}}", long_label);
	expect_match_refused(match, ".dns.names[0]", "63");
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", long_label, long_label, long_label,
		 long_label); /* 63 * 3 + 61 + 3 = 253 */
	cr_assert_eq(strlen(name), 253);
	snprintf(match, sizeof(match), "{\"dns\":{\"names\":[\"%s.\"]}}", name);
	match_ok(match, &set);
	loupe_policy_set_clear(&set);
	snprintf(match, sizeof(match), "{\"dns\":{\"names\":[\"a%s\"]}}", name);
	expect_match_refused(match, ".dns.names[0]", "253");
}

Test(policy, http_hosts_ports)
{
	struct loupe_policy_set set;
	const struct loupe_policy_match *m;

	m = match_ok("{\"http\":{\"hosts\":[\"a.example:1\",\"b.example:65535\","
		     "\"*.c.example:8080\",\"D.example.:80\"]}}",
		     &set);
	expect_name(&m->http.hosts.v[0], "a.example", false, 1);
	expect_name(&m->http.hosts.v[1], "b.example", false, 65535);
	expect_name(&m->http.hosts.v[2], "*.c.example", true, 8080);
	expect_name(&m->http.hosts.v[3], "d.example", false, 80);
	loupe_policy_set_clear(&set);
	expect_match_refused("{\"http\":{\"hosts\":[\"a.example:0\"]}}", ".http.hosts[0]", "port");
	expect_match_refused("{\"http\":{\"hosts\":[\"a.example:080\"]}}", ".http.hosts[0]",
			     "port");
	expect_match_refused("{\"http\":{\"hosts\":[\"a.example:65536\"]}}", ".http.hosts[0]",
			     "port");
	expect_match_refused("{\"http\":{\"hosts\":[\":80\"]}}", ".http.hosts[0]", "no name");
	expect_match_refused("{\"http\":{\"hosts\":[\"a.example:\"]}}", ".http.hosts[0]",
			     "empty port");
	expect_match_refused("{\"http\":{\"hosts\":[\"[::1]:80\"]}}", ".http.hosts[0]",
			     "not allowed");
}

Test(policy, cidrs)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{ "10.0.0.0/8", "10.0.0.0/8" },
		{ "0.0.0.0/0", "0.0.0.0/0" },
		{ "::/0", "::/0" },
		{ "10.1.2.3", "10.1.2.3/32" },
		{ "2001:DB8::1", "2001:db8::1/128" },
		{ "::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104" },
		{ "192.168.1.128/25", "192.168.1.128/25" },
	};
	static const char *const bad[] = {
		"10.0.0.0/33",	  "10.0.0.0/",	     "10.0.0.0/-1", "10.0.0.0/8/8", "1.2.3/24",
		"2001:db8::/129", "fe80::1%eth0/64", "010.0.0.0/8", "10.0.0.0/ 8",  "",
		"10.0.0.1/8",	  "2001:db8::1/64",  "0.0.0.1/0",
	};
	struct loupe_policy_set set;
	char match[256];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		const struct loupe_policy_match *m;

		snprintf(match, sizeof(match), "{\"cidrs\":[\"%s\"]}", ok[i].in);
		m = match_ok(match, &set);
		expect_cidr(&m->cidrs[0], ok[i].out);
		loupe_policy_set_clear(&set);
	}
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(match, sizeof(match), "{\"cidrs\":[\"%s\"]}", bad[i]);
		expect_match_refused(match, ".cidrs[0]", "prefix");
	}
}

Test(policy, ports)
{
	struct loupe_policy_set set;
	const struct loupe_policy_match *m;

	m = match_ok(
		"{\"ports\":[{\"port\":1},{\"port\":65535,\"endPort\":65535},"
		"{\"port\":1000,\"endPort\":2000,\"protocol\":\"UDP\"},{\"protocol\":\"ICMP\"}]}",
		&set);
	expect_port(&m->ports[0], LOUPE_POLICY_TCP, 1, 1);
	expect_port(&m->ports[1], LOUPE_POLICY_TCP, 65535, 65535);
	expect_port(&m->ports[2], LOUPE_POLICY_UDP, 1000, 2000);
	expect_port(&m->ports[3], LOUPE_POLICY_ICMP, 0, 0);
	loupe_policy_set_clear(&set);

	expect_match_refused("{\"ports\":[{\"port\":80,\"endPort\":79}]}", ".ports[0].endPort",
			     "79 is below port 80");
	expect_match_refused("{\"ports\":[{\"protocol\":\"ICMP\",\"endPort\":3}]}",
			     ".ports[0].endPort", "ICMP");
	expect_match_refused("{\"ports\":[{\"endPort\":3}]}", ".ports[0].port", "missing");
	expect_match_refused("{\"ports\":[{\"port\":80.0}]}", ".ports[0].port", "whole");
	expect_match_refused("{\"ports\":[{\"port\":true}]}", ".ports[0].port", "not a boolean");
	expect_match_refused("{\"ports\":[{\"port\":null}]}", ".ports[0].port", "not null");
	expect_match_refused("{\"ports\":[{\"port\":-1}]}", ".ports[0].port", "range");
	expect_match_refused("{\"ports\":[80]}", ".ports[0]", "object");
	/* L7 and protocols */
	match_ok("{\"ports\":[{\"port\":53,\"protocol\":\"UDP\"},{\"port\":53}],\"dns\":{}}", &set);
	loupe_policy_set_clear(&set);
	match_ok("{\"ports\":[{\"port\":1,\"endPort\":1024,\"protocol\":\"UDP\"}],\"dns\":{}}",
		 &set);
	loupe_policy_set_clear(&set);
	expect_match_refused("{\"ports\":[{\"port\":53,\"protocol\":\"ICMP\"}],\"dns\":{}}",
			     ".ports[0].port", "ICMP");
	expect_match_refused("{\"ports\":[{\"protocol\":\"ICMP\"}],\"dns\":{}}",
			     ".ports[0].protocol", "ICMP");
	expect_match_refused("{\"ports\":[{\"port\":443},{\"port\":443,\"protocol\":\"UDP\"}],"
			     "\"tls\":{}}",
			     ".ports[1].protocol", "TCP");
	expect_match_refused("{\"http\":{},\"dns\":{}}", "", "not http and dns");
	expect_match_refused("{\"tls\":{},\"dns\":{}}", "", "not tls and dns");
}

Test(policy, http_fields)
{
	struct loupe_policy_set set;
	const struct loupe_policy_match *m;

	m = match_ok("{\"http\":{}}", &set);
	cr_expect_eq(m->l7, LOUPE_POLICY_L7_HTTP);
	cr_expect_eq(m->http.methods, 0);
	cr_expect_eq(m->http.n_paths + m->http.hosts.n, 0);
	loupe_policy_set_clear(&set);

	m = match_ok(
		"{\"http\":{\"methods\":[\"get\",\"HEAD\",\"Post\",\"put\",\"DELETE\","
		"\"connect\",\"OPTIONS\",\"trace\",\"patch\"],\"paths\":[\"/\",\"/a?b=%20\"]}}",
		&set);
	cr_expect_eq(m->http.methods, (1u << LOUPE_POLICY_HTTP_METHODS_N) - 1);
	cr_expect_str_eq(m->http.paths[1], "/a?b=%20");
	loupe_policy_set_clear(&set);
	expect_match_refused("{\"http\":{\"methods\":[\"PROPFIND\"]}}", ".http.methods[0]",
			     "standard");
	expect_match_refused("{\"http\":{\"paths\":[\"\"]}}", ".http.paths[0]", "'/'");
	expect_match_refused("{\"http\":{\"paths\":[\"/caf\\u00e9\"]}}", ".http.paths[0]",
			     "percent-encode");
	expect_match_refused("{\"http\":{\"paths\":[]}}", ".http.paths", "empty");
}

Test(policy, strict_json)
{
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	char *json;

	expect_refused("{\"apiVersion\":\"loupe.dev/v1\",\"apiVersion\":\"loupe.dev/v1\"}",
		       "apiVersion", "twice");
	expect_refused("[{\"a\":{\"b\":1,\"c\":2,\"b\":3}}]", "[0].a.b", "twice");
	expect_refused("{\"a\":-01}", "a", "leading zeros");
	expect_refused("{\"a\":1.}", "a", "decimal point");
	expect_refused("{\"a\":-Infinity}", "a", "Infinity");
	expect_refused("{'a':1}", "", "double quotes");
	expect_refused("{\"x\":\"a\\u0000b\"}", "x", "NUL");
	expect_refused("{\"a\":1}\n\n  }", "", "JSON");
	expect_refused("[", "", "ends");
	expect_refused("", "", "empty");
	expect_refused("{\"metadata\":{\"labels\":{\"a.b/c\":\"x\",\"a.b/c\":\"y\"}}}",
		       "metadata.labels[\"a.b/c\"]", "twice");
	/* escaped and literal forms of one key are one key */
	expect_refused("{\"spec\":1,\"sp\\u0065c\":2}", "spec", "twice");

	/* a byte order mark is skipped; white space around the value is fine */
	json = policy_with_match("{}");
	{
		char *bom;

		cr_assert(asprintf(&bom, "\xef\xbb\xbf\n %s \n\n", json) > 0);
		memset(&set, 0, sizeof(set));
		cr_expect_eq(loupe_policy_parse(bom, strlen(bom), "bom.json", &set, &e), 0, "%s",
			     e.message);
		loupe_policy_set_clear(&set);
		free(bom);
	}
	/* a NUL byte in the text ends nothing: it is an error */
	memset(&set, 0, sizeof(set));
	{
		size_t len = strlen(json);
		char *withnul = malloc(len + 2);

		memcpy(withnul, json, len);
		withnul[len] = '\0';
		withnul[len + 1] = ' ';
		cr_expect_eq(loupe_policy_parse(withnul, len + 2, "nul.json", &set, &e), -EINVAL);
		free(withnul);
	}
	free(json);
}

Test(policy, positions)
{
	static const char text[] =
		"{\n"
		"  \"apiVersion\": \"loupe.dev/v1\",\n"
		"  \"kind\": \"Policy\",\n"
		"  \"metadata\": { \"name\": \"p\" },\n"
		"  \"spec\": {\n"
		"    \"podSelector\": {},\n"
		"    \"rules\": [ { \"name\": \"r\", \"direction\": \"egress\",\n"
		"      \"match\": {}, \"action\": \"drop\" } ]\n"
		"  }\n"
		"}\n";
	struct loupe_policy_set set = { 0 };
	struct loupe_policy_error e;
	char line[1280];

	cr_assert_eq(loupe_policy_parse(text, strlen(text), "pos.json", &set, &e), -EINVAL);
	cr_expect_str_eq(e.path, "spec.rules[0].action");
	cr_expect_eq(e.line, 8);
	cr_expect_eq(e.column, 20, "column %u", e.column); /* the key "action" */
	loupe_policy_error_format(&e, line, sizeof(line));
	cr_expect_str_eq(line, "pos.json: spec.rules[0].action: \"drop\" is not one of allow, "
			       "deny, audit (line 8, column 20)");

	/* a syntax error: json-c's offset as line and column, no path */
	cr_assert_eq(loupe_policy_parse("{\n  \"a\": [1,]\n}", 15, "syn.json", &set, &e), -EINVAL);
	cr_expect_str_eq(e.path, "");
	cr_expect_eq(e.line, 2);
	cr_expect_eq(e.column, 11, "column %u", e.column); /* the ] */
	loupe_policy_error_format(&e, line, sizeof(line));
	cr_expect_str_eq(line,
			 "syn.json: not valid JSON: unexpected character (line 2, column 11)");

	/* columns count characters, not bytes */
	cr_assert_eq(loupe_policy_parse("{\"kind\":\"Policy\",\"é\":1,\"apiVersion\":\"x\"}", 41,
					"m.json", &set, &e),
		     -EINVAL);
	cr_expect_str_eq(e.path, "apiVersion");
	cr_expect_eq(e.column, 24, "column %u", e.column); /* é is one */
	cr_assert_eq(set.n_policies, 0);
}

Test(policy, unknown_and_ignored_fields)
{
	char *json;

	/* Kubernetes' metadata fields are ignored, anything unknown in spec is not */
	expect_refused("{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{"
		       "\"name\":\"p\",\"namespace\":\"x\",\"generation\":3},\"spec\":{"
		       "\"podSelector\":{},\"rules\":[],\"egress\":[]}}",
		       "spec.egress", "unknown");
	json = policy_with_match("{\"cidrs\":[\"10.0.0.0/8\"],\"Cidrs\":[]}");
	expect_refused(json, "spec.rules[0].match.Cidrs", "did you mean \"cidrs\"");
	free(json);
	json = policy_with_selector("{\"interfaces\":[\"eth0\"],\"matchLabels\":{}}");
	expect_refused(json, "spec.podSelector.matchLabels", "unknown");
	free(json);
}

Test(policy, selector)
{
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	char *json;

	json = policy_with_selector("{\"interfaces\":[\"veth*\",\"lxc[0-9a-f]*\",\"eth?\","
				    "\"a234567890abcde\",\"a234567890abcde*\"]}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_eq(set.policies[0].selector.n_interfaces, 5);
	cr_expect_eq(set.n_warnings, 0);
	loupe_policy_set_clear(&set);
	free(json);
	json = policy_with_selector("{\"interfaces\":[\"a234567890abcdef\"]}");
	expect_refused(json, "spec.podSelector.interfaces[0]", "at most 15");
	free(json);
	json = policy_with_selector("{\"interfaces\":[\"eth 0\"]}");
	expect_refused(json, "spec.podSelector.interfaces[0]", "blanks");
	free(json);

	/* labels: accepted, and a warning that they select nothing yet */
	json = policy_with_selector("{\"labels\":{\"app.kubernetes.io/name\":\"web\"}}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_assert_eq(set.n_warnings, 1);
	cr_expect_str_eq(set.warnings[0].path, "spec.podSelector.labels");
	cr_expect_str_eq(set.warnings[0].source, "test.json");
	loupe_policy_set_clear(&set);
	free(json);
	json = policy_with_selector("{\"labels\":{\"-bad\":\"web\"}}");
	expect_refused(json, "spec.podSelector.labels[\"-bad\"]", "label key");
	free(json);
}

Test(policy, warnings)
{
	static const char json[] =
		"{\"apiVersion\":\"loupe.dev/"
		"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"w\"},"
		"\"spec\":{\"podSelector\":{},\"rules\":["
		"{\"name\":\"all\",\"direction\":\"egress\",\"match\":{},\"action\":\"audit\"},"
		"{\"name\":\"in\",\"direction\":\"ingress\",\"match\":{},\"action\":\"deny\"},"
		"{\"name\":\"hidden\",\"direction\":\"egress\",\"match\":{\"cidrs\":[\"10.0.0.0/"
		"8\"]},"
		"\"action\":\"deny\"}]}}";
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	char *nothing;

	cr_assert_eq(parse_str(json, &set, &e), 0, "%s", e.message);
	cr_assert_eq(set.n_warnings, 1);
	cr_expect_str_eq(set.warnings[0].path, "spec.rules[2]");
	cr_expect_not_null(strstr(set.warnings[0].message, "never matches"));
	cr_expect_not_null(strstr(set.warnings[0].message, "\"all\""));
	loupe_policy_set_clear(&set);

	nothing = strdup("{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":"
			 "{\"name\":\"n\"},\"spec\":{\"podSelector\":{}}}");
	cr_assert_eq(parse_str(nothing, &set, &e), 0, "%s", e.message);
	cr_assert_eq(set.n_warnings, 1);
	cr_expect_str_eq(set.warnings[0].path, "spec");
	cr_expect_not_null(strstr(set.warnings[0].message, "changes nothing"));
	loupe_policy_set_clear(&set);
	free(nothing);
}

/* Policies in a set: unique names (across parses), sorted by priority then name. */
Test(policy, set_names_and_order)
{
	static const char *const docs[] = {
		"{\"apiVersion\":\"loupe.dev/"
		"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"b\"},"
		"\"spec\":{\"priority\":20,\"podSelector\":{},\"defaultAction\":\"deny\"}}",
		"[{\"apiVersion\":\"loupe.dev/"
		"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"z\"},"
		"\"spec\":{\"priority\":10,\"podSelector\":{},\"defaultAction\":\"deny\"}},"
		"{\"apiVersion\":\"loupe.dev/"
		"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"a\"},"
		"\"spec\":{\"priority\":10,\"podSelector\":{},\"defaultAction\":\"deny\"}}]",
	};
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error e;

	cr_assert_eq(loupe_policy_parse(docs[0], strlen(docs[0]), "one.json", &set, &e), 0);
	cr_assert_eq(loupe_policy_parse(docs[1], strlen(docs[1]), "two.json", &set, &e), 0);
	cr_assert_eq(set.n_policies, 3);
	cr_assert_eq(loupe_policy_parse(docs[0], strlen(docs[0]), "three.json", &set, &e), -EINVAL);
	cr_expect_str_eq(e.source, "three.json");
	cr_expect_str_eq(e.path, "metadata.name");
	cr_expect_str_eq(e.message, "\"b\" is also the name of the policy in one.json");
	cr_expect_eq(set.n_policies, 3);

	loupe_policy_set_sort(&set);
	cr_expect_str_eq(set.policies[0].name, "a");
	cr_expect_str_eq(set.policies[1].name, "z");
	cr_expect_str_eq(set.policies[2].name, "b");
	cr_expect_str_eq(set.policies[1].doc_path, "[0]");
	loupe_policy_set_clear(&set);
	loupe_policy_set_clear(&set); /* twice is fine */
	cr_expect_null(loupe_policy_set_free(NULL));
}

/* ------------------------------------------------------------------ rewrites and rate limits */

/* A valid policy (one rule "web") with spec.rewrites [@rewrites] and spec.rateLimits
 * [@rates] (NULL: left out); JSON with ' for ". */
static char *policy_with(const char *rewrites, const char *rates)
{
	char *s;

	cr_assert(asprintf(&s,
			   "{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'p'},"
			   "'spec':{'podSelector':{},'rules':[{'name':'web','direction':'egress',"
			   "'match':{},'action':'allow'}]%s%s%s%s%s%s}}",
			   rewrites ? ",'rewrites':[" : "", rewrites ? rewrites : "",
			   rewrites ? "]" : "", rates ? ",'rateLimits':[" : "", rates ? rates : "",
			   rates ? "]" : "") > 0);
	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	return s;
}

static void expect_rewrite_refused(const char *rewrite, const char *path, const char *word)
{
	char *json = policy_with(rewrite, NULL), full[256];

	snprintf(full, sizeof(full), "spec.rewrites[0]%s", path);
	expect_refused(json, full, word);
	free(json);
}

static void expect_rate_refused(const char *rates, const char *path, const char *word)
{
	char *json = policy_with(NULL, rates), full[256];

	snprintf(full, sizeof(full), "spec.rateLimits%s", path);
	expect_refused(json, full, word);
	free(json);
}

/* Parses a policy around @rewrite; its first rewrite (the set is cleared by the caller). */
static const struct loupe_policy_rewrite *rewrite_ok(const char *rewrite,
						     struct loupe_policy_set *set)
{
	struct loupe_policy_error e;
	char *json = policy_with(rewrite, NULL);
	int r = parse_str(json, set, &e);

	cr_assert_eq(r, 0, "%s refused: %s: %s", rewrite, e.path, e.message);
	free(json);
	cr_assert_eq(set->policies[0].n_rewrites, 1);
	return &set->policies[0].rewrites[0];
}

static void expect_map_to(const struct loupe_policy_rewrite *rw, int family, const char *addr,
			  uint16_t port)
{
	char got[INET6_ADDRSTRLEN];

	cr_expect(rw->actions & LOUPE_POLICY_RW_MAP, "%s: no mapTo", rw->name);
	cr_expect_eq(rw->map_to.family, family, "%s: family", rw->name);
	inet_ntop(rw->map_to.family, rw->map_to.addr, got, sizeof(got));
	cr_expect_str_eq(got, addr, "%s", rw->name);
	cr_expect_eq(rw->map_to.port, port, "%s: port %u", rw->name, rw->map_to.port);
}

Test(policy, rewrite_map_example)
{
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/rewrite-map.json");
	const struct loupe_policy *p;
	const struct loupe_policy_rewrite *rw;

	cr_assert_eq(set->n_policies, 1);
	cr_expect_eq(set->n_rules, 0);
	cr_expect_eq(set->n_rewrites, 5);
	cr_expect_eq(set->n_warnings, 0, "a policy with rewrites changes something");
	p = &set->policies[0];
	cr_expect_eq(p->priority, 50);
	cr_expect_eq(p->n_rate_limits, 0);
	cr_assert_eq(p->n_rewrites, 5);

	rw = &p->rewrites[0];
	cr_expect_str_eq(rw->name, "api-v4");
	cr_expect_eq(rw->direction, LOUPE_POLICY_EGRESS);
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_MAP);
	cr_assert_eq(rw->match.n_cidrs, 1);
	expect_cidr(&rw->match.cidrs[0], "198.18.5.5/32");
	cr_assert_eq(rw->match.n_ports, 1);
	expect_port(&rw->match.ports[0], LOUPE_POLICY_TCP, 80, 80);
	cr_expect_eq(rw->match.l7, LOUPE_POLICY_L7_NONE);
	expect_map_to(rw, AF_INET, "198.18.6.6", 8080);

	rw = &p->rewrites[1];
	cr_expect_str_eq(rw->name, "api-v6");
	expect_cidr(&rw->match.cidrs[0], "fd00:198:18:5::5/128");
	expect_map_to(rw, AF_INET6, "fd00:198:18:6::6", 8080);

	rw = &p->rewrites[2];
	cr_expect_str_eq(rw->name, "dns-v4");
	expect_port(&rw->match.ports[0], LOUPE_POLICY_UDP, 53, 53);
	expect_map_to(rw, AF_INET, "198.18.6.53", 0); /* the port is kept */

	rw = &p->rewrites[3];
	cr_expect_str_eq(rw->name, "bulk");
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_DSCP | LOUPE_POLICY_RW_VLAN_PUSH);
	cr_expect_eq(rw->dscp, 8);
	cr_expect_eq(rw->vlan_id, 100);
	cr_expect_eq(rw->match.n_cidrs, 2);
	cr_expect_eq(rw->match.n_ports, 0);

	rw = &p->rewrites[4];
	cr_expect_str_eq(rw->name, "untag");
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_VLAN_POP);
	cr_expect_eq(rw->vlan_id, 0);
	loupe_policy_set_free(set);
}

Test(policy, mask_api_keys_example)
{
	static const char *const headers[] = { "authorization", "x-api-key", "api-key",
					       "anthropic-api-key" };
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/mask-api-keys.json");
	const struct loupe_policy *p;
	const struct loupe_policy_rewrite *rw;

	cr_assert_eq(set->n_policies, 1);
	cr_expect_eq(set->n_rules, 1);
	cr_expect_eq(set->n_rewrites, 1);
	cr_expect_eq(set->n_warnings, 0);
	p = &set->policies[0];
	cr_expect_str_eq(p->rules[0].name, "gateway-audit");
	cr_assert_eq(p->n_rewrites, 1);
	rw = &p->rewrites[0];
	cr_expect_str_eq(rw->name, "llm-gateway-keys");
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_MASK);
	expect_cidr(&rw->match.cidrs[0], "10.96.40.0/24");
	expect_port(&rw->match.ports[0], LOUPE_POLICY_TCP, 8080, 8080);
	cr_assert_eq(rw->n_mask_headers, ARRAY_SIZE(headers));
	for (size_t i = 0; i < ARRAY_SIZE(headers); i++)
		cr_expect_str_eq(rw->mask_headers[i], headers[i], "stored lower case, in order");
	loupe_policy_set_free(set);
}

Test(policy, rate_limit_example)
{
	struct loupe_policy_set *set = load_ok(GOOD_DIR "/rate-limit.json");
	const struct loupe_policy *p;

	cr_assert_eq(set->n_policies, 1);
	cr_expect_eq(set->n_warnings, 0);
	p = &set->policies[0];
	cr_expect_str_eq(p->name, "rate-limit-batch");
	cr_assert_eq(p->n_rate_limits, 2);
	cr_expect_eq(p->rate_limits[0].direction, LOUPE_POLICY_EGRESS);
	cr_expect_eq(p->rate_limits[0].bytes_per_sec, 1250000, "10 Mbit/s");
	cr_expect_eq(p->rate_limits[0].burst, 500000, "default: 0.4 s at the rate");
	cr_expect_eq(p->rate_limits[1].direction, LOUPE_POLICY_INGRESS);
	cr_expect_eq(p->rate_limits[1].bytes_per_sec, 12500000);
	cr_expect_eq(p->rate_limits[1].burst, 1000000);
	loupe_policy_set_free(set);
}

Test(policy, rewrites_refused)
{
	static const struct {
		const char *rewrite, *path, *word;
	} rows[] = {
		/* the entry */
		{ "7", "", "object" },
		{ "{'direction':'egress','match':{},'setDscp':1}", ".name", "missing" },
		{ "{'name':'A_b','direction':'egress','match':{},'setDscp':1}", ".name",
		  "DNS-1123" },
		{ "{'name':'a','match':{},'setDscp':1}", ".direction", "missing" },
		{ "{'name':'a','direction':'out','match':{},'setDscp':1}", ".direction",
		  "not one of egress, ingress" },
		{ "{'name':'a','direction':'egress','setDscp':1}", ".match", "missing" },
		{ "{'name':'a','direction':'egress','match':{}}", "", "at least one action" },
		{ "{'name':'a','direction':'egress','match':{},'action':'allow'}", ".action",
		  "unknown" },
		{ "{'name':'a','direction':'egress','match':{},'setdscp':1}", ".setdscp",
		  "did you mean \"setDscp\"" },
		/* the match: cidrs and ports, nothing of L7 */
		{ "{'name':'a','direction':'egress','match':{'http':{}},'setDscp':1}",
		  ".match.http", "first packet" },
		{ "{'name':'a','direction':'egress','match':{'tls':{'sni':['x.io']}},'setDscp':1}",
		  ".match.tls", "ClientHello" },
		{ "{'name':'a','direction':'egress','match':{'dns':{}},'setDscp':1}", ".match.dns",
		  "DNS query" },
		{ "{'name':'a','direction':'egress','match':{'hosts':[]},'setDscp':1}",
		  ".match.hosts", "the fields here are cidrs, ports" },
		{ "{'name':'a','direction':'egress','match':[],'setDscp':1}", ".match", "object" },
		{ "{'name':'a','direction':'egress','match':{'cidrs':['10.0.0.1/8']},'setDscp':1}",
		  ".match.cidrs[0]", "past the prefix length" },
		{ "{'name':'a','direction':'egress','match':{'ports':[{'port':0}]},'setDscp':1}",
		  ".match.ports[0].port", "out of range" },
		/* mapTo */
		{ "{'name':'a','direction':'egress','match':{},'mapTo':'10.0.0.1'}", ".mapTo",
		  "object" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{}}", ".mapTo.address",
		  "missing" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':10}}",
		  ".mapTo.address", "string" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'example.com'}}",
		  ".mapTo.address", "not an IPv4 or IPv6 address" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':''}}",
		  ".mapTo.address", "not an IPv4 or IPv6 address" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'10.0.0.01'}}",
		  ".mapTo.address", "not an IPv4 or IPv6 address" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'fe80::1%eth0'}}",
		  ".mapTo.address", "not an IPv4 or IPv6 address" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'10.0.0.0/8'}}",
		  ".mapTo.address", "is a prefix" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'10.0.0.1/32'}}",
		  ".mapTo.address", "is a prefix" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'0.0.0.0'}}",
		  ".mapTo.address", "unspecified" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'::'}}",
		  ".mapTo.address", "unspecified" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'224.0.0.251'}}",
		  ".mapTo.address", "multicast" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'239.1.2.3'}}",
		  ".mapTo.address", "multicast" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'ff05::2'}}",
		  ".mapTo.address", "multicast" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'255.255.255.255'"
		  "}}",
		  ".mapTo.address", "broadcast" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'127.0.0.53'}}",
		  ".mapTo.address", "loopback" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'::1'}}",
		  ".mapTo.address", "loopback" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'::ffff:10.0.0.1'"
		  "}}",
		  ".mapTo.address", "IPv4-mapped" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'10.0.0.1',"
		  "'port':65536}}",
		  ".mapTo.port", "out of range 1..65535" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'10.0.0.1',"
		  "'port':'80'}}",
		  ".mapTo.port", "number" },
		{ "{'name':'a','direction':'egress','match':{},'mapTo':{'address':'10.0.0.1',"
		  "'host':'x'}}",
		  ".mapTo.host", "unknown" },
		{ "{'name':'a','direction':'ingress','match':{},'mapTo':{'address':'10.0.0.1'}}",
		  ".mapTo", "egress" },
		{ "{'name':'a','direction':'egress','match':{'ports':[{'protocol':'ICMP'}]},"
		  "'mapTo':{'address':'10.0.0.1','port':80}}",
		  ".mapTo.port", "ICMP" },
		{ "{'name':'a','direction':'egress','match':{'cidrs':['fd00::/8']},"
		  "'mapTo':{'address':'10.0.0.1'}}",
		  ".mapTo.address", "only IPv6 prefixes" },
		{ "{'name':'a','direction':'egress','match':{'ports':[{'protocol':'ICMP'}]},"
		  "'mapTo':{'address':'10.0.0.1'}}",
		  ".mapTo", "TCP and UDP" },
		/* setDscp */
		{ "{'name':'a','direction':'egress','match':{},'setDscp':64}", ".setDscp",
		  "out of range 0..63" },
		{ "{'name':'a','direction':'egress','match':{},'setDscp':-1}", ".setDscp",
		  "out of range 0..63" },
		{ "{'name':'a','direction':'egress','match':{},'setDscp':1.5}", ".setDscp",
		  "whole number" },
		{ "{'name':'a','direction':'egress','match':{},'setDscp':'EF'}", ".setDscp",
		  "number" },
		/* vlan */
		{ "{'name':'a','direction':'egress','match':{},'vlan':{}}", ".vlan", "missing" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':100}", ".vlan", "object" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':{'push':0}}", ".vlan.push",
		  "out of range 1..4094" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':{'push':4095}}", ".vlan.push",
		  "out of range 1..4094" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':{'pop':1}}", ".vlan.pop",
		  "true is expected" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':{'pop':false}}", ".vlan.pop",
		  "pops nothing" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':{'push':5,'pop':true}}",
		  ".vlan", "push and pop" },
		{ "{'name':'a','direction':'egress','match':{},'vlan':{'id':5}}", ".vlan.id",
		  "unknown" },
		/* http */
		{ "{'name':'a','direction':'egress','match':{},'http':{}}", ".http.maskHeaders",
		  "missing" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'mask':['a']}}",
		  ".http.mask", "unknown" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':[]}}",
		  ".http.maskHeaders", "empty list" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':'a'}}",
		  ".http.maskHeaders", "array" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':['a',7]}}",
		  ".http.maskHeaders[1]", "string" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':['']}}",
		  ".http.maskHeaders[0]", "empty header name" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':['x api']}}",
		  ".http.maskHeaders[0]", "not a header name" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':['x\\u00e9']}"
		  "}",
		  ".http.maskHeaders[0]", "not a header name" },
		{ "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':['a(b)']}}",
		  ".http.maskHeaders[0]", "not a header name" },
		{ "{'name':'a','direction':'egress','match':{},"
		  "'http':{'maskHeaders':['X-Key','x-KEY']}}",
		  ".http.maskHeaders[1]", "also maskHeaders[0]" },
		{ "{'name':'a','direction':'egress','match':{},"
		  "'http':{'maskHeaders':['a','b','c','d','e','f','g','h','i']}}",
		  ".http.maskHeaders", "at most 8" },
		{ "{'name':'a','direction':'egress','match':{'ports':[{'protocol':'ICMP'},"
		  "{'port':53,'protocol':'UDP'}]},'http':{'maskHeaders':['a']}}",
		  ".http", "no TCP entry" },
	};
	char name65[80], *rw;

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		expect_rewrite_refused(rows[i].rewrite, rows[i].path, rows[i].word);

	/* a name of 64 characters is one too many */
	memset(name65, 'h', 65);
	name65[65] = '\0';
	cr_assert(asprintf(&rw,
			   "{'name':'a','direction':'egress','match':{},'http':{'maskHeaders':"
			   "['%.64s','x%s']}}",
			   name65, name65) > 0);
	expect_rewrite_refused(rw, ".http.maskHeaders[1]", "longer than 64");
	free(rw);
}

Test(policy, rewrites_accepted)
{
	struct loupe_policy_set set;
	const struct loupe_policy_rewrite *rw;
	struct loupe_policy_error e;
	char *json;

	/* every action in one entry, the address in its canonical form */
	rw = rewrite_ok("{'name':'all','direction':'egress','match':{'cidrs':['10.0.0.0/8',"
			"'2001:db8::/32'],'ports':[{'port':80},{'port':53,'protocol':'UDP'}]},"
			"'mapTo':{'address':'2001:DB8:0::6','port':1},'setDscp':63,"
			"'vlan':{'push':4094},'http':{'maskHeaders':['X-Custom_Token.v2',"
			"'!#$%&*+-.^_`|~']}}",
			&set);
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_MAP | LOUPE_POLICY_RW_DSCP |
					  LOUPE_POLICY_RW_VLAN_PUSH | LOUPE_POLICY_RW_MASK);
	expect_map_to(rw, AF_INET6, "2001:db8::6", 1);
	cr_expect_eq(rw->dscp, 63);
	cr_expect_eq(rw->vlan_id, 4094);
	cr_assert_eq(rw->n_mask_headers, 2);
	cr_expect_str_eq(rw->mask_headers[0], "x-custom_token.v2");
	cr_expect_str_eq(rw->mask_headers[1], "!#$%&*+-.^_`|~");
	cr_expect_eq(set.n_rewrites, 1);
	loupe_policy_set_clear(&set);

	/* an apostrophe is a token character too (written here without the ' -> " trick) */
	json = strdup("{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":"
		      "{\"name\":\"p\"},\"spec\":{\"podSelector\":{},\"rewrites\":[{\"name\":\"a\","
		      "\"direction\":\"ingress\",\"match\":{},\"http\":{\"maskHeaders\":"
		      "[\"it's\"]}}]}}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_str_eq(set.policies[0].rewrites[0].mask_headers[0], "it's");
	cr_expect_eq(set.policies[0].rewrites[0].direction, LOUPE_POLICY_INGRESS);
	cr_expect_eq(set.n_warnings, 0, "rewrites alone change something");
	loupe_policy_set_clear(&set);
	free(json);

	/* DSCP 0 is an action (best effort); ICMP beside TCP with mapTo without a port (its
	 * ICMP flows keep their address); both families */
	rw = rewrite_ok("{'name':'a','direction':'egress','match':{'cidrs':['10.0.0.0/8',"
			"'fd00::/8'],'ports':[{'protocol':'ICMP'},{'port':80}]},'mapTo':"
			"{'address':'10.9.9.9'},'setDscp':0}",
			&set);
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_MAP | LOUPE_POLICY_RW_DSCP);
	expect_map_to(rw, AF_INET, "10.9.9.9", 0);
	cr_expect_eq(rw->dscp, 0);
	loupe_policy_set_clear(&set);

	/* masking needs a TCP entry, not only TCP entries */
	rw = rewrite_ok("{'name':'a','direction':'egress','match':{'ports':[{'port':53,"
			"'protocol':'UDP'},{'port':8080}]},'http':{'maskHeaders':['a']}}",
			&set);
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_MASK);
	loupe_policy_set_clear(&set);

	/* the largest address of the unicast space, and a pop */
	rw = rewrite_ok("{'name':'a','direction':'egress','match':{},'mapTo':{'address':"
			"'223.255.255.254','port':65535},'vlan':{'pop':true}}",
			&set);
	expect_map_to(rw, AF_INET, "223.255.255.254", 65535);
	cr_expect_eq(rw->actions, LOUPE_POLICY_RW_MAP | LOUPE_POLICY_RW_VLAN_POP);
	loupe_policy_set_clear(&set);

	/* an empty list is no rewrite */
	json = policy_with("", NULL);
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_eq(set.policies[0].n_rewrites, 0);
	cr_expect_eq(set.n_rewrites, 0);
	loupe_policy_set_clear(&set);
	free(json);
}

Test(policy, rewrite_names_and_limits)
{
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error e;
	char *json, *list = NULL, *doc = NULL;
	size_t len = 0;
	FILE *f;

	/* one namespace with the rules */
	json = policy_with("{'name':'web','direction':'egress','match':{},'setDscp':1}", NULL);
	expect_refused(json, "spec.rewrites[0].name", "also the name of rules[0]");
	free(json);
	json = policy_with("{'name':'a','direction':'egress','match':{},'setDscp':1},"
			   "{'name':'a','direction':'ingress','match':{},'setDscp':2}",
			   NULL);
	expect_refused(json, "spec.rewrites[1].name", "also the name of rewrites[0]");
	free(json);
	json = strdup("{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":"
		      "{\"name\":\"p\"},\"spec\":{\"podSelector\":{},\"rewrites\":{}}}");
	expect_refused(json, "spec.rewrites", "array");
	free(json);

	/* 64 rewrites in a policy, not 65 */
	for (int n = 64; n <= 65; n++) {
		f = open_memstream(&list, &len);
		cr_assert_not_null(f);
		for (int i = 0; i < n; i++)
			fprintf(f,
				"%s{'name':'r%d','direction':'egress','match':{'ports':[{'port':%d}"
				"]},"
				"'setDscp':%d}",
				i ? "," : "", i, i + 1, i % 64);
		fclose(f);
		json = policy_with(list, NULL);
		if (n == 64) {
			cr_expect_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
			cr_expect_eq(set.n_rewrites, 64);
			loupe_policy_set_clear(&set);
		} else {
			expect_refused(json, "spec.rewrites", "at most 64");
		}
		free(json);
		free(list);
		list = NULL;
	}

	/* 256 in a set, not 257: four policies of 64, then one more, in one text or two */
	f = open_memstream(&doc, &len);
	cr_assert_not_null(f);
	fputc('[', f);
	for (int p = 0; p < 5; p++) {
		fprintf(f,
			"%s{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'p%d'},"
			"'spec':{'podSelector':{},'rewrites':[",
			p ? "," : "", p);
		for (int i = 0; i < (p < 4 ? 64 : 1); i++)
			fprintf(f, "%s{'name':'r%d','direction':'egress','match':{},'setDscp':1}",
				i ? "," : "", i);
		fputs("]}}", f);
	}
	fputc(']', f);
	fclose(f);
	for (char *p = doc; *p; p++)
		if (*p == '\'')
			*p = '"';
	expect_refused(doc, "[4].spec.rewrites", "at most 256");
	/* the first four alone: the whole set's room */
	*strstr(doc, ",{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":"
		     "{\"name\":\"p4\"}") = '\0';
	strcat(doc, "]");
	cr_assert_eq(parse_str(doc, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_eq(set.n_rewrites, 256);
	json = policy_with("{'name':'one-more','direction':'egress','match':{},'setDscp':1}", NULL);
	cr_expect_eq(loupe_policy_parse(json, strlen(json), "more.json", &set, &e), -EINVAL);
	cr_expect_str_eq(e.path, "spec.rewrites");
	cr_expect_not_null(strstr(e.message, "257 rewrites"), "%s", e.message);
	cr_expect_eq(set.n_rewrites, 256, "a refused text changes nothing");
	loupe_policy_set_clear(&set);
	free(json);
	free(doc);
}

Test(policy, rewrite_warnings)
{
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	char *json;

	/* an entry after one that fits every flow of its direction is never used */
	json = policy_with("{'name':'all','direction':'egress','match':{},'setDscp':1},"
			   "{'name':'in','direction':'ingress','match':{'cidrs':['10.0.0.0/8']},"
			   "'setDscp':2},"
			   "{'name':'hidden','direction':'egress','match':{'cidrs':['10.0.0.0/8']},"
			   "'setDscp':3}",
			   NULL);
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s", e.message);
	cr_assert_eq(set.n_warnings, 1);
	cr_expect_str_eq(set.warnings[0].path, "spec.rewrites[2]");
	cr_expect_not_null(strstr(set.warnings[0].message, "never applies"));
	cr_expect_not_null(strstr(set.warnings[0].message, "\"all\""));
	cr_expect_gt(set.warnings[0].line, 0);
	loupe_policy_set_clear(&set);
	free(json);

	/* a burst smaller than a GSO packet: valid, said */
	json = policy_with(NULL, "{'direction':'egress','bytesPerSecond':125000,'burst':1500}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s", e.message);
	cr_assert_eq(set.n_warnings, 1);
	cr_expect_str_eq(set.warnings[0].path, "spec.rateLimits[0].burst");
	cr_expect_not_null(strstr(set.warnings[0].message, "GSO"), "%s", set.warnings[0].message);
	cr_expect_eq(set.policies[0].rate_limits[0].burst, 1500);
	loupe_policy_set_clear(&set);
	free(json);

	/* a policy with only a rate limit changes something */
	json = strdup(
		"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":"
		"{\"name\":\"p\"},\"spec\":{\"podSelector\":{},\"rateLimits\":[{\"direction\":"
		"\"egress\",\"bytesPerSecond\":1000}]}}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s", e.message);
	cr_expect_eq(set.n_warnings, 0);
	loupe_policy_set_clear(&set);
	free(json);
}

Test(policy, rate_limits)
{
	static const struct {
		uint64_t rate, burst;
	} defaults[] = {
		{ 1, LOUPE_POLICY_BURST_MIN_DEFAULT },
		{ 163840, LOUPE_POLICY_BURST_MIN_DEFAULT }, /* 0.4 s is 64 KiB exactly */
		{ 163845, 65538 },
		{ 1250000, 500000 },
		{ 10737418240ULL, LOUPE_POLICY_BURST_MAX }, /* 0.4 s is 2^32 exactly */
		{ LOUPE_POLICY_RATE_MAX, LOUPE_POLICY_BURST_MAX },
	};
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	char rates[256], *json;

	for (size_t i = 0; i < ARRAY_SIZE(defaults); i++) {
		snprintf(rates, sizeof(rates), "{'direction':'ingress','bytesPerSecond':%llu}",
			 (unsigned long long)defaults[i].rate);
		json = policy_with(NULL, rates);
		cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s: %s", rates, e.path, e.message);
		cr_assert_eq(set.policies[0].n_rate_limits, 1);
		cr_expect_eq(set.policies[0].rate_limits[0].direction, LOUPE_POLICY_INGRESS);
		cr_expect_eq(set.policies[0].rate_limits[0].bytes_per_sec, defaults[i].rate);
		cr_expect_eq(set.policies[0].rate_limits[0].burst, defaults[i].burst,
			     "rate %llu: burst %llu, want %llu",
			     (unsigned long long)defaults[i].rate,
			     (unsigned long long)set.policies[0].rate_limits[0].burst,
			     (unsigned long long)defaults[i].burst);
		cr_expect_eq(set.n_warnings, 0);
		loupe_policy_set_clear(&set);
		free(json);
	}

	/* the largest burst; both directions, in the order written */
	json = policy_with(NULL, "{'direction':'ingress','bytesPerSecond':1000,'burst':4294967296},"
				 "{'direction':'egress','bytesPerSecond':2000,'burst':65536}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_assert_eq(set.policies[0].n_rate_limits, 2);
	cr_expect_eq(set.policies[0].rate_limits[0].burst, LOUPE_POLICY_BURST_MAX);
	cr_expect_eq(set.policies[0].rate_limits[1].direction, LOUPE_POLICY_EGRESS);
	cr_expect_eq(set.policies[0].rate_limits[1].burst, 65536);
	loupe_policy_set_clear(&set);
	free(json);

	expect_rate_refused("7", "[0]", "object");
	expect_rate_refused("{'bytesPerSecond':1}", "[0].direction", "missing");
	expect_rate_refused("{'direction':'both','bytesPerSecond':1}", "[0].direction",
			    "not one of egress, ingress");
	expect_rate_refused("{'direction':'egress'}", "[0].bytesPerSecond", "missing");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':0}", "[0].bytesPerSecond",
			    "out of range");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1099511627777}",
			    "[0].bytesPerSecond", "out of range 1..1099511627776");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1e6}", "[0].bytesPerSecond",
			    "whole number");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':99999999999999999999}",
			    "[0].bytesPerSecond", "out of range");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1,'burst':0}", "[0].burst",
			    "out of range 1..4294967296");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1,'burst':4294967297}",
			    "[0].burst", "out of range");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1,'Burst':1}", "[0].Burst",
			    "did you mean \"burst\"");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1},"
			    "{'direction':'egress','bytesPerSecond':2}",
			    "[1].direction", "also for egress");
	expect_rate_refused("{'direction':'egress','bytesPerSecond':1},"
			    "{'direction':'ingress','bytesPerSecond':2},"
			    "{'direction':'ingress','bytesPerSecond':3}",
			    "", "one per direction");
	json = strdup("{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":"
		      "{\"name\":\"p\"},\"spec\":{\"podSelector\":{},\"rateLimits\":{}}}");
	expect_refused(json, "spec.rateLimits", "array");
	free(json);
}

/* The normalised form: every field of a rewrite and a limit, back to the same structs. */
Test(policy, rewrite_json)
{
	struct loupe_policy_set set, again;
	struct loupe_policy_error e;
	char *json, *a, *b;

	json = policy_with("{'name':'m','direction':'egress','match':{'cidrs':['10.0.0.0/8'],"
			   "'ports':[{'port':80}]},'mapTo':{'address':'10.1.1.1','port':8080},"
			   "'setDscp':46,'vlan':{'pop':true},'http':{'maskHeaders':['X-Api-Key']}},"
			   "{'name':'n','direction':'ingress','match':{},'vlan':{'push':7}}",
			   "{'direction':'egress','bytesPerSecond':1000}");
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	a = loupe_policy_set_to_json(&set);
	cr_assert_not_null(a);
	cr_expect_not_null(strstr(a, "\"mapTo\": {"), "%s", a);
	cr_expect_not_null(strstr(a, "\"address\": \"10.1.1.1\""), "%s", a);
	cr_expect_not_null(strstr(a, "\"setDscp\": 46"), "%s", a);
	cr_expect_not_null(strstr(a, "\"pop\": true"), "%s", a);
	cr_expect_not_null(strstr(a, "\"push\": 7"), "%s", a);
	cr_expect_not_null(strstr(a, "\"x-api-key\""), "%s", a);
	cr_expect_not_null(strstr(a, "\"burst\": 65536"), "the default filled in: %s", a);
	memset(&again, 0, sizeof(again));
	cr_assert_eq(loupe_policy_parse(a, strlen(a), "test.json", &again, &e), 0, "%s: %s", e.path,
		     e.message);
	b = loupe_policy_set_to_json(&again);
	cr_expect_str_eq(a, b);
	cr_assert_eq(again.policies[0].n_rewrites, 2);
	cr_expect_eq(again.policies[0].rewrites[0].actions, set.policies[0].rewrites[0].actions);
	cr_expect_eq(again.policies[0].rewrites[0].map_to.port, 8080);
	cr_expect_eq(again.policies[0].rate_limits[0].burst, 65536);
	free(a);
	free(b);
	free(json);
	loupe_policy_set_clear(&again);
	loupe_policy_set_clear(&set);

	/* a set without them prints as it did before: no empty lists */
	json = policy_with(NULL, NULL);
	cr_assert_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	a = loupe_policy_set_to_json(&set);
	cr_expect_null(strstr(a, "rewrites"), "%s", a);
	cr_expect_null(strstr(a, "rateLimits"), "%s", a);
	free(a);
	free(json);
	loupe_policy_set_clear(&set);
}

/* ------------------------------------------------------------------ limits */

/* A policy named @name with @n rules "r0".."r<n-1>", as a malloc'd string. */
static char *gen_policy(const char *name, unsigned int n)
{
	size_t cap = 256 + (size_t)n * 128, len = 0;
	char *s = malloc(cap);
	unsigned int i;

	cr_assert_not_null(s);
	len += (size_t)snprintf(s + len, cap - len,
				"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
				"\"metadata\":{\"name\":\"%s\"},\"spec\":{\"podSelector\":{},"
				"\"rules\":[",
				name);
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(
			s + len, cap - len,
			"%s{\"name\":\"r%u\",\"direction\":\"egress\","
			"\"match\":{\"ports\":[{\"port\":%u}]},\"action\":\"deny\"}",
			i ? "," : "", i, 1 + i % 65535);
	snprintf(s + len, cap - len, "]}}");
	return s;
}

/* @count policies of @rules rules each, as a JSON array. */
static char *gen_array(unsigned int count, unsigned int rules)
{
	size_t cap = 64, len = 1;
	char *s = malloc(cap), name[32];
	unsigned int i;

	cr_assert_not_null(s);
	s[0] = '[';
	for (i = 0; i < count; i++) {
		char *p;
		size_t pl;

		snprintf(name, sizeof(name), "p%u", i);
		p = gen_policy(name, rules);
		pl = strlen(p);
		if (len + pl + 4 > cap) {
			cap = (len + pl + 4) * 2;
			s = realloc(s, cap);
			cr_assert_not_null(s);
		}
		if (i)
			s[len++] = ',';
		memcpy(s + len, p, pl);
		len += pl;
		free(p);
	}
	s[len++] = ']';
	s[len] = '\0';
	return s;
}

Test(policy, limits)
{
	struct loupe_policy_set set;
	struct loupe_policy_error e;
	char *json, *big, *path;
	char match[4096];
	size_t len;
	int i, n;

	/* 256 rules in a policy, not 257 */
	json = gen_policy("rules", LOUPE_POLICY_RULES_MAX);
	cr_expect_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_eq(set.n_rules, 256);
	loupe_policy_set_clear(&set);
	free(json);
	json = gen_policy("rules", LOUPE_POLICY_RULES_MAX + 1);
	expect_refused(json, "spec.rules", "at most 256");
	free(json);

	/* 64 entries in a list, not 65 */
	for (n = 64; n <= 65; n++) {
		len = (size_t)snprintf(match, sizeof(match), "{\"cidrs\":[");
		for (i = 0; i < n; i++)
			len += (size_t)snprintf(match + len, sizeof(match) - len,
						"%s\"10.0.%d.0/24\"", i ? "," : "", i);
		snprintf(match + len, sizeof(match) - len, "]}");
		if (n == 64) {
			match_ok(match, &set);
			loupe_policy_set_clear(&set);
		} else {
			expect_match_refused(match, ".cidrs", "at most 64");
		}
	}

	/* 1024 policies in a set, not 1025 */
	json = gen_array(LOUPE_POLICY_SET_MAX, 0);
	cr_expect_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_eq(set.n_policies, 1024);
	loupe_policy_set_clear(&set);
	free(json);
	json = gen_array(LOUPE_POLICY_SET_MAX + 1, 0);
	expect_refused(json, "[1024]", "at most 1024 policies");
	free(json);

	/* 10 000 rules in a set (40 x 250), not 10 001; across two parses too */
	json = gen_array(40, 250);
	cr_expect_eq(parse_str(json, &set, &e), 0, "%s: %s", e.path, e.message);
	cr_expect_eq(set.n_rules, 10000);
	free(json);
	json = gen_policy("one-more", 1);
	cr_expect_eq(loupe_policy_parse(json, strlen(json), "more.json", &set, &e), -EINVAL);
	cr_expect_str_eq(e.path, "spec.rules");
	cr_expect_not_null(strstr(e.message, "10000"), "%s", e.message);
	cr_expect_eq(set.n_rules, 10000);
	loupe_policy_set_clear(&set);
	free(json);
	json = gen_array(41, 250);
	expect_refused(json, "[40].spec.rules", "at most 10000");
	free(json);

	/* 4 MiB per file: by length and by file size */
	len = LOUPE_POLICY_FILE_MAX + 1;
	big = malloc(len);
	cr_assert_not_null(big);
	memset(big, ' ', len);
	big[0] = '[';
	big[len - 1] = ']';
	memset(&set, 0, sizeof(set));
	cr_expect_eq(loupe_policy_parse(big, len, "big.json", &set, &e), -EFBIG);
	cr_expect_not_null(strstr(e.message, "4 MiB"), "%s", e.message);
	cr_expect_eq(loupe_policy_parse(big, len - 1, "big.json", &set, &e), -EINVAL,
		     "4 MiB exactly is read (and then refused for its syntax)");
	tmp_setup();
	path = loupe_tmpdir_path(tmpdir, "big.json");
	{
		FILE *f = fopen(path, "w");

		cr_assert_not_null(f);
		cr_assert_eq(fwrite(big, 1, len, f), len);
		fclose(f);
	}
	{
		struct loupe_policy_set *ret = NULL;

		cr_expect_eq(loupe_policy_load_path(path, &ret, &e), -EFBIG);
		cr_expect_null(ret);
		cr_expect_str_eq(e.source, path);
	}
	free(path);
	free(big);
	tmp_teardown();
}

/* ------------------------------------------------------------------ files and directories */

static const char *mini(const char *name, char *buf, size_t size)
{
	snprintf(buf, size,
		 "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":"
		 "\"%s\"},\"spec\":{\"podSelector\":{},\"defaultAction\":\"audit\"}}\n",
		 name);
	return buf;
}

Test(policy, directory, .init = tmp_setup, .fini = tmp_teardown)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error e;
	char buf[512], *p;

	/* name order (bytes), *.json only, no dotfiles, no subdirectories */
	tmp_write("z.json", mini("zed", buf, sizeof(buf)));
	tmp_write("B.json", mini("bee", buf, sizeof(buf)));
	tmp_write("a.json", mini("ay", buf, sizeof(buf)));
	tmp_write(".hidden.json", "not json");
	tmp_write("README.md", "not json");
	tmp_write("a.json.bak", "not json");
	tmp_mkdir("sub");
	tmp_write("sub/x.json", "not json");
	tmp_mkdir("dir.json");

	set = load_ok(tmpdir);
	cr_assert_eq(set->n_policies, 3);
	cr_expect_str_eq(set->policies[0].name, "bee");
	cr_expect_str_eq(set->policies[1].name, "ay");
	cr_expect_str_eq(set->policies[2].name, "zed");
	p = loupe_tmpdir_path(tmpdir, "a.json");
	cr_expect_str_eq(set->policies[1].source, p);
	free(p);
	set = loupe_policy_set_free(set);

	/* one bad file refuses the whole directory, naming the file */
	p = loupe_tmpdir_path(tmpdir, "m.json");
	write_file(p, mini("Bad_Name", buf, sizeof(buf)));
	cr_expect_eq(loupe_policy_load_path(tmpdir, &set, &e), -EINVAL);
	cr_expect_null(set);
	cr_expect_str_eq(e.source, p);
	cr_expect_str_eq(e.path, "metadata.name");
	free(p);
	/* and so does a name used in two files */
	p = loupe_tmpdir_path(tmpdir, "m.json");
	write_file(p, mini("ay", buf, sizeof(buf)));
	cr_expect_eq(loupe_policy_load_path(tmpdir, &set, &e), -EINVAL);
	cr_expect_str_eq(e.source, p);
	cr_expect_not_null(strstr(e.message, "a.json"), "%s", e.message);
	free(p);

	/* a missing path */
	p = loupe_tmpdir_path(tmpdir, "nothing-here");
	cr_expect_eq(loupe_policy_load_path(p, &set, &e), -ENOENT);
	cr_expect_not_null(strstr(e.message, "cannot read"));
	free(p);
}

Test(policy, empty_directory, .init = tmp_setup, .fini = tmp_teardown)
{
	struct loupe_policy_set *set = load_ok(tmpdir);

	cr_expect_eq(set->n_policies, 0);
	cr_assert_eq(set->n_warnings, 1);
	cr_expect_not_null(strstr(set->warnings[0].message, "no *.json"));
	loupe_policy_set_free(set);
}

/* A mounted ConfigMap: "..<time>/" holds the files, "..data" links to it, "x" to ..data/x. */
Test(policy, configmap_layout, .init = tmp_setup, .fini = tmp_teardown)
{
	struct loupe_policy_set *set;
	char buf[512], *p, *q;

	tmp_mkdir("..2026_01_01_00_00_00.1");
	tmp_write("..2026_01_01_00_00_00.1/a.json", mini("first-a", buf, sizeof(buf)));
	tmp_write("..2026_01_01_00_00_00.1/b.json", mini("first-b", buf, sizeof(buf)));
	tmp_symlink("..2026_01_01_00_00_00.1", "..data");
	tmp_symlink("..data/a.json", "a.json");
	tmp_symlink("..data/b.json", "b.json");

	set = load_ok(tmpdir);
	cr_assert_eq(set->n_policies, 2);
	cr_expect_str_eq(set->policies[0].name, "first-a");
	cr_expect_str_eq(set->policies[1].name, "first-b");
	p = loupe_tmpdir_path(tmpdir, "a.json");
	cr_expect_str_eq(set->policies[0].source, p, "messages name the file as mounted");
	free(p);
	loupe_policy_set_free(set);

	/*
	 * The kubelet's update: a new version directory, ..data swapped by rename. b.json is
	 * gone from the new version but its top-level link is still there (the kubelet removes
	 * it later): the load reads the version ..data points to, so b is not read.
	 */
	tmp_mkdir("..2026_01_02_00_00_00.2");
	tmp_write("..2026_01_02_00_00_00.2/a.json", mini("second-a", buf, sizeof(buf)));
	tmp_symlink("..2026_01_02_00_00_00.2", "..data_tmp");
	p = loupe_tmpdir_path(tmpdir, "..data_tmp");
	q = loupe_tmpdir_path(tmpdir, "..data");
	cr_assert_eq(rename(p, q), 0);
	free(p);
	free(q);

	set = load_ok(tmpdir);
	cr_assert_eq(set->n_policies, 1);
	cr_expect_str_eq(set->policies[0].name, "second-a");
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ loupectl policy check */

Test(policy, loupectl_check, .init = tmp_setup, .fini = tmp_teardown)
{
	const char *good = GOOD_DIR "/ai-egress.json", *bad = BAD_DIR "/rule-bad-action.json";
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error e;
	struct loupe_proc_result r;

	if (access(LOUPECTL, X_OK) != 0)
		cr_skip_test("%s is not built", LOUPECTL);

	r = RUN(LOUPECTL, "policy", "check", (char *)good);
	cr_expect_eq(r.status, 0, "stderr: %s", r.err);
	cr_expect_str_eq(r.out, "OK  " GOOD_DIR "/ai-egress.json: 2 policies, 6 rules\n");
	cr_expect_str_eq(r.err, "");
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "policy", "check", (char *)bad);
	cr_expect_eq(r.status, 1);
	cr_expect_str_eq(r.out, "");
	cr_expect_str_eq(r.err, BAD_DIR "/rule-bad-action.json: spec.rules[0].action: \"drop\" "
					"is not one of allow, deny, audit (line 32, column 9)\n");
	loupe_proc_result_free(&r);

	/* a mix: every input is checked, the status says one failed */
	r = RUN(LOUPECTL, "policy", "check", (char *)good, (char *)bad, GOOD_DIR);
	cr_expect_eq(r.status, 1);
	cr_expect_not_null(strstr(r.out, "OK  " GOOD_DIR "/ai-egress.json: 2 policies"));
	cr_expect_not_null(strstr(r.out, "OK  " GOOD_DIR ": 10 policies, 21 rules"));
	cr_expect_not_null(strstr(r.err, "spec.rules[0].action"));
	/* the warning of normalise.json, which does not fail the check */
	cr_expect_not_null(strstr(r.err, "warning: " GOOD_DIR "/normalise.json: items[0].spec"
					 ".podSelector.labels"));
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "policy", "check", BAD_DIR "/no-such-file.json");
	cr_expect_eq(r.status, 1);
	cr_expect_not_null(strstr(r.err, "cannot read"));
	loupe_proc_result_free(&r);

	/* usage errors */
	r = RUN(LOUPECTL, "policy", "check");
	cr_expect_eq(r.status, 2);
	loupe_proc_result_free(&r);
	r = RUN(LOUPECTL, "policy");
	cr_expect_eq(r.status, 2);
	loupe_proc_result_free(&r);
	r = RUN(LOUPECTL, "policy", "lint", (char *)good);
	cr_expect_eq(r.status, 2);
	loupe_proc_result_free(&r);
	r = RUN(LOUPECTL, "policy", "check", "-o", "yaml", (char *)good);
	cr_expect_eq(r.status, 2);
	cr_expect_not_null(strstr(r.err, "text or json"));
	loupe_proc_result_free(&r);
	r = RUN(LOUPECTL, "policy", "check", "--bogus", (char *)good);
	cr_expect_eq(r.status, 2);
	loupe_proc_result_free(&r);
	r = RUN(LOUPECTL, "policy", "--help");
	cr_expect_eq(r.status, 0);
	cr_expect_not_null(strstr(r.out, "usage: loupectl policy check"));
	loupe_proc_result_free(&r);
	r = RUN(LOUPECTL, "help", "policy");
	cr_expect_eq(r.status, 0);
	cr_expect_not_null(strstr(r.out, "usage: loupectl policy check"));
	loupe_proc_result_free(&r);

	/* -o json: the normalised set on stdout, in evaluation order; it parses back */
	r = RUN(LOUPECTL, "policy", "check", GOOD_DIR, "-o", "json");
	cr_expect_eq(r.status, 0);
	cr_expect_not_null(strstr(r.err, "OK  "));
	cr_assert_eq(loupe_policy_parse(r.out, strlen(r.out), "stdout", &set, &e), 0, "%s: %s",
		     e.path, e.message);
	cr_assert_eq(set.n_policies, 10);
	cr_expect_str_eq(set.policies[0].name, "deny-metadata-and-smtp"); /* priority 5 */
	cr_expect_str_eq(set.policies[1].name, "ai-egress-allowed");	  /* 10, by name */
	cr_expect_str_eq(set.policies[2].name, "format-example");	  /* 10 */
	cr_expect_str_eq(set.policies[3].name, "ai-egress-denied");	  /* 20 */
	cr_expect_str_eq(set.policies[4].name, "mask-api-keys");	  /* 40 */
	cr_expect_str_eq(set.policies[5].name, "rewrite-map");		  /* 50 */
	cr_expect_str_eq(set.policies[6].name, "rate-limit-batch");	  /* 60 */
	cr_expect_str_eq(set.policies[9].name, "audit-dns");		  /* 65535 */
	cr_expect_eq(set.n_rewrites, 6);
	cr_expect_eq(set.policies[6].n_rate_limits, 2);
	cr_expect_not_null(strstr(r.out, "\"/v1/\""), "slashes are not escaped");
	loupe_policy_set_clear(&set);
	loupe_proc_result_free(&r);
}

Test(policy, enum_names)
{
	cr_expect_str_eq(loupe_policy_action_name(LOUPE_POLICY_ACTION_DENY), "deny");
	cr_expect_str_eq(loupe_policy_action_name(LOUPE_POLICY_ACTION_NONE), "none");
	cr_expect_str_eq(loupe_policy_direction_name(LOUPE_POLICY_INGRESS), "ingress");
	cr_expect_str_eq(loupe_policy_protocol_name(LOUPE_POLICY_ICMP), "ICMP");
	cr_expect_str_eq(loupe_policy_http_method_name(LOUPE_POLICY_HTTP_PATCH), "PATCH");
	cr_expect_str_eq(loupe_policy_http_method_name(LOUPE_POLICY_HTTP_METHODS_N), "unknown");
}
