// SPDX-License-Identifier: Apache-2.0
/*
 * /metrics, /healthz and /readyz over libmicrohttpd. The agent's loop publishes snapshots
 * under a mutex; the server thread copies the last one and formats it. The listening socket
 * is made here, so a bind failure comes back as its errno. Not for gathering the figures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "event.h"
#include "metrics.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define METRICS_CONN_LIMIT   32
#define METRICS_CONN_TIMEOUT 10 /* seconds */

struct loupe_metrics {
	struct MHD_Daemon *daemon;
	uint16_t port;
	char version[64];
	uint64_t heartbeat_timeout_ns;
	pthread_mutex_t lock;		    /* guards what follows */
	struct loupe_metrics_snapshot snap; /* snap.rule_hits points to rules */
	struct loupe_metrics_rule_hits *rules;
	size_t rules_cap;
	uint64_t heartbeat_ns; /* CLOCK_MONOTONIC */
	bool ready;
};

/* Label values of enum loupe_direction. */
static const char *const dir_names[LOUPE_DIR_MAX] = { "pod_egress", "pod_ingress" };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Digits only, 0..65535. */
static int parse_port(const char *s, uint16_t *ret)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -EINVAL;
	}
	*ret = (uint16_t)v;
	return 0;
}

int loupe_metrics_parse_addr(const char *addr, struct sockaddr_storage *ret_ss, socklen_t *ret_len)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	const char *colon, *close;
	unsigned long scope;
	char *zone, *end;
	uint16_t port;
	size_t len;

	memset(ret_ss, 0, sizeof(*ret_ss));
	if (addr[0] == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret_ss;

		close = strchr(addr, ']');
		if (!close || close[1] != ':' || parse_port(close + 2, &port))
			return -EINVAL;
		len = (size_t)(close - addr - 1);
		if (len == 0 || len >= sizeof(host))
			return -EINVAL;
		memcpy(host, addr + 1, len);
		host[len] = '\0';
		zone = strchr(host, '%');
		if (zone) {
			host[zone - host] = '\0';
			zone++;
			sin6->sin6_scope_id = if_nametoindex(zone);
			if (!sin6->sin6_scope_id) {
				/* a zone by number */
				scope = strtoul(zone, &end, 10);
				if (!*zone || *end || !scope || scope > UINT32_MAX)
					return -EINVAL;
				sin6->sin6_scope_id = (uint32_t)scope;
			}
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*ret_len = sizeof(*sin6);
		return 0;
	}

	struct sockaddr_in *sin = (struct sockaddr_in *)ret_ss;

	colon = strrchr(addr, ':');
	if (!colon || parse_port(colon + 1, &port))
		return -EINVAL;
	len = (size_t)(colon - addr);
	if (len == 0 || len >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, len);
	host[len] = '\0';
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -EINVAL;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	*ret_len = sizeof(*sin);
	return 0;
}

/* A label value with \, " and newline escaped, as the text format wants. */
static void put_label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*s, f);
	}
}

static void put_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_value(FILE *f, const char *name, uint64_t v)
{
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void put_counter(FILE *f, const char *name, const char *help, uint64_t v)
{
	put_family(f, name, "counter", help);
	put_value(f, name, v);
}

static void put_gauge(FILE *f, const char *name, const char *help, uint64_t v)
{
	put_family(f, name, "gauge", help);
	put_value(f, name, v);
}

/* The datapath's counters are __u64 (unsigned long long), the agent's uint64_t. */
static void put_by_dir(FILE *f, const char *name, const char *help, const __u64 *v)
{
	put_family(f, name, "counter", help);
	for (int d = 0; d < LOUPE_DIR_MAX; d++)
		fprintf(f, "%s{direction=\"%s\"} %llu\n", name, dir_names[d],
			(unsigned long long)v[d]);
}

/* One sample per kind, UNSPECIFIED left out. */
static void put_by_kind(FILE *f, const char *name, const char *help, const __u64 *v)
{
	put_family(f, name, "counter", help);
	for (int k = LOUPE_EV_UNSPECIFIED + 1; k < LOUPE_EV_KIND_MAX; k++)
		fprintf(f, "%s{kind=\"%s\"} %llu\n", name,
			loupe_event_kind_name((enum loupe_event_kind)k), (unsigned long long)v[k]);
}

int loupe_metrics_format(const struct loupe_metrics_snapshot *s, const char *version,
			 char **ret_text, size_t *ret_len)
{
	const struct loupe_counters *c = &s->dp;
	__u64 emitted[LOUPE_EV_KIND_MAX];
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;

	put_family(f, "loupe_build_info", "gauge", "The running loupe-agent's version; always 1.");
	fputs("loupe_build_info{version=\"", f);
	put_label_value(f, version ? version : "unknown");
	fputs("\"} 1\n", f);

	put_by_dir(f, "loupe_packets_total", "Packets seen on pod interfaces, by direction.",
		   c->packets);
	put_by_dir(f, "loupe_bytes_total", "Bytes (wire length) seen on pod interfaces.", c->bytes);
	put_by_dir(f, "loupe_non_ip_packets_total", "Packets that were neither IPv4 nor IPv6.",
		   c->non_ip);
	put_by_dir(f, "loupe_fragments_total",
		   "Non-first IP fragments: counted, without an L4 header to read.", c->fragments);
	put_counter(f, "loupe_flows_created_total", "Flows added to the flow table.",
		    c->flows_created);
	put_counter(f, "loupe_flows_refused_total",
		    "Flows the flow table could not take (insertion failed).",
		    c->flow_create_failed);

	put_family(f, "loupe_parse_errors_total", "counter",
		   "Packets whose headers could not be parsed as far as they claim, by reason.");
	for (int r = LOUPE_PERR_NONE + 1; r < LOUPE_PERR_MAX; r++)
		fprintf(f, "loupe_parse_errors_total{reason=\"%s\"} %llu\n",
			loupe_parse_error_name(r), (unsigned long long)c->parse_errors[r]);

	put_by_kind(f, "loupe_events_total",
		    "Events the datapath put into the ring buffer, by kind.", c->events);
	put_by_kind(f, "loupe_events_lost_total",
		    "Events the datapath lost because the ring buffer was full, by kind.",
		    c->events_lost);
	for (int k = 0; k < LOUPE_EV_KIND_MAX; k++)
		emitted[k] = s->events_emitted[k];
	put_by_kind(f, "loupe_events_emitted_total",
		    "Events the agent emitted (decoded, flow ends, LOST reports), by kind.",
		    emitted);
	put_counter(f, "loupe_lost_reported_total",
		    "Lost events accounted for in emitted LOST events.", s->lost_reported);
	put_counter(f, "loupe_records_invalid_total",
		    "Ring buffer records the agent could not decode.", s->records_invalid);
	put_counter(f, "loupe_links_resyncs_total",
		    "Full rtnetlink re-dumps after the notification socket overflowed.",
		    s->links_resyncs);
	put_counter(f, "loupe_links_dropped_total",
		    "Links not tracked because the agent's link table was full.", s->links_dropped);
	put_counter(f, "loupe_pod_addrs_truncated_total",
		    "Times a pod had more addresses than the agent keeps (8).",
		    s->pod_addrs_truncated);

	put_gauge(f, "loupe_interfaces_attached", "Pod interfaces with loupe's programs attached.",
		  s->ifaces_attached);
	put_gauge(f, "loupe_ringbuf_pending_bytes",
		  "Ring buffer bytes produced and not yet consumed.", s->ringbuf_pending);
	put_gauge(f, "loupe_ringbuf_size_bytes", "Ring buffer size.", s->ringbuf_size);
	put_family(f, "loupe_ringbuf_fill_ratio", "gauge",
		   "Ring buffer fill: pending bytes over size, 0 to 1.");
	fprintf(f, "loupe_ringbuf_fill_ratio %.6g\n",
		s->ringbuf_size ? (double)s->ringbuf_pending / (double)s->ringbuf_size : 0.0);

	put_gauge(f, "loupe_policy_generation",
		  "The policy set in force (its generation; 0 before the first is applied).",
		  s->policy_generation);
	put_family(f, "loupe_policy_reloads_total", "counter",
		   "Policy reloads (SIGHUP, a file change) by result: ok applied the new set, "
		   "refused kept the set in force.");
	fprintf(f, "loupe_policy_reloads_total{result=\"ok\"} %llu\n",
		(unsigned long long)s->policy_reloads_ok);
	fprintf(f, "loupe_policy_reloads_total{result=\"refused\"} %llu\n",
		(unsigned long long)s->policy_reloads_refused);
	put_family(f, "loupe_policy_rule_flows_total", "counter",
		   "Flows decided by a rule of the set in force (rule \"\": the policy's "
		   "defaultAction), since the rule was first in force.");
	for (size_t i = 0; i < s->n_rule_hits; i++) {
		const struct loupe_metrics_rule_hits *h = &s->rule_hits[i];

		fputs("loupe_policy_rule_flows_total{policy=\"", f);
		put_label_value(f, h->policy);
		fputs("\",rule=\"", f);
		put_label_value(f, h->rule);
		fputs("\",action=\"", f);
		put_label_value(f, h->action);
		fprintf(f, "\"} %llu\n", (unsigned long long)h->flows);
	}
	put_by_dir(f, "loupe_policy_dropped_packets_total",
		   "Packets dropped because their flow's verdict is deny.", c->policy_dropped);
	put_counter(f, "loupe_policy_bound_exceeded_total",
		    "Requests denied because no verdict was reached within the bytes held.",
		    c->policy_bound_exceeded);
	put_counter(f, "loupe_policy_out_of_order_segments_total",
		    "Segments dropped while a request was held for a verdict (the sender "
		    "retransmits).",
		    c->policy_out_of_order);
	put_by_dir(f, "loupe_rewritten_packets_total",
		   "Packets changed by a rewrite (mapping, DSCP, VLAN, header masking), by "
		   "direction.",
		   c->rewritten);
	put_counter(f, "loupe_rewrite_failed_total",
		    "Packets a rewrite, or a reply's reverse mapping, could not be applied to (a "
		    "kernel helper refused).",
		    c->rewrite_failed);
	put_by_dir(f, "loupe_rate_limited_packets_total",
		   "Packets dropped by their pod's rate limit, by direction.", c->rate_limited);
	put_counter(f, "loupe_policy_verdicts_unnamed_total",
		    "Verdict events of a policy generation whose rule names the agent no longer "
		    "knew.",
		    s->verdicts_unnamed);

	if (s->controller) {
		put_gauge(f, "loupe_controller_connected",
			  "1 while a stream to the controller is up, else 0.",
			  s->controller_connected);
		put_counter(f, "loupe_controller_connects_total",
			    "Streams to the controller that got a first answer.",
			    s->controller_connects);
		put_counter(f, "loupe_controller_events_sent_total",
			    "Events sent to the controller, resends included.", s->events_sent);
		put_counter(f, "loupe_controller_events_acked_total",
			    "Events the controller acknowledged (it has them).", s->events_acked);
		put_gauge(f, "loupe_controller_events_buffered",
			  "Events kept for the controller, not acknowledged yet.",
			  s->events_buffered);
		put_counter(f, "loupe_controller_events_dropped_total",
			    "Events pushed out of the full buffer while the controller was away "
			    "(reported in LOST events).",
			    s->events_dropped);
		put_gauge(f, "loupe_controller_policy_revision",
			  "The controller's policy revision in force on this node.",
			  s->controller_revision);
	}

	put_counter(f, "loupe_output_lines_total", "Event lines accepted by the standalone output.",
		    s->output.lines);
	put_counter(f, "loupe_output_bytes_total", "Bytes written by the standalone output.",
		    s->output.bytes);
	put_counter(f, "loupe_output_rotations_total", "Rotations of the standalone output file.",
		    s->output.rotations);
	put_counter(f, "loupe_output_errors_total",
		    "Failed writes, opens, renames or formatting in the standalone output.",
		    s->output.errors);
	put_counter(f, "loupe_output_lines_dropped_total",
		    "Event lines the standalone output dropped after an error.",
		    s->output.lines_dropped);

	if (fclose(f) || !text) {
		free(text);
		return -ENOMEM;
	}
	*ret_text = text;
	*ret_len = len;
	return 0;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status,
			     const char *content_type, char *body, size_t len, bool must_free)
{
	struct MHD_Response *resp;
	enum MHD_Result r;

	resp = MHD_create_response_from_buffer(
		len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result reply_static(struct MHD_Connection *conn, unsigned int status,
				    const char *text)
{
	return reply(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text), false);
}

static enum MHD_Result serve_metrics(struct loupe_metrics *m, struct MHD_Connection *conn)
{
	struct loupe_metrics_snapshot snap;
	struct loupe_metrics_rule_hits *rules = NULL;
	char *text;
	size_t len;
	int err = 0;

	/* the rules too are copied: the next publish may move them */
	pthread_mutex_lock(&m->lock);
	snap = m->snap;
	if (snap.n_rule_hits) {
		rules = malloc(snap.n_rule_hits * sizeof(*rules));
		if (rules)
			memcpy(rules, snap.rule_hits, snap.n_rule_hits * sizeof(*rules));
		else
			err = -ENOMEM;
	}
	pthread_mutex_unlock(&m->lock);
	snap.rule_hits = rules;
	if (!err)
		err = loupe_metrics_format(&snap, m->version, &text, &len);
	free(rules);
	if (err)
		return reply_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return reply(conn, MHD_HTTP_OK, LOUPE_METRICS_CONTENT_TYPE, text, len, true);
}

static enum MHD_Result serve_healthz(struct loupe_metrics *m, struct MHD_Connection *conn)
{
	uint64_t age, now = now_ns();
	char *text;
	int len;

	pthread_mutex_lock(&m->lock);
	age = now > m->heartbeat_ns ? now - m->heartbeat_ns : 0;
	pthread_mutex_unlock(&m->lock);
	if (age <= m->heartbeat_timeout_ns)
		return reply_static(conn, MHD_HTTP_OK, "ok");
	len = asprintf(&text, "unhealthy: no main loop heartbeat for %.1f s\n", (double)age / 1e9);
	if (len < 0)
		return reply_static(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy\n");
	return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", text,
		     (size_t)len, true);
}

static enum MHD_Result serve_readyz(struct loupe_metrics *m, struct MHD_Connection *conn)
{
	bool ready;

	pthread_mutex_lock(&m->lock);
	ready = m->ready;
	pthread_mutex_unlock(&m->lock);
	if (ready)
		return reply_static(conn, MHD_HTTP_OK, "ok");
	return reply_static(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
}

static enum MHD_Result metrics_handle(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size,
				      void **req_cls)
{
	static int first_call_done;
	struct loupe_metrics *m = cls;
	bool get;

	/* the first call only announces the request; a body, if any, is read and discarded */
	if (!*req_cls) {
		*req_cls = &first_call_done;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;
		return MHD_YES;
	}

	get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	if (strcmp(url, "/metrics") && strcmp(url, "/healthz") && strcmp(url, "/readyz"))
		return reply_static(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (!get)
		return reply_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/metrics") == 0)
		return serve_metrics(m, conn);
	if (strcmp(url, "/healthz") == 0)
		return serve_healthz(m, conn);
	return serve_readyz(m, conn);
}

static int listen_on(const struct sockaddr_storage *ss, socklen_t len, uint16_t *ret_port)
{
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	int fd, one = 1, err;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* a restarted agent rebinds while the old one's connections sit in TIME_WAIT */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)ss, len) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen)) {
		err = -errno;
		goto fail;
	}
	*ret_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						      : ((struct sockaddr_in *)&bound)->sin_port);
	return fd;
fail:
	close(fd);
	return err;
}

int loupe_metrics_start(const struct loupe_metrics_opts *opts, struct loupe_metrics **ret_m)
{
	sigset_t all, old;
	struct sockaddr_storage ss;
	struct loupe_metrics *m;
	socklen_t len;
	int fd, err;

	if (!opts || !opts->addr)
		return -EINVAL;
	err = loupe_metrics_parse_addr(opts->addr, &ss, &len);
	if (err)
		return err;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	snprintf(m->version, sizeof(m->version), "%s", opts->version ? opts->version : "unknown");
	m->heartbeat_timeout_ns =
		(uint64_t)(opts->heartbeat_timeout_ms ? opts->heartbeat_timeout_ms
						      : LOUPE_METRICS_HEARTBEAT_TIMEOUT_MS) *
		1000000ULL;
	m->heartbeat_ns = now_ns();

	fd = listen_on(&ss, len, &m->port);
	if (fd < 0) {
		err = fd;
		goto fail;
	}
	/* the server thread inherits the mask: signals stay with the agent's signalfd */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	errno = 0;
	m->daemon =
		MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, metrics_handle, m,
				 MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
				 (unsigned int)METRICS_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
				 (unsigned int)METRICS_CONN_TIMEOUT, MHD_OPTION_END);
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!m->daemon) {
		close(fd);
		err = err ? -err : -EIO;
		goto fail;
	}
	*ret_m = m;
	return 0;
fail:
	pthread_mutex_destroy(&m->lock);
	free(m);
	return err;
}

uint16_t loupe_metrics_port(const struct loupe_metrics *m)
{
	return m->port;
}

int loupe_metrics_publish(struct loupe_metrics *m, const struct loupe_metrics_snapshot *s)
{
	struct loupe_metrics_rule_hits *rules;
	size_t n = s->n_rule_hits, cap;
	int err = 0;

	pthread_mutex_lock(&m->lock);
	if (n > m->rules_cap) {
		cap = n < 64 ? 64 : n;
		rules = realloc(m->rules, cap * sizeof(*rules));
		if (rules) {
			m->rules = rules;
			m->rules_cap = cap;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err) {
		m->snap = *s;
		if (n)
			memcpy(m->rules, s->rule_hits, n * sizeof(*m->rules));
	} else {
		/* the figures without the rules that no longer fit: the old rules stay */
		n = m->snap.n_rule_hits;
		m->snap = *s;
		m->snap.n_rule_hits = n;
	}
	m->snap.rule_hits = m->rules;
	pthread_mutex_unlock(&m->lock);
	return err;
}

void loupe_metrics_heartbeat(struct loupe_metrics *m)
{
	uint64_t now = now_ns();

	pthread_mutex_lock(&m->lock);
	m->heartbeat_ns = now;
	pthread_mutex_unlock(&m->lock);
}

void loupe_metrics_set_ready(struct loupe_metrics *m, bool ready)
{
	pthread_mutex_lock(&m->lock);
	m->ready = ready;
	pthread_mutex_unlock(&m->lock);
}

struct loupe_metrics *loupe_metrics_stop(struct loupe_metrics *m)
{
	if (!m)
		return NULL;
	MHD_stop_daemon(m->daemon); /* closes the listening socket too */
	pthread_mutex_destroy(&m->lock);
	free(m->rules);
	free(m);
	return NULL;
}
