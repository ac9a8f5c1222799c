// SPDX-License-Identifier: Apache-2.0
/*
 * bench-datapath: ns per packet of loupe's TC program through BPF_PROG_TEST_RUN, next to an
 * empty TC program measured in the same run, for the fixture packets of tests/bpf (same
 * builder); the "policy:" rows once for each policy set of policy_sets[] in force; the
 * "rewrite:" rows once on a datapath with the rewrite set (or the rate limit) in force and once
 * on one without, in single runs (a rewritten packet would otherwise be run again as it was left).
 * Rounds go over every case in turn, so that a slow moment of a shared machine falls on all of
 * them.
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
	BENCH_SINGLE,	/* the program changes the packet: .repeat = 1, the flow kept */
};

struct bench_case {
	const char *name;
	struct loupe_pkt_spec pkt;
	bool baseline;	/* the empty program */
	bool setup_syn; /* open the flow with a SYN first */
	bool policy;	/* on a datapath with a set of policy_sets[] in force: a row per set */
	bool cidr_rule; /* to the address and port of the set's last egress TCP deny CIDR rule */
	bool rewrite;	/* a row on a datapath without rewrites, then one with RW_SET in force */
	bool rate;	/* rewrite, with RATE_SET (a rate limit) in force instead */
	bool reply;	/* the peer's packet (POD_INGRESS) to the pod's port of the row */
	/* rewrite rows: the flow opened (SYN) to this address and port on the datapath with the
	 * set (to the virtual address); without it, to the source of the packet (the real one) */
	const char *open_dst;
	uint16_t open_dport;
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

/*
 * The "rewrite:" rows' sets (docs/rewrite.md), on a datapath each, put in force for "lo" (the
 * interface of BPF_PROG_TEST_RUN's packets, which a rate limit is chosen by). The rate limit has
 * a datapath of its own: it meters every flow of the pod, and would be in the other rows too.
 */
#define VIRT4 "198.18.5.5"
#define REAL4 "198.18.6.6"
#define VIRT6 "fd00:198:18:5::5"
#define REAL6 "fd00:198:18:6::6"
#define MASK_REQUEST                                                                               \
	"POST /v1/chat/completions HTTP/1.1\r\nHost: llm.internal\r\n"                             \
	"Authorization: Bearer sk-proj-0123456789abcdef0123456789abcdef\r\n"                       \
	"accept: */*\r\nx-api-key: k-0123456789abcdef\r\nContent-Type: application/json\r\n"       \
	"Content-Length: 2\r\n\r\n{}"

/* a segment of a request's body: not a request line (filled in main()) */
static char bulk[1400];

static const char RW_SET[] =
	"[{\"apiVersion\":\"loupe.dev/"
	"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"bench-rw\"},\n"
	" \"spec\":{\"podSelector\":{},\"rewrites\":[\n"
	"  {\"name\":\"map4\",\"direction\":\"egress\",\"match\":{\"cidrs\":[\"" VIRT4 "/32\"],"
	"\"ports\":[{\"port\":80}]},\n   \"mapTo\":{\"address\":\"" REAL4 "\",\"port\":8080}},\n"
	"  {\"name\":\"map6\",\"direction\":\"egress\",\"match\":{\"cidrs\":[\"" VIRT6 "/128\"],"
	"\"ports\":[{\"port\":80}]},\n   \"mapTo\":{\"address\":\"" REAL6 "\",\"port\":8080}},\n"
	"  {\"name\":\"dscp\",\"direction\":\"egress\",\"match\":{\"ports\":[{\"port\":5060}]},"
	"\"setDscp\":46},\n"
	"  {\"name\":\"pop\",\"direction\":\"egress\",\"match\":{\"ports\":[{\"port\":7000}]},"
	"\"vlan\":{\"pop\":true}},\n"
	"  {\"name\":\"push\",\"direction\":\"egress\",\"match\":{\"ports\":[{\"port\":7001}]},"
	"\"vlan\":{\"push\":42}},\n"
	"  {\"name\":\"mask\",\"direction\":\"egress\",\"match\":{\"ports\":[{\"port\":80}]},\n"
	"   \"http\":{\"maskHeaders\":[\"authorization\",\"x-api-key\"]}}]}}]";

/* 2^40 bytes/s and a burst of 2^32 (the largest): the bucket is never empty */
static const char RATE_SET[] =
	"[{\"apiVersion\":\"loupe.dev/"
	"v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"bench-rate\"},\n"
	" \"spec\":{\"podSelector\":{},\"rateLimits\":[{\"direction\":\"egress\","
	"\"bytesPerSecond\":1099511627776,\"burst\":4294967296}]}}]";

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
	/*
	 * Rewrites: a row without the set (the same packet, the same flow, nothing rewritten) and
	 * one with RW_SET or RATE_SET in force. No targets: the issue asks for the figures.
	 */
	{ "rewrite: map, SYN (new flow)",
	  { .dst = VIRT4, .proto = IPPROTO_TCP, .dport = 80, .tcp = { .flags = LOUPE_TCP_SYN } },
	  .rewrite = true,
	  .mode = BENCH_NEW_FLOW },
	{ "rewrite: map, data IPv4",
	  { .dst = VIRT4, .proto = IPPROTO_TCP, .dport = 80, .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: map, data IPv6",
	  { .ipv6 = true, .dst = VIRT6, .proto = IPPROTO_TCP, .dport = 80, .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: map, reply (reverse)",
	  { .src = REAL4,
	    .dst = LOUPE_PKT_POD4,
	    .proto = IPPROTO_TCP,
	    .sport = 8080,
	    .tcp = { .flags = LOUPE_TCP_ACK | LOUPE_TCP_PSH, .seq = 5001, .ack = SYN_SEQ + 1 },
	    .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .reply = true,
	  .open_dst = VIRT4,
	  .open_dport = 80,
	  .mode = BENCH_SINGLE },
	{ "rewrite: DSCP set",
	  { .proto = IPPROTO_TCP, .dport = 5060, .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: VLAN pop, tagged frame",
	  { .vlans = 1,
	    .vlan = { { .vid = 300 } },
	    .proto = IPPROTO_TCP,
	    .dport = 7000,
	    .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: VLAN push",
	  { .proto = IPPROTO_TCP, .dport = 7001, .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: mask 2 headers, request",
	  { .proto = IPPROTO_TCP, .dport = 80, .payload = MASK_REQUEST },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: mask, 1400 B, no request",
	  { .proto = IPPROTO_TCP, .dport = 80, .payload = bulk, .payload_len = sizeof(bulk) },
	  .setup_syn = true,
	  .rewrite = true,
	  .mode = BENCH_SINGLE },
	{ "rewrite: rate-limited pod, data",
	  { .proto = IPPROTO_TCP, .dport = 8080, .payload = DATA_128 },
	  .setup_syn = true,
	  .rewrite = true,
	  .rate = true,
	  .mode = BENCH_SINGLE },
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
	case BENCH_SINGLE:
		for (i = 0; i < ONE_SHOTS; i++) {
			if (!c->baseline && c->mode != BENCH_SINGLE) {
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
	int set;		   /* index in policy_sets[]; -1: no policy */
	int with;		   /* rewrite rows: 1 with the set in force, 0 without; else -1 */
	struct loupe_datapath *dp; /* the datapath it runs on */
	enum loupe_direction dir;
	/* the run before the rounds: packets counted as rewritten; the frame's bytes changed */
	uint64_t rewritten;
	bool changed;
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

/* A datapath with the set of @json in force for "lo", the interface of test runs. */
static int json_datapath(const char *json, struct loupe_datapath **ret_dp,
			 struct loupe_policy_runtime **ret_rt)
{
	struct loupe_policy_iface lo = { .ifindex = 1, .name = "lo" };
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error perr = { 0 };
	int err;

	err = loupe_datapath_open(&opts, on_record, NULL, ret_dp);
	if (!err)
		err = loupe_policy_runtime_open(*ret_dp, ret_rt);
	if (!err)
		err = loupe_policy_parse(json, strlen(json), "bench", &set, &perr);
	if (!err)
		err = loupe_policy_apply(*ret_rt, &set, &lo, 1, &perr);
	if (err)
		fprintf(stderr, "bench-datapath: a datapath with a rewrite set: %s%s%s%s%s\n",
			strerror(-err), perr.path[0] ? ": " : "", perr.path,
			perr.message[0] ? ": " : "", perr.message);
	loupe_policy_set_clear(&set);
	return err;
}

/* The flow's opener of a rewrite row: a SYN to the virtual address, or the packet's source. */
static int opener_of(const struct bench_row *row, struct loupe_pkt *ret)
{
	const struct bench_case *c = row->c;
	struct loupe_pkt_spec syn = {
		.ipv6 = c->pkt.ipv6,
		.dst = row->with ? c->open_dst : c->pkt.src,
		.proto = c->pkt.proto,
		.sport = row->spec.dport,
		.dport = row->with ? c->open_dport : c->pkt.sport,
		.tcp = { .flags = LOUPE_TCP_SYN, .seq = SYN_SEQ },
	};

	return loupe_pkt_build(&syn, ret);
}

/* Tokens in the bucket of "lo", egress, of @dp: what the rate row took shows there. */
static int rate_tokens(struct loupe_datapath *dp, uint64_t *ret_tokens, uint64_t *ret_burst)
{
	struct loupe_rate_key key = { .ifindex = 1, .direction = LOUPE_DIR_POD_EGRESS };
	struct loupe_rate r;
	int fd = loupe_datapath_map_fd(dp, LOUPE_MAP_RATE);

	if (fd < 0)
		return fd;
	if (bpf_map_lookup_elem(fd, &key, &r))
		return -errno;
	*ret_tokens = r.tokens;
	*ret_burst = r.burst;
	return 0;
}

int main(void)
{
	const size_t ncases = sizeof(cases) / sizeof(cases[0]);
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_datapath *dp = NULL, *dp_set[N_SETS] = { 0 }, *dp_rw = NULL, *dp_rate = NULL;
	struct loupe_policy_runtime *rt[N_SETS] = { 0 }, *rt_rw = NULL, *rt_rate = NULL;
	uint64_t tokens0 = 0, tokens1 = 0, burst = 0;
	struct loupe_empty_bpf *empty = NULL;
	struct bench_row *rows = NULL;
	double base_repeat = 0, base_one_shot = 0;
	uint64_t submitted = 0, lost = 0, rw_failed = 0;
	struct loupe_counters cnt;
	int ret = EXIT_FAILURE;
	size_t i, n = 0;
	int err;

	memset(bulk, 'x', sizeof(bulk));
	err = loupe_datapath_open(&opts, on_record, NULL, &dp);
	if (err) {
		fprintf(stderr, "bench-datapath: loupe_datapath_open: %s%s\n", strerror(-err),
			err == -EPERM ? " (needs root)" : "");
		goto out;
	}
	for (i = 0; i < N_SETS; i++)
		if (policy_sets[i] && policy_datapath(policy_sets[i], &dp_set[i], &rt[i]))
			goto out;
	if (json_datapath(RW_SET, &dp_rw, &rt_rw) || json_datapath(RATE_SET, &dp_rate, &rt_rate))
		goto out;
	empty = loupe_empty_bpf__open_and_load();
	if (!empty) {
		fprintf(stderr, "bench-datapath: loading loupe_empty: %s\n", strerror(errno));
		goto out;
	}

	/* the rows: a policy case once per set, a rewrite case without and with, next to each
	 * other */
	rows = calloc(ncases * (N_SETS > 2 ? N_SETS : 2), sizeof(*rows));
	if (!rows)
		goto out;
	for (i = 0; i < ncases; i++)
		for (size_t k = 0; k < (cases[i].policy ? N_SETS : cases[i].rewrite ? 2 : 1); k++) {
			struct bench_row *row = &rows[n];

			row->c = &cases[i];
			row->set = cases[i].policy ? (int)k : -1;
			row->with = cases[i].rewrite ? (int)k : -1;
			row->dp = cases[i].policy && dp_set[k] ? dp_set[k]
				  : row->with == 1	       ? (cases[i].rate ? dp_rate : dp_rw)
							       : dp;
			row->dir = cases[i].reply ? LOUPE_DIR_POD_INGRESS : LOUPE_DIR_POD_EGRESS;
			row->spec = cases[i].pkt;
			/* the pod's port: its source, or the destination of the peer's reply */
			if (cases[i].reply)
				row->spec.dport = 30000 + n++;
			else
				row->spec.sport = 30000 + n++;
			/* the client's first byte: a policy judges a request only from there */
			if (cases[i].setup_syn && !cases[i].reply)
				row->spec.tcp.seq = SYN_SEQ + 1;
			if (cases[i].cidr_rule && cidr_rule_of(policy_sets[k], row)) {
				fprintf(stderr, "bench-datapath: %s: no such rule\n",
					cases[i].name);
				goto out;
			}
		}

	for (i = 0; i < n; i++) {
		struct bench_row *row = &rows[i];
		struct loupe_datapath *rdp = row->dp;
		struct loupe_counters before, after;
		static uint8_t out[LOUPE_PKT_MAX];
		size_t out_len = 0;
		int rc;

		if (loupe_pkt_build(&row->spec, &row->pkt) ||
		    (row->c->reply ? opener_of(row, &row->syn) : syn_of(&row->spec, &row->syn))) {
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
		if (row->c->rate && row->with == 1 && rate_tokens(rdp, &tokens0, &burst))
			tokens0 = 0;
		err = loupe_datapath_read_counters(rdp, &before);
		if (!err)
			err = loupe_datapath_run_out(rdp, row->dir, row->pkt.buf, row->pkt.len, 0,
						     out, sizeof(out), &out_len, &row->tc_action);
		if (!err && !loupe_datapath_read_counters(rdp, &after))
			row->rewritten = after.rewritten[row->dir] - before.rewritten[row->dir];
		row->changed = !err &&
			       (out_len != row->pkt.len || memcmp(out, row->pkt.buf, out_len) != 0);
		if (!err && row->c->rate && row->with == 1 && rate_tokens(rdp, &tokens1, &burst))
			tokens1 = 0;
		loupe_datapath_drain(rdp);
		if (err) {
			fprintf(stderr, "bench-datapath: %s: %s\n", row->c->name, strerror(-err));
			goto out;
		}
	}
	for (int r = 0; r < ROUNDS; r++)
		for (i = 0; i < n; i++) {
			struct bench_row *row = &rows[i];
			int prog_fd = row->c->baseline ? bpf_program__fd(empty->progs.loupe_empty)
						       : loupe_datapath_prog_fd(row->dp, row->dir);

			err = measure(row->dp, prog_fd, row->c, &row->pkt, &row->syn,
				      &row->runs[r]);
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
	       "  \"rewrite:\" rows: %u single runs each (a rewritten packet is not run again as\n"
	       "  it was left), on the same flow without (none) and with the rewrite set (rw) or\n"
	       "  the rate limit (rate) in force, against the empty program run the same way\n"
	       "  (single runs carry the timer's own cost, in the baseline too); +ns: over the\n"
	       "  row without; rw, on the run before the rounds: c, the program counted the\n"
	       "  packet rewritten; b, the frame's bytes changed (a pushed tag is metadata);\n"
	       "  tc: what the program returned for the packet on a run before the rounds\n\n",
	       ROUNDS, REPEAT, CHUNK, ONE_SHOTS, BENCH_POLICY_PER_POLICY, ONE_SHOTS);
	printf("%-34s %6s %6s %3s %10s %8s %8s %8s  %s\n", "case", "set", "tc", "rw", "ns/packet",
	       "+ns", "ratio", "target", "");
	for (i = 0; i < n; i++) {
		const struct bench_row *row = &rows[i];
		const struct bench_case *c = row->c;
		double base = c->mode == BENCH_REPEAT || c->mode == BENCH_CHUNKED ? base_repeat
										  : base_one_shot;
		double ratio = base > 0 ? row->median / base : 0;
		/* the targets of policy rows are for a set in force */
		double goal = row->set >= 0 && !policy_sets[row->set] ? 0 : c->target;
		char target[16] = "-", set[16] = "-", tc[16] = "-", rw[8] = "-", plus[16] = "-";

		if (goal > 0)
			snprintf(target, sizeof(target), "<= %.1fx", goal);
		if (row->set >= 0 && policy_sets[row->set])
			snprintf(set, sizeof(set), "%u", policy_sets[row->set]);
		else if (row->set >= 0 || row->with == 0)
			snprintf(set, sizeof(set), "none");
		else if (row->with == 1)
			snprintf(set, sizeof(set), "%s", c->rate ? "rate" : "rw");
		if (row->with >= 0 && !c->rate)
			snprintf(rw, sizeof(rw), "%s%s", row->rewritten ? "c" : "",
				 row->changed ? "b" : "");
		if (row->with >= 0 && !c->rate && !rw[0])
			snprintf(rw, sizeof(rw), "no");
		/* the row without is the one before */
		if (row->with == 1)
			snprintf(plus, sizeof(plus), "%+.1f", row->median - row[-1].median);
		if (!c->baseline)
			snprintf(tc, sizeof(tc), "%s",
				 row->tc_action == TC_ACT_SHOT ? "drop"
				 : row->tc_action == TC_ACT_OK || row->tc_action == TC_ACT_UNSPEC
					 ? "pass"
					 : "other");
		printf("%-34s %6s %6s %3s %10.1f %8s %7.2fx %8s  %s\n", c->name, set, tc, rw,
		       row->median, plus, ratio, target,
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
	printf("rate: %llu bytes taken from the bucket by the run before the rounds (burst %llu)\n",
	       (unsigned long long)(tokens0 - tokens1), (unsigned long long)burst);
	printf("\nrw, the rewrite set (for \"lo\"):\n%s\nrate, the rate limit (for \"lo\"):\n%s\n",
	       RW_SET, RATE_SET);
	for (i = 0; i <= N_SETS + 2; i++) {
		struct loupe_datapath *d = i < N_SETS	     ? dp_set[i]
					   : i == N_SETS     ? dp
					   : i == N_SETS + 1 ? dp_rw
							     : dp_rate;

		if (!d || loupe_datapath_read_counters(d, &cnt))
			continue;
		for (int k = 0; k < LOUPE_EV_KIND_MAX; k++) {
			submitted += cnt.events[k];
			lost += cnt.events_lost[k];
		}
		rw_failed += cnt.rewrite_failed;
	}
	printf("events: %llu submitted, %llu lost (ring buffer full); rewrites failed: %llu\n",
	       (unsigned long long)submitted, (unsigned long long)lost,
	       (unsigned long long)rw_failed);
	ret = EXIT_SUCCESS;
out:
	free(rows);
	loupe_empty_bpf__destroy(empty);
	for (i = 0; i < N_SETS; i++) {
		loupe_policy_runtime_free(rt[i]);
		loupe_datapath_free(dp_set[i]);
	}
	loupe_policy_runtime_free(rt_rw);
	loupe_policy_runtime_free(rt_rate);
	loupe_datapath_free(dp_rw);
	loupe_datapath_free(dp_rate);
	loupe_datapath_free(dp);
	return ret;
}
