// SPDX-License-Identifier: Apache-2.0
/*
 * bench-policy: how long a policy set of 100, 1 000 and 10 000 rules takes to put in force:
 * loupe_policy_compile() alone, then loupe_policy_apply() on a loaded datapath (no pins, no
 * interfaces) from its call to its return, cut into its steps: the map writes of the new
 * slot, the one-store switch (the set is in force from then on), the RCU wait, and the
 * clearing of the old slot. Each apply replaces a set of the same size, as an update does.
 * Medians; never fails on time. Not a test: the exit status says only whether it could
 * measure.
 *
 * The steps are told apart by wrapping libbpf's map calls at link time (-Wl,--wrap, see
 * bench/CMakeLists.txt): policy_apply.c is measured as the agent runs it, unchanged.
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datapath.h"
#include "policy.h"
#include "policy_apply.h"
#include "policy_compile.h"
#include "policy_set.h"

#define RUNS_DEFAULT 11
#define RUNS_MAX     101
#define TARGET_RULES 10000
#define TARGET_MS    50.0

static const unsigned int sizes[] = { 100, 1000, 10000 };

/* The maps of policy_apply.c, as the per-map table names them. */
static const char *const map_names[] = {
	LOUPE_MAP_POL_ACTIVE, LOUPE_MAP_POL_META,  LOUPE_MAP_POL_IFACES,   LOUPE_MAP_POL_ADDRS,
	LOUPE_MAP_POL_PORTS,  LOUPE_MAP_POL_NAMES, LOUPE_MAP_POL_PATHS,	   LOUPE_MAP_POL_METHODS,
	LOUPE_MAP_POL_HITS,   LOUPE_MAP_POL_SYNC,  LOUPE_MAP_POL_REWRITES, LOUPE_MAP_RATE,
};
#define N_MAPS (sizeof(map_names) / sizeof(map_names[0]))

enum op {
	OP_UPDATE,
	OP_DELETE,
	OP_LOOKUP,
	OP_NEXT_KEY,
	OP_BATCH,
	OP_N
};
static const char *const op_names[OP_N] = { "update", "delete", "lookup", "next key", "batch" };

/* What the wrapped map calls saw during one apply. */
static struct {
	bool on;
	int fd[N_MAPS];
	int fd_active, fd_sync;
	uint64_t first;		   /* the first map call: the compile is done */
	uint64_t switch0, switch1; /* the store to loupe_pol_active, before and after */
	uint64_t sync0, sync1;	   /* the update of loupe_pol_sync: the RCU wait */
	unsigned long calls;	   /* map syscalls */
	/* by map (N_MAPS: another fd) and kind of call */
	unsigned long n[N_MAPS + 1][OP_N];
	uint64_t ns[N_MAPS + 1][OP_N];
} probe;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t probe_begin(void)
{
	uint64_t t;

	if (!probe.on)
		return 0;
	t = now_ns();
	probe.calls++;
	if (!probe.first)
		probe.first = t;
	return t;
}

static void probe_end(int fd, enum op op, uint64_t t0)
{
	size_t m = 0;

	if (!probe.on)
		return;
	while (m < N_MAPS && probe.fd[m] != fd)
		m++;
	probe.n[m][op]++;
	probe.ns[m][op] += now_ns() - t0;
}

int __real_bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int __real_bpf_map_delete_elem(int fd, const void *key);
int __real_bpf_map_lookup_elem(int fd, const void *key, void *value);
int __real_bpf_map_get_next_key(int fd, const void *key, void *next_key);
int __real_bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
				const struct bpf_map_batch_opts *opts);
int __real_bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
				__u32 *count, const struct bpf_map_batch_opts *opts);

int __wrap_bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int __wrap_bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
{
	uint64_t t0 = probe_begin();
	int r;

	if (probe.on && fd == probe.fd_active)
		probe.switch0 = t0;
	if (probe.on && fd == probe.fd_sync)
		probe.sync0 = t0;
	r = __real_bpf_map_update_elem(fd, key, value, flags);
	probe_end(fd, OP_UPDATE, t0);
	if (probe.on && fd == probe.fd_active)
		probe.switch1 = now_ns();
	if (probe.on && fd == probe.fd_sync)
		probe.sync1 = now_ns();
	return r;
}

int __wrap_bpf_map_delete_elem(int fd, const void *key);
int __wrap_bpf_map_delete_elem(int fd, const void *key)
{
	uint64_t t0 = probe_begin();
	int r = __real_bpf_map_delete_elem(fd, key);

	probe_end(fd, OP_DELETE, t0);
	return r;
}

int __wrap_bpf_map_lookup_elem(int fd, const void *key, void *value);
int __wrap_bpf_map_lookup_elem(int fd, const void *key, void *value)
{
	uint64_t t0 = probe_begin();
	int r = __real_bpf_map_lookup_elem(fd, key, value);

	probe_end(fd, OP_LOOKUP, t0);
	return r;
}

int __wrap_bpf_map_get_next_key(int fd, const void *key, void *next_key);
int __wrap_bpf_map_get_next_key(int fd, const void *key, void *next_key)
{
	uint64_t t0 = probe_begin();
	int r = __real_bpf_map_get_next_key(fd, key, next_key);

	probe_end(fd, OP_NEXT_KEY, t0);
	return r;
}

int __wrap_bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
				const struct bpf_map_batch_opts *opts);
int __wrap_bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
				const struct bpf_map_batch_opts *opts)
{
	uint64_t t0 = probe_begin();
	int r = __real_bpf_map_update_batch(fd, keys, values, count, opts);

	probe_end(fd, OP_BATCH, t0);
	return r;
}

int __wrap_bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
				__u32 *count, const struct bpf_map_batch_opts *opts);
int __wrap_bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
				__u32 *count, const struct bpf_map_batch_opts *opts)
{
	uint64_t t0 = probe_begin();
	int r = __real_bpf_map_lookup_batch(fd, in_batch, out_batch, keys, values, count, opts);

	probe_end(fd, OP_BATCH, t0);
	return r;
}

/* ---- figures ---------------------------------------------------------------------------- */

enum col {
	COL_PARSE,   /* loupe_policy_parse() of the set's JSON: not part of the target */
	COL_JSON,    /* loupe_policy_set_to_json(): the agent's "has it changed" check, likewise */
	COL_COMPILE, /* loupe_policy_compile() alone */
	COL_WRITE,   /* apply: its first map call to the store that switches */
	COL_SWITCH,  /* apply: its call to the switch done: the set is in force */
	COL_RCU,     /* apply: the update of loupe_pol_sync */
	COL_CLEAR,   /* apply: after the RCU wait to its return (hit totals, old slot cleared) */
	COL_TOTAL,   /* apply: its call to its return (its own compile included) */
	COL_CALLS,   /* map syscalls of one apply */
	COL_N,
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ms(uint64_t a, uint64_t b)
{
	return b > a ? (double)(b - a) / 1e6 : 0;
}

/* Where the applies of the last size measured spent their map calls, per apply. */
static void print_maps(unsigned int n_rules, int runs)
{
	printf("\none apply of %u rules by map: calls / ms (mean of the %d runs)\n", n_rules, runs);
	printf("%-18s", "map");
	for (int op = 0; op < OP_N; op++)
		printf(" %18s", op_names[op]);
	printf("\n");
	for (size_t m = 0; m <= N_MAPS; m++) {
		bool any = false;

		for (int op = 0; op < OP_N; op++)
			any |= probe.n[m][op] > 0;
		if (!any)
			continue;
		printf("%-18s", m < N_MAPS ? map_names[m] : "(other)");
		for (int op = 0; op < OP_N; op++) {
			if (!probe.n[m][op])
				printf(" %18s", "-");
			else
				printf(" %9.0f /%7.2f", (double)probe.n[m][op] / runs,
				       (double)probe.ns[m][op] / 1e6 / runs);
		}
		printf("\n");
	}
}

static int usage(int ret)
{
	fprintf(ret ? stderr : stdout,
		"usage: bench-policy [--runs N]\n"
		"  --runs N  timed applies (and compiles, parses) per set size, 1..%d "
		"(default %d)\n",
		RUNS_MAX, RUNS_DEFAULT);
	return ret ? 2 : EXIT_SUCCESS;
}

/* Measures one size: @runs of each step; @ret gets the medians, by column. */
static int measure(struct loupe_policy_runtime *rt, unsigned int n_rules, int runs,
		   double ret[COL_N])
{
	static double v[COL_N][RUNS_MAX];
	struct loupe_policy_set *set = NULL, parsed = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_compiled *c = NULL;
	struct loupe_policy_error perr = { 0 };
	size_t len = 0;
	char *json = bench_policy_json(n_rules, &len), *text;
	uint64_t t0, t1;
	int r;

	if (!json)
		return -errno;
	memset(probe.n, 0, sizeof(probe.n));
	memset(probe.ns, 0, sizeof(probe.ns));
	r = bench_policy_set(n_rules, &set, &perr);
	/* the set that was in force is of the same size: the apply replaces its like */
	if (!r)
		r = loupe_policy_apply(rt, set, NULL, 0, &perr);
	for (int i = 0; i < runs && !r; i++) {
		t0 = now_ns();
		r = loupe_policy_parse(json, len, "bench", &parsed, &perr);
		v[COL_PARSE][i] = ms(t0, now_ns());
		loupe_policy_set_clear(&parsed);
		if (r)
			break;

		t0 = now_ns();
		text = loupe_policy_set_to_json(set);
		v[COL_JSON][i] = ms(t0, now_ns());
		if (!text) {
			r = -errno;
			break;
		}
		free(text);

		t0 = now_ns();
		r = loupe_policy_compile(set, 1, 1, &c, &perr);
		v[COL_COMPILE][i] = ms(t0, now_ns());
		c = loupe_policy_compiled_free(c);
		if (r)
			break;

		probe.first = probe.switch0 = probe.switch1 = probe.sync0 = probe.sync1 = 0;
		probe.calls = 0;
		probe.on = true;
		t0 = now_ns();
		r = loupe_policy_apply(rt, set, NULL, 0, &perr);
		t1 = now_ns();
		probe.on = false;
		if (r)
			break;
		if (!probe.first || !probe.switch1 || !probe.sync1) {
			fprintf(stderr,
				"bench-policy: the apply's steps were not seen (no --wrap?)\n");
			r = -ENOTSUP;
			break;
		}
		v[COL_WRITE][i] = ms(probe.first, probe.switch0);
		v[COL_SWITCH][i] = ms(t0, probe.switch1);
		v[COL_RCU][i] = ms(probe.sync0, probe.sync1);
		v[COL_CLEAR][i] = ms(probe.sync1, t1);
		v[COL_TOTAL][i] = ms(t0, t1);
		v[COL_CALLS][i] = (double)probe.calls;
	}
	if (r)
		fprintf(stderr, "bench-policy: %u rules: %s%s%s\n", n_rules, strerror(-r),
			perr.message[0] ? ": " : "", perr.message);
	else
		for (int col = 0; col < COL_N; col++)
			ret[col] = median(v[col], runs);
	loupe_policy_set_free(set);
	free(json);
	return r;
}

int main(int argc, char **argv)
{
	const size_t n_sizes = sizeof(sizes) / sizeof(sizes[0]);
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_policy_runtime *rt = NULL;
	struct loupe_datapath *dp = NULL;
	struct loupe_policy_set empty = LOUPE_POLICY_SET_INIT;
	double fig[sizeof(sizes) / sizeof(sizes[0])][COL_N];
	int runs = RUNS_DEFAULT, ret = EXIT_FAILURE, err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
			char *end;
			long n = strtol(argv[++i], &end, 10);

			if (*end || n < 1 || n > RUNS_MAX)
				return usage(1);
			runs = (int)n;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			return usage(0);
		} else {
			return usage(1);
		}
	}

	err = loupe_datapath_open(&opts, NULL, NULL, &dp);
	if (err) {
		fprintf(stderr, "bench-policy: loupe_datapath_open: %s%s\n", strerror(-err),
			err == -EPERM ? " (needs root)" : "");
		goto out;
	}
	err = loupe_policy_runtime_open(dp, &rt);
	if (err) {
		fprintf(stderr, "bench-policy: the policy maps: %s\n", strerror(-err));
		goto out;
	}
	for (size_t m = 0; m < N_MAPS; m++)
		probe.fd[m] = loupe_datapath_map_fd(dp, map_names[m]);
	probe.fd_active = loupe_datapath_map_fd(dp, LOUPE_MAP_POL_ACTIVE);
	probe.fd_sync = loupe_datapath_map_fd(dp, LOUPE_MAP_POL_SYNC);
	for (size_t s = 0; s < n_sizes; s++)
		if (measure(rt, sizes[s], runs, fig[s]))
			goto out;
	/* leave the datapath as it was found: no set */
	loupe_policy_apply(rt, &empty, NULL, 0, NULL);

	printf("bench-policy: loupe_policy_compile, then loupe_policy_apply on a loaded datapath\n"
	       "  (no interfaces, nothing pinned) replacing a set of the same size; median of %d\n"
	       "  runs, ms. Sets: CIDR/port rules, %d to a policy, then the 6 AI egress rules of\n"
	       "  docs/policy.md. total: the apply (its own compile, write, switch, RCU wait,\n"
	       "  clear old); in force: from its call to the switch. parse and to json: what the\n"
	       "  agent does too before an apply (loupe_policy_parse, loupe_policy_set_to_json),\n"
	       "  not in the target\n\n",
	       runs, BENCH_POLICY_PER_POLICY);
	printf("%6s %7s %7s | %8s | %7s %9s %7s %9s | %8s %8s %9s  %s\n", "rules", "parse",
	       "to json", "compile", "write", "in force", "RCU", "clear old", "total", "target",
	       "syscalls", "");
	for (size_t s = 0; s < n_sizes; s++) {
		const double *f = fig[s];
		bool target = sizes[s] == TARGET_RULES;

		printf("%6u %7.2f %7.2f | %8.2f | %7.2f %9.2f %7.2f %9.2f | %8.2f %8s %9.0f  %s\n",
		       sizes[s], f[COL_PARSE], f[COL_JSON], f[COL_COMPILE], f[COL_WRITE],
		       f[COL_SWITCH], f[COL_RCU], f[COL_CLEAR], f[COL_TOTAL],
		       target ? "<= 50" : "-", f[COL_CALLS],
		       !target			   ? ""
		       : f[COL_TOTAL] <= TARGET_MS ? "ok"
						   : "over");
	}
	print_maps(sizes[n_sizes - 1], runs);
	ret = EXIT_SUCCESS;
out:
	loupe_policy_runtime_free(rt);
	loupe_datapath_free(dp);
	return ret;
}
