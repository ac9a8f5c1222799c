// SPDX-License-Identifier: Apache-2.0
/*
 * loupe-controller: flags (each also a LOUPE_* variable), the policy store, the JSON-lines
 * output, the gRPC server and its services, the watched directory (inotify), /metrics. One
 * loop: the completion queue, polled with a 100 ms bound, is the loop; signals only set flags
 * and inotify is read without blocking on each turn (nothing else needs waking sooner). The
 * only module of the controller that decides what to log at start and stop.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "output.h"
#include "server.h"
#include "service.h"
#include "store.h"

#define CONTROLLER_VERSION "0.1.0"

enum opt_id {
	O_LISTEN,
	O_UNIX_SOCKET,
	O_TLS_CERT,
	O_TLS_KEY,
	O_TLS_CLIENT_CA,
	O_TOKEN_FILE,
	O_INSECURE,
	O_STORE_DIR,
	O_WATCH_DIR,
	O_HISTORY,
	O_OUTPUT,
	O_OUTPUT_MAX_SIZE,
	O_OUTPUT_BACKUPS,
	O_METRICS_ADDR,
	O_LOG_LEVEL,
	O_SUB_QUEUE,
	O_MAX,
};

static const struct {
	const char *flag, *env, *def;
	int has_arg;
} opts[O_MAX] = {
	[O_LISTEN] = { "listen", "LOUPE_LISTEN", "0.0.0.0:9760", required_argument },
	[O_UNIX_SOCKET] = { "unix-socket", "LOUPE_UNIX_SOCKET", "/run/loupe/controller.sock",
			    required_argument },
	[O_TLS_CERT] = { "tls-cert", "LOUPE_TLS_CERT", "", required_argument },
	[O_TLS_KEY] = { "tls-key", "LOUPE_TLS_KEY", "", required_argument },
	[O_TLS_CLIENT_CA] = { "tls-client-ca", "LOUPE_TLS_CLIENT_CA", "", required_argument },
	[O_TOKEN_FILE] = { "token-file", "LOUPE_TOKEN_FILE", "", required_argument },
	[O_INSECURE] = { "insecure", "LOUPE_INSECURE", "false", optional_argument },
	[O_STORE_DIR] = { "store-dir", "LOUPE_STORE_DIR", "/var/lib/loupe/controller",
			  required_argument },
	[O_WATCH_DIR] = { "watch-dir", "LOUPE_WATCH_DIR", "", required_argument },
	[O_HISTORY] = { "history", "LOUPE_HISTORY", "100000", required_argument },
	[O_OUTPUT] = { "output", "LOUPE_OUTPUT", "-", required_argument },
	[O_OUTPUT_MAX_SIZE] = { "output-max-size", "LOUPE_OUTPUT_MAX_SIZE", "100M",
				required_argument },
	[O_OUTPUT_BACKUPS] = { "output-backups", "LOUPE_OUTPUT_BACKUPS", "5", required_argument },
	[O_METRICS_ADDR] = { "metrics-addr", "LOUPE_METRICS_ADDR", "127.0.0.1:9761",
			     required_argument },
	[O_LOG_LEVEL] = { "log-level", "LOUPE_LOG_LEVEL", "info", required_argument },
	[O_SUB_QUEUE] = { "subscriber-queue", "LOUPE_SUBSCRIBER_QUEUE", "8192", required_argument },
};

static const char usage[] =
	"Usage: loupe-controller [OPTION]...\n"
	"Keeps loupe's policies, pushes them to every agent, collects the agents' events and\n"
	"serves them (gRPC), and writes them as JSON lines.\n"
	"\n"
	"Every option can also be set through the environment variable shown; the option wins.\n"
	"\n"
	"  --listen=ADDR:PORT        gRPC on TCP, TLS unless --insecure; \"\" turns it off\n"
	"                            (LOUPE_LISTEN; default: 0.0.0.0:9760)\n"
	"  --unix-socket=PATH        gRPC on a local socket, plaintext, mode 0660, no token\n"
	"                            asked; \"\" turns it off (LOUPE_UNIX_SOCKET;\n"
	"                            default: /run/loupe/controller.sock)\n"
	"  --tls-cert=FILE           the controller's certificate, PEM (LOUPE_TLS_CERT)\n"
	"  --tls-key=FILE            its private key, PEM (LOUPE_TLS_KEY)\n"
	"  --tls-client-ca=FILE      mutual TLS: agents must present a certificate this CA\n"
	"                            signed (LOUPE_TLS_CLIENT_CA)\n"
	"  --token-file=FILE         bearer token the policy and observer services require on\n"
	"                            TCP (LOUPE_TOKEN_FILE)\n"
	"  --insecure[=BOOL]         plaintext TCP (LOUPE_INSECURE; default: false)\n"
	"  --store-dir=DIR           the durable policy store (LOUPE_STORE_DIR;\n"
	"                            default: /var/lib/loupe/controller)\n"
	"  --watch-dir=DIR           a read-only directory of policy files (a mounted\n"
	"                            ConfigMap), merged in and followed (LOUPE_WATCH_DIR)\n"
	"  --history=N               events kept in memory for GetEvents, 0..100000000\n"
	"                            (LOUPE_HISTORY; default: 100000)\n"
	"  --output=PATH             events as JSON lines: - for stdout, a file, or \"\" for\n"
	"                            none (LOUPE_OUTPUT; default: -)\n"
	"  --output-max-size=SIZE    rotate the file before it exceeds SIZE; K, M, G; 0 never\n"
	"                            (LOUPE_OUTPUT_MAX_SIZE; default: 100M)\n"
	"  --output-backups=N        rotated files kept, 0..100 (LOUPE_OUTPUT_BACKUPS;\n"
	"                            default: 5)\n"
	"  --metrics-addr=ADDR:PORT  /metrics, /healthz, /readyz; \"\" or off disables\n"
	"                            (LOUPE_METRICS_ADDR; default: 127.0.0.1:9761)\n"
	"  --subscriber-queue=N      events that may wait for one GetEvents stream before it is\n"
	"                            sampled (LOUPE_SUBSCRIBER_QUEUE; default: 8192)\n"
	"  --log-level=LEVEL         error, warn, info or debug (LOUPE_LOG_LEVEL; default: info)\n"
	"  -h, --help                print this help and exit\n"
	"  -V, --version             print the version and exit\n"
	"\n"
	"Exit status: 0 on success, 1 on a runtime failure, 2 on a usage error.\n";

struct cfg {
	const char *v[O_MAX];
	bool insecure;
	uint64_t history, output_max, output_backups, sub_queue;
	char *token;
};

static volatile sig_atomic_t stop_sig, hup_sig;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		hup_sig = 1;
	else
		stop_sig = sig;
}

static void grpc_log(int severity, const char *message)
{
	loupe_log(severity >= 2 ? LOUPE_LOG_WARN : LOUPE_LOG_DEBUG, "grpc", "detail=\"%s\"",
		  message);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loupe-controller: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'loupe-controller --help'.\n");
	return 2;
}

static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	else if (*end == 'g' || *end == 'G')
		v <<= 30, end++;
	if (*end == 'i')
		end++;
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_bool(const char *s, bool *ret)
{
	if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") ||
	    !strcasecmp(s, "on"))
		*ret = true;
	else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") ||
		 !strcasecmp(s, "off"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_cfg(int argc, char **argv, struct cfg *c)
{
	struct option lo[O_MAX + 3];
	const char *flag_v[O_MAX] = { 0 };
	int opt, level;

	for (int i = 0; i < O_MAX; i++)
		lo[i] = (struct option){ opts[i].flag, opts[i].has_arg, NULL, 256 + i };
	lo[O_MAX] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[O_MAX + 1] = (struct option){ "version", no_argument, NULL, 'V' };
	lo[O_MAX + 2] = (struct option){ NULL, 0, NULL, 0 };
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:hV", lo, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage, stdout);
			return 0;
		}
		if (opt == 'V') {
			printf("loupe-controller %s\n", CONTROLLER_VERSION);
			return 0;
		}
		if (opt >= 256 && opt < 256 + O_MAX) {
			flag_v[opt - 256] = optarg ? optarg : "true";
			continue;
		}
		if (opt == ':')
			return usage_error("option %s needs a value.", argv[optind - 1]);
		return usage_error("unknown option %s.", argv[optind - 1]);
	}
	if (optind < argc)
		return usage_error("unexpected argument \"%s\": options only.", argv[optind]);
	for (int i = 0; i < O_MAX; i++) {
		const char *env = getenv(opts[i].env);

		/* an empty variable counts as unset, except where "" means off */
		if (flag_v[i])
			c->v[i] = flag_v[i];
		else if (env && (env[0] || i == O_UNIX_SOCKET || i == O_LISTEN || i == O_OUTPUT))
			c->v[i] = env;
		else
			c->v[i] = opts[i].def;
	}
	if (parse_bool(c->v[O_INSECURE], &c->insecure))
		return usage_error("--insecure \"%s\" must be true or false.", c->v[O_INSECURE]);
	if (parse_size(c->v[O_HISTORY], &c->history) || c->history > 100000000)
		return usage_error("--history \"%s\" must be a number from 0 to 100000000.",
				   c->v[O_HISTORY]);
	if (parse_size(c->v[O_SUB_QUEUE], &c->sub_queue) || c->sub_queue < 16 ||
	    c->sub_queue > 10000000)
		return usage_error("--subscriber-queue \"%s\" must be a number from 16 to "
				   "10000000.",
				   c->v[O_SUB_QUEUE]);
	if (parse_size(c->v[O_OUTPUT_MAX_SIZE], &c->output_max) ||
	    (c->output_max && c->output_max < 4096))
		return usage_error("--output-max-size \"%s\" must be 0 or a size of at least 4K "
				   "(K, M, G suffixes).",
				   c->v[O_OUTPUT_MAX_SIZE]);
	if (parse_size(c->v[O_OUTPUT_BACKUPS], &c->output_backups) || c->output_backups > 100)
		return usage_error("--output-backups \"%s\" must be a number from 0 to 100.",
				   c->v[O_OUTPUT_BACKUPS]);
	level = loupe_log_level_parse(c->v[O_LOG_LEVEL]);
	if (level < 0)
		return usage_error("--log-level \"%s\" must be error, warn, info or debug.",
				   c->v[O_LOG_LEVEL]);
	loupe_log_max = (enum loupe_log_level)level;
	if (c->v[O_LISTEN][0] && !c->insecure && (!c->v[O_TLS_CERT][0] || !c->v[O_TLS_KEY][0]))
		return usage_error("TCP (--listen %s) needs --tls-cert and --tls-key, or "
				   "--insecure for plaintext, or --listen \"\" for the unix "
				   "socket only.",
				   c->v[O_LISTEN]);
	if (!c->v[O_LISTEN][0] && !c->v[O_UNIX_SOCKET][0])
		return usage_error("--listen and --unix-socket are both off: nothing to serve.");
	if (!c->v[O_STORE_DIR][0] || c->v[O_STORE_DIR][0] != '/')
		return usage_error("--store-dir \"%s\" must be an absolute path.",
				   c->v[O_STORE_DIR]);
	if (c->v[O_TOKEN_FILE][0]) {
		char *t = loupe_rpc_read_file(c->v[O_TOKEN_FILE], 4096);
		size_t n;

		if (!t) {
			fprintf(stderr, "loupe-controller: cannot read --token-file %s: %s\n",
				c->v[O_TOKEN_FILE], strerror(errno));
			return 1;
		}
		n = strlen(t);
		while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
			t[--n] = '\0';
		if (!n) {
			fprintf(stderr, "loupe-controller: --token-file %s is empty\n",
				c->v[O_TOKEN_FILE]);
			free(t);
			return 1;
		}
		c->token = t;
	}
	return -1;
}

static void publish(struct loupe_http *http, struct loupe_service *svc,
		    struct loupe_rpc_server *srv, struct loupe_store *store,
		    struct loupe_output *out)
{
	struct loupe_service_stats s;
	struct loupe_rpc_server_stats r;
	struct loupe_output_stats o = { 0 };
	unsigned int count;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (!http)
		return;
	loupe_service_get_stats(svc, &s);
	loupe_rpc_server_get_stats(srv, &r);
	if (out)
		loupe_output_get_stats(out, &o);
	loupe_store_bundle(store, NULL, &count);
	f = open_memstream(&buf, &len);
	if (!f)
		return;
#define M(name, type, help, val)                                                                   \
	fprintf(f,                                                                                 \
		"# HELP loupe_controller_" name " " help "\n# TYPE loupe_controller_" name         \
		" " type "\nloupe_controller_" name " %" PRIu64 "\n",                              \
		(uint64_t)(val))
	M("agents_connected", "gauge", "Agents with a stream open.", s.agents_connected);
	M("agents_known", "gauge", "Agents seen since start.", s.agents_known);
	M("events_received_total", "counter", "Events received from agents.", s.events_in);
	M("events_duplicate_total", "counter", "Events received again and dropped.",
	  s.events_duplicate);
	M("events_malformed_total", "counter", "Events that did not decode.", s.events_malformed);
	M("events_written_total", "counter", "Events written to the JSON output.",
	  s.events_written);
	M("history_events", "gauge", "Events in the in-memory history.", s.history_events);
	M("subscribers", "gauge", "GetEvents streams open.", s.subscribers);
	M("subscriber_missed_total", "counter", "Events a slow subscriber did not get.",
	  s.subscriber_missed);
	M("subscribers_cut_total", "counter", "Subscribers cut off for not reading.",
	  s.subscribers_cut);
	M("policy_revision", "gauge", "Revision of the policy set.", loupe_store_revision(store));
	M("policies", "gauge", "Policies in the set.", count);
	M("policy_pushes_total", "counter", "Bundles sent to agents.", s.pushes);
	M("policy_acks_total", "counter", "Revisions agents put in force.", s.acks_ok);
	M("policy_refusals_total", "counter", "Revisions agents refused.", s.acks_refused);
	M("rpc_calls_total", "counter", "gRPC calls accepted.", r.calls);
	M("rpc_refused_auth_total", "counter", "Calls refused: token or certificate.",
	  r.refused_auth);
	M("rpc_refused_size_total", "counter", "Messages refused: over the size limit.",
	  r.refused_size);
	M("rpc_unimplemented_total", "counter", "Calls to unknown methods.", r.unimplemented);
	M("output_lines_total", "counter", "Lines accepted by the output.", o.lines);
	M("output_errors_total", "counter", "Output write or rotation errors.", o.errors);
	M("output_lines_dropped_total", "counter", "Lines the output dropped.", o.lines_dropped);
#undef M
	fprintf(f,
		"# HELP loupe_controller_build_info Version.\n# TYPE loupe_controller_build_info "
		"gauge\nloupe_controller_build_info{version=\"%s\"} 1\n",
		CONTROLLER_VERSION);
	fclose(f);
	loupe_http_publish(http, buf);
	free(buf);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int watch_add(int ifd, const char *dir)
{
	return inotify_add_watch(ifd, dir,
				 IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
					 IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF |
					 IN_MOVE_SELF);
}

int main(int argc, char **argv)
{
	struct cfg c = { 0 };
	struct loupe_store *store = NULL;
	struct loupe_output *out = NULL;
	struct loupe_service *svc = NULL;
	struct loupe_rpc_server *srv = NULL;
	struct loupe_http *http = NULL;
	const struct loupe_rpc_method *methods;
	size_t n_methods;
	char err[2048] = "", *cursor = NULL;
	int ifd = -1, wd = -1, r, status = EXIT_FAILURE;
	int64_t next_tick, reload_at = 0;
	struct sigaction sa;

	r = parse_cfg(argc, argv, &c);
	if (r >= 0)
		return r;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	loupe_rpc_set_log(grpc_log);

	r = loupe_store_open(c.v[O_STORE_DIR], c.v[O_WATCH_DIR], &store, err, sizeof(err));
	if (r) {
		loupe_log(LOUPE_LOG_ERROR, "cannot open the policy store", "error=\"%s\"", err);
		goto out;
	}
	if (loupe_store_watch_error(store))
		loupe_log(LOUPE_LOG_ERROR, "the watched directory is not used",
			  "dir=%s error=\"%s\"", c.v[O_WATCH_DIR], loupe_store_watch_error(store));
	if (c.v[O_OUTPUT][0] && strcmp(c.v[O_OUTPUT], "off")) {
		r = loupe_output_open(c.v[O_OUTPUT], c.output_max, (unsigned int)c.output_backups,
				      &out);
		if (r) {
			loupe_log(LOUPE_LOG_ERROR, "cannot open the output",
				  "output=%s error=\"%s\"", c.v[O_OUTPUT], strerror(-r));
			goto out;
		}
	}
	if (asprintf(&cursor, "%s/cursor", c.v[O_STORE_DIR]) < 0)
		goto out;
	{
		struct loupe_service_opts so = {
			.store = store,
			.output = out,
			.output_path = out && strcmp(c.v[O_OUTPUT], "-") ? c.v[O_OUTPUT] : NULL,
			.cursor_path = cursor,
			.history = c.history,
			.subscriber_queue = c.sub_queue,
			.cutoff_ms = 30000,
		};

		r = loupe_service_new(&so, &svc, err, sizeof(err));
		if (r) {
			loupe_log(LOUPE_LOG_ERROR, "cannot start", "error=\"%s\"", err);
			goto out;
		}
	}
	methods = loupe_service_methods(&n_methods);
	{
		struct loupe_rpc_server_opts ro = {
			.listen = c.v[O_LISTEN],
			.insecure = c.insecure,
			.tls_cert = c.v[O_TLS_CERT],
			.tls_key = c.v[O_TLS_KEY],
			.tls_client_ca = c.v[O_TLS_CLIENT_CA],
			.unix_socket = c.v[O_UNIX_SOCKET],
			.token = c.token,
		};

		r = loupe_rpc_server_start(&ro, methods, n_methods, svc, &srv, err, sizeof(err));
		if (r) {
			loupe_log(LOUPE_LOG_ERROR, "cannot serve", "error=\"%s\"", err);
			goto out;
		}
	}
	if (c.v[O_METRICS_ADDR][0] && strcmp(c.v[O_METRICS_ADDR], "off")) {
		r = loupe_http_start(c.v[O_METRICS_ADDR], &http);
		if (r) {
			loupe_log(LOUPE_LOG_ERROR, "cannot serve metrics", "addr=%s error=\"%s\"",
				  c.v[O_METRICS_ADDR], strerror(-r));
			goto out;
		}
	}
	if (c.v[O_WATCH_DIR][0]) {
		ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		wd = ifd >= 0 ? watch_add(ifd, c.v[O_WATCH_DIR]) : -1;
		if (wd < 0)
			loupe_log(LOUPE_LOG_WARN, "cannot watch the directory yet; retrying",
				  "dir=%s error=\"%s\"", c.v[O_WATCH_DIR], strerror(errno));
	}
	if (http)
		loupe_http_set_ready(http, true);
	loupe_log(LOUPE_LOG_INFO, "ready",
		  "listen=%s port=%d tls=%s mtls=%s token=%s unix_socket=%s store=%s "
		  "revision=%" PRIu64 " output=%s history=%" PRIu64,
		  c.v[O_LISTEN][0] ? c.v[O_LISTEN] : "off", loupe_rpc_server_port(srv),
		  c.insecure ? "no" : "yes", c.v[O_TLS_CLIENT_CA][0] && !c.insecure ? "yes" : "no",
		  c.token ? "yes" : "no", c.v[O_UNIX_SOCKET][0] ? c.v[O_UNIX_SOCKET] : "off",
		  c.v[O_STORE_DIR], loupe_store_revision(store), out ? c.v[O_OUTPUT] : "off",
		  c.history);

	next_tick = mono_ms() + 1000;
	while (!stop_sig) {
		loupe_rpc_server_poll(srv, 100);
		if (ifd >= 0) {
			char buf[4096] __attribute__((aligned(8)));
			ssize_t n = read(ifd, buf, sizeof(buf));

			if (n > 0) {
				const struct inotify_event *ie = (const void *)buf;

				if (ie->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
					wd = -1;
				/* a ConfigMap update is several renames: wait for it to settle */
				reload_at = mono_ms() + 200;
			}
			if (wd < 0 && mono_ms() >= next_tick - 10)
				wd = watch_add(ifd, c.v[O_WATCH_DIR]);
		}
		if (hup_sig) {
			hup_sig = 0;
			reload_at = mono_ms();
		}
		if (reload_at && mono_ms() >= reload_at) {
			bool changed = false;

			reload_at = 0;
			if (loupe_store_reload_watched(store, &changed, err, sizeof(err)))
				loupe_log(LOUPE_LOG_ERROR,
					  "the watched directory is refused; the last good version "
					  "stays",
					  "dir=%s error=\"%s\"", c.v[O_WATCH_DIR], err);
			else if (changed) {
				loupe_log(LOUPE_LOG_INFO, "watched directory changed",
					  "revision=%" PRIu64, loupe_store_revision(store));
				loupe_service_push_all(svc);
			}
		}
		if (mono_ms() >= next_tick) {
			next_tick += 1000;
			if (out && loupe_output_flush(out) < 0)
				loupe_log(LOUPE_LOG_WARN, "cannot write events", NULL);
			loupe_service_tick(svc);
			if (http) {
				loupe_http_heartbeat(http);
				publish(http, svc, srv, store, out);
			}
		}
	}
	loupe_log(LOUPE_LOG_INFO, "stopping", "signal=%d", (int)stop_sig);
	status = EXIT_SUCCESS;
out:
	http = loupe_http_stop(http);
	srv = loupe_rpc_server_stop(srv);
	if (out)
		loupe_output_flush(out);
	svc = loupe_service_free(svc);
	out = loupe_output_close(out);
	store = loupe_store_close(store);
	if (ifd >= 0)
		close(ifd);
	free(cursor);
	free(c.token);
	return status;
}
