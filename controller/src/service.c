// SPDX-License-Identifier: Apache-2.0
/*
 * The controller's services (see service.h). Events stay in their wire form: an agent's batch
 * is split into its events without re-encoding, each event is unpacked once (dedupe, filters,
 * JSON) and kept as bytes, shared by reference between the history and the subscribers'
 * queues. Responses to subscribers are written on the wire from those bytes. The cursor file
 * keeps each agent's highest seq; after a crash the output written past the cursor is read
 * back, so each seq reaches the output once. Not for flags or signals.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "json_out.h"
#include "log.h"
#include "loupe/v1/agent.pb-c.h"
#include "loupe/v1/observer.pb-c.h"
#include "loupe/v1/policy.pb-c.h"
#include "pbjson.h"
#include "service.h"

#define RATE_WINDOW	10
#define RESPONSE_EVENTS 512
#define RESPONSE_BYTES	(256u << 10)
#define SUB_INFLIGHT	(512u << 10) /* bytes queued on a subscriber's call */

struct blob {
	int refs;
	uint32_t len;
	uint32_t kind;
	uint64_t idx;
	uint64_t time_ns;
	const char *node; /* the agent record's, which lives as long as the service */
	uint8_t data[];
};

struct agent_rec {
	struct agent_rec *next;
	char *node;
	char version[64];
	char peer[192];
	struct loupe_rpc_call *call;
	char store_id[40];
	uint64_t acked_revision, refused_revision;
	char last_error[1024];
	uint64_t last_seen_ns, connected_since_ns;
	uint64_t instance;
	uint64_t hw; /* highest seq taken */
	uint64_t events, duplicates;
	uint64_t rate_bins[RATE_WINDOW];
	unsigned int rate_pos;
};

struct sub {
	struct sub *next;
	struct loupe_service *svc;
	struct loupe_rpc_call *call;
	Loupe__V1__GetEventsRequest *req;
	uint64_t since_ns;
	bool follow, closed;
	uint64_t hist_next, hist_end;
	struct blob **q;
	size_t qcap, qhead, qn;
	uint64_t missed; /* since the last response */
	uint64_t missed_total;
	int64_t last_progress_ms;
};

struct loupe_service {
	struct loupe_service_opts o;
	struct agent_rec *agents;
	struct sub *subs;
	struct blob **hist;
	size_t hcap;
	uint64_t next_idx; /* index of the next event into the history */
	bool cursor_dirty;
	struct loupe_service_stats st;
};

static struct loupe_service *the_service; /* the method table's callbacks get it as ctx too */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void blob_unref(struct blob *b)
{
	if (b && --b->refs == 0)
		free(b);
}

static void set_ts(Google__Protobuf__Timestamp *ts, uint64_t ns)
{
	google__protobuf__timestamp__init(ts);
	ts->seconds = (int64_t)(ns / 1000000000ULL);
	ts->nanos = (int32_t)(ns % 1000000000ULL);
}

/* Packs @m into a malloc'd buffer and queues it on @call. */
static int send_msg(struct loupe_rpc_call *call, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf);
	return loupe_rpc_call_send_take(call, buf, len);
}

/* ------------------------------------------------------------------ agents */

static struct agent_rec *agent_get(struct loupe_service *s, const char *node)
{
	struct agent_rec *a;

	for (a = s->agents; a; a = a->next)
		if (!strcmp(a->node, node))
			return a;
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->node = strdup(node);
	if (!a->node) {
		free(a);
		return NULL;
	}
	a->next = s->agents;
	s->agents = a;
	s->st.agents_known++;
	return a;
}

static void push_bundle(struct loupe_service *s, struct agent_rec *a)
{
	Loupe__V1__ControllerMessage m = LOUPE__V1__CONTROLLER_MESSAGE__INIT;
	Loupe__V1__PolicyBundle b = LOUPE__V1__POLICY_BUNDLE__INIT;
	unsigned int count;

	if (!a->call)
		return;
	b.store_id = (char *)loupe_store_id(s->o.store);
	b.revision = loupe_store_revision(s->o.store);
	b.json = (char *)loupe_store_bundle(s->o.store, NULL, &count);
	b.count = count;
	m.msg_case = LOUPE__V1__CONTROLLER_MESSAGE__MSG_POLICY;
	m.policy = &b;
	if (send_msg(a->call, &m.base) == 0)
		s->st.pushes++;
}

void loupe_service_push_all(struct loupe_service *s)
{
	for (struct agent_rec *a = s->agents; a; a = a->next)
		push_bundle(s, a);
}

static void send_ack(struct agent_rec *a)
{
	Loupe__V1__ControllerMessage m = LOUPE__V1__CONTROLLER_MESSAGE__INIT;
	Loupe__V1__EventAck ack = LOUPE__V1__EVENT_ACK__INIT;

	ack.seq = a->hw;
	m.msg_case = LOUPE__V1__CONTROLLER_MESSAGE__MSG_EVENT_ACK;
	m.event_ack = &ack;
	send_msg(a->call, &m.base);
}

/* ------------------------------------------------------------------ filters */

static bool str_in(const char *s, char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s && !strcmp(s, v[i]))
			return true;
	return false;
}

/* Whether the cheap fields (kind, node, time) can fail @f without unpacking. */
static bool match_cheap(const struct sub *sb, uint32_t kind, const char *node, uint64_t time_ns)
{
	const Loupe__V1__EventFilter *f = sb->req->filter;
	bool k = false;

	if (!f)
		return true;
	if (f->n_kinds) {
		for (size_t i = 0; i < f->n_kinds; i++)
			k |= (uint32_t)f->kinds[i] == kind;
		if (!k)
			return false;
	}
	if (f->n_nodes && !str_in(node, f->nodes, f->n_nodes))
		return false;
	if (sb->since_ns && time_ns < sb->since_ns)
		return false;
	return true;
}

static bool needs_full(const struct sub *sb)
{
	const Loupe__V1__EventFilter *f = sb->req->filter;

	return f && (f->n_pods || f->verdict || (f->policy && f->policy[0]));
}

static bool match_full(const struct sub *sb, const Loupe__V1__Event *e)
{
	const Loupe__V1__EventFilter *f = sb->req->filter;

	if (!f)
		return true;
	if (f->n_pods) {
		bool hit = false;

		for (size_t i = 0; i < f->n_pods && !hit; i++) {
			const char *p = f->pods[i];

			if (e->interface && e->interface->name && !strcmp(e->interface->name, p))
				hit = true;
			if (e->pod) {
				char nn[512];

				for (size_t k = 0; k < e->pod->n_ips && !hit; k++)
					hit = !strcmp(e->pod->ips[k], p);
				if (!hit && e->pod->name && e->pod->name[0]) {
					snprintf(nn, sizeof(nn), "%s/%s",
						 e->pod->namespace_ ? e->pod->namespace_ : "",
						 e->pod->name);
					hit = !strcmp(nn, p) || !strcmp(e->pod->name, p);
				}
			}
		}
		if (!hit)
			return false;
	}
	if (f->verdict && (!e->verdict || (int)e->verdict->action != (int)f->verdict))
		return false;
	if (f->policy && f->policy[0] &&
	    (!e->verdict || !e->verdict->policy || strcmp(e->verdict->policy, f->policy)))
		return false;
	return true;
}

static bool blob_matches(const struct sub *sb, const struct blob *b)
{
	Loupe__V1__Event *e;
	bool ok;

	if (!match_cheap(sb, b->kind, b->node, b->time_ns))
		return false;
	if (!needs_full(sb))
		return true;
	e = loupe__v1__event__unpack(NULL, b->len, b->data);
	if (!e)
		return false;
	ok = match_full(sb, e);
	loupe__v1__event__free_unpacked(e, NULL);
	return ok;
}

/* ------------------------------------------------------------------ subscribers */

static void sub_free(struct sub *sb)
{
	while (sb->qn) {
		blob_unref(sb->q[sb->qhead]);
		sb->qhead = (sb->qhead + 1) % sb->qcap;
		sb->qn--;
	}
	free(sb->q);
	if (sb->req)
		loupe__v1__get_events_request__free_unpacked(sb->req, NULL);
	free(sb);
}

static void sub_unlink(struct loupe_service *s, struct sub *sb)
{
	for (struct sub **pp = &s->subs; *pp; pp = &(*pp)->next)
		if (*pp == sb) {
			*pp = sb->next;
			s->st.subscribers--;
			return;
		}
}

static struct blob *hist_at(const struct loupe_service *s, uint64_t idx)
{
	struct blob *b;

	if (!s->hcap || idx >= s->next_idx || s->next_idx - idx > s->hcap)
		return NULL;
	b = s->hist[idx % s->hcap];
	return b && b->idx == idx ? b : NULL;
}

/* One response on the wire: events (field 1) from @v, missed (2) and notice (3). */
static int sub_send(struct sub *sb, struct blob **v, size_t n)
{
	Loupe__V1__GetEventsResponse tail = LOUPE__V1__GET_EVENTS_RESPONSE__INIT;
	char notice[256];
	size_t len = 0, off = 0, tl;
	uint8_t *buf, hdr[16];

	if (sb->missed) {
		tail.missed = sb->missed;
		snprintf(notice, sizeof(notice),
			 "%" PRIu64 " events were not sent to this stream: it reads slower than "
			 "events arrive (%zu may wait); later events are sampled the same way",
			 sb->missed, sb->qcap);
		tail.notice = notice;
	}
	tl = loupe__v1__get_events_response__get_packed_size(&tail);
	for (size_t i = 0; i < n; i++)
		len += 1 + loupe_rpc_put_varint(hdr, v[i]->len) + v[i]->len;
	buf = malloc(len + tl + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		buf[off++] = (1 << 3) | 2;
		off += loupe_rpc_put_varint(buf + off, v[i]->len);
		memcpy(buf + off, v[i]->data, v[i]->len);
		off += v[i]->len;
	}
	off += loupe__v1__get_events_response__pack(&tail, buf + off);
	sb->missed = 0;
	return loupe_rpc_call_send_take(sb->call, buf, off);
}

static void sub_pump(struct sub *sb)
{
	struct loupe_service *s = sb->svc;
	struct blob *v[RESPONSE_EVENTS];

	while (!sb->closed && loupe_rpc_call_queued(sb->call) < SUB_INFLIGHT) {
		size_t n = 0, from_queue, bytes = 0;

		/* the history first, then what came in since the call began */
		while (sb->hist_next < sb->hist_end && n < RESPONSE_EVENTS &&
		       bytes < RESPONSE_BYTES) {
			struct blob *b = hist_at(s, sb->hist_next);

			if (!b) {
				sb->missed++; /* pushed out of the history before it was sent */
				sb->missed_total++;
			} else if (blob_matches(sb, b)) {
				v[n++] = b;
				bytes += b->len;
			}
			sb->hist_next++;
		}
		from_queue = n;
		if (sb->hist_next >= sb->hist_end) {
			while (sb->qn && n < RESPONSE_EVENTS && bytes < RESPONSE_BYTES) {
				struct blob *b = sb->q[sb->qhead];

				sb->qhead = (sb->qhead + 1) % sb->qcap;
				sb->qn--;
				v[n++] = b; /* the queue's reference, dropped once sent */
				bytes += b->len;
			}
		}
		if (!n && !sb->missed)
			break;
		sub_send(sb, v, n);
		for (size_t i = from_queue; i < n; i++)
			blob_unref(v[i]);
		sb->last_progress_ms = mono_ms();
		if (!n)
			break;
	}
	if (!sb->closed && !sb->follow && sb->hist_next >= sb->hist_end && !sb->qn && !sb->missed)
		loupe_rpc_call_finish(sb->call, LOUPE_RPC_OK, "");
}

static void sub_offer(struct sub *sb, struct blob *b, const Loupe__V1__Event *e)
{
	if (sb->closed || !sb->follow)
		return;
	if (!match_cheap(sb, b->kind, b->node, b->time_ns))
		return;
	if (needs_full(sb) && !match_full(sb, e))
		return;
	if (sb->qn == sb->qcap) {
		sb->missed++;
		sb->missed_total++;
		sb->svc->st.subscriber_missed++;
		return;
	}
	b->refs++;
	sb->q[(sb->qhead + sb->qn) % sb->qcap] = b;
	sb->qn++;
}

/* ------------------------------------------------------------------ intake */

static int take_event(struct loupe_service *s, struct agent_rec *a, const uint8_t *data, size_t len)
{
	Loupe__V1__Event *e = loupe__v1__event__unpack(NULL, len, data);
	struct blob *b;
	char *line;

	if (!e) {
		s->st.events_malformed++;
		return -EINVAL;
	}
	s->st.events_in++;
	if (e->seq <= a->hw) {
		a->duplicates++;
		s->st.events_duplicate++;
		loupe__v1__event__free_unpacked(e, NULL);
		return 0;
	}
	a->hw = e->seq;
	a->events++;
	a->rate_bins[a->rate_pos]++;
	s->cursor_dirty = true;
	if (s->o.output) {
		char buf[16384];
		int n = loupe_json_out(&e->base, buf, sizeof(buf));

		/* the direct writer; the generic one for what it leaves (no tree per event) */
		if (n >= 0) {
			if (loupe_output_write_line(s->o.output, buf, (size_t)n) == 0)
				s->st.events_written++;
		} else if ((line = loupe_pbjson_to_string(&e->base))) {
			if (loupe_output_write_line(s->o.output, line, strlen(line)) == 0)
				s->st.events_written++;
			free(line);
		}
	}
	b = malloc(sizeof(*b) + len);
	if (b) {
		b->refs = 1;
		b->len = (uint32_t)len;
		b->kind = (uint32_t)e->kind;
		b->idx = s->next_idx++;
		b->time_ns = e->time ? (uint64_t)e->time->seconds * 1000000000ULL +
					       (uint64_t)e->time->nanos
				     : 0;
		b->node = a->node;
		memcpy(b->data, data, len);
		for (struct sub *sb = s->subs; sb; sb = sb->next)
			sub_offer(sb, b, e);
		if (s->hcap) {
			blob_unref(s->hist[b->idx % s->hcap]);
			s->hist[b->idx % s->hcap] = b;
		} else {
			blob_unref(b);
		}
	}
	loupe__v1__event__free_unpacked(e, NULL);
	return 0;
}

static void agent_hello(struct loupe_service *s, struct loupe_rpc_call *call, const uint8_t *data,
			size_t len)
{
	Loupe__V1__Hello *h = loupe__v1__hello__unpack(NULL, len, data);
	struct agent_rec *a;

	if (!h || !h->node || !h->node[0] || strlen(h->node) > 253) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "the hello needs a node name (at most 253 characters)");
		goto out;
	}
	a = agent_get(s, h->node);
	if (!a) {
		loupe_rpc_call_finish(call, LOUPE_RPC_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	if (a->call && a->call != call) {
		loupe_log(LOUPE_LOG_WARN, "agent stream replaced", "node=%s old_peer=%s", a->node,
			  a->peer);
		loupe_rpc_call_set_data(a->call, NULL);
		loupe_rpc_call_abort(a->call, LOUPE_RPC_CANCELLED,
				     "a newer stream from the same node replaced this one");
		s->st.agents_connected--;
	}
	if (a->instance && a->instance != h->instance) {
		loupe_log(LOUPE_LOG_INFO, "agent state is new: its seqs start again", "node=%s",
			  a->node);
		a->hw = 0;
	}
	a->instance = h->instance;
	a->call = call;
	loupe_rpc_call_set_data(call, a);
	snprintf(a->version, sizeof(a->version), "%s", h->version ? h->version : "");
	snprintf(a->peer, sizeof(a->peer), "%s", loupe_rpc_call_peer(call));
	snprintf(a->store_id, sizeof(a->store_id), "%s", h->store_id ? h->store_id : "");
	a->acked_revision = h->policy_revision;
	a->connected_since_ns = a->last_seen_ns = now_ns();
	s->st.agents_connected++;
	loupe_log(LOUPE_LOG_INFO, "agent connected",
		  "node=%s version=%s peer=\"%s\" revision=%" PRIu64 " first_unacked=%" PRIu64
		  " taken=%" PRIu64,
		  a->node, a->version, a->peer, a->acked_revision, h->first_unacked_seq, a->hw);
	if (a->hw)
		send_ack(a); /* what we have already: the agent need not send it again */
	if (strcmp(a->store_id, loupe_store_id(s->o.store)) ||
	    a->acked_revision != loupe_store_revision(s->o.store))
		push_bundle(s, a);
out:
	if (h)
		loupe__v1__hello__free_unpacked(h, NULL);
}

static void agent_policy_ack(struct loupe_service *s, struct agent_rec *a, const uint8_t *data,
			     size_t len)
{
	Loupe__V1__PolicyAck *ack = loupe__v1__policy_ack__unpack(NULL, len, data);

	if (!ack) {
		loupe_rpc_call_finish(a->call, LOUPE_RPC_INVALID_ARGUMENT,
				      "a policy acknowledgement does not decode");
		return;
	}
	if (ack->ok) {
		a->acked_revision = ack->revision;
		snprintf(a->store_id, sizeof(a->store_id), "%s",
			 ack->store_id ? ack->store_id : "");
		a->last_error[0] = '\0';
		s->st.acks_ok++;
		loupe_log(LOUPE_LOG_INFO, "agent in force", "node=%s revision=%" PRIu64, a->node,
			  ack->revision);
	} else {
		a->refused_revision = ack->revision;
		snprintf(a->last_error, sizeof(a->last_error), "%s", ack->error ? ack->error : "");
		s->st.acks_refused++;
		loupe_log(LOUPE_LOG_WARN, "agent refused a revision",
			  "node=%s revision=%" PRIu64 " error=\"%s\"", a->node, ack->revision,
			  a->last_error);
	}
	loupe__v1__policy_ack__free_unpacked(ack, NULL);
}

static void on_agent_message(void *ctx, struct loupe_rpc_call *call, const uint8_t *data,
			     size_t len)
{
	struct loupe_service *s = ctx;
	struct agent_rec *a = loupe_rpc_call_get_data(call);
	const uint8_t *p = data, *end = data + len, *fd, *q, *qend, *ed;
	uint32_t field, wire, f2, w2;
	uint64_t flen, elen;
	bool events = false;
	int r, r2;

	while ((r = loupe_rpc_next_field(&p, end, &field, &wire, &fd, &flen)) == 1) {
		if (wire != 2)
			continue; /* not ours: a later version's field */
		if (field == 1) {
			agent_hello(s, call, fd, flen);
			a = loupe_rpc_call_get_data(call);
			continue;
		}
		if (!a) {
			loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
					      "the first message must be a hello");
			return;
		}
		a->last_seen_ns = now_ns();
		if (field == 3) {
			agent_policy_ack(s, a, fd, flen);
		} else if (field == 2) {
			q = fd;
			qend = fd + flen;
			while ((r2 = loupe_rpc_next_field(&q, qend, &f2, &w2, &ed, &elen)) == 1) {
				if (f2 != 1 || w2 != 2)
					continue;
				if (take_event(s, a, ed, elen)) {
					r2 = -EINVAL;
					break;
				}
			}
			if (r2 < 0) {
				loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
						      "an event batch does not decode");
				return;
			}
			events = true;
		}
	}
	if (r < 0) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "a message does not decode as loupe.v1.AgentMessage");
		return;
	}
	if (!a) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "the first message must be a hello");
		return;
	}
	if (events) {
		/* written (to the kernel) before it is acknowledged: a crash now loses nothing */
		if (!s->o.output || loupe_output_flush(s->o.output) == 0)
			send_ack(a);
		for (struct sub *sb = s->subs; sb; sb = sb->next)
			sub_pump(sb);
	}
}

static void on_agent_close(void *ctx, struct loupe_rpc_call *call)
{
	struct loupe_service *s = ctx;
	struct agent_rec *a = loupe_rpc_call_get_data(call);

	if (!a || a->call != call)
		return;
	a->call = NULL;
	a->last_seen_ns = now_ns();
	s->st.agents_connected--;
	loupe_log(LOUPE_LOG_INFO, "agent disconnected", "node=%s taken=%" PRIu64, a->node, a->hw);
}

/* ------------------------------------------------------------------ observer */

static void on_get_events(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len)
{
	struct loupe_service *s = ctx;
	Loupe__V1__GetEventsRequest *req = loupe__v1__get_events_request__unpack(NULL, len, data);
	struct sub *sb;
	uint64_t found = 0, start;

	if (!req) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "the request does not decode as loupe.v1.GetEventsRequest");
		return;
	}
	sb = calloc(1, sizeof(*sb));
	if (sb) {
		sb->qcap = s->o.subscriber_queue ? s->o.subscriber_queue : 8192;
		sb->q = calloc(sb->qcap, sizeof(*sb->q));
	}
	if (!sb || !sb->q) {
		free(sb);
		loupe__v1__get_events_request__free_unpacked(req, NULL);
		loupe_rpc_call_finish(call, LOUPE_RPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	sb->svc = s;
	sb->call = call;
	sb->req = req;
	sb->follow = req->follow;
	if (req->filter && req->filter->since)
		sb->since_ns = (uint64_t)req->filter->since->seconds * 1000000000ULL +
			       (uint64_t)req->filter->since->nanos;
	sb->last_progress_ms = mono_ms();
	/* where the history part starts: the last N matching, or everything since */
	start = s->next_idx > s->hcap ? s->next_idx - s->hcap : 0;
	sb->hist_end = s->next_idx;
	if (req->number) {
		uint64_t i = s->next_idx;

		while (i > start && found < req->number) {
			struct blob *b = hist_at(s, i - 1);

			if (b && blob_matches(sb, b))
				found++;
			i--;
		}
		sb->hist_next = i;
	} else if (sb->since_ns) {
		sb->hist_next = start;
	} else {
		sb->hist_next = s->next_idx; /* no past events asked for */
	}
	sb->next = s->subs;
	s->subs = sb;
	s->st.subscribers++;
	loupe_rpc_call_set_data(call, sb);
	sub_pump(sb);
}

static void on_sub_sent(void *ctx, struct loupe_rpc_call *call)
{
	struct sub *sb = loupe_rpc_call_get_data(call);

	if (sb) {
		sb->last_progress_ms = mono_ms();
		sub_pump(sb);
	}
}

static void on_sub_close(void *ctx, struct loupe_rpc_call *call)
{
	struct loupe_service *s = ctx;
	struct sub *sb = loupe_rpc_call_get_data(call);

	if (!sb)
		return;
	sb->closed = true;
	sub_unlink(s, sb);
	sub_free(sb);
	loupe_rpc_call_set_data(call, NULL);
}

static void on_list_agents(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len)
{
	struct loupe_service *s = ctx;
	Loupe__V1__ListAgentsResponse resp = LOUPE__V1__LIST_AGENTS_RESPONSE__INIT;
	Loupe__V1__ListAgentsRequest *req = loupe__v1__list_agents_request__unpack(NULL, len, data);
	size_t n = 0, i = 0;

	if (!req) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "the request does not decode as loupe.v1.ListAgentsRequest");
		return;
	}
	loupe__v1__list_agents_request__free_unpacked(req, NULL);
	for (struct agent_rec *a = s->agents; a; a = a->next)
		n++;
	{
		Loupe__V1__AgentInfo info[n ? n : 1], *ptrs[n ? n : 1];
		Google__Protobuf__Timestamp seen[n ? n : 1], since[n ? n : 1];

		for (struct agent_rec *a = s->agents; a; a = a->next, i++) {
			uint64_t sum = 0;

			loupe__v1__agent_info__init(&info[i]);
			info[i].node = a->node;
			info[i].version = a->version;
			info[i].peer = a->peer;
			info[i].connected = a->call != NULL;
			info[i].store_id = a->store_id;
			info[i].acked_revision = a->acked_revision;
			info[i].refused_revision = a->refused_revision;
			info[i].last_error = a->last_error;
			set_ts(&seen[i], a->call ? now_ns() : a->last_seen_ns);
			info[i].last_seen = &seen[i];
			set_ts(&since[i], a->connected_since_ns);
			info[i].connected_since = &since[i];
			for (int k = 0; k < RATE_WINDOW; k++)
				if ((unsigned int)k != a->rate_pos)
					sum += a->rate_bins[k];
			info[i].event_rate = (double)sum / (RATE_WINDOW - 1);
			info[i].events = a->events;
			info[i].duplicates = a->duplicates;
			info[i].last_seq = a->hw;
			ptrs[i] = &info[i];
		}
		resp.revision = loupe_store_revision(s->o.store);
		resp.store_id = (char *)loupe_store_id(s->o.store);
		resp.n_agents = n;
		resp.agents = ptrs;
		send_msg(call, &resp.base);
	}
	loupe_rpc_call_finish(call, LOUPE_RPC_OK, "");
}

/* ------------------------------------------------------------------ policies */

static void finish_errno(struct loupe_rpc_call *call, int r, const char *err)
{
	int st = r == -EINVAL	? LOUPE_RPC_INVALID_ARGUMENT
		 : r == -EPERM	? LOUPE_RPC_FAILED_PRECONDITION
		 : r == -ENOENT ? LOUPE_RPC_NOT_FOUND
		 : r == -EFBIG	? LOUPE_RPC_INVALID_ARGUMENT
				: LOUPE_RPC_INTERNAL;

	loupe_rpc_call_finish(call, st, err[0] ? err : strerror(-r));
}

static void on_apply(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len)
{
	struct loupe_service *s = ctx;
	Loupe__V1__ApplyRequest *req = loupe__v1__apply_request__unpack(NULL, len, data);
	Loupe__V1__ApplyResponse resp = LOUPE__V1__APPLY_RESPONSE__INIT;
	struct loupe_store_result res;
	uint64_t before = loupe_store_revision(s->o.store);
	char err[2048] = "";
	int r;

	if (!req) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "the request does not decode as loupe.v1.ApplyRequest");
		return;
	}
	r = loupe_store_apply(s->o.store, req->json ? req->json : "",
			      req->json ? strlen(req->json) : 0, req->source, req->dry_run, &res,
			      err, sizeof(err));
	if (r) {
		loupe_log(LOUPE_LOG_INFO, "apply refused", "source=\"%s\" error=\"%s\"",
			  req->source ? req->source : "", err);
		finish_errno(call, r, err);
		loupe__v1__apply_request__free_unpacked(req, NULL);
		return;
	}
	resp.revision = res.revision;
	resp.created = res.created;
	resp.n_created = res.n_created;
	resp.configured = res.configured;
	resp.n_configured = res.n_configured;
	resp.unchanged = res.unchanged;
	resp.n_unchanged = res.n_unchanged;
	resp.warnings = res.warnings;
	resp.n_warnings = res.n_warnings;
	send_msg(call, &resp.base);
	loupe_rpc_call_finish(call, LOUPE_RPC_OK, "");
	if (loupe_store_revision(s->o.store) != before) {
		loupe_log(LOUPE_LOG_INFO, "policies applied",
			  "revision=%" PRIu64 " created=%zu configured=%zu source=\"%s\"",
			  res.revision, res.n_created, res.n_configured,
			  req->source ? req->source : "");
		loupe_service_push_all(s);
	}
	loupe_store_result_free(&res);
	loupe__v1__apply_request__free_unpacked(req, NULL);
}

static void on_delete(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len)
{
	struct loupe_service *s = ctx;
	Loupe__V1__DeleteRequest *req = loupe__v1__delete_request__unpack(NULL, len, data);
	Loupe__V1__DeleteResponse resp = LOUPE__V1__DELETE_RESPONSE__INIT;
	char err[1024] = "";
	int r;

	if (!req || !req->n_names) {
		loupe_rpc_call_finish(
			call, LOUPE_RPC_INVALID_ARGUMENT,
			req ? "no policy name given"
			    : "the request does not decode as loupe.v1.DeleteRequest");
		if (req)
			loupe__v1__delete_request__free_unpacked(req, NULL);
		return;
	}
	r = loupe_store_delete(s->o.store, req->names, req->n_names, err, sizeof(err));
	if (r) {
		finish_errno(call, r, err);
	} else {
		resp.revision = loupe_store_revision(s->o.store);
		resp.deleted = req->names;
		resp.n_deleted = req->n_names;
		send_msg(call, &resp.base);
		loupe_rpc_call_finish(call, LOUPE_RPC_OK, "");
		loupe_log(LOUPE_LOG_INFO, "policies deleted", "revision=%" PRIu64 " count=%zu",
			  resp.revision, req->n_names);
		loupe_service_push_all(s);
	}
	loupe__v1__delete_request__free_unpacked(req, NULL);
}

static void fill_policy(Loupe__V1__Policy *p, Google__Protobuf__Timestamp *ts,
			const struct loupe_store_policy *sp)
{
	loupe__v1__policy__init(p);
	p->name = sp->name;
	p->json = sp->json;
	p->source = sp->source;
	p->revision = sp->revision;
	set_ts(ts, sp->updated_ns);
	p->updated = ts;
	p->read_only = sp->read_only;
}

static void on_list(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len)
{
	struct loupe_service *s = ctx;
	Loupe__V1__ListPoliciesRequest *req =
		loupe__v1__list_policies_request__unpack(NULL, len, data);
	Loupe__V1__ListPoliciesResponse resp = LOUPE__V1__LIST_POLICIES_RESPONSE__INIT;
	const struct loupe_store_policy *const *v;
	size_t n = loupe_store_list(s->o.store, &v);
	Loupe__V1__Policy *pol = calloc(n + 1, sizeof(*pol)), **ptrs = calloc(n + 1, sizeof(*ptrs));
	Google__Protobuf__Timestamp *ts = calloc(n + 1, sizeof(*ts));

	if (!req || !pol || !ptrs || !ts) {
		loupe_rpc_call_finish(
			call, req ? LOUPE_RPC_RESOURCE_EXHAUSTED : LOUPE_RPC_INVALID_ARGUMENT,
			req ? "out of memory"
			    : "the request does not decode as "
			      "loupe.v1.ListPoliciesRequest");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		fill_policy(&pol[i], &ts[i], v[i]);
		ptrs[i] = &pol[i];
	}
	resp.revision = loupe_store_revision(s->o.store);
	resp.store_id = (char *)loupe_store_id(s->o.store);
	resp.n_policies = n;
	resp.policies = ptrs;
	send_msg(call, &resp.base);
	loupe_rpc_call_finish(call, LOUPE_RPC_OK, "");
out:
	if (req)
		loupe__v1__list_policies_request__free_unpacked(req, NULL);
	free(pol);
	free(ptrs);
	free(ts);
}

static void on_get(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len)
{
	struct loupe_service *s = ctx;
	Loupe__V1__GetPolicyRequest *req = loupe__v1__get_policy_request__unpack(NULL, len, data);
	const struct loupe_store_policy *const *v;
	size_t n = loupe_store_list(s->o.store, &v);
	char msg[256];

	if (!req) {
		loupe_rpc_call_finish(call, LOUPE_RPC_INVALID_ARGUMENT,
				      "the request does not decode as loupe.v1.GetPolicyRequest");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (req->name && !strcmp(v[i]->name, req->name)) {
			Loupe__V1__Policy p;
			Google__Protobuf__Timestamp ts;

			fill_policy(&p, &ts, v[i]);
			send_msg(call, &p.base);
			loupe_rpc_call_finish(call, LOUPE_RPC_OK, "");
			loupe__v1__get_policy_request__free_unpacked(req, NULL);
			return;
		}
	}
	snprintf(msg, sizeof(msg), "there is no policy %.200s", req->name ? req->name : "");
	loupe_rpc_call_finish(call, LOUPE_RPC_NOT_FOUND, msg);
	loupe__v1__get_policy_request__free_unpacked(req, NULL);
}

static const struct loupe_rpc_method methods[] = {
	{ LOUPE_RPC_AGENT_CONNECT, LOUPE_RPC_BIDI, false, true, on_agent_message, NULL,
	  on_agent_close },
	{ LOUPE_RPC_POLICY_APPLY, LOUPE_RPC_UNARY, true, false, on_apply, NULL, NULL },
	{ LOUPE_RPC_POLICY_DELETE, LOUPE_RPC_UNARY, true, false, on_delete, NULL, NULL },
	{ LOUPE_RPC_POLICY_LIST, LOUPE_RPC_UNARY, true, false, on_list, NULL, NULL },
	{ LOUPE_RPC_POLICY_GET, LOUPE_RPC_UNARY, true, false, on_get, NULL, NULL },
	{ LOUPE_RPC_OBSERVER_EVENTS, LOUPE_RPC_SERVER_STREAM, true, false, on_get_events,
	  on_sub_sent, on_sub_close },
	{ LOUPE_RPC_OBSERVER_AGENTS, LOUPE_RPC_UNARY, true, false, on_list_agents, NULL, NULL },
};

const struct loupe_rpc_method *loupe_service_methods(size_t *ret_n)
{
	*ret_n = sizeof(methods) / sizeof(methods[0]);
	return methods;
}

/* ------------------------------------------------------------------ cursor */

/*
 * "loupe-cursor 1\noutput <inode> <offset>\n" then "<instance> <seq> <node>\n" per agent.
 * The offset is where the output file ended when the cursor was written.
 */
static void cursor_write(struct loupe_service *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	struct stat st = { 0 };

	if (!s->o.cursor_path)
		return;
	f = open_memstream(&buf, &len);
	if (!f)
		return;
	if (s->o.output_path)
		stat(s->o.output_path, &st);
	fprintf(f, "loupe-cursor 1\noutput %llu %lld\n", (unsigned long long)st.st_ino,
		(long long)st.st_size);
	for (struct agent_rec *a = s->agents; a; a = a->next)
		fprintf(f, "%016" PRIx64 " %" PRIu64 " %s\n", a->instance, a->hw, a->node);
	fclose(f);
	if (loupe_rpc_write_atomic(s->o.cursor_path, buf, len) == 0)
		s->cursor_dirty = false;
	free(buf);
}

/* Raises each agent's seq from the lines of @path past @offset. */
static void scan_output(struct loupe_service *s, const char *path, long long offset)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, node[256];
	size_t cap = 0;
	ssize_t n;
	uint64_t lines = 0;

	if (!f)
		return;
	if (offset > 0)
		fseeko(f, offset, SEEK_SET);
	while ((n = getline(&line, &cap, f)) > 0) {
		const char *p = strstr(line, "\"seq\":\""), *q = strstr(line, "\"node\":\"");
		unsigned long long seq;
		struct agent_rec *a;

		if (!p || !q || sscanf(p + 7, "%llu", &seq) != 1 ||
		    sscanf(q + 8, "%255[^\"]", node) != 1)
			continue;
		a = agent_get(s, node);
		if (a && seq > a->hw)
			a->hw = seq;
		lines++;
	}
	free(line);
	fclose(f);
	if (lines)
		loupe_log(LOUPE_LOG_INFO, "output read back past the cursor",
			  "file=%s lines=%" PRIu64, path, lines);
}

static void cursor_read(struct loupe_service *s)
{
	char *text, *save = NULL, *line;
	unsigned long long ino = 0;
	long long off = 0;
	struct stat st;

	if (!s->o.cursor_path)
		return;
	text = loupe_rpc_read_file(s->o.cursor_path, 64u << 20);
	if (text && !strncmp(text, "loupe-cursor 1\n", 15)) {
		for (line = strtok_r(text + 15, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			uint64_t inst, seq;
			char node[256];
			struct agent_rec *a;

			if (sscanf(line, "output %llu %lld", &ino, &off) == 2)
				continue;
			if (sscanf(line, "%" SCNx64 " %" SCNu64 " %255s", &inst, &seq, node) != 3)
				continue;
			a = agent_get(s, node);
			if (a) {
				a->instance = inst;
				a->hw = seq;
			}
		}
	}
	free(text);
	if (!s->o.output_path || stat(s->o.output_path, &st))
		return;
	if (ino && st.st_ino == ino) {
		scan_output(s, s->o.output_path, off);
	} else if (ino) {
		/* rotated since: the rest of the old file, now PATH.1, then the new one whole */
		char old[4200];
		struct stat st1;

		snprintf(old, sizeof(old), "%s.1", s->o.output_path);
		if (stat(old, &st1) == 0 && st1.st_ino == ino)
			scan_output(s, old, off);
		scan_output(s, s->o.output_path, 0);
	} else {
		scan_output(s, s->o.output_path, 0);
	}
}

/* ------------------------------------------------------------------ life */

int loupe_service_new(const struct loupe_service_opts *o, struct loupe_service **ret, char *err,
		      size_t errsize)
{
	struct loupe_service *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->o = *o;
	s->hcap = o->history;
	if (s->hcap) {
		s->hist = calloc(s->hcap, sizeof(*s->hist));
		if (!s->hist) {
			snprintf(err, errsize, "no memory for a history of %zu events", s->hcap);
			free(s);
			return -ENOMEM;
		}
	}
	cursor_read(s);
	for (struct agent_rec *a = s->agents; a; a = a->next)
		a->last_seen_ns = 0;
	the_service = s;
	*ret = s;
	return 0;
}

void loupe_service_tick(struct loupe_service *s)
{
	int64_t now = mono_ms();

	for (struct agent_rec *a = s->agents; a; a = a->next) {
		a->rate_pos = (a->rate_pos + 1) % RATE_WINDOW;
		a->rate_bins[a->rate_pos] = 0;
	}
	for (struct sub *sb = s->subs, *next; sb; sb = next) {
		next = sb->next;
		sub_pump(sb);
		if (sb->qn == sb->qcap && now - sb->last_progress_ms > s->o.cutoff_ms) {
			char msg[256];

			snprintf(msg, sizeof(msg),
				 "cut off: read nothing for %d s while %zu events waited; %" PRIu64
				 " events missed in all",
				 s->o.cutoff_ms / 1000, sb->qn, sb->missed_total + sb->qn);
			s->st.subscribers_cut++;
			loupe_log(LOUPE_LOG_WARN, "subscriber cut off",
				  "peer=\"%s\" missed=%" PRIu64, loupe_rpc_call_peer(sb->call),
				  sb->missed_total);
			loupe_rpc_call_abort(sb->call, LOUPE_RPC_RESOURCE_EXHAUSTED, msg);
		}
	}
	if (s->cursor_dirty)
		cursor_write(s);
}

void loupe_service_get_stats(const struct loupe_service *s, struct loupe_service_stats *ret)
{
	*ret = s->st;
	ret->history_events = s->next_idx < s->hcap ? s->next_idx : s->hcap;
}

struct loupe_service *loupe_service_free(struct loupe_service *s)
{
	if (!s)
		return NULL;
	cursor_write(s);
	while (s->subs) {
		struct sub *sb = s->subs;

		s->subs = sb->next;
		sub_free(sb);
	}
	for (size_t i = 0; i < s->hcap; i++)
		blob_unref(s->hist[i]);
	free(s->hist);
	while (s->agents) {
		struct agent_rec *a = s->agents;

		s->agents = a->next;
		free(a->node);
		free(a);
	}
	the_service = NULL;
	free(s);
	return NULL;
}
