// SPDX-License-Identifier: Apache-2.0
/*
 * /metrics, /healthz and /readyz for the controller (see http.h), on libmicrohttpd's
 * internal thread; the address is parsed as the agent's metrics endpoint parses it.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "http.h"
#include "metrics.h"

struct loupe_http {
	struct MHD_Daemon *d;
	pthread_mutex_t mu;
	char *text;
	struct timespec beat;
	bool ready;
};

static int reply(struct MHD_Connection *c, unsigned int code, const char *type, const char *body)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	int ret;

	MHD_add_response_header(r, "Content-Type", type);
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **state)
{
	struct loupe_http *h = cls;
	struct timespec now;
	enum MHD_Result r;
	bool fresh, ready;
	char *text;

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return (enum MHD_Result)reply(c, 405, "text/plain", "GET only\n");
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&h->mu);
	fresh = now.tv_sec - h->beat.tv_sec < 10;
	ready = h->ready;
	text = strdup(h->text ? h->text : "");
	pthread_mutex_unlock(&h->mu);
	if (!strcmp(url, "/metrics"))
		r = (enum MHD_Result)reply(c, 200, LOUPE_METRICS_CONTENT_TYPE, text ? text : "");
	else if (!strcmp(url, "/healthz"))
		r = (enum MHD_Result)reply(c, fresh ? 200 : 503, "text/plain",
					   fresh ? "ok\n" : "the main loop is stuck\n");
	else if (!strcmp(url, "/readyz"))
		r = (enum MHD_Result)reply(c, ready ? 200 : 503, "text/plain",
					   ready ? "ready\n" : "not ready\n");
	else
		r = (enum MHD_Result)reply(c, 404, "text/plain", "not found\n");
	free(text);
	return r;
}

int loupe_http_start(const char *addr, struct loupe_http **ret)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct loupe_http *h;
	sigset_t all, old;
	int err;

	err = loupe_metrics_parse_addr(addr, &ss, &len);
	if (err)
		return err;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->mu, NULL);
	clock_gettime(CLOCK_MONOTONIC, &h->beat);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the HTTP thread takes no signal */
	h->d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0,
		NULL, NULL, handler, h, MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_CONNECTION_LIMIT, 64u,
		MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!h->d) {
		pthread_mutex_destroy(&h->mu);
		free(h);
		return -(err ? err : EADDRINUSE);
	}
	*ret = h;
	return 0;
}

void loupe_http_publish(struct loupe_http *h, const char *text)
{
	char *copy = strdup(text);

	pthread_mutex_lock(&h->mu);
	free(h->text);
	h->text = copy;
	pthread_mutex_unlock(&h->mu);
}

void loupe_http_heartbeat(struct loupe_http *h)
{
	pthread_mutex_lock(&h->mu);
	clock_gettime(CLOCK_MONOTONIC, &h->beat);
	pthread_mutex_unlock(&h->mu);
}

void loupe_http_set_ready(struct loupe_http *h, bool ready)
{
	pthread_mutex_lock(&h->mu);
	h->ready = ready;
	pthread_mutex_unlock(&h->mu);
}

struct loupe_http *loupe_http_stop(struct loupe_http *h)
{
	if (!h)
		return NULL;
	MHD_stop_daemon(h->d);
	free(h->text);
	pthread_mutex_destroy(&h->mu);
	free(h);
	return NULL;
}
