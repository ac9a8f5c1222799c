/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The harness of the BPF fixture tests: opens the production datapath (skipping when the
 * kernel refuses BPF), runs one frame through BPF_PROG_TEST_RUN, collects the ring buffer
 * records and the counters' change, and reports a failed check with the row's name and the
 * frame in hex (text2pcap reads it back). Header-only: each test_*.c is one executable.
 * Not for building packets (tests/lib/pktbuild.h) nor for live links.
 */
#ifndef LOUPE_TEST_FIXTURES_H
#define LOUPE_TEST_FIXTURES_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/pkt_cls.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datapath.h"
#include "event.h"
#include "pktbuild.h"

#define FX_RECORDS_MAX 64

struct fx_record {
	size_t size;
	union {
		struct loupe_event_hdr hdr;
		struct loupe_event_flow flow;
		struct loupe_event_http http;
		struct loupe_event_tls tls;
		struct loupe_event_dns dns;
		uint8_t raw[1024];
	};
};

struct fx {
	struct loupe_datapath *dp;
	bool replay;
	/* the row being checked, for failure messages */
	const char *row;
	const void *frame;
	size_t frame_len;
	bool dumped;
	unsigned failures;
	/* what the last fx_run() produced */
	size_t nrec;
	size_t overflow; /* records beyond FX_RECORDS_MAX */
	struct fx_record rec[FX_RECORDS_MAX];
	struct loupe_counters before, after;
};

static inline int fx_on_record(void *ctx, const void *record, size_t size)
{
	struct fx *fx = ctx;
	struct fx_record *r;

	if (fx->nrec >= FX_RECORDS_MAX || size > sizeof(r->raw)) {
		fx->overflow++;
		return 0;
	}
	r = &fx->rec[fx->nrec++];
	memset(r, 0, sizeof(*r));
	r->size = size;
	memcpy(r->raw, record, size);
	return 0;
}

/* A fresh datapath (empty maps). Skips the test when the kernel says no to BPF. */
static inline struct fx *fx_open(bool replay)
{
	struct loupe_datapath_opts opts = { .replay = replay };
	struct fx *fx = calloc(1, sizeof(*fx));
	int err;

	cr_assert_not_null(fx);
	fx->replay = replay;
	err = loupe_datapath_open(&opts, fx_on_record, fx, &fx->dp);
	if (err == -EPERM || err == -EACCES)
		cr_skip_test("loupe_datapath_open: %s: BPF needs root (CAP_BPF, CAP_NET_ADMIN)",
			     strerror(-err));
	cr_assert_eq(err, 0, "loupe_datapath_open(replay=%d): %s", replay, strerror(-err));
	return fx;
}

static inline void fx_close(struct fx *fx)
{
	if (!fx)
		return;
	loupe_datapath_free(fx->dp);
	free(fx);
}

/* Names the row (and its frame) that the next failures belong to. */
static inline void fx_row(struct fx *fx, const char *row, const void *frame, size_t len)
{
	fx->row = row;
	fx->frame = frame;
	fx->frame_len = len;
	fx->dumped = false;
}

static inline void fx_dump_frame(struct fx *fx)
{
	if (fx->dumped || !fx->frame)
		return;
	fx->dumped = true;
	fprintf(stderr, "  row %s%s: frame of %zu bytes (text2pcap reads these lines):\n",
		fx->row ? fx->row : "?", fx->replay ? " [replay]" : "", fx->frame_len);
	loupe_pkt_hexdump(stderr, "  ", fx->frame, fx->frame_len);
}

static inline __attribute__((format(printf, 2, 3))) void fx_fail(struct fx *fx, const char *fmt,
								 ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fx->failures++;
	cr_expect(0, "row %s%s: %s", fx->row ? fx->row : "?", fx->replay ? " [replay]" : "", msg);
	fx_dump_frame(fx);
}

#define fx_eq(fx, what, got, want)                                                                 \
	do {                                                                                       \
		unsigned long long _g = (unsigned long long)(got);                                 \
		unsigned long long _w = (unsigned long long)(want);                                \
		if (_g != _w)                                                                      \
			fx_fail(fx, "%s: got %llu (0x%llx), want %llu (0x%llx)", what, _g, _g, _w, \
				_w);                                                               \
	} while (0)

#define fx_true(fx, cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fx_fail(fx, __VA_ARGS__);                                                  \
	} while (0)

static inline void fx_streq(struct fx *fx, const char *what, const char *got, size_t cap,
			    const char *want)
{
	if (!memchr(got, 0, cap)) {
		fx_fail(fx, "%s: not NUL-terminated within its %zu bytes", what, cap);
		return;
	}
	if (strcmp(got, want))
		fx_fail(fx, "%s: got \"%s\", want \"%s\"", what, got, want);
}

static inline void fx_addr_eq(struct fx *fx, const char *what, const uint8_t *got,
			      const uint8_t *want)
{
	char g[64], w[64];
	int i;

	if (!memcmp(got, want, 16))
		return;
	for (i = 0; i < 16; i++) {
		sprintf(g + 2 * i, "%02x", got[i]);
		sprintf(w + 2 * i, "%02x", want[i]);
	}
	fx_fail(fx, "%s: got %s, want %s", what, g, w);
}

/*
 * Runs @len bytes of @frame through the program of @dir and collects what it did. Returns
 * the run's result (0 or -errno); *ret_rc gets the TC action.
 */
static inline int fx_run(struct fx *fx, enum loupe_direction dir, const void *frame, size_t len,
			 uint64_t ts_ns, int *ret_rc)
{
	int err, rc = 0x7fffffff;

	fx->nrec = 0;
	fx->overflow = 0;
	cr_assert_eq(loupe_datapath_read_counters(fx->dp, &fx->before), 0);
	err = loupe_datapath_run(fx->dp, dir, frame, len, ts_ns, &rc);
	if (loupe_datapath_drain(fx->dp) < 0)
		fx_fail(fx, "loupe_datapath_drain failed");
	cr_assert_eq(loupe_datapath_read_counters(fx->dp, &fx->after), 0);
	if (fx->overflow)
		fx_fail(fx, "%zu records more than the harness keeps", fx->overflow);
	if (ret_rc)
		*ret_rc = rc;
	return err;
}

/* Runs a whole frame that must be accepted, and checks the TC action is "continue". */
static inline void fx_run_ok(struct fx *fx, enum loupe_direction dir, const struct loupe_pkt *pkt,
			     uint64_t ts_ns)
{
	int rc, err;

	err = fx_run(fx, dir, pkt->buf, pkt->len, ts_ns, &rc);
	if (err)
		fx_fail(fx, "loupe_datapath_run: %s", strerror(-err));
	else
		fx_eq(fx, "TC action", rc, TC_ACT_UNSPEC);
}

static inline size_t fx_count(const struct fx *fx, enum loupe_event_kind kind)
{
	size_t i, n = 0;

	for (i = 0; i < fx->nrec; i++)
		n += fx->rec[i].hdr.kind == kind;
	return n;
}

static inline const struct fx_record *fx_find(const struct fx *fx, enum loupe_event_kind kind)
{
	size_t i;

	for (i = 0; i < fx->nrec; i++)
		if (fx->rec[i].hdr.kind == kind)
			return &fx->rec[i];
	return NULL;
}

/* Every record must be accepted by the user-space decoder, with the same kind. */
static inline void fx_check_decode(struct fx *fx)
{
	struct loupe_event ev;
	size_t i;
	int err;

	for (i = 0; i < fx->nrec; i++) {
		err = loupe_event_decode(fx->rec[i].raw, fx->rec[i].size, 0, &ev);
		if (err) {
			fx_fail(fx, "record %zu (kind %u, %zu bytes): loupe_event_decode: %s", i,
				fx->rec[i].hdr.kind, fx->rec[i].size, strerror(-err));
			continue;
		}
		fx_eq(fx, "decoded kind", ev.kind, fx->rec[i].hdr.kind);
	}
}

/*
 * The common header of an event from @pkt in direction @dir: addresses and ports as written,
 * or both ports @echo_id for an ICMP echo (@echo_id >= 0).
 */
static inline void fx_check_hdr(struct fx *fx, const struct loupe_event_hdr *hdr,
				const struct loupe_pkt *pkt, enum loupe_direction dir,
				uint8_t protocol, int echo_id)
{
	fx_eq(fx, "hdr.direction", hdr->direction, dir);
	fx_eq(fx, "hdr.protocol", hdr->protocol, protocol);
	fx_addr_eq(fx, "hdr.saddr", hdr->saddr, pkt->src);
	fx_addr_eq(fx, "hdr.daddr", hdr->daddr, pkt->dst);
	fx_eq(fx, "hdr.sport", hdr->sport, echo_id >= 0 ? echo_id : pkt->sport);
	fx_eq(fx, "hdr.dport", hdr->dport, echo_id >= 0 ? echo_id : pkt->dport);
	fx_eq(fx, "hdr.pad", hdr->pad, 0);
	fx_eq(fx, "hdr.pad2", hdr->pad2, 0);
}

/* Time stamps: the frame's in replay, the monotonic clock around the run otherwise. */
static inline uint64_t fx_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* The change of every counter over the last fx_run() must equal @want, field by field. */
static inline void fx_check_counters(struct fx *fx, const struct loupe_counters *want)
{
	const uint64_t *b = (const uint64_t *)&fx->before;
	const uint64_t *a = (const uint64_t *)&fx->after;
	const uint64_t *w = (const uint64_t *)want;
	size_t i, n = sizeof(*want) / sizeof(uint64_t);
	char what[64];

	for (i = 0; i < n; i++) {
		static const struct {
			const char *name;
			size_t n;
		} fields[] = {
			{ "packets", LOUPE_DIR_MAX },
			{ "bytes", LOUPE_DIR_MAX },
			{ "non_ip", LOUPE_DIR_MAX },
			{ "fragments", LOUPE_DIR_MAX },
			{ "flows_created", 1 },
			{ "flow_create_failed", 1 },
			{ "parse_errors", LOUPE_PERR_MAX },
			{ "events", LOUPE_EV_KIND_MAX },
			{ "events_lost", LOUPE_EV_KIND_MAX },
		};
		size_t f, at = i;

		if (a[i] - b[i] == w[i])
			continue;
		for (f = 0; f < sizeof(fields) / sizeof(fields[0]) - 1 && at >= fields[f].n; f++)
			at -= fields[f].n;
		snprintf(what, sizeof(what), "counters.%s[%zu]", fields[f].name, at);
		fx_eq(fx, what, a[i] - b[i], w[i]);
	}
}

/* The flow entry of @key (IPv4 flows by IPv4-mapped addresses), or false when none. */
static inline bool fx_flow(struct fx *fx, const struct loupe_flow_key *key, struct loupe_flow *ret)
{
	return loupe_datapath_flow_lookup(fx->dp, key, ret) == 0;
}

/* The key of the flow of @pkt, which goes in direction @dir (pod's view). */
static inline void fx_flow_key(struct loupe_flow_key *key, const struct loupe_pkt *pkt,
			       enum loupe_direction dir, uint8_t protocol, int echo_id)
{
	uint16_t sport = echo_id >= 0 ? echo_id : pkt->sport;
	uint16_t dport = echo_id >= 0 ? echo_id : pkt->dport;
	bool egress = dir == LOUPE_DIR_POD_EGRESS;

	memset(key, 0, sizeof(*key));
	memcpy(key->pod_addr, egress ? pkt->src : pkt->dst, 16);
	memcpy(key->peer_addr, egress ? pkt->dst : pkt->src, 16);
	key->pod_port = htons(egress ? sport : dport);
	key->peer_port = htons(egress ? dport : sport);
	key->protocol = protocol;
}

#endif
