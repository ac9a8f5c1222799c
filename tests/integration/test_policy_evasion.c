// SPDX-License-Identifier: Apache-2.0
/*
 * Evasion by segmentation, live: a deny rule on an HTTP Host and one on a TLS SNI still block
 * when a raw-socket client (tests/lib/rawtcp.c) in a CNI pod splits the request line, the
 * headers and the ClientHello across segments in several ways, in order and out of order,
 * retransmitting as a stack would; also a ClientHello carried by two TLS records, and a
 * segment sent as two IP fragments (the node forwards them as they are): those two cannot be
 * judged and are denied whatever the name (fail closed). For each split, a denied request
 * must not get a byte of
 * the segment that completes it to the server, and the same split with an allowed name must
 * reach it whole and be answered (so the test cannot pass by dropping everything). Witnesses:
 * the server's ACKs and answer (client side), tcpdump in the server pod (what arrived there),
 * httpd.py's log (what it served), the agent's POLICY_VERDICT events (which rule decided).
 * Not for the matching itself (tests/bpf) nor for real clients (test_policy_live).
 *
 * The raw client's source is 198.18.102.2, an address no pod owns: the node routes it to the
 * client pod's veth (a /32 route and a permanent neighbour entry with the pod's MAC) and the
 * server pod routes it back through its gateway. The pod's kernel gets the server's SYN-ACK
 * for an address it does not have and, its eth0 not forwarding (the test turns that off),
 * drops it without a word (no RST, no ICMP), while the AF_PACKET socket sees it. Chosen over
 * a drop rule in the pod because it needs no firewall tool and leaves the pod's own address
 * alone. The policy selects the pod by its interface.
 *
 * Names carry the Criterion runner's pid (loupe-pe<pid>, lpe<pid>-, /tmp/loupe-pe-<pid>-*):
 * the runner sweeps them after the run, and a later run sweeps those of runs that died. Every
 * wait has a deadline; none is a fixed sleep.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "jsonget.h"
#include "live.h"
#include "rawtcp.h"

#define ID_ENV	"LOUPE_TEST_POLICY_EVASION_ID" /* the runner's pid, set once (PRE_ALL) */
#define METRICS "127.0.0.1:9751"	       /* in the node's own namespace: no clash */

/* Deadlines: seconds for processes, ms for the raw client. */
#define ATTACH_S      5.0
#define EVENT_S	      10.0 /* an event in the output file: flushed every second */
#define CAPTURE_S     10.0
#define CONNECT_MS    3000
#define ANSWER_MS     3000
#define RETRANSMIT_MS 3000 /* two retransmissions: 100 + 200 ms, and slack */

#define RAW_SRC	    "198.18.102.2" /* the raw client's address: no pod has it */
#define HOST_OK	    "allowed.example.test"
#define HOST_BAD    "denied.example.test"
#define HTTP_PORT   8080
#define TLS_PORT    443
#define SPORT_BASE  41000
#define MARKER_PORT 40999 /* the last connection: once tcpdump wrote it, it wrote all */

/* loupe_live: the node (loupe-pe<id>), pods (lpe<id>-), temp dir (/tmp/loupe-pe-<id>-*) */
static struct {
	char policies[112];
	char events[112];
	char capture[112];
	char capture_log[112];
	pid_t tcpdump;
	uint8_t gw_mac[6], pod_mac[6];
} t;

static struct loupe_live_pod server = { .name = "server" }, client = { .name = "client" };

static void teardown(void);

/* the raw client's route and neighbour (gone with the namespace anyway) */
static void sweep_node(const char *node)
{
	loupe_live_sh("ip -n %s route del " RAW_SRC "/32 2>/dev/null", node);
	loupe_live_sh("ip -n %s neigh flush to " RAW_SRC " nud permanent 2>/dev/null", node);
}

static const struct loupe_live_names live_names = {
	.id_env = ID_ENV,
	.node = "loupe-pe",
	.pods = "lpe",
	.tmp = "loupe-pe",
	.teardown = teardown,
	.sweep_node = sweep_node,
};

/* ------------------------------------------------------------------ small things */

static void mac_text(const uint8_t *m, char *buf)
{
	sprintf(buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* ------------------------------------------------------------------ setup and cleanup */

static void teardown(void)
{
	if (t.tcpdump > 0)
		loupe_live_proc_stop(t.tcpdump, SIGINT, 5);
	t.tcpdump = 0;
	loupe_live_teardown();
	memset(&t, 0, sizeof(t));
}

LOUPE_LIVE_PRE_ALL(&live_names)
LOUPE_LIVE_POST_ALL(&live_names)

static const char *missing_tool(void)
{
	static const char *const tools[] = {
		"/usr/bin/python3",	 "/usr/bin/openssl",
		"/usr/bin/tcpdump",	 "/usr/bin/tshark",
		"/usr/bin/ss",		 "/usr/bin/curl",
		"/usr/lib/cni/ptp",	 "/usr/lib/cni/host-local",
		"/usr/lib/cni/loopback", LOUPE_LIVE_AGENT_BIN,
		LOUPE_LIVE_PODS,
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
		cr_skip_test("needs root: network namespaces, CNI plugins, bpffs, raw sockets");
	tool = missing_tool();
	if (tool)
		cr_skip_test("%s is missing (python3, openssl, tcpdump, tshark, iproute2, curl, "
			     "containernetworking-plugins; the agent: make build)",
			     tool);
	loupe_live_setup(&live_names);
	loupe_live_tmp_path(t.policies, sizeof(t.policies), "policies");
	loupe_live_tmp_path(t.events, sizeof(t.events), "events.jsonl");
	loupe_live_tmp_path(t.capture, sizeof(t.capture), "server.pcap");
	loupe_live_tmp_path(t.capture_log, sizeof(t.capture_log), "tcpdump.err");
	LOUPE_LIVE_CHECK(mkdir(t.policies, 0700) == 0, "mkdir: %s", strerror(errno));
}

TestSuite(policy_evasion, .init = setup, .fini = teardown, .timeout = 180);

/* ------------------------------------------------------------------ pods, servers, routes */

/* The server's gateway: the "via" of its route to its own subnet. */
static void server_gateway(char *buf, size_t size)
{
	char *argv[] = { "ip", "-n", server.ns, "-4", "route", "show", NULL }, *out, *via;

	out = loupe_live_must_run(argv, "server-routes", 5);
	via = strstr(out, " via ");
	cr_assert_not_null(via, "the server pod has no route through a gateway:\n%s", out);
	cr_assert_eq(sscanf(via, " via %15s", buf), 1);
	(void)size;
	free(out);
}

/*
 * Both pods, httpd.py and openssl s_server in the server pod (one connection at a time each:
 * a denied connection is ended from the server's side after each case, see end_on_server()),
 * and the raw client's address routed as the comment at the top says.
 */
static void pods_up(void)
{
	struct loupe_live_pod *pods[] = { &server, &client };
	char gw[INET_ADDRSTRLEN], mac[18], *fwd;

	loupe_live_pods_up(pods, 2);
	loupe_live_pods_serve("server", "http", "8080", "serve-http");
	loupe_live_pods_serve("server", "tls", "443", "serve-tls");

	/*
	 * A pod that forwards would answer the server's packets for the address it does not own
	 * (ICMP unreachable: it has no route there); one that does not drops them silently. The
	 * pod is the test's own: its eth0 stops forwarding (Debian's hosts forward, and a new
	 * namespace inherits that).
	 */
	{
		char *argv[] = { "ip",
				 "netns",
				 "exec",
				 client.ns,
				 "sysctl",
				 "-n",
				 "net.ipv4.conf.eth0.forwarding",
				 NULL };

		cr_assert_eq(
			loupe_live_sh("ip netns exec %s sysctl -qw net.ipv4.conf.eth0.forwarding=0",
				      client.ns),
			0, "forwarding off in the client pod");
		fwd = loupe_live_must_run(argv, "client-forwarding", 5);
		cr_assert_eq(atoi(fwd), 0,
			     "the client pod forwards IPv4: it would answer for " RAW_SRC);
		free(fwd);
	}
	cr_assert_eq(loupe_rawtcp_if_mac(client.ns, "eth0", t.pod_mac), 0, "the pod's MAC");
	cr_assert_eq(loupe_rawtcp_if_mac(loupe_live.node, client.host_if, t.gw_mac), 0,
		     "the veth's MAC");
	mac_text(t.pod_mac, mac);
	cr_assert_eq(loupe_live_sh("ip -n %s route add " RAW_SRC "/32 dev %s", loupe_live.node,
				   client.host_if),
		     0, "route " RAW_SRC " to %s on the node", client.host_if);
	cr_assert_eq(loupe_live_sh("ip -n %s neigh replace " RAW_SRC
				   " lladdr %s dev %s nud permanent",
				   loupe_live.node, mac, client.host_if),
		     0, "neighbour " RAW_SRC " on the node");
	server_gateway(gw, sizeof(gw));
	cr_assert_eq(
		loupe_live_sh("ip -n %s route add " RAW_SRC "/32 via %s dev eth0", server.ns, gw),
		0, "route " RAW_SRC " in the server pod");
}

/* tcpdump in the server pod: every TCP packet from the raw client that reached the server. */
static void capture_start(void)
{
	char out[PATH_MAX];
	char *argv[] = { "ip",
			 "netns",
			 "exec",
			 server.ns,
			 "tcpdump",
			 "-i",
			 "eth0",
			 "-n",
			 "-U",
			 "--immediate-mode",
			 "-s",
			 "2048",
			 "-B",
			 "16384",
			 "-w",
			 t.capture,
			 "tcp and src host " RAW_SRC,
			 NULL };

	loupe_live_tmp_path(out, sizeof(out), "tcpdump.out");
	t.tcpdump = loupe_live_tcpdump_start(argv, out, t.capture_log, CAPTURE_S);
}

/*
 * Stops tcpdump once it has written everything: a last connection from the raw client (a
 * marker) is in the file, so every earlier packet is. Then checks that it lost nothing.
 */
static void capture_stop(void)
{
	struct loupe_rawtcp_cfg cfg = { .netns = client.ns,
					.ifname = "eth0",
					.src = RAW_SRC,
					.dst = server.v4,
					.sport = MARKER_PORT,
					.dport = HTTP_PORT };
	struct loupe_rawtcp *c = NULL;
	double end = loupe_live_now_s() + CAPTURE_S;
	char *log;
	int st;

	memcpy(cfg.gw_mac, t.gw_mac, 6);
	cr_assert_eq(loupe_rawtcp_open(&cfg, &c), 0);
	st = loupe_rawtcp_connect(c, CONNECT_MS);
	loupe_rawtcp_free(c);
	cr_assert_eq(st, 0, "the marker connection: %s", strerror(-st));
	while (!loupe_live_capture_has(t.capture, MARKER_PORT)) {
		cr_assert(loupe_live_now_s() < end,
			  "tcpdump did not write the marker within %.0f s", CAPTURE_S);
		loupe_live_pause_ms(10);
	}
	st = loupe_live_proc_stop(t.tcpdump, SIGINT, CAPTURE_S);
	t.tcpdump = 0;
	log = loupe_live_slurp(t.capture_log);
	cr_assert_eq(loupe_live_exit_code(st), 0, "tcpdump: exit %d:\n%s", loupe_live_exit_code(st),
		     log);
	cr_assert(strstr(log, "\n0 packets dropped by kernel"), "tcpdump lost packets:\n%s", log);
	free(log);
}

/* ------------------------------------------------------------------ the policy and agent */

static void write_policy(void)
{
	char text[2048], path[PATH_MAX];

	snprintf(text, sizeof(text),
		 "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
		 "\"metadata\":{\"name\":\"evasion\"},"
		 "\"spec\":{\"priority\":10,\"podSelector\":{\"interfaces\":[\"%s\"]},"
		 "\"defaultAction\":\"allow\",\"rules\":["
		 "{\"name\":\"deny-host\",\"direction\":\"egress\","
		 "\"match\":{\"http\":{\"hosts\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		 "{\"name\":\"deny-sni\",\"direction\":\"egress\","
		 "\"match\":{\"tls\":{\"sni\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		 "{\"name\":\"allow-host\",\"direction\":\"egress\","
		 "\"match\":{\"http\":{\"hosts\":[\"" HOST_OK "\"]}},\"action\":\"allow\"},"
		 "{\"name\":\"allow-sni\",\"direction\":\"egress\","
		 "\"match\":{\"tls\":{\"sni\":[\"" HOST_OK "\"]}},\"action\":\"allow\"}]}}\n",
		 client.host_if);
	snprintf(path, sizeof(path), "%s/evasion.json", t.policies);
	loupe_live_write_file(path, text);
}

static void agent_start(void)
{
	const struct loupe_live_agent agent = { .policy = t.policies,
						.events = t.events,
						.metrics = METRICS };
	char needle[64];

	loupe_live_agent_start(&agent);
	loupe_live_agent_wait("msg=\"policies applied\" trigger=start", 1, ATTACH_S);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", client.host_if);
	loupe_live_agent_wait(needle, 1, ATTACH_S);
}

/* The value of @series in the agent's /metrics, or -1. */
static long long metric(const char *series)
{
	char *argv[] = { "ip",
			 "netns",
			 "exec",
			 loupe_live.node,
			 "curl",
			 "-sS",
			 "-m",
			 "5",
			 "http://" METRICS "/metrics",
			 NULL };
	char *m = loupe_live_must_run(argv, "metrics", 10), *needle, *s;
	long long v = -1;

	cr_assert(asprintf(&needle, "\n%s ", series) > 0);
	s = strstr(m, needle);
	if (s)
		sscanf(s + strlen(needle), "%lld", &v);
	free(needle);
	free(m);
	return v;
}

/* ------------------------------------------------------------------ the payloads */

/* Where the pieces of a request are: offsets the splits are made at. */
enum anchor {
	AT_METHOD,     /* "GE|T" */
	AT_PATH,       /* inside the request target */
	AT_LINE_END,   /* right after the request line's CRLF */
	AT_HOST_KEY,   /* "Ho|st:" */
	AT_HOST_VALUE, /* "Host: den|ied..." */
	AT_HOST_EOL,   /* between the CR and the LF that end the Host line */
	AT_LAST,       /* the last byte alone (the blank line's LF, the record's last byte) */
	AT_RECORD_HDR, /* inside the TLS record header */
	AT_HS_HDR,     /* inside the handshake header */
	AT_SNI_EXT,    /* right before the server_name extension */
	AT_SNI_NAME,   /* inside the server name */
	AT_RECORD_2,   /* where a second record begins (a ClientHello in two records) */
	AT_N,
};

struct payload {
	uint8_t buf[1024];
	uint32_t len;
	/*
	 * The byte whose arrival makes the request complete for the datapath (docs/policy.md,
	 * "When a flow is judged": the Host line has ended, the record is whole). For HTTP the
	 * line's CR already ends the value (what loupe does) and its LF ends the line (what the
	 * docs say): either is right, and @complete_late is the LF. For TLS both are the last byte.
	 */
	uint32_t complete, complete_late;
	uint32_t at[AT_N];
};

static uint32_t find(const struct payload *p, const char *s)
{
	const char *hit = strcasestr((const char *)p->buf, s);

	cr_assert_not_null(hit, "'%s' not in the payload", s);
	return (const uint8_t *)hit - p->buf;
}

/* A GET with a Host line (not the first header): @key (NULL: "Host: "), @host, @tail. */
static void http_request(struct payload *p, const char *path, const char *key, const char *host,
			 const char *tail)
{
	char line[128];
	uint32_t eol;

	snprintf(line, sizeof(line), "%s%s%s", key ? key : "Host: ", host, tail ? tail : "");
	p->len =
		snprintf((char *)p->buf, sizeof(p->buf),
			 "GET %s HTTP/1.1\r\nUser-Agent: loupe-rawtcp\r\n%s\r\nAccept: */*\r\n\r\n",
			 path, line);
	eol = find(p, line) + strlen(line);
	p->at[AT_METHOD] = 2;
	p->at[AT_PATH] = 4 + 5;
	p->at[AT_LINE_END] = find(p, "\r\n") + 2;
	p->at[AT_HOST_KEY] = find(p, "host:") + 2;
	p->at[AT_HOST_VALUE] = find(p, host) + 3;
	p->at[AT_HOST_EOL] = eol + 1;
	p->at[AT_LAST] = p->len - 1;
	p->complete = eol;
	p->complete_late = eol + 1;
}

static void put16(uint8_t *b, uint32_t v)
{
	b[0] = v >> 8;
	b[1] = v & 0xff;
}

/*
 * A ClientHello that openssl s_server answers (TLS 1.3 with a 1.2 fallback, x25519 and
 * P-256, the usual signature algorithms), @sni in its server_name extension. @two_records:
 * the handshake message is carried by two records, the second beginning right before the
 * server_name extension (RFC 8446 5.1 allows a handshake message in several records).
 */
static void client_hello(struct payload *p, const char *sni, bool two_records)
{
	static const uint8_t suites[] = { 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0,
					  0x2b, 0xc0, 0x2c, 0xc0, 0x2f, 0x00, 0xff };
	static const uint8_t tail[] = {
		0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, /* groups */
		0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,			    /* point formats */
		0x00, 0x0d, 0x00, 0x12, 0x00, 0x10, 0x04, 0x03, 0x08, 0x04, /* signature algs */
		0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06,
		0x01, 0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03, /* supported_versions */
		0x00, 0x2d, 0x00, 0x02, 0x01, 0x01,			    /* psk modes */
		0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, /* key_share */
	};
	uint8_t *b = p->buf;
	size_t n = strlen(sni), len = 0, ext_at, hs_at, cut;

	b[len++] = 0x16; /* handshake record, TLS 1.0 on the outside */
	b[len++] = 0x03;
	b[len++] = 0x01;
	len += 2;
	hs_at = len;
	b[len++] = 0x01; /* client_hello */
	len += 3;
	b[len++] = 0x03;
	b[len++] = 0x03;
	for (int i = 0; i < 32; i++)
		b[len++] = 0xa0 + i; /* random */
	b[len++] = 32;		     /* legacy session id */
	for (int i = 0; i < 32; i++)
		b[len++] = 0x50 + i;
	put16(b + len, sizeof(suites));
	len += 2;
	memcpy(b + len, suites, sizeof(suites));
	len += sizeof(suites);
	b[len++] = 1; /* compression: null */
	b[len++] = 0;
	ext_at = len;
	len += 2;
	p->at[AT_SNI_EXT] = len;
	put16(b + len, 0x0000); /* server_name */
	put16(b + len + 2, n + 5);
	put16(b + len + 4, n + 3);
	b[len + 6] = 0; /* host_name */
	put16(b + len + 7, n);
	memcpy(b + len + 9, sni, n);
	p->at[AT_SNI_NAME] = len + 9 + 4;
	len += 9 + n;
	memcpy(b + len, tail, sizeof(tail));
	len += sizeof(tail);
	for (int i = 0; i < 32; i++)
		b[len++] =
			0x42 + i; /* an x25519 share: any u-coordinate that is not of low order */
	put16(b + ext_at, len - ext_at - 2);
	b[hs_at + 1] = 0;
	put16(b + hs_at + 2, len - hs_at - 4);
	put16(b + 3, len - 5);
	p->at[AT_RECORD_HDR] = 3;
	p->at[AT_HS_HDR] = 5 + 2;
	p->at[AT_RECORD_2] = 0;
	if (two_records) {
		cut = p->at[AT_SNI_EXT];
		memmove(b + cut + 5, b + cut, len - cut);
		b[cut] = 0x16;
		b[cut + 1] = 0x03;
		b[cut + 2] = 0x01;
		put16(b + cut + 3, len - cut);
		put16(b + 3, cut - 5);
		len += 5;
		p->at[AT_RECORD_2] = cut;
		p->at[AT_SNI_EXT] += 5;
		p->at[AT_SNI_NAME] += 5;
	}
	p->len = len;
	p->at[AT_LAST] = len - 1;
	p->complete = p->complete_late = len - 1;
}

/* ------------------------------------------------------------------ the cases */

/* How one request is sent: cut at @cuts (or one byte a segment), pieces sent in @order. */
struct split {
	const char *name;
	bool tls;
	enum anchor cuts[6];
	int n_cuts;
	const char *order; /* piece indices, in the order they are sent; NULL: in order */
	bool bytewise;
	const char *host_key, *host_tail; /* HTTP: around the name in the Host line */
	bool two_records;		  /* TLS: the ClientHello in two records */
	/* cannot be judged, so denied whatever the name (docs/policy.md, "fail closed"): a
	 * POLICY_VERDICT DENY with reason BOUND_EXCEEDED, and no byte of the completing piece
	 * (nor anything after it) reaches the server */
	bool fail_closed;
	enum anchor
		ip_frag; /* not AT_METHOD: the segment in two IP fragments, the second from here */
};

#define CUTS(...)                                                                                  \
	.cuts = { __VA_ARGS__ },                                                                   \
	.n_cuts = sizeof((enum anchor[]){ __VA_ARGS__ }) / sizeof(enum anchor)

static const struct split splits[] = {
	{ .name = "http-whole" },
	{ .name = "http-in-method", CUTS(AT_METHOD) },
	{ .name = "http-in-path", CUTS(AT_PATH) },
	{ .name = "http-after-request-line", CUTS(AT_LINE_END) },
	{ .name = "http-in-host-name", CUTS(AT_HOST_KEY) },
	{ .name = "http-in-host-value", CUTS(AT_HOST_VALUE) },
	{ .name = "http-in-host-crlf", CUTS(AT_HOST_EOL) },
	{ .name = "http-last-byte-alone", CUTS(AT_LAST) },
	{ .name = "http-every-cut",
	  CUTS(AT_METHOD, AT_PATH, AT_LINE_END, AT_HOST_KEY, AT_HOST_VALUE, AT_HOST_EOL) },
	{ .name = "http-byte-by-byte", .bytewise = true },
	{ .name = "http-odd-host-in-value",
	  CUTS(AT_HOST_KEY, AT_HOST_VALUE),
	  .host_key = "hOsT: \t ",
	  .host_tail = ".  " },
	/* out of order: the pieces are A (request line), B (to inside the Host value), C */
	{ .name = "http-last-first", CUTS(AT_LINE_END, AT_HOST_VALUE), .order = "201" },
	{ .name = "http-gap-while-held", CUTS(AT_LINE_END, AT_HOST_VALUE), .order = "021" },
	{ .name = "http-middle-first", CUTS(AT_LINE_END, AT_HOST_VALUE), .order = "102" },
	{ .name = "http-backwards", CUTS(AT_METHOD, AT_LINE_END, AT_HOST_VALUE), .order = "3210" },

	{ .name = "tls-whole", .tls = true },
	{ .name = "tls-in-record-header", .tls = true, CUTS(AT_RECORD_HDR) },
	{ .name = "tls-in-handshake-header", .tls = true, CUTS(AT_HS_HDR) },
	{ .name = "tls-before-sni", .tls = true, CUTS(AT_SNI_EXT) },
	{ .name = "tls-in-sni", .tls = true, CUTS(AT_SNI_NAME) },
	{ .name = "tls-last-byte-alone", .tls = true, CUTS(AT_LAST) },
	{ .name = "tls-every-cut",
	  .tls = true,
	  CUTS(AT_RECORD_HDR, AT_HS_HDR, AT_SNI_EXT, AT_SNI_NAME) },
	{ .name = "tls-byte-by-byte", .tls = true, .bytewise = true },
	/* out of order: A (to inside the handshake header), B (to inside the name), C */
	{ .name = "tls-last-first", .tls = true, CUTS(AT_HS_HDR, AT_SNI_NAME), .order = "201" },
	{ .name = "tls-gap-while-held", .tls = true, CUTS(AT_HS_HDR, AT_SNI_NAME), .order = "021" },
	{ .name = "tls-middle-first", .tls = true, CUTS(AT_HS_HDR, AT_SNI_NAME), .order = "102" },
	/* the handshake message in two records, the SNI in the second */
	{ .name = "tls-two-records", .tls = true, .two_records = true, .fail_closed = true },
	{ .name = "tls-two-records-split",
	  .tls = true,
	  .two_records = true,
	  .fail_closed = true,
	  CUTS(AT_RECORD_2) },
	/* one segment in two IP fragments, the second from the 8-byte boundary at or before the
	 * anchor ("Ho|st:", inside the SNI): the node forwards fragments as they are, the
	 * server reassembles them */
	{ .name = "http-ip-fragments", .ip_frag = AT_HOST_VALUE, .fail_closed = true },
	{ .name = "tls-ip-fragments", .tls = true, .ip_frag = AT_SNI_NAME, .fail_closed = true },
};

#define N_SPLITS (sizeof(splits) / sizeof(splits[0]))

/* One connection: a split, with the allowed or the denied name. */
struct run {
	const struct split *sp;
	bool denied;  /* the denied name */
	bool blocked; /* denied, or a fail-closed split */
	uint16_t sport;
	struct payload p;
	struct loupe_rawtcp_seg plan[LOUPE_RAWTCP_SEGS_MAX];
	size_t n;
	uint32_t last_off;	/* where the piece that completes the request begins */
	uint32_t last_off_late; /* the same for the later byte (see struct payload) */
	uint32_t isn;
	char what[96];
};

static void make_plan(struct run *r)
{
	const struct split *sp = r->sp;
	struct loupe_rawtcp_seg pieces[8];
	uint32_t at = 0;
	size_t n = 0;

	if (sp->bytewise) {
		for (uint32_t i = 0; i < r->p.len; i++)
			r->plan[i] = (struct loupe_rawtcp_seg){ i, 1 };
		r->n = r->p.len;
		r->last_off = r->p.complete;
		r->last_off_late = r->p.complete_late;
		return;
	}
	for (int i = 0; i < sp->n_cuts; i++) {
		uint32_t cut = r->p.at[sp->cuts[i]];

		cr_assert(cut > at && cut < r->p.len, "%s: cut %u out of order", r->what, cut);
		pieces[n++] = (struct loupe_rawtcp_seg){ at, cut - at };
		at = cut;
	}
	pieces[n++] = (struct loupe_rawtcp_seg){ at, r->p.len - at };
	r->n = n;
	for (size_t i = 0; i < n; i++) {
		size_t k = sp->order ? (size_t)(sp->order[i] - '0') : i;

		cr_assert(k < n, "%s: order '%s' names piece %zu of %zu", r->what, sp->order, k, n);
		r->plan[i] = pieces[k];
		if (pieces[k].off <= r->p.complete && r->p.complete < pieces[k].off + pieces[k].len)
			r->last_off = pieces[k].off;
		if (pieces[k].off <= r->p.complete_late &&
		    r->p.complete_late < pieces[k].off + pieces[k].len)
			r->last_off_late = pieces[k].off;
	}
}

/* The server's side of one connection: the socket, killed (ss -K), so that the one-at-a-time
 * servers go on to the next. A denied connection (its RST is dropped too) would otherwise
 * hang there for good; an allowed one is gone already (the client's RST). */
static void end_on_server(const struct run *r)
{
	char filter[64];
	char *argv[] = { "ip",	"netns", "exec",  server.ns, "ss",   "-K", "-t",
			 "dst", RAW_SRC, "dport", "=",	     filter, NULL };

	snprintf(filter, sizeof(filter), "%u", r->sport);
	free(loupe_live_must_run(argv, "ss-kill", 5));
}

static bool server_hello(const uint8_t *rx, uint32_t len)
{
	return len >= 6 && rx[0] == 0x16 && rx[1] == 0x03 && rx[5] == 0x02;
}

static bool got_server_hello(const struct loupe_rawtcp *c, void *arg)
{
	uint32_t len;
	const uint8_t *rx = loupe_rawtcp_rx(c, &len);

	(void)arg;
	return server_hello(rx, len);
}

struct denied_wait {
	uint32_t retransmits; /* sent again this often: long enough */
	uint32_t acked_max;   /* acknowledged past this, or answered: through, no use waiting */
};

static bool denied_done(const struct loupe_rawtcp *c, void *arg)
{
	const struct denied_wait *w = arg;
	struct loupe_rawtcp_stats st = loupe_rawtcp_stats(c);

	return st.retransmits >= w->retransmits || st.acked > w->acked_max || st.rx_len;
}

/*
 * Runs one connection and checks what the client saw: an allowed request is acknowledged
 * whole and answered; a denied one is never acknowledged past the piece that completes it,
 * however often that piece is sent again, and gets no answer.
 */
static void run_one(struct run *r)
{
	struct loupe_rawtcp_cfg cfg = {
		.netns = client.ns,
		.ifname = "eth0",
		.src = RAW_SRC,
		.dst = server.v4,
		.sport = r->sport,
		.dport = r->sp->tls ? TLS_PORT : HTTP_PORT,
	};
	struct loupe_rawtcp *c = NULL;
	struct loupe_rawtcp_stats st;
	uint32_t rx_len;
	int err;

	memcpy(cfg.gw_mac, t.gw_mac, 6);
	if (r->sp->ip_frag)
		cfg.frag_at = (20 + r->p.at[r->sp->ip_frag]) / 8 * 8; /* TCP header: 20 bytes */
	err = loupe_rawtcp_open(&cfg, &c);
	cr_assert_eq(err, 0, "%s: raw socket: %s", r->what, strerror(-err));
	err = loupe_rawtcp_connect(c, CONNECT_MS);
	if (err)
		loupe_rawtcp_free(c);
	cr_assert_eq(err, 0, "%s: no handshake with %s:%u: %s", r->what, server.v4, cfg.dport,
		     strerror(-err));
	r->isn = loupe_rawtcp_stats(c).isn;
	err = loupe_rawtcp_send_plan(c, r->p.buf, r->p.len, r->plan, r->n);
	if (err)
		loupe_rawtcp_free(c);
	cr_assert_eq(err, 0, "%s: send: %s", r->what, strerror(-err));

	if (!r->blocked) {
		err = loupe_rawtcp_wait_acked(c, r->p.len, ANSWER_MS);
		if (!err && r->sp->tls)
			err = loupe_rawtcp_pump(c, got_server_hello, NULL, ANSWER_MS);
		else if (!err)
			err = loupe_rawtcp_wait_rx(c, "\r\n\r\nok\n", 7, ANSWER_MS);
		st = loupe_rawtcp_stats(c);
		loupe_rawtcp_rx(c, &rx_len);
		loupe_rawtcp_free(c);
		cr_expect_eq(err, 0,
			     "%s: allowed, but the server acknowledged %u of %u bytes and answered "
			     "%u bytes (%u segments, %u sent again, reset %d)",
			     r->what, st.acked, r->p.len, rx_len, st.sent, st.retransmits,
			     st.reset);
		return;
	}

	/*
	 * However often the completing piece comes, the server must neither acknowledge it nor
	 * answer. Sent in order, it is judged on its first sending; once the flow is denied the
	 * server's ACKs of what came before are dropped too, so the client may go on sending
	 * earlier pieces (the capture says what arrived). Sent out of order, it is dropped as
	 * such until the pieces before it passed (the flow is still pending, their ACKs come
	 * back): from there it is sent in order, and judged.
	 */
	err = 0;
	if (r->sp->order)
		err = loupe_rawtcp_wait_acked(c, r->last_off, ANSWER_MS);
	st = loupe_rawtcp_stats(c);
	if (!err) {
		struct denied_wait w = { st.retransmits + 2, r->last_off_late };

		err = loupe_rawtcp_pump(c, denied_done, &w, RETRANSMIT_MS);
	}
	st = loupe_rawtcp_stats(c);
	loupe_rawtcp_rx(c, &rx_len);
	loupe_rawtcp_free(c);
	cr_expect_eq(err, 0,
		     "%s: the completing piece was not sent again in order: the server "
		     "acknowledged %u bytes, it begins at %u; %u sent again",
		     r->what, st.acked, r->last_off, st.retransmits);
	cr_expect_leq(st.acked, r->last_off_late,
		      "%s: DENIED REQUEST GOT THROUGH: the server acknowledged %u of %u bytes; the "
		      "completing piece begins at %u",
		      r->what, st.acked, r->p.len, r->last_off);
	cr_expect_eq(rx_len, 0, "%s: DENIED REQUEST GOT THROUGH: the server answered %u bytes",
		     r->what, rx_len);
	cr_expect(!st.reset, "%s: the server reset the connection", r->what);
}

/* ------------------------------------------------------------------ the server's witness */

/* Marks in @have[] the payload bytes of run @r that the capture shows reaching the server,
 * and checks each against what was sent. */
static void capture_bytes(struct run *runs, size_t n_runs, bool (*have)[1024])
{
	char *argv[] = { "tshark",	"-r",		t.capture,     "-T",	      "fields",
			 "-E",		"separator=/t", "-e",	       "tcp.srcport", "-e",
			 "tcp.seq_raw", "-e",		"tcp.payload", NULL };
	char *out = loupe_live_must_run(argv, "tshark", 60), *line, *nl;
	size_t rows = 0;

	for (line = out; (nl = strchr(line, '\n')); line = nl + 1) {
		unsigned sport;
		unsigned long seq;
		char hex[4096] = "";
		struct run *r = NULL;

		*nl = '\0';
		if (sscanf(line, "%u\t%lu\t%4095s", &sport, &seq, hex) < 2)
			continue;
		rows++;
		for (size_t i = 0; i < n_runs; i++)
			if (runs[i].sport == sport)
				r = &runs[i];
		if (!r || !hex[0])
			continue;
		for (size_t k = 0; hex[2 * k] && hex[2 * k + 1]; k++) {
			uint32_t off = (uint32_t)seq - (r->isn + 1) + k;
			unsigned byte;

			cr_assert_eq(sscanf(hex + 2 * k, "%2x", &byte), 1);
			cr_assert_lt(off, r->p.len, "%s: the server got byte %u of %u", r->what,
				     off, r->p.len);
			cr_expect_eq(byte, r->p.buf[off], "%s: byte %u differs at the server",
				     r->what, off);
			have[r - runs][off] = true;
		}
	}
	cr_assert_gt(rows, 0, "the capture in the server pod is empty");
	free(out);
}

static void expect_at_server(struct run *runs, size_t n_runs)
{
	static bool have[2 * N_SPLITS][1024];
	char *log, path[PATH_MAX], needle[128];

	capture_bytes(runs, n_runs, have);
	for (size_t i = 0; i < n_runs; i++) {
		const struct run *r = &runs[i];
		uint32_t first_missing = r->p.len, last_got = 0;
		bool any = false;

		for (uint32_t off = 0; off < r->p.len; off++) {
			if (have[i][off]) {
				any = true;
				last_got = off;
			} else if (first_missing == r->p.len) {
				first_missing = off;
			}
		}
		if (r->blocked) {
			/* the pieces before the completing one, and nothing from there on (a
			 * fail-closed split may be stopped sooner) */
			cr_expect(!any || last_got < r->last_off_late,
				  "%s: DENIED REQUEST REACHED THE SERVER: it got byte %u; the "
				  "completing piece is [%u, ...) of %u bytes",
				  r->what, last_got, r->last_off, r->p.len);
			cr_expect(
				first_missing == r->last_off || first_missing == r->last_off_late ||
					(r->sp->fail_closed && first_missing <= r->last_off),
				"%s: the server got bytes [0, %u) (and byte %u), expected [0, %u)",
				r->what, first_missing, last_got, r->last_off);
		} else {
			cr_expect_eq(first_missing, r->p.len,
				     "%s: allowed, but byte %u never reached the server", r->what,
				     first_missing);
		}
	}

	/* httpd.py's log: each allowed request served, no denied one */
	snprintf(path, sizeof(path), "/run/loupe-pods/%s/pods/server/servers/http-8080-v4.log",
		 loupe_live.prefix);
	log = loupe_live_slurp(path);
	for (size_t i = 0; i < n_runs; i++) {
		if (runs[i].sp->tls)
			continue;
		snprintf(needle, sizeof(needle), "\"GET /evasion/%s/%s HTTP/1.1\" 200",
			 runs[i].sp->name, runs[i].denied ? "denied" : "allowed");
		cr_expect_eq(loupe_live_count(log, needle), runs[i].blocked ? 0u : 1u,
			     "httpd.py's log has %zu of '%s'", loupe_live_count(log, needle),
			     needle);
	}
	free(log);
}

/* ------------------------------------------------------------------ the agent's verdicts */

/* The name as reported (as the request wrote it) and the name expected: one trailing dot aside,
 * in any case. */
static bool names_equal(const char *got, const char *want)
{
	size_t n = strlen(want);

	return !strncasecmp(got, want, n) && (!got[n] || (got[n] == '.' && !got[n + 1]));
}

static bool verdict_of(struct json_object *o, const struct run *r)
{
	struct json_object *v = loupe_json_obj(o, "verdict");
	const char *rule = r->sp->tls ? (r->denied ? "deny-sni" : "allow-sni")
				      : (r->denied ? "deny-host" : "allow-host");
	const char *name = r->denied ? HOST_BAD : HOST_OK;
	struct json_object *m = loupe_json_obj(o, r->sp->tls ? "tls" : "http");

	if (r->sp->fail_closed)
		return v && !strcmp(loupe_json_str(o, "kind"), "POLICY_VERDICT") &&
		       loupe_json_u64(o, "srcPort") == r->sport &&
		       !strcmp(loupe_json_str(v, "action"), "DENY") &&
		       !strcmp(loupe_json_str(v, "reason"), "BOUND_EXCEEDED");
	return v && !strcmp(loupe_json_str(o, "kind"), "POLICY_VERDICT") &&
	       loupe_json_u64(o, "srcPort") == r->sport &&
	       !strcmp(loupe_json_str(o, "srcIp"), RAW_SRC) &&
	       !strcmp(loupe_json_str(v, "action"), r->denied ? "DENY" : "ALLOW") &&
	       !strcmp(loupe_json_str(v, "policy"), "evasion") &&
	       !strcmp(loupe_json_str(v, "rule"), rule) &&
	       names_equal(loupe_json_str(m, r->sp->tls ? "sni" : "host"), name);
}

/* Every connection has its POLICY_VERDICT, naming the rule that decided, in the agent's output. */
static void expect_verdicts(struct run *runs, size_t n_runs)
{
	double end = loupe_live_now_s() + EVENT_S;
	bool found[2 * N_SPLITS];
	size_t missing;

	for (;;) {
		char *text = loupe_live_slurp(t.events), *line, *nl;

		memset(found, 0, sizeof(found));
		for (line = text; (nl = strchr(line, '\n')); line = nl + 1) {
			struct json_object *o;

			*nl = '\0';
			o = json_tokener_parse(line);
			for (size_t i = 0; o && i < n_runs; i++)
				found[i] |= verdict_of(o, &runs[i]);
			json_object_put(o);
		}
		free(text);
		missing = 0;
		for (size_t i = 0; i < n_runs; i++)
			missing += !found[i];
		if (!missing || loupe_live_now_s() > end)
			break;
		loupe_live_pause_ms(100);
	}
	for (size_t i = 0; i < n_runs; i++)
		cr_expect(found[i], "%s: no POLICY_VERDICT %s naming rule %s-%s for port %u in %s",
			  runs[i].what, runs[i].blocked ? "DENY" : "ALLOW",
			  runs[i].sp->fail_closed ? "(fail closed, no rule: BOUND_EXCEEDED)"
			  : runs[i].denied	  ? "deny"
						  : "allow",
			  runs[i].sp->tls ? "sni" : "host", runs[i].sport, t.events);
}

/* ------------------------------------------------------------------ the test */

Test(policy_evasion, split_requests_are_judged_whole)
{
	static struct run runs[2 * N_SPLITS];
	size_t n_runs = 0;
	double t0 = loupe_live_now_s(), t1;
	long long ooo;

	pods_up();
	write_policy();
	agent_start();
	capture_start();
	t1 = loupe_live_now_s();
	fprintf(stderr,
		"[evasion] raw client " RAW_SRC " in pod %s (%s), server %s; setup %.1f s\n",
		client.ns, client.host_if, server.v4, t1 - t0);

	for (size_t i = 0; i < N_SPLITS; i++) {
		/* allowed first: the server is known to answer that split before it is denied */
		for (int denied = 0; denied < 2; denied++) {
			struct run *r = &runs[n_runs];
			char path[96];

			r->sp = &splits[i];
			r->denied = denied;
			r->blocked = denied || r->sp->fail_closed;
			r->sport = SPORT_BASE + n_runs;
			snprintf(r->what, sizeof(r->what), "%s (%s, port %u)", r->sp->name,
				 denied ? "denied" : "allowed", r->sport);
			if (r->sp->tls) {
				client_hello(&r->p, denied ? HOST_BAD : HOST_OK,
					     r->sp->two_records);
			} else {
				snprintf(path, sizeof(path), "/evasion/%s/%s", r->sp->name,
					 denied ? "denied" : "allowed");
				http_request(&r->p, path, r->sp->host_key,
					     denied ? HOST_BAD : HOST_OK, r->sp->host_tail);
			}
			make_plan(r);
			n_runs++;
			run_one(r);
			end_on_server(r);
		}
	}
	fprintf(stderr, "[evasion] %zu connections in %.1f s\n", n_runs, loupe_live_now_s() - t1);

	capture_stop();
	expect_at_server(runs, n_runs);
	expect_verdicts(runs, n_runs);
	/* the out-of-order cases went through the datapath's out-of-order path */
	ooo = metric("loupe_policy_out_of_order_segments_total");
	cr_expect_gt(ooo, 0, "loupe_policy_out_of_order_segments_total is %lld", ooo);
	fprintf(stderr, "[evasion] %.1f s in all; %lld segments dropped out of order\n",
		loupe_live_now_s() - t0, ooo);
}
