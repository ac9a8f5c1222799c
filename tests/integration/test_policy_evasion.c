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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <json-c/json.h>

#include "jsonget.h"
#include "rawtcp.h"

#define AGENT_BIN LOUPE_BIN_DIR "/loupe-agent"
#define PODS	  LOUPE_SOURCE_DIR "/scripts/pods"
#define ID_ENV	  "LOUPE_TEST_POLICY_EVASION_ID" /* the runner's pid, set once (PRE_ALL) */
#define METRICS	  "127.0.0.1:9751"		 /* in the node's own namespace: no clash */

#define BPF_FS_MAGIC_ 0xcafe4a11 /* linux/magic.h's BPF_FS_MAGIC */

/* Deadlines: seconds for processes, ms for the raw client. */
#define UP_S	      40.0
#define SERVE_S	      20.0
#define READY_S	      30.0
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

struct pod {
	const char *name;
	char ns[64];
	char host_if[IF_NAMESIZE];
	char v4[INET_ADDRSTRLEN];
	char v6[INET6_ADDRSTRLEN];
};

static struct {
	int id;
	char node[32];	 /* loupe-pe<id> */
	char prefix[32]; /* lpe<id>- */
	char env[4][160];
	char *envp[5];
	char tmp[64];
	char bpffs[96];
	char pin_dir[112];
	char policies[112];
	char events[112];
	char agent_log[112];
	char capture[112];
	char capture_log[112];
	pid_t agent;
	pid_t tcpdump;
	uint8_t gw_mac[6], pod_mac[6];
} t;

static struct pod server = { .name = "server" }, client = { .name = "client" };

/* ------------------------------------------------------------------ small things */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pause_ms(int ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L }, NULL);
}

/* A shell command; its exit status. For setup steps checked by the caller, and cleanup. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return strdup("");
	if (getdelim(&buf, &len, '\0', f) < 0) {
		free(buf);
		buf = strdup("");
	}
	fclose(f);
	return buf;
}

static size_t count_in(const char *s, const char *needle)
{
	size_t n = 0;

	for (; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

static void tmp_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", t.tmp, name);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static bool is_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC_;
}

static void write_file(const char *path, const char *text)
{
	char tmp[PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp~", path);
	f = fopen(tmp, "w");
	cr_assert_not_null(f, "%s: %s", tmp, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", path, strerror(errno));
}

static void mac_text(const uint8_t *m, char *buf)
{
	sprintf(buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* ------------------------------------------------------------------ processes */

static pid_t proc_start(char *const argv[], const char *out, const char *err)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, t.envp);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "cannot run %s: %s", argv[0], strerror(rc));
	return pid;
}

/* Waits up to @timeout_s for child @pid and reaps it: its wait status, or -1 (still running). */
static int proc_wait(pid_t pid, double timeout_s)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0), status;
	double end = now_s() + timeout_s;

	for (;;) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		int left = (int)((end - now_s()) * 1000);

		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		status = -1;
		if (left <= 0)
			break;
		if (pidfd >= 0)
			poll(&p, 1, left);
		else
			pause_ms(10);
	}
	if (pidfd >= 0)
		close(pidfd);
	return status;
}

static int proc_stop(pid_t pid, int sig, double timeout_s)
{
	int status;

	kill(pid, sig);
	status = proc_wait(pid, timeout_s);
	if (status == -1) {
		kill(pid, SIGKILL);
		status = proc_wait(pid, 5);
	}
	return status;
}

static int exit_code(int status)
{
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs @argv to its end, at most @timeout_s: its exit code (-1 on timeout); stdout, stderr. */
static int proc_run(char *const argv[], const char *name, double timeout_s, char **ret_out,
		    char **ret_err)
{
	char out[PATH_MAX], err[PATH_MAX], base[96];
	int status;
	pid_t pid;

	snprintf(base, sizeof(base), "%s.out", name);
	tmp_path(out, sizeof(out), base);
	snprintf(base, sizeof(base), "%s.err", name);
	tmp_path(err, sizeof(err), base);
	pid = proc_start(argv, out, err);
	status = proc_wait(pid, timeout_s);
	if (status == -1) {
		kill(pid, SIGKILL);
		proc_wait(pid, 5);
	}
	if (ret_out)
		*ret_out = slurp(out);
	if (ret_err)
		*ret_err = slurp(err);
	return exit_code(status);
}

static char *must_run(char *const argv[], const char *name, double timeout_s)
{
	char *out, *err;
	int rc = proc_run(argv, name, timeout_s, &out, &err);

	cr_assert_eq(rc, 0, "%s: exit %d%s; stderr:\n%s\nstdout:\n%s", name, rc,
		     rc == -1 ? " (timed out, killed)" : "", err, out);
	free(err);
	return out;
}

/* ------------------------------------------------------------------ cleanup */

/* Removes everything of run @id; each step idempotent, so any exit path may call it. */
static void sweep_id(int id)
{
	char node[32], prefix[32], path[PATH_MAX], pattern[64];
	bool node_there;
	glob_t g = { 0 };
	double end;

	snprintf(node, sizeof(node), "loupe-pe%d", id);
	snprintf(prefix, sizeof(prefix), "lpe%d-", id);
	snprintf(path, sizeof(path), "/var/run/netns/%s", node);
	node_there = access(path, F_OK) == 0;
	snprintf(pattern, sizeof(pattern), "/tmp/loupe-pe-%d-*", id);
	glob(pattern, 0, NULL, &g);

	if (node_there) {
		/* only this test runs anything in loupe-pe<id>: its agent and curl of /metrics */
		sh("ip netns pids %s 2>/dev/null | xargs -r kill -KILL 2>/dev/null", node);
		end = now_s() + 5;
		while (sh("test -z \"$(ip netns pids %s 2>/dev/null)\"", node) != 0 &&
		       now_s() < end)
			pause_ms(20);
		/* the raw client's route and neighbour (gone with the namespace anyway) */
		sh("ip -n %s route del " RAW_SRC "/32 2>/dev/null", node);
		sh("ip -n %s neigh flush to " RAW_SRC " nud permanent 2>/dev/null", node);
		for (size_t i = 0; i < g.gl_pathc; i++) {
			snprintf(path, sizeof(path), "%s/bpffs", g.gl_pathv[i]);
			if (is_bpffs(path))
				sh("ip netns exec %s %s --uninstall --bpffs-dir %s/loupe "
				   ">/dev/null 2>&1",
				   node, AGENT_BIN, path);
		}
	}
	/* the pods' processes (servers, tcpdump), veths and namespaces */
	snprintf(path, sizeof(path), "/run/loupe-pods/%s", prefix);
	if (access(path, F_OK) == 0)
		sh("LOUPE_PODS_PREFIX=%s LOUPE_PODS_NODE=%s %s down-all >/dev/null 2>&1", prefix,
		   node, PODS);
	if (node_there)
		sh("ip netns del %s 2>/dev/null", node);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		snprintf(path, sizeof(path), "%s/bpffs", g.gl_pathv[i]);
		while (is_bpffs(path) && umount2(path, MNT_DETACH) == 0)
			;
		nftw(g.gl_pathv[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	}
	globfree(&g);
}

static bool pid_alive(int pid)
{
	char path[64], *stat, *paren;
	bool alive;

	if (kill(pid, 0) && errno == ESRCH)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	stat = slurp(path);
	paren = strrchr(stat, ')');
	alive = !paren || strncmp(paren, ") Z", 3) != 0;
	free(stat);
	return alive;
}

/* The leftovers of runs whose runner is gone: their names carry its pid. */
static void sweep_dead_runs(void)
{
	static const char *const where[] = { "/var/run/netns", "/tmp" };

	for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
		DIR *d = opendir(where[w]);
		struct dirent *e;

		if (!d)
			continue;
		while ((e = readdir(d))) {
			int pid = 0, end = 0;

			if (w == 0 ? sscanf(e->d_name, "loupe-pe%d%n", &pid, &end) != 1 ||
					     e->d_name[end]
				   : sscanf(e->d_name, "loupe-pe-%d%n", &pid, &end) != 1 ||
					     e->d_name[end] != '-')
				continue;
			if (pid <= 0 || pid == t.id || pid_alive(pid))
				continue;
			sweep_id(pid);
		}
		closedir(d);
	}
}

static void teardown(void)
{
	if (t.tcpdump > 0)
		proc_stop(t.tcpdump, SIGINT, 5);
	if (t.agent > 0)
		proc_stop(t.agent, SIGTERM, 10);
	t.tcpdump = t.agent = 0;
	if (t.id)
		sweep_id(t.id);
	memset(&t, 0, sizeof(t));
}

#define SKIP(...)                                                                                  \
	do {                                                                                       \
		teardown();                                                                        \
		cr_skip_test(__VA_ARGS__);                                                         \
	} while (0)

#define setup_check(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			teardown();                                                                \
			cr_assert_fail(__VA_ARGS__);                                               \
		}                                                                                  \
	} while (0)

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	char id[16];

	(void)set;
	if (getenv(ID_ENV))
		return;
	snprintf(id, sizeof(id), "%d", (int)getpid());
	setenv(ID_ENV, id, 1);
}

/* Safety net in the runner: a test process killed at its timeout runs no .fini. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	const char *id = getenv(ID_ENV);

	(void)stats;
	if (geteuid() == 0 && id && atoi(id) > 0)
		sweep_id(atoi(id));
}

static const char *missing_tool(void)
{
	static const char *const tools[] = {
		"/usr/bin/python3",
		"/usr/bin/openssl",
		"/usr/bin/tcpdump",
		"/usr/bin/tshark",
		"/usr/bin/ss",
		"/usr/bin/curl",
		"/usr/lib/cni/ptp",
		"/usr/lib/cni/host-local",
		"/usr/lib/cni/loopback",
		AGENT_BIN,
		PODS,
	};

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		if (access(tools[i], X_OK))
			return tools[i];
	return NULL;
}

static void setup(void)
{
	const char *id = getenv(ID_ENV), *tool;
	int err;

	if (geteuid() != 0)
		cr_skip_test("needs root: network namespaces, CNI plugins, bpffs, raw sockets");
	tool = missing_tool();
	if (tool)
		cr_skip_test("%s is missing (python3, openssl, tcpdump, tshark, iproute2, curl, "
			     "containernetworking-plugins; the agent: make build)",
			     tool);
	signal(SIGPIPE, SIG_IGN);
	t.id = id && atoi(id) > 0 ? atoi(id) : (int)getpid();
	sweep_dead_runs();
	sweep_id(t.id);

	snprintf(t.node, sizeof(t.node), "loupe-pe%d", t.id);
	snprintf(t.prefix, sizeof(t.prefix), "lpe%d-", t.id);
	snprintf(t.tmp, sizeof(t.tmp), "/tmp/loupe-pe-%d-XXXXXX", t.id);
	setup_check(mkdtemp(t.tmp), "mkdtemp: %s", strerror(errno));
	snprintf(t.env[0], sizeof(t.env[0]), "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
	snprintf(t.env[1], sizeof(t.env[1]), "LOUPE_PODS_PREFIX=%s", t.prefix);
	snprintf(t.env[2], sizeof(t.env[2]), "LOUPE_PODS_NODE=%s", t.node);
	snprintf(t.env[3], sizeof(t.env[3]), "HOME=%s", t.tmp);
	for (int i = 0; i < 4; i++)
		t.envp[i] = t.env[i];
	t.envp[4] = NULL;
	tmp_path(t.policies, sizeof(t.policies), "policies");
	tmp_path(t.events, sizeof(t.events), "events.jsonl");
	tmp_path(t.agent_log, sizeof(t.agent_log), "agent.err");
	tmp_path(t.capture, sizeof(t.capture), "server.pcap");
	tmp_path(t.capture_log, sizeof(t.capture_log), "tcpdump.err");
	setup_check(mkdir(t.policies, 0700) == 0, "mkdir: %s", strerror(errno));

	if (sh("ip netns add %s 2>/dev/null", t.node))
		SKIP("cannot make a network namespace (ip netns add %s)", t.node);
	setup_check(sh("ip -n %s link set lo up", t.node) == 0, "lo up in %s", t.node);

	snprintf(t.bpffs, sizeof(t.bpffs), "%s/bpffs", t.tmp);
	setup_check(mkdir(t.bpffs, 0700) == 0, "mkdir %s: %s", t.bpffs, strerror(errno));
	if (mount("bpf", t.bpffs, "bpf", 0, NULL)) {
		err = errno;
		if (err == ENODEV)
			SKIP("the kernel has no bpffs");
		setup_check(false, "mount bpffs on %s: %s", t.bpffs, strerror(err));
	}
	snprintf(t.pin_dir, sizeof(t.pin_dir), "%s/loupe", t.bpffs);
}

TestSuite(policy_evasion, .init = setup, .fini = teardown, .timeout = 180);

/* ------------------------------------------------------------------ pods, servers, routes */

static void pod_summary(struct pod *p, const char *out)
{
	const char *last = out, *nl;
	char name[64];

	for (const char *s = out; (nl = strchr(s, '\n')); s = nl + 1)
		if (nl[1] && nl[1] != '\n')
			last = nl + 1;
	cr_assert_eq(sscanf(last, "pod=%63s netns=%63s host_if=%15s ipv4=%15s ipv6=%45s", name,
			    p->ns, p->host_if, p->v4, p->v6),
		     5, "pods %s: no summary line in:\n%s", p->name, out);
	cr_assert_str_eq(name, p->name);
}

/* The server's gateway: the "via" of its route to its own subnet. */
static void server_gateway(char *buf, size_t size)
{
	char *argv[] = { "ip", "-n", server.ns, "-4", "route", "show", NULL }, *out, *via;

	out = must_run(argv, "server-routes", 5);
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
	struct pod *pods[2] = { &server, &client };
	char out[2][PATH_MAX], err[2][PATH_MAX], name[32], *text, *log, gw[INET_ADDRSTRLEN];
	char mac[18], *fwd;
	pid_t pid[2];
	int rc;

	for (int i = 0; i < 2; i++) {
		char *argv[] = { PODS, "up", (char *)pods[i]->name, "--net", "ptp", NULL };

		snprintf(name, sizeof(name), "up-%s.out", pods[i]->name);
		tmp_path(out[i], sizeof(out[i]), name);
		snprintf(name, sizeof(name), "up-%s.err", pods[i]->name);
		tmp_path(err[i], sizeof(err[i]), name);
		pid[i] = proc_start(argv, out[i], err[i]);
	}
	for (int i = 0; i < 2; i++) {
		rc = exit_code(proc_wait(pid[i], UP_S));
		if (rc == -1)
			proc_stop(pid[i], SIGINT, 10);
		text = slurp(out[i]);
		log = slurp(err[i]);
		cr_assert_eq(rc, 0, "pods up %s: exit %d; stderr:\n%s", pods[i]->name, rc, log);
		pod_summary(pods[i], text);
		free(text);
		free(log);
	}
	{
		char *http[] = { PODS, "serve", "server", "http", "8080", NULL };
		char *tls[] = { PODS, "serve", "server", "tls", "443", NULL };

		free(must_run(http, "serve-http", SERVE_S));
		free(must_run(tls, "serve-tls", SERVE_S));
	}

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

		cr_assert_eq(sh("ip netns exec %s sysctl -qw net.ipv4.conf.eth0.forwarding=0",
				client.ns),
			     0, "forwarding off in the client pod");
		fwd = must_run(argv, "client-forwarding", 5);
		cr_assert_eq(atoi(fwd), 0,
			     "the client pod forwards IPv4: it would answer for " RAW_SRC);
		free(fwd);
	}
	cr_assert_eq(loupe_rawtcp_if_mac(client.ns, "eth0", t.pod_mac), 0, "the pod's MAC");
	cr_assert_eq(loupe_rawtcp_if_mac(t.node, client.host_if, t.gw_mac), 0, "the veth's MAC");
	mac_text(t.pod_mac, mac);
	cr_assert_eq(sh("ip -n %s route add " RAW_SRC "/32 dev %s", t.node, client.host_if), 0,
		     "route " RAW_SRC " to %s on the node", client.host_if);
	cr_assert_eq(sh("ip -n %s neigh replace " RAW_SRC " lladdr %s dev %s nud permanent", t.node,
			mac, client.host_if),
		     0, "neighbour " RAW_SRC " on the node");
	server_gateway(gw, sizeof(gw));
	cr_assert_eq(sh("ip -n %s route add " RAW_SRC "/32 via %s dev eth0", server.ns, gw), 0,
		     "route " RAW_SRC " in the server pod");
}

/* tcpdump in the server pod: every TCP packet from the raw client that reached the server. */
static void capture_start(void)
{
	char out[PATH_MAX], *log;
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
	double end = now_s() + CAPTURE_S;

	tmp_path(out, sizeof(out), "tcpdump.out");
	t.tcpdump = proc_start(argv, out, t.capture_log);
	for (;;) {
		log = slurp(t.capture_log);
		if (strstr(log, "listening on eth0")) {
			free(log);
			return;
		}
		cr_assert(now_s() < end && pid_alive(t.tcpdump), "tcpdump did not start:\n%s", log);
		free(log);
		pause_ms(10);
	}
}

/* Whether the capture file holds a TCP packet from port @sport (tcpdump -U: whole packets). */
static bool capture_has(uint16_t sport)
{
	uint8_t hdr[24], rec[16], frame[128];
	bool found = false, swap;
	uint32_t magic;
	FILE *f = fopen(t.capture, "r");

	if (!f)
		return false;
	if (fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr))
		goto out;
	memcpy(&magic, hdr, 4);
	swap = magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1;
	while (!found && fread(rec, 1, sizeof(rec), f) == sizeof(rec)) {
		uint32_t incl;
		size_t n;

		memcpy(&incl, rec + 8, 4);
		if (swap)
			incl = __builtin_bswap32(incl);
		n = incl < sizeof(frame) ? incl : sizeof(frame);
		if (fread(frame, 1, n, f) != n || fseek(f, incl - n, SEEK_CUR))
			break;
		if (n >= 14 + 20 + 4 && frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 6) {
			size_t l4 = 14 + (frame[14] & 0xf) * 4;

			found = l4 + 2 <= n && (frame[l4] << 8 | frame[l4 + 1]) == sport;
		}
	}
out:
	fclose(f);
	return found;
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
	double end = now_s() + CAPTURE_S;
	char *log;
	int st;

	memcpy(cfg.gw_mac, t.gw_mac, 6);
	cr_assert_eq(loupe_rawtcp_open(&cfg, &c), 0);
	st = loupe_rawtcp_connect(c, CONNECT_MS);
	loupe_rawtcp_free(c);
	cr_assert_eq(st, 0, "the marker connection: %s", strerror(-st));
	while (!capture_has(MARKER_PORT)) {
		cr_assert(now_s() < end, "tcpdump did not write the marker within %.0f s",
			  CAPTURE_S);
		pause_ms(10);
	}
	st = proc_stop(t.tcpdump, SIGINT, CAPTURE_S);
	t.tcpdump = 0;
	log = slurp(t.capture_log);
	cr_assert_eq(exit_code(st), 0, "tcpdump: exit %d:\n%s", exit_code(st), log);
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
	write_file(path, text);
}

static void wait_log(const char *needle, double timeout_s)
{
	double end = now_s() + timeout_s;
	int status;
	char *s;

	for (;;) {
		s = slurp(t.agent_log);
		if (strstr(s, needle)) {
			free(s);
			return;
		}
		if (waitpid(t.agent, &status, WNOHANG) == t.agent) {
			t.agent = 0;
			cr_assert_fail("loupe-agent exited (status 0x%x) before '%s'; its log:\n%s",
				       status, needle, s);
		}
		if (now_s() > end)
			cr_assert_fail("loupe-agent: no '%s' within %.0f s; its log:\n%s", needle,
				       timeout_s, s);
		free(s);
		pause_ms(10);
	}
}

static void agent_start(void)
{
	char out[PATH_MAX], needle[64];
	char *argv[] = { "ip",		"netns",	"exec",		  t.node,
			 AGENT_BIN,	"--standalone", "--policy",	  t.policies,
			 "--output",	t.events,	"--metrics-addr", METRICS,
			 "--bpffs-dir", t.pin_dir,	"--log-level",	  "info",
			 NULL };

	tmp_path(out, sizeof(out), "agent.out");
	t.agent = proc_start(argv, out, t.agent_log);
	wait_log("msg=\"ready\"", READY_S);
	wait_log("msg=\"policies applied\" trigger=start", ATTACH_S);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", client.host_if);
	wait_log(needle, ATTACH_S);
}

/* The value of @series in the agent's /metrics, or -1. */
static long long metric(const char *series)
{
	char *argv[] = { "ip",	 "netns", "exec",
			 t.node, "curl",  "-sS",
			 "-m",	 "5",	  "http://" METRICS "/metrics",
			 NULL };
	char *m = must_run(argv, "metrics", 10), *needle, *s;
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
	free(must_run(argv, "ss-kill", 5));
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
	char *out = must_run(argv, "tshark", 60), *line, *nl;
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
		 t.prefix);
	log = slurp(path);
	for (size_t i = 0; i < n_runs; i++) {
		if (runs[i].sp->tls)
			continue;
		snprintf(needle, sizeof(needle), "\"GET /evasion/%s/%s HTTP/1.1\" 200",
			 runs[i].sp->name, runs[i].denied ? "denied" : "allowed");
		cr_expect_eq(count_in(log, needle), runs[i].blocked ? 0u : 1u,
			     "httpd.py's log has %zu of '%s'", count_in(log, needle), needle);
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
	double end = now_s() + EVENT_S;
	bool found[2 * N_SPLITS];
	size_t missing;

	for (;;) {
		char *text = slurp(t.events), *line, *nl;

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
		if (!missing || now_s() > end)
			break;
		pause_ms(100);
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
	double t0 = now_s(), t1;
	long long ooo;

	pods_up();
	write_policy();
	agent_start();
	capture_start();
	t1 = now_s();
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
	fprintf(stderr, "[evasion] %zu connections in %.1f s\n", n_runs, now_s() - t1);

	capture_stop();
	expect_at_server(runs, n_runs);
	expect_verdicts(runs, n_runs);
	/* the out-of-order cases went through the datapath's out-of-order path */
	ooo = metric("loupe_policy_out_of_order_segments_total");
	cr_expect_gt(ooo, 0, "loupe_policy_out_of_order_segments_total is %lld", ooo);
	fprintf(stderr, "[evasion] %.1f s in all; %lld segments dropped out of order\n",
		now_s() - t0, ooo);
}
