// SPDX-License-Identifier: Apache-2.0
/*
 * Loads loupe's TC programs from the skeleton, sets the load-time settings, and runs frames
 * through them with BPF_PROG_TEST_RUN for replay, tests and benchmarks. Attaching to live
 * links is not done here.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "datapath.h"
#include "event.h"
#include "loupe_tc.skel.h"

struct loupe_datapath {
	struct loupe_tc_bpf *skel;
	struct ring_buffer *rb;
	/* the ring's consumer and producer positions, mapped read-only for the fill gauge */
	const volatile uint64_t *ring_consumer;
	const volatile uint64_t *ring_producer;
	size_t page;
	loupe_record_fn on_record;
	void *ctx;
	int ncpus;
};

static int datapath_on_ringbuf(void *ctx, void *data, size_t size)
{
	struct loupe_datapath *dp = ctx;

	return dp->on_record ? dp->on_record(dp->ctx, data, size) : 0;
}

/* Every map gets a pin path under @dir: libbpf reuses a compatible pinned map, or pins. */
static int datapath_set_pin_paths(struct loupe_tc_bpf *skel, const char *dir)
{
	char path[PATH_MAX];
	struct bpf_map *map;
	int err;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	bpf_object__for_each_map(map, skel->obj)
	{
		if (bpf_map__is_internal(map))
			continue; /* .rodata: settings of this agent, not state */
		if (snprintf(path, sizeof(path), "%s/%s", dir, bpf_map__name(map)) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		err = bpf_map__set_pin_path(map, path);
		if (err)
			return err;
	}
	return 0;
}

/* Pins the programs under @dir, replacing an earlier agent's pins of the same name. */
static int datapath_pin_programs(struct loupe_tc_bpf *skel, const char *dir)
{
	struct bpf_program *prog;
	char path[PATH_MAX];
	int err;

	bpf_object__for_each_program(prog, skel->obj)
	{
		if (snprintf(path, sizeof(path), "%s/%s", dir, bpf_program__name(prog)) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		if (unlink(path) && errno != ENOENT)
			return -errno;
		err = bpf_program__pin(prog, path);
		if (err)
			return err;
	}
	return 0;
}

int loupe_datapath_unpin(const char *pin_dir)
{
	static const char *const names[] = {
		LOUPE_MAP_FLOWS4,	LOUPE_MAP_FLOWS6,	LOUPE_MAP_EVENTS,
		LOUPE_MAP_COUNTERS,	LOUPE_MAP_TLS_PENDING,	"loupe_scratch",
		LOUPE_MAP_POL_ACTIVE,	LOUPE_MAP_POL_META,	LOUPE_MAP_POL_IFACES,
		LOUPE_MAP_POL_ADDRS,	LOUPE_MAP_POL_PORTS,	LOUPE_MAP_POL_NAMES,
		LOUPE_MAP_POL_PATHS,	LOUPE_MAP_POL_METHODS,	LOUPE_MAP_POL_HITS,
		LOUPE_MAP_POL_SYNC,	"loupe_pol_sync_inner", LOUPE_MAP_POL_REWRITES,
		LOUPE_MAP_NAT_REVERSE,	LOUPE_MAP_RATE,		LOUPE_PROG_POD_EGRESS,
		LOUPE_PROG_POD_INGRESS,
	};
	char path[PATH_MAX];
	int err = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", pin_dir, names[i]);
		if (unlink(path) && errno != ENOENT && !err)
			err = -errno;
	}
	if (rmdir(pin_dir) && errno != ENOENT && errno != ENOTEMPTY && !err)
		err = -errno;
	return err;
}

/* Page @n of the ring buffer map (0: consumer position, 1: producer position), read-only. */
static const volatile uint64_t *datapath_map_ring_page(struct loupe_datapath *dp, int n)
{
	void *p = mmap(NULL, dp->page, PROT_READ, MAP_SHARED,
		       bpf_map__fd(dp->skel->maps.loupe_events), (off_t)n * dp->page);

	return p == MAP_FAILED ? NULL : p;
}

int loupe_datapath_open(const struct loupe_datapath_opts *opts, loupe_record_fn on_record,
			void *ctx, struct loupe_datapath **ret_dp)
{
	struct loupe_datapath *dp;
	int err;

	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	dp->on_record = on_record;
	dp->ctx = ctx;
	dp->ncpus = libbpf_num_possible_cpus();
	if (dp->ncpus <= 0) {
		err = dp->ncpus ? dp->ncpus : -EINVAL;
		goto fail;
	}

	dp->skel = loupe_tc_bpf__open();
	if (!dp->skel) {
		err = -errno;
		goto fail;
	}
	dp->skel->rodata->loupe_cfg_replay = opts && opts->replay;
	/* the coarse clock costs a fraction of bpf_ktime_get_ns(); older kernels lack it */
	dp->skel->rodata->loupe_cfg_coarse_clock =
		libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, BPF_FUNC_ktime_get_coarse_ns,
					NULL) == 1;
	if (opts && opts->flows_max) {
		err = bpf_map__set_max_entries(dp->skel->maps.loupe_flows4, opts->flows_max);
		if (!err)
			err = bpf_map__set_max_entries(dp->skel->maps.loupe_flows6,
						       opts->flows_max);
		if (err)
			goto fail;
	}
	if (opts && opts->events_size) {
		err = bpf_map__set_max_entries(dp->skel->maps.loupe_events, opts->events_size);
		if (err)
			goto fail;
	}

	if (opts && opts->pin_dir) {
		err = datapath_set_pin_paths(dp->skel, opts->pin_dir);
		if (err)
			goto fail;
	}

	err = loupe_tc_bpf__load(dp->skel);
	if (err)
		goto fail;

	if (opts && opts->pin_dir) {
		err = datapath_pin_programs(dp->skel, opts->pin_dir);
		if (err)
			goto fail;
	}

	dp->rb = ring_buffer__new(bpf_map__fd(dp->skel->maps.loupe_events), datapath_on_ringbuf, dp,
				  NULL);
	if (!dp->rb) {
		err = -errno;
		goto fail;
	}
	dp->page = sysconf(_SC_PAGESIZE);
	dp->ring_consumer = datapath_map_ring_page(dp, 0);
	dp->ring_producer = datapath_map_ring_page(dp, 1);
	*ret_dp = dp;
	return 0;
fail:
	loupe_datapath_free(dp);
	return err < 0 ? err : -EINVAL;
}

struct loupe_datapath *loupe_datapath_free(struct loupe_datapath *dp)
{
	if (!dp)
		return NULL;
	if (dp->ring_consumer)
		munmap((void *)dp->ring_consumer, dp->page);
	if (dp->ring_producer)
		munmap((void *)dp->ring_producer, dp->page);
	ring_buffer__free(dp->rb);
	loupe_tc_bpf__destroy(dp->skel);
	free(dp);
	return NULL;
}

int loupe_datapath_prog_fd(const struct loupe_datapath *dp, enum loupe_direction dir)
{
	return bpf_program__fd(dir == LOUPE_DIR_POD_INGRESS ? dp->skel->progs.loupe_pod_ingress
							    : dp->skel->progs.loupe_pod_egress);
}

int loupe_datapath_flows_fd(const struct loupe_datapath *dp, bool ipv6)
{
	return bpf_map__fd(ipv6 ? dp->skel->maps.loupe_flows6 : dp->skel->maps.loupe_flows4);
}

static void flow_key_to_v4(const struct loupe_flow_key *key, struct loupe_flow_key4 *ret)
{
	memset(ret, 0, sizeof(*ret));
	memcpy(&ret->pod_addr, key->pod_addr + 12, 4);
	memcpy(&ret->peer_addr, key->peer_addr + 12, 4);
	ret->pod_port = key->pod_port;
	ret->peer_port = key->peer_port;
	ret->protocol = key->protocol;
}

static void flow_key_from_v4(const struct loupe_flow_key4 *key4, struct loupe_flow_key *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->pod_addr[10] = ret->pod_addr[11] = 0xff;
	ret->peer_addr[10] = ret->peer_addr[11] = 0xff;
	memcpy(ret->pod_addr + 12, &key4->pod_addr, 4);
	memcpy(ret->peer_addr + 12, &key4->peer_addr, 4);
	ret->pod_port = key4->pod_port;
	ret->peer_port = key4->peer_port;
	ret->protocol = key4->protocol;
}

/*
 * The flow table and the key that @key (IPv4-mapped for IPv4) stands for in it: the IPv4
 * table takes the short key, built in @key4.
 */
static int flow_table_key(const struct loupe_datapath *dp, const struct loupe_flow_key *key,
			  struct loupe_flow_key4 *key4, const void **ret_key)
{
	if (!loupe_addr_is_v4_mapped(key->pod_addr) || !loupe_addr_is_v4_mapped(key->peer_addr)) {
		*ret_key = key;
		return loupe_datapath_flows_fd(dp, true);
	}
	flow_key_to_v4(key, key4);
	*ret_key = key4;
	return loupe_datapath_flows_fd(dp, false);
}

int loupe_datapath_flow_lookup(const struct loupe_datapath *dp, const struct loupe_flow_key *key,
			       struct loupe_flow *ret)
{
	struct loupe_flow_key4 key4;
	const void *k;
	int fd = flow_table_key(dp, key, &key4, &k);

	return bpf_map_lookup_elem(fd, k, ret) ? -errno : 0;
}

int loupe_datapath_flow_delete(const struct loupe_datapath *dp, const struct loupe_flow_key *key)
{
	struct loupe_flow_key4 key4;
	const void *k;
	int fd = flow_table_key(dp, key, &key4, &k);

	return bpf_map_delete_elem(fd, k) ? -errno : 0;
}

int loupe_datapath_ring_fill(const struct loupe_datapath *dp, uint64_t *ret_pending,
			     uint64_t *ret_size)
{
	if (!dp->ring_consumer || !dp->ring_producer)
		return -ENOTSUP;
	*ret_pending = *dp->ring_producer - *dp->ring_consumer;
	*ret_size = bpf_map__max_entries(dp->skel->maps.loupe_events);
	return 0;
}

int loupe_datapath_flows_foreach(const struct loupe_datapath *dp, loupe_flow_fn fn, void *ctx)
{
	union {
		struct loupe_flow_key4 v4;
		struct loupe_flow_key v6;
	} key, next;
	struct loupe_flow_key generic;
	struct loupe_flow flow;

	for (int v6 = 0; v6 <= 1; v6++) {
		int fd = loupe_datapath_flows_fd(dp, v6);
		void *prev = NULL;

		while (bpf_map_get_next_key(fd, prev, &next) == 0) {
			key = next;
			prev = &key;
			if (bpf_map_lookup_elem(fd, &key, &flow))
				continue; /* evicted meanwhile */
			if (v6)
				generic = key.v6;
			else
				flow_key_from_v4(&key.v4, &generic);
			int res = fn(ctx, &generic, &flow);
			if (res)
				return res;
		}
		if (errno != ENOENT)
			return -errno;
	}
	return 0;
}

int loupe_datapath_counters_fd(const struct loupe_datapath *dp)
{
	return bpf_map__fd(dp->skel->maps.loupe_counters);
}

int loupe_datapath_map_fd(const struct loupe_datapath *dp, const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(dp->skel->obj, name);

	return map ? bpf_map__fd(map) : -ENOENT;
}

int loupe_datapath_ncpus(const struct loupe_datapath *dp)
{
	return dp->ncpus;
}

int loupe_datapath_run_out(struct loupe_datapath *dp, enum loupe_direction dir, const void *frame,
			   size_t len, uint64_t ts_ns, void *out, size_t out_cap,
			   size_t *ret_out_len, int *ret_tc_action)
{
	return loupe_datapath_run_wire_out(dp, dir, frame, len, len, ts_ns, out, out_cap,
					   ret_out_len, ret_tc_action);
}

int loupe_datapath_run_wire_out(struct loupe_datapath *dp, enum loupe_direction dir,
				const void *frame, size_t len, size_t wire_len, uint64_t ts_ns,
				void *out, size_t out_cap, size_t *ret_out_len, int *ret_tc_action)
{
	/* as loupe_datapath_run_wire() */
	struct __sk_buff skb_ctx = { .tstamp = ts_ns,
				     .wire_len = wire_len > len && wire_len <= 65536
							 ? (uint32_t)wire_len
							 : 0 };
	LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame, .data_size_in = len, .data_out = out,
		    .data_size_out = out_cap, .ctx_in = &skb_ctx, .ctx_size_in = sizeof(skb_ctx),
		    .repeat = 1);
	int err;

	if (len > UINT32_MAX || out_cap > UINT32_MAX)
		return -E2BIG;
	err = bpf_prog_test_run_opts(loupe_datapath_prog_fd(dp, dir), &run);
	if (err)
		return -errno;
	if (ret_out_len)
		*ret_out_len = run.data_size_out;
	if (ret_tc_action)
		*ret_tc_action = (int)run.retval;
	return 0;
}

int loupe_datapath_run_wire(struct loupe_datapath *dp, enum loupe_direction dir, const void *frame,
			    size_t len, size_t wire_len, uint64_t ts_ns, int *ret_tc_action)
{
	/* a wire length beyond what an skb can say (GSO_MAX_SIZE) is left to skb->len */
	struct __sk_buff skb_ctx = { .tstamp = ts_ns,
				     .wire_len = wire_len > len && wire_len <= 65536
							 ? (uint32_t)wire_len
							 : 0 };
	LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame, .data_size_in = len,
		    .ctx_in = &skb_ctx, .ctx_size_in = sizeof(skb_ctx), .repeat = 1);
	int err;

	if (len > UINT32_MAX)
		return -E2BIG;
	err = bpf_prog_test_run_opts(loupe_datapath_prog_fd(dp, dir), &run);
	if (err)
		return -errno;
	if (ret_tc_action)
		*ret_tc_action = (int)run.retval;
	return 0;
}

int loupe_datapath_run(struct loupe_datapath *dp, enum loupe_direction dir, const void *frame,
		       size_t len, uint64_t ts_ns, int *ret_tc_action)
{
	return loupe_datapath_run_wire(dp, dir, frame, len, len, ts_ns, ret_tc_action);
}

size_t loupe_datapath_run_max(void)
{
	long page = sysconf(_SC_PAGESIZE);

	return (page > 0 ? (size_t)page : 4096) - 64 - 320;
}

int loupe_datapath_drain(struct loupe_datapath *dp)
{
	return ring_buffer__consume(dp->rb);
}

int loupe_datapath_poll(struct loupe_datapath *dp, int timeout_ms)
{
	return ring_buffer__poll(dp->rb, timeout_ms);
}

int loupe_datapath_events_fd(const struct loupe_datapath *dp)
{
	return ring_buffer__epoll_fd(dp->rb);
}

int loupe_datapath_read_counters(const struct loupe_datapath *dp, struct loupe_counters *ret)
{
	size_t nwords = sizeof(*ret) / sizeof(uint64_t);
	uint64_t *sum = (uint64_t *)ret;
	uint64_t *percpu;
	uint32_t zero = 0;
	int err = 0;

	percpu = calloc(dp->ncpus, sizeof(*ret));
	if (!percpu)
		return -ENOMEM;
	if (bpf_map_lookup_elem(loupe_datapath_counters_fd(dp), &zero, percpu)) {
		err = -errno;
		goto out;
	}
	memset(ret, 0, sizeof(*ret));
	for (int cpu = 0; cpu < dp->ncpus; cpu++)
		for (size_t i = 0; i < nwords; i++)
			sum[i] += percpu[cpu * nwords + i];
out:
	free(percpu);
	return err;
}
