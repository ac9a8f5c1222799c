// SPDX-License-Identifier: Apache-2.0
/*
 * The agent's event pipeline: decode and enrich ring buffer records, export flows, report
 * losses. Runs on the agent's one loop thread; nothing here blocks or logs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "policy_apply.h"

_Static_assert(LOUPE_EVENT_POLICY_NAME_MAX == LOUPE_POLICY_NAME_MAX + 1,
	       "an event holds a policy or rule name whole");
_Static_assert(LOUPE_EVENT_HEADER_NAME_MAX == LOUPE_POLICY_HEADER_NAME_MAX + 1 &&
		       LOUPE_POLICY_MASK_HEADERS_MAX <= LOUPE_MASK_HEADERS_MAX,
	       "an event holds every masked header name whole");

/* A closed TCP flow ends once it has been quiet this long: its last ACK must not make it new. */
#define PIPELINE_CLOSE_LINGER_NS (2ull * 1000000000ull)

struct pipeline_doomed {
	struct loupe_flow_key *keys;
	size_t n, cap;
};

struct loupe_pipeline {
	struct loupe_pipeline_opts opts;
	char node[64];
	struct loupe_datapath *dp;
	const struct loupe_policy_runtime *policy;
	uint64_t seq;
	uint64_t lost_seen[LOUPE_EV_KIND_MAX]; /* the datapath's loss counters at the last tick */
	uint64_t prev_tick_ns;		       /* CLOCK_MONOTONIC */
	uint64_t tick_ns;
	int64_t mono_to_real_ns;
	struct pipeline_doomed doomed;
	struct loupe_pipeline_stats stats;
};

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Kernel times are CLOCK_MONOTONIC (coarse); events carry wall-clock time. */
static int64_t pipeline_mono_to_real(void)
{
	uint64_t mono = clock_ns(CLOCK_MONOTONIC);
	uint64_t real = clock_ns(CLOCK_REALTIME);

	return (int64_t)(real - mono);
}

int loupe_pipeline_new(const struct loupe_pipeline_opts *opts, struct loupe_pipeline **ret)
{
	struct loupe_pipeline *p;

	if (!opts->sink || !opts->flow_idle_ns || opts->flow_active_ns < opts->flow_idle_ns)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->opts = *opts;
	if (opts->node)
		snprintf(p->node, sizeof(p->node), "%s", opts->node);
	p->opts.node = p->node;
	p->mono_to_real_ns = pipeline_mono_to_real();
	p->prev_tick_ns = p->tick_ns = clock_ns(CLOCK_MONOTONIC);
	*ret = p;
	return 0;
}

struct loupe_pipeline *loupe_pipeline_free(struct loupe_pipeline *p)
{
	if (!p)
		return NULL;
	free(p->doomed.keys);
	free(p);
	return NULL;
}

int loupe_pipeline_attach_datapath(struct loupe_pipeline *p, struct loupe_datapath *dp)
{
	struct loupe_counters cnt;
	int err;

	err = loupe_datapath_read_counters(dp, &cnt);
	if (err)
		return err;
	memcpy(p->lost_seen, cnt.events_lost, sizeof(p->lost_seen));
	p->dp = dp;
	return 0;
}

void loupe_pipeline_set_policy(struct loupe_pipeline *p, const struct loupe_policy_runtime *rt)
{
	p->policy = rt;
}

bool loupe_pipeline_name_verdict(const struct loupe_policy_runtime *rt, struct loupe_event *ev)
{
	const struct loupe_policy_bit_info *info;

	if (ev->kind != LOUPE_EV_POLICY_VERDICT || ev->verdict.bit == LOUPE_POLICY_BIT_NONE ||
	    ev->verdict.reason == LOUPE_EVENT_REASON_BOUND_EXCEEDED)
		return true;
	info = rt ? loupe_policy_bit_lookup(rt, ev->verdict.generation, ev->verdict.bit) : NULL;
	if (!info)
		return false;
	snprintf(ev->verdict.policy, sizeof(ev->verdict.policy), "%s", info->policy);
	snprintf(ev->verdict.rule, sizeof(ev->verdict.rule), "%s",
		 info->is_default ? "" : info->rule);
	if (info->is_default && ev->verdict.reason == LOUPE_EVENT_REASON_RULE)
		ev->verdict.reason = LOUPE_EVENT_REASON_DEFAULT_ACTION;
	return true;
}

/*
 * The first bit of generation @generation's rewrites (meta.rewrite_base): bits are numbered
 * rules, defaults, rewrites, so the bits that are rewrites or past the last one are a tail;
 * found by bisection in a dozen lookups. -1 when the generation is unknown.
 */
static long rewrite_base(const struct loupe_policy_runtime *rt, uint32_t generation)
{
	const struct loupe_policy_bit_info *info;
	unsigned int lo = 0, hi = LOUPE_POLICY_BITS, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		info = loupe_policy_bit_lookup(rt, generation, mid);
		if (!info || info->kind == LOUPE_POLICY_BIT_REWRITE)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo < LOUPE_POLICY_BITS ? (long)lo : -1;
}

bool loupe_pipeline_name_rewrite(const struct loupe_policy_runtime *rt, struct loupe_event *ev)
{
	const struct loupe_policy_bit_info *info;
	const struct loupe_policy_rewrite *rw;
	long base;

	if (ev->kind != LOUPE_EV_REWRITE)
		return true;
	base = rt ? rewrite_base(rt, ev->rewrite.generation) : -1;
	info = base >= 0 ? loupe_policy_bit_lookup(rt, ev->rewrite.generation,
						   (unsigned int)base + ev->rewrite.index)
			 : NULL;
	rw = rt ? loupe_policy_rewrite_lookup(rt, ev->rewrite.generation, ev->rewrite.index) : NULL;
	if (!info || info->kind != LOUPE_POLICY_BIT_REWRITE || !rw)
		return false;
	snprintf(ev->rewrite.policy, sizeof(ev->rewrite.policy), "%s", info->policy);
	snprintf(ev->rewrite.name, sizeof(ev->rewrite.name), "%s", info->rule);
	for (unsigned int i = 0; i < LOUPE_MASK_HEADERS_MAX; i++) {
		if ((ev->rewrite.masked_bits >> i & 1) && i < rw->n_mask_headers)
			snprintf(ev->rewrite.masked[i], sizeof(ev->rewrite.masked[i]), "%s",
				 rw->mask_headers[i]);
	}
	return true;
}

/* Stamps, enriches and hands on one event. */
static int pipeline_emit(struct loupe_pipeline *p, struct loupe_event *ev)
{
	int err;

	ev->seq = ++p->seq;
	snprintf(ev->node, sizeof(ev->node), "%s", p->node);
	if (p->opts.enrich && ev->ifindex)
		p->opts.enrich(p->opts.enrich_ctx, ev);
	if (ev->kind == LOUPE_EV_POLICY_VERDICT && !loupe_pipeline_name_verdict(p->policy, ev))
		p->stats.verdicts_unnamed++;
	if (ev->kind == LOUPE_EV_REWRITE && !loupe_pipeline_name_rewrite(p->policy, ev))
		p->stats.rewrites_unnamed++;
	err = p->opts.sink(p->opts.sink_ctx, ev);
	if (err < 0) {
		p->stats.sink_errors++;
		return err;
	}
	if ((unsigned int)ev->kind < LOUPE_EV_KIND_MAX)
		p->stats.events[ev->kind]++;
	return 0;
}

int loupe_pipeline_on_record(void *ctx, const void *record, size_t size)
{
	struct loupe_pipeline *p = ctx;
	struct loupe_event ev;

	if (loupe_event_decode(record, size, p->mono_to_real_ns, &ev)) {
		p->stats.records_bad++;
		return 0; /* one bad record must not stop the drain */
	}
	pipeline_emit(p, &ev);
	return 0;
}

/* One LOST event per kind whose loss counter grew since the last tick. */
static int pipeline_report_lost(struct loupe_pipeline *p)
{
	struct loupe_counters cnt;
	struct loupe_event ev;
	int err, n = 0;

	err = loupe_datapath_read_counters(p->dp, &cnt);
	if (err)
		return err;
	for (int kind = 0; kind < LOUPE_EV_KIND_MAX; kind++) {
		uint64_t delta = cnt.events_lost[kind] - p->lost_seen[kind];

		if (!delta)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.kind = LOUPE_EV_LOST;
		ev.time_ns = p->tick_ns + p->mono_to_real_ns;
		ev.direction = -1;
		ev.lost.count = delta;
		ev.lost.kind = kind;
		p->lost_seen[kind] = cnt.events_lost[kind];
		p->stats.lost_reported += delta;
		pipeline_emit(p, &ev);
		n++;
	}
	return n;
}

static bool flow_tcp_closed(const struct loupe_flow_key *key, const struct loupe_flow *flow)
{
	uint8_t either = flow->tcp_flags[0] | flow->tcp_flags[1];

	if (key->protocol != 6 /* IPPROTO_TCP */)
		return false;
	return (either & 0x04 /* RST */) ||
	       ((flow->tcp_flags[0] & 0x01 /* FIN */) && (flow->tcp_flags[1] & 0x01));
}

static int pipeline_doom(struct pipeline_doomed *d, const struct loupe_flow_key *key)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 256;
		struct loupe_flow_key *keys = realloc(d->keys, cap * sizeof(*keys));

		if (!keys)
			return -ENOMEM;
		d->keys = keys;
		d->cap = cap;
	}
	d->keys[d->n++] = *key;
	return 0;
}

/*
 * Decides a flow's fate at this tick: ended (idle, or closed and quiet) -> FLOW_END and
 * taken out after the walk; long -> FLOW_END (ACTIVE_TIMEOUT) each time its age crosses a
 * multiple of the active timeout, which needs no per-flow state in user space.
 */
static int pipeline_on_flow(void *ctx, const struct loupe_flow_key *key,
			    const struct loupe_flow *flow)
{
	struct loupe_pipeline *p = ctx;
	uint64_t now = p->tick_ns, quiet, age, prev_age;
	enum loupe_flow_end_reason reason = LOUPE_FLOW_END_UNSPECIFIED;
	struct loupe_event ev;

	quiet = now > flow->last_seen_ns ? now - flow->last_seen_ns : 0;
	age = now > flow->first_seen_ns ? now - flow->first_seen_ns : 0;
	prev_age =
		p->prev_tick_ns > flow->first_seen_ns ? p->prev_tick_ns - flow->first_seen_ns : 0;

	if (quiet >= p->opts.flow_idle_ns)
		reason = LOUPE_FLOW_END_IDLE;
	else if (flow_tcp_closed(key, flow) && quiet >= PIPELINE_CLOSE_LINGER_NS)
		reason = LOUPE_FLOW_END_TCP_CLOSE;
	else if (age / p->opts.flow_active_ns > prev_age / p->opts.flow_active_ns)
		reason = LOUPE_FLOW_END_ACTIVE;
	if (reason == LOUPE_FLOW_END_UNSPECIFIED)
		return 0;

	loupe_event_from_flow(key, flow, p->mono_to_real_ns, &ev);
	ev.flow.end_reason = reason;
	pipeline_emit(p, &ev);
	if (reason != LOUPE_FLOW_END_ACTIVE)
		return pipeline_doom(&p->doomed, key);
	return 0;
}

int loupe_pipeline_tick(struct loupe_pipeline *p)
{
	uint64_t before = p->seq;
	int err;

	if (!p->dp)
		return -EINVAL;
	p->mono_to_real_ns = pipeline_mono_to_real();
	p->prev_tick_ns = p->tick_ns;
	p->tick_ns = clock_ns(CLOCK_MONOTONIC);

	err = pipeline_report_lost(p);
	if (err < 0)
		return err;

	/* taken out after the walk: deleting under get_next_key would restart it */
	p->doomed.n = 0;
	err = loupe_datapath_flows_foreach(p->dp, pipeline_on_flow, p);
	for (size_t i = 0; i < p->doomed.n; i++)
		if (loupe_datapath_flow_delete(p->dp, &p->doomed.keys[i]) == 0)
			p->stats.flows_deleted++;
	if (err < 0)
		return err;
	return (int)(p->seq - before);
}

void loupe_pipeline_get_stats(const struct loupe_pipeline *p, struct loupe_pipeline_stats *ret)
{
	*ret = p->stats;
}
