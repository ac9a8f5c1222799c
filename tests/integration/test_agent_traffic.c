// SPDX-License-Identifier: Apache-2.0
/*
 * loupe-agent on live CNI pods against tshark: real curl, dig and openssl s_client traffic
 * from a client pod to a server pod, captured by tcpdump on the client's host-side veth while
 * the agent watches the same veth; the agent's HTTP_REQUEST, DNS_QUERY, TLS_CLIENT_HELLO and
 * FLOW_END events must equal tshark's reading of the capture, field for field and packet for
 * packet. Not for attach, restart or uninstall (test_agent), nor for the parsers' corner cases
 * (tests/bpf, test_replay).
 *
 * The node is a network namespace of its own (LOUPE_PODS_NODE), so the agent sees only this
 * test's pods, and the agent pins into a private bpffs. Names carry the Criterion runner's pid
 * (loupe-tn<pid>, ltt<pid>-, /tmp/loupe-tt-<pid>-*): the runner sweeps them after the run, and
 * a later run sweeps those of runs that died.
 *
 * How the capture is compared, for the client's interface only:
 *  - L7: every row of tshark's reading (the fields and filter of the shared corpus's
 *    gen_expected.sh) matches exactly one agent event with the same addresses, ports and
 *    method/path/host, SNI/ALPN/version or qname/qtype/transport, and no agent event is left;
 *  - flows: the capture's frames, dissected one by one, are summed per conversation (protocol,
 *    pod address and port, peer address and port; a frame from the pod's MAC is pod egress),
 *    and each conversation equals exactly one FLOW_END: packets, bytes (frame.len, the whole
 *    Ethernet frame) and TCP flags per direction. tcpdump and the agent see the same skbs on
 *    the host-side veth: what the pod sends enters there (clsact ingress, POD_EGRESS).
 *  - left out, and why: ARP (not IP: the datapath keeps no flow for it) and ICMPv6 MLD
 *    conversations (the pods' and host sides' reports right after CNI ADD start before the
 *    capture does, so the agent counts packets tcpdump never saw). Other ICMPv6 (neighbour
 *    discovery, caused by the test's own IPv6 traffic) is compared like TCP and UDP.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "jsonget.h"
#include "live.h"
#include "tsv.h"

#define ID_ENV "LOUPE_TEST_TRAFFIC_ID" /* the runner's pid, set once (PRE_ALL) */

/* Deadlines, seconds: every wait has one, none is a fixed sleep. */
#define ATTACH_S 5.0
#define LISTEN_S 10.0
#define CLIENT_S 15.0 /* a backstop: each client is bounded itself (-m 5, +time=2, timeout 5) */
#define FLOWS_S	 15.0 /* idle timeout 1 s, ticks of 1 s: every flow ends within ~2 s */
#define STOP_S	 10.0
#define TOOL_S	 60.0 /* tshark */

/* What the clients make: curl 4 (GET, POST x IPv4, IPv6), dig 2 (UDP, TCP), openssl 2. */
#define WANT_TCP_FLOWS 7
#define WANT_UDP_FLOWS 1

struct pod {
	struct loupe_live_pod pod;
	char mac[18];	      /* eth0 in the pod */
	unsigned int ifindex; /* host_if, in the node */
};

/* loupe_live: the node (loupe-tn<id>), pods (ltt<id>-), temp dir (/tmp/loupe-tt-<id>-*) */
static struct {
	pid_t tcpdump;
	uint64_t listen_ns; /* CLOCK_REALTIME once tcpdump said it listens */
} t;

static struct pod server = { .pod.name = "server" }, client = { .pod.name = "client" };

static void teardown(void);

static const struct loupe_live_names live_names = {
	.id_env = ID_ENV,
	.node = "loupe-tn",
	.pods = "ltt",
	.tmp = "loupe-tt",
	.teardown = teardown,
};

/* ------------------------------------------------------------------ small things */

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ setup and cleanup */

static void teardown(void)
{
	if (t.tcpdump > 0)
		loupe_live_proc_stop(t.tcpdump, SIGKILL, 5);
	t.tcpdump = 0;
	loupe_live_teardown();
	memset(&t, 0, sizeof(t));
}

LOUPE_LIVE_PRE_ALL(&live_names)
LOUPE_LIVE_POST_ALL(&live_names)

static const char *missing_tool(void)
{
	static const char *const tools[] = {
		"/usr/bin/tshark",	 "/usr/bin/tcpdump",   "/usr/bin/curl",
		"/usr/bin/dig",		 "/usr/bin/openssl",   "/usr/bin/python3",
		"/usr/bin/timeout",	 "/usr/lib/cni/ptp",   "/usr/lib/cni/host-local",
		"/usr/lib/cni/loopback", LOUPE_LIVE_AGENT_BIN, LOUPE_LIVE_PODS,
	};

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (access(tools[i], X_OK))
			return tools[i];
	return NULL;
}

static void setup(void)
{
	const char *tool;

	if (geteuid() != 0)
		cr_skip_test("needs root: network namespaces, CNI plugins, bpffs, BPF programs");
	tool = missing_tool();
	if (tool)
		cr_skip_test("%s is missing (tshark, tcpdump, curl, dnsutils, openssl, "
			     "containernetworking-plugins; the agent: make build)",
			     tool);
	loupe_live_setup(&live_names);
}

TestSuite(agent_traffic, .init = setup, .fini = teardown, .timeout = 180);

/* ------------------------------------------------------------------ pods, agent, tcpdump */

/* `scripts/pods up` of both pods at once */
static void pods_up(void)
{
	struct loupe_live_pod *pods[] = { &server.pod, &client.pod };

	loupe_live_pods_up(pods, 2);
}

/* eth0's MAC in the pod, the host side's ifindex in the node */
static void pod_link_info(struct pod *p)
{
	char *argv_mac[] = { "ip", "-n", p->pod.ns, "-o", "link", "show", "dev", "eth0", NULL };
	char *argv_if[] = { "ip",   "-n",  loupe_live.node, "-o", "link",
			    "show", "dev", p->pod.host_if,  NULL };
	char *out, *s;

	out = loupe_live_must_run(argv_mac, "pod-mac", 10);
	s = strstr(out, "link/ether ");
	cr_assert(s && sscanf(s, "link/ether %17s", p->mac) == 1, "%s eth0: %s", p->pod.name, out);
	free(out);
	out = loupe_live_must_run(argv_if, "pod-ifindex", 10);
	cr_assert(sscanf(out, "%u:", &p->ifindex) == 1 && p->ifindex > 0, "%s: %s", p->pod.host_if,
		  out);
	free(out);
}

static void serve(const char *kind, const char *port)
{
	char name[32];

	snprintf(name, sizeof(name), "serve-%s", kind);
	loupe_live_pods_serve("server", kind, port, name);
}

static void agent_start(const char *events)
{
	const struct loupe_live_agent agent = { .events = events,
						.metrics = "off",
						.idle_timeout = "1s" };
	char needle[64];

	loupe_live_agent_start(&agent);
	loupe_live_agent_wait("msg=\"attached\"", 2, ATTACH_S);
	for (int i = 0; i < 2; i++) {
		struct pod *p = i ? &client : &server;

		snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", p->pod.host_if);
		loupe_live_agent_wait(needle, 1, ATTACH_S);
	}
}

static void tcpdump_start(const char *pcap)
{
	char out[PATH_MAX], err[PATH_MAX];
	char *argv[] = {
		"ip", "netns",	    "exec", loupe_live.node,	"tcpdump", "-i", client.pod.host_if,
		"-w", (char *)pcap, "-U",   "--immediate-mode", "-s",	   "0",	 "-p",
		NULL
	};

	loupe_live_tmp_path(out, sizeof(out), "tcpdump.out");
	loupe_live_tmp_path(err, sizeof(err), "tcpdump.err");
	t.tcpdump = loupe_live_proc_start(argv, out, err);
	loupe_live_wait_file(err, "listening on", 1, LISTEN_S, &t.tcpdump, "tcpdump", err);
	t.listen_ns = realtime_ns();
}

/* SIGINT: tcpdump flushes, prints its counts, exits 0; none may be dropped. */
static void tcpdump_stop(void)
{
	char err[PATH_MAX], *log;
	unsigned long dropped = ~0ul;
	const char *s;
	int status;

	status = loupe_live_proc_stop(t.tcpdump, SIGINT, STOP_S);
	t.tcpdump = 0;
	loupe_live_tmp_path(err, sizeof(err), "tcpdump.err");
	log = loupe_live_slurp(err);
	cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "tcpdump: wait status 0x%x after SIGINT; its log:\n%s", status, log);
	s = strstr(log, "packets dropped by kernel");
	while (s && s > log && s[-1] == ' ')
		s--;
	while (s && s > log && s[-1] >= '0' && s[-1] <= '9')
		s--;
	cr_assert(s && sscanf(s, "%lu", &dropped) == 1 && dropped == 0,
		  "tcpdump dropped packets: the capture is not the whole traffic:\n%s", log);
	free(log);
}

/* ------------------------------------------------------------------ the clients */

/* `scripts/pods exec client -- ARGV...`: must exit 0 and print @expect. */
static void client_run(const char *what, const char *expect, char *const cmd[])
{
	char *argv[LOUPE_LIVE_ARGV_MAX], *out;

	loupe_live_pods_exec_argv(argv, "client", cmd);
	out = loupe_live_must_run(argv, what, CLIENT_S);
	cr_assert(strstr(out, expect), "%s: no '%s' in its output:\n%s", what, expect, out);
	free(out);
}

#define CLIENT(what, expect, ...) client_run(what, expect, (char *const[]){ __VA_ARGS__, NULL })

static void run_clients(void)
{
	char u4[128], u6[128], u4p[128], u6p[128], at4[64], at6[80], c4[64], c6[80];

	snprintf(u4, sizeof(u4), "http://%s:8080/v1/models?limit=2&order=desc", server.pod.v4);
	snprintf(u4p, sizeof(u4p), "http://%s:8080/v1/chat/completions", server.pod.v4);
	snprintf(u6, sizeof(u6), "http://[%s]:8080/healthz", server.pod.v6);
	snprintf(u6p, sizeof(u6p), "http://[%s]:8080/v1/embeddings?x=%%2F", server.pod.v6);
	snprintf(at4, sizeof(at4), "@%s", server.pod.v4);
	snprintf(at6, sizeof(at6), "@%s", server.pod.v6);
	snprintf(c4, sizeof(c4), "%s:443", server.pod.v4);
	snprintf(c6, sizeof(c6), "[%s]:443", server.pod.v6);

	CLIENT("curl-get-v4", "200", "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
	       "%{http_code}", "-H", "Host: api.example.test", u4);
	CLIENT("curl-post-v4", "200", "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
	       "%{http_code}", "-H", "Host: api.example.test", "-H",
	       "Content-Type: application/json", "-d", "{\"model\":\"m\",\"messages\":[]}", u4p);
	CLIENT("curl-get-v6", "200", "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
	       "%{http_code}", "-H", "Host: v6.example.test:8080", u6);
	CLIENT("curl-post-v6", "200", "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w",
	       "%{http_code}", "-H", "Host: embed.example.test", "-d", "input=hello", u6p);
	CLIENT("dig-udp-a", "198.18.10.2", "dig", "+short", "+time=2", "+tries=1", at4,
	       "llm.example.test", "A");
	CLIENT("dig-tcp-aaaa", "fd00:198:18:10::2", "dig", "+short", "+tcp", "+time=2", "+tries=1",
	       at6, "llm6.example.test", "AAAA");
	CLIENT("openssl-v4", "ALPN protocol: h2", "timeout", "5", "openssl", "s_client", "-connect",
	       c4, "-servername", "x.example.test", "-alpn", "h2,http/1.1");
	CLIENT("openssl-v6", "ALPN protocol: h2", "timeout", "5", "openssl", "s_client", "-connect",
	       c6, "-servername", "v6.x.example.test", "-alpn", "h2,http/1.1");
}

/* ------------------------------------------------------------------ addresses, strings */

/* ------------------------------------------------------------------ tshark's tsv */

static const char *tsv_get(const struct loupe_tsv *ts, int row, const char *col)
{
	const char *v = loupe_tsv_field(ts, row, col);

	if (!v)
		cr_assert_fail("tshark's output has no column %s", col);
	return v ? v : "";
}

/* tshark on the capture, -T fields with the corpus's options plus @extra and @fields. */
static void tshark(const char *pcap, const char *name, const char *filter, bool per_frame,
		   const char *const fields[], struct loupe_tsv *ret)
{
	static const char *const common[] = { "tshark", "-r",		NULL, "-n",
					      "-T",	"fields",	"-E", "header=y",
					      "-E",	"separator=/t", "-E", "occurrence=a",
					      "-E",	"aggregator=|" };
	/* gen_expected.sh's second command: every frame alone */
	static const char *const alone[] = { "-o", "tcp.desegment_tcp_streams:FALSE",
					     "-o", "tcp.analyze_sequence_numbers:FALSE",
					     "-o", "ip.defragment:FALSE",
					     "-o", "ipv6.defragment:FALSE" };
	char *argv[96];
	int n = 0;

	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		argv[n++] = (char *)(i == 2 ? pcap : common[i]);
	if (filter) {
		argv[n++] = "-Y";
		argv[n++] = (char *)filter;
	}
	for (size_t i = 0; per_frame && i < sizeof(alone) / sizeof(alone[0]); i++)
		argv[n++] = (char *)alone[i];
	for (int i = 0; fields[i]; i++) {
		cr_assert_lt(n, 92);
		argv[n++] = "-e";
		argv[n++] = (char *)fields[i];
	}
	argv[n] = NULL;
	cr_assert(loupe_tsv_parse(loupe_live_must_run(argv, name, TOOL_S), ret),
		  "tshark printed no header line");
}

/* ------------------------------------------------------------------ L7 messages */

enum l7_kind {
	L7_HTTP = 1,
	L7_TLS,
	L7_DNS
};

enum diff_field {
	DF_SRC,
	DF_DST,
	DF_SPORT,
	DF_DPORT,
	DF_METHOD,
	DF_PATH,
	DF_HOST,
	DF_SNI,
	DF_ALPN,
	DF_VERSION,
	DF_QNAME,
	DF_QTYPE,
	DF_DNS_TCP,
	DF_MAX,
};

static const char *const diff_names[DF_MAX] = {
	[DF_SRC] = "src",	  [DF_DST] = "dst",	  [DF_SPORT] = "sport",
	[DF_DPORT] = "dport",	  [DF_METHOD] = "method", [DF_PATH] = "path",
	[DF_HOST] = "host",	  [DF_SNI] = "sni",	  [DF_ALPN] = "alpn",
	[DF_VERSION] = "version", [DF_QNAME] = "qname",	  [DF_QTYPE] = "qtype",
	[DF_DNS_TCP] = "dns_tcp",
};

/* One L7 message: a tshark row's, or an agent event's. */
struct msg {
	enum l7_kind kind;
	unsigned int frame; /* tshark's */
	uint64_t seq;	    /* the agent's */
	uint8_t src[16], dst[16];
	char src_s[64], dst_s[64];
	unsigned int sport, dport;
	char method[64], path[2048], host[1024];
	char sni[1024], alpn[1024]; /* alpn joined with '|' as tshark does */
	unsigned int version;
	char qname[1024];
	unsigned int qtype;
	bool dns_tcp;
	bool used;
};

struct msgs {
	struct msg *v;
	size_t n;
};

static struct msg *msgs_add(struct msgs *m)
{
	m->v = realloc(m->v, (m->n + 1) * sizeof(*m->v));
	cr_assert_not_null(m->v);
	memset(&m->v[m->n], 0, sizeof(m->v[0]));
	return &m->v[m->n++];
}

static const char *kind_label(enum l7_kind k)
{
	return k == L7_HTTP ? "HTTP_REQUEST" : k == L7_TLS ? "TLS_CLIENT_HELLO" : "DNS_QUERY";
}

static unsigned int msg_diff(const struct msg *w, const struct msg *e)
{
	unsigned int d = 0;

	if (memcmp(w->src, e->src, 16))
		d |= 1u << DF_SRC;
	if (memcmp(w->dst, e->dst, 16))
		d |= 1u << DF_DST;
	if (w->sport != e->sport)
		d |= 1u << DF_SPORT;
	if (w->dport != e->dport)
		d |= 1u << DF_DPORT;
	switch (w->kind) {
	case L7_HTTP:
		if (strcmp(w->method, e->method))
			d |= 1u << DF_METHOD;
		if (strcmp(w->path, e->path))
			d |= 1u << DF_PATH;
		if (strcmp(w->host, e->host))
			d |= 1u << DF_HOST;
		break;
	case L7_TLS:
		if (strcmp(w->sni, e->sni))
			d |= 1u << DF_SNI;
		if (strcmp(w->alpn, e->alpn))
			d |= 1u << DF_ALPN;
		if (w->version != e->version)
			d |= 1u << DF_VERSION;
		break;
	case L7_DNS:
		if (strcmp(w->qname, e->qname))
			d |= 1u << DF_QNAME;
		if (w->qtype != e->qtype)
			d |= 1u << DF_QTYPE;
		if (w->dns_tcp != e->dns_tcp)
			d |= 1u << DF_DNS_TCP;
		break;
	}
	return d;
}

static void msg_field(const struct msg *m, enum diff_field f, char *buf, size_t size)
{
	switch (f) {
	case DF_SRC:
		snprintf(buf, size, "%s", m->src_s);
		break;
	case DF_DST:
		snprintf(buf, size, "%s", m->dst_s);
		break;
	case DF_SPORT:
		snprintf(buf, size, "%u", m->sport);
		break;
	case DF_DPORT:
		snprintf(buf, size, "%u", m->dport);
		break;
	case DF_METHOD:
		snprintf(buf, size, "'%s'", m->method);
		break;
	case DF_PATH:
		snprintf(buf, size, "'%s'", m->path);
		break;
	case DF_HOST:
		snprintf(buf, size, "'%s'", m->host);
		break;
	case DF_SNI:
		snprintf(buf, size, "'%s'", m->sni);
		break;
	case DF_ALPN:
		snprintf(buf, size, "'%s'", m->alpn);
		break;
	case DF_VERSION:
		snprintf(buf, size, "0x%04x", m->version);
		break;
	case DF_QNAME:
		snprintf(buf, size, "'%s'", m->qname);
		break;
	case DF_QTYPE:
		snprintf(buf, size, "%u", m->qtype);
		break;
	case DF_DNS_TCP:
		snprintf(buf, size, "%s", m->dns_tcp ? "true" : "false");
		break;
	default:
		snprintf(buf, size, "?");
	}
}

static void msg_describe(const struct msg *m, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s %s:%u -> %s:%u", kind_label(m->kind), m->src_s, m->sport,
			 m->dst_s, m->dport);

	switch (m->kind) {
	case L7_HTTP:
		snprintf(buf + n, size - n, " %s host='%s' path='%.200s'", m->method, m->host,
			 m->path);
		break;
	case L7_TLS:
		snprintf(buf + n, size - n, " sni='%s' alpn='%s' version=0x%04x", m->sni, m->alpn,
			 m->version);
		break;
	case L7_DNS:
		snprintf(buf + n, size - n, " qname='%s' qtype=%u%s", m->qname, m->qtype,
			 m->dns_tcp ? " tcp" : " udp");
		break;
	}
}

static bool is_grease(unsigned int v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* tshark's L7 rows as messages (gen_expected.sh's first command). */
static void l7_rows(const struct loupe_tsv *ts, struct msgs *rows)
{
	char buf[256];

	for (int r = 0; r < ts->nrows; r++) {
		const char *method = tsv_get(ts, r, "http.request.method");
		const char *sni = tsv_get(ts, r, "tls.handshake.extensions_server_name");
		const char *legacy = tsv_get(ts, r, "tls.handshake.version");
		struct msg *w = msgs_add(rows);

		w->frame = strtoul(tsv_get(ts, r, "frame.number"), NULL, 10);
		loupe_tsv_part(tsv_get(ts, r, "ip.src"), 0, w->src_s, sizeof(w->src_s));
		if (!w->src_s[0])
			loupe_tsv_part(tsv_get(ts, r, "ipv6.src"), 0, w->src_s, sizeof(w->src_s));
		loupe_tsv_part(tsv_get(ts, r, "ip.dst"), 0, w->dst_s, sizeof(w->dst_s));
		if (!w->dst_s[0])
			loupe_tsv_part(tsv_get(ts, r, "ipv6.dst"), 0, w->dst_s, sizeof(w->dst_s));
		cr_assert(loupe_tsv_addr(w->src_s, w->src) && loupe_tsv_addr(w->dst_s, w->dst),
			  "frame %u: addresses '%s' '%s'", w->frame, w->src_s, w->dst_s);
		loupe_tsv_part(tsv_get(ts, r, "tcp.srcport"), 0, buf, sizeof(buf));
		w->dns_tcp = buf[0] != '\0';
		if (!buf[0])
			loupe_tsv_part(tsv_get(ts, r, "udp.srcport"), 0, buf, sizeof(buf));
		w->sport = strtoul(buf, NULL, 10);
		loupe_tsv_part(tsv_get(ts, r, w->dns_tcp ? "tcp.dstport" : "udp.dstport"), 0, buf,
			       sizeof(buf));
		w->dport = strtoul(buf, NULL, 10);

		/* one request, ClientHello or question per frame: nothing here pipelines */
		if (*method) {
			cr_assert_eq(loupe_tsv_parts(method), 1, "frame %u: %d HTTP requests",
				     w->frame, loupe_tsv_parts(method));
			w->kind = L7_HTTP;
			snprintf(w->method, sizeof(w->method), "%s", method);
			snprintf(w->path, sizeof(w->path), "%s",
				 tsv_get(ts, r, "http.request.uri"));
			snprintf(w->host, sizeof(w->host), "%s", tsv_get(ts, r, "http.host"));
		} else if (*sni || *legacy) {
			const char *sv =
				tsv_get(ts, r, "tls.handshake.extensions.supported_version");
			unsigned int v, max = 0;

			cr_assert_eq(loupe_tsv_parts(legacy), 1, "frame %u: %d ClientHellos",
				     w->frame, loupe_tsv_parts(legacy));
			w->kind = L7_TLS;
			snprintf(w->sni, sizeof(w->sni), "%s", sni);
			snprintf(w->alpn, sizeof(w->alpn), "%s",
				 tsv_get(ts, r, "tls.handshake.extensions_alpn_str"));
			/* the version is the highest supported_versions entry, else the legacy one */
			for (int i = 0; i < loupe_tsv_parts(sv); i++) {
				loupe_tsv_part(sv, i, buf, sizeof(buf));
				v = strtoul(buf, NULL, 16);
				if (!is_grease(v) && v > max)
					max = v;
			}
			if (!max)
				max = strtoul(legacy, NULL, 16);
			w->version = max;
		} else {
			w->kind = L7_DNS;
			loupe_tsv_part(tsv_get(ts, r, "dns.qry.name"), 0, w->qname,
				       sizeof(w->qname));
			loupe_tsv_part(tsv_get(ts, r, "dns.qry.type"), 0, buf, sizeof(buf));
			w->qtype = strtoul(buf, NULL, 10);
		}
	}
}

/* ------------------------------------------------------------------ flows */

enum {
	EGRESS,
	INGRESS
}; /* relative to the pod: sent by it, received by it */

struct flow {
	int proto;
	uint8_t pod[16], peer[16];
	char pod_s[64], peer_s[64];
	unsigned int pod_port, peer_port;
	uint64_t pkts[2], bytes[2];
	unsigned int flags[2]; /* TCP flags, ORed */
	/* the capture's */
	unsigned int first_frame, last_frame;
	bool mld;
	/* the agent's */
	uint64_t seq, last_seen_ns;
	char reason[32];
	bool used;
};

struct flows {
	struct flow *v;
	size_t n;
};

static bool flow_same_key(const struct flow *a, const struct flow *b)
{
	return a->proto == b->proto && !memcmp(a->pod, b->pod, 16) &&
	       !memcmp(a->peer, b->peer, 16) && a->pod_port == b->pod_port &&
	       a->peer_port == b->peer_port;
}

static struct flow *flows_find(struct flows *fs, const struct flow *key)
{
	for (size_t i = 0; i < fs->n; i++)
		if (flow_same_key(&fs->v[i], key))
			return &fs->v[i];
	return NULL;
}

static struct flow *flows_add(struct flows *fs, const struct flow *key)
{
	fs->v = realloc(fs->v, (fs->n + 1) * sizeof(*fs->v));
	cr_assert_not_null(fs->v);
	fs->v[fs->n] = *key;
	return &fs->v[fs->n++];
}

static const char *proto_name(int proto)
{
	switch (proto) {
	case 1:
		return "ICMP";
	case 6:
		return "TCP";
	case 17:
		return "UDP";
	case 58:
		return "ICMPV6";
	default:
		return "?";
	}
}

static void flow_describe(const struct flow *f, char *buf, size_t size)
{
	if (f->proto == 6 || f->proto == 17)
		snprintf(buf, size, "%s pod %s:%u <-> %s:%u", proto_name(f->proto), f->pod_s,
			 f->pod_port, f->peer_s, f->peer_port);
	else
		snprintf(buf, size, "%s pod %s <-> %s", proto_name(f->proto), f->pod_s, f->peer_s);
}

struct capture_stats {
	size_t frames, non_ip, mld_frames, mld_convs;
};

static bool is_mld(unsigned int type)
{
	return type == 130 || type == 131 || type == 132 || type == 143;
}

/*
 * The capture's frames, one by one, summed per conversation. A frame whose source MAC is the
 * pod's was sent by the pod (egress); its addresses and ports are then the pod's (source) and
 * the peer's (destination), the other way round for a frame to the pod.
 */
static void conversations(const struct loupe_tsv *ts, const struct pod *p, struct flows *convs,
			  struct capture_stats *cs)
{
	uint8_t pod4[16], pod6[16];
	char buf[64], icmp6[64];

	loupe_tsv_addr(p->pod.v4, pod4);
	loupe_tsv_addr(p->pod.v6, pod6);
	for (int r = 0; r < ts->nrows; r++) {
		unsigned int frame = strtoul(tsv_get(ts, r, "frame.number"), NULL, 10);
		bool egress = strcasecmp(tsv_get(ts, r, "eth.src"), p->mac) == 0;
		char src_s[64], dst_s[64];
		uint8_t src[16], dst[16];
		unsigned int sport = 0, dport = 0, len;
		struct flow key = { 0 }, *f;
		const uint8_t *pod_end;
		int proto;

		cs->frames++;
		len = strtoul(tsv_get(ts, r, "frame.len"), NULL, 10);
		/* the outer header's fields come first: an ICMP error quotes another below */
		loupe_tsv_part(tsv_get(ts, r, "ip.src"), 0, src_s, sizeof(src_s));
		if (src_s[0]) {
			loupe_tsv_part(tsv_get(ts, r, "ip.dst"), 0, dst_s, sizeof(dst_s));
			loupe_tsv_part(tsv_get(ts, r, "ip.proto"), 0, buf, sizeof(buf));
			proto = atoi(buf);
		} else {
			loupe_tsv_part(tsv_get(ts, r, "ipv6.src"), 0, src_s, sizeof(src_s));
			loupe_tsv_part(tsv_get(ts, r, "ipv6.dst"), 0, dst_s, sizeof(dst_s));
			loupe_tsv_part(tsv_get(ts, r, "ipv6.nxt"), 0, buf, sizeof(buf));
			proto = atoi(buf);
		}
		if (!src_s[0]) {
			cs->non_ip++; /* ARP: not IP, no flow */
			continue;
		}
		cr_assert(loupe_tsv_addr(src_s, src) && loupe_tsv_addr(dst_s, dst),
			  "frame %u: addresses '%s' '%s'", frame, src_s, dst_s);
		loupe_tsv_part(tsv_get(ts, r, "icmpv6.type"), 0, icmp6, sizeof(icmp6));
		if (icmp6[0])
			proto = 58; /* MLD comes behind a hop-by-hop header */
		if (proto == 6 || proto == 17) {
			const char *l4 = proto == 6 ? "tcp" : "udp";

			snprintf(buf, sizeof(buf), "%s.srcport", l4);
			loupe_tsv_part(tsv_get(ts, r, buf), 0, buf, sizeof(buf));
			sport = strtoul(buf, NULL, 10);
			snprintf(buf, sizeof(buf), "%s.dstport", l4);
			loupe_tsv_part(tsv_get(ts, r, buf), 0, buf, sizeof(buf));
			dport = strtoul(buf, NULL, 10);
			/* the pod's MAC and the pod's address go together */
			pod_end = egress ? src : dst;
			cr_assert(!memcmp(pod_end, pod4, 16) || !memcmp(pod_end, pod6, 16),
				  "frame %u (%s -> %s): %s the pod's MAC but not %s its address",
				  frame, src_s, dst_s, egress ? "from" : "not from",
				  egress ? "from" : "to");
		}
		key.proto = proto;
		memcpy(key.pod, egress ? src : dst, 16);
		memcpy(key.peer, egress ? dst : src, 16);
		snprintf(key.pod_s, sizeof(key.pod_s), "%s", egress ? src_s : dst_s);
		snprintf(key.peer_s, sizeof(key.peer_s), "%s", egress ? dst_s : src_s);
		key.pod_port = egress ? sport : dport;
		key.peer_port = egress ? dport : sport;
		f = flows_find(convs, &key);
		if (!f) {
			f = flows_add(convs, &key);
			f->first_frame = frame;
		}
		f->last_frame = frame;
		f->pkts[egress ? EGRESS : INGRESS]++;
		f->bytes[egress ? EGRESS : INGRESS] += len;
		if (proto == 6)
			f->flags[egress ? EGRESS : INGRESS] |=
				strtoul(tsv_get(ts, r, "tcp.flags"), NULL, 16) & 0xff;
		if (icmp6[0] && is_mld(strtoul(icmp6, NULL, 10))) {
			f->mld = true;
			cs->mld_frames++;
		}
	}
	for (size_t i = 0; i < convs->n; i++)
		cs->mld_convs += convs->v[i].mld;
}

/* ------------------------------------------------------------------ the agent's events */

static int proto_number(const char *s)
{
	static const char *const names[] = { "ICMP", "TCP", "UDP", "ICMPV6" };
	static const int numbers[] = { 1, 6, 17, 58 };

	for (size_t i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return numbers[i];
	return 0;
}

/* What the agent said about the client's interface. */
struct agent_view {
	size_t lines, other_iface;
	struct msgs l7;
	struct flows starts; /* FLOW_START keys (pod side first), pkts[0] counts them */
	struct flows ends;
	size_t lost;
	char bad[512]; /* the first line that is not as it should be */
};

static void agent_view_free(struct agent_view *a)
{
	free(a->l7.v);
	free(a->starts.v);
	free(a->ends.v);
	memset(a, 0, sizeof(*a));
}

/* The key of an event: FLOW_END's source is the pod end; others follow their direction. */
static void event_key(struct json_object *o, bool pod_is_src, struct flow *k)
{
	const char *src = loupe_json_str(o, "srcIp"), *dst = loupe_json_str(o, "dstIp");
	uint8_t a[16], b[16];

	memset(k, 0, sizeof(*k));
	k->proto = proto_number(loupe_json_str(o, "protocol"));
	loupe_tsv_addr(src, a);
	loupe_tsv_addr(dst, b);
	memcpy(k->pod, pod_is_src ? a : b, 16);
	memcpy(k->peer, pod_is_src ? b : a, 16);
	snprintf(k->pod_s, sizeof(k->pod_s), "%s", pod_is_src ? src : dst);
	snprintf(k->peer_s, sizeof(k->peer_s), "%s", pod_is_src ? dst : src);
	k->pod_port = loupe_json_u64(o, pod_is_src ? "srcPort" : "dstPort");
	k->peer_port = loupe_json_u64(o, pod_is_src ? "dstPort" : "srcPort");
}

/* pod identity: the client pod's two addresses, and not the node's gateway on the veth */
static void check_pod_ips(struct json_object *o, const char *line, struct agent_view *a)
{
	struct json_object *pod = loupe_json_obj(o, "pod"), *ips = NULL;
	const char *ip0, *ip1;

	if (pod)
		json_object_object_get_ex(pod, "ips", &ips);
	if (!ips || json_object_array_length(ips) != 2) {
		if (!a->bad[0])
			snprintf(a->bad, sizeof(a->bad),
				 "pod.ips is not the pod's two addresses: %s", line);
		return;
	}
	ip0 = json_object_get_string(json_object_array_get_idx(ips, 0));
	ip1 = json_object_get_string(json_object_array_get_idx(ips, 1));
	if ((strcmp(ip0, client.pod.v4) || strcmp(ip1, client.pod.v6)) && !a->bad[0])
		snprintf(a->bad, sizeof(a->bad), "pod.ips [%s, %s], not [%s, %s]: %s", ip0, ip1,
			 client.pod.v4, client.pod.v6, line);
}

static void agent_event(struct json_object *o, const char *line, struct agent_view *a)
{
	const char *kind = loupe_json_str(o, "kind"), *dir = loupe_json_str(o, "direction");
	struct json_object *iface = loupe_json_obj(o, "interface"),
			   *flow = loupe_json_obj(o, "flow"), *x, *alpn;
	struct flow k, *f;
	struct msg *m;

	if (strcmp(kind, "LOST") == 0)
		a->lost++;
	if (strcmp(loupe_json_str(iface, "name"), client.pod.host_if)) {
		a->other_iface++;
		return;
	}
	if (loupe_json_u64(iface, "ifindex") != client.ifindex && !a->bad[0])
		snprintf(a->bad, sizeof(a->bad), "ifindex is not %u: %s", client.ifindex, line);
	check_pod_ips(o, line, a);

	if (strcmp(kind, "FLOW_START") == 0) {
		event_key(o, strcmp(dir, "POD_EGRESS") == 0, &k);
		f = flows_find(&a->starts, &k);
		if (!f)
			f = flows_add(&a->starts, &k);
		f->pkts[0]++;
		return;
	}
	if (strcmp(kind, "FLOW_END") == 0) {
		event_key(o, true, &k);
		f = flows_add(&a->ends, &k);
		f->seq = loupe_json_u64(o, "seq");
		for (int d = 0; d < 2; d++) {
			x = loupe_json_obj(flow, d == EGRESS ? "egress" : "ingress");
			f->pkts[d] = loupe_json_u64(x, "packets");
			f->bytes[d] = loupe_json_u64(x, "bytes");
			f->flags[d] = loupe_json_u64(x, "tcpFlags");
		}
		snprintf(f->reason, sizeof(f->reason), "%s", loupe_json_str(flow, "endReason"));
		if (!loupe_json_time(loupe_json_str(flow, "lastSeen"), &f->last_seen_ns) &&
		    !a->bad[0])
			snprintf(a->bad, sizeof(a->bad), "bad lastSeen: %s", line);
		return;
	}
	if (!strcmp(kind, "HTTP_REQUEST") || !strcmp(kind, "TLS_CLIENT_HELLO") ||
	    !strcmp(kind, "DNS_QUERY")) {
		m = msgs_add(&a->l7);
		m->kind = kind[0] == 'H' ? L7_HTTP : kind[0] == 'T' ? L7_TLS : L7_DNS;
		m->seq = loupe_json_u64(o, "seq");
		snprintf(m->src_s, sizeof(m->src_s), "%s", loupe_json_str(o, "srcIp"));
		snprintf(m->dst_s, sizeof(m->dst_s), "%s", loupe_json_str(o, "dstIp"));
		if ((!loupe_tsv_addr(m->src_s, m->src) || !loupe_tsv_addr(m->dst_s, m->dst)) &&
		    !a->bad[0])
			snprintf(a->bad, sizeof(a->bad), "bad address: %s", line);
		m->sport = loupe_json_u64(o, "srcPort");
		m->dport = loupe_json_u64(o, "dstPort");
		/* the client sends every request: the pod's egress */
		if (strcmp(dir, "POD_EGRESS") && !a->bad[0])
			snprintf(a->bad, sizeof(a->bad), "not POD_EGRESS: %s", line);
		x = loupe_json_obj(o, "http");
		snprintf(m->method, sizeof(m->method), "%s", loupe_json_str(x, "method"));
		snprintf(m->path, sizeof(m->path), "%s", loupe_json_str(x, "path"));
		snprintf(m->host, sizeof(m->host), "%s", loupe_json_str(x, "host"));
		if ((loupe_json_bool(x, "pathTruncated") || loupe_json_bool(x, "hostTruncated")) &&
		    !a->bad[0])
			snprintf(a->bad, sizeof(a->bad), "truncated: %s", line);
		x = loupe_json_obj(o, "tls");
		snprintf(m->sni, sizeof(m->sni), "%s", loupe_json_str(x, "sni"));
		m->version = loupe_json_u64(x, "version");
		alpn = loupe_json_obj(x, "alpn");
		for (size_t i = 0; alpn && i < json_object_array_length(alpn); i++) {
			size_t len = strlen(m->alpn);

			snprintf(m->alpn + len, sizeof(m->alpn) - len, "%s%s", i ? "|" : "",
				 json_object_get_string(json_object_array_get_idx(alpn, i)));
		}
		x = loupe_json_obj(o, "dns");
		snprintf(m->qname, sizeof(m->qname), "%s", loupe_json_str(x, "qname"));
		m->qtype = loupe_json_u64(x, "qtype");
		m->dns_tcp = loupe_json_bool(x, "tcp");
	}
}

/* The agent's output so far (complete lines only: it may be writing the next one). */
static void agent_view_load(const char *path, struct agent_view *a)
{
	char *text = loupe_live_slurp(path), *line, *nl;

	memset(a, 0, sizeof(*a));
	for (line = text; (nl = strchr(line, '\n')); line = nl + 1) {
		struct json_object *o;

		*nl = '\0';
		a->lines++;
		o = json_tokener_parse(line);
		if (!o || !json_object_is_type(o, json_type_object)) {
			if (!a->bad[0])
				snprintf(a->bad, sizeof(a->bad), "line %zu is not JSON: %.400s",
					 a->lines, line);
			json_object_put(o);
			continue;
		}
		/* seq counts the agent's events from 1, one more each line: none went missing */
		if (loupe_json_u64(o, "seq") != a->lines && !a->bad[0])
			snprintf(a->bad, sizeof(a->bad), "line %zu has seq %llu: %.400s", a->lines,
				 (unsigned long long)loupe_json_u64(o, "seq"), line);
		agent_event(o, line, a);
		json_object_put(o);
	}
	free(text);
}

/*
 * Waits until every flow the agent started on the client's interface has ended (as many
 * FLOW_ENDs as FLOW_STARTs per key) and the clients' TCP and UDP flows are among them.
 */
static void wait_flows_ended(const char *events, struct agent_view *ret)
{
	double end = loupe_live_now_s() + FLOWS_S;
	char pending[1024], d[256];

	for (;;) {
		size_t tcp = 0, udp = 0, n;
		int len = 0;

		agent_view_load(events, ret);
		pending[0] = '\0';
		for (size_t i = 0; i < ret->ends.n; i++) {
			tcp += ret->ends.v[i].proto == 6;
			udp += ret->ends.v[i].proto == 17;
		}
		for (size_t i = 0; i < ret->starts.n; i++) {
			n = 0;
			for (size_t j = 0; j < ret->ends.n; j++)
				n += flow_same_key(&ret->starts.v[i], &ret->ends.v[j]);
			if (n >= ret->starts.v[i].pkts[0])
				continue;
			flow_describe(&ret->starts.v[i], d, sizeof(d));
			if (len < (int)sizeof(pending) - 1)
				len += snprintf(pending + len, sizeof(pending) - len, "\n  %s", d);
		}
		if (!pending[0] && tcp >= WANT_TCP_FLOWS && udp >= WANT_UDP_FLOWS)
			return;
		cr_assert(loupe_live_now_s() < end,
			  "within %.0f s the agent ended %zu TCP and %zu UDP flows on %s (the "
			  "clients made %d and %d); started and not ended:%s",
			  FLOWS_S, tcp, udp, client.pod.host_if, WANT_TCP_FLOWS, WANT_UDP_FLOWS,
			  pending[0] ? pending : " none");
		agent_view_free(ret);
		loupe_live_pause_ms(50);
	}
}

/* ------------------------------------------------------------------ the comparisons */

/* Every row matches exactly one event, every event one row; differences printed. */
static size_t compare_l7(struct msgs *rows, struct msgs *events)
{
	char a[4096], va[2048], vb[2048];
	size_t failures = 0;

	for (size_t i = 0; i < rows->n; i++) {
		struct msg *w = &rows->v[i];

		for (size_t j = 0; j < events->n; j++) {
			struct msg *e = &events->v[j];

			if (!e->used && e->kind == w->kind && !msg_diff(w, e)) {
				e->used = w->used = true;
				break;
			}
		}
	}
	/* a row without its event: the closest event of its flow, to name what differs */
	for (size_t i = 0; i < rows->n; i++) {
		struct msg *w = &rows->v[i], *best = NULL;
		unsigned int dd, best_d = 0;

		if (w->used)
			continue;
		failures++;
		for (size_t j = 0; j < events->n; j++) {
			struct msg *e = &events->v[j];

			if (e->used || e->kind != w->kind)
				continue;
			dd = msg_diff(w, e);
			if (dd & 0xf) /* addresses and ports: another flow */
				continue;
			if (!best || __builtin_popcount(dd) < __builtin_popcount(best_d)) {
				best = e;
				best_d = dd;
			}
		}
		msg_describe(w, a, sizeof(a));
		if (!best) {
			fprintf(stderr, "  DIFFERENCE frame %u: no agent event for tshark's %s\n",
				w->frame, a);
			continue;
		}
		best->used = true;
		for (int f = 0; f < DF_MAX; f++) {
			if (!(best_d & (1u << f)))
				continue;
			msg_field(w, f, va, sizeof(va));
			msg_field(best, f, vb, sizeof(vb));
			fprintf(stderr,
				"  DIFFERENCE frame %u %s: %s: tshark %s, agent %s (event seq "
				"%llu)\n",
				w->frame, diff_names[f], a, va, vb, (unsigned long long)best->seq);
		}
	}
	for (size_t j = 0; j < events->n; j++) {
		if (events->v[j].used)
			continue;
		failures++;
		msg_describe(&events->v[j], a, sizeof(a));
		fprintf(stderr, "  EXTRA agent event seq %llu, no tshark row: %s\n",
			(unsigned long long)events->v[j].seq, a);
	}
	return failures;
}

/*
 * Each compared conversation equals exactly one FLOW_END; a FLOW_END no conversation took is
 * allowed only for left-out MLD conversations, or for ICMPv6 whose last packet came before the
 * capture started (a report right after CNI ADD).
 */
static size_t compare_flows(struct flows *convs, struct flows *ends, size_t *ret_compared,
			    size_t *ret_ignored)
{
	static const char *const dir_name[2] = { "egress", "ingress" };
	size_t failures = 0;
	char d[256];

	for (size_t i = 0; i < convs->n; i++) {
		struct flow *c = &convs->v[i], *e = NULL;
		size_t n = 0;

		if (c->mld)
			continue;
		(*ret_compared)++;
		for (size_t j = 0; j < ends->n; j++) {
			if (!flow_same_key(c, &ends->v[j]))
				continue;
			ends->v[j].used = true;
			if (!n++)
				e = &ends->v[j];
		}
		flow_describe(c, d, sizeof(d));
		if (n != 1) {
			failures++;
			fprintf(stderr,
				"  DIFFERENCE %s (frames %u..%u): %zu FLOW_ENDs for the "
				"conversation, "
				"not 1\n",
				d, c->first_frame, c->last_frame, n);
			continue;
		}
		for (int dir = 0; dir < 2; dir++) {
			if (c->pkts[dir] != e->pkts[dir] || c->bytes[dir] != e->bytes[dir]) {
				failures++;
				fprintf(stderr,
					"  DIFFERENCE %s (frames %u..%u) %s: tshark %llu packets "
					"%llu bytes, agent %llu packets %llu bytes (FLOW_END seq "
					"%llu)\n",
					d, c->first_frame, c->last_frame, dir_name[dir],
					(unsigned long long)c->pkts[dir],
					(unsigned long long)c->bytes[dir],
					(unsigned long long)e->pkts[dir],
					(unsigned long long)e->bytes[dir],
					(unsigned long long)e->seq);
			}
			if (c->flags[dir] != e->flags[dir]) {
				failures++;
				fprintf(stderr,
					"  DIFFERENCE %s (frames %u..%u) %s TCP flags: tshark "
					"0x%02x, "
					"agent 0x%02x (FLOW_END seq %llu)\n",
					d, c->first_frame, c->last_frame, dir_name[dir],
					c->flags[dir], e->flags[dir], (unsigned long long)e->seq);
			}
		}
		if (strcmp(e->reason, "IDLE_TIMEOUT") && strcmp(e->reason, "TCP_CLOSE")) {
			failures++;
			fprintf(stderr, "  DIFFERENCE %s: FLOW_END seq %llu ended by %s\n", d,
				(unsigned long long)e->seq, e->reason);
		}
	}
	for (size_t j = 0; j < ends->n; j++) {
		struct flow *e = &ends->v[j], *c;

		if (e->used)
			continue;
		c = flows_find(convs, e);
		if ((c && c->mld) || (!c && e->proto == 58 && e->last_seen_ns < t.listen_ns)) {
			(*ret_ignored)++;
			continue;
		}
		failures++;
		flow_describe(e, d, sizeof(d));
		fprintf(stderr,
			"  EXTRA FLOW_END seq %llu: %s, egress %llu/%llu, ingress %llu/%llu "
			"(packets/bytes): no such conversation in the capture\n",
			(unsigned long long)e->seq, d, (unsigned long long)e->pkts[EGRESS],
			(unsigned long long)e->bytes[EGRESS], (unsigned long long)e->pkts[INGRESS],
			(unsigned long long)e->bytes[INGRESS]);
	}
	return failures;
}

/* What the clients sent, each seen by tshark exactly once (the comparison is not vacuous). */
struct sent {
	enum l7_kind kind;
	const char *dst;
	unsigned int dport;
	const char *a, *b, *c; /* method, path, host | sni, alpn | qname */
	unsigned int n;	       /* DNS: qtype and TCP (| 0x10000) */
};

static void expect_sent(const struct msgs *rows)
{
	const struct sent sent[] = {
		{ L7_HTTP, server.pod.v4, 8080, "GET", "/v1/models?limit=2&order=desc",
		  "api.example.test", 0 },
		{ L7_HTTP, server.pod.v4, 8080, "POST", "/v1/chat/completions", "api.example.test",
		  0 },
		{ L7_HTTP, server.pod.v6, 8080, "GET", "/healthz", "v6.example.test:8080", 0 },
		{ L7_HTTP, server.pod.v6, 8080, "POST", "/v1/embeddings?x=%2F",
		  "embed.example.test", 0 },
		{ L7_DNS, server.pod.v4, 53, "llm.example.test", .n = 1 },
		{ L7_DNS, server.pod.v6, 53, "llm6.example.test", .n = 28 | 0x10000 },
		{ L7_TLS, server.pod.v4, 443, "x.example.test", "h2|http/1.1", .n = 0x0304 },
		{ L7_TLS, server.pod.v6, 443, "v6.x.example.test", "h2|http/1.1", .n = 0x0304 },
	};
	uint8_t dst[16];

	cr_expect_eq(rows->n, sizeof(sent) / sizeof(sent[0]),
		     "tshark read %zu requests, ClientHellos and queries; the clients sent %zu",
		     rows->n, sizeof(sent) / sizeof(sent[0]));
	for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
		const struct sent *s = &sent[i];
		size_t n = 0;

		loupe_tsv_addr(s->dst, dst);
		for (size_t j = 0; j < rows->n; j++) {
			const struct msg *w = &rows->v[j];

			if (w->kind != s->kind || memcmp(w->dst, dst, 16) || w->dport != s->dport)
				continue;
			if (s->kind == L7_HTTP)
				n += !strcmp(w->method, s->a) && !strcmp(w->path, s->b) &&
				     !strcmp(w->host, s->c);
			else if (s->kind == L7_TLS)
				n += !strcmp(w->sni, s->a) && !strcmp(w->alpn, s->b) &&
				     w->version == s->n;
			else
				n += !strcmp(w->qname, s->a) && w->qtype == (s->n & 0xffff) &&
				     w->dns_tcp == !!(s->n & 0x10000);
		}
		cr_expect_eq(n, 1, "tshark saw %s '%s' to %s:%u %zu times, not once",
			     kind_label(s->kind), s->a, s->dst, s->dport, n);
	}
}

/* ------------------------------------------------------------------ the test */

Test(agent_traffic, events_equal_tshark)
{
	static const char *const l7_fields[] = {
		"frame.number",
		"ieee8021ad.id",
		"vlan.id",
		"ip.src",
		"ipv6.src",
		"ip.dst",
		"ipv6.dst",
		"tcp.srcport",
		"tcp.dstport",
		"udp.srcport",
		"udp.dstport",
		"tcp.stream",
		"tcp.segment.count",
		"http.request.method",
		"http.request.uri",
		"http.host",
		"tls.handshake.extensions_server_name",
		"tls.handshake.extensions_alpn_str",
		"tls.handshake.version",
		"tls.handshake.extensions.supported_version",
		"dns.qry.name",
		"dns.qry.type",
		NULL,
	};
	static const char *const frame_fields[] = {
		"frame.number", "frame.len",   "eth.src",     "ip.src",
		"ip.dst",	"ipv6.src",    "ipv6.dst",    "ip.proto",
		"ipv6.nxt",	"tcp.srcport", "tcp.dstport", "udp.srcport",
		"udp.dstport",	"tcp.flags",   "icmpv6.type", NULL,
	};
	const char *l7_filter = "(tcp and http.request) or (tcp and tls.handshake.type==1) or "
				"(dns.flags.response==0 and (udp.port==53 or tcp.port==53))";
	char events[PATH_MAX], pcap[PATH_MAX];
	struct msgs rows = { 0 };
	struct flows convs = { 0 };
	struct capture_stats cs = { 0 };
	struct agent_view av;
	struct loupe_tsv ts;
	size_t l7_fail, flow_fail, compared = 0, ignored = 0, kinds[4] = { 0 }, tcp = 0, udp = 0,
				   icmp6 = 0;
	uint64_t pkts = 0, bytes = 0;
	double t0 = loupe_live_now_s();

	loupe_live_tmp_path(events, sizeof(events), "events.jsonl");
	loupe_live_tmp_path(pcap, sizeof(pcap), "client.pcap");

	pods_up();
	pod_link_info(&server);
	pod_link_info(&client);
	serve("http", "8080");
	serve("dns", "53");
	serve("tls", "443");
	agent_start(events);
	tcpdump_start(pcap);
	fprintf(stderr, "[traffic] %s %s/%s on %s, %s %s/%s on %s; setup %.1f s\n", client.pod.name,
		client.pod.v4, client.pod.v6, client.pod.host_if, server.pod.name, server.pod.v4,
		server.pod.v6, server.pod.host_if, loupe_live_now_s() - t0);

	run_clients();
	wait_flows_ended(events, &av);
	tcpdump_stop();
	cr_assert(!av.bad[0], "the agent's output: %s", av.bad);
	cr_assert_eq(av.lost, 0, "the agent reported %zu LOST events", av.lost);

	/* L7: tshark's reading of the capture against the agent's events */
	tshark(pcap, "tshark-l7", l7_filter, false, l7_fields, &ts);
	l7_rows(&ts, &rows);
	loupe_tsv_free(&ts);
	expect_sent(&rows);
	for (size_t i = 0; i < rows.n; i++)
		kinds[rows.v[i].kind]++;
	l7_fail = compare_l7(&rows, &av.l7);
	fprintf(stderr,
		"[traffic] L7: %zu tshark rows (HTTP %zu, TLS %zu, DNS %zu), %zu agent events on "
		"%s: %zu differences\n",
		rows.n, kinds[L7_HTTP], kinds[L7_TLS], kinds[L7_DNS], av.l7.n, client.pod.host_if,
		l7_fail);

	/* flows: the capture's frames summed per conversation against FLOW_END */
	tshark(pcap, "tshark-frames", NULL, true, frame_fields, &ts);
	conversations(&ts, &client, &convs, &cs);
	loupe_tsv_free(&ts);
	flow_fail = compare_flows(&convs, &av.ends, &compared, &ignored);
	for (size_t i = 0; i < convs.n; i++) {
		struct flow *c = &convs.v[i];

		if (c->mld)
			continue;
		tcp += c->proto == 6;
		udp += c->proto == 17;
		icmp6 += c->proto == 58;
		pkts += c->pkts[0] + c->pkts[1];
		bytes += c->bytes[0] + c->bytes[1];
	}
	fprintf(stderr,
		"[traffic] flows: %zu frames captured; %zu conversations compared (TCP %zu, UDP "
		"%zu, ICMPv6 %zu; %llu packets, %llu bytes) with %zu FLOW_ENDs on %s: %zu "
		"differences; left out: %zu non-IP frames, %zu MLD conversations (%zu frames), "
		"%zu FLOW_ENDs of MLD or before the capture\n",
		cs.frames, compared, tcp, udp, icmp6, (unsigned long long)pkts,
		(unsigned long long)bytes, av.ends.n, client.pod.host_if, flow_fail, cs.non_ip,
		cs.mld_convs, cs.mld_frames, ignored);
	fprintf(stderr, "[traffic] %.1f s in all\n", loupe_live_now_s() - t0);

	cr_expect_eq(l7_fail, 0, "%zu L7 differences between the agent and tshark (listed above)",
		     l7_fail);
	cr_expect_eq(flow_fail, 0,
		     "%zu flow differences between the agent and tshark (listed above)", flow_fail);
	cr_expect_eq(tcp, WANT_TCP_FLOWS,
		     "%zu TCP conversations in the capture, the clients made %d", tcp,
		     WANT_TCP_FLOWS);
	cr_expect_eq(udp, WANT_UDP_FLOWS,
		     "%zu UDP conversations in the capture, the clients made %d", udp,
		     WANT_UDP_FLOWS);
	free(rows.v);
	free(convs.v);
	agent_view_free(&av);
}
