/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's event pipeline: ring buffer records become events (per-agent seq, node,
 * interface and pod), flows are exported as FLOW_END on idle and active timeouts and when
 * TCP closes, and the ring buffer's losses are reported in-band as LOST events. Events go to
 * a sink (the output, later the controller stream). Not for attaching or for the outputs.
 */
#ifndef LOUPE_PIPELINE_H
#define LOUPE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "datapath.h"
#include "event.h"

struct loupe_pipeline;

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
	uint64_t records_bad;	/* ring buffer records that did not decode */
	uint64_t lost_reported; /* events the datapath lost, reported in LOST events */
	uint64_t flows_deleted; /* idle or closed flows taken out of the table */
};

int loupe_pipeline_new(const struct loupe_pipeline_opts *opts, struct loupe_pipeline **ret);
struct loupe_pipeline *loupe_pipeline_free(struct loupe_pipeline *p);

/*
 * The datapath whose flows and counters tick() reads. Its current loss counters become the
 * baseline: losses from before (an earlier agent's) are not reported again.
 */
int loupe_pipeline_attach_datapath(struct loupe_pipeline *p, struct loupe_datapath *dp);

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
