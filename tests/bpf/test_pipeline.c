// SPDX-License-Identifier: Apache-2.0
/*
 * The agent's event pipeline on the real datapath: records become events with a per-agent
 * seq, idle and closed flows are exported as FLOW_END and leave the table, and a ring
 * buffer too small for a burst produces LOST events whose counts equal the kernel's loss
 * counters. Not for the outputs or for live links.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "fixtures.h"
#include "pipeline.h"

#define SEEN_MAX 4096

static struct {
	struct loupe_event ev[SEEN_MAX];
	size_t n;
} seen;

static int keep(void *ctx, const struct loupe_event *ev)
{
	if (seen.n < SEEN_MAX)
		seen.ev[seen.n++] = *ev;
	return 0;
}

static size_t count_kind(enum loupe_event_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < seen.n; i++)
		n += seen.ev[i].kind == kind;
	return n;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct loupe_datapath *open_dp(struct loupe_pipeline *p, uint32_t ring)
{
	struct loupe_datapath_opts opts = { .events_size = ring };
	struct loupe_datapath *dp = NULL;
	int err = loupe_datapath_open(&opts, loupe_pipeline_on_record, p, &dp);

	if (err == -EPERM || err == -EACCES)
		cr_skip_test("BPF needs root (CAP_BPF, CAP_NET_ADMIN)");
	cr_assert_eq(err, 0, "loupe_datapath_open: %s", strerror(-err));
	cr_assert_eq(loupe_pipeline_attach_datapath(p, dp), 0);
	return dp;
}

static struct loupe_pipeline *open_pipeline(uint64_t idle_ms, uint64_t active_ms)
{
	struct loupe_pipeline_opts opts = { .node = "node-a",
					    .flow_idle_ns = idle_ms * 1000000,
					    .flow_active_ns = active_ms * 1000000,
					    .sink = keep };
	struct loupe_pipeline *p = NULL;

	memset(&seen, 0, sizeof(seen));
	cr_assert_eq(loupe_pipeline_new(&opts, &p), 0);
	return p;
}

static void run(struct loupe_datapath *dp, enum loupe_direction dir, const struct loupe_pkt *pkt)
{
	int rc;

	cr_assert_eq(loupe_datapath_run(dp, dir, pkt->buf, pkt->len, 0, &rc), 0);
	cr_assert_eq(rc, -1);
}

Test(pipeline, events_get_seq_and_node, .description = "records become events: seq 1, 2, ...")
{
	const struct loupe_pkt_http req = { .path = "/a", .host = "a.test" };
	struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 80, .http = &req };
	struct loupe_pipeline *p = open_pipeline(1000, 60000);
	struct loupe_datapath *dp = open_dp(p, 0);
	struct loupe_pkt pkt;

	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	run(dp, LOUPE_DIR_POD_EGRESS, &pkt);
	cr_assert_eq(loupe_datapath_drain(dp), 2);
	cr_assert_eq(seen.n, 2);
	cr_expect_eq(seen.ev[0].kind, LOUPE_EV_FLOW_START);
	cr_expect_eq(seen.ev[0].seq, 1);
	cr_expect_eq(seen.ev[1].kind, LOUPE_EV_HTTP_REQUEST);
	cr_expect_eq(seen.ev[1].seq, 2);
	cr_expect_str_eq(seen.ev[1].node, "node-a");
	cr_expect_str_eq(seen.ev[1].http.host, "a.test");
	/* wall-clock time: within a minute of now */
	cr_expect_lt(llabs((long long)(seen.ev[1].time_ns / 1000000000ull) - (long long)time(NULL)),
		     60);
	loupe_datapath_free(dp);
	loupe_pipeline_free(p);
}

Test(pipeline, idle_and_closed_flows_end, .description = "FLOW_END on idle and TCP close")
{
	const struct loupe_pkt_spec udp = { .proto = IPPROTO_UDP, .dport = 5000, .payload = "u" };
	struct loupe_pkt_spec rst = { .proto = IPPROTO_TCP, .dport = 81, .sport = 41000 };
	struct loupe_pipeline *p = open_pipeline(300, 60000);
	struct loupe_datapath *dp = open_dp(p, 0);
	struct loupe_pipeline_stats st;
	struct loupe_flow_key key;
	struct loupe_flow flow;
	struct loupe_pkt u, r;
	uint64_t deadline;

	rst.tcp.flags = LOUPE_TCP_RST | LOUPE_TCP_ACK;
	cr_assert_eq(loupe_pkt_build(&udp, &u), 0);
	cr_assert_eq(loupe_pkt_build(&rst, &r), 0);
	run(dp, LOUPE_DIR_POD_EGRESS, &u);
	run(dp, LOUPE_DIR_POD_EGRESS, &u);
	run(dp, LOUPE_DIR_POD_EGRESS, &r);
	loupe_datapath_drain(dp);
	seen.n = 0;

	/* the first tick finds both flows alive */
	cr_assert_geq(loupe_pipeline_tick(p), 0);
	cr_expect_eq(count_kind(LOUPE_EV_FLOW_END), 0);

	deadline = mono_ms() + 5000;
	while (count_kind(LOUPE_EV_FLOW_END) < 2 && mono_ms() < deadline) {
		struct timespec pause = { 0, 20 * 1000000 };

		nanosleep(&pause, NULL); /* the tick's own pace, bounded by the deadline */
		cr_assert_geq(loupe_pipeline_tick(p), 0);
	}
	cr_assert_eq(count_kind(LOUPE_EV_FLOW_END), 2, "FLOW_END events: %zu",
		     count_kind(LOUPE_EV_FLOW_END));
	for (size_t i = 0; i < seen.n; i++) {
		const struct loupe_event *ev = &seen.ev[i];

		if (ev->kind != LOUPE_EV_FLOW_END)
			continue;
		if (ev->protocol == IPPROTO_UDP) {
			cr_expect_eq(ev->flow.end_reason, LOUPE_FLOW_END_IDLE);
			cr_expect_eq(ev->flow.dir[LOUPE_DIR_POD_EGRESS].packets, 2);
			cr_expect_eq(ev->flow.dir[LOUPE_DIR_POD_EGRESS].bytes, 2 * u.len);
			cr_expect_eq(ev->dport, 5000);
		} else {
			/* a reset ends the flow before the idle timeout would, were it long */
			cr_expect(ev->flow.end_reason == LOUPE_FLOW_END_TCP_CLOSE ||
					  ev->flow.end_reason == LOUPE_FLOW_END_IDLE,
				  "reason %d", ev->flow.end_reason);
		}
	}
	/* and they are out of the table */
	fx_flow_key(&key, &u, LOUPE_DIR_POD_EGRESS, IPPROTO_UDP, -1);
	cr_expect_eq(loupe_datapath_flow_lookup(dp, &key, &flow), -ENOENT);
	loupe_pipeline_get_stats(p, &st);
	cr_expect_eq(st.flows_deleted, 2);
	loupe_datapath_free(dp);
	loupe_pipeline_free(p);
}

Test(pipeline, ring_overflow_is_reported, .description = "LOST events equal the kernel's count")
{
	const struct loupe_pkt_http req = { .path = "/burst", .host = "burst.test" };
	struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 80, .http = &req };
	struct loupe_pipeline *p = open_pipeline(60000, 60000);
	struct loupe_datapath *dp = open_dp(p, 4096); /* a page: room for a few dozen records */
	struct loupe_pipeline_stats st;
	struct loupe_counters cnt;
	uint64_t lost = 0, reported = 0;
	struct loupe_pkt pkt;

	for (int i = 0; i < 200; i++) {
		spec.sport = 20000 + i; /* a new flow each: FLOW_START and HTTP_REQUEST */
		cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
		run(dp, LOUPE_DIR_POD_EGRESS, &pkt);
	}
	cr_assert_eq(loupe_datapath_read_counters(dp, &cnt), 0);
	for (int k = 0; k < LOUPE_EV_KIND_MAX; k++)
		lost += cnt.events_lost[k];
	cr_assert_gt(lost, 0, "the burst did not overflow a 4 KiB ring");

	loupe_datapath_drain(dp);
	cr_assert_geq(loupe_pipeline_tick(p), 1);
	for (size_t i = 0; i < seen.n; i++)
		if (seen.ev[i].kind == LOUPE_EV_LOST) {
			reported += seen.ev[i].lost.count;
			cr_expect_eq(seen.ev[i].lost.count, cnt.events_lost[seen.ev[i].lost.kind]);
		}
	cr_expect_eq(reported, lost, "LOST events say %llu, the kernel counted %llu",
		     (unsigned long long)reported, (unsigned long long)lost);
	/* every record either arrived or is counted lost */
	cr_expect_eq(count_kind(LOUPE_EV_FLOW_START) + count_kind(LOUPE_EV_HTTP_REQUEST) + lost,
		     400);
	loupe_pipeline_get_stats(p, &st);
	cr_expect_eq(st.lost_reported, lost);

	/* the next tick reports nothing new */
	seen.n = 0;
	cr_assert_geq(loupe_pipeline_tick(p), 0);
	cr_expect_eq(count_kind(LOUPE_EV_LOST), 0);
	loupe_datapath_free(dp);
	loupe_pipeline_free(p);
}
