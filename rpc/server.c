// SPDX-License-Identifier: Apache-2.0
/*
 * The controller's gRPC server on the C core (see server.h and ../shared/docs/grpc-c-core.md):
 * one completion queue drained by the caller's thread; one request armed per registered
 * method plus one generic request that answers UNIMPLEMENTED; per call a RECV_CLOSE batch
 * (how we learn it is over), a receive chain, one SEND_MESSAGE in flight fed from a queue,
 * and the status once the queue is empty. A call is freed when its last batch came back.
 * Not for what the messages mean.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "bb.h"
#include "server.h"

enum tag_kind {
	TAG_REQUEST,
	TAG_RECV,
	TAG_SEND,
	TAG_CLOSE,
	TAG_STATUS,
	TAG_INITMD,
	TAG_SHUTDOWN,
};

struct tag {
	enum tag_kind kind;
	void *p;
};

struct sendq_item {
	struct sendq_item *next;
	grpc_byte_buffer *bb;
	size_t len;
};

struct loupe_rpc_call {
	struct loupe_rpc_server *srv;
	const struct loupe_rpc_method *m; /* NULL: an unknown method */
	grpc_call *call;
	struct tag t_recv, t_send, t_close, t_status, t_initmd;
	int outstanding; /* batches in flight */
	bool closed;	 /* RECV_CLOSE_ON_SERVER came back */
	bool reported;	 /* on_close was called */
	bool md_sent;
	bool status_pending, status_started;
	bool send_active;
	int cancelled;
	int status;
	char *status_msg;
	grpc_byte_buffer *recv_buf;
	struct sendq_item *head, *tail;
	size_t queued;
	void *data;
	bool local;
	char peer[192];
};

struct req_slot {
	struct tag tag;
	struct loupe_rpc_server *srv;
	int method; /* index; -1: the generic request */
	void *handle;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_call_details details;
};

struct loupe_rpc_server {
	grpc_server *server;
	grpc_completion_queue *cq;
	const struct loupe_rpc_method *methods;
	size_t n_methods;
	struct req_slot *slots; /* n_methods + 1, the last generic */
	void *ctx;
	char *token;
	bool client_ca;
	bool stopping;
	int port;
	struct tag t_shutdown;
	bool shutdown_done;
	struct loupe_rpc_server_stats stats;
};

static gpr_timespec deadline_ms(int ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void call_maybe_free(struct loupe_rpc_call *c)
{
	struct sendq_item *it;

	if (c->outstanding > 0 || !c->closed)
		return;
	while ((it = c->head)) {
		c->head = it->next;
		grpc_byte_buffer_destroy(it->bb);
		free(it);
	}
	if (c->recv_buf)
		grpc_byte_buffer_destroy(c->recv_buf);
	grpc_call_unref(c->call);
	free(c->status_msg);
	c->srv->stats.active--;
	free(c);
}

static int start(struct loupe_rpc_call *c, const grpc_op *ops, size_t n, struct tag *t)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);

	if (e != GRPC_CALL_OK)
		return -EIO;
	c->outstanding++;
	return 0;
}

static void start_status(struct loupe_rpc_call *c)
{
	grpc_op ops[2];
	grpc_slice details;
	size_t n = 0;

	if (c->status_started || c->closed)
		return;
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		c->md_sent = true;
	}
	details = grpc_slice_from_copied_string(c->status_msg ? c->status_msg : "");
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)c->status;
	ops[n].data.send_status_from_server.status_details = &details;
	n++;
	c->status_started = true;
	start(c, ops, n, &c->t_status);
	grpc_slice_unref(details);
}

static void send_next(struct loupe_rpc_call *c)
{
	grpc_op ops[2];
	size_t n = 0;

	if (c->send_active || c->closed)
		return;
	if (!c->head) {
		if (c->status_pending)
			start_status(c);
		return;
	}
	memset(ops, 0, sizeof(ops));
	if (!c->md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		c->md_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = c->head->bb;
	n++;
	if (start(c, ops, n, &c->t_send) == 0)
		c->send_active = true;
}

static int enqueue(struct loupe_rpc_call *c, grpc_slice s, size_t len)
{
	struct sendq_item *it;

	if (c->closed || c->status_pending || c->status_started) {
		grpc_slice_unref(s);
		return -EPIPE;
	}
	it = calloc(1, sizeof(*it));
	if (!it) {
		grpc_slice_unref(s);
		return -ENOMEM;
	}
	it->bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	it->len = len;
	if (c->tail)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
	c->queued += len;
	send_next(c);
	return 0;
}

int loupe_rpc_call_send(struct loupe_rpc_call *c, const void *data, size_t len)
{
	return enqueue(c, grpc_slice_from_copied_buffer(data, len), len);
}

int loupe_rpc_call_send_take(struct loupe_rpc_call *c, void *buf, size_t len)
{
	if (!len) {
		free(buf);
		return enqueue(c, grpc_empty_slice(), 0);
	}
	return enqueue(c, grpc_slice_new(buf, len, free), len);
}

size_t loupe_rpc_call_queued(const struct loupe_rpc_call *c)
{
	return c->queued;
}

void loupe_rpc_call_finish(struct loupe_rpc_call *c, int status, const char *message)
{
	if (c->status_pending || c->status_started || c->closed)
		return;
	c->status = status;
	c->status_msg = strdup(message ? message : "");
	c->status_pending = true;
	send_next(c);
}

void loupe_rpc_call_abort(struct loupe_rpc_call *c, int status, const char *message)
{
	if (c->closed)
		return;
	grpc_call_cancel_with_status(c->call, (grpc_status_code)status, message, NULL);
}

void loupe_rpc_call_set_data(struct loupe_rpc_call *c, void *data)
{
	c->data = data;
}

void *loupe_rpc_call_get_data(const struct loupe_rpc_call *c)
{
	return c->data;
}

const char *loupe_rpc_call_peer(const struct loupe_rpc_call *c)
{
	return c->peer;
}

bool loupe_rpc_call_is_local(const struct loupe_rpc_call *c)
{
	return c->local;
}

bool loupe_rpc_call_finishing(const struct loupe_rpc_call *c)
{
	return c->closed || c->status_pending || c->status_started;
}

static int arm(struct req_slot *r)
{
	struct loupe_rpc_server *s = r->srv;
	grpc_call_error e;

	r->call = NULL;
	grpc_metadata_array_init(&r->md);
	r->payload = NULL;
	if (r->method < 0) {
		grpc_call_details_init(&r->details);
		e = grpc_server_request_call(s->server, &r->call, &r->details, &r->md, s->cq, s->cq,
					     &r->tag);
	} else {
		bool payload = s->methods[r->method].kind != LOUPE_RPC_BIDI;

		e = grpc_server_request_registered_call(
			s->server, r->handle, &r->call, &r->deadline, &r->md,
			payload ? &r->payload : NULL, s->cq, s->cq, &r->tag);
	}
	return e == GRPC_CALL_OK ? 0 : -EIO;
}

static void slot_release(struct req_slot *r)
{
	grpc_metadata_array_destroy(&r->md);
	if (r->method < 0)
		grpc_call_details_destroy(&r->details);
	if (r->payload)
		grpc_byte_buffer_destroy(r->payload);
	r->payload = NULL;
}

static bool token_ok(const struct loupe_rpc_server *s, const grpc_metadata_array *md)
{
	static const char bearer[] = "Bearer ";
	size_t tlen = strlen(s->token);

	for (size_t i = 0; i < md->count; i++) {
		const grpc_metadata *m = &md->metadata[i];
		const uint8_t *v = GRPC_SLICE_START_PTR(m->value);
		size_t vlen = GRPC_SLICE_LENGTH(m->value);
		unsigned char diff = 0;

		if (grpc_slice_str_cmp(m->key, "authorization"))
			continue;
		if (vlen != sizeof(bearer) - 1 + tlen || memcmp(v, bearer, sizeof(bearer) - 1) != 0)
			return false;
		for (size_t k = 0; k < tlen; k++) /* the same time whatever matches */
			diff |= (unsigned char)(v[sizeof(bearer) - 1 + k] ^ (uint8_t)s->token[k]);
		return diff == 0;
	}
	return false;
}

/* The certificate's identity ("" without one); whether the peer presented a verified one. */
static bool peer_identity(grpc_call *call, char *buf, size_t size)
{
	grpc_auth_context *ctx = grpc_call_auth_context(call);
	grpc_auth_property_iterator it;
	const grpc_auth_property *p;
	bool ok = false;

	buf[0] = '\0';
	if (!ctx)
		return false;
	if (grpc_auth_context_peer_is_authenticated(ctx)) {
		it = grpc_auth_context_peer_identity(ctx);
		p = grpc_auth_property_iterator_next(&it);
		if (p)
			snprintf(buf, size, "%.*s", (int)p->value_length, p->value);
		ok = true;
	}
	grpc_auth_context_release(ctx);
	return ok;
}

static void on_request(struct loupe_rpc_server *s, struct req_slot *r, bool success)
{
	struct loupe_rpc_call *c;
	const struct loupe_rpc_method *m;
	char ident[128];
	bool cert_ok;
	grpc_op op;
	char *peer;

	if (!success || s->stopping) {
		slot_release(r);
		return;
	}
	m = r->method >= 0 ? &s->methods[r->method] : NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		grpc_call_cancel(r->call, NULL);
		grpc_call_unref(r->call);
		slot_release(r);
		arm(r);
		return;
	}
	c->srv = s;
	c->m = m;
	c->call = r->call;
	c->t_recv = (struct tag){ TAG_RECV, c };
	c->t_send = (struct tag){ TAG_SEND, c };
	c->t_close = (struct tag){ TAG_CLOSE, c };
	c->t_status = (struct tag){ TAG_STATUS, c };
	c->t_initmd = (struct tag){ TAG_INITMD, c };
	s->stats.active++;
	peer = grpc_call_get_peer(c->call);
	c->local = peer && strncmp(peer, "unix:", 5) == 0;
	cert_ok = !c->local && peer_identity(c->call, ident, sizeof(ident));
	if (cert_ok && ident[0])
		snprintf(c->peer, sizeof(c->peer), "%s (%s)", peer ? peer : "?", ident);
	else
		snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
	gpr_free(peer);

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled;
	if (start(c, &op, 1, &c->t_close)) {
		/* cannot happen on a fresh call; if it did, nothing would ever free it */
		c->closed = true;
	}

	if (!m) {
		s->stats.unimplemented++;
		loupe_rpc_call_finish(c, LOUPE_RPC_UNIMPLEMENTED, "unknown method");
		goto rearm;
	}
	s->stats.calls++;
	if (m->need_token && s->token && !c->local && !token_ok(s, &r->md)) {
		s->stats.refused_auth++;
		loupe_rpc_call_finish(c, LOUPE_RPC_UNAUTHENTICATED,
				      "missing or wrong bearer token (loupectl: --token-file or "
				      "LOUPE_TOKEN)");
		goto rearm;
	}
	if (m->need_client_cert && s->client_ca && !c->local && !cert_ok) {
		s->stats.refused_auth++;
		loupe_rpc_call_finish(c, LOUPE_RPC_UNAUTHENTICATED,
				      "a client certificate signed by the controller's client CA "
				      "is required");
		goto rearm;
	}
	if (m->kind == LOUPE_RPC_BIDI) {
		/* headers now: clients that wait for them before writing can go on */
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_SEND_INITIAL_METADATA;
		c->md_sent = true;
		start(c, &op, 1, &c->t_initmd);
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &c->recv_buf;
		start(c, &op, 1, &c->t_recv);
	} else if (!r->payload) {
		loupe_rpc_call_finish(c, LOUPE_RPC_INVALID_ARGUMENT, "no request message");
	} else if (grpc_byte_buffer_length(r->payload) > LOUPE_RPC_MAX_MESSAGE) {
		char msg[128];

		s->stats.refused_size++;
		snprintf(msg, sizeof(msg), "the request is %zu bytes, more than the limit of %u",
			 grpc_byte_buffer_length(r->payload), LOUPE_RPC_MAX_MESSAGE);
		loupe_rpc_call_finish(c, LOUPE_RPC_INVALID_ARGUMENT, msg);
	} else {
		size_t len;
		uint8_t *data = loupe_rpc_bb_read(r->payload, &len);

		if (!data)
			loupe_rpc_call_finish(c, LOUPE_RPC_INVALID_ARGUMENT,
					      "the request cannot be read");
		else
			m->on_message(s->ctx, c, data, len);
		free(data);
	}
rearm:
	slot_release(r);
	arm(r);
}

static void on_recv(struct loupe_rpc_call *c, bool success)
{
	struct loupe_rpc_server *s = c->srv;
	grpc_byte_buffer *bb = c->recv_buf;
	grpc_op op;

	c->recv_buf = NULL;
	if (!success || c->closed) {
		if (bb)
			grpc_byte_buffer_destroy(bb);
		return;
	}
	if (!bb) { /* the client half-closed: nothing more will come */
		loupe_rpc_call_finish(c, LOUPE_RPC_OK, "");
		return;
	}
	if (grpc_byte_buffer_length(bb) > LOUPE_RPC_MAX_MESSAGE) {
		char msg[128];

		s->stats.refused_size++;
		snprintf(msg, sizeof(msg), "a message of %zu bytes is more than the limit of %u",
			 grpc_byte_buffer_length(bb), LOUPE_RPC_MAX_MESSAGE);
		grpc_byte_buffer_destroy(bb);
		loupe_rpc_call_finish(c, LOUPE_RPC_INVALID_ARGUMENT, msg);
		return;
	} else {
		size_t len;
		uint8_t *data = loupe_rpc_bb_read(bb, &len);

		grpc_byte_buffer_destroy(bb);
		if (!data) {
			loupe_rpc_call_finish(c, LOUPE_RPC_INVALID_ARGUMENT,
					      "a message cannot be read");
			return;
		}
		c->outstanding++; /* keeps @c alive through the callback */
		c->m->on_message(s->ctx, c, data, len);
		c->outstanding--;
		free(data);
	}
	if (loupe_rpc_call_finishing(c))
		return;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_buf;
	start(c, &op, 1, &c->t_recv);
}

static void on_send(struct loupe_rpc_call *c, bool success)
{
	struct sendq_item *it = c->head;

	c->send_active = false;
	if (it) {
		c->head = it->next;
		if (!c->head)
			c->tail = NULL;
		c->queued -= it->len;
		grpc_byte_buffer_destroy(it->bb);
		free(it);
	}
	if (!success || c->closed)
		return;
	send_next(c);
	if (!c->head && !c->send_active && !loupe_rpc_call_finishing(c) && c->m && c->m->on_sent) {
		c->outstanding++;
		c->m->on_sent(c->srv->ctx, c);
		c->outstanding--;
	}
}

static void on_close(struct loupe_rpc_call *c)
{
	c->closed = true;
	if (!c->reported && c->m && c->m->on_close) {
		c->reported = true;
		c->outstanding++;
		c->m->on_close(c->srv->ctx, c);
		c->outstanding--;
	}
	c->reported = true;
}

static void dispatch(struct loupe_rpc_server *s, grpc_event ev)
{
	struct tag *t = ev.tag;
	struct loupe_rpc_call *c = t->p;

	switch (t->kind) {
	case TAG_REQUEST:
		on_request(s, t->p, ev.success);
		return;
	case TAG_SHUTDOWN:
		s->shutdown_done = true;
		return;
	case TAG_RECV:
		c->outstanding--;
		on_recv(c, ev.success);
		break;
	case TAG_SEND:
		c->outstanding--;
		on_send(c, ev.success);
		break;
	case TAG_CLOSE:
		c->outstanding--;
		on_close(c);
		break;
	case TAG_STATUS:
	case TAG_INITMD:
		c->outstanding--;
		break;
	}
	call_maybe_free(c);
}

int loupe_rpc_server_poll(struct loupe_rpc_server *s, int timeout_ms)
{
	gpr_timespec until = deadline_ms(timeout_ms);
	grpc_event ev;

	for (;;) {
		ev = grpc_completion_queue_next(s->cq, until, NULL);
		if (ev.type != GRPC_OP_COMPLETE)
			return 0;
		dispatch(s, ev);
		/* after the first, take what is ready without waiting */
		until = gpr_inf_past(GPR_CLOCK_MONOTONIC);
	}
}

static grpc_server_credentials *tcp_creds(const struct loupe_rpc_server_opts *o, char *err,
					  size_t errsize)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_server_credentials *creds = NULL;
	char *cert = NULL, *key = NULL, *ca = NULL;

	if (o->insecure)
		return grpc_insecure_server_credentials_create();
	if (!o->tls_cert || !o->tls_key || !o->tls_cert[0] || !o->tls_key[0]) {
		snprintf(err, errsize,
			 "TCP needs --tls-cert and --tls-key, or --insecure for plaintext");
		return NULL;
	}
	cert = loupe_rpc_read_file(o->tls_cert, 1u << 20);
	if (!cert) {
		snprintf(err, errsize, "cannot read --tls-cert %s: %s", o->tls_cert,
			 strerror(errno));
		goto out;
	}
	key = loupe_rpc_read_file(o->tls_key, 1u << 20);
	if (!key) {
		snprintf(err, errsize, "cannot read --tls-key %s: %s", o->tls_key, strerror(errno));
		goto out;
	}
	if (o->tls_client_ca && o->tls_client_ca[0]) {
		ca = loupe_rpc_read_file(o->tls_client_ca, 1u << 20);
		if (!ca) {
			snprintf(err, errsize, "cannot read --tls-client-ca %s: %s",
				 o->tls_client_ca, strerror(errno));
			goto out;
		}
	}
	pair.private_key = key;
	pair.cert_chain = cert;
	/*
	 * A certificate is asked for and verified when given, not required at the handshake:
	 * agents must have one (checked per method), loupectl may use the token instead.
	 */
	creds = grpc_ssl_server_credentials_create_ex(
		ca, &pair, 1,
		ca ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
		   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
		NULL);
	if (!creds)
		snprintf(err, errsize, "cannot set up TLS with --tls-cert and --tls-key");
out:
	free(cert);
	free(ca);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return creds;
}

static int add_unix(struct loupe_rpc_server *s, const char *path, char *err, size_t errsize)
{
	char addr[4200], dir[4096];
	struct stat st;
	grpc_server_credentials *creds;
	char *slash;
	int port;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755); /* /run/loupe; its parent exists on any system */
	}
	/* a socket left by a controller that died; anything else is not ours to remove */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errsize, "--unix-socket %s exists and is not a socket", path);
			return -EEXIST;
		}
		unlink(path);
	}
	snprintf(addr, sizeof(addr), "unix:%s", path);
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(s->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (!port) {
		snprintf(err, errsize, "cannot listen on the unix socket %s", path);
		return -EADDRINUSE;
	}
	return 0;
}

int loupe_rpc_server_start(const struct loupe_rpc_server_opts *o,
			   const struct loupe_rpc_method *methods, size_t n_methods, void *ctx,
			   struct loupe_rpc_server **ret, char *err, size_t errsize)
{
	int keepalive = o->keepalive_ms > 0 ? o->keepalive_ms : 30000;
	grpc_arg args[] = {
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
		  .value.integer = LOUPE_RPC_TRANSPORT_MAX },
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_KEEPALIVE_TIME_MS,
		  .value.integer = keepalive },
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
		  .value.integer = 10000 },
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
		  .value.integer = 1 },
		/* a second controller on the same port must fail, not share it */
		{ .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0 },
		/* agents ping every 10 s: let them (P7) */
		{ .type = GRPC_ARG_INTEGER,
		  .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
		  .value.integer = 4000 },
	};
	grpc_channel_args ca = { sizeof(args) / sizeof(args[0]), args };
	struct loupe_rpc_server *s;
	grpc_server_credentials *creds;
	int errn = 0;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	grpc_init();
	s->methods = methods;
	s->n_methods = n_methods;
	s->ctx = ctx;
	s->token = o->token && o->token[0] ? strdup(o->token) : NULL;
	s->client_ca = o->tls_client_ca && o->tls_client_ca[0] && !o->insecure;
	s->t_shutdown = (struct tag){ TAG_SHUTDOWN, s };
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = grpc_server_create(&ca, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	s->slots = calloc(n_methods + 1, sizeof(*s->slots));
	if (!s->slots) {
		errn = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i <= n_methods; i++) {
		struct req_slot *r = &s->slots[i];

		r->tag = (struct tag){ TAG_REQUEST, r };
		r->srv = s;
		r->method = i < n_methods ? (int)i : -1;
		if (i < n_methods)
			r->handle = grpc_server_register_method(
				s->server, methods[i].path, NULL,
				methods[i].kind == LOUPE_RPC_BIDI
					? GRPC_SRM_PAYLOAD_NONE
					: GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
				0);
	}
	if (o->listen && o->listen[0]) {
		creds = tcp_creds(o, err, errsize);
		if (!creds) {
			errn = -EINVAL;
			goto fail;
		}
		s->port = grpc_server_add_http2_port(s->server, o->listen, creds);
		grpc_server_credentials_release(creds);
		if (!s->port) {
			snprintf(err, errsize,
				 "cannot listen on %s (in use, or not an address here)", o->listen);
			errn = -EADDRINUSE;
			goto fail;
		}
	}
	if (o->unix_socket && o->unix_socket[0]) {
		errn = add_unix(s, o->unix_socket, err, errsize);
		if (errn)
			goto fail;
	}
	grpc_server_start(s->server);
	if (o->unix_socket && o->unix_socket[0])
		chmod(o->unix_socket, 0660);
	for (size_t i = 0; i <= n_methods; i++)
		arm(&s->slots[i]);
	*ret = s;
	return 0;
fail:
	/* nothing started: no call exists yet */
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
	s->stopping = true;
	while (!s->shutdown_done)
		loupe_rpc_server_poll(s, 100);
	grpc_server_destroy(s->server);
	grpc_completion_queue_shutdown(s->cq);
	while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(s->cq);
	free(s->slots);
	free(s->token);
	free(s);
	grpc_shutdown();
	return errn;
}

int loupe_rpc_server_port(const struct loupe_rpc_server *s)
{
	return s->port;
}

void loupe_rpc_server_get_stats(const struct loupe_rpc_server *s,
				struct loupe_rpc_server_stats *ret)
{
	*ret = s->stats;
}

struct loupe_rpc_server *loupe_rpc_server_stop(struct loupe_rpc_server *s)
{
	grpc_event ev;

	if (!s)
		return NULL;
	s->stopping = true;
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
	grpc_server_cancel_all_calls(s->server); /* long-lived streams would hold it (P5) */
	while (!s->shutdown_done)
		loupe_rpc_server_poll(s, 100);
	grpc_server_destroy(s->server);
	grpc_completion_queue_shutdown(s->cq);
	do {
		ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			dispatch(s, ev);
	} while (ev.type != GRPC_QUEUE_SHUTDOWN);
	grpc_completion_queue_destroy(s->cq);
	free(s->slots);
	free(s->token);
	free(s);
	grpc_shutdown();
	return NULL;
}
