// SPDX-License-Identifier: Apache-2.0
/*
 * Client channels to the controller (plaintext, TLS, mutual TLS; TCP or a unix socket), the
 * status names, and the protobuf wire helpers that let batches be built and split without
 * unpacking every event. Not for calls: agent_client.c and ctl_client.c make them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>

#include "bb.h"
#include "rpc.h"

static const char *const status_names[] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

static void (*log_fn)(int severity, const char *message);

static void log_forward(gpr_log_func_args *args)
{
	if (log_fn)
		log_fn((int)args->severity, args->message);
}

void loupe_rpc_set_log(void (*fn)(int severity, const char *message))
{
	log_fn = fn;
	gpr_set_log_function(log_forward);
	if (!getenv("GRPC_VERBOSITY"))
		gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
}

const char *loupe_rpc_status_name(int status)
{
	if (status < 0 || (size_t)status >= sizeof(status_names) / sizeof(status_names[0]))
		return "UNKNOWN";
	return status_names[status];
}

char *loupe_rpc_read_file(const char *path, size_t max)
{
	struct stat st;
	char *buf = NULL;
	size_t off = 0;
	ssize_t n;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || (size_t)st.st_size > max) {
		err = errno ? errno : EFBIG;
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err = ENOMEM;
		goto fail;
	}
	while (off < (size_t)st.st_size) {
		n = read(fd, buf + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	close(fd);
	return buf;
fail:
	free(buf);
	close(fd);
	errno = err;
	return NULL;
}

int loupe_rpc_write_atomic(const char *path, const void *data, size_t len)
{
	char tmp[4200], dir[4200];
	const char *p = data;
	char *slash;
	int fd, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (!err && fsync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		fd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd); /* the rename itself must reach the disk */
			close(fd);
		}
	}
	return 0;
}

int loupe_rpc_mkdirs(const char *path, unsigned int mode)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

static grpc_channel_credentials *tls_creds(const struct loupe_rpc_channel_opts *o, char *err,
					   size_t errsize)
{
	grpc_ssl_pem_key_cert_pair pair = { NULL, NULL };
	grpc_channel_credentials *creds = NULL;
	char *ca = NULL, *cert = NULL, *key = NULL;

	if (o->tls_ca && !(ca = loupe_rpc_read_file(o->tls_ca, 1u << 20))) {
		snprintf(err, errsize, "cannot read the CA file %s: %s", o->tls_ca,
			 strerror(errno));
		goto out;
	}
	if (!!o->tls_cert != !!o->tls_key) {
		snprintf(err, errsize,
			 "a client certificate needs its key and the other way round "
			 "(--tls-cert with --tls-key)");
		goto out;
	}
	if (o->tls_cert) {
		cert = loupe_rpc_read_file(o->tls_cert, 1u << 20);
		if (!cert) {
			snprintf(err, errsize, "cannot read the certificate %s: %s", o->tls_cert,
				 strerror(errno));
			goto out;
		}
		key = loupe_rpc_read_file(o->tls_key, 1u << 20);
		if (!key) {
			snprintf(err, errsize, "cannot read the key %s: %s", o->tls_key,
				 strerror(errno));
			goto out;
		}
		pair.cert_chain = cert;
		pair.private_key = key;
	}
	creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
	if (!creds)
		snprintf(err, errsize, "cannot set up TLS with these files");
out:
	free(ca);
	free(cert);
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return creds;
}

struct grpc_channel *loupe_rpc_channel_new(const struct loupe_rpc_channel_opts *o, char *err,
					   size_t errsize)
{
	grpc_arg args[8];
	grpc_channel_args ca = { 0, args };
	grpc_channel_credentials *creds;
	grpc_channel *ch;
	bool unix_target = strncmp(o->target, "unix:", 5) == 0;

	if (!o->target[0]) {
		snprintf(err, errsize, "no controller address");
		return NULL;
	}
	grpc_init();
	if (unix_target || o->insecure)
		creds = grpc_insecure_credentials_create();
	else
		creds = tls_creds(o, err, errsize);
	if (!creds) {
		grpc_shutdown();
		return NULL;
	}
	memset(args, 0, sizeof(args));
	args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
					  .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
					  .value.integer = LOUPE_RPC_TRANSPORT_MAX };
	if (o->keepalive_ms > 0) {
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
						  .key = GRPC_ARG_KEEPALIVE_TIME_MS,
						  .value.integer = o->keepalive_ms };
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
						  .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
						  .value.integer = o->keepalive_ms / 2 };
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
						  .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
						  .value.integer = 1 };
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
						  .key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
						  .value.integer = 0 };
	}
	if (o->backoff_max_ms > 0) {
		/* not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: that is the connect timeout (P6) */
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
						  .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
						  .value.integer = 250 };
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
						  .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
						  .value.integer = o->backoff_max_ms };
	}
	if (o->server_name && o->server_name[0] && !unix_target && !o->insecure)
		args[ca.num_args++] = (grpc_arg){ .type = GRPC_ARG_STRING,
						  .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
						  .value.string = (char *)o->server_name };
	ch = grpc_channel_create(o->target, creds, &ca);
	grpc_channel_credentials_release(creds);
	if (!ch) {
		snprintf(err, errsize, "cannot make a channel to %s", o->target);
		grpc_shutdown();
	}
	return ch;
}

size_t loupe_rpc_put_varint(uint8_t *buf, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		buf[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	buf[n++] = (uint8_t)v;
	return n;
}

int loupe_rpc_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
	uint64_t v = 0;
	unsigned int shift = 0;

	while (*p < end && shift < 64) {
		uint8_t b = *(*p)++;

		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
		shift += 7;
	}
	return -EINVAL;
}

int loupe_rpc_next_field(const uint8_t **p, const uint8_t *end, uint32_t *ret_field,
			 uint32_t *ret_wire, const uint8_t **ret_data, uint64_t *ret_len)
{
	uint64_t key, v;

	if (*p >= end)
		return 0;
	if (loupe_rpc_get_varint(p, end, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return -EINVAL;
	*ret_field = (uint32_t)(key >> 3);
	*ret_wire = (uint32_t)(key & 7);
	*ret_data = NULL;
	switch (*ret_wire) {
	case 0:
		if (loupe_rpc_get_varint(p, end, &v))
			return -EINVAL;
		*ret_len = v;
		return 1;
	case 1:
		if (end - *p < 8)
			return -EINVAL;
		*ret_data = *p;
		*ret_len = 8;
		*p += 8;
		return 1;
	case 2:
		if (loupe_rpc_get_varint(p, end, &v) || v > (uint64_t)(end - *p))
			return -EINVAL;
		*ret_data = *p;
		*ret_len = v;
		*p += v;
		return 1;
	case 5:
		if (end - *p < 4)
			return -EINVAL;
		*ret_data = *p;
		*ret_len = 4;
		*p += 4;
		return 1;
	default:
		return -EINVAL;
	}
}

uint8_t *loupe_rpc_bb_read(grpc_byte_buffer *bb, size_t *ret_len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice all;
	uint8_t *buf;
	size_t len;

	if (!grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	all = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	len = GRPC_SLICE_LENGTH(all);
	buf = malloc(len + 1);
	if (buf) {
		memcpy(buf, GRPC_SLICE_START_PTR(all), len);
		buf[len] = 0;
	}
	grpc_slice_unref(all);
	*ret_len = len;
	return buf;
}
