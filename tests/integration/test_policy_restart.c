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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#define AGENT_BIN LOUPE_BIN_DIR "/loupe-agent"
#define PODS	  LOUPE_SOURCE_DIR "/scripts/pods"
#define ID_ENV	  "LOUPE_TEST_POLICY_RESTART_ID" /* the runner's pid, set once (PRE_ALL) */
#define METRICS	  "127.0.0.1:9752"		 /* in the node's own namespace: no clash */

#define BPF_FS_MAGIC_ 0xcafe4a11 /* linux/magic.h's BPF_FS_MAGIC */

/* Deadlines and bounds, seconds unless said. */
#define UP_S	   40.0
#define SERVE_S	   20.0
#define READY_S	   30.0
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

struct pod {
	const char *name;
	char ns[64];
	char host_if[IF_NAMESIZE];
	char v4[INET_ADDRSTRLEN];
	char v6[INET6_ADDRSTRLEN];
};

static struct {
	int id;
	char node[32];	 /* loupe-pr<id> */
	char prefix[32]; /* lpr<id>- */
	char env[4][160];
	char *envp[5];
	char tmp[64];
	char bpffs[96];
	char pin_dir[112];
	char policies[112];
	char agent_log[112];
	char capture[112];
	char capture_log[112];
	pid_t agent;
	pid_t tcpdump;
	pid_t loop;
	int listen_fd;
	struct loop_state *shared;
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

	snprintf(node, sizeof(node), "loupe-pr%d", id);
	snprintf(prefix, sizeof(prefix), "lpr%d-", id);
	snprintf(path, sizeof(path), "/var/run/netns/%s", node);
	node_there = access(path, F_OK) == 0;
	snprintf(pattern, sizeof(pattern), "/tmp/loupe-pr-%d-*", id);
	glob(pattern, 0, NULL, &g);

	if (node_there) {
		/* only this test runs anything in loupe-pr<id>: its agents */
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

			if (w == 0 ? sscanf(e->d_name, "loupe-pr%d%n", &pid, &end) != 1 ||
					     e->d_name[end]
				   : sscanf(e->d_name, "loupe-pr-%d%n", &pid, &end) != 1 ||
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
	if (t.loop > 0) {
		kill(t.loop, SIGKILL);
		proc_wait(t.loop, 5);
	}
	if (t.tcpdump > 0)
		proc_stop(t.tcpdump, SIGINT, 5);
	if (t.agent > 0)
		proc_stop(t.agent, SIGTERM, 10);
	t.loop = t.tcpdump = t.agent = 0;
	if (t.listen_fd > 0)
		close(t.listen_fd);
	if (t.shared && t.shared != MAP_FAILED)
		munmap(t.shared, sizeof(*t.shared));
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
		"/usr/bin/tcpdump",
		"/usr/bin/tshark",
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
		cr_skip_test(
			"%s is missing (python3, tcpdump, tshark, containernetworking-plugins; "
			"the agent: make build)",
			tool);
	signal(SIGPIPE, SIG_IGN);
	t.id = id && atoi(id) > 0 ? atoi(id) : (int)getpid();
	t.listen_fd = -1;
	sweep_dead_runs();
	sweep_id(t.id);

	snprintf(t.node, sizeof(t.node), "loupe-pr%d", t.id);
	snprintf(t.prefix, sizeof(t.prefix), "lpr%d-", t.id);
	snprintf(t.tmp, sizeof(t.tmp), "/tmp/loupe-pr-%d-XXXXXX", t.id);
	setup_check(mkdtemp(t.tmp), "mkdtemp: %s", strerror(errno));
	snprintf(t.env[0], sizeof(t.env[0]), "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
	snprintf(t.env[1], sizeof(t.env[1]), "LOUPE_PODS_PREFIX=%s", t.prefix);
	snprintf(t.env[2], sizeof(t.env[2]), "LOUPE_PODS_NODE=%s", t.node);
	snprintf(t.env[3], sizeof(t.env[3]), "HOME=%s", t.tmp);
	for (int i = 0; i < 4; i++)
		t.envp[i] = t.env[i];
	t.envp[4] = NULL;
	tmp_path(t.policies, sizeof(t.policies), "policies");
	tmp_path(t.capture, sizeof(t.capture), "server.pcap");
	tmp_path(t.capture_log, sizeof(t.capture_log), "tcpdump.err");
	setup_check(mkdir(t.policies, 0700) == 0, "mkdir: %s", strerror(errno));
	t.shared = mmap(NULL, sizeof(*t.shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	setup_check(t.shared != MAP_FAILED, "mmap: %s", strerror(errno));

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

TestSuite(policy_restart, .init = setup, .fini = teardown, .timeout = 180);

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
		char *ok[] = { PODS, "serve", "server", "http", "8080", NULL };
		char *denied[] = { PODS, "serve", "server", "http", "8081", NULL };

		free(must_run(ok, "serve-8080", SERVE_S));
		free(must_run(denied, "serve-8081", SERVE_S));
	}
	t.listen_fd = in_netns(server.ns, listen_8082, NULL);
	cr_assert_geq(t.listen_fd, 0, "listen on %s:%d: %s", server.v4, PORT_HOST,
		      strerror(-t.listen_fd));
}

/* ------------------------------------------------------------------ the capture */

static void capture_start(void)
{
	char out[PATH_MAX], *log;
	char *argv[] = { "ip",	 "netns", "exec", server.ns,	      "tcpdump", "-i",
			 "eth0", "-n",	  "-U",	  "--immediate-mode", "-s",	 "128",
			 "-B",	 "16384", "-w",	  t.capture,	      "tcp",	 NULL };
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

/* Whether the capture holds an IPv4 TCP packet from port @sport (tcpdump -U: whole packets). */
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
	double end = now_s() + CAPTURE_S;
	char *log;
	int st;

	st = in_netns(client.ns, connect_marker, NULL);
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
	char *out = must_run(argv, "tshark", 60), *line, *nl;
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
		pause_ms(5);
	}
}

/* Agent @n (0, 1, ...), each with a log of its own, all on the same pins and policy. */
static void agent_start(int n)
{
	char out[PATH_MAX], events[PATH_MAX], name[32], needle[64];
	char *argv[] = { "ip",		"netns",	"exec",		  t.node,
			 AGENT_BIN,	"--standalone", "--policy",	  t.policies,
			 "--output",	events,		"--metrics-addr", METRICS,
			 "--bpffs-dir", t.pin_dir,	"--log-level",	  "info",
			 NULL };

	snprintf(name, sizeof(name), "agent-%d.out", n);
	tmp_path(out, sizeof(out), name);
	snprintf(name, sizeof(name), "agent-%d.err", n);
	tmp_path(t.agent_log, sizeof(t.agent_log), name);
	snprintf(name, sizeof(name), "events-%d.jsonl", n);
	tmp_path(events, sizeof(events), name);
	t.agent = proc_start(argv, out, t.agent_log);
	wait_log("msg=\"ready\"", READY_S);
	wait_log("msg=\"policies applied\" trigger=start", ATTACH_S);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", client.host_if);
	wait_log(needle, ATTACH_S);
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
	return now_s() * 1e3;
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
			ls->ok_at[ls->n_ok] = now_s();
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
	st = proc_wait(t.loop, 10);
	t.loop = 0;
	cr_assert_eq(exit_code(st), 0, "the client loop: exit %d", exit_code(st));
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
	double end = now_s() + PROGRESS_S;

	for (;;) {
		bool enough = t.shared->n_ok >= base_ok + n_ok;

		for (enum kind k = 0; k < K_OK; k++)
			enough = enough && t.shared->attempts[k] >= base[k] + n;
		if (enough)
			return;
		cr_assert(!t.shared->done, "%s: the client loop stopped (its bounds?)", window);
		cr_assert(now_s() < end,
			  "%s: no progress within %.0f s: attempts %u/%u/%u (from %u/%u/%u), "
			  "answers %u (from %u), failed %u",
			  window, PROGRESS_S, t.shared->attempts[K_ADDR],
			  t.shared->attempts[K_PORT], t.shared->attempts[K_HOST], base[K_ADDR],
			  base[K_PORT], base[K_HOST], t.shared->n_ok, base_ok, t.shared->failed);
		pause_ms(2);
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
	double t0 = now_s(), gap_ms[RESTARTS], killed, ready;
	struct arrived a;
	long conns, bytes;

	pods_up();
	write_policy();
	agent_start(0);
	capture_start();
	loop_start();
	fprintf(stderr, "[restart] client %s/%s on %s, server %s/%s; setup %.1f s\n", client.v4,
		client.v6, client.host_if, server.v4, server.v6, now_s() - t0);
	snapshot(base);
	wait_progress(base, 0, WINDOW_N, 3, "before the first kill");

	for (int i = 0; i < RESTARTS; i++) {
		int st;

		/* no agent: the pinned programs and maps enforce alone */
		killed = now_s();
		kill(t.agent, SIGKILL);
		st = proc_wait(t.agent, 10);
		t.agent = 0;
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the agent: status 0x%x", st);
		snapshot(base);
		base_ok = t.shared->n_ok;
		wait_progress(base, base_ok, WINDOW_N, 1, "no agent");

		/* a new agent on the same pins: it takes the set over, then puts its own in force */
		agent_start(i + 1);
		ready = now_s();
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
		a.addr, a.port, a.host_data, a.host_syn, conns, bytes, a.ok_data, now_s() - t0);

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
