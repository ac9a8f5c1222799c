// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl's connection to the controller (see ctl.h): options and environment, the token,
 * and failures as sentences. Not for any one command.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl.h"
#include "pbjson.h"

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] ? v : NULL;
}

void loupe_ctl_conn_init(struct loupe_ctl_conn *c)
{
	const char *ins = env("LOUPE_INSECURE");

	memset(c, 0, sizeof(*c));
	c->controller =
		env("LOUPE_CONTROLLER") ? env("LOUPE_CONTROLLER") : LOUPE_CTL_DEFAULT_CONTROLLER;
	c->token_file = env("LOUPE_TOKEN_FILE");
	c->tls_ca = env("LOUPE_TLS_CA");
	c->server_name = env("LOUPE_TLS_SERVER_NAME");
	c->insecure = ins && (!strcasecmp(ins, "true") || !strcmp(ins, "1"));
}

bool loupe_ctl_conn_opt(struct loupe_ctl_conn *c, int opt, const char *arg)
{
	switch (opt) {
	case LOUPE_CTL_OPT_CONTROLLER:
		c->controller = arg;
		return true;
	case LOUPE_CTL_OPT_TOKEN_FILE:
		c->token_file = arg;
		return true;
	case LOUPE_CTL_OPT_TLS_CA:
		c->tls_ca = arg;
		return true;
	case LOUPE_CTL_OPT_SERVER_NAME:
		c->server_name = arg;
		return true;
	case LOUPE_CTL_OPT_INSECURE:
		c->insecure = true;
		return true;
	}
	return false;
}

struct loupe_rpc_ctl *loupe_ctl_connect(const char *cmd, const struct loupe_ctl_conn *c)
{
	struct loupe_rpc_channel_opts o = { .target = c->controller,
					    .insecure = c->insecure,
					    .tls_ca = c->tls_ca,
					    .server_name = c->server_name };
	struct loupe_rpc_ctl *ctl = NULL;
	char err[512], *token = NULL;

	if (c->token_file) {
		token = loupe_rpc_read_file(c->token_file, 4096);
		if (!token) {
			fprintf(stderr, "loupectl %s: cannot read the token file %s: %s\n", cmd,
				c->token_file, strerror(errno));
			return NULL;
		}
	} else if (env("LOUPE_TOKEN")) {
		token = strdup(env("LOUPE_TOKEN"));
	}
	if (token) {
		size_t n = strlen(token);

		while (n && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' '))
			token[--n] = '\0';
	}
	loupe_rpc_set_log(NULL); /* failures come back as statuses, said as sentences */
	if (loupe_rpc_ctl_open(&o, token, &ctl, err, sizeof(err)))
		fprintf(stderr, "loupectl %s: %s\n", cmd, err);
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	return ctl;
}

void loupe_ctl_print_status(const char *cmd, const struct loupe_ctl_conn *conn, int status,
			    const char *msg)
{
	switch (status) {
	case LOUPE_RPC_UNAVAILABLE:
	case LOUPE_RPC_DEADLINE_EXCEEDED:
		fprintf(stderr,
			"loupectl %s: cannot reach the controller at %s (%s). Is loupe-controller "
			"running there? Set --controller or LOUPE_CONTROLLER%s.\n",
			cmd, conn->controller, msg,
			strncmp(conn->controller, "unix:", 5) && !conn->insecure
				? "; TLS is used unless --insecure"
				: "");
		break;
	case LOUPE_RPC_UNAUTHENTICATED:
		fprintf(stderr, "loupectl %s: the controller refused us: %s.\n", cmd, msg);
		break;
	case LOUPE_RPC_UNIMPLEMENTED:
		fprintf(stderr,
			"loupectl %s: the controller at %s does not know this call (%s): "
			"is it a loupe-controller of this version?\n",
			cmd, conn->controller, msg);
		break;
	default:
		fprintf(stderr, "loupectl %s: %s\n", cmd,
			msg[0] ? msg : loupe_rpc_status_name(status));
	}
}

bool loupe_ctl_call(const char *cmd, const struct loupe_ctl_conn *conn, struct loupe_rpc_ctl *c,
		    const char *method, const void *req, size_t len, uint8_t **ret, size_t *ret_len)
{
	char msg[4096];
	int st;

	st = loupe_rpc_ctl_unary(c, method, req, len, ret, ret_len, 15000, msg, sizeof(msg));
	if (st == LOUPE_RPC_OK)
		return true;
	loupe_ctl_print_status(cmd, conn, st, msg);
	return false;
}

ProtobufCMessage *loupe_ctl_call_pb(const char *cmd, const struct loupe_ctl_conn *conn,
				    struct loupe_rpc_ctl *c, const char *method,
				    const ProtobufCMessage *req,
				    const ProtobufCMessageDescriptor *desc)
{
	size_t len = protobuf_c_message_get_packed_size(req), out_len;
	uint8_t *buf = malloc(len + 1), *out = NULL;
	ProtobufCMessage *m = NULL;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(req, buf);
	if (loupe_ctl_call(cmd, conn, c, method, buf, len, &out, &out_len)) {
		m = protobuf_c_message_unpack(desc, NULL, out_len, out);
		if (!m)
			fprintf(stderr, "loupectl %s: the controller's answer does not decode\n",
				cmd);
	}
	free(out);
	free(buf);
	return m;
}

void loupe_ctl_print_json(const ProtobufCMessage *m)
{
	char *s = loupe_pbjson_to_string(m);

	printf("%s\n", s ? s : "{}");
	free(s);
}

void loupe_ctl_age(uint64_t then_ns, char *buf, size_t size)
{
	struct timespec ts;
	uint64_t now, s;

	if (!then_ns) {
		snprintf(buf, size, "-");
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	s = now > then_ns ? (now - then_ns) / 1000000000ULL : 0;
	if (s < 120)
		snprintf(buf, size, "%llus", (unsigned long long)s);
	else if (s < 7200)
		snprintf(buf, size, "%llum", (unsigned long long)(s / 60));
	else if (s < 172800)
		snprintf(buf, size, "%lluh", (unsigned long long)(s / 3600));
	else
		snprintf(buf, size, "%llud", (unsigned long long)(s / 86400));
}
