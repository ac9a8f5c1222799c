// SPDX-License-Identifier: Apache-2.0
/*
 * bench-pipeline: events per second the agent's event pipeline takes out of a full ring
 * buffer on one core: decode + stamp + enrich into a counting sink, the same with JSON
 * formatting alone, and with the agent's JSON output to /dev/null. The ring is filled by running HTTP request frames of
 * distinct flows through the production TC program (BPF_PROG_TEST_RUN: FLOW_START +
 * HTTP_REQUEST each), then drained and timed; two floors are timed the same way in the same
 * run (ring_buffer__consume with an empty callback, and with a memcpy of each record).
 * Prints medians and ratios; never fails on time. Not a test of the events' content.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "datapath.h"
#include "event_json.h"
#include "output.h"
#include "pipeline.h"
#include "pktbuild.h"

#define RING_SIZE      (128u << 20) /* holds ~1.2 M records of this traffic */
#define RECORDS_TARGET 1000000u	    /* records per fill, unless the ring fills first */
#define ROUNDS	       5	    /* fills per mode; the median is reported */
#define PORTS	       60000u	    /* source ports per source address */

enum bench_mode {
	MODE_EMPTY,  /* ring_buffer__consume, callback counts only: the floor */
	MODE_MEMCPY, /* the callback copies each record out */
	MODE_DECODE, /* the agent's pipeline into a sink that counts */
	MODE_FORMAT, /* the pipeline into loupe_event_to_json, the line thrown away */
	MODE_JSON,   /* the agent's pipeline into loupe_output to /dev/null */
	MODE_MAX,
};

static const char *const mode_names[MODE_MAX] = {
	[MODE_EMPTY] = "consume, empty callback (floor)",
	[MODE_MEMCPY] = "consume + memcpy of each record",
	[MODE_DECODE] = "decode + stamp + enrich, no JSON",
	[MODE_FORMAT] = "decode + JSON, line not written",
	[MODE_JSON] = "decode + JSON + write /dev/null",
};

/* events/s targets by mode; 0: none */
static const double mode_targets[MODE_MAX] = { [MODE_DECODE] = 1e6, [MODE_JSON] = 3e5 };

struct bench {
	enum bench_mode mode;
	struct loupe_pipeline *pl_count;
	struct loupe_pipeline *pl_format;
	struct loupe_pipeline *pl_json;
	struct loupe_output *out;
	uint64_t records;
	uint64_t sunk; /* events the counting sink saw */
	uint8_t copy[4096];
};

struct sample {
	uint64_t records;
	double wall_s, cpu_s, user_s, sys_s;
};

static const struct loupe_pkt_http http_req = { .method = "GET",
						.path = "/api/v1/orders?limit=20",
						.host = "shop.example.test",
						.host_index = 1 };

/* The ring buffer callback: one indirection for every mode, so the floors compare. */
static int on_record(void *ctx, const void *record, size_t size)
{
	struct bench *b = ctx;

	b->records++;
	switch (b->mode) {
	case MODE_EMPTY:
		return 0;
	case MODE_MEMCPY:
		memcpy(b->copy, record, size < sizeof(b->copy) ? size : sizeof(b->copy));
		return 0;
	case MODE_DECODE:
		return loupe_pipeline_on_record(b->pl_count, record, size);
	case MODE_FORMAT:
		return loupe_pipeline_on_record(b->pl_format, record, size);
	case MODE_JSON:
		return loupe_pipeline_on_record(b->pl_json, record, size);
	default:
		return 0;
	}
}

static int count_sink(void *ctx, const struct loupe_event *ev)
{
	struct bench *b = ctx;

	b->sunk++;
	return 0;
}

/* Formatting alone: what the output adds on top of it is the difference to MODE_JSON. */
static int format_sink(void *ctx, const struct loupe_event *ev)
{
	char *json = loupe_event_to_json(ev);

	if (!json)
		return -errno;
	free(json);
	return 0;
}

static int json_sink(void *ctx, const struct loupe_event *ev)
{
	struct bench *b = ctx;

	return loupe_output_write(b->out, ev);
}

/*
 * What the agent's enrich does once it has found the link (a hash lookup by ifindex, left
 * out): the interface name and the pod's address copied in.
 */
static bool bench_enrich(void *ctx, struct loupe_event *ev)
{
	static const uint8_t pod4[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 10 };

	snprintf(ev->ifname, sizeof(ev->ifname), "%s", "veth1a2b3c4d");
	ev->pod_ips[0].ipv6 = false;
	memcpy(ev->pod_ips[0].addr, pod4, 16);
	ev->pod_ip_count = 1;
	return true;
}

static double ts_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tv_s(const struct timeval *tv)
{
	return tv->tv_sec + tv->tv_usec / 1e6;
}

static uint64_t events_sum(const __u64 *v)
{
	uint64_t n = 0;

	for (int k = 0; k < LOUPE_EV_KIND_MAX; k++)
		n += v[k];
	return n;
}

/*
 * Runs HTTP request frames of new flows (the next of *@flow each) until about
 * RECORDS_TARGET records wait or the ring is full. Source addresses walk 198.18.1.0 upward,
 * PORTS ports each, so no flow is ever seen twice in one run. *ret_lost: records the ring
 * refused (it was full).
 */
static int fill(struct loupe_datapath *dp, uint64_t *flow, uint64_t *ret_lost)
{
	struct loupe_counters before, after;
	struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 80, .http = &http_req };
	struct loupe_pkt pkt;
	uint64_t pending, size;
	char src[32];
	int err, rc;

	err = loupe_datapath_read_counters(dp, &before);
	if (err)
		return err;
	for (unsigned i = 0; i < RECORDS_TARGET / 2; i++) {
		uint64_t f = (*flow)++;
		uint32_t host = 256 + f / PORTS; /* 198.18.1.0 + ... */

		snprintf(src, sizeof(src), "198.%u.%u.%u", 18 + (host >> 16), (host >> 8) & 0xff,
			 host & 0xff);
		spec.src = src;
		spec.sport = 1024 + f % PORTS;
		if (loupe_pkt_build(&spec, &pkt))
			return -EINVAL;
		err = loupe_datapath_run(dp, LOUPE_DIR_POD_EGRESS, pkt.buf, pkt.len, 0, &rc);
		if (err)
			return err;
		if (i % 4096 == 0) {
			err = loupe_datapath_ring_fill(dp, &pending, &size);
			if (err)
				return err;
			if (pending + 4096 * 512 > size)
				break; /* nearly full: stop before records are refused */
		}
	}
	err = loupe_datapath_read_counters(dp, &after);
	if (err)
		return err;
	*ret_lost = events_sum(after.events_lost) - events_sum(before.events_lost);
	return 0;
}

/* Drains the ring in @mode and times it. */
static int drain(struct bench *b, struct loupe_datapath *dp, enum bench_mode mode,
		 struct sample *ret)
{
	struct rusage r0, r1;
	double w0, c0;
	int n, err = 0;

	b->mode = mode;
	b->records = 0;
	getrusage(RUSAGE_THREAD, &r0);
	w0 = ts_s(CLOCK_MONOTONIC);
	c0 = ts_s(CLOCK_THREAD_CPUTIME_ID);
	n = loupe_datapath_drain(dp);
	if (mode == MODE_JSON)
		err = loupe_output_flush(b->out);
	ret->cpu_s = ts_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	ret->wall_s = ts_s(CLOCK_MONOTONIC) - w0;
	getrusage(RUSAGE_THREAD, &r1);
	ret->user_s = tv_s(&r1.ru_utime) - tv_s(&r0.ru_utime);
	ret->sys_s = tv_s(&r1.ru_stime) - tv_s(&r0.ru_stime);
	ret->records = b->records;
	if (n < 0)
		return n;
	return err;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Pins the process to @cpu, or (-1) to the last CPU it may run on. Returns the CPU or -errno. */
static int pin_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0) {
		if (sched_getaffinity(0, sizeof(set), &set))
			return -errno;
		for (int i = CPU_SETSIZE - 1; i >= 0 && cpu < 0; i--)
			if (CPU_ISSET(i, &set))
				cpu = i;
		if (cpu < 0)
			return -EINVAL;
	}
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return -errno;
	return cpu;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench-pipeline [--cpu N] [--verbose]\n"
		   "  Times the agent's event pipeline draining a full ring buffer on one CPU\n"
		   "  (default: the last one allowed); --verbose: every drain on stderr.\n"
		   "  Needs root (BPF).\n");
}

int main(int argc, char **argv)
{
	struct loupe_datapath_opts dp_opts = { .events_size = RING_SIZE };
	struct loupe_pipeline_opts pl_opts = { .node = "bench-node",
					       .flow_idle_ns = 60ull * 1000000000ull,
					       .flow_active_ns = 300ull * 1000000000ull,
					       .enrich = bench_enrich };
	static struct sample samples[MODE_MAX][ROUNDS];
	struct loupe_datapath *dp = NULL;
	struct loupe_pipeline_stats ps;
	struct loupe_output_stats os;
	struct bench *b;
	double floor_ns = 0;
	bool shared = false;
	uint64_t flow = 0, lost, lost_total = 0, fills_full = 0;
	int ret = EXIT_FAILURE, cpu = -1, err;
	bool verbose = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cpu") && i + 1 < argc) {
			cpu = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) {
			verbose = true;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return EXIT_SUCCESS;
		} else {
			usage(stderr);
			return 2;
		}
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		return EXIT_FAILURE;
	cpu = pin_cpu(cpu);
	if (cpu < 0) {
		fprintf(stderr, "bench-pipeline: cannot pin to a CPU: %s\n", strerror(-cpu));
		goto out;
	}
	err = loupe_output_open("/dev/null", 0, 0, &b->out);
	if (err) {
		fprintf(stderr, "bench-pipeline: loupe_output_open: %s\n", strerror(-err));
		goto out;
	}
	pl_opts.sink = count_sink;
	pl_opts.sink_ctx = b;
	err = loupe_pipeline_new(&pl_opts, &b->pl_count);
	if (!err) {
		pl_opts.sink = format_sink;
		err = loupe_pipeline_new(&pl_opts, &b->pl_format);
	}
	if (!err) {
		pl_opts.sink = json_sink;
		err = loupe_pipeline_new(&pl_opts, &b->pl_json);
	}
	if (err) {
		fprintf(stderr, "bench-pipeline: loupe_pipeline_new: %s\n", strerror(-err));
		goto out;
	}
	err = loupe_datapath_open(&dp_opts, on_record, b, &dp);
	if (err) {
		fprintf(stderr, "bench-pipeline: loupe_datapath_open: %s%s\n", strerror(-err),
			err == -EPERM ? " (needs root)" : "");
		goto out;
	}

	/*
	 * Round -1 warms up and is not reported: its three fills fault in every page of the
	 * ring's mapping (a fill covers ~80% of it); the slow JSON modes skip it, a drain of
	 * theirs is long enough to warm itself. Then the modes take turns, so that a noisy
	 * neighbour hits them alike.
	 */
	for (int r = -1; r < ROUNDS; r++) {
		for (int m = 0; m < MODE_MAX; m++) {
			struct sample s;

			if (r < 0 && m >= MODE_FORMAT)
				continue;

			err = fill(dp, &flow, &lost);
			if (err) {
				fprintf(stderr, "bench-pipeline: filling the ring: %s\n",
					strerror(-err));
				goto out;
			}
			lost_total += lost;
			fills_full += lost > 0;
			err = drain(b, dp, m, &s);
			if (err) {
				fprintf(stderr, "bench-pipeline: %s: %s\n", mode_names[m],
					strerror(-err));
				goto out;
			}
			if (r >= 0)
				samples[m][r] = s;
			if (verbose)
				fprintf(stderr,
					"round %d %-34s %8llu records %8.1f ms wall %8.1f ms cpu"
					" (%.1f sys)\n",
					r, mode_names[m], (unsigned long long)s.records,
					s.wall_s * 1e3, s.cpu_s * 1e3, s.sys_s * 1e3);
		}
	}

	loupe_pipeline_get_stats(b->pl_json, &ps);
	loupe_output_get_stats(b->out, &os);
	printf("bench-pipeline: the agent's event pipeline draining a full ring buffer, pinned to "
	       "CPU %d;\n"
	       "  ring %u MiB filled by the production TC program (BPF_PROG_TEST_RUN) with HTTP\n"
	       "  requests of new flows (FLOW_START + HTTP_REQUEST records), then drained with\n"
	       "  ring_buffer__consume; median of %d fills per mode, modes interleaved.\n"
	       "  Targets are judged on records / CPU time of the drain (one core's capacity: a\n"
	       "  neighbour taking the CPU stretches the wall time, not this); wall beside it.\n\n",
	       cpu, RING_SIZE >> 20, ROUNDS);
	printf("%-34s %8s %8s %8s %6s %11s %11s %7s %7s  %s\n", "mode", "records", "wall ms",
	       "cpu ms", "sys ms", "ev/s (cpu)", "ev/s (wall)", "ns/ev", "x floor", "target");
	for (int m = 0; m < MODE_MAX; m++) {
		double wall[ROUNDS], cpu_ms[ROUNDS], sys[ROUNDS], rate[ROUNDS], rate_cpu[ROUNDS];
		double rec[ROUNDS], ns, r_cpu, w_med, c_med;
		char target[32] = "-";

		for (int r = 0; r < ROUNDS; r++) {
			const struct sample *s = &samples[m][r];

			wall[r] = s->wall_s * 1e3;
			cpu_ms[r] = s->cpu_s * 1e3;
			sys[r] = s->sys_s * 1e3;
			rec[r] = s->records;
			rate[r] = s->wall_s > 0 ? s->records / s->wall_s : 0;
			rate_cpu[r] = s->cpu_s > 0 ? s->records / s->cpu_s : 0;
		}
		r_cpu = median(rate_cpu, ROUNDS);
		ns = r_cpu > 0 ? 1e9 / r_cpu : 0;
		if (m == MODE_EMPTY)
			floor_ns = ns;
		w_med = median(wall, ROUNDS);
		c_med = median(cpu_ms, ROUNDS);
		shared |= w_med > 1.1 * c_med;
		if (mode_targets[m] > 0)
			snprintf(target, sizeof(target), ">= %.0fk/s %s", mode_targets[m] / 1e3,
				 r_cpu >= mode_targets[m] ? "ok" : "UNDER");
		printf("%-34s %8.0f %8.1f %8.1f %6.1f %11.0f %11.0f %7.1f %6.1fx  %s\n",
		       mode_names[m], median(rec, ROUNDS), w_med, c_med, median(sys, ROUNDS), r_cpu,
		       median(rate, ROUNDS), ns, floor_ns > 0 ? ns / floor_ns : 0, target);
	}
	if (shared)
		printf("\nnote: wall time exceeded CPU time by more than 10%%: the CPU was shared "
		       "during the run\n");
	printf("\nJSON: %.0f bytes/event on average; pipeline: %llu FLOW_START, %llu HTTP_REQUEST,"
	       " %llu bad records, %llu sink errors; output: %llu errors\n",
	       os.lines ? (double)os.bytes / os.lines : 0,
	       (unsigned long long)ps.events[LOUPE_EV_FLOW_START],
	       (unsigned long long)ps.events[LOUPE_EV_HTTP_REQUEST],
	       (unsigned long long)ps.records_bad, (unsigned long long)ps.sink_errors,
	       (unsigned long long)os.errors);
	printf("fills: %d, %llu flows; %llu fills reached a full ring, %llu records refused\n",
	       ROUNDS * MODE_MAX + MODE_FORMAT, (unsigned long long)flow,
	       (unsigned long long)fills_full, (unsigned long long)lost_total);
	ret = EXIT_SUCCESS;
out:
	loupe_datapath_free(dp);
	if (b) {
		loupe_pipeline_free(b->pl_count);
		loupe_pipeline_free(b->pl_format);
		loupe_pipeline_free(b->pl_json);
		loupe_output_close(b->out);
		free(b);
	}
	return ret;
}
