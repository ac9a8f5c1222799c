// SPDX-License-Identifier: Apache-2.0
/*
 * The rtnetlink module (agent/src/links.c) against the real kernel: pod veths found by the
 * dump and by notifications, removal, rename, flapping, what is not a pod veth, pod
 * addresses from host routes and from a bridge's neighbours and FDB, and the re-dump after
 * the notification socket overflows. Each test makes its own namespaces
 * (loupe-lk-<pid>-*) and links (lkv<pid>*, lkq<pid>*, lkb<pid>) and removes them on every
 * exit path. Not for attaching programs: that is the datapath's tests.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "links.h"

#define RECS_MAX     512
#define NAMES_MAX    16
#define WAIT_MS	     5000
#define DISCOVERY_MS 1000 /* the bound for a new pod */

enum rec_kind {
	REC_ADDED,
	REC_REMOVED,
	REC_CHANGED,
};

struct rec {
	enum rec_kind kind;
	int ifindex;
	char name[IF_NAMESIZE];
	struct loupe_link link; /* added, changed */
};

static struct {
	int pid;
	char glob[32];
	char ns[NAMES_MAX][40];
	int nns;
	char links[NAMES_MAX][IF_NAMESIZE]; /* host-side links to delete */
	int nlinks;
	struct loupe_links *l;
	struct rec recs[RECS_MAX];
	int nrecs;
} t;

static __attribute__((format(printf, 1, 2))) int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void record(enum rec_kind kind, int ifindex, const char *name, const struct loupe_link *link)
{
	struct rec *r;

	if (t.nrecs == RECS_MAX)
		return;
	r = &t.recs[t.nrecs++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->ifindex = ifindex;
	snprintf(r->name, sizeof(r->name), "%s", name);
	if (link)
		r->link = *link;
}

static void on_added(void *ctx, const struct loupe_link *link)
{
	record(REC_ADDED, link->ifindex, link->name, link);
}

static void on_removed(void *ctx, int ifindex, const char *name)
{
	record(REC_REMOVED, ifindex, name, NULL);
}

static void on_changed(void *ctx, const struct loupe_link *link)
{
	record(REC_CHANGED, link->ifindex, link->name, link);
}

/* Names: "lkv<pid><suffix>" matches the test's glob, "lkq<pid><suffix>" does not. */
static const char *link_name(char prefix, const char *suffix)
{
	cr_assert_lt(t.nlinks, NAMES_MAX);
	snprintf(t.links[t.nlinks], IF_NAMESIZE, "lk%c%d%s", prefix, t.pid, suffix);
	return t.links[t.nlinks++];
}

static const char *make_ns(const char *suffix)
{
	cr_assert_lt(t.nns, NAMES_MAX);
	snprintf(t.ns[t.nns], sizeof(t.ns[0]), "loupe-lk-%d-%s", t.pid, suffix);
	cr_assert_eq(sh("ip netns add %s && ip -n %s link set lo up", t.ns[t.nns], t.ns[t.nns]), 0,
		     "ip netns add %s", t.ns[t.nns]);
	return t.ns[t.nns++];
}

/* A pod veth: @host here, its peer "eth0" in @ns; both up when @up. */
static int make_pod_veth(const char *host, const char *ns, bool up)
{
	int ifindex;

	cr_assert_eq(sh("ip link add %s type veth peer name eth0 netns %s", host, ns), 0, "veth %s",
		     host);
	if (up)
		cr_assert_eq(sh("ip -n %s link set eth0 up && ip link set %s up", ns, host), 0);
	ifindex = if_nametoindex(host);
	cr_assert_gt(ifindex, 0);
	return ifindex;
}

static void teardown(void)
{
	t.l = loupe_links_free(t.l);
	for (int i = 0; i < t.nlinks; i++)
		sh("ip link del %s 2>/dev/null", t.links[i]);
	for (int i = 0; i < t.nns; i++)
		sh("ip netns del %s 2>/dev/null", t.ns[i]);
	memset(&t, 0, sizeof(t));
}

static void setup(void)
{
	memset(&t, 0, sizeof(t));
	t.pid = getpid();
	snprintf(t.glob, sizeof(t.glob), "lkv%d*", t.pid);
	/* nothing made yet: Criterion runs no .fini after a skip */
	if (geteuid() != 0)
		cr_skip_test("needs root: network namespaces and links");
	/*
	 * The test's own "host" namespace: other tests' links and addresses (their DELADDR
	 * makes the module re-dump routes, which would hide a bug) stay out, and the links
	 * made here go with the process, even if it crashes.
	 */
	if (unshare(CLONE_NEWNET) < 0)
		cr_skip_test("cannot make a network namespace: %s", strerror(errno));
	if (sh("ip link set lo up && ip netns add loupe-lk-%d-probe 2>/dev/null && "
	       "ip netns del loupe-lk-%d-probe",
	       t.pid, t.pid) != 0)
		cr_skip_test("cannot make named network namespaces here");
}

/* Opens the module with the test's glob among others, as the agent's default list would. */
static void open_links(bool dump)
{
	const char *globs[] = { "cali*", t.glob, "lxc*" };
	struct loupe_links_cbs cbs = { .pod_added = on_added,
				       .pod_removed = on_removed,
				       .pod_changed = on_changed };
	int ret;

	ret = loupe_links_open(globs, 3, &cbs, NULL, &t.l);
	cr_assert_eq(ret, 0, "loupe_links_open: %s", strerror(-ret));
	if (dump) {
		ret = loupe_links_dump(t.l);
		cr_assert_geq(ret, 0, "loupe_links_dump: %s", strerror(-ret));
	}
}

/* One wait for notifications, up to @deadline; false once it has passed. */
static bool pump(int64_t deadline)
{
	struct pollfd pfd = { .fd = loupe_links_fd(t.l), .events = POLLIN };
	int64_t left = deadline - now_ms();
	int ret;

	if (left <= 0)
		return false;
	ret = poll(&pfd, 1, (int)left);
	cr_assert_geq(ret, 0, "poll: %s", strerror(errno));
	if (ret > 0) {
		ret = loupe_links_process(t.l);
		cr_assert_geq(ret, 0, "loupe_links_process: %s", strerror(-ret));
	}
	return true;
}

/* Processes notifications until @cond holds or @ms pass; the value of @cond. */
#define WAIT_FOR(cond, ms)                                                                         \
	({                                                                                         \
		int64_t dl_ = now_ms() + (ms);                                                     \
		bool ok_;                                                                          \
		while (!(ok_ = (cond)) && pump(dl_))                                               \
			;                                                                          \
		ok_;                                                                               \
	})

/* The first record of @kind for @name (NULL: any) or @ifindex (0: any) from @from, or -1. */
static int find_rec(int from, enum rec_kind kind, const char *name, int ifindex)
{
	for (int i = from; i < t.nrecs; i++)
		if (t.recs[i].kind == kind && (!name || strcmp(t.recs[i].name, name) == 0) &&
		    (!ifindex || t.recs[i].ifindex == ifindex))
			return i;
	return -1;
}

static bool has_addr(const struct loupe_link *link, const char *text)
{
	struct loupe_pod_addr want = { 0 };

	if (!link)
		return false;
	if (inet_pton(AF_INET, text, want.addr + 12) == 1) {
		want.addr[10] = want.addr[11] = 0xff;
	} else {
		cr_assert_eq(inet_pton(AF_INET6, text, want.addr), 1, "%s", text);
		want.ipv6 = true;
	}
	for (int i = 0; i < link->addrs.n; i++)
		if (link->addrs.a[i].ipv6 == want.ipv6 &&
		    memcmp(link->addrs.a[i].addr, want.addr, 16) == 0)
			return true;
	return false;
}

static const struct loupe_link *get(int ifindex)
{
	return loupe_links_get(t.l, ifindex);
}

TestSuite(links, .init = setup, .fini = teardown, .timeout = 60);

/* (a) */
Test(links, existing_pod_veth_is_found_by_the_dump)
{
	const char *ns = make_ns("a"), *host = link_name('v', "a");
	int ifindex = make_pod_veth(host, ns, true), i;
	const struct loupe_link *link;

	open_links(true);
	i = find_rec(0, REC_ADDED, host, ifindex);
	cr_assert_geq(i, 0, "no pod_added for %s after the dump", host);
	link = get(ifindex);
	cr_assert_not_null(link);
	cr_assert_str_eq(link->name, host);
	cr_assert_geq(link->peer_netnsid, 0);
	cr_assert_eq(link->master_ifindex, 0);
	cr_assert(link->admin_up);
	cr_assert_eq(loupe_links_count(t.l), 1);
	/* a second dump with nothing changed reports nothing */
	cr_assert_eq(loupe_links_dump(t.l), 0);
}

/* (b) */
Test(links, new_pod_veth_is_reported_within_one_second)
{
	const char *ns = make_ns("b"), *host = link_name('v', "b");
	int64_t start, took;
	int ifindex;

	open_links(true);
	cr_assert_eq(loupe_links_count(t.l), 0);
	start = now_ms();
	ifindex = make_pod_veth(host, ns, false);
	cr_assert(WAIT_FOR(find_rec(0, REC_ADDED, host, ifindex) >= 0, DISCOVERY_MS),
		  "%s not reported within %d ms", host, DISCOVERY_MS);
	took = now_ms() - start;
	cr_log_info("pod veth reported %lld ms after `ip link add` began", (long long)took);
	cr_assert_not_null(get(ifindex));
	cr_assert(!get(ifindex)->up);
}

/* (c) */
Test(links, deleted_pod_veth_is_reported_removed)
{
	const char *ns = make_ns("c"), *host = link_name('v', "c");
	int ifindex = make_pod_veth(host, ns, true), i;

	open_links(true);
	cr_assert_not_null(get(ifindex));
	cr_assert_eq(sh("ip link del %s", host), 0);
	cr_assert(WAIT_FOR(find_rec(0, REC_REMOVED, NULL, ifindex) >= 0, WAIT_MS));
	i = find_rec(0, REC_REMOVED, NULL, ifindex);
	cr_assert_str_eq(t.recs[i].name, host);
	cr_assert_null(get(ifindex));
	cr_assert_eq(loupe_links_count(t.l), 0);
}

/* (d) */
Test(links, rename_out_of_the_globs_removes_and_back_adds)
{
	const char *ns = make_ns("d"), *host = link_name('v', "d"), *other = link_name('q', "d");
	int ifindex = make_pod_veth(host, ns, true), mark;

	open_links(true);
	cr_assert_not_null(get(ifindex));
	/* a link is renamed only while down */
	cr_assert_eq(sh("ip link set %s down && ip link set %s name %s", host, host, other), 0);
	cr_assert(WAIT_FOR(find_rec(0, REC_REMOVED, host, ifindex) >= 0, WAIT_MS),
		  "rename to %s not reported as removed", other);
	cr_assert_null(get(ifindex));

	mark = t.nrecs;
	cr_assert_eq(sh("ip link set %s name %s && ip link set %s up", other, host, host), 0);
	cr_assert(WAIT_FOR(find_rec(mark, REC_ADDED, host, ifindex) >= 0, WAIT_MS),
		  "rename back to %s not reported as added", host);
	cr_assert_not_null(get(ifindex));
	cr_assert_str_eq(get(ifindex)->name, host);
}

/* (e) */
Test(links, down_and_up_is_a_change_not_a_removal)
{
	const char *ns = make_ns("e"), *host = link_name('v', "e");
	int ifindex = make_pod_veth(host, ns, true), mark;

	open_links(true);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->up, WAIT_MS), "%s never up", host);

	mark = t.nrecs;
	cr_assert_eq(sh("ip link set %s down", host), 0);
	cr_assert(WAIT_FOR(get(ifindex) && !get(ifindex)->admin_up, WAIT_MS));
	cr_assert(!get(ifindex)->up);
	cr_assert_geq(find_rec(mark, REC_CHANGED, host, ifindex), 0);

	cr_assert_eq(sh("ip link set %s up", host), 0);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->up, WAIT_MS), "%s not up again", host);
	/* the peer going down: our end loses its carrier, still a pod veth */
	cr_assert_eq(sh("ip -n %s link set eth0 down", ns), 0);
	cr_assert(WAIT_FOR(get(ifindex) && !get(ifindex)->up, WAIT_MS));
	cr_assert(get(ifindex)->admin_up);
	cr_assert_eq(find_rec(mark, REC_REMOVED, NULL, ifindex), -1, "flapping removed the link");
	cr_assert_eq(find_rec(mark, REC_ADDED, NULL, ifindex), -1);
}

/* (f) */
Test(links, root_namespace_veth_pair_and_other_kinds_are_not_pod_veths)
{
	const char *ns = make_ns("f"), *a = link_name('v', "r"), *b = link_name('v', "s"),
		   *other = link_name('v', "x"), *br = link_name('v', "br"),
		   *sentinel = link_name('v', "z");
	int ifindex;

	open_links(true);
	cr_assert_eq(sh("ip link add %s type veth peer name %s && ip link set %s up && "
			"ip link set %s up",
			a, b, a, b),
		     0);
	/* no dummy driver on some kernels: ifb is another non-veth kind */
	if (sh("ip link add %s type dummy 2>/dev/null", other) != 0)
		cr_assert_eq(sh("ip link add %s type ifb", other), 0, "neither dummy nor ifb");
	cr_assert_eq(sh("ip link set %s up && ip link add %s type bridge && ip link set %s up",
			other, br, br),
		     0);
	/* notifications are in order: once the sentinel is in, the rest has been seen */
	ifindex = make_pod_veth(sentinel, ns, false);
	cr_assert(WAIT_FOR(find_rec(0, REC_ADDED, sentinel, ifindex) >= 0, WAIT_MS));
	cr_assert_eq(t.nrecs, 1, "%d callbacks, first for %s", t.nrecs, t.recs[0].name);
	cr_assert_null(get(if_nametoindex(a)));
	cr_assert_null(get(if_nametoindex(b)));
	cr_assert_null(get(if_nametoindex(other)));
	cr_assert_null(get(if_nametoindex(br)));
	/* and the dump agrees */
	cr_assert_eq(loupe_links_dump(t.l), 0);
	cr_assert_eq(loupe_links_count(t.l), 1);
}

/* (g) */
Test(links, pod_addresses_from_host_routes)
{
	const char *ns = make_ns("g"), *host = link_name('v', "g");
	int ifindex = make_pod_veth(host, ns, true), mark;

	open_links(true);
	cr_assert_not_null(get(ifindex));
	cr_assert_eq(get(ifindex)->addrs.n, 0);

	mark = t.nrecs;
	cr_assert_eq(sh("ip route add 198.18.50.2/32 dev %s", host), 0);
	cr_assert(WAIT_FOR(has_addr(get(ifindex), "198.18.50.2"), WAIT_MS));
	cr_assert_geq(find_rec(mark, REC_CHANGED, host, ifindex), 0);
	/* link-local host routes are not a pod's: in before the next, which is waited for */
	cr_assert_eq(sh("ip -6 route add fe80::5/128 dev %s && "
			"ip route add 169.254.1.1/32 dev %s && "
			"ip -6 route add fd00:198:18::50:2/128 dev %s",
			host, host, host),
		     0);
	cr_assert(WAIT_FOR(has_addr(get(ifindex), "fd00:198:18::50:2"), WAIT_MS));
	cr_assert_eq(get(ifindex)->addrs.n, 2);
	/* IPv4 first */
	cr_assert(!get(ifindex)->addrs.a[0].ipv6);
	/* a wider route is not a pod's address */
	cr_assert_eq(sh("ip route add 198.18.52.0/24 dev %s", host), 0);

	cr_assert_eq(sh("ip route del 198.18.50.2/32 dev %s", host), 0);
	cr_assert(WAIT_FOR(!has_addr(get(ifindex), "198.18.50.2"), WAIT_MS));
	cr_assert(has_addr(get(ifindex), "fd00:198:18::50:2"));
	cr_assert_eq(sh("ip -6 route del fd00:198:18::50:2/128 dev %s", host), 0);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->addrs.n == 0, WAIT_MS));
	/* the dump agrees with what notifications built */
	cr_assert_eq(loupe_links_dump(t.l), 0);
}

/* The kernel flushes IPv4 routes via a link set down without saying so. */
Test(links, routes_flushed_by_link_down_take_the_addresses)
{
	const char *ns = make_ns("i"), *host = link_name('v', "i");
	int ifindex = make_pod_veth(host, ns, true);

	open_links(true);
	cr_assert_eq(sh("ip route add 198.18.50.9/32 dev %s && "
			"ip -6 route add fd00:198:18::50:9/128 dev %s",
			host, host),
		     0);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->addrs.n == 2, WAIT_MS));
	cr_assert_eq(sh("ip link set %s down", host), 0);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->addrs.n == 0, WAIT_MS),
		  "%d addresses left after the link went down", get(ifindex)->addrs.n);
	cr_assert_neq(sh("ip route show dev %s | grep -q 198.18.50.9", host), 0,
		      "the kernel kept the route: the premise changed");
	cr_assert_eq(loupe_links_dump(t.l), 0);
}

/* (h) */
Test(links, pod_addresses_on_a_bridge_from_neighbours_and_fdb)
{
	const char *ns = make_ns("h"), *host = link_name('v', "h"), *br = link_name('b', "");
	int ifindex, br_ifindex;
	const struct loupe_link *link;

	open_links(true);
	/* all after the dump: the bridge's own news about its ports must not unmake the veth */
	ifindex = make_pod_veth(host, ns, false);
	cr_assert_eq(sh("ip link add %s type bridge && ip link set %s up && "
			"ip link set %s master %s up && ip -n %s link set eth0 up && "
			"ip addr add 198.18.51.1/24 dev %s && "
			"ip -6 addr add fd00:198:18:51::1/64 dev %s nodad && "
			"ip -n %s addr add 198.18.51.2/24 dev eth0 && "
			"ip -n %s -6 addr add fd00:198:18:51::2/64 dev eth0 nodad",
			br, br, host, br, ns, br, br, ns, ns),
		     0);
	br_ifindex = if_nametoindex(br);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->master_ifindex == br_ifindex, WAIT_MS));
	cr_assert_eq(get(ifindex)->addrs.n, 0);
	/*
	 * One datagram from the pod to each of the bridge's addresses: the ARP request and the
	 * neighbour solicitation teach the bridge the pod's MAC behind the port (FDB) and the
	 * host the pod's addresses (neighbours on the bridge).
	 */
	cr_assert_eq(sh("ip netns exec %s bash -c 'echo x >/dev/udp/198.18.51.1/9; "
			"echo x >/dev/udp/fd00:198:18:51::1/9'",
			ns),
		     0);
	cr_assert(WAIT_FOR(has_addr(get(ifindex), "198.18.51.2") &&
				   has_addr(get(ifindex), "fd00:198:18:51::2"),
			   WAIT_MS),
		  "pod addresses not learnt; have %d", get(ifindex) ? get(ifindex)->addrs.n : -1);
	link = get(ifindex);
	/* not the bridge's own, not link-local */
	cr_assert_eq(link->addrs.n, 2, "%d addresses", link->addrs.n);
	cr_assert_geq(find_rec(0, REC_CHANGED, host, ifindex), 0);
	cr_assert_eq(loupe_links_dump(t.l), 0);

	/* out of the bridge: still a pod veth, without the bridge's addresses */
	cr_assert_eq(sh("ip link set %s nomaster", host), 0);
	cr_assert(WAIT_FOR(get(ifindex) && get(ifindex)->master_ifindex == 0, WAIT_MS));
	cr_assert_eq(get(ifindex)->addrs.n, 0);
	cr_assert_eq(find_rec(0, REC_REMOVED, NULL, ifindex), -1,
		     "a bridge's news about its port was taken for the link's");
}

/* The overflowed socket: ENOBUFS, then a re-dump that misses nothing. */
Test(links, overflow_is_followed_by_a_redump)
{
	const char *ns1 = make_ns("j1"), *ns2 = make_ns("j2"), *ns3 = make_ns("j3"),
		   *h1 = link_name('v', "j1"), *h2 = link_name('v', "j2"),
		   *h3 = link_name('v', "j3");
	int small = 1, big = 8 << 20, i1, i2, i3, fd, mark;
	struct loupe_links_stats st;

	open_links(true);
	fd = loupe_links_fd(t.l);
	/* the kernel's minimum: a few messages */
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	i1 = make_pod_veth(h1, ns1, true);
	i2 = make_pod_veth(h2, ns2, true);
	i3 = make_pod_veth(h3, ns3, true);
	cr_assert_eq(sh("ip route add 198.18.50.3/32 dev %s", h3), 0);
	cr_assert(WAIT_FOR(get(i1) && get(i2) && get(i3), WAIT_MS));
	cr_assert(WAIT_FOR(has_addr(get(i3), "198.18.50.3"), WAIT_MS));
	loupe_links_stats(t.l, &st);
	cr_assert_geq(st.resyncs, 1, "the socket never overflowed: the test proves nothing");

	/* a removal lost in an overflow is found by the re-dump's sweep */
	mark = t.nrecs;
	cr_assert_eq(sh("ip link del %s && for i in 1 2 3 4; do ip link set %s down; "
			"ip link set %s up; done",
			h1, h2, h2),
		     0);
	cr_assert(WAIT_FOR(find_rec(mark, REC_REMOVED, h1, i1) >= 0, WAIT_MS));
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)), 0);
	cr_assert(WAIT_FOR(get(i2) && get(i2)->up, WAIT_MS));
	cr_assert_eq(loupe_links_count(t.l), 2);
	loupe_links_stats(t.l, &st);
	cr_log_info("re-dumps: %llu", (unsigned long long)st.resyncs);
}

/*
 * After an overflow, what is still queued predates what was lost: replayed on top of the
 * re-dump it would undo it. Here the queued news adds a route whose removal was lost.
 */
Test(links, overflow_drops_news_older_than_the_redump)
{
	const char *ns1 = make_ns("m1"), *ns2 = make_ns("m2"), *ns3 = make_ns("m3"),
		   *h1 = link_name('v', "m1"), *h2 = link_name('v', "m2"),
		   *sentinel = link_name('v', "mz");
	int small = 1, big = 8 << 20, i1, fd;
	struct loupe_links_stats st;

	/* no IPv6 on these: its late news (DAD, addrconf routes) would take the queue's room */
	cr_assert_eq(sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1"), 0);
	i1 = make_pod_veth(h1, ns1, true);
	make_pod_veth(h2, ns2, true);
	open_links(true);
	cr_assert(WAIT_FOR(get(i1) && get(i1)->up, WAIT_MS));
	fd = loupe_links_fd(t.l);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	cr_assert_eq(sh("ip route add 198.18.50.4/32 dev %s && for i in 1 2 3 4; do "
			"ip link set %s down; ip link set %s up; done && "
			"ip route del 198.18.50.4/32 dev %s",
			h1, h2, h2, h1),
		     0);
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)), 0);
	make_pod_veth(sentinel, ns3, false);
	cr_assert(WAIT_FOR(loupe_links_count(t.l) == 3, WAIT_MS));
	loupe_links_stats(t.l, &st);
	cr_assert_geq(st.resyncs, 1, "the socket never overflowed: the test proves nothing");
	cr_assert(!has_addr(get(i1), "198.18.50.4"), "a route deleted during the overflow is back");
	cr_assert_eq(loupe_links_dump(t.l), 0);
}

/* Moving the peer away sends news about the peer only: the end left here must be asked. */
Test(links, peer_moved_away_makes_a_pod_veth_and_back_unmakes_it)
{
	const char *ns = make_ns("k"), *a = link_name('v', "ka"), *b = link_name('v', "kb");
	int ia, mark;
	char self[64];

	cr_assert_eq(sh("ip link add %s type veth peer name %s", a, b), 0);
	ia = if_nametoindex(a);
	open_links(true);
	cr_assert_eq(t.nrecs, 0);
	cr_assert_eq(sh("ip link set %s netns %s", b, ns), 0);
	cr_assert(WAIT_FOR(find_rec(0, REC_ADDED, a, ia) >= 0, WAIT_MS),
		  "%s not a pod veth after its peer moved", a);
	cr_assert_geq(get(ia)->peer_netnsid, 0);

	mark = t.nrecs;
	snprintf(self, sizeof(self), "/proc/%d/ns/net", t.pid);
	cr_assert_eq(sh("ip -n %s link set %s netns %s", ns, b, self), 0);
	cr_assert(WAIT_FOR(find_rec(mark, REC_REMOVED, a, ia) >= 0, WAIT_MS),
		  "%s still a pod veth with its peer back", a);
	cr_assert_null(get(if_nametoindex(b)));
	cr_assert_eq(loupe_links_count(t.l), 0);
}

/* A pod veth moved to another namespace is gone from ours. */
Test(links, pod_veth_moved_away_is_removed)
{
	const char *ns = make_ns("l"), *ns2 = make_ns("l2"), *host = link_name('v', "l");
	int ifindex = make_pod_veth(host, ns, true);

	open_links(true);
	cr_assert_not_null(get(ifindex));
	cr_assert_eq(sh("ip link set %s netns %s", host, ns2), 0);
	cr_assert(WAIT_FOR(find_rec(0, REC_REMOVED, host, ifindex) >= 0, WAIT_MS));
	cr_assert_eq(loupe_links_count(t.l), 0);
}

Test(links, open_rejects_an_empty_glob_list)
{
	struct loupe_links *l = NULL;

	cr_assert_eq(loupe_links_open(NULL, 0, NULL, NULL, &l), -EINVAL);
	cr_assert_null(l);
}
