/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What loupectl's controller commands share: the connection options (--controller,
 * --token-file or LOUPE_TOKEN, --tls-ca, --tls-server-name, --insecure), the call, and one
 * sentence per failure. Not for the offline commands (policy check, replay).
 */
#ifndef LOUPE_CLI_CTL_H
#define LOUPE_CLI_CTL_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "ctl_client.h"

#define LOUPE_CTL_DEFAULT_CONTROLLER "unix:/run/loupe/controller.sock"

struct loupe_ctl_conn {
	const char *controller;
	const char *token_file;
	const char *tls_ca;
	const char *server_name;
	bool insecure;
};

/* getopt_long values of the connection options, to put in a command's table. */
enum {
	LOUPE_CTL_OPT_CONTROLLER = 1000,
	LOUPE_CTL_OPT_TOKEN_FILE,
	LOUPE_CTL_OPT_TLS_CA,
	LOUPE_CTL_OPT_SERVER_NAME,
	LOUPE_CTL_OPT_INSECURE,
};

#define LOUPE_CTL_LONGOPTS                                                                         \
	{ "controller", required_argument, NULL, LOUPE_CTL_OPT_CONTROLLER },                       \
		{ "token-file", required_argument, NULL, LOUPE_CTL_OPT_TOKEN_FILE },               \
		{ "tls-ca", required_argument, NULL, LOUPE_CTL_OPT_TLS_CA },                       \
		{ "tls-server-name", required_argument, NULL, LOUPE_CTL_OPT_SERVER_NAME },         \
	{                                                                                          \
		"insecure", no_argument, NULL, LOUPE_CTL_OPT_INSECURE                              \
	}

#define LOUPE_CTL_USAGE                                                                            \
	"  --controller ADDR       unix:PATH or HOST:PORT (LOUPE_CONTROLLER;\n"                    \
	"                          default: " LOUPE_CTL_DEFAULT_CONTROLLER ")\n"                   \
	"  --token-file FILE       bearer token for TCP (else LOUPE_TOKEN)\n"                      \
	"  --tls-ca FILE           CA of the controller's certificate (LOUPE_TLS_CA)\n"            \
	"  --tls-server-name NAME  name to check in it (LOUPE_TLS_SERVER_NAME)\n"                  \
	"  --insecure              plaintext TCP (LOUPE_INSECURE=true)\n"

/* Defaults from the environment. */
void loupe_ctl_conn_init(struct loupe_ctl_conn *c);

/* Takes a getopt value that is a connection option; false: not one. */
bool loupe_ctl_conn_opt(struct loupe_ctl_conn *c, int opt, const char *arg);

/* Connects (lazily: nothing is sent yet). Prints a sentence and returns NULL on failure. */
struct loupe_rpc_ctl *loupe_ctl_connect(const char *cmd, const struct loupe_ctl_conn *c);

/*
 * A unary call; on a failure prints "loupectl CMD: <sentence>" (unreachable controller,
 * token, the controller's own message) and returns false.
 */
bool loupe_ctl_call(const char *cmd, const struct loupe_ctl_conn *conn, struct loupe_rpc_ctl *c,
		    const char *method, const void *req, size_t len, uint8_t **ret,
		    size_t *ret_len);

/*
 * loupe_ctl_call() of the message @req, its answer unpacked as a @desc message: to free with
 * protobuf_c_message_free_unpacked(). NULL after printing why (nothing when out of memory).
 */
ProtobufCMessage *loupe_ctl_call_pb(const char *cmd, const struct loupe_ctl_conn *conn,
				    struct loupe_rpc_ctl *c, const char *method,
				    const ProtobufCMessage *req,
				    const ProtobufCMessageDescriptor *desc);

/* Prints @m as JSON and a newline ("{}" when it cannot be converted). */
void loupe_ctl_print_json(const ProtobufCMessage *m);

/* Prints the sentence for a failed call's @status and @msg. */
void loupe_ctl_print_status(const char *cmd, const struct loupe_ctl_conn *conn, int status,
			    const char *msg);

/* "3s ago", "5m", "2h", "4d": a short age for tables. */
void loupe_ctl_age(uint64_t then_ns, char *buf, size_t size);

#endif
