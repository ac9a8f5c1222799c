// SPDX-License-Identifier: Apache-2.0
/*
 * The attach module against the real kernel: clsact and filters on real veths, atomic
 * replacement by a restarted agent, qdisc ownership, uninstall, and traffic through the
 * attached programs. Each test lives in a network namespace of its own (the "host": the test
 * process enters it, so that uninstall's sweep of every link sees the test's links only),
 * with the veth peers in a second one (the "pod"), and pins in a private bpffs.
 * Not for the programs' verdicts or events (tests/bpf, test_live_vlan).
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
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>
#include <json-c/json.h>

#include "attach.h"
#include "datapath.h"
#include "tcview.h"

#define AGENTS	  2
#define ECHO_PORT 47000

static struct {
	char host_ns[32];
	char pod_ns[32];
	int orig_ns_fd;
	int host_ns_fd;
	bool host_ns_made;
	bool pod_ns_made;
	bool in_host_ns;
	char bpffs[64];
	bool bpffs_made;
	bool bpffs_mounted;
	char pin_dir[96];
	struct loupe_datapath *dp[AGENTS];
	struct loupe_attach *at[AGENTS];
} t = { .orig_ns_fd = -1, .host_ns_fd = -1 };

struct link {
	char host[IF_NAMESIZE]; /* in the test's host namespace */
	char pod[IF_NAMESIZE];	/* its peer, in the pod namespace */
	int ifindex;
};

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void teardown(void)
{
	for (int i = 0; i < AGENTS; i++) {
		t.at[i] = loupe_attach_free(t.at[i]);
		t.dp[i] = loupe_datapath_free(t.dp[i]);
	}
	if (t.in_host_ns)
		setns(t.orig_ns_fd, CLONE_NEWNET);
	if (t.orig_ns_fd >= 0)
		close(t.orig_ns_fd);
	if (t.host_ns_fd >= 0)
		close(t.host_ns_fd);
	/* the veths, their qdiscs and filters go with the host namespace */
	if (t.host_ns_made)
		run("ip netns del %s 2>/dev/null", t.host_ns);
	if (t.pod_ns_made)
		run("ip netns del %s 2>/dev/null", t.pod_ns);
	if (t.bpffs_mounted)
		umount2(t.bpffs, MNT_DETACH);
	if (t.bpffs_made)
		rmdir(t.bpffs);
	memset(&t, 0, sizeof(t));
	t.orig_ns_fd = t.host_ns_fd = -1;
}

/* Criterion runs no .fini after a skip or a failed .init: everything is undone first. */
#define setup_check(cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			teardown();                                                                \
			cr_assert_fail(__VA_ARGS__);                                               \
		}                                                                                  \
	} while (0)

static void setup(void)
{
	char path[64];
	int pid = getpid();

	if (geteuid() != 0) {
		teardown();
		cr_skip_test("needs root: network namespaces, veths, bpffs, BPF programs");
	}
	snprintf(t.host_ns, sizeof(t.host_ns), "loupe-ah-%d", pid);
	snprintf(t.pod_ns, sizeof(t.pod_ns), "loupe-at-%d", pid);
	t.orig_ns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	setup_check(t.orig_ns_fd >= 0, "own netns: %s", strerror(errno));
	setup_check(run("ip netns add %s", t.host_ns) == 0, "ip netns add %s", t.host_ns);
	t.host_ns_made = true;
	setup_check(run("ip netns add %s", t.pod_ns) == 0, "ip netns add %s", t.pod_ns);
	t.pod_ns_made = true;
	snprintf(path, sizeof(path), "/var/run/netns/%s", t.host_ns);
	t.host_ns_fd = open(path, O_RDONLY | O_CLOEXEC);
	setup_check(t.host_ns_fd >= 0, "%s: %s", path, strerror(errno));
	setup_check(setns(t.host_ns_fd, CLONE_NEWNET) == 0, "setns: %s", strerror(errno));
	t.in_host_ns = true;

	snprintf(t.bpffs, sizeof(t.bpffs), "/tmp/loupe-at-bpffs-XXXXXX");
	setup_check(mkdtemp(t.bpffs), "mkdtemp: %s", strerror(errno));
	t.bpffs_made = true;
	if (mount("bpf", t.bpffs, "bpf", 0, NULL)) {
		int err = errno;

		teardown();
		if (err == ENODEV)
			cr_skip_test("the kernel has no bpffs");
		cr_assert_fail("mount bpffs: %s", strerror(err));
	}
	t.bpffs_mounted = true;
	snprintf(t.pin_dir, sizeof(t.pin_dir), "%s/loupe", t.bpffs);
}

TestSuite(attach, .init = setup, .fini = teardown, .timeout = 120);

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Polls @cond every 10 ms until it holds or @timeout_s passes. */
static bool wait_for(bool (*cond)(void *), void *arg, double timeout_s)
{
	double end = now_s() + timeout_s;

	while (!cond(arg)) {
		if (now_s() > end)
			return false;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	return true;
}

/* Agent @i: a datapath and an attach object on the test's pin dir, as loupe-agent opens them. */
static void agent_start(int i, uint32_t priority)
{
	struct loupe_datapath_opts dopts = { .pin_dir = t.pin_dir };
	struct loupe_attach_opts aopts = { .pin_dir = t.pin_dir, .priority = priority };
	int err;

	err = loupe_datapath_open(&dopts, NULL, NULL, &t.dp[i]);
	cr_assert_eq(err, 0, "loupe_datapath_open: %s", strerror(-err));
	err = loupe_attach_open(&aopts, loupe_datapath_prog_fd(t.dp[i], LOUPE_DIR_POD_EGRESS),
				loupe_datapath_prog_fd(t.dp[i], LOUPE_DIR_POD_INGRESS), &t.at[i]);
	cr_assert_eq(err, 0, "loupe_attach_open: %s", strerror(-err));
}

/* The agent exits (or is killed): its fds close, the filters stay. */
static void agent_stop(int i)
{
	t.at[i] = loupe_attach_free(t.at[i]);
	t.dp[i] = loupe_datapath_free(t.dp[i]);
}

static uint32_t prog_id(int fd)
{
	struct bpf_prog_info info = { 0 };
	uint32_t len = sizeof(info);

	cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &len), 0, "prog info: %s", strerror(errno));
	return info.id;
}

/* Program id of agent @i at clsact ingress (hook 0) or egress (hook 1). */
static uint32_t agent_prog_id(int i, int hook)
{
	return prog_id(loupe_datapath_prog_fd(t.dp[i], hook == 0 ? LOUPE_DIR_POD_EGRESS
								 : LOUPE_DIR_POD_INGRESS));
}

/* A veth: lav<pid><tag> here, lap<pid><tag> in the pod namespace, both up; @addr: IPv4 too. */
static struct link make_link(char tag, bool addr)
{
	struct link l = { 0 };

	snprintf(l.host, sizeof(l.host), "lav%d%c", getpid(), tag);
	snprintf(l.pod, sizeof(l.pod), "lap%d%c", getpid(), tag);
	cr_assert_eq(run("ip link add %s type veth peer name %s netns %s", l.host, l.pod, t.pod_ns),
		     0, "veth %s", l.host);
	cr_assert_eq(run("ip link set %s up && ip -n %s link set %s up", l.host, t.pod_ns, l.pod),
		     0);
	if (addr)
		cr_assert_eq(run("ip addr add 198.18.0.1/30 dev %s && "
				 "ip -n %s addr add 198.18.0.2/30 dev %s",
				 l.host, t.pod_ns, l.pod),
			     0);
	l.ifindex = if_nametoindex(l.host);
	cr_assert_gt(l.ifindex, 0, "%s: %s", l.host, strerror(errno));
	return l;
}

/* Exactly one loupe filter on each hook of @l, at @pref, direct-action, running @ids[hook]. */
static void expect_filters_run(const struct link *l, int pref, const uint32_t ids[2])
{
	for (int hook = 0; hook < 2; hook++) {
		struct loupe_tcview_hook v = loupe_tcview_hook(l->host, hook, LOUPE_TC_HANDLE);

		cr_expect_eq(v.loupe, 1, "%s %s: %d loupe filters", l->host,
			     loupe_tcview_hook_name(hook), v.loupe);
		cr_expect_eq(v.pref, pref, "%s %s: pref %d", l->host, loupe_tcview_hook_name(hook),
			     v.pref);
		cr_expect(v.da, "%s %s: not direct-action", l->host, loupe_tcview_hook_name(hook));
		cr_expect_eq(v.prog_id, ids[hook], "%s %s: program %u, expected %u", l->host,
			     loupe_tcview_hook_name(hook), v.prog_id, ids[hook]);
	}
}

/* As expect_filters_run(), with the programs of agent @agent. */
static void expect_loupe_filters(const struct link *l, int pref, int agent)
{
	uint32_t ids[2] = { agent_prog_id(agent, 0), agent_prog_id(agent, 1) };

	expect_filters_run(l, pref, ids);
}

static void expect_no_loupe_filter(const char *dev)
{
	for (int hook = 0; hook < 2; hook++)
		cr_expect_eq(loupe_tcview_hook(dev, hook, LOUPE_TC_HANDLE).loupe, 0,
			     "%s %s: a loupe filter is left", dev, loupe_tcview_hook_name(hook));
}

/* The foreign filter of case (c): matchall as a user would add it; u32 where the kernel lacks it */
static void add_foreign_filter(const char *dev)
{
	cr_assert_eq(run("tc qdisc add dev %s clsact", dev), 0);
	if (run("tc filter add dev %s ingress prio 5 matchall action pass 2>/dev/null", dev))
		cr_assert_eq(run("tc filter add dev %s ingress prio 5 u32 match u32 0 0", dev), 0,
			     "neither matchall nor u32 could be added");
}

static int socket_in_pod(void)
{
	char path[64];
	int ns, fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", t.pod_ns);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(ns, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(setns(ns, CLONE_NEWNET), 0, "setns pod: %s", strerror(errno));
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(setns(t.host_ns_fd, CLONE_NEWNET), 0, "setns back: %s", strerror(errno));
	close(ns);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	return fd;
}

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

/*
 * @n UDP round trips pod (198.18.0.2) -> host side (198.18.0.1) -> pod through the veth:
 * each crosses clsact ingress one way and clsact egress the other. A datagram lost before
 * ARP settles is sent again, within a 5 s deadline.
 */
static void udp_echo(int n)
{
	struct sockaddr_in host = { .sin_family = AF_INET, .sin_port = htons(ECHO_PORT) }, from;
	socklen_t fromlen;
	char buf[64];
	int hs, ps;

	inet_pton(AF_INET, "198.18.0.1", &host.sin_addr);
	hs = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(hs, 0);
	cr_assert_eq(bind(hs, (struct sockaddr *)&host, sizeof(host)), 0, "bind: %s",
		     strerror(errno));
	ps = socket_in_pod();
	for (int i = 0; i < n; i++) {
		double end = now_s() + 5;
		bool got = false;

		while (!got && now_s() < end) {
			cr_assert_eq(
				sendto(ps, "ping", 4, 0, (struct sockaddr *)&host, sizeof(host)), 4,
				"send from pod: %s", strerror(errno));
			got = readable(hs, 200);
		}
		cr_assert(got, "round %d: nothing reached the host side within 5 s", i);
		fromlen = sizeof(from);
		cr_assert_gt(recvfrom(hs, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen),
			     0);
		while (readable(hs, 0)) /* copies of a resent datagram */
			recv(hs, buf, sizeof(buf), 0);
		cr_assert_eq(sendto(hs, "pong", 4, 0, (struct sockaddr *)&from, fromlen), 4);
		cr_assert(readable(ps, 5000), "round %d: no reply reached the pod within 5 s", i);
		cr_assert_gt(recv(ps, buf, sizeof(buf), 0), 0);
	}
	close(hs);
	close(ps);
}

static struct loupe_counters counters(int agent)
{
	struct loupe_counters c;
	int err = loupe_datapath_read_counters(t.dp[agent], &c);

	cr_assert_eq(err, 0, "read counters: %s", strerror(-err));
	return c;
}

/* (a) */
Test(attach, creates_clsact_and_one_direct_action_filter_per_hook)
{
	struct link l = make_link('a', false);
	struct bpf_tc_hook h = { .sz = sizeof(h), .ifindex = l.ifindex };

	agent_start(0, 0);
	cr_assert_not(loupe_tcview_has_clsact(l.host));
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0);
	cr_expect(loupe_tcview_has_clsact(l.host), "no clsact on %s", l.host);
	expect_loupe_filters(&l, 1, 0);
	cr_expect_eq(loupe_attach_count(t.at[0]), 1);
	for (int hook = 0; hook < 2; hook++) {
		LIBBPF_OPTS(bpf_tc_opts, q, .handle = LOUPE_TC_HANDLE, .priority = 1);

		h.attach_point = hook == 0 ? BPF_TC_INGRESS : BPF_TC_EGRESS;
		cr_assert_eq(bpf_tc_query(&h, &q), 0, "bpf_tc_query %s",
			     loupe_tcview_hook_name(hook));
		cr_expect_eq(q.prog_id, agent_prog_id(0, hook));
	}
}

static struct {
	int ifindex;
	atomic_bool stop;
	atomic_int misses;
	atomic_int samples;
} watch;

/* Samples both hooks until stopped, counting every moment loupe's filter was missing. */
static void *watch_filters(void *arg)
{
	(void)arg;
	while (!atomic_load(&watch.stop)) {
		for (int hook = 0; hook < 2; hook++) {
			struct bpf_tc_hook h = { .sz = sizeof(h),
						 .ifindex = watch.ifindex,
						 .attach_point = hook == 0 ? BPF_TC_INGRESS
									   : BPF_TC_EGRESS };
			LIBBPF_OPTS(bpf_tc_opts, q, .handle = LOUPE_TC_HANDLE, .priority = 1);

			if (bpf_tc_query(&h, &q))
				atomic_fetch_add(&watch.misses, 1);
			atomic_fetch_add(&watch.samples, 1);
		}
	}
	return NULL;
}

static bool watching(void *arg)
{
	return atomic_load(&watch.samples) > 0;
}

/* (b) */
Test(attach, attach_again_and_restart_replace_the_program_in_place)
{
	struct link l = make_link('a', false);
	uint32_t ids[2];
	pthread_t th;
	double end;
	int start, last;

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0);
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0, "second attach");
	expect_loupe_filters(&l, 1, 0);
	cr_expect_eq(loupe_attach_count(t.at[0]), 1);

	/* kill -9: the filters keep the old programs running */
	ids[0] = agent_prog_id(0, 0);
	ids[1] = agent_prog_id(0, 1);
	agent_stop(0);
	expect_filters_run(&l, 1, ids);
	agent_start(1, 0);
	cr_assert_neq(agent_prog_id(1, 0), ids[0], "the new agent's program has the old id");
	cr_expect_eq(loupe_attach_count(t.at[1]), 1, "the new agent does not see the link");
	cr_assert_eq(loupe_attach_reattach_all(t.at[1]), 1);
	expect_loupe_filters(&l, 1, 1);
	cr_expect_eq(loupe_attach_count(t.at[1]), 1);

	/* two agents' programs swapped back and forth while a thread watches the hooks */
	agent_start(0, 0);
	watch.ifindex = l.ifindex;
	cr_assert_eq(pthread_create(&th, NULL, watch_filters, NULL), 0);
	if (!wait_for(watching, NULL, 5)) {
		atomic_store(&watch.stop, true);
		pthread_join(th, NULL);
		cr_assert_fail("the watching thread took no sample within 5 s");
	}
	/* at least 50 swaps, and the watcher sampling all along them */
	start = atomic_load(&watch.samples);
	end = now_s() + 10;
	for (last = 0; last < 50 || atomic_load(&watch.samples) - start < 200; last++) {
		if (loupe_attach_link(t.at[last % 2], l.ifindex, NULL) || now_s() > end) {
			atomic_store(&watch.stop, true);
			pthread_join(th, NULL);
			cr_assert_fail("round %d failed or took past the deadline", last);
		}
	}
	atomic_store(&watch.stop, true);
	pthread_join(th, NULL);
	cr_expect_eq(atomic_load(&watch.misses), 0, "loupe's filter was missing %d times of %d",
		     atomic_load(&watch.misses), atomic_load(&watch.samples));
	expect_loupe_filters(&l, 1, (last - 1) % 2);
}

/* (c) */
Test(attach, a_foreign_clsact_and_filter_are_left_alone)
{
	struct link l = make_link('a', false);
	struct loupe_tcview_hook v;

	add_foreign_filter(l.host);
	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0);
	expect_loupe_filters(&l, 1, 0);
	v = loupe_tcview_hook(l.host, 0, LOUPE_TC_HANDLE);
	cr_expect_gt(v.foreign, 0, "the foreign filter is gone after attach");

	cr_assert_eq(loupe_detach_link(t.at[0], l.ifindex), 0);
	expect_no_loupe_filter(l.host);
	cr_expect(loupe_tcview_has_clsact(l.host), "loupe removed a clsact it did not create");
	cr_expect_gt(loupe_tcview_hook(l.host, 0, LOUPE_TC_HANDLE).foreign, 0,
		     "the foreign filter is gone after detach");
	cr_expect_eq(loupe_attach_count(t.at[0]), 0);
}

/* (d), also by an agent that did not create the qdisc itself but took over from one that did */
Test(attach, detach_removes_the_clsact_loupe_created)
{
	struct link a = make_link('a', false), b = make_link('b', false);

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], a.ifindex, a.host), 0);
	cr_assert_eq(loupe_attach_link(t.at[0], b.ifindex, b.host), 0);
	cr_assert_eq(loupe_detach_link(t.at[0], a.ifindex), 0);
	cr_expect_not(loupe_tcview_has_clsact(a.host), "the clsact loupe created is still on %s",
		      a.host);
	cr_expect_eq(loupe_attach_count(t.at[0]), 1);
	cr_assert_eq(loupe_detach_link(t.at[0], a.ifindex), 0, "a second detach");

	agent_stop(0);
	agent_start(1, 0);
	cr_assert_eq(loupe_attach_reattach_all(t.at[1]), 1);
	expect_loupe_filters(&b, 1, 1);
	cr_assert_eq(loupe_detach_link(t.at[1], b.ifindex), 0);
	cr_expect_not(loupe_tcview_has_clsact(b.host), "after a restart: the clsact is still on %s",
		      b.host);
	cr_expect_eq(loupe_attach_count(t.at[1]), 0);
}

/* A clsact loupe made but someone else has filters on by now: it stays. */
Test(attach, a_clsact_loupe_created_stays_while_others_use_it)
{
	struct link l = make_link('a', false);

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0);
	cr_assert_eq(run("tc filter add dev %s egress prio 7 u32 match u32 0 0", l.host), 0);
	cr_assert_eq(loupe_detach_link(t.at[0], l.ifindex), 0);
	expect_no_loupe_filter(l.host);
	cr_expect(loupe_tcview_has_clsact(l.host), "the clsact went with another filter on it");
	cr_expect_gt(loupe_tcview_hook(l.host, 1, LOUPE_TC_HANDLE).foreign, 0);
}

static bool counters_grew(void *arg)
{
	const struct loupe_counters *before = arg;
	struct loupe_counters now = counters(1);

	return now.packets[LOUPE_DIR_POD_EGRESS] >= before->packets[LOUPE_DIR_POD_EGRESS] + 3 &&
	       now.packets[LOUPE_DIR_POD_INGRESS] >= before->packets[LOUPE_DIR_POD_INGRESS] + 3;
}

/* (e), and the counters carry on through a restart (the maps are reused) */
Test(attach, the_filters_see_traffic_before_and_after_a_restart)
{
	struct link l = make_link('a', true);
	struct loupe_counters c0, c1, c2;

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0);
	c0 = counters(0);
	udp_echo(3);
	c1 = counters(0);
	cr_expect_geq(c1.packets[LOUPE_DIR_POD_EGRESS], c0.packets[LOUPE_DIR_POD_EGRESS] + 3,
		      "pod egress packets %llu -> %llu",
		      (unsigned long long)c0.packets[LOUPE_DIR_POD_EGRESS],
		      (unsigned long long)c1.packets[LOUPE_DIR_POD_EGRESS]);
	cr_expect_geq(c1.packets[LOUPE_DIR_POD_INGRESS], c0.packets[LOUPE_DIR_POD_INGRESS] + 3,
		      "pod ingress packets %llu -> %llu",
		      (unsigned long long)c0.packets[LOUPE_DIR_POD_INGRESS],
		      (unsigned long long)c1.packets[LOUPE_DIR_POD_INGRESS]);

	agent_stop(0);
	agent_start(1, 0);
	c2 = counters(1);
	cr_expect_geq(c2.packets[LOUPE_DIR_POD_EGRESS], c1.packets[LOUPE_DIR_POD_EGRESS],
		      "the counters started over after the restart");
	cr_assert_eq(loupe_attach_reattach_all(t.at[1]), 1);
	udp_echo(3);
	cr_expect(wait_for(counters_grew, &c2, 5), "the new agent's programs count nothing");
}

/* Nothing pinned is left: the pin dir is gone, and nothing named loupe* in the bpffs. */
static bool no_pins_left(void)
{
	struct dirent *e;
	struct stat st;
	int n = 0;
	DIR *d;

	if (!stat(t.pin_dir, &st))
		return false;
	d = opendir(t.bpffs);
	cr_assert_not_null(d, "%s: %s", t.bpffs, strerror(errno));
	/* a fresh bpffs may hold the kernel's own maps.debug and progs.debug */
	while ((e = readdir(d)))
		n += !strncmp(e->d_name, "loupe", strlen("loupe"));
	closedir(d);
	return n == 0;
}

/* (f) */
Test(attach, uninstall_leaves_no_filter_no_loupe_qdisc_no_pin)
{
	struct link a = make_link('a', false), b = make_link('b', false), f = make_link('f', false),
		    s = make_link('s', false);
	struct loupe_attach_opts unpinned = { 0 };
	struct loupe_attach *stray;

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], a.ifindex, a.host), 0);
	cr_assert_eq(loupe_attach_link(t.at[0], b.ifindex, b.host), 0);
	add_foreign_filter(f.host);
	cr_assert_eq(loupe_attach_link(t.at[0], f.ifindex, f.host), 0);
	/* a loupe filter the map does not know (an agent without pins): the sweep finds it */
	cr_assert_eq(run("tc qdisc add dev %s clsact", s.host), 0);
	cr_assert_eq(
		loupe_attach_open(&unpinned, loupe_datapath_prog_fd(t.dp[0], LOUPE_DIR_POD_EGRESS),
				  loupe_datapath_prog_fd(t.dp[0], LOUPE_DIR_POD_INGRESS), &stray),
		0);
	cr_assert_eq(loupe_attach_link(stray, s.ifindex, s.host), 0);
	loupe_attach_free(stray);
	agent_stop(0); /* killed: the pins and filters stay */

	cr_assert_eq(loupe_attach_uninstall(t.pin_dir, 0), 0);
	cr_assert_eq(loupe_datapath_unpin(t.pin_dir), 0);

	expect_no_loupe_filter(a.host);
	expect_no_loupe_filter(b.host);
	expect_no_loupe_filter(f.host);
	expect_no_loupe_filter(s.host);
	cr_expect_not(loupe_tcview_has_clsact(a.host), "the clsact loupe created is still on %s",
		      a.host);
	cr_expect_not(loupe_tcview_has_clsact(b.host), "the clsact loupe created is still on %s",
		      b.host);
	cr_expect(loupe_tcview_has_clsact(f.host), "the foreign clsact on %s is gone", f.host);
	cr_expect_gt(loupe_tcview_hook(f.host, 0, LOUPE_TC_HANDLE).foreign, 0,
		     "the foreign filter on %s is gone", f.host);
	cr_expect(loupe_tcview_has_clsact(s.host), "the foreign clsact on %s is gone", s.host);
	cr_expect(no_pins_left(), "pins are left in %s", t.bpffs);
	cr_expect_eq(loupe_attach_uninstall(t.pin_dir, 0), 0, "a second uninstall");
}

/*
 * An --uninstall for another pin directory (another agent's, or one that never existed)
 * takes nothing of this agent's: the sweep removes only filters that run programs pinned
 * in the directory it was given.
 */
Test(attach, uninstall_of_another_pin_dir_leaves_this_agent_alone)
{
	struct link a = make_link('o', false);
	char other[128];
	uint32_t ids[2];

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], a.ifindex, a.host), 0);
	ids[0] = agent_prog_id(0, 0);
	ids[1] = agent_prog_id(0, 1);

	snprintf(other, sizeof(other), "%s/other", t.bpffs);
	cr_expect_eq(loupe_attach_uninstall(other, 0), 0, "uninstall of an empty directory");
	expect_filters_run(&a, 1, ids);
	cr_expect(loupe_tcview_has_clsact(a.host), "the clsact on %s went with another directory",
		  a.host);
	agent_stop(0);
}

/* (g) */
Test(attach, detaching_a_link_that_was_deleted_succeeds)
{
	struct link a = make_link('a', false), b = make_link('b', false);

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], a.ifindex, a.host), 0);
	cr_assert_eq(loupe_attach_link(t.at[0], b.ifindex, b.host), 0);
	cr_assert_eq(run("ip link del %s", a.host), 0);
	cr_assert_eq(if_nametoindex(a.host), 0);
	cr_expect_eq(loupe_detach_link(t.at[0], a.ifindex), 0);
	cr_expect_eq(loupe_attach_count(t.at[0]), 1);
	cr_expect_eq(loupe_attach_link(t.at[0], a.ifindex, a.host), -ENODEV);
	cr_expect_eq(loupe_attach_count(t.at[0]), 1, "a failed attach left a record");

	/* deleted while no agent ran: the next one forgets it */
	agent_stop(0);
	cr_assert_eq(run("ip link del %s", b.host), 0);
	agent_start(1, 0);
	cr_expect_eq(loupe_attach_reattach_all(t.at[1]), 0);
	cr_expect_eq(loupe_attach_count(t.at[1]), 0);
}

/* A restarted agent configured with another priority moves the filters without a gap. */
Test(attach, a_new_priority_moves_the_filters)
{
	struct link l = make_link('a', false);

	agent_start(0, 0);
	cr_assert_eq(loupe_attach_link(t.at[0], l.ifindex, l.host), 0);
	agent_stop(0);
	agent_start(1, 3);
	cr_assert_eq(loupe_attach_reattach_all(t.at[1]), 1);
	expect_loupe_filters(&l, 3, 1);
	cr_assert_eq(loupe_detach_link(t.at[1], l.ifindex), 0);
	expect_no_loupe_filter(l.host);
	cr_expect_not(loupe_tcview_has_clsact(l.host));
}

Test(attach, a_pinned_links_map_of_another_layout_is_refused)
{
	struct loupe_attach_opts o = { .pin_dir = t.pin_dir };
	char path[160];
	int fd, err;

	agent_start(0, 0);
	agent_stop(0);
	snprintf(path, sizeof(path), "%s/%s", t.pin_dir, LOUPE_MAP_LINKS);
	cr_assert_eq(unlink(path), 0);
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, LOUPE_MAP_LINKS, sizeof(uint32_t), 32, 16, NULL);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bpf_obj_pin(fd, path), 0);
	close(fd);
	cr_assert_eq(loupe_datapath_open(&(struct loupe_datapath_opts){ .pin_dir = t.pin_dir },
					 NULL, NULL, &t.dp[0]),
		     0);
	err = loupe_attach_open(&o, loupe_datapath_prog_fd(t.dp[0], LOUPE_DIR_POD_EGRESS),
				loupe_datapath_prog_fd(t.dp[0], LOUPE_DIR_POD_INGRESS), &t.at[0]);
	cr_expect_eq(err, -EINVAL, "loupe_attach_open: %s", strerror(-err));
	cr_expect_eq(loupe_attach_uninstall(t.pin_dir, 0), -EINVAL);
}
