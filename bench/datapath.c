// SPDX-License-Identifier: Apache-2.0
/*
 * bench-datapath: ns per packet of loupe's TC program through BPF_PROG_TEST_RUN, next to an
 * empty TC program measured in the same run, for the fixture packets of tests/bpf (same
 * builder); the "policy:" rows once for each policy set of policy_sets[] in force. Rounds go
 * over every case in turn, so that a slow moment of a shared machine falls on all of them.
 * Prints a table of medians and ratios against targets; never fails on time.
 * Not a test: exit status says only whether the measurement could be made.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
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
#include "policy_set.h"

#define REPEAT	  1000000u /* runs per measurement */
#define ROUNDS	  5	   /* measurements per case; the median is reported */
#define CHUNK	  4000u	   /* runs between ring buffer drains: 4000 records fit in 4 MiB */
#define ONE_SHOTS 20000u   /* single runs per measurement when each run needs fresh state */
#define SYN_SEQ	  1000u	   /* the SYN's sequence number; the data follows it */

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
	bool policy;	/* on a datapath with a set of policy_sets[] in force: a row per set */
	bool cidr_rule; /* to the address and port of the set's last egress TCP deny CIDR rule */
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
/* What the AI egress rules of docs/policy.md judge: all three are denied for this pod. */
static const struct loupe_pkt_http http_ai = {
	.method = "POST", .path = "/v1/chat/completions", .host = "api.openai.com", .host_index = 1
};
static const struct loupe_pkt_tls tls_ai = { .sni = "api.anthropic.com",
					     .alpn = { "h2", "http/1.1" },
					     .versions = { 0x0a0a, 0x0304, 0x0303 },
					     .key_share = 32 };
static const struct loupe_pkt_dns dns_ai = { .id = 0x4243, .qname = "api.openai.com", .qtype = 1 };

/*
 * The sets the "policy:" rows run with (bench/policy_set.h): CIDR/port rules first, then the
 * AI egress example of docs/policy.md. The packets are judged against all of it: the bitmaps
 * of a set are as many 64-bit words as it has rules / 64, and the judge ANDs them all.
 */
static const unsigned int policy_sets[] = { 0, 64, 10000 }; /* 0: none, for comparison */
#define N_SETS (sizeof(policy_sets) / sizeof(policy_sets[0]))

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
	/*
	 * Policies: a row per set of policy_sets[]. The targets are issue 4's: a flow hit <= 2x,
	 * the first packet carrying L7 (judged then) <= 8x.
	 */
	{ "policy: established (flow hit)",
	  { .proto = IPPROTO_TCP, .dport = 8080, .payload = DATA_128 },
	  .setup_syn = true,
	  .policy = true,
	  .target = 2.0 },
	{ "policy: SYN, pending L7 rules",
	  { .proto = IPPROTO_TCP, .dport = 8080, .tcp = { .flags = LOUPE_TCP_SYN } },
	  .policy = true,
	  .mode = BENCH_NEW_FLOW },
	{ "policy: SYN denied, CIDR rule",
	  { .proto = IPPROTO_TCP, .tcp = { .flags = LOUPE_TCP_SYN } },
	  .policy = true,
	  .cidr_rule = true,
	  .mode = BENCH_NEW_FLOW },
	{ "policy: HTTP request, Host deny",
	  { .proto = IPPROTO_TCP, .dport = 80, .http = &http_ai },
	  .setup_syn = true,
	  .policy = true,
	  .mode = BENCH_ONE_SHOT,
	  .target = 8.0 },
	{ "policy: DNS query, name deny",
	  { .proto = IPPROTO_UDP, .dport = 53, .dns = &dns_ai },
	  .policy = true,
	  .mode = BENCH_NEW_FLOW,
	  .target = 8.0 },
	{ "policy: TLS ClientHello, SNI deny",
	  { .proto = IPPROTO_TCP, .dport = 443, .tls = &tls_ai },
	  .setup_syn = true,
	  .policy = true,
	  .mode = BENCH_ONE_SHOT,
	  .target = 8.0 },
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

static int syn_of(const struct loupe_pkt_spec *spec, struct loupe_pkt *ret)
{
	struct loupe_pkt_spec syn = *spec;

	syn.payload = NULL;
	syn.http = NULL;
	syn.tls = NULL;
	syn.dns = NULL;
	syn.tcp.flags = LOUPE_TCP_SYN;
	syn.tcp.seq = SYN_SEQ;
	return loupe_pkt_build(&syn, ret);
}

/* One measurement of @c: average ns per packet. */
static int measure(struct loupe_datapath *dp, int prog_fd, const struct bench_case *c,
		   const struct loupe_pkt *pkt, const struct loupe_pkt *syn, double *ret_ns)
{
	double ns = 0, sum = 0;
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

/* One line of the table: a case, on the datapath of a set or of none. */
struct bench_row {
	const struct bench_case *c;
	int set; /* index in policy_sets[]; -1: no policy */
	struct loupe_pkt_spec spec;
	struct loupe_pkt pkt, syn;
	struct bench_policy_rule rule; /* cidr_rule: the rule the packet is sent for */
	unsigned int rule_index;
	int tc_action; /* what the program returned for the packet, on a run before the rounds */
	double runs[ROUNDS];
	double median;
};

/*
 * The last egress TCP deny rule on an IPv4 CIDR of the set of @n_rules: its bit is deep. With
 * no policy, that of the largest set.
 */
static int cidr_rule_of(unsigned int n_rules, struct bench_row *row)
{
	if (!n_rules)
		n_rules = policy_sets[N_SETS - 1];
	for (unsigned int i = n_rules - BENCH_POLICY_AI_RULES; i-- > 0;) {
		bench_policy_rule(i, &row->rule);
		if (row->rule.family == AF_INET && row->rule.egress &&
		    row->rule.proto == IPPROTO_TCP && !strcmp(row->rule.act, "deny")) {
			row->rule_index = i;
			row->spec.dst = row->rule.addr;
			row->spec.dport = row->rule.port;
			return 0;
		}
	}
	return -ENOENT;
}

/* A datapath with the set of @n_rules rules in force. */
static int policy_datapath(unsigned int n_rules, struct loupe_datapath **ret_dp,
			   struct loupe_policy_runtime **ret_rt)
{
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error perr = { 0 };
	int err;

	err = loupe_datapath_open(&opts, on_record, NULL, ret_dp);
	if (!err)
		err = loupe_policy_runtime_open(*ret_dp, ret_rt);
	if (!err)
		err = bench_policy_set(n_rules, &set, &perr);
	if (!err)
		err = loupe_policy_apply(*ret_rt, set, NULL, 0, &perr);
	if (err)
		fprintf(stderr, "bench-datapath: a datapath with %u rules: %s%s%s\n", n_rules,
			strerror(-err), perr.message[0] ? ": " : "", perr.message);
	loupe_policy_set_free(set);
	return err;
}

int main(void)
{
	const size_t ncases = sizeof(cases) / sizeof(cases[0]);
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_datapath *dp = NULL, *dp_set[N_SETS] = { 0 };
	struct loupe_policy_runtime *rt[N_SETS] = { 0 };
	struct loupe_empty_bpf *empty = NULL;
	struct bench_row *rows = NULL;
	double base_repeat = 0, base_one_shot = 0;
	uint64_t submitted = 0, lost = 0;
	struct loupe_counters cnt;
	int ret = EXIT_FAILURE;
	size_t i, n = 0;
	int err;

	err = loupe_datapath_open(&opts, on_record, NULL, &dp);
	if (err) {
		fprintf(stderr, "bench-datapath: loupe_datapath_open: %s%s\n", strerror(-err),
			err == -EPERM ? " (needs root)" : "");
		goto out;
	}
	for (i = 0; i < N_SETS; i++)
		if (policy_sets[i] && policy_datapath(policy_sets[i], &dp_set[i], &rt[i]))
			goto out;
	empty = loupe_empty_bpf__open_and_load();
	if (!empty) {
		fprintf(stderr, "bench-datapath: loading loupe_empty: %s\n", strerror(errno));
		goto out;
	}

	/* the rows: a policy case once per set, next to each other */
	rows = calloc(ncases * N_SETS, sizeof(*rows));
	if (!rows)
		goto out;
	for (i = 0; i < ncases; i++)
		for (size_t k = 0; k < (cases[i].policy ? N_SETS : 1); k++) {
			struct bench_row *row = &rows[n];

			row->c = &cases[i];
			row->set = cases[i].policy ? (int)k : -1;
			row->spec = cases[i].pkt;
			row->spec.sport = 30000 + n++;
			/* the client's first byte: a policy judges a request only from there */
			if (cases[i].setup_syn)
				row->spec.tcp.seq = SYN_SEQ + 1;
			if (cases[i].cidr_rule && cidr_rule_of(policy_sets[k], row)) {
				fprintf(stderr, "bench-datapath: %s: no such rule\n",
					cases[i].name);
				goto out;
			}
		}

	for (i = 0; i < n; i++) {
		struct bench_row *row = &rows[i];
		struct loupe_datapath *rdp =
			row->set < 0 || !dp_set[row->set] ? dp : dp_set[row->set];
		int rc;

		if (loupe_pkt_build(&row->spec, &row->pkt) || syn_of(&row->spec, &row->syn)) {
			fprintf(stderr, "bench-datapath: %s: cannot build the packet\n",
				row->c->name);
			goto out;
		}
		if (row->c->baseline)
			continue;
		if (row->c->setup_syn) {
			if (row->c->mode == BENCH_ONE_SHOT)
				forget_flow4(rdp, &row->pkt, row->spec.proto);
			err = loupe_datapath_run(rdp, LOUPE_DIR_POD_EGRESS, row->syn.buf,
						 row->syn.len, 0, &rc);
			if (err) {
				fprintf(stderr, "bench-datapath: %s: SYN: %s\n", row->c->name,
					strerror(-err));
				goto out;
			}
		}
		/* what the program does with the packet, on a flow as measure() leaves it */
		if (row->c->mode == BENCH_NEW_FLOW)
			forget_flow4(rdp, &row->pkt, row->spec.proto);
		err = loupe_datapath_run(rdp, LOUPE_DIR_POD_EGRESS, row->pkt.buf, row->pkt.len, 0,
					 &row->tc_action);
		loupe_datapath_drain(rdp);
		if (err) {
			fprintf(stderr, "bench-datapath: %s: %s\n", row->c->name, strerror(-err));
			goto out;
		}
	}
	for (int r = 0; r < ROUNDS; r++)
		for (i = 0; i < n; i++) {
			struct bench_row *row = &rows[i];
			struct loupe_datapath *rdp =
				row->set < 0 || !dp_set[row->set] ? dp : dp_set[row->set];
			int prog_fd = row->c->baseline
					      ? bpf_program__fd(empty->progs.loupe_empty)
					      : loupe_datapath_prog_fd(rdp, LOUPE_DIR_POD_EGRESS);

			err = measure(rdp, prog_fd, row->c, &row->pkt, &row->syn, &row->runs[r]);
			if (err) {
				fprintf(stderr, "bench-datapath: %s: %s\n", row->c->name,
					strerror(-err));
				goto out;
			}
		}
	for (i = 0; i < n; i++) {
		struct bench_row *row = &rows[i];

		qsort(row->runs, ROUNDS, sizeof(row->runs[0]), cmp_double);
		row->median = row->runs[ROUNDS / 2];
		if (row->c->baseline && row->c->mode == BENCH_ONE_SHOT)
			base_one_shot = row->median;
		else if (row->c->baseline)
			base_repeat = row->median;
	}

	printf("bench-datapath: BPF_PROG_TEST_RUN, median of %d measurements of %u runs, the\n"
	       "  rounds going over every row in turn;\n"
	       "  cases with an event per run: chunks of %u runs, ring buffer drained between;\n"
	       "  TLS, new flows and judged requests: %u single runs on a fresh flow each,\n"
	       "  against the empty program run the same way;\n"
	       "  \"policy:\" rows: \"set\" rules in force (none: the same packet without a\n"
	       "  policy), CIDR/port rules (%d to a policy)\n"
	       "  then the 6 AI egress rules of docs/policy.md, which judge the L7 rows;\n"
	       "  tc: what the program returned for the packet on a run before the rounds\n\n",
	       ROUNDS, REPEAT, CHUNK, ONE_SHOTS, BENCH_POLICY_PER_POLICY);
	printf("%-34s %6s %6s %10s %8s %8s  %s\n", "case", "set", "tc", "ns/packet", "ratio",
	       "target", "");
	for (i = 0; i < n; i++) {
		const struct bench_row *row = &rows[i];
		const struct bench_case *c = row->c;
		double base = c->mode == BENCH_REPEAT || c->mode == BENCH_CHUNKED ? base_repeat
										  : base_one_shot;
		double ratio = base > 0 ? row->median / base : 0;
		/* the targets of policy rows are for a set in force */
		double goal = row->set >= 0 && !policy_sets[row->set] ? 0 : c->target;
		char target[16] = "-", set[16] = "-", tc[16] = "-";

		if (goal > 0)
			snprintf(target, sizeof(target), "<= %.1fx", goal);
		if (row->set >= 0 && policy_sets[row->set])
			snprintf(set, sizeof(set), "%u", policy_sets[row->set]);
		else if (row->set >= 0)
			snprintf(set, sizeof(set), "none");
		if (!c->baseline)
			snprintf(tc, sizeof(tc), "%s",
				 row->tc_action == TC_ACT_SHOT ? "drop"
				 : row->tc_action == TC_ACT_OK || row->tc_action == TC_ACT_UNSPEC
					 ? "pass"
					 : "other");
		printf("%-34s %6s %6s %10.1f %7.2fx %8s  %s\n", c->name, set, tc, row->median,
		       ratio, target,
		       goal <= 0       ? ""
		       : ratio <= goal ? "ok"
				       : "over");
	}
	printf("\n");
	for (i = 0; i < n; i++)
		if (rows[i].c->cidr_rule && policy_sets[rows[i].set])
			printf("%s, set %u: net-%u (bit %u of %u), %s/%u port %u\n",
			       rows[i].c->name, policy_sets[rows[i].set], rows[i].rule_index,
			       rows[i].rule_index, policy_sets[rows[i].set], rows[i].rule.addr,
			       rows[i].rule.prefix, rows[i].rule.port);
	for (i = 0; i <= N_SETS; i++) {
		if (i < N_SETS && !dp_set[i])
			continue;
		if (loupe_datapath_read_counters(i < N_SETS ? dp_set[i] : dp, &cnt))
			continue;
		for (int k = 0; k < LOUPE_EV_KIND_MAX; k++) {
			submitted += cnt.events[k];
			lost += cnt.events_lost[k];
		}
	}
	printf("events: %llu submitted, %llu lost (ring buffer full)\n",
	       (unsigned long long)submitted, (unsigned long long)lost);
	ret = EXIT_SUCCESS;
out:
	free(rows);
	loupe_empty_bpf__destroy(empty);
	for (i = 0; i < N_SETS; i++) {
		loupe_policy_runtime_free(rt[i]);
		loupe_datapath_free(dp_set[i]);
	}
	loupe_datapath_free(dp);
	return ret;
}
