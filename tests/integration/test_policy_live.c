// SPDX-License-Identifier: Apache-2.0
/*
 * Policies enforced on live CNI pods by loupe-agent --standalone --policy DIR, with real
 * clients: curl to a denied Host fails and to an allowed one succeeds, openssl s_client to a
 * denied SNI fails, dig for a denied name gets no answer while an allowed one resolves, a
 * denied peer address and a denied port are blocked, an audited request passes and is
 * reported; POLICY_VERDICT events name the policy and the rule, /metrics counts them. Then
 * without restarting the agent: a file change (inotify) and SIGHUP each take effect on new
 * connections, and a refused change keeps the set in force enforcing. Not for the matching's
 * corner cases (the datapath's fixtures) nor for evasion by segmentation.
 *
 * The node is a network namespace of its own, the agent pins into a private bpffs, pods come
 * from scripts/pods (ptp). Names carry the Criterion runner's pid (loupe-pn<pid>, lpl<pid>-,
 * /tmp/loupe-pl-<pid>-*): the runner sweeps them after the run, and a later run sweeps those
 * of runs that died. Every wait has a deadline; none is a fixed sleep.
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

#define AGENT_BIN LOUPE_BIN_DIR "/loupe-agent"
#define PODS	  LOUPE_SOURCE_DIR "/scripts/pods"
#define ID_ENV	  "LOUPE_TEST_POLICY_LIVE_ID" /* the runner's pid, set once (PRE_ALL) */
#define METRICS	  "127.0.0.1:9750"	      /* in the node's own namespace: no clash */

#define BPF_FS_MAGIC_ 0xcafe4a11 /* linux/magic.h's BPF_FS_MAGIC */

/* Deadlines, seconds. */
#define UP_S	 40.0
#define SERVE_S	 20.0
#define READY_S	 30.0
#define ATTACH_S 5.0
#define CLIENT_S 15.0 /* a backstop: each client is bounded itself */
#define EVENT_S	 10.0 /* an event in the output file: flushed every second */
#define RELOAD_S 10.0 /* a change noticed and applied */

/* What the agent's log says once a set is in force or refused. */
#define APPLIED	 "msg=\"policies applied\""
#define REFUSED	 "msg=\"policies refused: the set in force stays\""
#define HOST_OK	 "allowed.example.test"
#define HOST_BAD "denied.example.test"
#define PORT_OK	 "8080"
#define PORT_BAD "8082" /* denied requests: see pods_up() */

struct pod {
	const char *name;
	char ns[64];
	char host_if[IF_NAMESIZE];
	char v4[INET_ADDRSTRLEN];
	char v6[INET6_ADDRSTRLEN];
};

static struct {
	int id;
	char node[32];	 /* loupe-pn<id> */
	char prefix[32]; /* lpl<id>- */
	char env[4][160];
	char *envp[5];
	char tmp[64];
	char bpffs[96];
	char pin_dir[112];
	char policies[112]; /* --policy DIR */
	char store[112];    /* outside DIR: a change there is not seen by the watch */
	char events[112];
	char agent_log[112];
	pid_t agent;
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

/* A shell command for cleanup, where a failure is not news; its exit status. */
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

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static bool is_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC_;
}

/* Writes @text to @path whole, through a temp file renamed over it (as editors save). */
static void write_file(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp~", path);
	f = fopen(tmp, "w");
	cr_assert_not_null(f, "%s: %s", tmp, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", path, strerror(errno));
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

/* Runs @argv to its end, at most @timeout_s: its exit code (-1 on timeout), its stdout. */
static int proc_run(char *const argv[], const char *name, double timeout_s, char **ret_out)
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
	return exit_code(status);
}

static char *run_err(const char *name)
{
	char path[PATH_MAX], base[96];

	snprintf(base, sizeof(base), "%s.err", name);
	tmp_path(path, sizeof(path), base);
	return slurp(path);
}

static char *must_run(char *const argv[], const char *name, double timeout_s)
{
	char *out, *err;
	int rc = proc_run(argv, name, timeout_s, &out);

	if (rc != 0) {
		err = run_err(name);
		cr_assert_fail("%s: exit %d%s; stderr:\n%s\nstdout:\n%s", name, rc,
			       rc == -1 ? " (timed out, killed)" : "", err, out);
	}
	return out;
}

/* ------------------------------------------------------------------ cleanup */

/* Removes everything of run @id; each step idempotent (see test_agent_traffic.c). */
static void sweep_id(int id)
{
	char node[32], prefix[32], path[PATH_MAX], pattern[64];
	bool node_there;
	glob_t g = { 0 };
	double end;

	snprintf(node, sizeof(node), "loupe-pn%d", id);
	snprintf(prefix, sizeof(prefix), "lpl%d-", id);
	snprintf(path, sizeof(path), "/var/run/netns/%s", node);
	node_there = access(path, F_OK) == 0;
	snprintf(pattern, sizeof(pattern), "/tmp/loupe-pl-%d-*", id);
	glob(pattern, 0, NULL, &g);

	if (node_there) {
		/* only this test runs anything in loupe-pn<id>: its agent and curl of /metrics */
		sh("ip netns pids %s 2>/dev/null | xargs -r kill -KILL 2>/dev/null", node);
		end = now_s() + 5;
		while (sh("test -z \"$(ip netns pids %s 2>/dev/null)\"", node) != 0 &&
		       now_s() < end)
			pause_ms(20);
		for (size_t i = 0; i < g.gl_pathc; i++) {
			snprintf(path, sizeof(path), "%s/bpffs", g.gl_pathv[i]);
			if (is_bpffs(path))
				sh("ip netns exec %s %s --uninstall --bpffs-dir %s/loupe "
				   ">/dev/null 2>&1",
				   node, AGENT_BIN, path);
		}
	}
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
		rm_tree(g.gl_pathv[i]);
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

			if (w == 0 ? sscanf(e->d_name, "loupe-pn%d%n", &pid, &end) != 1 ||
					     e->d_name[end]
				   : sscanf(e->d_name, "loupe-pl-%d%n", &pid, &end) != 1 ||
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
	if (t.agent > 0)
		proc_stop(t.agent, SIGTERM, 10);
	t.agent = 0;
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
		"/usr/bin/curl",
		"/usr/bin/dig",
		"/usr/bin/openssl",
		"/usr/bin/python3",
		"/usr/bin/timeout",
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
		cr_skip_test("needs root: network namespaces, CNI plugins, bpffs, BPF programs");
	tool = missing_tool();
	if (tool)
		cr_skip_test("%s is missing (curl, dnsutils, openssl, python3, "
			     "containernetworking-plugins; the agent: make build)",
			     tool);
	signal(SIGPIPE, SIG_IGN);
	t.id = id && atoi(id) > 0 ? atoi(id) : (int)getpid();
	sweep_dead_runs();
	sweep_id(t.id);

	snprintf(t.node, sizeof(t.node), "loupe-pn%d", t.id);
	snprintf(t.prefix, sizeof(t.prefix), "lpl%d-", t.id);
	snprintf(t.tmp, sizeof(t.tmp), "/tmp/loupe-pl-%d-XXXXXX", t.id);
	setup_check(mkdtemp(t.tmp), "mkdtemp: %s", strerror(errno));
	snprintf(t.env[0], sizeof(t.env[0]), "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
	snprintf(t.env[1], sizeof(t.env[1]), "LOUPE_PODS_PREFIX=%s", t.prefix);
	snprintf(t.env[2], sizeof(t.env[2]), "LOUPE_PODS_NODE=%s", t.node);
	snprintf(t.env[3], sizeof(t.env[3]), "HOME=%s", t.tmp);
	for (int i = 0; i < 4; i++)
		t.envp[i] = t.env[i];
	t.envp[4] = NULL;
	tmp_path(t.policies, sizeof(t.policies), "policies");
	tmp_path(t.store, sizeof(t.store), "store");
	tmp_path(t.events, sizeof(t.events), "events.jsonl");
	tmp_path(t.agent_log, sizeof(t.agent_log), "agent.err");
	setup_check(mkdir(t.policies, 0700) == 0 && mkdir(t.store, 0700) == 0, "mkdir: %s",
		    strerror(errno));

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

TestSuite(policy_live, .init = setup, .fini = teardown, .timeout = 300);

/* ------------------------------------------------------------------ pods and servers */

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

/*
 * Both pods at once, then the server's HTTP, DNS and TLS servers. The HTTP and TLS servers
 * serve one connection at a time, and a connection whose request was dropped hangs there for
 * good (its FIN is dropped too): denied requests go to a server of their own, 8082 (8081 is
 * denied by port, its SYN never arrives), so that 8080 keeps answering what is allowed.
 */
static void pods_up(void)
{
	struct pod *pods[2] = { &server, &client };
	char out[2][PATH_MAX], err[2][PATH_MAX], name[32], *text, *log;
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
		static const char *const servers[][2] = { { "http", "8080" },
							  { "http", "8081" },
							  { "http", "8082" },
							  { "dns", "53" },
							  { "tls", "443" } };

		for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
			char *argv[] = { PODS,
					 "serve",
					 "server",
					 (char *)servers[i][0],
					 (char *)servers[i][1],
					 NULL };

			snprintf(name, sizeof(name), "serve-%s-%s", servers[i][0], servers[i][1]);
			free(must_run(argv, name, SERVE_S));
		}
	}
}

/* ------------------------------------------------------------------ the policies */

/*
 * The client's egress: the server's IPv6 address and port 8081 denied on the first packet,
 * then a Host, an SNI and a DNS name denied, a Host audited; anything else allowed by the
 * default. @extra: more rules, appended (",{...}"), or "".
 */
static void write_live_policy(const char *extra)
{
	char text[4096], path[PATH_MAX];

	snprintf(
		text, sizeof(text),
		"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
		"\"metadata\":{\"name\":\"live\"},"
		"\"spec\":{\"priority\":10,\"podSelector\":{\"interfaces\":[\"%s\"]},"
		"\"defaultAction\":\"allow\",\"rules\":["
		"{\"name\":\"deny-server-v6\",\"direction\":\"egress\","
		"\"match\":{\"cidrs\":[\"%s/128\"]},\"action\":\"deny\"},"
		"{\"name\":\"deny-port\",\"direction\":\"egress\","
		"\"match\":{\"ports\":[{\"port\":8081,\"protocol\":\"TCP\"}]},\"action\":\"deny\"},"
		"{\"name\":\"deny-host\",\"direction\":\"egress\","
		"\"match\":{\"http\":{\"hosts\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		"{\"name\":\"deny-sni\",\"direction\":\"egress\","
		"\"match\":{\"tls\":{\"sni\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		"{\"name\":\"deny-dns\",\"direction\":\"egress\","
		"\"match\":{\"dns\":{\"names\":[\"" HOST_BAD "\"]}},\"action\":\"deny\"},"
		"{\"name\":\"audit-host\",\"direction\":\"egress\","
		"\"match\":{\"http\":{\"hosts\":[\"audited.example.test\"]}},\"action\":\"audit\"}"
		"%s]}}\n",
		client.host_if, server.v6, extra);
	snprintf(path, sizeof(path), "%s/live.json", t.policies);
	write_file(path, text);
}

/* A second policy whose file lives in the store, linked from the policy directory. */
static void write_store_policy(const char *action)
{
	char text[1024], path[PATH_MAX];

	snprintf(text, sizeof(text),
		 "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
		 "\"metadata\":{\"name\":\"linked\"},"
		 "\"spec\":{\"priority\":5,\"podSelector\":{\"interfaces\":[\"%s\"]},\"rules\":["
		 "{\"name\":\"sighup-host\",\"direction\":\"egress\","
		 "\"match\":{\"http\":{\"hosts\":[\"sighup.example.test\"]}},\"action\":\"%s\"}]}}"
		 "\n",
		 client.host_if, action);
	snprintf(path, sizeof(path), "%s/linked.json", t.store);
	write_file(path, text);
}

/* ------------------------------------------------------------------ the agent */

/* Waits until the agent's log holds @needle @count times; fails at the deadline or its exit. */
static void wait_log(const char *needle, size_t count, double timeout_s)
{
	double end = now_s() + timeout_s;
	int status;
	char *s;

	for (;;) {
		s = slurp(t.agent_log);
		if (count_in(s, needle) >= count) {
			free(s);
			return;
		}
		if (waitpid(t.agent, &status, WNOHANG) == t.agent) {
			t.agent = 0;
			cr_assert_fail("loupe-agent exited (status 0x%x) before '%s' x%zu; its "
				       "log:\n%s",
				       status, needle, count, s);
		}
		if (now_s() > end)
			cr_assert_fail("loupe-agent: no '%s' x%zu within %.0f s; its log:\n%s",
				       needle, count, timeout_s, s);
		free(s);
		pause_ms(10);
	}
}

static size_t log_count(const char *needle)
{
	char *s = slurp(t.agent_log);
	size_t n = count_in(s, needle);

	free(s);
	return n;
}

static void agent_start(void)
{
	char out[PATH_MAX], needle[64];
	char *argv[] = { "ip",
			 "netns",
			 "exec",
			 t.node,
			 AGENT_BIN,
			 "--standalone",
			 "--policy",
			 t.policies,
			 "--output",
			 t.events,
			 "--metrics-addr",
			 METRICS,
			 "--flow-idle-timeout",
			 "2s",
			 "--bpffs-dir",
			 t.pin_dir,
			 "--log-level",
			 "info",
			 NULL };

	tmp_path(out, sizeof(out), "agent.out");
	t.agent = proc_start(argv, out, t.agent_log);
	wait_log("msg=\"ready\"", 1, READY_S);
	wait_log(APPLIED " trigger=start", 1, ATTACH_S);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", client.host_if);
	wait_log(needle, 1, ATTACH_S);
}

/* /metrics, fetched inside the node's namespace. */
static char *metrics(void)
{
	char *argv[] = { "ip",	 "netns", "exec",
			 t.node, "curl",  "-sS",
			 "-m",	 "5",	  "http://" METRICS "/metrics",
			 NULL };

	return must_run(argv, "metrics", CLIENT_S);
}

/* The value of the sample @series ("name{labels}") in @text, or -1 when absent. */
static long long sample(const char *text, const char *series)
{
	char *needle;
	const char *s;
	long long v = -1;

	cr_assert(asprintf(&needle, "\n%s ", series) > 0);
	s = strstr(text, needle);
	if (s)
		sscanf(s + strlen(needle), "%lld", &v);
	free(needle);
	return v;
}

/*
 * Waits until /metrics shows @series at least @min (or exactly @min when @exact): the agent
 * publishes every second and after each reload. Returns the last value seen.
 */
static long long wait_sample(const char *series, long long min, bool exact)
{
	double end = now_s() + EVENT_S;
	long long v;
	char *m;

	for (;;) {
		m = metrics();
		v = sample(m, series);
		free(m);
		if (exact ? v == min : v >= min)
			return v;
		if (now_s() > end) {
			cr_expect_fail("/metrics: %s is %lld within %.0f s, expected %s%lld",
				       series, v, EVENT_S, exact ? "" : "at least ", min);
			return v;
		}
		pause_ms(100);
	}
}

/* ------------------------------------------------------------------ the clients */

/* `scripts/pods exec client -- ARGV...`: its exit code; its stdout in *@ret_out. */
static int client_run(const char *what, char **ret_out, char *const cmd[])
{
	char *argv[32] = { PODS, "exec", "client", "--" };
	int n = 4;

	for (int i = 0; cmd[i]; i++) {
		cr_assert_lt(n, 31);
		argv[n++] = cmd[i];
	}
	argv[n] = NULL;
	return proc_run(argv, what, CLIENT_S, ret_out);
}

#define CLIENT(what, out, ...) client_run(what, out, (char *const[]){ __VA_ARGS__, NULL })

/*
 * curl http://@addr:@port/ with Host @host: the HTTP status ("200"), or "" when it got none
 * (its exit code in *@ret_rc: 28 for a timeout, the way a dropped request ends).
 */
static char *curl(const char *what, const char *addr, const char *port, const char *host,
		  int *ret_rc)
{
	char url[128], hdr[128], *out;
	bool v6 = strchr(addr, ':') != NULL;

	snprintf(url, sizeof(url), "http://%s%s%s:%s/policy-live", v6 ? "[" : "", addr,
		 v6 ? "]" : "", port);
	snprintf(hdr, sizeof(hdr), "Host: %s", host);
	*ret_rc = CLIENT(what, &out, "curl", "-sS", "-m", "3", "-o", "/dev/null", "-w",
			 "%{http_code}", "-H", hdr, url);
	if (*ret_rc != 0)
		out[0] = '\0';
	return out;
}

static void expect_http_ok(const char *what, const char *addr, const char *port, const char *host)
{
	int rc;
	char *code = curl(what, addr, port, host, &rc);

	cr_expect(rc == 0 && strcmp(code, "200") == 0,
		  "%s: curl to %s:%s Host %s: exit %d, status '%s'; expected 200", what, addr, port,
		  host, rc, code);
	free(code);
}

static void expect_http_blocked(const char *what, const char *addr, const char *port,
				const char *host)
{
	int rc;
	char *code = curl(what, addr, port, host, &rc);

	cr_expect(rc != 0 && !code[0],
		  "%s: curl to %s:%s Host %s got through: exit %d, status '%s'", what, addr, port,
		  host, rc, code);
	free(code);
}

/* openssl s_client with SNI @sni: true when the handshake completed (ALPN agreed). */
static bool tls_handshake(const char *what, const char *sni)
{
	char connect[80], *out;
	bool ok;
	int rc;

	snprintf(connect, sizeof(connect), "%s:443", server.v4);
	rc = CLIENT(what, &out, "timeout", "4", "openssl", "s_client", "-connect", connect,
		    "-servername", (char *)sni, "-alpn", "h2,http/1.1");
	ok = rc == 0 && strstr(out, "ALPN protocol: h2");
	free(out);
	return ok;
}

/* dig @server A @name: the answer's first line ("" when no answer came). */
static char *dig(const char *what, const char *name)
{
	char at[64], *out;
	int rc;

	snprintf(at, sizeof(at), "@%s", server.v4);
	rc = CLIENT(what, &out, "dig", "+short", "+time=2", "+tries=1", at, (char *)name, "A");
	if (rc != 0)
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* ------------------------------------------------------------------ the events */

struct verdict_want {
	const char *action;  /* "DENY", "AUDIT", "ALLOW" */
	const char *rule;    /* "" for a default */
	const char *subject; /* "http.host", "tls.sni", "dns.qname" or NULL */
	const char *name;
	const char *policy; /* NULL: "live" */
};

static bool verdict_matches(struct json_object *o, const struct verdict_want *w)
{
	struct json_object *v = loupe_json_obj(o, "verdict"), *m;
	char key[32];
	const char *dot;

	if (strcmp(loupe_json_str(o, "kind"), "POLICY_VERDICT") || !v)
		return false;
	if (strcmp(loupe_json_str(v, "action"), w->action) ||
	    strcmp(loupe_json_str(v, "rule"), w->rule) ||
	    strcmp(loupe_json_str(v, "policy"), w->policy ? w->policy : "live"))
		return false;
	if (strcmp(loupe_json_str(o, "direction"), "POD_EGRESS") ||
	    strcmp(loupe_json_str(loupe_json_obj(o, "interface"), "name"), client.host_if))
		return false;
	if (!w->subject)
		return true;
	dot = strchr(w->subject, '.');
	snprintf(key, sizeof(key), "%.*s", (int)(dot - w->subject), w->subject);
	m = loupe_json_obj(o, key);
	return m && strcmp(loupe_json_str(m, dot + 1), w->name) == 0;
}

/* Waits for a POLICY_VERDICT event as @w says in the agent's output. */
static void expect_verdict(const struct verdict_want *w)
{
	double end = now_s() + EVENT_S;
	char *text, *line, *nl;

	for (;;) {
		text = slurp(t.events);
		for (line = text; (nl = strchr(line, '\n')); line = nl + 1) {
			struct json_object *o;
			bool found;

			*nl = '\0';
			o = json_tokener_parse(line);
			found = o && verdict_matches(o, w);
			json_object_put(o);
			if (found) {
				free(text);
				return;
			}
		}
		free(text);
		if (now_s() > end) {
			cr_expect_fail("no POLICY_VERDICT %s %s/%s%s%s%s within %.0f s in %s",
				       w->action, w->policy ? w->policy : "live", w->rule,
				       w->subject ? " " : "", w->subject ? w->subject : "",
				       w->subject ? w->name : "", EVENT_S, t.events);
			return;
		}
		pause_ms(50);
	}
}

/* ------------------------------------------------------------------ the tests */

Test(policy_live, enforced_with_real_clients)
{
	char *m, *answer;
	double t0 = now_s();

	pods_up();
	write_live_policy("");
	agent_start();
	fprintf(stderr, "[policy] client %s/%s on %s, server %s/%s; setup %.1f s\n", client.v4,
		client.v6, client.host_if, server.v4, server.v6, now_s() - t0);

	/* HTTP: by Host */
	expect_http_ok("curl-allowed", server.v4, PORT_OK, HOST_OK);
	/* the server of denied requests answers what is allowed: a failure there is the policy's */
	expect_http_ok("curl-allowed-8082", server.v4, PORT_BAD, HOST_OK);
	expect_http_blocked("curl-denied", server.v4, PORT_BAD, HOST_BAD);
	expect_http_ok("curl-allowed-after", server.v4, PORT_OK, HOST_OK);
	/* audit: passes, and is reported */
	expect_http_ok("curl-audited", server.v4, PORT_OK, "audited.example.test");

	/* TLS: by SNI */
	cr_expect(tls_handshake("tls-allowed", HOST_OK), "s_client with SNI " HOST_OK " failed");
	cr_expect_not(tls_handshake("tls-denied", HOST_BAD),
		      "s_client with SNI " HOST_BAD " completed its handshake");

	/* DNS: by query name */
	answer = dig("dig-allowed", HOST_OK);
	cr_expect_str_eq(answer, "198.18.10.2", "dig " HOST_OK ": '%s'", answer);
	free(answer);
	answer = dig("dig-denied", HOST_BAD);
	cr_expect_str_eq(answer, "", "dig " HOST_BAD " got an answer: '%s'", answer);
	free(answer);

	/* L3/L4: the server's IPv6 address, port 8081 */
	expect_http_blocked("curl-denied-v6", server.v6, PORT_OK, HOST_OK);
	expect_http_blocked("curl-denied-port", server.v4, "8081", HOST_OK);
	expect_http_ok("curl-allowed-port", server.v4, PORT_OK, HOST_OK);

	/* the verdicts, named */
	expect_verdict(&(struct verdict_want){ "DENY", "deny-host", "http.host", HOST_BAD, NULL });
	expect_verdict(&(struct verdict_want){ "AUDIT", "audit-host", "http.host",
					       "audited.example.test", NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-sni", "tls.sni", HOST_BAD, NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-dns", "dns.qname", HOST_BAD, NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-server-v6", NULL, NULL, NULL });
	expect_verdict(&(struct verdict_want){ "DENY", "deny-port", NULL, NULL, NULL });
	expect_verdict(&(struct verdict_want){ "ALLOW", "", "http.host", HOST_OK, NULL });

	/* /metrics: per-rule flows, drops, the generation */
	wait_sample("loupe_policy_rule_flows_total{policy=\"live\",rule=\"deny-host\","
		    "action=\"deny\"}",
		    1, false);
	wait_sample("loupe_policy_rule_flows_total{policy=\"live\",rule=\"audit-host\","
		    "action=\"audit\"}",
		    1, false);
	wait_sample("loupe_policy_rule_flows_total{policy=\"live\",rule=\"\",action=\"allow\"}", 1,
		    false);
	wait_sample("loupe_policy_dropped_packets_total{direction=\"pod_egress\"}", 1, false);
	m = metrics();
	cr_expect_geq(sample(m, "loupe_policy_generation"), 1);
	cr_expect_eq(sample(m, "loupe_policy_reloads_total{result=\"refused\"}"), 0);
	free(m);
	fprintf(stderr, "[policy] enforced: %.1f s in all\n", now_s() - t0);
}

Test(policy_live, reloads_without_restart)
{
	char link[PATH_MAX], target[PATH_MAX], bad[PATH_MAX], *m;
	long long gen;
	size_t applied;

	pods_up();
	write_live_policy("");
	write_store_policy("audit");
	snprintf(target, sizeof(target), "%s/linked.json", t.store);
	snprintf(link, sizeof(link), "%s/linked.json", t.policies);
	cr_assert_eq(symlink(target, link), 0, "%s: %s", link, strerror(errno));
	agent_start();
	gen = wait_sample("loupe_policy_generation", 1, false);
	cr_assert_geq(gen, 1);

	/* a file change: inotify, no restart */
	expect_http_ok("late-before", server.v4, PORT_OK, "late.example.test");
	expect_http_ok("late-before-8082", server.v4, PORT_BAD, "late.example.test");
	applied = log_count(APPLIED " trigger=file-change");
	write_live_policy(",{\"name\":\"deny-late\",\"direction\":\"egress\","
			  "\"match\":{\"http\":{\"hosts\":[\"late.example.test\"]}},"
			  "\"action\":\"deny\"}");
	wait_log(APPLIED " trigger=file-change", applied + 1, RELOAD_S);
	expect_http_blocked("late-after", server.v4, PORT_BAD, "late.example.test");
	expect_http_ok("allowed-after-change", server.v4, PORT_OK, HOST_OK);
	expect_verdict(&(struct verdict_want){ "DENY", "deny-late", "http.host",
					       "late.example.test", NULL });

	/* SIGHUP: a change the watch cannot see (the link's target is elsewhere) */
	expect_http_ok("sighup-before", server.v4, PORT_OK, "sighup.example.test");
	write_store_policy("deny");
	expect_http_ok("sighup-unseen", server.v4, PORT_OK, "sighup.example.test");
	applied = log_count(APPLIED " trigger=sighup");
	cr_assert_eq(kill(t.agent, SIGHUP), 0);
	wait_log(APPLIED " trigger=sighup", applied + 1, RELOAD_S);
	expect_http_blocked("sighup-after", server.v4, PORT_BAD, "sighup.example.test");
	expect_verdict(&(struct verdict_want){ "DENY", "sighup-host", "http.host",
					       "sighup.example.test", "linked" });
	wait_sample("loupe_policy_reloads_total{result=\"ok\"}", 2, true);
	m = metrics();
	gen = sample(m, "loupe_policy_generation");
	free(m);

	/* a refused change: logged, counted, and the set in force goes on enforcing */
	snprintf(bad, sizeof(bad), "%s/zz-bad.json", t.policies);
	write_file(bad, "{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{");
	wait_log(REFUSED, 1, RELOAD_S);
	wait_log("zz-bad.json", 1, RELOAD_S);
	expect_http_blocked("denied-after-refusal", server.v4, PORT_BAD, HOST_BAD);
	expect_http_blocked("late-after-refusal", server.v4, PORT_BAD, "late.example.test");
	expect_http_ok("allowed-after-refusal", server.v4, PORT_OK, HOST_OK);
	cr_expect(!tls_handshake("tls-after-refusal", HOST_BAD), "SNI denied before the refusal");
	wait_sample("loupe_policy_reloads_total{result=\"refused\"}", 1, true);
	m = metrics();
	cr_expect_eq(sample(m, "loupe_policy_generation"), gen, "the generation moved");
	free(m);

	/* fixed: the set is the one in force, not applied again */
	cr_assert_eq(unlink(bad), 0);
	expect_http_ok("allowed-after-fix", server.v4, PORT_OK, HOST_OK);
	m = metrics();
	cr_expect_eq(sample(m, "loupe_policy_generation"), gen, "an unchanged set applied again");
	free(m);
	cr_expect_eq(log_count(REFUSED), 1);
}
