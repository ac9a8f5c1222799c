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

#define REPEAT	  1000000u /* runs per measurement */
#define ROUNDS	  5	   /* measurements per case; the median is reported */
#define CHUNK	  4000u	   /* runs between ring buffer drains: 4000 records fit in 4 MiB */
#define ONE_SHOTS 20000u   /* single runs per measurement when each run needs fresh state */

enum bench_mode {
	BENCH_REPEAT,	/* one BPF_PROG_TEST_RUN with .repeat = REPEAT */
	BENCH_CHUNKED,	/* emits an event per run: .repeat = CHUNK, drained in between */
	BENCH_ONE_SHOT, /* state changes after one run (TLS): fresh flow, .repeat = 1 */
};

struct bench_case {
	const char *name;
	struct loupe_pkt_spec pkt;
	bool baseline;	/* the empty program */
	bool setup_syn; /* open the flow with a SYN first */
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
static void forget_flow4(struct loupe_datapath *dp, const struct loupe_pkt *pkt)
{
	struct loupe_flow_key4 key = { .pod_port = htons(pkt->sport),
				       .peer_port = htons(pkt->dport),
				       .protocol = IPPROTO_TCP };

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
		for (i = 0; i < ONE_SHOTS; i++) {
			if (!c->baseline) {
				forget_flow4(dp, pkt);
				err = loupe_datapath_run(dp, LOUPE_DIR_POD_EGRESS, syn->buf,
							 syn->len, 0, &rc);
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
	struct loupe_datapath *dp = NULL;
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
	empty = loupe_empty_bpf__open_and_load();
	if (!empty) {
		fprintf(stderr, "bench-datapath: loading loupe_empty: %s\n", strerror(errno));
		goto out;
	}

	for (i = 0; i < ncases; i++) {
		const struct bench_case *c = &cases[i];
		int prog_fd = c->baseline ? bpf_program__fd(empty->progs.loupe_empty)
					  : loupe_datapath_prog_fd(dp, LOUPE_DIR_POD_EGRESS);
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
			err = loupe_datapath_run(dp, LOUPE_DIR_POD_EGRESS, syn.buf, syn.len, 0,
						 &rc);
			if (err) {
				fprintf(stderr, "bench-datapath: %s: SYN: %s\n", c->name,
					strerror(-err));
				goto out;
			}
		}
		for (r = 0; r < ROUNDS; r++) {
			err = measure(dp, prog_fd, c, &pkt, &syn, &runs[r]);
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
	       "  TLS: %u single runs on a fresh flow each (a flow is ciphertext after one\n"
	       "  ClientHello), against the empty program run the same way\n\n",
	       ROUNDS, REPEAT, CHUNK, ONE_SHOTS);
	printf("%-32s %10s %8s %8s  %s\n", "case", "ns/packet", "ratio", "target", "");
	for (i = 0; i < ncases; i++) {
		const struct bench_case *c = &cases[i];
		double base = c->mode == BENCH_ONE_SHOT ? base_one_shot : base_repeat;
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
	loupe_datapath_free(dp);
	return ret;
}
