// SPDX-License-Identifier: Apache-2.0
/*
 * The real loupe-agent binary on real pod veths: attach latency of a new pod, the initial
 * dump, detach, shutdown and --uninstall, a kill -9 restart under traffic (filters never
 * missing, flow counters exact), and its flag errors. Each test runs the agent in a network
 * namespace of its own (the "host", which the test process enters too: --uninstall sweeps
 * every link of its namespace, so in the root one it would take other agents' filters), pods
 * as further namespaces holding the veth peers, and pins in a private bpffs.
 * Not for the attach module's corner cases (test_attach) nor the events' fields (test_pods).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>
#include <json-c/json.h>

#include "loupe/datapath.h"
#include "live.h"
#include "tcview.h"

#define AGENT_BIN LOUPE_BIN_DIR "/loupe-agent"

/* What the agent promises (--help, issue 3), written out rather than taken from its headers. */
#define TC_HANDLE 0x10ad
#define TC_PRIO	  1

#define PODS_MAX   3
#define AGENTS_MAX 3

#define READY_S	     30.0 /* loading and verifying the programs, on a slow machine */
#define ATTACH_MAX_S 1.0  /* issue 3: a new pod is attached within one second */
#define EXIT_S	     10.0

/* The restart test's one flow: pod 198.19.0.2:SRC_PORT -> host side 198.19.0.1:SINK_PORT. */
#define SRC_PORT     40001
#define SINK_PORT    40002
#define PAYLOAD	     32
#define FRAME	     (14 + 20 + 8 + PAYLOAD) /* what the datapath counts: the whole frame */
#define SEND_MAX     3000		     /* one per ms: at most ~3 s of traffic */
#define WARMUP_PKTS  100
#define AFTER_PKTS   200
#define SAMPLE_MAX_S 30.0

struct pod {
	char ns[40];
	char host[IF_NAMESIZE]; /* the host-side veth; its peer is eth0 in ns */
	int ifindex;
	int idx;
};

struct sampler {
	pthread_t thread;
	int ifindex;
	atomic_bool stop;
	atomic_ulong rounds; /* both hooks queried */
	atomic_ulong misses; /* queries that found no loupe filter */
	int first_err, first_hook;
	uint32_t ids[2][4]; /* distinct programs seen per hook */
	int nids[2];
	bool more_ids;
};

struct sender {
	pthread_t thread;
	int fd;
	struct sockaddr_in dst;
	atomic_bool stop;
	atomic_ulong sent;
	atomic_int err; /* the first sendto errno; the sender stops there */
};

static struct {
	char tmp[64];
	bool tmp_made;
	char bpffs[64];
	bool bpffs_made, bpffs_mounted;
	char pin_dir[96];
	char host_ns[40];
	bool host_ns_made;
	int orig_ns_fd;
	bool in_host_ns;
	struct pod pod[PODS_MAX];
	bool pod_ns_made[PODS_MAX];
	pid_t agent[AGENTS_MAX]; /* every loupe-agent started and not reaped yet; 0: free */
	struct sampler sampler;
	bool sampler_running;
	struct sender sender;
	bool sender_running;
	int sink_fd;
} t = { .orig_ns_fd = -1, .sink_fd = -1, .sender.fd = -1 };

static void rm_tree(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void teardown(void)
{
	if (t.sender_running) {
		atomic_store(&t.sender.stop, true);
		pthread_join(t.sender.thread, NULL);
	}
	if (t.sampler_running) {
		atomic_store(&t.sampler.stop, true);
		pthread_join(t.sampler.thread, NULL);
	}
	if (t.sender.fd >= 0)
		close(t.sender.fd);
	if (t.sink_fd >= 0)
		close(t.sink_fd);
	for (int i = 0; i < AGENTS_MAX; i++) {
		if (t.agent[i] <= 0)
			continue;
		kill(t.agent[i], SIGKILL);
		waitpid(t.agent[i], NULL, 0);
	}
	if (t.in_host_ns)
		setns(t.orig_ns_fd, CLONE_NEWNET);
	if (t.orig_ns_fd >= 0)
		close(t.orig_ns_fd);
	/* the veths, their qdiscs and filters go with the host namespace; the peers with them */
	if (t.host_ns_made)
		loupe_live_sh("ip netns del %s 2>/dev/null", t.host_ns);
	for (int i = 0; i < PODS_MAX; i++)
		if (t.pod_ns_made[i])
			loupe_live_sh("ip netns del %s 2>/dev/null", t.pod[i].ns);
	/* unmounting frees what is pinned there: the programs, the maps */
	if (t.bpffs_mounted)
		umount2(t.bpffs, MNT_DETACH);
	if (t.bpffs_made)
		rmdir(t.bpffs);
	if (t.tmp_made)
		rm_tree(t.tmp);
	memset(&t, 0, sizeof(t));
	t.orig_ns_fd = t.sink_fd = t.sender.fd = -1;
}

/* Criterion runs no .fini after a skip or a failed .init: everything is undone first. */
#define setup_check(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			teardown();                                                                \
			cr_assert_fail(__VA_ARGS__);                                               \
		}                                                                                  \
	} while (0)

static void setup_tmp(void)
{
	snprintf(t.tmp, sizeof(t.tmp), "/tmp/loupe-ta-XXXXXX");
	setup_check(mkdtemp(t.tmp), "mkdtemp: %s", strerror(errno));
	t.tmp_made = true;
}

static void setup(void)
{
	char path[64];
	int pid = getpid(), fd, err;

	if (geteuid() != 0)
		cr_skip_test("needs root: network namespaces, veths, bpffs, BPF programs");
	if (access(AGENT_BIN, X_OK))
		cr_skip_test("%s is not built", AGENT_BIN);
	libbpf_set_print(NULL); /* a query of a hook without a filter is expected, not news */
	setup_tmp();
	snprintf(t.host_ns, sizeof(t.host_ns), "loupe-ta-%d-h", pid);
	t.orig_ns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	setup_check(t.orig_ns_fd >= 0, "own netns: %s", strerror(errno));
	if (loupe_live_sh("ip netns add %s", t.host_ns)) {
		teardown();
		cr_skip_test("cannot make a network namespace (ip netns add)");
	}
	t.host_ns_made = true;
	snprintf(path, sizeof(path), "/var/run/netns/%s", t.host_ns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	setup_check(fd >= 0, "%s: %s", path, strerror(errno));
	err = setns(fd, CLONE_NEWNET) ? errno : 0;
	close(fd);
	setup_check(!err, "setns %s: %s", t.host_ns, strerror(err));
	t.in_host_ns = true;

	snprintf(t.bpffs, sizeof(t.bpffs), "/tmp/loupe-ta-bpffs-XXXXXX");
	setup_check(mkdtemp(t.bpffs), "mkdtemp: %s", strerror(errno));
	t.bpffs_made = true;
	if (mount("bpf", t.bpffs, "bpf", 0, NULL)) {
		err = errno;
		teardown();
		if (err == ENODEV)
			cr_skip_test("the kernel has no bpffs");
		cr_assert_fail("mount bpffs: %s", strerror(err));
	}
	t.bpffs_mounted = true;
	snprintf(t.pin_dir, sizeof(t.pin_dir), "%s/loupe", t.bpffs);
}

TestSuite(agent, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(agent_flags, .init = setup_tmp, .fini = teardown, .timeout = 60);

/* ---- files and processes ---- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, n + 1);
	cr_assert_not_null(buf);
	n = fread(buf, 1, n, f);
	buf[n > 0 ? n : 0] = 0;
	fclose(f);
	return buf;
}

static bool file_has(const char *path, const char *needle)
{
	char *s = slurp(path);
	bool ret = strstr(s, needle) != NULL;

	free(s);
	return ret;
}

static void tmp_path(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void tmp_path(char *buf, size_t size, const char *fmt, ...)
{
	char name[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	snprintf(buf, size, "%s/%s", t.tmp, name);
}

/* Starts @argv (NULL-terminated; argv[0] unused) with stdout and stderr in files of t.tmp. */
static pid_t spawn(char **argv, const char *out, const char *err)
{
	static char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rc, slot;

	argv[0] = AGENT_BIN;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	/* PATH only: no LOUPE_* of the caller's changes what the test asks for */
	for (slot = 0; slot < AGENTS_MAX && t.agent[slot]; slot++)
		;
	cr_assert_lt(slot, AGENTS_MAX, "more than %d agents at once", AGENTS_MAX);
	rc = posix_spawn(&pid, AGENT_BIN, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", AGENT_BIN, strerror(rc));
	t.agent[slot] = pid; /* .fini kills it, whatever happens from here */
	return pid;
}

/* Forgets agent @pid once reaped, so that .fini kills no stranger under a reused pid. */
static void agent_reaped(pid_t pid)
{
	for (int i = 0; i < AGENTS_MAX; i++)
		if (t.agent[i] == pid)
			t.agent[i] = 0;
}

/* Waits up to @timeout_s for @pid to exit and reaps it; its wait status, or -1 (running). */
static int wait_exit(pid_t pid, double timeout_s)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0), status = -1;
	double end = loupe_live_now_s() + timeout_s;

	cr_assert_geq(pidfd, 0, "pidfd_open %d: %s", pid, strerror(errno));
	for (;;) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };
		int left = (int)((end - loupe_live_now_s()) * 1000);

		if (waitpid(pid, &status, WNOHANG) == pid) {
			agent_reaped(pid);
			break;
		}
		status = -1;
		if (left <= 0)
			break;
		poll(&p, 1, left);
	}
	close(pidfd);
	return status;
}

/* Agent @n: standalone, on the test's pins, only the test's veths, no metrics listener. */
static pid_t agent_start(int n)
{
	char glob[32], out[PATH_MAX], err[PATH_MAX], events[PATH_MAX];
	char *argv[] = { NULL,		"--standalone", "--metrics-addr", "off",
			 "--bpffs-dir", t.pin_dir,	"--iface-globs",  glob,
			 "--output",	events,		"--log-level",	  "info",
			 NULL };

	snprintf(glob, sizeof(glob), "lt%d*", getpid());
	tmp_path(out, sizeof(out), "agent%d.out", n);
	tmp_path(err, sizeof(err), "agent%d.err", n);
	tmp_path(events, sizeof(events), "agent%d.jsonl", n);
	return spawn(argv, out, err);
}

/* Waits until agent @n logged @needle; fails with its log when it did not, or exited. */
static void agent_wait_log(int n, pid_t pid, const char *needle, double timeout_s)
{
	char err[PATH_MAX], *log;
	double end = loupe_live_now_s() + timeout_s;
	int status;

	tmp_path(err, sizeof(err), "agent%d.err", n);
	while (!file_has(err, needle)) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			agent_reaped(pid);
			log = slurp(err);
			cr_assert_fail(
				"agent %d exited (status 0x%x) before logging %s; its log:\n%s", n,
				status, needle, log);
		}
		if (loupe_live_now_s() > end) {
			log = slurp(err);
			cr_assert_fail("agent %d: no %s within %.0f s; its log:\n%s", n, needle,
				       timeout_s, log);
		}
		loupe_live_pause_ms(2);
	}
}

static void agent_wait_ready(int n, pid_t pid)
{
	agent_wait_log(n, pid, "msg=\"ready\"", READY_S);
}

/* Runs loupe-agent @argv to its end (at most EXIT_S); its exit status, its output in files. */
static int agent_run(char **argv, const char *name)
{
	char out[PATH_MAX], err[PATH_MAX];
	pid_t pid;
	int status;

	tmp_path(out, sizeof(out), "%s.out", name);
	tmp_path(err, sizeof(err), "%s.err", name);
	pid = spawn(argv, out, err);
	status = wait_exit(pid, EXIT_S);
	cr_assert_neq(status, -1, "loupe-agent %s did not exit within %.0f s", argv[1], EXIT_S);
	cr_assert(WIFEXITED(status), "loupe-agent %s: killed by signal %d", argv[1],
		  WTERMSIG(status));
	return WEXITSTATUS(status);
}

/* ---- pods ---- */

/* A pod's namespace: loupe-ta-<pid>-<tag>. */
static struct pod *pod_ns(int i, char tag)
{
	struct pod *p = &t.pod[i];

	snprintf(p->ns, sizeof(p->ns), "loupe-ta-%d-%c", getpid(), tag);
	snprintf(p->host, sizeof(p->host), "lt%d%c", getpid(), tag);
	p->idx = i;
	cr_assert_eq(loupe_live_sh("ip netns add %s", p->ns), 0, "ip netns add %s", p->ns);
	t.pod_ns_made[i] = true;
	return p;
}

/* The pod's veth, made as a CNI plugin makes it: the peer is born in the pod as eth0. */
static void pod_link(struct pod *p)
{
	cr_assert_eq(
		loupe_live_sh("ip link add %s address 02:00:00:00:%02x:01 type veth peer name eth0 "
			      "netns %s address 02:00:00:00:%02x:02",
			      p->host, p->idx, p->ns, p->idx),
		0, "veth %s", p->host);
	p->ifindex = if_nametoindex(p->host);
	cr_assert_gt(p->ifindex, 0, "%s: %s", p->host, strerror(errno));
}

/*
 * Up, 198.19.<idx>.1/30 on the host side, .2/30 in the pod, and the host side's neighbour
 * entry made in the pod: no ARP in flight while packets are counted.
 */
static void pod_config(struct pod *p)
{
	cr_assert_eq(
		loupe_live_sh(
			"ip link set %s up && ip addr add 198.19.%d.1/30 dev %s && "
			"ip -n %s link set lo up && ip -n %s link set eth0 up && "
			"ip -n %s addr add 198.19.%d.2/30 dev eth0 && "
			"ip -n %s neigh replace 198.19.%d.1 lladdr 02:00:00:00:%02x:01 dev eth0 "
			"nud permanent",
			p->host, p->idx, p->host, p->ns, p->ns, p->ns, p->idx, p->ns, p->idx,
			p->idx),
		0, "configuring %s", p->host);
}

static struct pod *pod_make(int i, char tag)
{
	struct pod *p = pod_ns(i, tag);

	pod_link(p);
	pod_config(p);
	return p;
}

/* ---- what is on the hooks ---- */

/* The program of loupe's filter on clsact @hook (0 ingress, 1 egress) of @ifindex: 0 or -errno. */
static int hook_query(int ifindex, int hook, uint32_t *ret_id)
{
	LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = ifindex,
		    .attach_point = hook == 0 ? BPF_TC_INGRESS : BPF_TC_EGRESS);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = TC_HANDLE, .priority = TC_PRIO);
	int err = bpf_tc_query(&h, &o);

	if (!err)
		*ret_id = o.prog_id;
	return err;
}

static bool both_hooks(int ifindex, uint32_t ret_ids[2])
{
	uint32_t ids[2];

	for (int hook = 0; hook < 2; hook++)
		if (hook_query(ifindex, hook, &ids[hook]))
			return false;
	if (ret_ids)
		memcpy(ret_ids, ids, sizeof(ids));
	return true;
}

/* The id of the program pinned as <pin_dir>/@name. */
static uint32_t pinned_prog_id(const char *name)
{
	struct bpf_prog_info info = { 0 };
	uint32_t len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t.pin_dir, name);
	fd = bpf_obj_get(path);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0, "%s: %s", path, strerror(errno));
	close(fd);
	return info.id;
}

static uint32_t pinned_map_id(const char *name)
{
	struct bpf_map_info info = { 0 };
	uint32_t len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t.pin_dir, name);
	fd = bpf_obj_get(path);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0, "%s: %s", path, strerror(errno));
	close(fd);
	return info.id;
}

/* Both hooks of @p run loupe's filter, with the programs the agent pinned last. */
static void expect_pinned_programs(const struct pod *p, uint32_t ret_ids[2])
{
	uint32_t ids[2] = { 0, 0 };

	cr_assert(both_hooks(p->ifindex, ids),
		  "%s: loupe's filter (handle 0x%x prio %d) is "
		  "not on both clsact hooks",
		  p->host, TC_HANDLE, TC_PRIO);
	/* clsact ingress sees what leaves the pod: the pod-egress program, and vice versa */
	cr_expect_eq(ids[0], pinned_prog_id(LOUPE_PROG_POD_EGRESS), "%s ingress: program %u",
		     p->host, ids[0]);
	cr_expect_eq(ids[1], pinned_prog_id(LOUPE_PROG_POD_INGRESS), "%s egress: program %u",
		     p->host, ids[1]);
	if (ret_ids)
		memcpy(ret_ids, ids, sizeof(ids));
}

/* ---- 1: attach within one second, the initial dump, detach ---- */

Test(agent, attach_within_one_second)
{
	char needle[64], err[PATH_MAX], *log;
	struct pod *a, *b;
	double t0, t1;
	pid_t agent;
	int status;

	/* a pod from before the agent: the initial dump attaches it, before "ready" */
	a = pod_make(0, 'a');
	agent = agent_start(0);
	agent_wait_ready(0, agent);
	expect_pinned_programs(a, NULL);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", a->host);
	tmp_path(err, sizeof(err), "agent0.err");
	cr_expect(file_has(err, needle), "no %s in the agent's log", needle);

	/* a pod made now: timed from just before its veth is made to loupe on both hooks */
	b = pod_ns(1, 'b');
	t0 = loupe_live_now_s();
	pod_link(b);
	while (!both_hooks(b->ifindex, NULL)) {
		if (loupe_live_now_s() - t0 > 5 * ATTACH_MAX_S)
			break;
		loupe_live_pause_ms(1);
	}
	t1 = loupe_live_now_s();
	fprintf(stderr, "test_agent: %s attached on both hooks %.1f ms after its creation\n",
		b->host, (t1 - t0) * 1000);
	cr_assert(both_hooks(b->ifindex, NULL), "%s: not attached %.1f s after its creation",
		  b->host, t1 - t0);
	cr_expect_lt(t1 - t0, ATTACH_MAX_S, "%s attached after %.3f s, more than %.0f s", b->host,
		     t1 - t0, ATTACH_MAX_S);
	expect_pinned_programs(b, NULL);
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", b->host);
	agent_wait_log(0, agent, needle, 5);

	/* the pod goes: detached, logged; the agent runs on and pod a keeps its filters */
	cr_assert_eq(loupe_live_sh("ip link del %s", b->host), 0);
	snprintf(needle, sizeof(needle), "msg=\"detached\" iface=%s ", b->host);
	agent_wait_log(0, agent, needle, 5);
	cr_expect(both_hooks(a->ifindex, NULL), "%s lost its filters when %s went", a->host,
		  b->host);
	snprintf(needle, sizeof(needle), "msg=\"detached\" iface=%s ", a->host);
	cr_expect(!file_has(err, needle), "%s detached though it stays", a->host);
	status = wait_exit(agent, 0);
	log = slurp(err);
	cr_expect_eq(status, -1, "the agent exited (status 0x%x); its log:\n%s", status, log);
	free(log);
}

/*
 * What the test's bpffs holds, one "name\n" each, sorted: a fresh one is not empty where the
 * kernel preloads its iterators (maps.debug, progs.debug).
 */
static char *bpffs_list(void)
{
	struct dirent **names;
	size_t size = 1, len = 0;
	char *buf;
	int n = scandir(t.bpffs, &names, NULL, alphasort);

	cr_assert_geq(n, 0, "%s: %s", t.bpffs, strerror(errno));
	for (int i = 0; i < n; i++)
		size += strlen(names[i]->d_name) + 1;
	buf = calloc(1, size);
	cr_assert_not_null(buf);
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, ".."))
			len += sprintf(buf + len, "%s\n", names[i]->d_name);
		free(names[i]);
	}
	free(names);
	return buf;
}

/* ---- 2: SIGTERM, then --uninstall: nothing of loupe's is left ---- */

Test(agent, uninstall_leaves_nothing)
{
	char *uninstall[] = { NULL, "--uninstall", "--bpffs-dir", t.pin_dir, NULL };
	char err[PATH_MAX], needle[64], *log;
	uint32_t ids[3]; /* the two programs, the flow map */
	struct pod *pods[2];
	double end;
	pid_t agent;
	int status, rc;
	char *fresh, *after;

	fresh = bpffs_list();
	pods[0] = pod_make(0, 'a');
	agent = agent_start(0);
	agent_wait_ready(0, agent);
	pods[1] = pod_make(1, 'b');
	snprintf(needle, sizeof(needle), "msg=\"attached\" iface=%s ", pods[1]->host);
	agent_wait_log(0, agent, needle, 5);
	for (int i = 0; i < 2; i++) {
		expect_pinned_programs(pods[i], ids);
		cr_assert(loupe_tcview_has_clsact(pods[i]->host), "%s: no clsact", pods[i]->host);
	}
	ids[2] = pinned_map_id(LOUPE_MAP_FLOWS4);

	cr_assert_eq(kill(agent, SIGTERM), 0);
	status = wait_exit(agent, EXIT_S);
	tmp_path(err, sizeof(err), "agent0.err");
	log = slurp(err);
	cr_assert_neq(status, -1, "no exit within %.0f s of SIGTERM", EXIT_S);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "after SIGTERM: wait status 0x%x, not exit 0; its log:\n%s", status, log);
	free(log);
	/* enforcement outlives the agent: stopping it removes nothing */
	for (int i = 0; i < 2; i++)
		cr_expect(both_hooks(pods[i]->ifindex, NULL), "%s: filters gone with the agent",
			  pods[i]->host);

	rc = agent_run(uninstall, "uninstall");
	tmp_path(err, sizeof(err), "uninstall.err");
	log = slurp(err);
	cr_assert_eq(rc, 0, "--uninstall exited %d; its log:\n%s", rc, log);
	free(log);

	for (int i = 0; i < 2; i++) {
		for (int hook = 0; hook < 2; hook++) {
			struct loupe_tcview_hook v =
				loupe_tcview_hook(pods[i]->host, hook, TC_HANDLE);
			uint32_t id;

			cr_expect_eq(v.loupe, 0, "%s %s: %d loupe filters left", pods[i]->host,
				     loupe_tcview_hook_name(hook), v.loupe);
			cr_expect_eq(v.foreign, 0, "%s %s: %d other filters", pods[i]->host,
				     loupe_tcview_hook_name(hook), v.foreign);
			cr_expect_neq(hook_query(pods[i]->ifindex, hook, &id), 0,
				      "%s %s: bpf_tc_query still finds program %u", pods[i]->host,
				      loupe_tcview_hook_name(hook), id);
		}
		cr_expect(!loupe_tcview_has_clsact(pods[i]->host), "%s: loupe's clsact is left",
			  pods[i]->host);
	}
	after = bpffs_list();
	cr_expect_str_eq(after, fresh, "the bpffs holds\n%sand held before the agent\n%s", after,
			 fresh);
	free(after);
	free(fresh);
	/* nothing holds them any more: the programs and the flow map are freed, not just unlinked */
	end = loupe_live_now_s() + 5;
	for (int i = 0; i < 3; i++) {
		int fd;

		while ((fd = i < 2 ? bpf_prog_get_fd_by_id(ids[i])
				   : bpf_map_get_fd_by_id(ids[i])) >= 0) {
			close(fd);
			cr_assert(loupe_live_now_s() < end,
				  "%s %u is still loaded 5 s after --uninstall",
				  i < 2 ? "program" : "flow map", ids[i]);
			loupe_live_pause_ms(1);
		}
	}
}

/* ---- 3: kill -9 and a new agent under traffic ---- */

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	double end = loupe_live_now_s() + SAMPLE_MAX_S;

	while (!atomic_load(&s->stop) && loupe_live_now_s() < end) {
		for (int hook = 0; hook < 2; hook++) {
			uint32_t id = 0;
			int err = hook_query(s->ifindex, hook, &id), k;

			if (err) {
				if (atomic_fetch_add(&s->misses, 1) == 0) {
					s->first_err = err;
					s->first_hook = hook;
				}
				continue;
			}
			for (k = 0; k < s->nids[hook] && s->ids[hook][k] != id; k++)
				;
			if (k < s->nids[hook])
				continue;
			if (k < 4)
				s->ids[hook][s->nids[hook]++] = id;
			else
				s->more_ids = true;
		}
		atomic_fetch_add(&s->rounds, 1);
		loupe_live_pause_ms(1);
	}
	return NULL;
}

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	char payload[PAYLOAD] = "loupe test_agent restart flow";
	struct timespec next;

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (int i = 0; i < SEND_MAX && !atomic_load(&s->stop); i++) {
		if (sendto(s->fd, payload, sizeof(payload), 0, (struct sockaddr *)&s->dst,
			   sizeof(s->dst)) != sizeof(payload)) {
			atomic_store(&s->err, errno);
			break;
		}
		atomic_fetch_add(&s->sent, 1);
		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	return NULL;
}

/* A UDP socket in @p's namespace, bound to SRC_PORT: made there, used from here. */
static int pod_socket(const struct pod *p)
{
	struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(SRC_PORT) };
	char path[64], addr[32];
	int ns, here, fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", p->ns);
	snprintf(addr, sizeof(addr), "198.19.%d.2", p->idx);
	inet_pton(AF_INET, addr, &src.sin_addr);
	here = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(here >= 0 && ns >= 0, "netns fds: %s", strerror(errno));
	cr_assert_eq(setns(ns, CLONE_NEWNET), 0, "setns pod: %s", strerror(errno));
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(setns(here, CLONE_NEWNET), 0, "setns back: %s", strerror(errno));
	close(ns);
	close(here);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	cr_assert_eq(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0, "bind %s:%d: %s", addr,
		     SRC_PORT, strerror(errno));
	return fd;
}

/* The flow's entry in the pinned map, zero when it has none yet. */
static struct loupe_flow flow_get(int map_fd, const struct loupe_flow_key4 *key)
{
	struct loupe_flow f = { 0 };

	if (bpf_map_lookup_elem(map_fd, key, &f)) {
		cr_assert_eq(errno, ENOENT, "flow lookup: %s", strerror(errno));
		memset(&f, 0, sizeof(f));
	}
	return f;
}

/*
 * Waits until the flow counted at least @n packets leaving the pod; the count then. Fails
 * the test at the deadline when @must, else returns the count short of @n.
 */
static uint64_t flow_wait_egress(int map_fd, const struct loupe_flow_key4 *key, uint64_t n,
				 double timeout_s, bool must, const char *what)
{
	double end = loupe_live_now_s() + timeout_s;
	uint64_t got;

	while ((got = flow_get(map_fd, key).packets[LOUPE_DIR_POD_EGRESS]) < n) {
		if (!must && loupe_live_now_s() >= end)
			break;
		cr_assert(loupe_live_now_s() < end,
			  "%s: the flow counted %llu packets in %.0f s, waited for %llu; "
			  "%lu sent, send error \"%s\"",
			  what, (unsigned long long)got, timeout_s, (unsigned long long)n,
			  atomic_load(&t.sender.sent), strerror(atomic_load(&t.sender.err)));
		loupe_live_pause_ms(1);
	}
	return got;
}

static uint32_t map_id(int fd)
{
	struct bpf_map_info info = { 0 };
	uint32_t len = sizeof(info);

	cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0, "map info: %s", strerror(errno));
	return info.id;
}

Test(agent, restart_is_hitless)
{
	struct sockaddr_in sink = { .sin_family = AF_INET, .sin_port = htons(SINK_PORT) };
	struct loupe_flow_key4 key = { .pod_port = htons(SRC_PORT),
				       .peer_port = htons(SINK_PORT),
				       .protocol = IPPROTO_UDP };
	uint32_t old_ids[2], new_ids[2];
	unsigned long rounds_at_kill, rounds_at_ready, sent;
	uint64_t before, at_ready, end_pkts;
	double t_kill, t_ready;
	char path[PATH_MAX];
	struct loupe_flow f;
	struct pod *p;
	pid_t agent;
	int map_fd, map_fd2, status;

	p = pod_make(0, 'a');
	inet_pton(AF_INET, "198.19.0.2", &key.pod_addr);
	inet_pton(AF_INET, "198.19.0.1", &key.peer_addr);
	/* a bound socket takes the datagrams: no ICMP port unreachable back into the pod */
	inet_pton(AF_INET, "198.19.0.1", &sink.sin_addr);
	t.sink_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(t.sink_fd, 0);
	cr_assert_eq(bind(t.sink_fd, (struct sockaddr *)&sink, sizeof(sink)), 0, "bind sink: %s",
		     strerror(errno));

	agent = agent_start(0);
	agent_wait_ready(0, agent);
	expect_pinned_programs(p, old_ids);
	snprintf(path, sizeof(path), "%s/%s", t.pin_dir, LOUPE_MAP_FLOWS4);
	map_fd = bpf_obj_get(path);
	cr_assert_geq(map_fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(flow_get(map_fd, &key).packets[LOUPE_DIR_POD_EGRESS], 0,
		     "the flow has packets before any was sent");

	t.sampler.ifindex = p->ifindex;
	cr_assert_eq(pthread_create(&t.sampler.thread, NULL, sampler_main, &t.sampler), 0);
	t.sampler_running = true;
	t.sender.fd = pod_socket(p);
	t.sender.dst = sink;
	cr_assert_eq(pthread_create(&t.sender.thread, NULL, sender_main, &t.sender), 0);
	t.sender_running = true;

	before = flow_wait_egress(map_fd, &key, WARMUP_PKTS, 5, true, "before the kill");

	/* kill -9: nothing is undone; a new agent on the same pins takes over */
	rounds_at_kill = atomic_load(&t.sampler.rounds);
	t_kill = loupe_live_now_s();
	cr_assert_eq(kill(agent, SIGKILL), 0);
	status = wait_exit(agent, EXIT_S);
	cr_assert(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "the first agent: wait status 0x%x after SIGKILL", status);
	agent = agent_start(1);
	agent_wait_ready(1, agent);
	t_ready = loupe_live_now_s();
	rounds_at_ready = atomic_load(&t.sampler.rounds);
	/* the new agent swapped its programs in before it said ready */
	expect_pinned_programs(p, new_ids);
	at_ready = flow_get(map_fd, &key).packets[LOUPE_DIR_POD_EGRESS];
	fprintf(stderr,
		"test_agent: restart took %.0f ms (kill to ready); %lu sampling rounds in it; "
		"%llu packets counted before the kill, %llu at ready\n",
		(t_ready - t_kill) * 1000, rounds_at_ready - rounds_at_kill,
		(unsigned long long)before, (unsigned long long)at_ready);
	for (int hook = 0; hook < 2; hook++)
		cr_expect_neq(new_ids[hook], old_ids[hook],
			      "%s: still the killed agent's program %u",
			      loupe_tcview_hook_name(hook), old_ids[hook]);
	/* the flow map is the same object: pinned by the first, reused by the second */
	map_fd2 = bpf_obj_get(path);
	cr_assert_geq(map_fd2, 0, "%s: %s", path, strerror(errno));
	cr_expect_eq(map_id(map_fd2), map_id(map_fd), "the new agent made a new flow map");
	close(map_fd2);

	/* traffic through the new programs, then the sender stops */
	flow_wait_egress(map_fd, &key, at_ready + AFTER_PKTS, 5, true, "after the restart");
	atomic_store(&t.sender.stop, true);
	pthread_join(t.sender.thread, NULL);
	t.sender_running = false;
	sent = atomic_load(&t.sender.sent);
	cr_assert_eq(atomic_load(&t.sender.err), 0, "sendto: %s after %lu datagrams",
		     strerror(atomic_load(&t.sender.err)), sent);
	cr_assert_lt(sent, SEND_MAX, "the sender ran out of its %d datagrams", SEND_MAX);
	/* the last datagrams are on their way through the veth's backlog; checked below */
	end_pkts = flow_wait_egress(map_fd, &key, sent, 2, false, "at the end");
	atomic_store(&t.sampler.stop, true);
	pthread_join(t.sampler.thread, NULL);
	t.sampler_running = false;

	fprintf(stderr,
		"test_agent: %lu datagrams sent, %llu counted; %lu sampling rounds, %lu misses\n",
		sent, (unsigned long long)end_pkts, atomic_load(&t.sampler.rounds),
		atomic_load(&t.sampler.misses));
	/* never a hook without loupe's filter, and the sampler did look during the restart */
	cr_expect_eq(atomic_load(&t.sampler.misses), 0,
		     "%lu queries found no loupe filter; the first on %s: %s",
		     atomic_load(&t.sampler.misses), loupe_tcview_hook_name(t.sampler.first_hook),
		     strerror(-t.sampler.first_err));
	cr_expect_gt(rounds_at_ready - rounds_at_kill, 0, "no sample between kill and ready");
	cr_expect(!t.sampler.more_ids, "more than 4 programs seen on a hook");
	for (int hook = 0; hook < 2; hook++) {
		for (int k = 0; k < t.sampler.nids[hook]; k++)
			cr_expect(t.sampler.ids[hook][k] == old_ids[hook] ||
					  t.sampler.ids[hook][k] == new_ids[hook],
				  "%s ran program %u, neither the old agent's %u nor the new's %u",
				  loupe_tcview_hook_name(hook), t.sampler.ids[hook][k],
				  old_ids[hook], new_ids[hook]);
	}

	/* every datagram counted once: none passed unseen, none twice */
	f = flow_get(map_fd, &key);
	cr_expect_eq(f.packets[LOUPE_DIR_POD_EGRESS], sent, "pod egress: %llu packets, %lu sent",
		     (unsigned long long)f.packets[LOUPE_DIR_POD_EGRESS], sent);
	cr_expect_eq(f.bytes[LOUPE_DIR_POD_EGRESS], (uint64_t)sent * FRAME,
		     "pod egress: %llu bytes, %lu frames of %d sent",
		     (unsigned long long)f.bytes[LOUPE_DIR_POD_EGRESS], sent, FRAME);
	cr_expect_eq(f.packets[LOUPE_DIR_POD_INGRESS], 0, "pod ingress: %llu packets",
		     (unsigned long long)f.packets[LOUPE_DIR_POD_INGRESS]);
	cr_expect_eq(f.ifindex, (uint32_t)p->ifindex, "flow on ifindex %u, the veth is %d",
		     f.ifindex, p->ifindex);
	close(map_fd);

	/* exactly one loupe filter per hook, the new agent's, and nothing else */
	for (int hook = 0; hook < 2; hook++) {
		struct loupe_tcview_hook v = loupe_tcview_hook(p->host, hook, TC_HANDLE);

		cr_expect_eq(v.loupe, 1, "%s %s: %d loupe filters", p->host,
			     loupe_tcview_hook_name(hook), v.loupe);
		cr_expect_eq(v.foreign, 0, "%s %s: %d other filters", p->host,
			     loupe_tcview_hook_name(hook), v.foreign);
		cr_expect_eq(v.pref, TC_PRIO, "%s %s: pref %d", p->host,
			     loupe_tcview_hook_name(hook), v.pref);
		cr_expect(v.da, "%s %s: not direct-action", p->host, loupe_tcview_hook_name(hook));
		cr_expect_eq(v.prog_id, new_ids[hook], "%s %s: program %u, the new agent's is %u",
			     p->host, loupe_tcview_hook_name(hook), v.prog_id, new_ids[hook]);
	}
	status = wait_exit(agent, 0);
	cr_expect_eq(status, -1, "the new agent exited (status 0x%x)", status);
}

/* ---- 4: flags ---- */

/* loupe-agent with @flag (and @value): what it exits with; stdout and stderr in *ret_out/err. */
static int agent_flags(const char *flag, const char *value, char **ret_out, char **ret_err)
{
	char glob[32], pins[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
	/* harmless should the flag be taken: no listener, no link of anyone's, no bpffs */
	char *argv[] = {
		NULL,	      "--metrics-addr", "off", "--iface-globs", glob, "--bpffs-dir", pins,
		(char *)flag, (char *)value,	NULL
	};
	int rc;

	snprintf(glob, sizeof(glob), "lt%dz*", getpid());
	tmp_path(pins, sizeof(pins), "no-bpffs/loupe");
	rc = agent_run(argv, "flags");
	tmp_path(out, sizeof(out), "flags.out");
	tmp_path(err, sizeof(err), "flags.err");
	*ret_out = slurp(out);
	*ret_err = slurp(err);
	return rc;
}

Test(agent_flags, wrong_flags_exit_2)
{
	char *out, *err;
	int rc;

	rc = agent_flags("--tc-priority", "0", &out, &err);
	cr_expect_eq(rc, 2, "--tc-priority 0: exit %d; stderr:\n%s", rc, err);
	cr_expect(strstr(err, "--tc-priority"), "--tc-priority 0: stderr names no flag:\n%s", err);
	cr_expect_str_empty(out, "--tc-priority 0: stdout:\n%s", out);
	free(out);
	free(err);

	rc = agent_flags("--bogus", NULL, &out, &err);
	cr_expect_eq(rc, 2, "--bogus: exit %d; stderr:\n%s", rc, err);
	cr_expect(strstr(err, "--bogus"), "--bogus: stderr names no flag:\n%s", err);
	cr_expect_str_empty(out, "--bogus: stdout:\n%s", out);
	free(out);
	free(err);

	rc = agent_flags("--help", NULL, &out, &err);
	cr_expect_eq(rc, 0, "--help: exit %d; stderr:\n%s", rc, err);
	cr_expect(strstr(out, "--iface-globs"), "--help: no --iface-globs in:\n%s", out);
	cr_expect_str_empty(err, "--help: stderr:\n%s", err);
	free(out);
	free(err);
}
