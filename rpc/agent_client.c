// SPDX-License-Identifier: Apache-2.0
/*
 * The agent's controller connection (see agent_client.h). A thread owns the channel, the
 * completion queue and the call; the agent's thread only buffers events (under the mutex)
 * and runs the callbacks from process(). The call's batches: {initial metadata + hello},
 * {RECV_INITIAL_METADATA} (never waited for: P3), {RECV_STATUS} (the end of the stream), a
 * receive chain and one SEND_MESSAGE at a time. Event batches are written on the wire from
 * the already packed events, never re-encoded. Not for logging or applying policies.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "agent_client.h"
#include "event_pb.h"
#include "loupe/v1/agent.pb-c.h"

#define SEQ_BLOCK	 (1ULL << 20) /* seqs reserved in the state file at a time */
#define BATCH_EVENTS_MAX 4096
#define BATCH_BYTES_MAX	 (1u << 20)
#define TICK_MS		 5
#define BACKOFF_MIN_MS	 250
#define BACKOFF_MAX_MS	 5000
#define STATE_POLICY	 "policy.bundle"
#define STATE_SEQ	 "seq"

enum tag_kind {
	T_SEND,
	T_RECV,
	T_RMD,
	T_STATUS
};

struct tag {
	enum tag_kind kind;
};

struct entry {
	uint64_t seq;
	uint32_t len;
	uint8_t *data;
};

struct bundle {
	char *store_id;
	uint64_t revision;
	char *json;
	size_t len;
	bool from_state; /* the node's last one: put in force again, not acknowledged */
};

struct loupe_rpc_agent {
	struct loupe_rpc_agent_opts o;
	char *node, *version, *state_dir;
	pthread_t thread;
	bool thread_started;
	int efd;

	pthread_mutex_t mu; /* everything below, but the call's own fields */
	struct entry *ring;
	size_t cap, head, count, send_pos;
	uint64_t next_seq, reserved, instance;
	uint64_t dropped_unreported;
	struct bundle pending; /* newest bundle not yet handed to on_policy */
	bool have_pending;
	char *ack_store; /* an acknowledgement to send */
	uint64_t ack_revision;
	bool ack_ok, have_ack;
	char ack_error[1024];
	char *store_id; /* in force */
	uint64_t revision;
	bool initial_done; /* the state's bundle went through process() */
	bool state_changed, connected_now;
	char state_detail[256];
	bool stop;
	int flush_deadline_ms;
	struct loupe_rpc_agent_stats st;

	/* the thread's own */
	grpc_channel *ch;
	grpc_completion_queue *cq;
	void *method;
	grpc_call *call;
	struct tag t_send, t_recv, t_rmd, t_status;
	int outstanding;
	bool send_active, hello_sent, status_done, got_message, down_reported;
	uint64_t inflight_last_seq; /* the last seq of the batch in flight */
	size_t inflight_events;
	grpc_byte_buffer *recv_buf;
	grpc_metadata_array rmd, tmd;
	grpc_status_code status;
	grpc_slice details;
	int backoff_ms;
	int64_t next_attempt_ms;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(struct loupe_rpc_agent *a)
{
	uint64_t one = 1;

	(void)!write(a->efd, &one, sizeof(one));
}

static char *path_in(const struct loupe_rpc_agent *a, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", a->state_dir, name) < 0)
		return NULL;
	return p;
}

/* ------------------------------------------------------------------ state on the node */

static int seq_save(struct loupe_rpc_agent *a, uint64_t reserved)
{
	char buf[128], *p = path_in(a, STATE_SEQ);
	int n, err;

	if (!p)
		return -ENOMEM;
	n = snprintf(buf, sizeof(buf), "instance=%016" PRIx64 "\nreserved=%" PRIu64 "\n",
		     a->instance, reserved);
	err = loupe_rpc_write_atomic(p, buf, (size_t)n);
	free(p);
	if (!err)
		a->reserved = reserved;
	return err;
}

static int seq_load(struct loupe_rpc_agent *a)
{
	char *p = path_in(a, STATE_SEQ), *text;
	uint64_t inst = 0, reserved = 0;

	if (!p)
		return -ENOMEM;
	text = loupe_rpc_read_file(p, 4096);
	free(p);
	if (!text ||
	    sscanf(text, "instance=%" SCNx64 "\nreserved=%" SCNu64, &inst, &reserved) != 2 ||
	    !inst) {
		/* no state (or not ours): a new instance, seqs from 1 */
		while (!inst)
			if (getrandom(&inst, sizeof(inst), 0) != sizeof(inst))
				inst = (uint64_t)time(NULL) * 2654435761u;
		reserved = 0;
	}
	free(text);
	a->instance = inst;
	/* what the earlier agent may have used is skipped: seqs never repeat on this node */
	a->next_seq = reserved + 1;
	return seq_save(a, reserved + SEQ_BLOCK);
}

/* "loupe-agent-bundle 1 <store> <revision> <length>\n" then the PolicyList. */
static int bundle_save(struct loupe_rpc_agent *a, const struct bundle *b)
{
	char *p = path_in(a, STATE_POLICY), *buf;
	int n, err;

	if (!p)
		return -ENOMEM;
	n = asprintf(&buf, "loupe-agent-bundle 1 %s %" PRIu64 " %zu\n", b->store_id, b->revision,
		     b->len);
	if (n < 0) {
		free(p);
		return -ENOMEM;
	}
	buf = realloc(buf, (size_t)n + b->len);
	if (!buf) {
		free(p);
		return -ENOMEM;
	}
	memcpy(buf + n, b->json, b->len);
	err = loupe_rpc_write_atomic(p, buf, (size_t)n + b->len);
	free(buf);
	free(p);
	return err;
}

static void bundle_clear(struct bundle *b)
{
	free(b->store_id);
	free(b->json);
	memset(b, 0, sizeof(*b));
}

/* The node's last bundle, when there is one that reads back whole. */
static bool bundle_load(struct loupe_rpc_agent *a, struct bundle *ret)
{
	char *p = path_in(a, STATE_POLICY), *text, store[128];
	uint64_t rev;
	size_t len;
	int off = 0;

	if (!p)
		return false;
	text = loupe_rpc_read_file(p, 64u << 20);
	free(p);
	if (!text)
		return false;
	if (sscanf(text, "loupe-agent-bundle 1 %127s %" SCNu64 " %zu\n%n", store, &rev, &len,
		   &off) != 3 ||
	    !off || strlen(text + off) != len) {
		free(text);
		return false;
	}
	ret->store_id = strdup(store);
	ret->revision = rev;
	ret->json = strndup(text + off, len);
	ret->len = len;
	ret->from_state = true;
	free(text);
	if (!ret->store_id || !ret->json) {
		bundle_clear(ret);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ the event buffer */

static void ring_pop(struct loupe_rpc_agent *a)
{
	free(a->ring[a->head].data);
	a->ring[a->head].data = NULL;
	a->head = (a->head + 1) % a->cap;
	a->count--;
	if (a->send_pos > 0)
		a->send_pos--;
}

/* Under the mutex. */
static int ring_push(struct loupe_rpc_agent *a, const struct loupe_event *ev)
{
	struct loupe_event_pb pb;
	struct entry *e;
	uint8_t *data;
	size_t len;
	int err;

	err = loupe_event_to_pb(ev, &pb);
	if (err)
		return err;
	if (a->next_seq > a->reserved && seq_save(a, a->reserved + SEQ_BLOCK))
		return -EIO;
	pb.msg.seq = a->next_seq;
	len = protobuf_c_message_get_packed_size(&pb.msg.base);
	data = malloc(len ? len : 1);
	if (!data)
		return -ENOMEM;
	protobuf_c_message_pack(&pb.msg.base, data);
	if (a->count == a->cap) {
		/* full: the oldest goes, and the next LOST event says so */
		ring_pop(a);
		a->dropped_unreported++;
		a->st.events_dropped++;
	}
	e = &a->ring[(a->head + a->count) % a->cap];
	e->seq = a->next_seq++;
	e->len = (uint32_t)len;
	e->data = data;
	a->count++;
	a->st.events_queued++;
	return 0;
}

int loupe_rpc_agent_send(struct loupe_rpc_agent *a, const struct loupe_event *ev)
{
	int err;

	pthread_mutex_lock(&a->mu);
	err = ring_push(a, ev);
	pthread_mutex_unlock(&a->mu);
	return err;
}

/* A LOST event for what the full buffer pushed out; under the mutex. */
static void report_dropped(struct loupe_rpc_agent *a)
{
	struct loupe_event ev;
	struct timespec ts;
	uint64_t n = a->dropped_unreported;

	if (!n)
		return;
	memset(&ev, 0, sizeof(ev));
	clock_gettime(CLOCK_REALTIME, &ts);
	ev.time_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	snprintf(ev.node, sizeof(ev.node), "%s", a->node);
	ev.kind = LOUPE_EV_LOST;
	ev.direction = -1;
	ev.lost.count = n;
	if (ring_push(a, &ev) == 0)
		a->dropped_unreported -= n;
}

/* ------------------------------------------------------------------ the stream */

static grpc_byte_buffer *bb_from(uint8_t *buf, size_t len)
{
	grpc_slice s = len ? grpc_slice_new(buf, len, free) : grpc_empty_slice();
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

	if (!len)
		free(buf);
	grpc_slice_unref(s);
	return bb;
}

static grpc_byte_buffer *pack_msg(const Loupe__V1__AgentMessage *m)
{
	size_t len = loupe__v1__agent_message__get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf)
		return NULL;
	loupe__v1__agent_message__pack(m, buf);
	return bb_from(buf, len);
}

/* Under the mutex: the next message to send, or NULL. */
static grpc_byte_buffer *next_message(struct loupe_rpc_agent *a)
{
	Loupe__V1__AgentMessage m = LOUPE__V1__AGENT_MESSAGE__INIT;

	if (!a->hello_sent) {
		Loupe__V1__Hello h = LOUPE__V1__HELLO__INIT;

		h.node = a->node;
		h.version = a->version;
		h.store_id = a->store_id ? a->store_id : "";
		h.policy_revision = a->revision;
		h.instance = a->instance;
		h.first_unacked_seq = a->count ? a->ring[a->head].seq : 0;
		m.msg_case = LOUPE__V1__AGENT_MESSAGE__MSG_HELLO;
		m.hello = &h;
		a->hello_sent = true;
		return pack_msg(&m);
	}
	if (a->have_ack) {
		Loupe__V1__PolicyAck ack = LOUPE__V1__POLICY_ACK__INIT;
		grpc_byte_buffer *bb;

		ack.store_id = a->ack_store ? a->ack_store : "";
		ack.revision = a->ack_revision;
		ack.ok = a->ack_ok;
		ack.error = a->ack_error;
		m.msg_case = LOUPE__V1__AGENT_MESSAGE__MSG_POLICY_ACK;
		m.policy_ack = &ack;
		bb = pack_msg(&m);
		a->have_ack = false;
		return bb;
	}
	report_dropped(a);
	if (a->send_pos < a->count) {
		/* AgentMessage{events(2): EventBatch{events(1): Event...}} from packed events */
		size_t inner = 0, n = 0, i, off = 0;
		uint8_t *buf, hdr[16];

		for (i = a->send_pos; i < a->count && n < BATCH_EVENTS_MAX; i++, n++) {
			const struct entry *e = &a->ring[(a->head + i) % a->cap];
			size_t one = 1 + loupe_rpc_put_varint(hdr, e->len) + e->len;

			if (n && inner + one > BATCH_BYTES_MAX)
				break;
			inner += one;
		}
		buf = malloc(1 + 10 + inner);
		if (!buf)
			return NULL;
		buf[off++] = (2 << 3) | 2;
		off += loupe_rpc_put_varint(buf + off, inner);
		for (i = 0; i < n; i++) {
			const struct entry *e = &a->ring[(a->head + a->send_pos + i) % a->cap];

			buf[off++] = (1 << 3) | 2;
			off += loupe_rpc_put_varint(buf + off, e->len);
			memcpy(buf + off, e->data, e->len);
			off += e->len;
		}
		a->inflight_last_seq = a->ring[(a->head + a->send_pos + n - 1) % a->cap].seq;
		a->inflight_events = n;
		a->send_pos += n;
		return bb_from(buf, off);
	}
	return NULL;
}

static void try_send(struct loupe_rpc_agent *a)
{
	grpc_byte_buffer *bb;
	grpc_metadata_array empty;
	grpc_op ops[2];
	size_t n = 0;
	bool first;

	if (!a->call || a->send_active || a->status_done)
		return;
	pthread_mutex_lock(&a->mu);
	first = !a->hello_sent;
	a->inflight_events = 0;
	bb = next_message(a);
	pthread_mutex_unlock(&a->mu);
	if (!bb)
		return;
	(void)empty;
	memset(ops, 0, sizeof(ops));
	if (first) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = bb;
	n++;
	if (grpc_call_start_batch(a->call, ops, n, &a->t_send, NULL) == GRPC_CALL_OK) {
		a->outstanding++;
		a->send_active = true;
		pthread_mutex_lock(&a->mu);
		a->st.events_sent += a->inflight_events;
		pthread_mutex_unlock(&a->mu);
	}
	grpc_byte_buffer_destroy(bb);
}

static void set_state(struct loupe_rpc_agent *a, bool up, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_state(struct loupe_rpc_agent *a, bool up, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&a->mu);
	a->state_changed = true;
	a->connected_now = up;
	a->st.connected = up;
	if (up)
		a->st.connects++;
	va_start(ap, fmt);
	vsnprintf(a->state_detail, sizeof(a->state_detail), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&a->mu);
	wake(a);
}

static void on_message(struct loupe_rpc_agent *a, const uint8_t *data, size_t len)
{
	Loupe__V1__ControllerMessage *m;

	m = loupe__v1__controller_message__unpack(NULL, len, data);
	if (!m)
		return; /* a controller of a later version may say more: skip what we cannot read */
	if (!a->got_message) {
		a->got_message = true;
		a->down_reported = false;
		a->backoff_ms = BACKOFF_MIN_MS;
		set_state(a, true, "stream open");
	}
	pthread_mutex_lock(&a->mu);
	if (m->msg_case == LOUPE__V1__CONTROLLER_MESSAGE__MSG_EVENT_ACK) {
		uint64_t seq = m->event_ack->seq;

		while (a->count && a->ring[a->head].seq <= seq) {
			ring_pop(a);
			a->st.events_acked++;
		}
	} else if (m->msg_case == LOUPE__V1__CONTROLLER_MESSAGE__MSG_POLICY && m->policy) {
		bundle_clear(&a->pending);
		a->pending.store_id = strdup(m->policy->store_id ? m->policy->store_id : "");
		a->pending.revision = m->policy->revision;
		a->pending.json = strdup(m->policy->json ? m->policy->json : "");
		a->pending.len = a->pending.json ? strlen(a->pending.json) : 0;
		a->have_pending = a->pending.store_id && a->pending.json;
	}
	pthread_mutex_unlock(&a->mu);
	if (m->msg_case == LOUPE__V1__CONTROLLER_MESSAGE__MSG_POLICY)
		wake(a);
	loupe__v1__controller_message__free_unpacked(m, NULL);
}

static void arm_recv(struct loupe_rpc_agent *a)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &a->recv_buf;
	if (grpc_call_start_batch(a->call, &op, 1, &a->t_recv, NULL) == GRPC_CALL_OK)
		a->outstanding++;
}

static void open_stream(struct loupe_rpc_agent *a)
{
	grpc_op op;

	a->call = grpc_channel_create_registered_call(a->ch, NULL, GRPC_PROPAGATE_DEFAULTS, a->cq,
						      a->method, gpr_inf_future(GPR_CLOCK_REALTIME),
						      NULL);
	if (!a->call)
		return;
	a->hello_sent = false;
	a->status_done = false;
	a->got_message = false;
	a->send_active = false;
	grpc_metadata_array_init(&a->rmd);
	grpc_metadata_array_init(&a->tmd);
	a->details = grpc_empty_slice();
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_INITIAL_METADATA;
	op.data.recv_initial_metadata.recv_initial_metadata = &a->rmd;
	if (grpc_call_start_batch(a->call, &op, 1, &a->t_rmd, NULL) == GRPC_CALL_OK)
		a->outstanding++;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &a->tmd;
	op.data.recv_status_on_client.status = &a->status;
	op.data.recv_status_on_client.status_details = &a->details;
	if (grpc_call_start_batch(a->call, &op, 1, &a->t_status, NULL) == GRPC_CALL_OK)
		a->outstanding++;
	arm_recv(a);
	pthread_mutex_lock(&a->mu);
	a->send_pos = 0; /* everything unacknowledged goes again */
	pthread_mutex_unlock(&a->mu);
	try_send(a);
}

/* The stream is over: wait for its batches, free it, plan the next attempt. */
static void close_stream(struct loupe_rpc_agent *a)
{
	char *details = grpc_slice_to_c_string(a->details);
	bool was_up = a->got_message;
	int jitter;

	grpc_call_cancel(a->call, NULL);
	while (a->outstanding > 0) {
		grpc_event ev =
			grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

		if (ev.type != GRPC_OP_COMPLETE)
			break;
		a->outstanding--;
		if (((struct tag *)ev.tag)->kind == T_RECV && a->recv_buf) {
			grpc_byte_buffer_destroy(a->recv_buf);
			a->recv_buf = NULL;
		}
	}
	grpc_call_unref(a->call);
	a->call = NULL;
	grpc_metadata_array_destroy(&a->rmd);
	grpc_metadata_array_destroy(&a->tmd);
	grpc_slice_unref(a->details);
	a->send_active = false;
	if (was_up || !a->down_reported)
		set_state(a, false, "%s: %s", loupe_rpc_status_name(a->status),
			  details ? details : "");
	a->down_reported = true;
	gpr_free(details);
	jitter = a->backoff_ms / 5;
	a->next_attempt_ms =
		mono_ms() + a->backoff_ms - jitter + (jitter ? rand() % (2 * jitter) : 0);
	a->backoff_ms = a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff_ms * 2;
}

static void dispatch(struct loupe_rpc_agent *a, grpc_event ev)
{
	struct tag *t = ev.tag;

	a->outstanding--;
	switch (t->kind) {
	case T_SEND:
		a->send_active = false;
		if (ev.success)
			try_send(a);
		break;
	case T_RECV:
		if (ev.success && a->recv_buf) {
			grpc_byte_buffer_reader rd;

			if (grpc_byte_buffer_reader_init(&rd, a->recv_buf)) {
				grpc_slice all = grpc_byte_buffer_reader_readall(&rd);

				on_message(a, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
				grpc_slice_unref(all);
				grpc_byte_buffer_reader_destroy(&rd);
			}
			grpc_byte_buffer_destroy(a->recv_buf);
			a->recv_buf = NULL;
			if (!a->status_done)
				arm_recv(a);
		} else if (a->recv_buf) {
			grpc_byte_buffer_destroy(a->recv_buf);
			a->recv_buf = NULL;
		}
		break;
	case T_RMD:
		break;
	case T_STATUS:
		a->status_done = true;
		break;
	}
}

static void *thread_main(void *arg)
{
	struct loupe_rpc_agent *a = arg;
	int64_t flush_until = 0;

	for (;;) {
		bool stop, ready, drained;

		pthread_mutex_lock(&a->mu);
		stop = a->stop;
		ready = a->initial_done;
		drained = a->count == 0 && !a->have_ack;
		pthread_mutex_unlock(&a->mu);
		if (stop) {
			if (!flush_until)
				flush_until = mono_ms() + a->flush_deadline_ms;
			if (!a->call || !a->got_message || drained || mono_ms() >= flush_until)
				break;
		}
		if (!a->call && ready && !stop && mono_ms() >= a->next_attempt_ms)
			open_stream(a);
		if (a->call && !a->send_active)
			try_send(a);
		grpc_event ev = grpc_completion_queue_next(
			a->cq,
			gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				     gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)),
			NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(a, ev);
		if (a->call && a->status_done)
			close_stream(a);
	}
	if (a->call) {
		a->status = GRPC_STATUS_CANCELLED;
		close_stream(a);
	}
	return NULL;
}

/* ------------------------------------------------------------------ the agent's side */

int loupe_rpc_agent_fd(const struct loupe_rpc_agent *a)
{
	return a->efd;
}

int loupe_rpc_agent_process(struct loupe_rpc_agent *a)
{
	struct bundle b = { 0 };
	bool changed, up, have;
	char detail[256], err[1024];
	uint64_t junk;
	int r, n = 0;

	(void)!read(a->efd, &junk, sizeof(junk));
	pthread_mutex_lock(&a->mu);
	changed = a->state_changed;
	up = a->connected_now;
	snprintf(detail, sizeof(detail), "%s", a->state_detail);
	a->state_changed = false;
	have = a->have_pending;
	if (have) {
		b = a->pending;
		memset(&a->pending, 0, sizeof(a->pending));
		a->have_pending = false;
	}
	pthread_mutex_unlock(&a->mu);
	if (changed && a->o.on_state)
		a->o.on_state(a->o.ctx, up, detail);
	if (have) {
		err[0] = '\0';
		r = a->o.on_policy(a->o.ctx, b.json, b.len, b.revision, err, sizeof(err));
		n++;
		pthread_mutex_lock(&a->mu);
		if (r == 0) {
			free(a->store_id);
			a->store_id = strdup(b.store_id);
			a->revision = b.revision;
			a->st.revision = b.revision;
			a->st.policies_applied++;
		} else {
			a->st.policies_refused++;
		}
		if (!b.from_state) {
			free(a->ack_store);
			a->ack_store = strdup(b.store_id);
			a->ack_revision = b.revision;
			a->ack_ok = r == 0;
			snprintf(a->ack_error, sizeof(a->ack_error), "%s",
				 r == 0 ? "" : (err[0] ? err : strerror(-r)));
			a->have_ack = true;
		}
		pthread_mutex_unlock(&a->mu);
		/* kept on the node for the next agent, which enforces it before it connects */
		if (r == 0 && !b.from_state)
			bundle_save(a, &b);
		bundle_clear(&b);
	}
	pthread_mutex_lock(&a->mu);
	a->initial_done = true;
	pthread_mutex_unlock(&a->mu);
	return n;
}

void loupe_rpc_agent_get_stats(struct loupe_rpc_agent *a, struct loupe_rpc_agent_stats *ret)
{
	pthread_mutex_lock(&a->mu);
	*ret = a->st;
	ret->buffered = a->count;
	ret->next_seq = a->next_seq;
	pthread_mutex_unlock(&a->mu);
}

static void agent_free(struct loupe_rpc_agent *a)
{
	if (a->ring) {
		while (a->count)
			ring_pop(a);
		free(a->ring);
	}
	bundle_clear(&a->pending);
	free(a->ack_store);
	free(a->store_id);
	free(a->node);
	free(a->version);
	free(a->state_dir);
	if (a->efd >= 0)
		close(a->efd);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

int loupe_rpc_agent_start(const struct loupe_rpc_agent_opts *o, struct loupe_rpc_agent **ret,
			  char *err, size_t errsize)
{
	struct loupe_rpc_channel_opts co = o->chan;
	struct loupe_rpc_agent *a;
	int r;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->o = *o;
	a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&a->mu, NULL);
	a->node = strdup(o->node);
	a->version = strdup(o->version ? o->version : "");
	a->state_dir = strdup(o->state_dir);
	a->cap = o->event_buffer ? o->event_buffer : LOUPE_RPC_AGENT_BUFFER_DEFAULT;
	a->ring = calloc(a->cap, sizeof(*a->ring));
	a->backoff_ms = BACKOFF_MIN_MS;
	a->t_send.kind = T_SEND;
	a->t_recv.kind = T_RECV;
	a->t_rmd.kind = T_RMD;
	a->t_status.kind = T_STATUS;
	if (a->efd < 0 || !a->node || !a->version || !a->state_dir || !a->ring) {
		snprintf(err, errsize, "out of memory");
		agent_free(a);
		return -ENOMEM;
	}
	r = loupe_rpc_mkdirs(a->state_dir, 0700);
	if (!r)
		r = seq_load(a);
	if (r) {
		snprintf(err, errsize, "cannot keep state in %s: %s", a->state_dir, strerror(-r));
		agent_free(a);
		return r;
	}
	if (bundle_load(a, &a->pending))
		a->have_pending = true;
	co.keepalive_ms = co.keepalive_ms ? co.keepalive_ms : 10000;
	co.backoff_max_ms = BACKOFF_MAX_MS;
	a->ch = loupe_rpc_channel_new(&co, err, errsize);
	if (!a->ch) {
		agent_free(a);
		return -EINVAL;
	}
	a->cq = grpc_completion_queue_create_for_next(NULL);
	a->method = grpc_channel_register_call(a->ch, LOUPE_RPC_AGENT_CONNECT, NULL, NULL);
	r = pthread_create(&a->thread, NULL, thread_main, a);
	if (r) {
		snprintf(err, errsize, "cannot start a thread: %s", strerror(r));
		grpc_channel_destroy(a->ch);
		grpc_completion_queue_shutdown(a->cq);
		while (grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
			       .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(a->cq);
		grpc_shutdown();
		agent_free(a);
		return -r;
	}
	a->thread_started = true;
	if (a->have_pending)
		wake(a);
	*ret = a;
	return 0;
}

struct loupe_rpc_agent *loupe_rpc_agent_stop(struct loupe_rpc_agent *a, int flush_ms)
{
	if (!a)
		return NULL;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	a->flush_deadline_ms = flush_ms;
	pthread_mutex_unlock(&a->mu);
	if (a->thread_started)
		pthread_join(a->thread, NULL);
	grpc_channel_destroy(a->ch);
	grpc_completion_queue_shutdown(a->cq);
	while (grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(a->cq);
	grpc_shutdown();
	agent_free(a);
	return NULL;
}
