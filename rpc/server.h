/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small gRPC server over the C core for the controller: registered methods (unary, server
 * streaming, bidirectional), a send queue per call, the token and client-certificate checks,
 * size limits, plaintext on a unix socket and TLS (or explicit plaintext) on TCP. One thread:
 * every callback runs inside loupe_rpc_server_poll(), on the caller's thread. Messages are
 * bytes here; what they mean is the caller's. Not for clients (agent_client.h, ctl_client.h).
 */
#ifndef LOUPE_RPC_SERVER_H
#define LOUPE_RPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

struct loupe_rpc_server;
struct loupe_rpc_call;

struct loupe_rpc_server_opts {
	const char *listen;   /* "0.0.0.0:9760", "[::]:9760"; NULL or "": no TCP */
	bool insecure;	      /* plaintext TCP (else tls_cert and tls_key are needed) */
	const char *tls_cert; /* PEM files */
	const char *tls_key;
	const char
		*tls_client_ca;	 /* mutual TLS: methods with need_client_cert want one it signed */
	const char *unix_socket; /* path; NULL or "": none. Plaintext, mode 0660 */
	const char *token;	 /* bearer token for methods with need_token; NULL: none */
	int keepalive_ms;	 /* pings to find dead peers; 0: 30 s */
};

enum loupe_rpc_method_kind {
	LOUPE_RPC_UNARY,
	LOUPE_RPC_SERVER_STREAM,
	LOUPE_RPC_BIDI,
};

struct loupe_rpc_method {
	const char *path; /* "/loupe.v1.PolicyService/Apply" */
	enum loupe_rpc_method_kind kind;
	bool need_token;       /* over TCP: "authorization: Bearer <token>" when a token is set */
	bool need_client_cert; /* over TCP with a client CA: a verified client certificate */
	/* the request (unary, server streaming) or each message from the client (bidi) */
	void (*on_message)(void *ctx, struct loupe_rpc_call *call, const uint8_t *data, size_t len);
	/* the call's send queue ran empty (streams: room for more); may be NULL */
	void (*on_sent)(void *ctx, struct loupe_rpc_call *call);
	/* the call is over (finished, cancelled, peer gone): forget it; may be NULL */
	void (*on_close)(void *ctx, struct loupe_rpc_call *call);
};

struct loupe_rpc_server_stats {
	uint64_t calls;		/* accepted */
	uint64_t refused_auth;	/* token or certificate missing or wrong */
	uint64_t refused_size;	/* message over LOUPE_RPC_MAX_MESSAGE */
	uint64_t unimplemented; /* unknown method paths */
	uint64_t active;	/* calls open now */
};

/*
 * Binds and starts. @methods must outlive the server. Returns 0, or -errno with a sentence in
 * @err (a port that cannot be bound, an unreadable certificate).
 */
int loupe_rpc_server_start(const struct loupe_rpc_server_opts *opts,
			   const struct loupe_rpc_method *methods, size_t n_methods, void *ctx,
			   struct loupe_rpc_server **ret, char *err, size_t errsize);

/* The TCP port bound (useful with port 0); 0 without TCP. */
int loupe_rpc_server_port(const struct loupe_rpc_server *s);

/* Runs completions and callbacks for up to @timeout_ms. Returns 0. */
int loupe_rpc_server_poll(struct loupe_rpc_server *s, int timeout_ms);

void loupe_rpc_server_get_stats(const struct loupe_rpc_server *s,
				struct loupe_rpc_server_stats *ret);

/* Ends every call, stops, frees (on_close is called for each open call); returns NULL. */
struct loupe_rpc_server *loupe_rpc_server_stop(struct loupe_rpc_server *s);

/*
 * Queues a message: loupe_rpc_call_send() copies @data, loupe_rpc_call_send_take() takes
 * @buf (malloc'd; freed in any case). Returns 0, or -EPIPE when the call is over or finishing.
 */
int loupe_rpc_call_send(struct loupe_rpc_call *c, const void *data, size_t len);
int loupe_rpc_call_send_take(struct loupe_rpc_call *c, void *buf, size_t len);

/* Bytes queued and not yet sent (the message in flight included). */
size_t loupe_rpc_call_queued(const struct loupe_rpc_call *c);

/* Ends the call with @status and @message once the queue is sent; later sends are refused. */
void loupe_rpc_call_finish(struct loupe_rpc_call *c, int status, const char *message);

/* Cancels at once: what is queued is dropped (a slow subscriber being cut off). */
void loupe_rpc_call_abort(struct loupe_rpc_call *c, int status, const char *message);

void loupe_rpc_call_set_data(struct loupe_rpc_call *c, void *data);
void *loupe_rpc_call_get_data(const struct loupe_rpc_call *c);

/* "ipv4:198.18.0.1:40000" or "unix:..."; the certificate's identity appended when there is one. */
const char *loupe_rpc_call_peer(const struct loupe_rpc_call *c);
bool loupe_rpc_call_is_local(const struct loupe_rpc_call *c);
bool loupe_rpc_call_finishing(const struct loupe_rpc_call *c);

#endif
