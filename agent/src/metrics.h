/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's HTTP endpoint (libmicrohttpd, one internal thread): GET /metrics in the
 * Prometheus text format 0.0.4, /healthz (the main loop's heartbeat is recent) and /readyz
 * (the agent said it is ready). The main loop publishes snapshots; the HTTP thread only
 * formats the last one, so it never touches the agent's state. Not for collecting figures.
 */
#ifndef LOUPE_METRICS_H
#define LOUPE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loupe/datapath.h"
#include "output.h"

#define LOUPE_METRICS_CONTENT_TYPE	   "text/plain; version=0.0.4; charset=utf-8"
#define LOUPE_METRICS_HEARTBEAT_TIMEOUT_MS 10000

/* Flows decided by one rule (or a policy's default, rule ""), since it was first in force. */
struct loupe_metrics_rule_hits {
	char policy[64];
	char rule[64];
	char action[8]; /* "allow", "deny", "audit" */
	uint64_t flows;
};

/* What /metrics shows; the main loop fills one and publishes it. */
struct loupe_metrics_snapshot {
	struct loupe_counters dp; /* the datapath's per-CPU counters, summed */
	uint64_t ifaces_attached;
	uint64_t ringbuf_pending; /* bytes produced and not yet consumed */
	uint64_t ringbuf_size;
	uint64_t records_invalid; /* ring buffer records that did not decode */
	uint64_t links_resyncs;	  /* rtnetlink re-dumps after the notification socket overflowed */
	uint64_t links_dropped;	  /* links not tracked: the table was full */
	uint64_t pod_addrs_truncated; /* times a pod had more addresses than are kept */
	uint64_t events_emitted[LOUPE_EV_KIND_MAX]; /* by the agent, FLOW_END and LOST included */
	uint64_t lost_reported;			    /* sum of the counts in emitted LOST events */
	struct loupe_output_stats output;	    /* standalone output; zero otherwise */
	/* policies (the datapath's drop counters are in dp) */
	uint32_t policy_generation;	 /* the set in force; 0: none applied */
	uint64_t policy_reloads_ok;	 /* sets applied after the first */
	uint64_t policy_reloads_refused; /* reloads refused: the set in force stayed */
	uint64_t verdicts_unnamed;	 /* POLICY_VERDICTs of a generation the agent forgot */
	/* the controller connection (with --controller; all zero standalone) */
	bool controller;	      /* the agent has one: the figures below are shown */
	bool controller_connected;    /* a stream is up now */
	uint64_t controller_connects; /* streams that got a first answer */
	uint64_t events_sent;	      /* to the controller, resends included */
	uint64_t events_acked;	      /* acknowledged: the controller has them */
	uint64_t events_buffered;     /* kept now, not acknowledged yet */
	uint64_t events_dropped;      /* pushed out of the full buffer (reported in LOST events) */
	uint64_t controller_revision; /* the policy revision in force from the controller */
	/* the set in force, in evaluation order; publish copies it, the caller keeps its own */
	const struct loupe_metrics_rule_hits *rule_hits;
	size_t n_rule_hits;
};

struct loupe_metrics_opts {
	const char *addr;    /* "127.0.0.1:9750", "[::1]:9750"; port 0 takes a free port */
	const char *version; /* loupe_build_info's version label; NULL: "unknown" */
	unsigned int heartbeat_timeout_ms; /* /healthz fails past it; 0: the default, 10 s */
};

struct loupe_metrics;

/*
 * Binds @opts->addr and starts serving. The heartbeat counts as fresh at start; not ready
 * until loupe_metrics_set_ready(). The HTTP thread starts with every signal blocked.
 * Returns 0, -EINVAL for a malformed address, the bind's -errno (-EADDRINUSE,
 * -EADDRNOTAVAIL, -EACCES), or -errno of the start.
 */
int loupe_metrics_start(const struct loupe_metrics_opts *opts, struct loupe_metrics **ret_m);

/* The bound port (useful after port 0). */
uint16_t loupe_metrics_port(const struct loupe_metrics *m);

/* Copies @s, its rule_hits too; later requests show it. Returns 0 or -ENOMEM (the copy of
 * rule_hits could not grow: the previous ones stay). */
int loupe_metrics_publish(struct loupe_metrics *m, const struct loupe_metrics_snapshot *s);

/* The main loop is alive: call it every loop iteration or timer tick. */
void loupe_metrics_heartbeat(struct loupe_metrics *m);

/* /readyz answers 200 once set (after the initial link dump and attach). */
void loupe_metrics_set_ready(struct loupe_metrics *m, bool ready);

/* Stops the thread and closes the socket; accepts NULL; returns NULL. */
struct loupe_metrics *loupe_metrics_stop(struct loupe_metrics *m);

/*
 * The /metrics body for @s: a malloc'd, NUL-terminated text (*ret_len bytes without the NUL).
 * Returns 0 or -ENOMEM.
 */
int loupe_metrics_format(const struct loupe_metrics_snapshot *s, const char *version,
			 char **ret_text, size_t *ret_len);

/*
 * Parses "a.b.c.d:port" or "[v6addr]:port" ("[fe80::1%eth0]:port" with a zone), numeric only,
 * port 0..65535. Returns 0 or -EINVAL.
 */
int loupe_metrics_parse_addr(const char *addr, struct sockaddr_storage *ret_ss, socklen_t *ret_len);

#endif
