/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loading loupe's TC programs (libbpf skeleton) and running them: on live links (the agent,
 * later) or on packets handed in by user space through BPF_PROG_TEST_RUN (replay, tests,
 * bench). Owns the ring buffer consumer. Not for attaching to links or policy.
 */
#ifndef LOUPE_DATAPATH_USER_H
#define LOUPE_DATAPATH_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loupe/datapath.h"

struct loupe_datapath;

struct loupe_datapath_opts {
	/*
	 * Replay mode: time comes from the packet (ts_ns given to _run) instead of the clock,
	 * and the direction of each packet is taken from the flow it belongs to (see
	 * loupe_datapath_run()).
	 */
	bool replay;
	uint32_t flows_max;   /* 0: LOUPE_FLOWS_DEFAULT_MAX */
	uint32_t events_size; /* ring buffer bytes, power of two; 0: LOUPE_EVENTS_DEFAULT_SIZE */
	/*
	 * A bpffs directory (e.g. /sys/fs/bpf/loupe): maps pinned there by an earlier agent are
	 * reused (flows and counters survive a restart), new ones pinned; programs are pinned
	 * there after load, replacing the earlier agent's pins. NULL: nothing pinned.
	 */
	const char *pin_dir;
};

/* Called for each ring buffer record; a non-zero return stops the drain and is passed up. */
typedef int (*loupe_record_fn)(void *ctx, const void *record, size_t size);

/* Opens and loads the programs. Returns 0 or -errno. */
int loupe_datapath_open(const struct loupe_datapath_opts *opts, loupe_record_fn on_record,
			void *ctx, struct loupe_datapath **ret_dp);
struct loupe_datapath *loupe_datapath_free(struct loupe_datapath *dp);

/*
 * Removes every pin loupe makes under @pin_dir, then the directory if it is empty.
 * Returns 0 (also when nothing was there) or -errno.
 */
int loupe_datapath_unpin(const char *pin_dir);

int loupe_datapath_prog_fd(const struct loupe_datapath *dp, enum loupe_direction dir);
int loupe_datapath_flows_fd(const struct loupe_datapath *dp, bool ipv6);
int loupe_datapath_counters_fd(const struct loupe_datapath *dp);
/* Any map by its name in loupe/datapath.h (LOUPE_MAP_*): its fd, or -ENOENT. */
int loupe_datapath_map_fd(const struct loupe_datapath *dp, const char *name);
/* Possible CPUs: the number of values of a per-CPU map's entry. */
int loupe_datapath_ncpus(const struct loupe_datapath *dp);

/*
 * Runs one frame through the program of direction @dir with BPF_PROG_TEST_RUN; map state
 * persists across calls as with live traffic. @ts_ns is the frame's time (used in replay
 * mode). In replay mode @dir is a hint for a frame that opens a new flow: a frame whose
 * flow exists already takes that flow's direction (its source is the pod, or its peer).
 * ret_tc_action: the program's return code (TC_ACT_*). Returns 0 or -errno.
 */
int loupe_datapath_run(struct loupe_datapath *dp, enum loupe_direction dir, const void *frame,
		       size_t len, uint64_t ts_ns, int *ret_tc_action);

/*
 * As loupe_datapath_run(), for a frame of @wire_len bytes of which @len were captured (a
 * snaplen, or BPF_PROG_TEST_RUN's own limit: loupe_datapath_run_max()): the flow's byte
 * counts are the wire's.
 */
int loupe_datapath_run_wire(struct loupe_datapath *dp, enum loupe_direction dir, const void *frame,
			    size_t len, size_t wire_len, uint64_t ts_ns, int *ret_tc_action);

/*
 * The longest frame BPF_PROG_TEST_RUN takes for a TC program: a page less the skb's headroom
 * (NET_SKB_PAD) and its aligned struct skb_shared_info, 3712 bytes with 4 KiB pages.
 */
size_t loupe_datapath_run_max(void);

/*
 * As loupe_datapath_run(), and the frame as the program left it (rewritten) in @out (@out_cap
 * bytes; *ret_out_len its length). A tag the program pushed is skb metadata, not in @out.
 */
int loupe_datapath_run_out(struct loupe_datapath *dp, enum loupe_direction dir, const void *frame,
			   size_t len, uint64_t ts_ns, void *out, size_t out_cap,
			   size_t *ret_out_len, int *ret_tc_action);

/* Both: the captured part of a longer frame (_run_wire()) and the frame as left (_run_out()). */
int loupe_datapath_run_wire_out(struct loupe_datapath *dp, enum loupe_direction dir,
				const void *frame, size_t len, size_t wire_len, uint64_t ts_ns,
				void *out, size_t out_cap, size_t *ret_out_len, int *ret_tc_action);

/* Hands every pending ring buffer record to the callback. Returns records seen or -errno. */
int loupe_datapath_drain(struct loupe_datapath *dp);

/* Waits up to @timeout_ms for records, then drains. Returns records seen or -errno. */
int loupe_datapath_poll(struct loupe_datapath *dp, int timeout_ms);

/* An fd that polls readable when records wait (for a daemon's epoll loop). */
int loupe_datapath_events_fd(const struct loupe_datapath *dp);

/*
 * Looks up a flow by its key from the pod's side; IPv4 flows by IPv4-mapped addresses
 * (an IPv6 packet never carries those). Returns 0, -ENOENT, or -errno.
 */
int loupe_datapath_flow_lookup(const struct loupe_datapath *dp, const struct loupe_flow_key *key,
			       struct loupe_flow *ret);

/* Called for each flow; keys of IPv4 flows come IPv4-mapped. Non-zero stops the walk. */
typedef int (*loupe_flow_fn)(void *ctx, const struct loupe_flow_key *key,
			     const struct loupe_flow *flow);

/* Walks both flow tables. Returns the callback's non-zero result, 0, or -errno. */
int loupe_datapath_flows_foreach(const struct loupe_datapath *dp, loupe_flow_fn fn, void *ctx);

/* Removes a flow (an idle one being exported). Returns 0, -ENOENT or -errno. */
int loupe_datapath_flow_delete(const struct loupe_datapath *dp, const struct loupe_flow_key *key);

/* Bytes waiting in the ring buffer, and its size: how full it is. Returns 0 or -errno. */
int loupe_datapath_ring_fill(const struct loupe_datapath *dp, uint64_t *ret_pending,
			     uint64_t *ret_size);

/* Sum of the per-CPU counters. */
int loupe_datapath_read_counters(const struct loupe_datapath *dp, struct loupe_counters *ret);

#endif
