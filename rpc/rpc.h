/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What loupe's gRPC modules share: status codes (grpc_status_code's numbers, so callers need
 * no gRPC header), client channel settings and the wire helpers for messages that are built
 * or split without unpacking them. gRPC C core stays inside rpc/. Not for any service logic.
 */
#ifndef LOUPE_RPC_H
#define LOUPE_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes (grpc/status.h). */
enum loupe_rpc_status {
	LOUPE_RPC_OK = 0,
	LOUPE_RPC_CANCELLED = 1,
	LOUPE_RPC_UNKNOWN = 2,
	LOUPE_RPC_INVALID_ARGUMENT = 3,
	LOUPE_RPC_DEADLINE_EXCEEDED = 4,
	LOUPE_RPC_NOT_FOUND = 5,
	LOUPE_RPC_ALREADY_EXISTS = 6,
	LOUPE_RPC_PERMISSION_DENIED = 7,
	LOUPE_RPC_RESOURCE_EXHAUSTED = 8,
	LOUPE_RPC_FAILED_PRECONDITION = 9,
	LOUPE_RPC_ABORTED = 10,
	LOUPE_RPC_OUT_OF_RANGE = 11,
	LOUPE_RPC_UNIMPLEMENTED = 12,
	LOUPE_RPC_INTERNAL = 13,
	LOUPE_RPC_UNAVAILABLE = 14,
	LOUPE_RPC_DATA_LOSS = 15,
	LOUPE_RPC_UNAUTHENTICATED = 16,
};

/* "INVALID_ARGUMENT", ...; "UNKNOWN" for a number out of range. */
const char *loupe_rpc_status_name(int status);

/* Method paths: "/" package.Service "/" Method. */
#define LOUPE_RPC_AGENT_CONNECT	  "/loupe.v1.AgentService/Connect"
#define LOUPE_RPC_POLICY_APPLY	  "/loupe.v1.PolicyService/Apply"
#define LOUPE_RPC_POLICY_DELETE	  "/loupe.v1.PolicyService/Delete"
#define LOUPE_RPC_POLICY_LIST	  "/loupe.v1.PolicyService/List"
#define LOUPE_RPC_POLICY_GET	  "/loupe.v1.PolicyService/Get"
#define LOUPE_RPC_OBSERVER_EVENTS "/loupe.v1.ObserverService/GetEvents"
#define LOUPE_RPC_OBSERVER_AGENTS "/loupe.v1.ObserverService/ListAgents"

/* Message size limits: larger requests are refused with INVALID_ARGUMENT. */
#define LOUPE_RPC_MAX_MESSAGE	(8u << 20)  /* any message the controller takes */
#define LOUPE_RPC_TRANSPORT_MAX (64u << 20) /* gRPC's own limit, above ours: ours answers */

/* How a client reaches the controller. */
struct loupe_rpc_channel_opts {
	const char *target; /* "host:port", "ipv4:a.b.c.d:port", "[v6]:port", "unix:/path" */
	bool insecure;	    /* plaintext TCP; unix: targets are always plaintext */
	const char *tls_ca; /* PEM file of the CA that signed the controller; NULL: system roots */
	const char *tls_cert; /* client certificate (mutual TLS), with tls_key */
	const char *tls_key;
	const char *server_name; /* name to check in the controller's certificate */
	int keepalive_ms;	 /* 0: no keepalive pings */
	int backoff_max_ms;	 /* the channel's own reconnect backoff ceiling; 0: gRPC's */
};

struct grpc_channel;

/*
 * Library init (reference counted, gRPC's own) and a channel per @opts. Returns the channel,
 * or NULL with a sentence in @err (a file that cannot be read, a bad target).
 */
struct grpc_channel *loupe_rpc_channel_new(const struct loupe_rpc_channel_opts *opts, char *err,
					   size_t errsize);

/*
 * Where gRPC's own log lines go: @fn(severity 0 debug .. 2 error, message), or nowhere with
 * NULL. Unless GRPC_VERBOSITY is set, only errors are passed on. Call before any channel or
 * server.
 */
void loupe_rpc_set_log(void (*fn)(int severity, const char *message));

/* Reads a whole small file (PEM, token) into a malloc'd NUL-terminated string; NULL + errno. */
char *loupe_rpc_read_file(const char *path, size_t max);

/*
 * Replaces @path with @len bytes at once: a temporary file beside it, fsync, rename, fsync
 * of the directory. A crash leaves the old file or the new one, and maybe "@path.tmp".
 * Returns 0 or -errno.
 */
int loupe_rpc_write_atomic(const char *path, const void *data, size_t len);

/* mkdir -p with @mode for what it creates. Returns 0 or -errno. */
int loupe_rpc_mkdirs(const char *path, unsigned int mode);

/* protobuf wire helpers: a varint into @buf (10 bytes are enough); returns its length. */
size_t loupe_rpc_put_varint(uint8_t *buf, uint64_t v);

/*
 * Reads a varint at *@p (< @end); advances *@p. Returns 0 or -EINVAL (truncated, too long).
 */
int loupe_rpc_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret);

/*
 * Walks a message's top-level fields: for each, *@ret_field, *@ret_wire, and for wire type 2
 * (length-delimited) the bytes in *@ret_data / *@ret_len; for varints the value in *@ret_len.
 * Returns 1 for a field, 0 at the end, -EINVAL for malformed input.
 */
int loupe_rpc_next_field(const uint8_t **p, const uint8_t *end, uint32_t *ret_field,
			 uint32_t *ret_wire, const uint8_t **ret_data, uint64_t *ret_len);

#endif
