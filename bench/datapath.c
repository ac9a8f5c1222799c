// SPDX-License-Identifier: Apache-2.0
/*
 * bench-datapath: ns per packet of loupe's TC program through BPF_PROG_TEST_RUN, next to an
 * empty TC program measured in the same run, for the fixture packets of tests/bpf (same
 * builder). Prints a table of medians and ratios against targets; never fails on time.
 * Not a test: exit status says only whether the measurement could be made.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datapath.h"
#include "loupe_empty.skel.h"
#include "pktbuild.h"
#include "policy.h"
#include "policy_apply.h"

#define REPEAT	  1000000u /* runs per measurement */
#define ROUNDS	  5	   /* measurements per case; the median is reported */
#define CHUNK	  4000u	   /* runs between ring buffer drains: 4000 records fit in 4 MiB */
#define ONE_SHOTS 20000u   /* single runs per measurement when each run needs fresh state */

enum bench_mode {
	BENCH_REPEAT,	/* one BPF_PROG_TEST_RUN with .repeat = REPEAT */
	BENCH_CHUNKED,	/* emits an event per run: .repeat = CHUNK, drained in between */
	BENCH_ONE_SHOT, /* state changes after one run (TLS): fresh flow, .repeat = 1 */
	BENCH_NEW_FLOW, /* the packet opens its flow: forgotten before each single run */
};

struct bench_case {
	const char *name;
	struct loupe_pkt_spec pkt;
	bool baseline;	/* the empty program */
	bool setup_syn; /* open the flow with a SYN first */
	bool policy;	/* on the datapath with POLICY_SET in force */
	enum bench_mode mode;
	double target; /* ratio to the baseline; 0: none */
};

static const struct loupe_pkt_http http_req = { .method = "GET",
						.path = "/api/v1/orders?limit=20",
						.host = "shop.example.test",
						.host_index = 1 };
static const struct loupe_pkt_tls tls_ch = { .sni = "www.example.test",
					     .alpn = { "h2", "http/1.1" },
					     .versions = { 0x0a0a, 0x0304, 0x0303 },
					     .key_share = 32 };
static const struct loupe_pkt_dns dns_q = { .id = 0x4242, .qname = "api.example.test", .qtype = 1 };
static const struct loupe_pkt_http http_ai = {
	.method = "POST", .path = "/v1/chat/completions", .host = "api.openai.com", .host_index = 1
};

/*
 * A set as a cluster might have: the AI egress example of docs/policy.md, and 60 CIDR/port
 * rules before it. The packets below are judged against all of it.
 */
#define POLICY_RULE_CIDR(i)                                                                        \
	"{\"name\":\"net-" #i "\",\"direction\":\"egress\",\"match\":{\"cidrs\":[\"10." #i         \
	".0.0/16\"],\"ports\":[{\"port\":22}]},\"action\":\"deny\"},"
#define POLICY_RULES_10(d)                                                                         \
	POLICY_RULE_CIDR(d##0)                                                                     \
	POLICY_RULE_CIDR(d##1)                                                                     \
	POLICY_RULE_CIDR(d##2) POLICY_RULE_CIDR(d##3) POLICY_RULE_CIDR(d##4)                       \
		POLICY_RULE_CIDR(d##5) POLICY_RULE_CIDR(d##6) POLICY_RULE_CIDR(d##7)               \
			POLICY_RULE_CIDR(d##8) POLICY_RULE_CIDR(d##9)
static const char POLICY_SET[] =
	"[{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"nets\"},"
	"\"spec\":{\"priority\":10,\"podSelector\":{},\"rules\":[" POLICY_RULES_10(
		1) POLICY_RULES_10(2) POLICY_RULES_10(3) POLICY_RULES_10(4) POLICY_RULES_10(5)
		POLICY_RULES_10(
			6) "{\"name\":\"last\",\"direction\":\"ingress\","
			   "\"match\":{},\"action\":\"audit\"}]}},"
			   "{\"apiVersion\":\"loupe.dev/"
			   "v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"ai\"},"
			   "\"spec\":{\"priority\":20,\"podSelector\":{},\"rules\":["
			   "{\"name\":\"llm-sni\",\"direction\":\"egress\",\"match\":{\"tls\":{"
			   "\"sni\":["
			   "\"api.openai.com\",\"*.anthropic.com\"]}},\"action\":\"deny\"},"
			   "{\"name\":\"llm-host\",\"direction\":\"egress\",\"match\":{\"http\":{"
			   "\"hosts\":["
			   "\"api.openai.com\",\"*.anthropic.com\"]}},\"action\":\"audit\"},"
			   "{\"name\":\"llm-dns\",\"direction\":\"egress\",\"match\":{\"dns\":{"
			   "\"names\":["
			   "\"api.openai.com\",\"*.anthropic.com\"]}},\"action\":\"audit\"}]}}]";

#define DATA_128                                                                                   \
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"         \
	"0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct bench_case cases[] = {
	{ "empty program (baseline)",
	  { .proto = IPPROTO_TCP, .dport = 8080, .payload = DATA_128 },
	  .baseline = true },
	{ "established TCP data",
	  { .proto = IPPROTO_TCP, .dport = 8080, .payload = DATA_128 },
	  .setup_syn = true,
	  .target = 2.0 },
	{ "established TCP, 802.1Q tag",
	  { .vlans = 1,
	    .vlan = { { .vid = 100 } },
	    .proto = IPPROTO_TCP,
	    .dport = 8080,
	    .payload = DATA_128 },
	  .setup_syn = true,
	  .target = 2.0 },
	{ "first HTTP request",
	  { .proto = IPPROTO_TCP, .dport = 80, .http = &http_req },
	  .setup_syn = true,
	  .mode = BENCH_CHUNKED,
	  .target = 6.0 },
	{ "DNS query (UDP)",
	  { .proto = IPPROTO_UDP, .dport = 53, .dns = &dns_q },
	  .mode = BENCH_CHUNKED,
	  .target = 6.0 },
	{ "TLS ClientHello",
	  { .proto = IPPROTO_TCP, .dport = 443, .tls = &tls_ch },
	  .setup_syn = true,
	  .mode = BENCH_ONE_SHOT,
	  .target = 6.0 },
	{ "empty program, one-shot runs",
	  { .proto = IPPROTO_TCP, .dport = 443, .tls = &tls_ch },
	  .baseline = true,
	  .mode = BENCH_ONE_SHOT },
	/* policies: the same packets with POLICY_SET in force; compare with the rows above */
	{ "policy: established, allowed",
	  { .proto = IPPROTO_TCP, .dport = 8080, .payload = DATA_128 },
	  .setup_syn = true,
	  .policy = true,
	  .target = 2.0 },
	{ "new flow (SYN), no policy",
	  { .proto = IPPROTO_TCP, .dport = 8080, .tcp = { .flags = LOUPE_TCP_SYN } },
	  .mode = BENCH_NEW_FLOW },
	{ "policy: new flow judged on L4",
	  { .proto = IPPROTO_TCP, .dport = 8080, .tcp = { .flags = LOUPE_TCP_SYN } },
	  .policy = true,
	  .mode = BENCH_NEW_FLOW },
	{ "policy: HTTP request judged",
	  { .proto = IPPROTO_TCP, .dport = 80, .http = &http_ai },
	  .setup_syn = true,
	  .policy = true,
	  .mode = BENCH_ONE_SHOT,
	  .target = 6.0 },
	{ "policy: DNS query judged",
	  { .proto = IPPROTO_UDP, .dport = 53, .dns = &dns_q },
	  .policy = true,
	  .mode = BENCH_NEW_FLOW,
	  .target = 6.0 },
	{ "policy: TLS ClientHello judged",
	  { .proto = IPPROTO_TCP, .dport = 443, .tls = &tls_ch },
	  .setup_syn = true,
	  .policy = true,
	  .mode = BENCH_ONE_SHOT,
	  .target = 6.0 },
};

static int on_record(void *ctx, const void *record, size_t size)
{
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Runs @pkt @repeat times; *ret_ns gets the average ns per run. */
static int test_run(int prog_fd, const struct loupe_pkt *pkt, unsigned repeat, double *ret_ns)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt->buf, .data_size_in = pkt->len,
		    .repeat = repeat);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);

	if (err)
		return -errno;
	*ret_ns = opts.duration;
	return 0;
}

/* Forgets the flow of an IPv4 packet sent by the pod, so that the next one opens it anew. */
static void forget_flow4(struct loupe_datapath *dp, const struct loupe_pkt *pkt, uint8_t protocol)
{
	struct loupe_flow_key4 key = { .pod_port = htons(pkt->sport),
				       .peer_port = htons(pkt->dport),
				       .protocol = protocol };

	memcpy(&key.pod_addr, pkt->src + 12, 4);
	memcpy(&key.peer_addr, pkt->dst + 12, 4);
	bpf_map_delete_elem(loupe_datapath_flows_fd(dp, false), &key);
}

static int syn_of(const struct bench_case *c, struct loupe_pkt *ret)
{
	struct loupe_pkt_spec syn = c->pkt;

	syn.payload = NULL;
	syn.http = NULL;
	syn.tls = NULL;
	syn.dns = NULL;
	syn.tcp.flags = LOUPE_TCP_SYN;
	return loupe_pkt_build(&syn, ret);
}

/* One measurement of @c: average ns per packet. */
static int measure(struct loupe_datapath *dp, int prog_fd, const struct bench_case *c,
		   const struct loupe_pkt *pkt, const struct loupe_pkt *syn, double *ret_ns)
{
	double ns, sum = 0;
	unsigned i, n;
	int err, rc;

	switch (c->mode) {
	case BENCH_REPEAT:
		return test_run(prog_fd, pkt, REPEAT, ret_ns);
	case BENCH_CHUNKED:
		n = REPEAT / CHUNK;
		for (i = 0; i < n; i++) {
			err = test_run(prog_fd, pkt, CHUNK, &ns);
			if (err)
				return err;
			sum += ns;
			loupe_datapath_drain(dp);
		}
		*ret_ns = sum / n;
		return 0;
	case BENCH_ONE_SHOT:
	case BENCH_NEW_FLOW:
		for (i = 0; i < ONE_SHOTS; i++) {
			if (!c->baseline) {
				forget_flow4(dp, pkt, c->pkt.proto);
				err = c->mode == BENCH_NEW_FLOW
					      ? 0
					      : loupe_datapath_run(dp, LOUPE_DIR_POD_EGRESS,
								   syn->buf, syn->len, 0, &rc);
				if (err)
					return err;
			}
			err = test_run(prog_fd, pkt, 1, &ns);
			if (err)
				return err;
			sum += ns;
			if (i % CHUNK == 0)
				loupe_datapath_drain(dp);
		}
		loupe_datapath_drain(dp);
		*ret_ns = sum / ONE_SHOTS;
		return 0;
	}
	return -EINVAL;
}

int main(void)
{
	const size_t ncases = sizeof(cases) / sizeof(cases[0]);
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_datapath *dp = NULL, *dp_policy = NULL;
	struct loupe_policy_runtime *rt = NULL;
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error perr;
	struct loupe_empty_bpf *empty = NULL;
	double median[sizeof(cases) / sizeof(cases[0])];
	double base_repeat = 0, base_one_shot = 0;
	struct loupe_counters cnt;
	int ret = EXIT_FAILURE;
	size_t i;
	int err;

	err = loupe_datapath_open(&opts, on_record, NULL, &dp);
	if (err) {
		fprintf(stderr, "bench-datapath: loupe_datapath_open: %s%s\n", strerror(-err),
			err == -EPERM ? " (needs root)" : "");
		goto out;
	}
	err = loupe_datapath_open(&opts, on_record, NULL, &dp_policy);
	if (!err)
		err = loupe_policy_runtime_open(dp_policy, &rt);
	set = calloc(1, sizeof(*set));
	if (!err && !set)
		err = -ENOMEM;
	if (!err)
		err = loupe_policy_parse(POLICY_SET, strlen(POLICY_SET), "bench", set, &perr);
	if (!err)
		err = loupe_policy_apply(rt, set, NULL, 0, &perr);
	if (err) {
		fprintf(stderr, "bench-datapath: the policy datapath: %s (%s: %s)\n",
			strerror(-err), perr.path, perr.message);
		goto out;
	}
	empty = loupe_empty_bpf__open_and_load();
	if (!empty) {
		fprintf(stderr, "bench-datapath: loading loupe_empty: %s\n", strerror(errno));
		goto out;
	}

	for (i = 0; i < ncases; i++) {
		const struct bench_case *c = &cases[i];
		struct loupe_datapath *cdp = c->policy ? dp_policy : dp;
		int prog_fd = c->baseline ? bpf_program__fd(empty->progs.loupe_empty)
					  : loupe_datapath_prog_fd(cdp, LOUPE_DIR_POD_EGRESS);
		struct loupe_pkt pkt, syn;
		struct loupe_pkt_spec spec = c->pkt;
		double runs[ROUNDS];
		int r, rc;

		spec.sport = 30000 + i;
		if (loupe_pkt_build(&spec, &pkt) || syn_of(c, &syn)) {
			fprintf(stderr, "bench-datapath: %s: cannot build the packet\n", c->name);
			goto out;
		}
		if (c->setup_syn && !c->baseline) {
			err = loupe_datapath_run(cdp, LOUPE_DIR_POD_EGRESS, syn.buf, syn.len, 0,
						 &rc);
			if (err) {
				fprintf(stderr, "bench-datapath: %s: SYN: %s\n", c->name,
					strerror(-err));
				goto out;
			}
		}
		for (r = 0; r < ROUNDS; r++) {
			err = measure(cdp, prog_fd, c, &pkt, &syn, &runs[r]);
			if (err) {
				fprintf(stderr, "bench-datapath: %s: %s\n", c->name,
					strerror(-err));
				goto out;
			}
		}
		qsort(runs, ROUNDS, sizeof(runs[0]), cmp_double);
		median[i] = runs[ROUNDS / 2];
		if (c->baseline && c->mode == BENCH_ONE_SHOT)
			base_one_shot = median[i];
		else if (c->baseline)
			base_repeat = median[i];
	}

	printf("bench-datapath: BPF_PROG_TEST_RUN, median of %d measurements of %u runs;\n"
	       "  cases with an event per run: chunks of %u runs, ring buffer drained between;\n"
	       "  TLS, new flows and judged requests: %u single runs on a fresh flow each,\n"
	       "  against the empty program run the same way; \"policy:\" rows have a set\n"
	       "  of %u rules in force (AI egress and 60 CIDR rules before it)\n\n",
	       ROUNDS, REPEAT, CHUNK, ONE_SHOTS, set->n_rules);
	printf("%-32s %10s %8s %8s  %s\n", "case", "ns/packet", "ratio", "target", "");
	for (i = 0; i < ncases; i++) {
		const struct bench_case *c = &cases[i];
		double base = c->mode == BENCH_REPEAT || c->mode == BENCH_CHUNKED ? base_repeat
										  : base_one_shot;
		double ratio = base > 0 ? median[i] / base : 0;
		char target[16] = "-";

		if (c->target > 0)
			snprintf(target, sizeof(target), "<= %.1fx", c->target);
		printf("%-32s %10.1f %7.2fx %8s  %s\n", c->name, median[i], ratio, target,
		       c->target <= 0	    ? ""
		       : ratio <= c->target ? "ok"
					    : "over");
	}
	if (!loupe_datapath_read_counters(dp, &cnt))
		printf("\nevents: %llu submitted, %llu lost (ring buffer full)\n",
		       (unsigned long long)(cnt.events[LOUPE_EV_HTTP_REQUEST] +
					    cnt.events[LOUPE_EV_TLS_CLIENT_HELLO] +
					    cnt.events[LOUPE_EV_DNS_QUERY] +
					    cnt.events[LOUPE_EV_FLOW_START]),
		       (unsigned long long)(cnt.events_lost[LOUPE_EV_HTTP_REQUEST] +
					    cnt.events_lost[LOUPE_EV_TLS_CLIENT_HELLO] +
					    cnt.events_lost[LOUPE_EV_DNS_QUERY] +
					    cnt.events_lost[LOUPE_EV_FLOW_START]));
	ret = EXIT_SUCCESS;
out:
	loupe_empty_bpf__destroy(empty);
	loupe_policy_runtime_free(rt);
	loupe_policy_set_free(set);
	loupe_datapath_free(dp_policy);
	loupe_datapath_free(dp);
	return ret;
}
