/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's event pipeline: ring buffer records become events (per-agent seq, node,
 * interface and pod), flows are exported as FLOW_END on idle and active timeouts and when
 * TCP closes, and the ring buffer's losses are reported in-band as LOST events; POLICY_VERDICT
 * events get the names of their policy and rule. Events go to a sink (the output, later the
 * controller stream). Not for attaching, for the outputs or for applying policies.
 */
#ifndef LOUPE_PIPELINE_H
#define LOUPE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "datapath.h"
#include "event.h"

struct loupe_pipeline;
struct loupe_policy_runtime;

/* Takes one event; a negative return is counted as a sink error, the pipeline goes on. */
typedef int (*loupe_sink_fn)(void *ctx, const struct loupe_event *ev);

/* Fills the event's interface name and pod addresses from its ifindex; false: unknown. */
typedef bool (*loupe_enrich_fn)(void *ctx, struct loupe_event *ev);

struct loupe_pipeline_opts {
	const char *node;
	uint64_t flow_idle_ns;	 /* a flow without packets for this long ends */
	uint64_t flow_active_ns; /* a flow that lasts is reported every this long */
	loupe_sink_fn sink;
	void *sink_ctx;
	loupe_enrich_fn enrich; /* may be NULL */
	void *enrich_ctx;
};

struct loupe_pipeline_stats {
	uint64_t events[LOUPE_EV_KIND_MAX]; /* handed to the sink, by kind */
	uint64_t sink_errors;
	uint64_t records_bad;	   /* ring buffer records that did not decode */
	uint64_t lost_reported;	   /* events the datapath lost, reported in LOST events */
	uint64_t flows_deleted;	   /* idle or closed flows taken out of the table */
	uint64_t verdicts_unnamed; /* POLICY_VERDICTs of a generation whose names were not known */
	uint64_t rewrites_unnamed; /* REWRITEs likewise */
};

int loupe_pipeline_new(const struct loupe_pipeline_opts *opts, struct loupe_pipeline **ret);
struct loupe_pipeline *loupe_pipeline_free(struct loupe_pipeline *p);

/*
 * The datapath whose flows and counters tick() reads. Its current loss counters become the
 * baseline: losses from before (an earlier agent's) are not reported again.
 */
int loupe_pipeline_attach_datapath(struct loupe_pipeline *p, struct loupe_datapath *dp);

/*
 * The policy runtime that names the rules of POLICY_VERDICT events (NULL: verdicts keep no
 * names). It must outlive the pipeline or be unset first.
 */
void loupe_pipeline_set_policy(struct loupe_pipeline *p, const struct loupe_policy_runtime *rt);

/*
 * Fills @ev->verdict.policy and .rule from the bit and generation of a POLICY_VERDICT, and
 * turns reason RULE into DEFAULT_ACTION when the bit is a policy's default. Returns false when
 * @rt does not know that generation's names (too old, or a set an earlier agent applied);
 * true for other kinds and for verdicts without a rule (BOUND_EXCEEDED). Replay uses it too.
 */
bool loupe_pipeline_name_verdict(const struct loupe_policy_runtime *rt, struct loupe_event *ev);

/*
 * Fills @ev->rewrite.policy, .name and .masked[] (the header names of its masked bits) from
 * the generation and index of a REWRITE. Returns false when @rt does not know that
 * generation's names (then they stay empty and the index says which rewrite it was); true for
 * other kinds. Replay uses it too.
 */
bool loupe_pipeline_name_rewrite(const struct loupe_policy_runtime *rt, struct loupe_event *ev);

/* The datapath's record callback (loupe_datapath_open's on_record, ctx = the pipeline). */
int loupe_pipeline_on_record(void *ctx, const void *record, size_t size);

/*
 * Periodic work, about once a second: LOST events for losses since the last tick, then the
 * flow table walk (FLOW_END for idle, closed and long flows). Returns events emitted or
 * -errno.
 */
int loupe_pipeline_tick(struct loupe_pipeline *p);

void loupe_pipeline_get_stats(const struct loupe_pipeline *p, struct loupe_pipeline_stats *ret);

#endif
