// SPDX-License-Identifier: Apache-2.0
/*
 * Hitless restart with a deny policy in force, live: while a bounded client loop in a CNI pod
 * keeps opening denied connections (a denied peer address, a denied port, a denied HTTP Host)
 * and allowed ones, the agent is killed with SIGKILL and started again, three times, on the
 * same pins. The pinned maps and the attached filters outlive the agent (docs/agent.md,
 * "restart"), so not one denied packet may reach the server in the whole run, and the allowed
 * requests must keep being answered, the windows without an agent included. Witnesses: tcpdump
 * in the server pod (every packet that arrived), the server's sockets (a leaked SYN is
 * answered, a leaked request is read), the client's view (a denied connection that completed).
 * Not for the verdicts themselves (test_policy_live) nor for restarts without a policy
 * (test_agent).
 *
 * Names carry the Criterion runner's pid (loupe-pr<pid>, lpr<pid>-, /tmp/loupe-pr-<pid>-*):
 * the runner sweeps them after the run, and a later run sweeps those of runs that died. Every
 * wait has a deadline; none is a fixed sleep.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "live.h"

#define ID_ENV	"LOUPE_TEST_POLICY_RESTART_ID" /* the runner's pid, set once (PRE_ALL) */
#define METRICS "127.0.0.1:9752"	       /* in the node's own namespace: no clash */

/* Deadlines and bounds, seconds unless said. */
#define ATTACH_S   5.0
#define CAPTURE_S  10.0
#define PROGRESS_S 10.0 /* the loop shows progress (attempts, answers) */
#define LOOP_MAX_S 40.0 /* the client loop stops by itself after this long... */
#define LOOP_MAX_N 4000 /* ...or after this many denied attempts of one kind */
#define RESTARTS   3
#define WINDOW_N   5 /* attempts of each kind wanted in each window: no agent, new agent */

#define HOST_OK	       "allowed.example.test"
#define HOST_BAD       "denied.example.test"
#define PORT_OK	       8080  /* httpd.py, IPv4 and IPv6; IPv6 is denied by address */
#define PORT_DENIED    8081  /* httpd.py, denied by port */
#define PORT_HOST      8082  /* the test's own listener: denied by Host */
#define MARKER_PORT    40999 /* the last connection: once tcpdump wrote it, it wrote all */
#define TIMESTAMPS_MAX 8192

/* What the client loop did, shared with the test (MAP_SHARED before the fork). */
enum kind {
	K_ADDR, /* to the server's IPv6 address: denied by cidrs */
	K_PORT, /* to port 8081: denied by port */
	K_HOST, /* Host denied.example.test to 8082: denied on the request */
	K_OK,	/* Host allowed.example.test to 8080: answered */
	K_N,
};

static const char *const kind_name[K_N] = { "denied-address", "denied-port", "denied-host",
					    "allowed" };

struct loop_state {
	volatile int stop;
	volatile int done;
	volatile uint32_t attempts[K_N];
	volatile uint32_t leaked[K_N];	/* a denied connection completed or got an answer */
	volatile uint32_t no_handshake; /* a Host-denied connection never got to its request */
	volatile uint32_t failed;	/* an allowed request without its answer */
	volatile uint32_t errors;	/* socket calls that failed */
	volatile uint32_t n_ok;		/* allowed answers, their times below */
	volatile double ok_at[TIMESTAMPS_MAX]; /* CLOCK_MONOTONIC, s */
};

/* loupe_live: the node (loupe-pr<id>), pods (lpr<id>-), temp dir (/tmp/loupe-pr-<id>-*) */
static struct {
	char policies[112];
	char capture[112];
	char capture_log[112];
	pid_t tcpdump;
	pid_t loop;
	int listen_fd;
	struct loop_state *shared;
} t;

static struct loupe_live_pod server = { .name = "server" }, client = { .name = "client" };

static void teardown(void);

static const struct loupe_live_names live_names = {
	.id_env = ID_ENV,
	.node = "loupe-pr",
	.pods = "lpr",
	.tmp = "loupe-pr",
	.teardown = teardown,
};

/* ------------------------------------------------------------------ setup and cleanup */

static void teardown(void)
{
	if (t.loop > 0) {
		kill(t.loop, SIGKILL);
		loupe_live_proc_wait(t.loop, 5);
	}
	if (t.tcpdump > 0)
		loupe_live_proc_stop(t.tcpdump, SIGINT, 5);
	t.loop = t.tcpdump = 0;
	if (t.listen_fd > 0)
		close(t.listen_fd);
	if (t.shared && t.shared != MAP_FAILED)
		munmap(t.shared, sizeof(*t.shared));
	loupe_live_teardown();
	memset(&t, 0, sizeof(t));
}

LOUPE_LIVE_PRE_ALL(&live_names)
LOUPE_LIVE_POST_ALL(&live_names)

static const char *missing_tool(void)
{
	static const char *const tools[] = {
		"/usr/bin/python3",   "/usr/bin/tcpdump",	 "/usr/bin/tshark",
		"/usr/lib/cni/ptp",   "/usr/lib/cni/host-local", "/usr/lib/cni/loopback",
		LOUPE_LIVE_AGENT_BIN, LOUPE_LIVE_PODS,
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
		cr_skip_test(
			"%s is missing (python3, tcpdump, tshark, containernetworking-plugins; "
			"the agent: make build)",
			tool);
	t.listen_fd = -1;
	loupe_live_setup(&live_names);
	loupe_live_tmp_path(t.policies, sizeof(t.policies), "policies");
	loupe_live_tmp_path(t.capture, sizeof(t.capture), "server.pcap");
	loupe_live_tmp_path(t.capture_log, sizeof(t.capture_log), "tcpdump.err");
	LOUPE_LIVE_CHECK(mkdir(t.policies, 0700) == 0, "mkdir: %s", strerror(errno));
	t.shared = mmap(NULL, sizeof(*t.shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	LOUPE_LIVE_CHECK(t.shared != MAP_FAILED, "mmap: %s", strerror(errno));
}

TestSuite(policy_restart, .init = setup, .fini = teardown, .timeout = 180);

/* ------------------------------------------------------------------ pods and servers */

/* Runs @fn(@arg) with this thread in the network namespace @ns; its result, or -errno. */
static int in_netns(const char *ns, int (*fn)(void *), void *arg)
{
	char path[PATH_MAX];
	int here = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), there, rc;

	snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
	there = open(path, O_RDONLY | O_CLOEXEC);
	if (here < 0 || there < 0 || setns(there, CLONE_NEWNET)) {
		rc = -errno;
		goto out;
	}
	rc = fn(arg);
	if (setns(here, CLONE_NEWNET))
		abort(); /* the rest of the test would run in the pod */
out:
	if (there >= 0)
		close(there);
	if (here >= 0)
		close(here);
	return rc;
}

/* The Host-denied requests' server: a socket of the test's, never served until the end, with
 * room for every connection of the run in its queue. */
static int listen_8082(void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(PORT_HOST) };
	int fd, one = 1;

	(void)arg;
	if (inet_pton(AF_INET, server.v4, &sa.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4096)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static void pods_up(void)
{
	struct loupe_live_pod *pods[] = { &server, &client };

	loupe_live_pods_up(pods, 2);
	loupe_live_pods_serve("server", "http", "8080", "serve-8080");
	loupe_live_pods_serve("server", "http", "8081", "serve-8081");
	t.listen_fd = in_netns(server.ns, listen_8082, NULL);
	cr_assert_geq(t.listen_fd, 0, "listen on %s:%d: %s", server.v4, PORT_HOST,
		      strerror(-t.listen_fd));
}

/* ------------------------------------------------------------------ the capture */

static void capture_start(void)
{
	char out[PATH_MAX];
	char *argv[] = { "ip",	 "netns", "exec", server.ns,	      "tcpdump", "-i",
			 "eth0", "-n",	  "-U",	  "--immediate-mode", "-s",	 "128",
			 "-B",	 "16384", "-w",	  t.capture,	      "tcp",	 NULL };

	loupe_live_tmp_path(out, sizeof(out), "tcpdump.out");
	t.tcpdump = loupe_live_tcpdump_start(argv, out, t.capture_log, CAPTURE_S);
}

static int connect_marker(void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(PORT_OK) };
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(MARKER_PORT) };
	struct timeval tv = { .tv_sec = 3 };
	int fd, rc = 0, one = 1;

	(void)arg;
	inet_pton(AF_INET, server.v4, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (bind(fd, (struct sockaddr *)&me, sizeof(me)) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * Stops tcpdump once it has written everything: a last, allowed connection from the client
 * pod (a marker) is in the file, so every earlier packet is. Then checks that it lost nothing.
 */
static void capture_stop(void)
{
	double end = loupe_live_now_s() + CAPTURE_S;
	char *log;
	int st;

	st = in_netns(client.ns, connect_marker, NULL);
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

/* What reached the server from the client, by what it was. */
struct arrived {
	long addr;	/* any packet to the server's IPv6 address, port 8080 */
	long port;	/* any packet to port 8081 */
	long host_data; /* a packet with payload to port 8082 */
	long host_syn;	/* SYNs to port 8082: the Host-denied connections that began */
	long ok_data;	/* packets with payload to port 8080 over IPv4 */
};

static struct arrived capture_read(void)
{
	char *argv[] = { "tshark",	 "-r", t.capture,	"-T", "fields",	  "-E",
			 "separator=/t", "-e", "ip.src",	"-e", "ipv6.src", "-e",
			 "tcp.dstport",	 "-e", "tcp.flags.syn", "-e", "tcp.len",  NULL };
	char *out = loupe_live_must_run(argv, "tshark", 60), *line, *nl;
	struct arrived a = { 0 };

	for (line = out; (nl = strchr(line, '\n')); line = nl + 1) {
		char *f[5], *p = line;
		const char *src4, *src6;
		unsigned port, syn, len;
		int n = 0;

		/* fields may be empty: split on tabs by hand */
		*nl = '\0';
		f[n++] = p;
		while (n < 5 && (p = strchr(p, '\t'))) {
			*p++ = '\0';
			f[n++] = p;
		}
		if (n != 5)
			continue;
		src4 = f[0];
		src6 = f[1];
		port = strtoul(f[2], NULL, 10);
		syn = !strcmp(f[3], "1") || !strcmp(f[3], "True");
		len = strtoul(f[4], NULL, 10);
		if (strcmp(src4, client.v4) && strcmp(src6, client.v6))
			continue;
		if (src6[0] && port == PORT_OK)
			a.addr++;
		else if (port == PORT_DENIED)
			a.port++;
		else if (port == PORT_HOST && len)
			a.host_data++;
		else if (port == PORT_HOST && syn)
			a.host_syn++;
		else if (port == PORT_OK && len)
			a.ok_data++;
	}
	free(out);
	return a;
}

/* What the Host-denied connections delivered to the server's socket: accepted, bytes. */
static void listener_drain(long *ret_conns, long *ret_bytes)
{
	char buf[4096];
	int fd;

	*ret_conns = *ret_bytes = 0;
	while ((fd = accept4(t.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		ssize_t n;

		(*ret_conns)++;
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			*ret_bytes += n;
		close(fd);
	}
}

/* ------------------------------------------------------------------ the policy and agent */

static void write_policy(void)
{
	char text[2048], path[PATH_MAX];

	snprintf(text, sizeof(text),
		 "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
		 "\"metadata\":{\"name\":\"restart\"},"
		 "\"spec\":{\"priority\":10,\"podSelector\":{\"interfaces\":[\"%s\"]},"
		 "\"defaultAction\":\"allow\",\"rules\":["
		 "{\"name\":\"deny-server-v6\",\"direction\":\"egress\","
		 "\"match\":{\"cidrs\":[\"%s/128\"]},\"action\":\"deny\"},"
		 "{\"name\":\"deny-port\",\"direction\":\"egress\","
		 "\"match\":{\"ports\":[{\"port\":%d,\"protocol\":\"TCP\"}]},\"action\":\"deny\"},"
		 "{\"name\":\"deny-host\",\"direction\":\"egress\","
		 "\"match\":{\"http\":{\"hosts\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		 "{\"name\":\"allow-host\",\"direction\":\"egress\","
		 "\"match\":{\"http\":{\"hosts\":[\"" HOST_OK "\"]}},\"action\":\"allow\"}]}}\n",
		 client.host_if, server.v6, PORT_DENIED);
	snprintf(path, sizeof(path), "%s/restart.json", t.policies);
	loupe_live_write_file(path, text);
}

static void agent_start(int n)
{
	char out[PATH_MAX], events[PATH_MAX], name[32], needle[64];
	const struct loupe_live_agent agent = {
		.policy = t.policies, .events = events, .metrics = METRICS, .out = out
	};

	snprintf(name, sizeof(name), "agent-%d.out", n);
	loupe_live_tmp_path(out, sizeof(out), name);
	snprintf(name, sizeof(name), "agent-%d.err", n);
	loupe_live_tmp_path(loupe_live.agent_log, sizeof(loupe_live.agent_log), name);
	snprintf(name, sizeof(name), "events-%d.jsonl", n);
	loupe_live_tmp_path(events, sizeof(events), name);
	loupe_live_agent_start(&agent);
	loupe_live_agent_wait("msg=\"policies applied\" trigger=start", 1, ATTACH_S);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", client.host_if);
	loupe_live_agent_wait(needle, 1, ATTACH_S);
}

/* ------------------------------------------------------------------ the client loop */

#define SOCKS_MAX 512
#define DENIED_MS 150 /* how long a denied connection is given to get anywhere */
#define ANSWER_MS 2000
#define TICK_MS	  4 /* a new denied connection of each kind */
#define OK_EVERY  5 /* an allowed request every this many ticks, one at a time */

struct conn {
	int fd;
	enum kind kind;
	bool sent;
	double deadline;
	char in[512];
	size_t in_len;
};

static double ms_now(void)
{
	return loupe_live_now_s() * 1e3;
}

static void conn_close(struct conn *c, bool abort_it)
{
	if (abort_it) {
		/* a RST, not a FIN: nothing lingers in the pod (a denied flow's RST is dropped) */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
}

static bool conn_open(struct conn *c, enum kind kind)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	bool v6 = kind == K_ADDR;
	int port = kind == K_PORT ? PORT_DENIED : kind == K_HOST ? PORT_HOST : PORT_OK;

	if (v6) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		inet_pton(AF_INET6, server.v6, &s6->sin6_addr);
	} else {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		inet_pton(AF_INET, server.v4, &s4->sin_addr);
	}
	c->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return false;
	if (connect(c->fd, (struct sockaddr *)&ss, v6 ? sizeof(*s6) : sizeof(*s4)) &&
	    errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return false;
	}
	c->kind = kind;
	c->sent = false;
	c->in_len = 0;
	c->deadline = ms_now() + (kind == K_OK ? ANSWER_MS : DENIED_MS);
	t.shared->attempts[kind]++;
	return true;
}

/* The request of a Host-denied or an allowed connection, once it is established. */
static void conn_send(struct conn *c, struct loop_state *ls)
{
	char req[160];
	int n = snprintf(req, sizeof(req),
			 "GET /restart/%u HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
			 ls->attempts[c->kind], c->kind == K_OK ? HOST_OK : HOST_BAD);

	if (send(c->fd, req, n, MSG_NOSIGNAL) != n)
		ls->errors++;
	c->sent = true;
	if (c->kind == K_HOST)
		c->deadline = ms_now() + DENIED_MS; /* from the request on */
}

/* What a poll() event means for @c; false when @c is finished. */
static bool conn_event(struct conn *c, short revents, struct loop_state *ls)
{
	int err = 0;
	socklen_t len = sizeof(err);
	ssize_t n;

	if (!c->sent) {
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (revents & (POLLERR | POLLHUP))) {
			if (c->kind == K_OK)
				ls->failed++;
			else if (c->kind == K_HOST)
				ls->no_handshake++;
			conn_close(c, true);
			return false;
		}
		if (!(revents & POLLOUT))
			return true;
		if (c->kind == K_ADDR || c->kind == K_PORT) {
			ls->leaked[c->kind]++; /* a denied SYN was answered */
			conn_close(c, true);
			return false;
		}
		conn_send(c, ls);
		return true;
	}
	if (!(revents & (POLLIN | POLLHUP | POLLERR)))
		return true;
	n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
	if (n > 0) {
		c->in_len += n;
		c->in[c->in_len] = '\0';
	}
	if (c->kind == K_HOST) {
		if (n > 0)
			ls->leaked[K_HOST]++; /* a denied request was answered */
		conn_close(c, true);
		return false;
	}
	if (strstr(c->in, " 200 ") && strstr(c->in, "\r\n\r\nok\n")) {
		if (ls->n_ok < TIMESTAMPS_MAX)
			ls->ok_at[ls->n_ok] = loupe_live_now_s();
		ls->n_ok++;
		conn_close(c, false);
		return false;
	}
	if (n <= 0) {
		ls->failed++;
		conn_close(c, true);
		return false;
	}
	return true;
}

/*
 * The client loop, in a child in the client pod: every TICK_MS a denied connection of each
 * kind, an allowed request every OK_EVERY ticks when none is in flight. Ends when told, or
 * at its bounds. Never asserts: the parent reads what it counted.
 */
static void client_loop(struct loop_state *ls)
{
	static struct conn conns[SOCKS_MAX];
	struct pollfd pfd[SOCKS_MAX];
	double start = ms_now(), next_tick = start;
	unsigned tick = 0;
	bool ok_busy = false;

	for (int i = 0; i < SOCKS_MAX; i++)
		conns[i].fd = -1;
	while (!ls->stop && ms_now() - start < LOOP_MAX_S * 1e3 &&
	       ls->attempts[K_PORT] < LOOP_MAX_N) {
		double now = ms_now();
		int n = 0, map[SOCKS_MAX], wait;

		if (now >= next_tick) {
			next_tick += TICK_MS;
			tick++;
			for (enum kind k = 0; k < K_N; k++) {
				int i;

				if (k == K_OK && (ok_busy || tick % OK_EVERY))
					continue;
				for (i = 0; i < SOCKS_MAX && conns[i].fd >= 0; i++)
					;
				if (i == SOCKS_MAX || !conn_open(&conns[i], k)) {
					ls->errors++;
					continue;
				}
				if (k == K_OK)
					ok_busy = true;
			}
		}
		for (int i = 0; i < SOCKS_MAX; i++) {
			struct conn *c = &conns[i];

			if (c->fd < 0)
				continue;
			if (now >= c->deadline) {
				if (c->kind == K_OK) {
					ls->failed++;
					ok_busy = false;
				} else if (c->kind == K_HOST && !c->sent) {
					ls->no_handshake++;
				}
				conn_close(c, true);
				continue;
			}
			pfd[n] = (struct pollfd){ .fd = c->fd,
						  .events = c->sent ? POLLIN : POLLOUT };
			map[n++] = i;
		}
		wait = (int)(next_tick - ms_now());
		poll(pfd, n, wait > 0 ? wait : 0);
		for (int j = 0; j < n; j++) {
			struct conn *c = &conns[map[j]];

			if (!pfd[j].revents || c->fd < 0)
				continue;
			if (!conn_event(c, pfd[j].revents, ls) && c->kind == K_OK)
				ok_busy = false;
		}
	}
	for (int i = 0; i < SOCKS_MAX; i++)
		if (conns[i].fd >= 0)
			conn_close(&conns[i], true);
	ls->done = 1;
}

static int loop_in_pod(void *arg)
{
	client_loop(arg);
	return 0;
}

static void loop_start(void)
{
	memset(t.shared, 0, sizeof(*t.shared));
	t.loop = fork();
	cr_assert_geq(t.loop, 0, "fork: %s", strerror(errno));
	if (t.loop == 0) {
		int rc = in_netns(client.ns, loop_in_pod, t.shared);

		_exit(rc ? 1 : 0);
	}
}

static void loop_stop(void)
{
	int st;

	t.shared->stop = 1;
	st = loupe_live_proc_wait(t.loop, 10);
	t.loop = 0;
	cr_assert_eq(loupe_live_exit_code(st), 0, "the client loop: exit %d",
		     loupe_live_exit_code(st));
	cr_assert(t.shared->done, "the client loop did not finish");
}

/* Allowed answers completed in [@from, @to] (monotonic seconds). */
static uint32_t ok_between(double from, double to)
{
	uint32_t n = 0, total = t.shared->n_ok;

	for (uint32_t i = 0; i < total && i < TIMESTAMPS_MAX; i++)
		if (t.shared->ok_at[i] >= from && t.shared->ok_at[i] <= to)
			n++;
	return n;
}

/*
 * Waits until the loop made @n more attempts of every denied kind than in @base and got
 * @n_ok more allowed answers: traffic in a window. Fails when the loop stopped or at the
 * deadline.
 */
static void wait_progress(const uint32_t base[K_N], uint32_t base_ok, uint32_t n, uint32_t n_ok,
			  const char *window)
{
	double end = loupe_live_now_s() + PROGRESS_S;

	for (;;) {
		bool enough = t.shared->n_ok >= base_ok + n_ok;

		for (enum kind k = 0; k < K_OK; k++)
			enough = enough && t.shared->attempts[k] >= base[k] + n;
		if (enough)
			return;
		cr_assert(!t.shared->done, "%s: the client loop stopped (its bounds?)", window);
		cr_assert(loupe_live_now_s() < end,
			  "%s: no progress within %.0f s: attempts %u/%u/%u (from %u/%u/%u), "
			  "answers %u (from %u), failed %u",
			  window, PROGRESS_S, t.shared->attempts[K_ADDR],
			  t.shared->attempts[K_PORT], t.shared->attempts[K_HOST], base[K_ADDR],
			  base[K_PORT], base[K_HOST], t.shared->n_ok, base_ok, t.shared->failed);
		loupe_live_pause_ms(2);
	}
}

static void snapshot(uint32_t ret[K_N])
{
	for (enum kind k = 0; k < K_N; k++)
		ret[k] = t.shared->attempts[k];
}

/* ------------------------------------------------------------------ the test */

Test(policy_restart, no_denied_packet_passes_across_sigkill)
{
	uint32_t base[K_N], base_ok, gap_ok[RESTARTS];
	double t0 = loupe_live_now_s(), gap_ms[RESTARTS], killed, ready;
	struct arrived a;
	long conns, bytes;

	pods_up();
	write_policy();
	agent_start(0);
	capture_start();
	loop_start();
	fprintf(stderr, "[restart] client %s/%s on %s, server %s/%s; setup %.1f s\n", client.v4,
		client.v6, client.host_if, server.v4, server.v6, loupe_live_now_s() - t0);
	snapshot(base);
	wait_progress(base, 0, WINDOW_N, 3, "before the first kill");

	for (int i = 0; i < RESTARTS; i++) {
		int st;

		/* no agent: the pinned programs and maps enforce alone */
		killed = loupe_live_now_s();
		kill(loupe_live.agent, SIGKILL);
		st = loupe_live_proc_wait(loupe_live.agent, 10);
		loupe_live.agent = 0;
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the agent: status 0x%x", st);
		snapshot(base);
		base_ok = t.shared->n_ok;
		wait_progress(base, base_ok, WINDOW_N, 1, "no agent");

		/* a new agent on the same pins: it takes the set over, then puts its own in force */
		agent_start(i + 1);
		ready = loupe_live_now_s();
		gap_ms[i] = (ready - killed) * 1e3;
		gap_ok[i] = ok_between(killed, ready);
		snapshot(base);
		base_ok = t.shared->n_ok;
		wait_progress(base, base_ok, WINDOW_N, 1, "after the restart");
	}
	loop_stop();
	capture_stop();
	a = capture_read();
	listener_drain(&conns, &bytes);

	fprintf(stderr,
		"[restart] attempts: %u to the denied address, %u to the denied port, %u with the "
		"denied Host (%u without a handshake), %u allowed (%u answered, %u failed)\n",
		t.shared->attempts[K_ADDR], t.shared->attempts[K_PORT], t.shared->attempts[K_HOST],
		t.shared->no_handshake, t.shared->attempts[K_OK], t.shared->n_ok, t.shared->failed);
	for (int i = 0; i < RESTARTS; i++)
		fprintf(stderr,
			"[restart] restart %d: kill to ready %.0f ms, %u allowed answers in it\n",
			i + 1, gap_ms[i], gap_ok[i]);
	fprintf(stderr,
		"[restart] at the server: %ld to the denied address, %ld to the denied port, %ld "
		"requests with the denied Host (%ld handshakes, %ld accepted, %ld bytes read); %ld "
		"allowed requests; %.1f s in all\n",
		a.addr, a.port, a.host_data, a.host_syn, conns, bytes, a.ok_data,
		loupe_live_now_s() - t0);

	/* not one denied packet reached the server, whatever the client saw */
	cr_expect_eq(a.addr, 0, "%ld packets to the denied address %s reached the server", a.addr,
		     server.v6);
	cr_expect_eq(a.port, 0, "%ld packets to the denied port %d reached the server", a.port,
		     PORT_DENIED);
	cr_expect_eq(a.host_data, 0, "%ld requests with the denied Host reached the server",
		     a.host_data);
	cr_expect_eq(bytes, 0, "the server read %ld bytes of Host-denied requests", bytes);
	for (enum kind k = 0; k < K_OK; k++)
		cr_expect_eq(t.shared->leaked[k], 0, "the client saw %u %s connections get through",
			     t.shared->leaked[k], kind_name[k]);
	/* the denied Host was really asked: handshakes pass, the request is what is dropped */
	cr_expect_gt(a.host_syn, 0, "no Host-denied connection began");
	cr_expect_geq(conns, t.shared->attempts[K_HOST] - t.shared->no_handshake,
		      "the server accepted %ld Host-denied connections of %u", conns,
		      t.shared->attempts[K_HOST] - t.shared->no_handshake);
	/* the allowed traffic kept flowing, through every restart */
	cr_expect_eq(t.shared->failed, 0, "%u allowed requests got no answer", t.shared->failed);
	cr_expect_eq(t.shared->errors, 0, "%u socket calls failed in the client loop",
		     t.shared->errors);
	cr_expect_geq(a.ok_data, t.shared->n_ok, "the server saw %ld allowed requests, %u answered",
		      a.ok_data, t.shared->n_ok);
}
