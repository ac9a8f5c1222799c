// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl's calls (see ctl_client.h) on a pluck completion queue: a unary call is one batch;
 * a stream is {metadata, request, half-close}, {RECV_INITIAL_METADATA}, {RECV_STATUS} and a
 * chain of RECV_MESSAGE, plucked with a short deadline so that Ctrl-C is seen. Not for what
 * the messages mean.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "bb.h"
#include "ctl_client.h"

struct loupe_rpc_ctl {
	grpc_channel *ch;
	grpc_completion_queue *cq;
	char *auth; /* "Bearer <token>" */
};

int loupe_rpc_ctl_open(const struct loupe_rpc_channel_opts *o, const char *token,
		       struct loupe_rpc_ctl **ret, char *err, size_t errsize)
{
	struct loupe_rpc_ctl *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->ch = loupe_rpc_channel_new(o, err, errsize);
	if (!c->ch) {
		free(c);
		return -EINVAL;
	}
	if (token && token[0] && asprintf(&c->auth, "Bearer %s", token) < 0)
		c->auth = NULL;
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	*ret = c;
	return 0;
}

struct loupe_rpc_ctl *loupe_rpc_ctl_close(struct loupe_rpc_ctl *c)
{
	if (!c)
		return NULL;
	grpc_channel_destroy(c->ch);
	grpc_completion_queue_shutdown(c->cq);
	grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_destroy(c->cq);
	if (c->auth) {
		explicit_bzero(c->auth, strlen(c->auth));
		free(c->auth);
	}
	free(c);
	grpc_shutdown();
	return NULL;
}

static grpc_byte_buffer *bb_copy(const void *data, size_t len)
{
	grpc_slice s = grpc_slice_from_copied_buffer(data, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

	grpc_slice_unref(s);
	return bb;
}

static void status_text(grpc_status_code st, grpc_slice details, char *msg, size_t size)
{
	char *d = grpc_slice_to_c_string(details);

	snprintf(msg, size, "%s", d && d[0] ? d : (st ? loupe_rpc_status_name(st) : ""));
	gpr_free(d);
}

static void auth_md(struct loupe_rpc_ctl *c, grpc_metadata *md, size_t *n)
{
	*n = 0;
	if (!c->auth)
		return;
	memset(md, 0, sizeof(*md));
	md->key = grpc_slice_from_static_string("authorization");
	md->value = grpc_slice_from_copied_string(c->auth);
	*n = 1;
}

/*
 * A call's first three ops, unary or stream: the metadata (*@md, *@nmd: the token, for the
 * caller to unref once the batch is started), the request @out and the half-close.
 */
static void send_ops(struct loupe_rpc_ctl *c, grpc_op *ops, grpc_metadata *md, size_t *nmd,
		     grpc_byte_buffer *out)
{
	auth_md(c, md, nmd);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = *nmd;
	ops[0].data.send_initial_metadata.metadata = *nmd ? md : NULL;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = out;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
}

int loupe_rpc_ctl_unary(struct loupe_rpc_ctl *c, const char *method, const void *req, size_t len,
			uint8_t **ret_resp, size_t *ret_len, int timeout_ms, char *msg,
			size_t msgsize)
{
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	grpc_metadata_array rmd, tmd;
	grpc_byte_buffer *out = bb_copy(req, len), *in = NULL;
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_metadata md;
	grpc_op ops[6];
	grpc_call *call;
	size_t nmd;
	int tag = 0;

	*ret_resp = NULL;
	*ret_len = 0;
	call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
					grpc_slice_from_static_string(method), NULL, deadline,
					NULL);
	grpc_metadata_array_init(&rmd);
	grpc_metadata_array_init(&tmd);
	memset(ops, 0, sizeof(ops));
	send_ops(c, ops, &md, &nmd, out);
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &rmd;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &in;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
	ops[5].data.recv_status_on_client.status = &st;
	ops[5].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK)
		grpc_completion_queue_pluck(c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	else
		st = GRPC_STATUS_INTERNAL;
	if (nmd)
		grpc_slice_unref(md.value);
	grpc_byte_buffer_destroy(out);
	status_text(st, details, msg, msgsize);
	if (st == GRPC_STATUS_OK && in)
		*ret_resp = loupe_rpc_bb_read(in, ret_len);
	else if (st == GRPC_STATUS_OK)
		*ret_resp = calloc(1, 1);
	if (in)
		grpc_byte_buffer_destroy(in);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&rmd);
	grpc_metadata_array_destroy(&tmd);
	grpc_call_unref(call);
	return st;
}

int loupe_rpc_ctl_stream(struct loupe_rpc_ctl *c, const char *method, const void *req, size_t len,
			 int (*fn)(void *ctx, const uint8_t *data, size_t len), void *ctx,
			 volatile sig_atomic_t *stop, char *msg, size_t msgsize)
{
	grpc_metadata_array rmd, tmd;
	grpc_byte_buffer *out = bb_copy(req, len), *in = NULL;
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	int t_start, t_rmd, t_status, t_recv;
	bool cancelled = false, recv_pending = false;
	grpc_metadata md;
	grpc_op ops[3];
	grpc_call *call;
	grpc_event ev;
	size_t nmd;

	call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
					grpc_slice_from_static_string(method), NULL,
					gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_metadata_array_init(&rmd);
	grpc_metadata_array_init(&tmd);
	memset(ops, 0, sizeof(ops));
	send_ops(c, ops, &md, &nmd, out);
	grpc_call_start_batch(call, ops, 3, &t_start, NULL);
	if (nmd)
		grpc_slice_unref(md.value);
	grpc_byte_buffer_destroy(out);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &rmd;
	grpc_call_start_batch(call, ops, 1, &t_rmd, NULL);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &tmd;
	ops[0].data.recv_status_on_client.status = &st;
	ops[0].data.recv_status_on_client.status_details = &details;
	grpc_call_start_batch(call, ops, 1, &t_status, NULL);

	for (;;) {
		if (!recv_pending) {
			memset(ops, 0, sizeof(ops));
			ops[0].op = GRPC_OP_RECV_MESSAGE;
			ops[0].data.recv_message.recv_message = &in;
			if (grpc_call_start_batch(call, ops, 1, &t_recv, NULL) != GRPC_CALL_OK)
				break;
			recv_pending = true;
		}
		ev = grpc_completion_queue_pluck(
			c->cq, &t_recv,
			gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				     gpr_time_from_millis(200, GPR_TIMESPAN)),
			NULL);
		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			if (stop && *stop && !cancelled) {
				grpc_call_cancel(call, NULL);
				cancelled = true;
			}
			continue;
		}
		recv_pending = false;
		if (!ev.success || !in)
			break;
		{
			size_t n;
			uint8_t *data = loupe_rpc_bb_read(in, &n);
			int r = data ? fn(ctx, data, n) : 0;

			free(data);
			grpc_byte_buffer_destroy(in);
			in = NULL;
			if (r && !cancelled) {
				grpc_call_cancel(call, NULL);
				cancelled = true;
			}
		}
	}
	if (in)
		grpc_byte_buffer_destroy(in);
	grpc_completion_queue_pluck(c->cq, &t_start, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_pluck(c->cq, &t_rmd, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_pluck(c->cq, &t_status, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	status_text(st, details, msg, msgsize);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&rmd);
	grpc_metadata_array_destroy(&tmd);
	grpc_call_unref(call);
	return cancelled && stop && *stop ? LOUPE_RPC_CANCELLED : (int)st;
}
