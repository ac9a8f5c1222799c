// SPDX-License-Identifier: Apache-2.0
/*
 * The metrics endpoint served by libmicrohttpd on a loopback port, fetched with curl: exact
 * /metrics lines and content type, a well-formed exposition, /healthz on a stale heartbeat,
 * /readyz before and after ready, 404 and 405, snapshots (policy rules included) never seen
 * half-published, bind
 * errors (bad address, port in use), and no descriptor left after stop.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "metrics.h"

#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT	   "text/plain; charset=utf-8"

struct reply {
	int status;
	char content_type[128];
	char allow[64];
	char *body;
};

static char tmpdir[64];

static void setup(void)
{
	if (system("command -v curl >/dev/null 2>&1") != 0)
		cr_skip_test("curl is not installed");
	strcpy(tmpdir, "/tmp/loupe-test-metrics-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/body", tmpdir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/headers", tmpdir);
	unlink(p);
	rmdir(tmpdir);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

static char *slurp(const char *p)
{
	char *buf = NULL;
	size_t len = 0, n;
	char chunk[4096];
	FILE *f, *m;

	f = fopen(p, "r");
	if (!f)
		return strdup("");
	m = open_memstream(&buf, &len);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(m);
	fclose(f);
	return buf;
}

/* One request with curl: METHOD http://HOST:PORT/PATH (HEAD through -I). */
static void fetch(const char *method, const char *host, uint16_t port, const char *path,
		  struct reply *r)
{
	char cmd[512], out[256], bodyp[128], hdrp[128], *headers, *h;
	FILE *p;

	memset(r, 0, sizeof(*r));
	snprintf(bodyp, sizeof(bodyp), "%s/body", tmpdir);
	snprintf(hdrp, sizeof(hdrp), "%s/headers", tmpdir);
	snprintf(cmd, sizeof(cmd),
		 "curl -s -g --max-time 10 %s%s -o %s -D %s -w '%%{http_code} %%{content_type}' "
		 "'http://%s:%u%s'",
		 strcmp(method, "HEAD") ? "-X " : "-I", strcmp(method, "HEAD") ? method : "", bodyp,
		 hdrp, host, port, path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	if (!fgets(out, sizeof(out), p))
		out[0] = '\0';
	cr_assert_eq(pclose(p), 0, "curl failed: %s", cmd);
	cr_assert_eq(sscanf(out, "%d %127[^\n]", &r->status, r->content_type) >= 1, 1, "%s", out);
	r->body = slurp(bodyp);
	headers = slurp(hdrp);
	h = strcasestr(headers, "\nAllow: ");
	if (h)
		sscanf(h + 8, "%63[^\r\n]", r->allow);
	free(headers);
}

static struct loupe_metrics *start(const char *version, unsigned int heartbeat_ms)
{
	struct loupe_metrics_opts opts = { .addr = "127.0.0.1:0",
					   .version = version,
					   .heartbeat_timeout_ms = heartbeat_ms };
	struct loupe_metrics *m = NULL;
	int err;

	err = loupe_metrics_start(&opts, &m);
	cr_assert_eq(err, 0, "loupe_metrics_start: %s", strerror(-err));
	cr_assert_neq(loupe_metrics_port(m), 0);
	return m;
}

static void expect_line(const char *body, const char *line)
{
	char *want;

	cr_assert_neq(asprintf(&want, "\n%s\n", line), -1);
	/* the first line has no newline before it */
	cr_expect(strstr(body, want) || strncmp(body, want + 1, strlen(want + 1)) == 0,
		  "missing line: %s", line);
	free(want);
}

static const struct loupe_metrics_rule_hits rule_hits[] = {
	{ "ai-egress-denied", "llm-apis", "deny", 17 },
	{ "ai-egress-denied", "", "allow", 1234 },
	{ "odd\"name", "a\\b", "audit", 0 },
};

static void fill(struct loupe_metrics_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->dp.policy_dropped[LOUPE_DIR_POD_EGRESS] = 81;
	s->dp.policy_dropped[LOUPE_DIR_POD_INGRESS] = 82;
	s->dp.policy_bound_exceeded = 83;
	s->dp.policy_out_of_order = 84;
	s->policy_generation = 85;
	s->policy_reloads_ok = 86;
	s->policy_reloads_refused = 87;
	s->verdicts_unnamed = 88;
	s->dp.rewritten[LOUPE_DIR_POD_EGRESS] = 91;
	s->dp.rewritten[LOUPE_DIR_POD_INGRESS] = 92;
	s->dp.rewrite_failed = 93;
	s->dp.rate_limited[LOUPE_DIR_POD_EGRESS] = 94;
	s->dp.rate_limited[LOUPE_DIR_POD_INGRESS] = 95;
	s->rule_hits = rule_hits;
	s->n_rule_hits = sizeof(rule_hits) / sizeof(rule_hits[0]);
	s->dp.packets[LOUPE_DIR_POD_EGRESS] = 11;
	s->dp.packets[LOUPE_DIR_POD_INGRESS] = 12;
	s->dp.bytes[LOUPE_DIR_POD_EGRESS] = 1100;
	s->dp.bytes[LOUPE_DIR_POD_INGRESS] = 1200;
	s->dp.non_ip[LOUPE_DIR_POD_INGRESS] = 2;
	s->dp.fragments[LOUPE_DIR_POD_EGRESS] = 3;
	s->dp.flows_created = 21;
	s->dp.flow_create_failed = 22;
	s->dp.parse_errors[LOUPE_PERR_IPV4_TRUNCATED] = 44;
	s->dp.parse_errors[LOUPE_PERR_DNS_MALFORMED] = 45;
	s->dp.events[LOUPE_EV_FLOW_START] = 31;
	s->dp.events[LOUPE_EV_HTTP_REQUEST] = 32;
	s->dp.events_lost[LOUPE_EV_HTTP_REQUEST] = 5;
	s->events_emitted[LOUPE_EV_FLOW_END] = 61;
	s->events_emitted[LOUPE_EV_LOST] = 2;
	s->lost_reported = 5;
	s->records_invalid = 1;
	s->links_resyncs = 7;
	s->links_dropped = 8;
	s->pod_addrs_truncated = 9;
	s->ifaces_attached = 3;
	s->ringbuf_pending = 1 << 20;
	s->ringbuf_size = 4 << 20;
	s->output.lines = 71;
	s->output.bytes = 7100;
	s->output.rotations = 1;
	s->output.errors = 4;
	s->output.lines_dropped = 6;
}

Test(metrics, exact_lines_and_content_type)
{
	struct loupe_metrics_snapshot s;
	struct loupe_metrics *m;
	struct reply r;

	m = start("1.2.3-\"test\"", 0);
	fill(&s);
	loupe_metrics_publish(m, &s);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/metrics", &r);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(r.content_type, CT_METRICS);

	static const char *const lines[] = {
		"# HELP loupe_build_info The running loupe-agent's version; always 1.",
		"# TYPE loupe_build_info gauge",
		"loupe_build_info{version=\"1.2.3-\\\"test\\\"\"} 1",
		"# TYPE loupe_packets_total counter",
		"loupe_packets_total{direction=\"pod_egress\"} 11",
		"loupe_packets_total{direction=\"pod_ingress\"} 12",
		"loupe_bytes_total{direction=\"pod_egress\"} 1100",
		"loupe_bytes_total{direction=\"pod_ingress\"} 1200",
		"loupe_non_ip_packets_total{direction=\"pod_ingress\"} 2",
		"loupe_fragments_total{direction=\"pod_egress\"} 3",
		"# TYPE loupe_flows_created_total counter",
		"loupe_flows_created_total 21",
		"loupe_flows_refused_total 22",
		"# TYPE loupe_parse_errors_total counter",
		"loupe_parse_errors_total{reason=\"ETH_TRUNCATED\"} 0",
		"loupe_parse_errors_total{reason=\"IPV4_TRUNCATED\"} 44",
		"loupe_parse_errors_total{reason=\"DNS_MALFORMED\"} 45",
		"# TYPE loupe_events_total counter",
		"loupe_events_total{kind=\"FLOW_START\"} 31",
		"loupe_events_total{kind=\"HTTP_REQUEST\"} 32",
		"loupe_events_total{kind=\"AGENT\"} 0",
		"loupe_events_lost_total{kind=\"HTTP_REQUEST\"} 5",
		"loupe_events_lost_total{kind=\"DNS_QUERY\"} 0",
		"loupe_events_emitted_total{kind=\"FLOW_END\"} 61",
		"loupe_events_emitted_total{kind=\"LOST\"} 2",
		"loupe_lost_reported_total 5",
		"loupe_records_invalid_total 1",
		"# TYPE loupe_links_resyncs_total counter",
		"loupe_links_resyncs_total 7",
		"loupe_links_dropped_total 8",
		"loupe_pod_addrs_truncated_total 9",
		"# TYPE loupe_interfaces_attached gauge",
		"loupe_interfaces_attached 3",
		"# TYPE loupe_ringbuf_pending_bytes gauge",
		"loupe_ringbuf_pending_bytes 1048576",
		"loupe_ringbuf_size_bytes 4194304",
		"# TYPE loupe_ringbuf_fill_ratio gauge",
		"loupe_ringbuf_fill_ratio 0.25",
		"loupe_output_lines_total 71",
		"loupe_output_bytes_total 7100",
		"loupe_output_rotations_total 1",
		"loupe_output_errors_total 4",
		"loupe_output_lines_dropped_total 6",
		"# TYPE loupe_policy_generation gauge",
		"loupe_policy_generation 85",
		"loupe_policy_reloads_total{result=\"ok\"} 86",
		"loupe_policy_reloads_total{result=\"refused\"} 87",
		"# TYPE loupe_policy_rule_flows_total counter",
		"loupe_policy_rule_flows_total{policy=\"ai-egress-denied\",rule=\"llm-apis\","
		"action=\"deny\"} 17",
		"loupe_policy_rule_flows_total{policy=\"ai-egress-denied\",rule=\"\","
		"action=\"allow\"} 1234",
		"loupe_policy_rule_flows_total{policy=\"odd\\\"name\",rule=\"a\\\\b\","
		"action=\"audit\"} 0",
		"loupe_policy_dropped_packets_total{direction=\"pod_egress\"} 81",
		"loupe_policy_dropped_packets_total{direction=\"pod_ingress\"} 82",
		"loupe_policy_bound_exceeded_total 83",
		"loupe_policy_out_of_order_segments_total 84",
		"loupe_policy_verdicts_unnamed_total 88",
		"# TYPE loupe_rewritten_packets_total counter",
		"loupe_rewritten_packets_total{direction=\"pod_egress\"} 91",
		"loupe_rewritten_packets_total{direction=\"pod_ingress\"} 92",
		"# TYPE loupe_rewrite_failed_total counter",
		"loupe_rewrite_failed_total 93",
		"# TYPE loupe_rate_limited_packets_total counter",
		"loupe_rate_limited_packets_total{direction=\"pod_egress\"} 94",
		"loupe_rate_limited_packets_total{direction=\"pod_ingress\"} 95",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		expect_line(r.body, lines[i]);
	/* no UNSPECIFIED kind, no NONE reason */
	cr_expect_null(strstr(r.body, "UNSPECIFIED"));
	cr_expect_null(strstr(r.body, "reason=\"NONE\""));
	free(r.body);

	/* a later snapshot replaces the earlier; its rules are copied, not borrowed */
	s.ifaces_attached = 200;
	{
		struct loupe_metrics_rule_hits one = { "p", "r", "deny", 5 };

		s.rule_hits = &one;
		s.n_rule_hits = 1;
		cr_expect_eq(loupe_metrics_publish(m, &s), 0);
		one.flows = 6;
	}
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/metrics", &r);
	expect_line(r.body, "loupe_interfaces_attached 200");
	expect_line(r.body,
		    "loupe_policy_rule_flows_total{policy=\"p\",rule=\"r\",action=\"deny\"} 5");
	cr_expect_null(strstr(r.body, "llm-apis"));
	free(r.body);
	loupe_metrics_stop(m);
}

/*
 * Text format 0.0.4 as Prometheus reads it: every sample belongs to the family announced by
 * the # TYPE line before it, with one HELP and one TYPE per family, counters end in _total,
 * names are loupe_*, values are numbers, no series repeats, the text ends with a newline.
 */
Test(metrics, exposition_is_well_formed)
{
	char family[128] = "", type[32] = "", *save, *line, *seen = NULL;
	struct loupe_metrics_snapshot s;
	struct loupe_metrics *m;
	struct reply r;
	size_t seen_len = 0;
	int samples = 0;
	FILE *seen_f;

	m = start("0.1.0", 0);
	fill(&s);
	loupe_metrics_publish(m, &s);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/metrics", &r);
	loupe_metrics_stop(m);
	cr_assert_gt(strlen(r.body), 0);
	cr_expect_eq(r.body[strlen(r.body) - 1], '\n');

	seen_f = open_memstream(&seen, &seen_len);
	for (line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128], series[256], help_name[128], rest[256];
		double v;

		if (strncmp(line, "# HELP ", 7) == 0) {
			cr_assert_eq(sscanf(line, "# HELP %127s %255[^\n]", help_name, rest), 2,
				     "%s", line);
			cr_expect_neq(strcmp(help_name, family), 0, "second HELP: %s", line);
			snprintf(family, sizeof(family), "%s", help_name);
			type[0] = '\0';
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			cr_assert_eq(sscanf(line, "# TYPE %127s %31s", name, type), 2, "%s", line);
			cr_expect_str_eq(name, family, "TYPE without its HELP: %s", line);
			cr_expect(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0, "%s",
				  line);
			if (strcmp(type, "counter") == 0)
				cr_expect(strlen(name) > 6 &&
						  strcmp(name + strlen(name) - 6, "_total") == 0,
					  "counter without _total: %s", name);
			continue;
		}
		cr_assert_neq(line[0], '#', "unexpected comment: %s", line);
		cr_assert_eq(sscanf(line, "%255s %lf", series, &v), 2, "bad sample: %s", line);
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(series, "{"), series);
		cr_expect_str_eq(name, family, "sample outside its family: %s", line);
		cr_expect_neq(type[0], '\0', "sample before TYPE: %s", line);
		cr_expect_eq(strncmp(name, "loupe_", 6), 0, "%s", line);
		fflush(seen_f);
		if (seen) {
			char key[260];

			snprintf(key, sizeof(key), "|%s|", series);
			cr_expect_null(strstr(seen, key), "repeated series: %s", series);
		}
		fprintf(seen_f, "|%s|", series);
		samples++;
	}
	fclose(seen_f);
	cr_expect_gt(samples, 60);
	free(seen);
	free(r.body);
}

Test(metrics, healthz_follows_the_heartbeat)
{
	struct loupe_metrics *m;
	struct reply r;

	/* wide enough for curl to start on a loaded machine */
	m = start("0.1.0", 1500);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/healthz", &r);
	cr_expect_eq(r.status, 200, "fresh at start");
	cr_expect_str_eq(r.body, "ok");
	cr_expect_str_eq(r.content_type, CT_TEXT);
	free(r.body);

	usleep(2000 * 1000);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/healthz", &r);
	cr_expect_eq(r.status, 503);
	cr_expect_not_null(strstr(r.body, "no main loop heartbeat"), "%s", r.body);
	free(r.body);

	loupe_metrics_heartbeat(m);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/healthz", &r);
	cr_expect_eq(r.status, 200);
	free(r.body);
	loupe_metrics_stop(m);
}

Test(metrics, readyz_after_set_ready)
{
	struct loupe_metrics *m;
	struct reply r;

	m = start("0.1.0", 0);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/readyz", &r);
	cr_expect_eq(r.status, 503);
	cr_expect_str_eq(r.body, "not ready\n");
	free(r.body);

	loupe_metrics_set_ready(m, true);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/readyz", &r);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(r.body, "ok");
	free(r.body);

	loupe_metrics_set_ready(m, false);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/readyz", &r);
	cr_expect_eq(r.status, 503);
	free(r.body);
	loupe_metrics_stop(m);
}

Test(metrics, not_found_and_not_allowed)
{
	static const char *const missing[] = { "/", "/nope", "/metrics/x", "/metricsx",
					       "/healthz/" };
	struct loupe_metrics *m;
	uint16_t port;
	struct reply r;

	m = start("0.1.0", 0);
	port = loupe_metrics_port(m);
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		fetch("GET", "127.0.0.1", port, missing[i], &r);
		cr_expect_eq(r.status, 404, "%s", missing[i]);
		free(r.body);
	}
	fetch("POST", "127.0.0.1", port, "/metrics", &r);
	cr_expect_eq(r.status, 405);
	cr_expect_str_eq(r.allow, "GET, HEAD");
	free(r.body);
	fetch("DELETE", "127.0.0.1", port, "/readyz", &r);
	cr_expect_eq(r.status, 405);
	free(r.body);
	fetch("PUT", "127.0.0.1", port, "/healthz", &r);
	cr_expect_eq(r.status, 405);
	free(r.body);
	/* a query string does not change the path */
	fetch("GET", "127.0.0.1", port, "/healthz?verbose=1", &r);
	cr_expect_eq(r.status, 200);
	free(r.body);
	/* HEAD, which every HTTP server answers as GET without a body */
	fetch("HEAD", "127.0.0.1", port, "/metrics", &r);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(r.content_type, CT_METRICS);
	free(r.body);
	loupe_metrics_stop(m);
}

Test(metrics, ipv6_loopback)
{
	struct loupe_metrics_opts opts = { .addr = "[::1]:0", .version = "0.1.0" };
	struct loupe_metrics *m;
	struct reply r;
	int err;

	err = loupe_metrics_start(&opts, &m);
	if (err == -EADDRNOTAVAIL || err == -EAFNOSUPPORT)
		cr_skip_test("no IPv6 loopback here: %s", strerror(-err));
	cr_assert_eq(err, 0, "%s", strerror(-err));
	fetch("GET", "[::1]", loupe_metrics_port(m), "/readyz", &r);
	cr_expect_eq(r.status, 503);
	free(r.body);
	loupe_metrics_stop(m);
}

Test(metrics, bad_addresses)
{
	static const char *const malformed[] = { "256.1.1.1:1", "nohost",     "localhost:9750",
						 "127.0.0.1",	"127.0.0.1:", "127.0.0.1:65536",
						 "::1:9750",	"[::1]",      "",
						 "[::1]:9750x", ":9750",      "1.2.3.4.5:1" };
	struct loupe_metrics_opts opts = { .version = "0.1.0" };
	struct loupe_metrics *m = NULL;

	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		opts.addr = malformed[i];
		cr_expect_eq(loupe_metrics_start(&opts, &m), -EINVAL, "%s", malformed[i]);
		cr_expect_null(m);
	}
	opts.addr = NULL;
	cr_expect_eq(loupe_metrics_start(&opts, &m), -EINVAL);
	cr_expect_eq(loupe_metrics_start(NULL, &m), -EINVAL);
	/* TEST-NET-1: well-formed, not an address of this host */
	opts.addr = "192.0.2.1:9750";
	cr_expect_eq(loupe_metrics_start(&opts, &m), -EADDRNOTAVAIL);
	cr_expect_null(m);
}

Test(metrics, port_in_use)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct loupe_metrics_opts opts = { .version = "0.1.0" };
	struct loupe_metrics *m = NULL, *m2 = NULL;
	socklen_t len = sizeof(sin);
	char addr[64];
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	opts.addr = addr;
	cr_expect_eq(loupe_metrics_start(&opts, &m), -EADDRINUSE);
	cr_expect_null(m);
	close(fd);

	/* a second agent on the port of a running one */
	m = start("0.1.0", 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", loupe_metrics_port(m));
	cr_expect_eq(loupe_metrics_start(&opts, &m2), -EADDRINUSE);
	loupe_metrics_stop(m);
	/* and once it stopped, the port is free again */
	cr_expect_eq(loupe_metrics_start(&opts, &m2), 0);
	loupe_metrics_stop(m2);
}

static int count_fds(void)
{
	struct dirent *de;
	int n = 0;
	DIR *d;

	d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(metrics, stop_leaves_no_descriptor)
{
	struct loupe_metrics *m;
	struct reply r;
	int before;

	before = count_fds();
	m = start("0.1.0", 0);
	fetch("GET", "127.0.0.1", loupe_metrics_port(m), "/metrics", &r);
	free(r.body);
	cr_expect_null(loupe_metrics_stop(m));
	cr_expect_eq(count_fds(), before);
	cr_expect_null(loupe_metrics_stop(NULL));
}

struct publisher {
	struct loupe_metrics *m;
	volatile bool stop;
};

static void *publish_loop(void *arg)
{
	struct publisher *p = arg;
	struct loupe_metrics_snapshot s;
	struct loupe_metrics_rule_hits hits[300];
	uint64_t i = 1;

	memset(hits, 0, sizeof(hits));
	while (!p->stop) {
		memset(&s, 0, sizeof(s));
		s.dp.packets[0] = i;
		s.dp.packets[1] = i;
		s.ifaces_attached = i;
		/* a growing, then shrinking set of rules, each with the snapshot's number */
		s.n_rule_hits = 1 + i % 300;
		for (size_t r = 0; r < s.n_rule_hits; r++) {
			snprintf(hits[r].policy, sizeof(hits[r].policy), "p%zu", r);
			snprintf(hits[r].action, sizeof(hits[r].action), "deny");
			hits[r].flows = i;
		}
		s.rule_hits = hits;
		loupe_metrics_publish(p->m, &s);
		i++;
	}
	return NULL;
}

/* Scrapes while the loop publishes: each scrape shows one snapshot, never a mix. */
Test(metrics, snapshots_are_atomic)
{
	struct publisher p = { 0 };
	pthread_t t;

	p.m = start("0.1.0", 0);
	cr_assert_eq(pthread_create(&t, NULL, publish_loop, &p), 0);
	for (int i = 0; i < 20; i++) {
		unsigned long long a = 0, b = 0, c = 0;
		struct reply r;
		char *s;

		fetch("GET", "127.0.0.1", loupe_metrics_port(p.m), "/metrics", &r);
		cr_assert_eq(r.status, 200);
		s = strstr(r.body, "loupe_packets_total{direction=\"pod_egress\"} ");
		cr_assert_not_null(s);
		sscanf(strchr(s, '}') + 2, "%llu", &a);
		s = strstr(r.body, "loupe_packets_total{direction=\"pod_ingress\"} ");
		sscanf(strchr(s, '}') + 2, "%llu", &b);
		s = strstr(r.body, "\nloupe_interfaces_attached ");
		sscanf(s + strlen("\nloupe_interfaces_attached "), "%llu", &c);
		cr_expect(a == b && b == c, "a mixed snapshot: %llu %llu %llu", a, b, c);
		/* every rule of the scrape: the same snapshot, as many as it had */
		{
			unsigned long long v, rules = 0;

			for (s = strstr(r.body, "\nloupe_policy_rule_flows_total{"); s;
			     s = strstr(s + 1, "\nloupe_policy_rule_flows_total{")) {
				sscanf(strchr(s, '}') + 2, "%llu", &v);
				cr_expect_eq(v, a, "rule of another snapshot: %llu, not %llu", v,
					     a);
				rules++;
			}
			cr_expect_eq(rules, 1 + a % 300, "snapshot %llu: %llu rules", a, rules);
		}
		free(r.body);
	}
	p.stop = true;
	pthread_join(t, NULL);
	loupe_metrics_stop(p.m);
}
