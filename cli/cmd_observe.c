// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl observe: the cluster's events from the controller (ObserverService GetEvents),
 * past ones from its history and, with --follow, live ones; as a table for people or JSON
 * lines (proto3 JSON, the same as the controller's output). What the controller could not send
 * (a slow reader) is said on stderr. Not for captures (replay).
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "ctl.h"
#include "loupe/v1/observer.pb-c.h"
#include "pbjson.h"

#define MAX_FILTERS 32

int loupe_cmd_observe(int argc, char **argv);
void loupe_cmd_observe_usage(FILE *out);

static volatile sig_atomic_t interrupted;

void loupe_cmd_observe_usage(FILE *out)
{
	fprintf(out,
		"usage: loupectl observe [--follow] [--kind KIND]... [--node NODE]... [--pod "
		"POD]...\n"
		"                        [--verdict allow|deny|audit] [--policy NAME]\n"
		"                        [--since DURATION|TIME] [--last N] [-o table|json]\n"
		"\n"
		"Shows events from the controller: the last 20 by default (--last), those since a\n"
		"time (--since 10m, --since 2026-11-27T08:00:00Z), then new ones as they come "
		"with\n"
		"--follow (Ctrl-C stops). Filters of different kinds must all match; repeated "
		"ones\n"
		"any. --pod is a pod address, an interface name or namespace/name.\n"
		"\n"
		"  -f, --follow            stay and show new events\n"
		"      --kind KIND         FLOW_START, FLOW_END, HTTP_REQUEST, TLS_CLIENT_HELLO,\n"
		"                          DNS_QUERY, POLICY_VERDICT, REWRITE, RATE_LIMITED, LOST, "
		"AGENT\n"
		"      --node NODE         events of that node\n"
		"      --pod POD           events of that pod\n"
		"      --verdict ACTION    policy verdicts with that action\n"
		"      --policy NAME       policy verdicts of that policy\n"
		"      --since WHEN        events at or after: a duration ago or an RFC 3339 time\n"
		"      --last N            the last N matching events of the history (default 20;\n"
		"                          0 with --follow: only new ones)\n"
		"  -o, --output FORMAT     table (default) or json (one event per "
		"line)\n" LOUPE_CTL_USAGE "  -h, --help              this help\n");
}

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int parse_when(const char *s, Google__Protobuf__Timestamp *ts)
{
	struct timespec now;
	struct tm tm;
	char *end;
	double v;

	clock_gettime(CLOCK_REALTIME, &now);
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end && (*end == 'Z' || *end == '\0')) {
		ts->seconds = timegm(&tm);
		ts->nanos = 0;
		return 0;
	}
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	if (!strcmp(end, "s") || !*end)
		;
	else if (!strcmp(end, "m"))
		v *= 60;
	else if (!strcmp(end, "h"))
		v *= 3600;
	else if (!strcmp(end, "d"))
		v *= 86400;
	else
		return -EINVAL;
	ts->seconds = now.tv_sec - (int64_t)v;
	ts->nanos = 0;
	return 0;
}

static int enum_value(const ProtobufCEnumDescriptor *d, const char *name)
{
	const ProtobufCEnumValue *v;
	char up[64];
	size_t i;

	for (i = 0; name[i] && i < sizeof(up) - 1; i++)
		up[i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
	up[i] = '\0';
	v = protobuf_c_enum_descriptor_get_value_by_name(d, up);
	return v ? v->value : -1;
}

struct obs {
	bool json;
	uint64_t shown;
};

static void endpoint(char *buf, size_t size, const char *ip, uint32_t port)
{
	if (!ip || !ip[0])
		snprintf(buf, size, "-");
	else if (port)
		snprintf(buf, size, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
	else
		snprintf(buf, size, "%s", ip);
}

static void print_row(const Loupe__V1__Event *e)
{
	const ProtobufCEnumValue *kv =
		protobuf_c_enum_descriptor_get_value(&loupe__v1__event_kind__descriptor, e->kind);
	char when[32] = "-", src[80], dst[80], detail[512] = "";
	struct tm tm;

	if (e->time) {
		time_t t = (time_t)e->time->seconds;

		gmtime_r(&t, &tm);
		snprintf(when, sizeof(when), "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min,
			 tm.tm_sec, e->time->nanos / 1000000);
	}
	endpoint(src, sizeof(src), e->src_ip, e->src_port);
	endpoint(dst, sizeof(dst), e->dst_ip, e->dst_port);
	if (e->http)
		snprintf(detail, sizeof(detail), "%s %s%s", e->http->method, e->http->host,
			 e->http->path);
	else if (e->tls)
		snprintf(detail, sizeof(detail), "sni=%s", e->tls->sni);
	else if (e->dns)
		snprintf(detail, sizeof(detail), "%s type=%u", e->dns->qname, e->dns->qtype);
	else if (e->verdict) {
		const ProtobufCEnumValue *av = protobuf_c_enum_descriptor_get_value(
			&loupe__v1__verdict_action__descriptor, e->verdict->action);

		snprintf(detail, sizeof(detail), "%s %s/%s", av ? av->name : "?",
			 e->verdict->policy ? e->verdict->policy : "",
			 e->verdict->rule ? e->verdict->rule : "");
	} else if (e->lost)
		snprintf(detail, sizeof(detail), "%llu events lost",
			 (unsigned long long)e->lost->count);
	else if (e->flow && e->kind == LOUPE__V1__EVENT_KIND__FLOW_END)
		snprintf(detail, sizeof(detail), "out %llu B in %llu B",
			 (unsigned long long)(e->flow->egress ? e->flow->egress->bytes : 0),
			 (unsigned long long)(e->flow->ingress ? e->flow->ingress->bytes : 0));
	printf("%-12s %-14s %-16s %-8s %-24s -> %-24s %s\n", when, e->node, kv ? kv->name : "?",
	       e->interface ? e->interface->name : "-", src, dst, detail);
}

static int on_response(void *ctx, const uint8_t *data, size_t len)
{
	struct obs *o = ctx;
	Loupe__V1__GetEventsResponse *r = loupe__v1__get_events_response__unpack(NULL, len, data);

	if (!r) {
		fprintf(stderr, "loupectl observe: a response does not decode\n");
		return -1;
	}
	for (size_t i = 0; i < r->n_events; i++) {
		if (o->json) {
			char *s = loupe_pbjson_to_string(&r->events[i]->base);

			if (s)
				printf("%s\n", s);
			free(s);
		} else {
			if (!o->shown)
				printf("%-12s %-14s %-16s %-8s %-24s    %-24s %s\n", "TIME", "NODE",
				       "KIND", "IFACE", "SOURCE", "DESTINATION", "DETAIL");
			print_row(r->events[i]);
		}
		o->shown++;
	}
	if (r->missed)
		fprintf(stderr, "loupectl observe: %s\n",
			r->notice && r->notice[0] ? r->notice : "events were missed");
	fflush(stdout);
	loupe__v1__get_events_response__free_unpacked(r, NULL);
	return 0;
}

int loupe_cmd_observe(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "kind", required_argument, NULL, 'k' },
		{ "node", required_argument, NULL, 'n' },
		{ "pod", required_argument, NULL, 'p' },
		{ "verdict", required_argument, NULL, 'v' },
		{ "policy", required_argument, NULL, 'P' },
		{ "since", required_argument, NULL, 's' },
		{ "last", required_argument, NULL, 'l' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		LOUPE_CTL_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	Loupe__V1__GetEventsRequest req = LOUPE__V1__GET_EVENTS_REQUEST__INIT;
	Loupe__V1__EventFilter f = LOUPE__V1__EVENT_FILTER__INIT;
	Google__Protobuf__Timestamp since = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Loupe__V1__EventKind kinds[MAX_FILTERS];
	char *nodes[MAX_FILTERS], *pods[MAX_FILTERS], msg[2048], *end;
	struct loupe_ctl_conn conn;
	struct loupe_rpc_ctl *ctl;
	struct obs o = { 0 };
	bool last_given = false;
	struct sigaction sa;
	uint8_t *buf;
	size_t len;
	int c, v, st;

	loupe_ctl_conn_init(&conn);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fo:h", opts, NULL)) != -1) {
		if (loupe_ctl_conn_opt(&conn, c, optarg))
			continue;
		switch (c) {
		case 'f':
			req.follow = true;
			break;
		case 'k':
			v = enum_value(&loupe__v1__event_kind__descriptor, optarg);
			if (v <= 0)
				return loupe_cmd_usage_error("observe", "unknown --kind '%s'",
							     optarg);
			if (f.n_kinds == MAX_FILTERS)
				return loupe_cmd_usage_error("observe", "too many --kind");
			kinds[f.n_kinds++] = (Loupe__V1__EventKind)v;
			break;
		case 'n':
			if (f.n_nodes == MAX_FILTERS)
				return loupe_cmd_usage_error("observe", "too many --node");
			nodes[f.n_nodes++] = optarg;
			break;
		case 'p':
			if (f.n_pods == MAX_FILTERS)
				return loupe_cmd_usage_error("observe", "too many --pod");
			pods[f.n_pods++] = optarg;
			break;
		case 'v':
			v = enum_value(&loupe__v1__verdict_action__descriptor, optarg);
			if (v <= 0)
				return loupe_cmd_usage_error(
					"observe", "--verdict takes allow, deny or audit");
			f.verdict = (Loupe__V1__VerdictAction)v;
			break;
		case 'P':
			f.policy = optarg;
			break;
		case 's':
			if (parse_when(optarg, &since))
				return loupe_cmd_usage_error("observe",
							     "--since takes a duration (30s, 10m, "
							     "2h, 1d) or an RFC 3339 "
							     "time (2026-11-27T08:00:00Z)");
			f.since = &since;
			break;
		case 'l':
			errno = 0;
			req.number = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-')
				return loupe_cmd_usage_error("observe", "--last takes a number");
			last_given = true;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "table"))
				return loupe_cmd_usage_error("observe", "-o takes table or json");
			o.json = !strcmp(optarg, "json");
			break;
		case 'h':
			loupe_cmd_observe_usage(stdout);
			return EXIT_SUCCESS;
		default:
			return loupe_cmd_getopt_error("observe", c, argv);
		}
	}
	if (optind < argc)
		return loupe_cmd_usage_error("observe", "unexpected argument '%s'", argv[optind]);
	if (!last_given && !f.since)
		req.number = 20;
	f.kinds = kinds;
	f.nodes = nodes;
	f.pods = pods;
	req.filter = &f;
	len = loupe__v1__get_events_request__get_packed_size(&req);
	buf = malloc(len + 1);
	if (!buf)
		return EXIT_FAILURE;
	loupe__v1__get_events_request__pack(&req, buf);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	ctl = loupe_ctl_connect("observe", &conn);
	if (!ctl) {
		free(buf);
		return EXIT_FAILURE;
	}
	st = loupe_rpc_ctl_stream(ctl, LOUPE_RPC_OBSERVER_EVENTS, buf, len, on_response, &o,
				  &interrupted, msg, sizeof(msg));
	free(buf);
	loupe_rpc_ctl_close(ctl);
	if (st == LOUPE_RPC_OK || (st == LOUPE_RPC_CANCELLED && interrupted)) {
		if (!o.shown && !o.json && !req.follow)
			fprintf(stderr, "No events matched.\n");
		return EXIT_SUCCESS;
	}
	loupe_ctl_print_status("observe", &conn, st, msg);
	return EXIT_FAILURE;
}
