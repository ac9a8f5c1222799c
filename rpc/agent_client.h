/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's side of the controller connection: one bidirectional stream (AgentService
 * Connect) kept up by a thread of its own, with keepalive and exponential backoff; hello with
 * node, version and the policy revision in force; policy bundles handed to the agent's loop
 * and acknowledged with success or the validation error; events numbered, buffered until the
 * controller acknowledges them, sent again after a reconnect, the oldest dropped past the
 * bound and counted in a LOST event. What must survive the agent (the last revision, the
 * sequence numbers) is kept in the state directory. Not for applying policies (the agent's
 * callback does) nor for logging (the agent reads the state changes and logs them).
 */
#ifndef LOUPE_RPC_AGENT_CLIENT_H
#define LOUPE_RPC_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "rpc.h"

#define LOUPE_RPC_AGENT_BUFFER_DEFAULT 100000

struct loupe_rpc_agent;

struct loupe_rpc_agent_opts {
	struct loupe_rpc_channel_opts chan;
	const char *node;
	const char *version;
	const char *state_dir; /* created if missing */
	size_t event_buffer;   /* events kept until acknowledged; 0: the default */
	/*
	 * Puts a bundle in force (a loupe.dev/v1 PolicyList of @len bytes). Called from
	 * loupe_rpc_agent_process() on the caller's thread. Returns 0, or < 0 with one sentence
	 * in @err: the bundle is refused whole and the one in force stays.
	 */
	int (*on_policy)(void *ctx, const char *json, size_t len, uint64_t revision, char *err,
			 size_t errsize);
	/* The connection went up or down (@detail says why); from process(), may be NULL. */
	void (*on_state)(void *ctx, bool connected, const char *detail);
	void *ctx;
};

struct loupe_rpc_agent_stats {
	bool connected;
	uint64_t connects;	 /* streams that got a first answer */
	uint64_t events_queued;	 /* handed to loupe_rpc_agent_send() */
	uint64_t events_sent;	 /* sent, resends included */
	uint64_t events_acked;	 /* acknowledged: the controller has them */
	uint64_t events_dropped; /* pushed out of a full buffer (reported in LOST events) */
	uint64_t buffered;	 /* kept now, unacknowledged */
	uint64_t policies_applied;
	uint64_t policies_refused;
	uint64_t revision; /* in force */
	uint64_t next_seq;
};

/*
 * Reads the state directory (sequence numbers; the last bundle put in force, which the first
 * loupe_rpc_agent_process() puts in force again) and starts the connection thread. Nothing is
 * said to the controller before that first process(). Returns 0, or -errno with a sentence.
 */
int loupe_rpc_agent_start(const struct loupe_rpc_agent_opts *opts, struct loupe_rpc_agent **ret,
			  char *err, size_t errsize);

/* An eventfd, readable when process() has something to do: poll it in the agent's loop. */
int loupe_rpc_agent_fd(const struct loupe_rpc_agent *a);

/* Runs the callbacks due (state changes, the newest policy bundle). Returns bundles handled. */
int loupe_rpc_agent_process(struct loupe_rpc_agent *a);

/*
 * Numbers @ev (its seq is replaced by the agent's persistent one) and buffers it for the
 * controller. Thread-safe. Returns 0, or -errno when the event cannot be encoded.
 */
int loupe_rpc_agent_send(struct loupe_rpc_agent *a, const struct loupe_event *ev);

void loupe_rpc_agent_get_stats(struct loupe_rpc_agent *a, struct loupe_rpc_agent_stats *ret);

/*
 * Waits up to @flush_ms for the controller to acknowledge what is buffered (when connected),
 * then closes the stream, stops the thread and frees. Accepts NULL; returns NULL.
 */
struct loupe_rpc_agent *loupe_rpc_agent_stop(struct loupe_rpc_agent *a, int flush_ms);

#endif
