/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loupectl's calls to the controller: a unary call or a server stream, bytes in and out, the
 * bearer token sent when there is one, the status and its sentence back. Blocking, one call
 * at a time. Not for the agent's stream (agent_client.h) nor for what messages mean.
 */
#ifndef LOUPE_RPC_CTL_CLIENT_H
#define LOUPE_RPC_CTL_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

struct loupe_rpc_ctl;

/* Returns 0, or -EINVAL with a sentence in @err. @token may be NULL. */
int loupe_rpc_ctl_open(const struct loupe_rpc_channel_opts *opts, const char *token,
		       struct loupe_rpc_ctl **ret, char *err, size_t errsize);
struct loupe_rpc_ctl *loupe_rpc_ctl_close(struct loupe_rpc_ctl *c);

/*
 * Calls @method with @req. Returns the gRPC status (LOUPE_RPC_OK: *@ret_resp is a malloc'd
 * response of *@ret_len bytes) and the status message in @msg.
 */
int loupe_rpc_ctl_unary(struct loupe_rpc_ctl *c, const char *method, const void *req, size_t len,
			uint8_t **ret_resp, size_t *ret_len, int timeout_ms, char *msg,
			size_t msgsize);

/*
 * Calls a server-streaming @method and hands each message to @fn (a non-zero return cancels
 * the call) until the stream ends or *@stop is set (the call is cancelled: returns
 * LOUPE_RPC_CANCELLED). Returns the gRPC status, its message in @msg.
 */
int loupe_rpc_ctl_stream(struct loupe_rpc_ctl *c, const char *method, const void *req, size_t len,
			 int (*fn)(void *ctx, const uint8_t *data, size_t len), void *ctx,
			 volatile sig_atomic_t *stop, char *msg, size_t msgsize);

#endif
