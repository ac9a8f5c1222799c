// SPDX-License-Identifier: Apache-2.0
/*
 * A synthetic agent for the controller benchmark: the real agent client (rpc/agent_client.c:
 * the same buffering, batching, acknowledgements and reconnects as loupe-agent) fed with N
 * generated events as fast as it takes them, without a datapath. Prints when the controller
 * has acknowledged them all. Not a test: it passes nothing and fails nothing.
 *
 *   bench-controller-load --controller ADDR --node NAME --events N --state-dir DIR [--insecure]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_client.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_policy(void *ctx, const char *json, size_t len, uint64_t revision, char *err,
		     size_t errsize)
{
	fprintf(stderr, "policy revision %" PRIu64 " (%zu bytes)\n", revision, len);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "controller", required_argument, NULL, 'c' },
		{ "node", required_argument, NULL, 'n' },
		{ "events", required_argument, NULL, 'e' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "insecure", no_argument, NULL, 'i' },
		{ "buffer", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 't' },
		{ "tls-ca", required_argument, NULL, 'A' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	struct loupe_rpc_agent_opts o = { .version = "bench", .on_policy = on_policy };
	struct loupe_rpc_agent_stats st;
	struct loupe_rpc_agent *a;
	struct loupe_event ev;
	uint64_t n = 100000, queued = 0;
	double t0, t_sent, t_acked, timeout = 120;
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.chan.target = optarg;
			break;
		case 'n':
			o.node = optarg;
			break;
		case 'e':
			n = strtoull(optarg, NULL, 10);
			break;
		case 's':
			o.state_dir = optarg;
			break;
		case 'i':
			o.chan.insecure = true;
			break;
		case 'b':
			o.event_buffer = strtoull(optarg, NULL, 10);
			break;
		case 't':
			timeout = strtod(optarg, NULL);
			break;
		case 'A':
			o.chan.tls_ca = optarg;
			break;
		case 'C':
			o.chan.tls_cert = optarg;
			break;
		case 'K':
			o.chan.tls_key = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!o.chan.target || !o.node || !o.state_dir) {
		fprintf(stderr, "need --controller, --node and --state-dir\n");
		return 2;
	}
	if (!o.event_buffer)
		o.event_buffer = 1000000;
	if (loupe_rpc_agent_start(&o, &a, err, sizeof(err))) {
		fprintf(stderr, "start: %s\n", err);
		return 1;
	}
	loupe_rpc_agent_process(a);
	memset(&ev, 0, sizeof(ev));
	snprintf(ev.node, sizeof(ev.node), "%s", o.node);
	ev.kind = LOUPE_EV_HTTP_REQUEST;
	ev.direction = 0;
	ev.protocol = 6;
	ev.has_ip = true;
	ev.saddr[10] = ev.saddr[11] = ev.daddr[10] = ev.daddr[11] = 0xff;
	ev.saddr[12] = 198, ev.saddr[13] = 18, ev.saddr[14] = 100, ev.saddr[15] = 2;
	ev.daddr[12] = 198, ev.daddr[13] = 18, ev.daddr[14] = 100, ev.daddr[15] = 3;
	ev.sport = 40000;
	ev.dport = 80;
	ev.ifindex = 7;
	snprintf(ev.ifname, sizeof(ev.ifname), "veth0bench");
	snprintf(ev.http.method, sizeof(ev.http.method), "GET");
	snprintf(ev.http.path, sizeof(ev.http.path), "/v1/chat/completions?model=demo");
	snprintf(ev.http.host, sizeof(ev.http.host), "api.example.test");
	t0 = now_s();
	while (queued < n) {
		struct timespec ts;

		loupe_rpc_agent_get_stats(a, &st);
		/* keep what waits for an acknowledgement bounded: no event is dropped */
		if (st.buffered >= o.event_buffer - 8192) {
			usleep(200);
			continue;
		}
		for (int i = 0; i < 4096 && queued < n; i++, queued++) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ev.time_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
			ev.sport = (uint16_t)(40000 + queued % 20000);
			loupe_rpc_agent_send(a, &ev);
		}
		loupe_rpc_agent_process(a);
	}
	t_sent = now_s();
	for (;;) {
		loupe_rpc_agent_get_stats(a, &st);
		if (st.events_acked >= n || now_s() - t0 > timeout)
			break;
		loupe_rpc_agent_process(a);
		usleep(1000);
	}
	t_acked = now_s();
	printf("node=%s events=%" PRIu64 " acked=%" PRIu64 " dropped=%" PRIu64
	       " queue_s=%.3f acked_s=%.3f rate=%.0f/s\n",
	       o.node, n, st.events_acked, st.events_dropped, t_sent - t0, t_acked - t0,
	       (double)st.events_acked / (t_acked - t0));
	loupe_rpc_agent_stop(a, 1000);
	return st.events_acked >= n ? 0 : 1;
}
