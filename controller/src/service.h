/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controller's services over the rpc server: agent streams (hello, policy bundles and
 * their acknowledgements, event batches deduplicated by (agent, seq) and acknowledged once
 * written), the event history, GetEvents subscribers (filters, follow, the last N; a slow one
 * is sampled, told what it missed, and cut off when it stops reading), ListAgents, and the
 * policy service on the store. Runs on the thread that polls the rpc server. Not for flags,
 * signals or the metrics endpoint (main.c).
 */
#ifndef LOUPE_CONTROLLER_SERVICE_H
#define LOUPE_CONTROLLER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "output.h"
#include "server.h"
#include "store.h"

struct loupe_service;

struct loupe_service_opts {
	struct loupe_store *store;
	struct loupe_output *output; /* JSON lines; NULL: none */
	const char *output_path;     /* a file, for the restart's dedupe scan; NULL or "-": none */
	const char *cursor_path;     /* where the highest seq per agent is kept */
	size_t history;		     /* events kept in memory for GetEvents */
	size_t subscriber_queue;     /* events waiting per subscriber before it is sampled */
	int cutoff_ms;		     /* a subscriber that reads nothing this long is cut off */
};

struct loupe_service_stats {
	uint64_t agents_connected, agents_known;
	uint64_t events_in, events_duplicate, events_written, events_malformed;
	uint64_t subscribers, subscribers_cut, subscriber_missed;
	uint64_t history_events;
	uint64_t acks_ok, acks_refused;
	uint64_t pushes;
};

/* Reads the cursor (and the output written after it): what each agent already delivered. */
int loupe_service_new(const struct loupe_service_opts *opts, struct loupe_service **ret, char *err,
		      size_t errsize);
struct loupe_service *loupe_service_free(struct loupe_service *s);

/* The methods to serve; ctx for the server is the service. */
const struct loupe_rpc_method *loupe_service_methods(size_t *ret_n);

/* The policy set changed (apply, delete, watched directory): push it to every agent. */
void loupe_service_push_all(struct loupe_service *s);

/* About once a second: rates, cut-offs, the cursor file. */
void loupe_service_tick(struct loupe_service *s);

void loupe_service_get_stats(const struct loupe_service *s, struct loupe_service_stats *ret);

#endif
