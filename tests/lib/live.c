// SPDX-License-Identifier: Apache-2.0
/*
 * The live integration tests' scaffolding: node namespace, bpffs, pods, processes, the agent,
 * the sweep; see live.h. Not for what the tests check.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
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

#include "live.h"

#define BPF_FS_MAGIC_ 0xcafe4a11 /* linux/magic.h's BPF_FS_MAGIC */

struct loupe_live loupe_live;

/* ------------------------------------------------------------------ small things */

double loupe_live_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void loupe_live_pause_ms(int ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L }, NULL);
}

int loupe_live_sh(const char *fmt, ...)
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

char *loupe_live_slurp(const char *path)
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

size_t loupe_live_count(const char *s, const char *needle)
{
	size_t n = 0;

	for (; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

void loupe_live_tmp_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", loupe_live.tmp, name);
}

void loupe_live_write_file(const char *path, const char *text)
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

bool loupe_live_pid_alive(int pid)
{
	char path[64], *stat, *paren;
	bool alive;

	if (kill(pid, 0) && errno == ESRCH)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	stat = loupe_live_slurp(path);
	paren = strrchr(stat, ')');
	alive = !paren || strncmp(paren, ") Z", 3) != 0;
	free(stat);
	return alive;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* FTW_MOUNT: never into a bpffs still mounted below (its pins are not files to delete) */
static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static bool is_bpffs(const char *path)
{
	struct statfs sf;

	return statfs(path, &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC_;
}

/* ------------------------------------------------------------------ processes */

pid_t loupe_live_proc_start(char *const argv[], const char *out, const char *err)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, loupe_live.envp);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "cannot run %s: %s", argv[0], strerror(rc));
	return pid;
}

int loupe_live_proc_wait(pid_t pid, double timeout_s)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0), status;
	double end = loupe_live_now_s() + timeout_s;

	for (;;) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		int left = (int)((end - loupe_live_now_s()) * 1000);

		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		status = -1;
		if (left <= 0)
			break;
		if (pidfd >= 0)
			poll(&p, 1, left);
		else
			loupe_live_pause_ms(10);
	}
	if (pidfd >= 0)
		close(pidfd);
	return status;
}

int loupe_live_proc_stop(pid_t pid, int sig, double timeout_s)
{
	int status;

	kill(pid, sig);
	status = loupe_live_proc_wait(pid, timeout_s);
	if (status == -1) {
		kill(pid, SIGKILL);
		status = loupe_live_proc_wait(pid, 5);
	}
	return status;
}

int loupe_live_exit_code(int status)
{
	if (status == -1)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void name_path(char *buf, size_t size, const char *name, const char *ext)
{
	char base[96];

	snprintf(base, sizeof(base), "%s.%s", name, ext);
	loupe_live_tmp_path(buf, size, base);
}

int loupe_live_proc_run(char *const argv[], const char *name, double timeout_s, char **ret_out)
{
	char out[PATH_MAX], err[PATH_MAX];
	int status;
	pid_t pid;

	name_path(out, sizeof(out), name, "out");
	name_path(err, sizeof(err), name, "err");
	pid = loupe_live_proc_start(argv, out, err);
	status = loupe_live_proc_wait(pid, timeout_s);
	if (status == -1) {
		kill(pid, SIGKILL);
		loupe_live_proc_wait(pid, 5);
	}
	if (ret_out)
		*ret_out = loupe_live_slurp(out);
	return loupe_live_exit_code(status);
}

char *loupe_live_run_err(const char *name)
{
	char path[PATH_MAX];

	name_path(path, sizeof(path), name, "err");
	return loupe_live_slurp(path);
}

char *loupe_live_must_run(char *const argv[], const char *name, double timeout_s)
{
	char *out, *err;
	int rc = loupe_live_proc_run(argv, name, timeout_s, &out);

	if (rc != 0) {
		err = loupe_live_run_err(name);
		cr_assert_fail("%s: exit %d%s; stderr:\n%s\nstdout:\n%s", name, rc,
			       rc == -1 ? " (timed out, killed)" : "", err, out);
	}
	return out;
}

pid_t loupe_live_proc_keep(char *const argv[], const char *out, const char *err)
{
	pid_t pid;

	cr_assert_lt(loupe_live.n_keep, LOUPE_LIVE_KEEP_MAX);
	pid = loupe_live_proc_start(argv, out, err);
	loupe_live.keep[loupe_live.n_keep++] = pid;
	return pid;
}

void loupe_live_proc_forget(pid_t pid)
{
	for (int i = 0; i < loupe_live.n_keep; i++) {
		if (loupe_live.keep[i] == pid) {
			loupe_live.keep[i] = loupe_live.keep[--loupe_live.n_keep];
			return;
		}
	}
}

void loupe_live_wait_file(const char *path, const char *needle, size_t count, double timeout_s,
			  pid_t *pid, const char *who, const char *log)
{
	double end = loupe_live_now_s() + timeout_s;
	pid_t p = *pid;
	char *s, *l;
	int status;

	for (;;) {
		s = loupe_live_slurp(path);
		if (loupe_live_count(s, needle) >= count) {
			free(s);
			return;
		}
		free(s);
		if (waitpid(p, &status, WNOHANG) == p) {
			*pid = 0;
			loupe_live_proc_forget(p);
			l = loupe_live_slurp(log);
			cr_assert_fail("%s exited (status 0x%x) before '%s' x%zu; its log:\n%s",
				       who, status, needle, count, l);
		}
		if (loupe_live_now_s() > end) {
			l = loupe_live_slurp(log);
			cr_assert_fail("%s: no '%s' x%zu within %.0f s; its log:\n%s", who, needle,
				       count, timeout_s, l);
		}
		loupe_live_pause_ms(10);
	}
}

/* ------------------------------------------------------------------ cleanup */

/*
 * Removes everything of run @id: processes in its node namespace (agents, captures, curl of
 * /metrics: only the test runs anything there), the agent's filters and pins, its pods (and
 * what runs in them), the node with its routes and veths' host sides, its bpffs and temp dirs.
 * Run by the test's .fini, by the runner after the run, and for runs that died; each step is
 * idempotent.
 */
static void sweep(const struct loupe_live_names *names, int id)
{
	char node[32], prefix[32], path[PATH_MAX], pattern[64];
	bool node_there;
	glob_t g = { 0 };
	double end;

	snprintf(node, sizeof(node), "%s%d", names->node, id);
	snprintf(prefix, sizeof(prefix), "%s%d-", names->pods, id);
	snprintf(path, sizeof(path), "/var/run/netns/%s", node);
	node_there = access(path, F_OK) == 0;
	snprintf(pattern, sizeof(pattern), "/tmp/%s-%d-*", names->tmp, id);
	glob(pattern, 0, NULL, &g);

	if (node_there) {
		loupe_live_sh("ip netns pids %s 2>/dev/null | xargs -r kill -KILL 2>/dev/null",
			      node);
		end = loupe_live_now_s() + 5;
		while (loupe_live_sh("test -z \"$(ip netns pids %s 2>/dev/null)\"", node) != 0 &&
		       loupe_live_now_s() < end)
			loupe_live_pause_ms(20);
		if (names->sweep_node)
			names->sweep_node(node);
		for (size_t i = 0; i < g.gl_pathc; i++) {
			snprintf(path, sizeof(path), "%s/bpffs", g.gl_pathv[i]);
			if (is_bpffs(path))
				loupe_live_sh(
					"ip netns exec %s %s --uninstall --bpffs-dir %s/loupe "
					">/dev/null 2>&1",
					node, LOUPE_LIVE_AGENT_BIN, path);
		}
	}
	snprintf(path, sizeof(path), "/run/loupe-pods/%s", prefix);
	if (access(path, F_OK) == 0)
		loupe_live_sh("LOUPE_PODS_PREFIX=%s LOUPE_PODS_NODE=%s %s down-all >/dev/null 2>&1",
			      prefix, node, LOUPE_LIVE_PODS);
	if (node_there)
		loupe_live_sh("ip netns del %s 2>/dev/null", node);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		snprintf(path, sizeof(path), "%s/bpffs", g.gl_pathv[i]);
		/* unmounting frees what is pinned there */
		while (is_bpffs(path) && umount2(path, MNT_DETACH) == 0)
			;
		rm_tree(g.gl_pathv[i]);
	}
	globfree(&g);
}

/* The leftovers of runs whose runner is gone (killed, crashed): their names carry its pid. */
static void sweep_dead_runs(const struct loupe_live_names *names, int self)
{
	static const char *const where[] = { "/var/run/netns", "/tmp" };
	size_t node_len = strlen(names->node), tmp_len = strlen(names->tmp);

	for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
		DIR *d = opendir(where[w]);
		struct dirent *e;

		if (!d)
			continue;
		while ((e = readdir(d))) {
			int pid = 0, end = 0;

			/* <node><pid> in /var/run/netns, <tmp>-<pid>-XXXXXX in /tmp */
			if (w == 0 ? strncmp(e->d_name, names->node, node_len) ||
					     sscanf(e->d_name + node_len, "%d%n", &pid, &end) !=
						     1 ||
					     e->d_name[node_len + end]
				   : strncmp(e->d_name, names->tmp, tmp_len) ||
					     sscanf(e->d_name + tmp_len, "-%d%n", &pid, &end) !=
						     1 ||
					     e->d_name[tmp_len + end] != '-')
				continue;
			if (pid <= 0 || pid == self || loupe_live_pid_alive(pid))
				continue;
			sweep(names, pid);
		}
		closedir(d);
	}
}

void loupe_live_teardown(void)
{
	const struct loupe_live_names *names = loupe_live.names;

	while (loupe_live.n_keep > 0)
		loupe_live_proc_stop(loupe_live.keep[--loupe_live.n_keep], SIGTERM, 5);
	if (loupe_live.agent > 0)
		loupe_live_proc_stop(loupe_live.agent, SIGTERM, 10);
	loupe_live.agent = 0;
	if (loupe_live.id && names)
		sweep(names, loupe_live.id);
	memset(&loupe_live, 0, sizeof(loupe_live));
	loupe_live.names = names;
}

void loupe_live_undo(void)
{
	if (loupe_live.names && loupe_live.names->teardown)
		loupe_live.names->teardown();
	else
		loupe_live_teardown();
}

void loupe_live_pre_all(const char *id_env)
{
	char id[16];

	if (getenv(id_env))
		return;
	snprintf(id, sizeof(id), "%d", (int)getpid());
	setenv(id_env, id, 1);
}

void loupe_live_post_all(const struct loupe_live_names *names)
{
	const char *id = getenv(names->id_env);

	if (geteuid() == 0 && id && atoi(id) > 0)
		sweep(names, atoi(id));
}

void loupe_live_setup(const struct loupe_live_names *names)
{
	const char *id = getenv(names->id_env);
	int err;

	loupe_live.names = names;
	/* a closed pipe must fail a write, not kill us before .fini cleans up */
	signal(SIGPIPE, SIG_IGN);
	loupe_live.id = id && atoi(id) > 0 ? atoi(id) : (int)getpid();
	sweep_dead_runs(names, loupe_live.id);
	sweep(names, loupe_live.id); /* a test of this run before this one, or a retry */

	snprintf(loupe_live.node, sizeof(loupe_live.node), "%s%d", names->node, loupe_live.id);
	snprintf(loupe_live.prefix, sizeof(loupe_live.prefix), "%s%d-", names->pods, loupe_live.id);
	snprintf(loupe_live.tmp, sizeof(loupe_live.tmp), "/tmp/%s-%d-XXXXXX", names->tmp,
		 loupe_live.id);
	LOUPE_LIVE_CHECK(mkdtemp(loupe_live.tmp), "mkdtemp: %s", strerror(errno));
	/* PATH only, plus what scripts/pods needs: no LOUPE_* of the caller's changes the test */
	snprintf(loupe_live.env[0], sizeof(loupe_live.env[0]),
		 "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
	snprintf(loupe_live.env[1], sizeof(loupe_live.env[1]), "LOUPE_PODS_PREFIX=%s",
		 loupe_live.prefix);
	snprintf(loupe_live.env[2], sizeof(loupe_live.env[2]), "LOUPE_PODS_NODE=%s",
		 loupe_live.node);
	/* HOME: tshark's profile, not root's */
	snprintf(loupe_live.env[3], sizeof(loupe_live.env[3]), "HOME=%s", loupe_live.tmp);
	for (int i = 0; i < 4; i++)
		loupe_live.envp[i] = loupe_live.env[i];
	loupe_live.envp[4] = NULL;
	loupe_live_tmp_path(loupe_live.agent_log, sizeof(loupe_live.agent_log), "agent.err");

	if (loupe_live_sh("ip netns add %s 2>/dev/null", loupe_live.node))
		LOUPE_LIVE_SKIP("cannot make a network namespace (ip netns add %s)",
				loupe_live.node);
	LOUPE_LIVE_CHECK(loupe_live_sh("ip -n %s link set lo up", loupe_live.node) == 0,
			 "lo up in %s", loupe_live.node);

	snprintf(loupe_live.bpffs, sizeof(loupe_live.bpffs), "%s/bpffs", loupe_live.tmp);
	LOUPE_LIVE_CHECK(mkdir(loupe_live.bpffs, 0700) == 0, "mkdir %s: %s", loupe_live.bpffs,
			 strerror(errno));
	if (mount("bpf", loupe_live.bpffs, "bpf", 0, NULL)) {
		err = errno;
		if (err == ENODEV)
			LOUPE_LIVE_SKIP("the kernel has no bpffs");
		LOUPE_LIVE_CHECK(false, "mount bpffs on %s: %s", loupe_live.bpffs, strerror(err));
	}
	snprintf(loupe_live.pin_dir, sizeof(loupe_live.pin_dir), "%s/loupe", loupe_live.bpffs);
}

/* ------------------------------------------------------------------ pods */

static void pod_summary(struct loupe_live_pod *p, const char *out)
{
	const char *last = out, *nl;
	char name[64];

	/* the last non-empty line */
	for (const char *s = out; (nl = strchr(s, '\n')); s = nl + 1)
		if (nl[1] && nl[1] != '\n')
			last = nl + 1;
	cr_assert_eq(sscanf(last, "pod=%63s netns=%63s host_if=%15s ipv4=%15s ipv6=%45s", name,
			    p->ns, p->host_if, p->v4, p->v6),
		     5, "pods %s: no summary line in:\n%s", p->name, out);
	cr_assert_str_eq(name, p->name);
}

/* about 1.5 s a pod: IPv6 DAD on the host side */
void loupe_live_pods_up(struct loupe_live_pod *const pods[], int n)
{
	char out[LOUPE_LIVE_PODS_MAX][PATH_MAX], err[LOUPE_LIVE_PODS_MAX][PATH_MAX], name[32];
	pid_t pid[LOUPE_LIVE_PODS_MAX];
	char *text, *log;
	int rc;

	cr_assert_leq(n, LOUPE_LIVE_PODS_MAX);
	for (int i = 0; i < n; i++) {
		char *argv[] = {
			LOUPE_LIVE_PODS, "up", (char *)pods[i]->name, "--net", "ptp", NULL
		};

		snprintf(name, sizeof(name), "up-%s.out", pods[i]->name);
		loupe_live_tmp_path(out[i], sizeof(out[i]), name);
		snprintf(name, sizeof(name), "up-%s.err", pods[i]->name);
		loupe_live_tmp_path(err[i], sizeof(err[i]), name);
		pid[i] = loupe_live_proc_start(argv, out[i], err[i]);
	}
	for (int i = 0; i < n; i++) {
		rc = loupe_live_exit_code(loupe_live_proc_wait(pid[i], LOUPE_LIVE_UP_S));
		if (rc == -1)
			loupe_live_proc_stop(pid[i], SIGINT, 10); /* up undoes itself on Ctrl-C */
		text = loupe_live_slurp(out[i]);
		log = loupe_live_slurp(err[i]);
		cr_assert_eq(rc, 0, "pods up %s: exit %d; stderr:\n%s", pods[i]->name, rc, log);
		pod_summary(pods[i], text);
		free(text);
		free(log);
	}
}

void loupe_live_pods_serve(const char *pod, const char *kind, const char *port, const char *name)
{
	char *argv[] = { LOUPE_LIVE_PODS, "serve", (char *)pod, (char *)kind, (char *)port, NULL };

	free(loupe_live_must_run(argv, name, LOUPE_LIVE_SERVE_S));
}

void loupe_live_pods_exec_argv(char *argv[LOUPE_LIVE_ARGV_MAX], const char *pod, char *const cmd[])
{
	int n = 0;

	argv[n++] = LOUPE_LIVE_PODS;
	argv[n++] = "exec";
	argv[n++] = (char *)pod;
	argv[n++] = "--";
	for (int i = 0; cmd[i]; i++) {
		cr_assert_lt(n, LOUPE_LIVE_ARGV_MAX - 1);
		argv[n++] = cmd[i];
	}
	argv[n] = NULL;
}

/* ------------------------------------------------------------------ the agent */

void loupe_live_agent_start(const struct loupe_live_agent *a)
{
	char *argv[LOUPE_LIVE_ARGV_MAX] = {
		"ip", "netns", "exec", loupe_live.node, LOUPE_LIVE_AGENT_BIN, "--standalone"
	};
	char out[PATH_MAX];
	int n = 6;

	if (a->policy) {
		argv[n++] = "--policy";
		argv[n++] = (char *)a->policy;
	}
	argv[n++] = "--output";
	argv[n++] = (char *)a->events;
	argv[n++] = "--metrics-addr";
	argv[n++] = (char *)a->metrics;
	if (a->idle_timeout) {
		argv[n++] = "--flow-idle-timeout";
		argv[n++] = (char *)a->idle_timeout;
	}
	argv[n++] = "--bpffs-dir";
	argv[n++] = loupe_live.pin_dir;
	argv[n++] = "--log-level";
	argv[n++] = "info";
	argv[n] = NULL;
	if (a->out)
		snprintf(out, sizeof(out), "%s", a->out);
	else
		loupe_live_tmp_path(out, sizeof(out), "agent.out");
	/* ip netns exec execs the agent: this pid is the agent's */
	loupe_live.agent = loupe_live_proc_start(argv, out, loupe_live.agent_log);
	loupe_live_agent_wait("msg=\"ready\"", 1, LOUPE_LIVE_READY_S);
}

void loupe_live_agent_wait(const char *needle, size_t count, double timeout_s)
{
	loupe_live_wait_file(loupe_live.agent_log, needle, count, timeout_s, &loupe_live.agent,
			     "loupe-agent", loupe_live.agent_log);
}

size_t loupe_live_agent_log_count(const char *needle)
{
	char *s = loupe_live_slurp(loupe_live.agent_log);
	size_t n = loupe_live_count(s, needle);

	free(s);
	return n;
}

pid_t loupe_live_tcpdump_start(char *const argv[], const char *out, const char *err,
			       double deadline_s)
{
	double end = loupe_live_now_s() + deadline_s;
	pid_t pid = loupe_live_proc_start(argv, out, err);

	for (;;) {
		char *log = loupe_live_slurp(err);

		if (strstr(log, "listening on")) {
			free(log);
			return pid;
		}
		cr_assert(loupe_live_now_s() < end && loupe_live_pid_alive(pid),
			  "tcpdump did not start:\n%s", log);
		free(log);
		loupe_live_pause_ms(10);
	}
}

bool loupe_live_capture_has(const char *path, uint16_t sport)
{
	uint8_t hdr[24], rec[16], frame[128];
	bool found = false, swap;
	uint32_t magic;
	FILE *f = fopen(path, "r");

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

char *loupe_live_metrics(const char *addr, double deadline_s)
{
	char url[128];
	char *argv[] = {
		"ip", "netns", "exec", loupe_live.node, "curl", "-sS", "-m", "5", url, NULL
	};

	snprintf(url, sizeof(url), "http://%s/metrics", addr);
	return loupe_live_must_run(argv, "metrics", deadline_s);
}

long long loupe_live_sample(const char *text, const char *series)
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
