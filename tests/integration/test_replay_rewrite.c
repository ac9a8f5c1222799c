// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl replay --policy with spec.rewrites and --write-pcap, the real binary on tests/data:
 * the REWRITE events (what changed, the policy and rewrite named, the masked headers by name)
 * and the output capture read back by tshark with checksum validation on: the client's
 * packets mapped to the new address and port, DSCP set, an 802.1Q tag pushed (or popped), the
 * secret header values masked byte for byte and the other headers untouched, replies as they
 * came, every IP, TCP and UDP checksum valid; IPv4, IPv6, UDP; with an L7 rule deciding the
 * same flow; frames a deny drops are not written. Not for the rewrites' corner cases (tests/bpf/test_rewrite.c) nor for live traffic
 * (test_rewrite_live.c).
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
#define TSHARK	 "/usr/bin/tshark"
#define DATA	 LOUPE_TEST_DATA

static char tmpdir[LOUPE_TMPDIR_MAX];

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root: replay loads the BPF programs");
	if (access(LOUPECTL, X_OK))
		cr_skip_test("%s is missing: make build", LOUPECTL);
	if (access(TSHARK, X_OK))
		cr_skip_test("%s is missing (tshark): it reads the output captures", TSHARK);
	loupe_tmpdir_create(tmpdir, "/tmp/loupe-test-replay-rewrite.XXXXXX");
}

static void teardown(void)
{
	loupe_tmpdir_remove(tmpdir);
}

TestSuite(replay_rewrite, .init = setup, .fini = teardown, .timeout = 120);

#define RUN(...) loupe_proc_run(tmpdir, (char *const[]){ __VA_ARGS__, NULL })

#define POLICY_HEAD                                                                                \
	"{\"apiVersion\":\"loupe.dev/"                                                             \
	"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"replay-rw\"},"                          \
	"\"spec\":{\"podSelector\":{},"

static char *write_file(const char *name, const char *text)
{
	char *path = loupe_tmpdir_path(tmpdir, "%s", name);
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	return path;
}

/* The captures' HTTP server 198.18.10.2:8080 mapped elsewhere, DSCP EF, a tag, keys masked. */
static const char map_policy[] =
	POLICY_HEAD "\"rewrites\":[{\"name\":\"to-gateway\",\"direction\":\"egress\","
		    "\"match\":{\"cidrs\":[\"198.18.10.2/32\"],\"ports\":[{\"port\":8080}]},"
		    "\"mapTo\":{\"address\":\"198.18.20.2\",\"port\":9090},\"setDscp\":46,"
		    "\"vlan\":{\"push\":100},"
		    "\"http\":{\"maskHeaders\":[\"Authorization\",\"X-Api-Key\"]}}]}}";

/*
 * tshark's reading of @pcap with checksum validation on: one line per frame, the fields
 * tab-separated. The process must succeed.
 */
static char *tshark(const char *pcap, const char *const fields[])
{
	char *argv[64] = { TSHARK, "-n",
			   "-o",   "ip.check_checksum:TRUE",
			   "-o",   "tcp.check_checksum:TRUE",
			   "-o",   "udp.check_checksum:TRUE",
			   "-r",   (char *)pcap,
			   "-T",   "fields",
			   "-E",   "occurrence=f" };
	struct loupe_proc_result r;
	int n = 14;
	char *out;

	for (int i = 0; fields[i]; i++) {
		cr_assert_lt(n, 60);
		argv[n++] = "-e";
		argv[n++] = (char *)fields[i];
	}
	argv[n] = NULL;
	r = loupe_proc_run(tmpdir, argv);
	cr_assert_eq(r.status, 0, "tshark %s: exit %d: %s", pcap, r.status, r.err);
	out = r.out;
	r.out = NULL;
	loupe_proc_result_free(&r);
	return out;
}

/* Field @i (0-based) of a tab-separated @line into @buf. */
static const char *field(const char *line, int i, char *buf, size_t size)
{
	for (; i > 0 && line; i--) {
		line = strchr(line, '\t');
		if (line)
			line++;
	}
	snprintf(buf, size, "%.*s", line ? (int)strcspn(line, "\t\n") : 0, line ? line : "");
	return buf;
}

/* The lines of @text, each NUL-terminated in place; returns how many (at most @max). */
static size_t lines_of(char *text, char **lines, size_t max)
{
	size_t n = 0;

	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < max;
	     l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	return n;
}

/* Every JSON line of @out whose kind is @kind, parsed (json_object_put each). */
static size_t events_of(const char *out, const char *kind, struct json_object **ev, size_t max)
{
	char *text = strdup(out), *save = NULL;
	size_t n = 0;

	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = json_tokener_parse(l);

		cr_assert_not_null(o, "not JSON: %s", l);
		if (n < max && !strcmp(loupe_json_str(o, "kind"), kind))
			ev[n++] = o;
		else
			json_object_put(o);
	}
	free(text);
	return n;
}

static const char *json_array_str(struct json_object *o, const char *key, size_t i)
{
	struct json_object *a;

	if (!json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array) ||
	    i >= json_object_array_length(a))
		return "";
	return json_object_get_string(json_object_array_get_idx(a, i));
}

Test(replay_rewrite, map_dscp_vlan_mask_v4)
{
	static const char *const fields[] = {
		"vlan.id",
		"ip.dsfield.dscp",
		"ip.src",
		"ip.dst",
		"tcp.srcport",
		"tcp.dstport",
		"ip.checksum.status",
		"tcp.checksum.status",
		"http.authorization",
		"http.request.line",
		NULL,
	};
	char *p = write_file("map.json", map_policy), *out = loupe_tmpdir_path(tmpdir, "out.pcap");
	char *orig, *got, *ol[128], *gl[128], a[256], b[256];
	struct json_object *ev[32];
	struct loupe_proc_result r;
	size_t n, no, ng, client = 0, masked = 0;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--stats", "--policy", p, "--write-pcap", out,
		DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_not_null(strstr(r.err, "written to "), "%s", r.err);

	/* a REWRITE per flow, and one more per request whose headers were masked */
	n = events_of(r.out, "REWRITE", ev, 32);
	cr_expect_geq(n, 5, "%s", r.out);
	for (size_t i = 0; i < n; i++) {
		struct json_object *rw = loupe_json_obj(ev[i], "rewrite");

		cr_expect_str_eq(loupe_json_str(ev[i], "dstIp"), "198.18.10.2", "as it came");
		cr_expect_eq(loupe_json_u64(ev[i], "dstPort"), 8080);
		cr_expect_str_eq(loupe_json_str(rw, "newIp"), "198.18.20.2");
		cr_expect_eq(loupe_json_u64(rw, "newPort"), 9090);
		cr_expect_eq(loupe_json_u64(rw, "dscp"), 46);
		cr_expect_eq(loupe_json_u64(rw, "vlanId"), 100);
		cr_expect_str_eq(json_array_str(rw, "actions", 0), "MAP_TO");
		cr_expect_str_eq(json_array_str(rw, "actions", 1), "SET_DSCP");
		cr_expect_str_eq(json_array_str(rw, "actions", 2), "VLAN_PUSH");
		cr_expect_str_eq(loupe_json_str(rw, "policy"), "replay-rw", "%s",
				 json_object_to_json_string(ev[i]));
		cr_expect_str_eq(loupe_json_str(rw, "name"), "to-gateway");
		cr_expect_eq(loupe_json_u64(rw, "generation"), 1);
		if (*json_array_str(rw, "actions", 3)) {
			/* GET with Authorization, POST with X-Api-Key */
			cr_expect_str_eq(json_array_str(rw, "actions", 3), "MASK_HEADERS");
			cr_expect(
				!strcmp(json_array_str(rw, "maskedHeaders", 0), "authorization") ||
					!strcmp(json_array_str(rw, "maskedHeaders", 0),
						"x-api-key"),
				"%s", json_object_to_json_string(ev[i]));
			masked++;
		}
		json_object_put(ev[i]);
	}
	cr_expect_eq(masked, 2, "the GET's Authorization and the POST's X-Api-Key");
	loupe_proc_result_free(&r);

	orig = tshark(DATA "/http-v4.pcap", fields);
	got = tshark(out, fields);
	no = lines_of(orig, ol, 128);
	ng = lines_of(got, gl, 128);
	cr_assert_eq(ng, no, "every frame written (none dropped)");
	for (size_t i = 0; i < ng; i++) {
		bool from_client = !strcmp(field(ol[i], 2, a, sizeof(a)), "198.18.10.1");

		/* 1: good; 2 would be bad */
		cr_expect_str_eq(field(gl[i], 6, a, sizeof(a)), "1", "frame %zu: IP checksum",
				 i + 1);
		cr_expect_str_eq(field(gl[i], 7, a, sizeof(a)), "1", "frame %zu: TCP checksum",
				 i + 1);
		if (!from_client) {
			/* replies: as they came */
			cr_expect_str_eq(field(gl[i], 0, a, sizeof(a)), "", "frame %zu", i + 1);
			cr_expect_str_eq(field(gl[i], 3, a, sizeof(a)),
					 field(ol[i], 3, b, sizeof(b)), "frame %zu", i + 1);
			continue;
		}
		client++;
		cr_expect_str_eq(field(gl[i], 0, a, sizeof(a)), "100", "frame %zu: tag", i + 1);
		cr_expect_str_eq(field(gl[i], 1, a, sizeof(a)), "46", "frame %zu: DSCP", i + 1);
		cr_expect_str_eq(field(gl[i], 3, a, sizeof(a)), "198.18.20.2", "frame %zu", i + 1);
		cr_expect_str_eq(field(gl[i], 5, a, sizeof(a)), "9090", "frame %zu", i + 1);
		cr_expect_str_eq(field(gl[i], 4, a, sizeof(a)), field(ol[i], 4, b, sizeof(b)),
				 "frame %zu: the source port is kept", i + 1);
		/* the secret: as many '*' as it had bytes */
		field(ol[i], 8, b, sizeof(b));
		field(gl[i], 8, a, sizeof(a));
		cr_expect_eq(strlen(a), strlen(b), "frame %zu: %s", i + 1, a);
		cr_expect_eq(strspn(a, "*"), strlen(a), "frame %zu: %s", i + 1, a);
		if (strstr(ol[i], "X-Api-Key: "))
			cr_expect_not_null(strstr(gl[i], "X-Api-Key: ****"), "%s", gl[i]);
		/* headers not named: untouched */
		if (strstr(ol[i], "User-Agent: curl/7.88.1"))
			cr_expect_not_null(strstr(gl[i], "User-Agent: curl/7.88.1"), "%s", gl[i]);
		if (strstr(ol[i], "Host: api.example.test"))
			cr_expect_not_null(strstr(gl[i], "Host: api.example.test"), "%s", gl[i]);
	}
	cr_expect_gt(client, 20);
	cr_expect_null(strstr(got, "loupe-test-token-not-a-secret"), "the secret is in the output");
	free(orig);
	free(got);
	free(out);
	free(p);
}

/* The REWRITE line of text output, and the summary. */
Test(replay_rewrite, text)
{
	char *p = write_file("map.json", map_policy);
	struct loupe_proc_result r;

	r = RUN(LOUPECTL, "replay", "--policy", p, DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_not_null(strstr(r.out, "REWRITE map=198.18.20.2:9090 dscp=46 vlan-push=100 "
					 "policy=replay-rw rewrite=to-gateway gen=1"),
			   "%s", r.out);
	cr_expect_not_null(strstr(r.out, "masked=authorization policy=replay-rw"), "%s", r.out);
	cr_expect_not_null(strstr(r.err, "rewrites: 7 REWRITE events"), "%s", r.err);
	loupe_proc_result_free(&r);
	free(p);
}

/* IPv6 and UDP: mapped, port kept or changed, checksums valid (UDP's is mandatory in IPv6). */
Test(replay_rewrite, map_v6_and_udp)
{
	static const char *const f6[] = { "ipv6.dst", "tcp.dstport", "ipv6.tclass.dscp",
					  "tcp.checksum.status", NULL };
	static const char *const fu[] = {
		"ip.dst", "udp.dstport", "udp.srcport", "ip.checksum.status", "udp.checksum.status",
		NULL
	};
	char *p = write_file("v6.json", POLICY_HEAD
			     "\"rewrites\":["
			     "{\"name\":\"v6\",\"direction\":\"egress\","
			     "\"match\":{\"cidrs\":[\"fd00:198:18:10::2/128\"]},"
			     "\"mapTo\":{\"address\":\"fd00:198:18:20::2\",\"port\":9090},"
			     "\"setDscp\":10},"
			     "{\"name\":\"dns\",\"direction\":\"egress\","
			     "\"match\":{\"cidrs\":[\"198.18.10.2/32\"],"
			     "\"ports\":[{\"port\":53,\"protocol\":\"UDP\"}]},"
			     "\"mapTo\":{\"address\":\"198.18.20.53\",\"port\":5353}}]}}");
	char *out = loupe_tmpdir_path(tmpdir, "out.pcap"), *got, *l[128], a[128];
	struct loupe_proc_result r;
	size_t n, mapped = 0;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, "--write-pcap", out,
		DATA "/http-v6.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_not_null(strstr(r.out, "\"newIp\":\"fd00:198:18:20::2\""), "%s", r.out);
	loupe_proc_result_free(&r);
	got = tshark(out, f6);
	n = lines_of(got, l, 128);
	cr_assert_gt(n, 10);
	for (size_t i = 0; i < n; i++) {
		cr_expect_str_eq(field(l[i], 3, a, sizeof(a)), "1", "frame %zu: TCP checksum",
				 i + 1);
		if (strcmp(field(l[i], 0, a, sizeof(a)), "fd00:198:18:20::2") == 0) {
			mapped++;
			cr_expect_str_eq(field(l[i], 1, a, sizeof(a)), "9090");
			cr_expect_str_eq(field(l[i], 2, a, sizeof(a)), "10", "traffic class DSCP");
		}
	}
	cr_expect_gt(mapped, 5);
	free(got);

	mapped = 0;
	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, "--write-pcap", out,
		DATA "/dns-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	loupe_proc_result_free(&r);
	got = tshark(out, fu);
	n = lines_of(got, l, 128);
	cr_assert_gt(n, 1);
	for (size_t i = 0; i < n; i++) {
		cr_expect_str_eq(field(l[i], 3, a, sizeof(a)), "1", "frame %zu: IP checksum",
				 i + 1);
		/* 1 good, or 4 (not present) for a zero UDP checksum; never 2 */
		cr_expect_str_neq(field(l[i], 4, a, sizeof(a)), "2", "frame %zu: UDP checksum",
				  i + 1);
		if (strcmp(field(l[i], 0, a, sizeof(a)), "198.18.20.53") == 0) {
			mapped++;
			cr_expect_str_eq(field(l[i], 1, a, sizeof(a)), "5353");
		}
	}
	cr_expect_gt(mapped, 0, "%s", got);
	free(got);
	free(out);
	free(p);
}

/* A tag popped off the capture's tagged client frames; the replies keep theirs. */
Test(replay_rewrite, vlan_pop)
{
	static const char *const fields[] = { "vlan.id", "ip.src", "tcp.checksum.status", NULL };
	char *p = write_file("pop.json",
			     POLICY_HEAD "\"rewrites\":[{\"name\":\"untag\",\"direction\":"
					 "\"egress\",\"match\":{\"cidrs\":[\"198.18.0.0/15\"]},"
					 "\"vlan\":{\"pop\":true}}]}}");
	char *out = loupe_tmpdir_path(tmpdir, "out.pcap"), *orig, *got, *ol[128], *gl[128];
	char a[64], b[64];
	struct loupe_proc_result r;
	size_t no, ng, popped = 0;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, "--write-pcap", out,
		DATA "/http-v4-vlan100.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_not_null(strstr(r.out, "\"actions\":[\"VLAN_POP\"]"), "%s", r.out);
	loupe_proc_result_free(&r);
	orig = tshark(DATA "/http-v4-vlan100.pcap", fields);
	got = tshark(out, fields);
	no = lines_of(orig, ol, 128);
	ng = lines_of(got, gl, 128);
	cr_assert_eq(ng, no);
	for (size_t i = 0; i < ng; i++) {
		cr_expect_str_eq(field(gl[i], 1, a, sizeof(a)), field(ol[i], 1, b, sizeof(b)));
		cr_expect_str_eq(field(gl[i], 2, a, sizeof(a)), "1", "frame %zu", i + 1);
		if (!strcmp(field(ol[i], 0, b, sizeof(b)), "100") &&
		    !strcmp(field(gl[i], 0, a, sizeof(a)), ""))
			popped++;
	}
	cr_expect_gt(popped, 5, "%s", got);
	free(orig);
	free(got);
	free(out);
	free(p);
}

/*
 * A rule with an http match in the same set: the flow's verdict waits for the request, and the
 * segment that carries it (the one with the secret) must be mapped and masked all the same.
 */
Test(replay_rewrite, with_an_l7_rule_deciding)
{
	static const char *const fields[] = { "ip.dst", "tcp.dstport", "http.authorization",
					      "tcp.checksum.status", NULL };
	char *p =
		write_file("l7.json", POLICY_HEAD
			   "\"rules\":[{\"name\":\"audit-v1\",\"direction\":\"egress\","
			   "\"match\":{\"cidrs\":[\"198.18.10.2/32\"],\"ports\":[{\"port\":8080}],"
			   "\"http\":{\"paths\":[\"/v1/\"]}},\"action\":\"audit\"}],"
			   "\"rewrites\":[{\"name\":\"to-gateway\",\"direction\":\"egress\","
			   "\"match\":{\"cidrs\":[\"198.18.10.2/32\"],\"ports\":[{\"port\":8080}]},"
			   "\"mapTo\":{\"address\":\"198.18.20.2\",\"port\":9090},"
			   "\"http\":{\"maskHeaders\":[\"authorization\"]}}]}}");
	char *out = loupe_tmpdir_path(tmpdir, "out.pcap"), *got, *l[128], a[128];
	struct loupe_proc_result r;
	size_t n;

	r = RUN(LOUPECTL, "replay", "-o", "json", "--policy", p, "--write-pcap", out,
		DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	cr_expect_not_null(strstr(r.out, "\"rule\":\"audit-v1\""), "%s", r.out);
	cr_expect_not_null(strstr(r.out, "\"maskedHeaderIndexes\":[0]"), "%s", r.out);
	loupe_proc_result_free(&r);
	got = tshark(out, fields);
	n = lines_of(got, l, 128);
	cr_assert_gt(n, 10);
	for (size_t i = 0; i < n; i++) {
		cr_expect_str_neq(field(l[i], 0, a, sizeof(a)), "198.18.10.2",
				  "frame %zu left unmapped", i + 1);
		cr_expect_eq(strspn(field(l[i], 2, a, sizeof(a)), "*"), strlen(a),
			     "frame %zu: Authorization %s", i + 1, a);
		cr_expect_str_eq(field(l[i], 3, a, sizeof(a)), "1", "frame %zu", i + 1);
	}
	free(got);
	free(out);
	free(p);
}

#define DROPPED "dropped by policy (a dry run: the capture is unchanged): "

/* Frames a deny drops are not written: the output holds the frames the program let through. */
Test(replay_rewrite, dropped_not_written)
{
	static const char *const fields[] = { "frame.number", NULL };
	char *p = write_file("deny.json", POLICY_HEAD
			     "\"defaultAction\":\"allow\",\"rules\":[{\"name\":\"deny-api\","
			     "\"direction\":\"egress\",\"match\":{\"http\":{\"hosts\":["
			     "\"api.example.test\"]}},\"action\":\"deny\"}]}}");
	char *out = loupe_tmpdir_path(tmpdir, "out.pcap"), *got, *l[128];
	unsigned long long dropped = 0, written = 0, changed = 1;
	struct loupe_proc_result r;
	const char *s;

	r = RUN(LOUPECTL, "replay", "--policy", p, "-w", out, DATA "/http-v4.pcap");
	cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
	s = strstr(r.err, DROPPED);
	cr_assert_not_null(s, "%s", r.err);
	sscanf(s + strlen(DROPPED), "%llu", &dropped);
	s = strstr(r.err, out);
	cr_assert(s && s[strlen(out)] == ':', "%s", r.err);
	cr_assert_eq(sscanf(s + strlen(out) + 1, " %llu frames, %llu", &written, &changed), 2, "%s",
		     r.err);
	cr_expect_gt(dropped, 0);
	cr_expect_eq(written + dropped, 63, "%s", r.err);
	cr_expect_eq(changed, 0, "no rewrite: written as they came");
	loupe_proc_result_free(&r);
	got = tshark(out, fields);
	cr_expect_eq(lines_of(got, l, 128), written);
	free(got);
	free(out);
	free(p);
}

Test(replay_rewrite, errors)
{
	struct loupe_proc_result r;

	r = RUN(LOUPECTL, "replay", "--write-pcap", "-", DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 2);
	cr_expect_not_null(strstr(r.err, "--write-pcap needs a file name"), "%s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--write-pcap", DATA "/http-v4.pcap", DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 2);
	cr_expect_not_null(strstr(r.err, "would overwrite the capture"), "%s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--write-pcap", "/nonexistent-dir/out.pcap",
		DATA "/http-v4.pcap");
	cr_expect_eq(r.status, 1);
	cr_expect_not_null(strstr(r.err, "/nonexistent-dir/out.pcap: cannot write"), "%s", r.err);
	loupe_proc_result_free(&r);
}
