// SPDX-License-Identifier: Apache-2.0
/*
 * scripts/pods, the pod harness of the live demo and of the agent's integration tests: pods
 * made as a kubelet makes them (network namespaces wired by Debian's CNI plugins, ptp and
 * bridge with host-local IPAM), servers inside them, real clients between them (curl, dig,
 * openssl s_client), and nothing left behind by down-all or by a failed up.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#define PODS	LOUPE_SOURCE_DIR "/scripts/pods"
#define RUN_DIR "/run/loupe-pods"
#define OUT_MAX 65536

/* Set once in the runner (PRE_ALL), inherited by every test process: lpt<runner pid>- */
#define PREFIX_ENV "LOUPE_TEST_PODS_PREFIX"

struct pod {
	const char *name;
	const char *net; /* ptp or bridge */
	char ns[80];
	char host_if[IF_NAMESIZE];
	char v4[INET_ADDRSTRLEN];
	char v6[INET6_ADDRSTRLEN];
};

static struct pod pods[] = {
	{ .name = "a", .net = "ptp" },	  { .name = "b", .net = "ptp" },
	{ .name = "c", .net = "ptp" },	  { .name = "d", .net = "bridge" },
	{ .name = "e", .net = "bridge" },
};
#define NPODS (sizeof(pods) / sizeof(pods[0]))
#define POD_A (&pods[0])
#define POD_B (&pods[1])
#define POD_C (&pods[2])
#define POD_D (&pods[3])
#define POD_E (&pods[4])

static char prefix[32];
static char bridge[IF_NAMESIZE];
static char cni_dir[64]; /* the failing plugins' directory, removed by teardown */

/* Runs a shell command; its stdout (up to cap - 1 bytes) in out; returns its exit status. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[4096], sink[4096];
	va_list ap;
	size_t n = 0;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (out && cap) {
		n = fread(out, 1, cap - 1, f);
		out[n] = '\0';
	}
	while (fread(sink, 1, sizeof(sink), f) > 0)
		;
	st = pclose(f);
	if (st == -1)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void set_prefix(void)
{
	const char *p = getenv(PREFIX_ENV);

	if (p && *p)
		snprintf(prefix, sizeof(prefix), "%s", p);
	else
		snprintf(prefix, sizeof(prefix), "lpt%d-", (int)getpid());
	/* lpt<pid>- -> lptb<pid>: a bridge of this run only */
	snprintf(bridge, sizeof(bridge), "lptb%.*s", (int)(strlen(prefix) - 4), prefix + 3);
}

static void down_all_quiet(void)
{
	run(NULL, 0, PODS " down-all --prefix %s >/dev/null 2>&1", prefix);
}

/* State of test runs that died without cleaning up (their runner is gone). */
static void sweep_dead_runs(void)
{
	DIR *d = opendir(RUN_DIR);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		int pid;
		char tail[8];

		if (sscanf(e->d_name, "lpt%d%7s", &pid, tail) != 2 || strcmp(tail, "-") != 0)
			continue;
		if (pid == getpid() || pid == getppid() || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		run(NULL, 0, PODS " down-all --prefix %s >/dev/null 2>&1", e->d_name);
	}
	closedir(d);
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
	char p[32];

	(void)set;
	if (getenv(PREFIX_ENV))
		return;
	snprintf(p, sizeof(p), "lpt%d-", (int)getpid());
	setenv(PREFIX_ENV, p, 1);
}

/* Safety net in the runner: a crashed test process cannot run its .fini. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	if (getuid() != 0)
		return;
	set_prefix();
	down_all_quiet();
}

static bool can_run(const char **why)
{
	if (getuid() != 0) {
		*why = "needs root: network namespaces and CNI plugins";
		return false;
	}
	if (access("/usr/lib/cni/ptp", X_OK) || access("/usr/lib/cni/bridge", X_OK) ||
	    access("/usr/lib/cni/host-local", X_OK) || access("/usr/lib/cni/loopback", X_OK)) {
		*why = "Debian's CNI plugins (containernetworking-plugins) are not in /usr/lib/cni";
		return false;
	}
	if (access("/usr/bin/curl", X_OK) || access("/usr/bin/dig", X_OK) ||
	    access("/usr/bin/openssl", X_OK) || access("/usr/bin/python3", X_OK)) {
		*why = "needs curl, dig (dnsutils), openssl and /usr/bin/python3";
		return false;
	}
	return true;
}

static void setup(void)
{
	set_prefix();
	sweep_dead_runs();
	down_all_quiet();
}

static void teardown(void)
{
	down_all_quiet();
	if (cni_dir[0]) {
		run(NULL, 0, "rm -rf '%s'", cni_dir);
		cni_dir[0] = '\0';
	}
}

/* ---- checks --------------------------------------------------------------------------------- */

static bool path_exists(const char *fmt, ...)
{
	char p[512];
	struct stat st;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	return stat(p, &st) == 0;
}

static bool in_prefix(int af, const char *addr, const char *net, int len)
{
	unsigned char a[16], n[16];
	int i;

	if (inet_pton(af, addr, a) != 1 || inet_pton(af, net, n) != 1)
		return false;
	for (i = 0; i < len / 8; i++)
		if (a[i] != n[i])
			return false;
	if (len % 8) {
		unsigned char m = 0xff << (8 - len % 8);

		if ((a[i] & m) != (n[i] & m))
			return false;
	}
	return true;
}

static const char *pod_v4_net(const struct pod *p)
{
	return strcmp(p->net, "ptp") == 0 ? "198.18.100.0" : "198.18.101.0";
}

static const char *pod_v6_net(const struct pod *p)
{
	return strcmp(p->net, "ptp") == 0 ? "fd00:198:18:100::" : "fd00:198:18:101::";
}

static void pod_up(struct pod *p)
{
	char *out = malloc(OUT_MAX), *last, *nl;
	int rc;

	cr_assert_not_null(out);
	if (strcmp(p->net, "bridge") == 0)
		rc = run(out, OUT_MAX, PODS " up %s --net bridge --bridge %s --prefix %s", p->name,
			 bridge, prefix);
	else
		rc = run(out, OUT_MAX, PODS " up %s --net ptp --prefix %s", p->name, prefix);
	cr_assert_eq(rc, 0, "pods up %s (%s) failed with %d", p->name, p->net, rc);
	/* the CNI result (JSON), then the summary on the last line */
	cr_assert(strstr(out, "\"cniVersion\": \"1.0.0\""), "no CNI result in: %s", out);
	while ((nl = strrchr(out, '\n')) && nl[1] == '\0')
		*nl = '\0';
	last = strrchr(out, '\n');
	last = last ? last + 1 : out;
	char name[64];
	cr_assert_eq(sscanf(last, "pod=%63s netns=%79s host_if=%15s ipv4=%15s ipv6=%45s", name,
			    p->ns, p->host_if, p->v4, p->v6),
		     5, "summary line: '%s'", last);
	cr_assert_str_eq(name, p->name);
	free(out);
}

static void check_pod(const struct pod *p)
{
	char out[8192], exp_ns[80], *line, *save;
	unsigned int host_idx, pod_idx, peer_idx;
	int rc;

	snprintf(exp_ns, sizeof(exp_ns), "%s%s", prefix, p->name);
	cr_assert_str_eq(p->ns, exp_ns);
	cr_assert(path_exists("/var/run/netns/%s", p->ns), "no netns %s", p->ns);

	/* addresses: from the plan, on eth0, usable (not tentative) */
	cr_assert(in_prefix(AF_INET, p->v4, pod_v4_net(p), 24), "%s: ipv4 %s", p->name, p->v4);
	cr_assert(in_prefix(AF_INET6, p->v6, pod_v6_net(p), 64), "%s: ipv6 %s", p->name, p->v6);
	rc = run(out, sizeof(out), "ip -n %s -o addr show dev eth0", p->ns);
	cr_assert_eq(rc, 0);
	char want[128];
	snprintf(want, sizeof(want), "inet %s/24 ", p->v4);
	cr_assert(strstr(out, want), "%s: %s not on eth0: %s", p->name, want, out);
	snprintf(want, sizeof(want), "inet6 %s/64 ", p->v6);
	cr_assert(strstr(out, want), "%s: %s not on eth0: %s", p->name, want, out);
	cr_assert_null(strstr(out, "tentative"), "%s: tentative address: %s", p->name, out);

	/* the host side is a veth whose peer is the pod's eth0, in the pod's namespace */
	host_idx = if_nametoindex(p->host_if);
	cr_assert_gt(host_idx, 0, "%s: host side %s does not exist", p->name, p->host_if);
	rc = run(out, sizeof(out), "ip -d -o link show dev %s", p->host_if);
	cr_assert_eq(rc, 0);
	cr_assert(strstr(out, " veth "), "%s: %s is not a veth: %s", p->name, p->host_if, out);
	snprintf(want, sizeof(want), " link-netns %s ", p->ns);
	cr_assert(strstr(out, want), "%s: peer of %s not in %s: %s", p->name, p->host_if, p->ns,
		  out);
	snprintf(want, sizeof(want), ": %s@if", p->host_if);
	char *at = strstr(out, want);
	cr_assert(at && sscanf(at + strlen(want), "%u:", &peer_idx) == 1, "%s: %s", p->name, out);
	rc = run(out, sizeof(out), "ip -n %s -o link show dev eth0", p->ns);
	cr_assert_eq(rc, 0);
	unsigned int back;
	cr_assert_eq(sscanf(out, "%u: eth0@if%u:", &pod_idx, &back), 2, "%s: %s", p->name, out);
	cr_assert_eq(pod_idx, peer_idx, "%s: %s's peer is ifindex %u, eth0 is %u", p->name,
		     p->host_if, peer_idx, pod_idx);
	cr_assert_eq(back, host_idx, "%s: eth0's peer is ifindex %u, %s is %u", p->name, back,
		     p->host_if, host_idx);
	if (strcmp(p->net, "bridge") == 0) {
		cr_assert_eq(run(out, sizeof(out), "ip -o link show dev %s", p->host_if), 0);
		snprintf(want, sizeof(want), " master %s ", bridge);
		cr_assert(strstr(out, want), "%s: %s not on bridge %s: %s", p->name, p->host_if,
			  bridge, out);
	}

	/* routes: the pod's own ranges (and link-local), no default, nowhere else */
	for (int v = 4; v <= 6; v += 2) {
		rc = run(out, sizeof(out), "ip -n %s -%d route show", p->ns, v);
		cr_assert_eq(rc, 0);
		for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			char dst[64], *slash;

			cr_assert_eq(sscanf(line, "%63s", dst), 1);
			cr_assert_str_neq(dst, "default", "%s: default route: %s", p->name, line);
			if ((slash = strchr(dst, '/')))
				*slash = '\0';
			if (v == 4)
				cr_assert(in_prefix(AF_INET, dst, pod_v4_net(p), 24),
					  "%s: route outside its range: %s", p->name, line);
			else
				cr_assert(in_prefix(AF_INET6, dst, pod_v6_net(p), 64) ||
						  in_prefix(AF_INET6, dst, "fe80::", 64),
					  "%s: route outside its range: %s", p->name, line);
		}
	}
	/* nothing else is reachable (route lookups send nothing) */
	cr_assert_neq(run(NULL, 0, "ip -n %s route get 192.0.2.1 >/dev/null 2>&1", p->ns), 0,
		      "%s reaches 192.0.2.1", p->name);
	cr_assert_neq(run(NULL, 0, "ip -n %s -6 route get 2001:db8::1 >/dev/null 2>&1", p->ns), 0,
		      "%s reaches 2001:db8::1", p->name);
	const char *other4 = strcmp(p->net, "ptp") == 0 ? "198.18.101.2" : "198.18.100.2";
	cr_assert_neq(run(NULL, 0, "ip -n %s route get %s >/dev/null 2>&1", p->ns, other4), 0,
		      "%s reaches the other network (%s)", p->name, other4);
}

static void serve(const struct pod *p, const char *kind)
{
	int rc = run(NULL, 0, PODS " serve %s %s --prefix %s >&2", p->name, kind, prefix);

	cr_assert_eq(rc, 0, "pods serve %s %s failed with %d", p->name, kind, rc);
}

/* [addr] for URLs and openssl when IPv6 */
static const char *host(const char *addr, char *buf, size_t cap)
{
	snprintf(buf, cap, strchr(addr, ':') ? "[%s]" : "%s", addr);
	return buf;
}

static void check_http(const struct pod *from, const struct pod *to, const char *addr)
{
	char out[256], h[64];
	int rc = run(out, sizeof(out),
		     PODS " exec --prefix %s %s curl -s -o /dev/null -w '%%{http_code}' -m 5 "
			  "http://%s/",
		     prefix, from->name, host(addr, h, sizeof(h)));

	cr_assert_eq(rc, 0, "curl %s -> %s (%s) exit %d", from->name, to->name, addr, rc);
	cr_assert_str_eq(out, "200", "curl %s -> %s (%s): HTTP %s", from->name, to->name, addr,
			 out);
}

static void check_dns(const struct pod *from, const struct pod *to, const char *addr,
		      const char *tcp)
{
	char out[256];
	int rc;

	rc = run(out, sizeof(out),
		 PODS " exec --prefix %s %s dig %s +time=2 +tries=1 +short @%s x.example.test A",
		 prefix, from->name, tcp, addr);
	cr_assert_eq(rc, 0, "dig %s -> %s (%s) exit %d", from->name, to->name, addr, rc);
	cr_assert_str_eq(out, "198.18.10.2\n", "dig A %s -> %s (%s): '%s'", from->name, to->name,
			 addr, out);
	rc = run(out, sizeof(out),
		 PODS " exec --prefix %s %s dig %s +time=2 +tries=1 +short @%s x.example.test AAAA",
		 prefix, from->name, tcp, addr);
	cr_assert_eq(rc, 0, "dig %s -> %s (%s) exit %d", from->name, to->name, addr, rc);
	cr_assert_str_eq(out, "fd00:198:18:10::2\n", "dig AAAA %s -> %s (%s): '%s'", from->name,
			 to->name, addr, out);
}

static void check_tls(const struct pod *from, const struct pod *to, const char *addr)
{
	char out[16384], h[64];
	int rc = run(out, sizeof(out),
		     PODS " exec --prefix %s %s timeout 5 openssl s_client -connect %s:443 "
			  "-servername x.example.test -alpn h2 </dev/null 2>&1",
		     prefix, from->name, host(addr, h, sizeof(h)));

	cr_assert_eq(rc, 0, "openssl s_client %s -> %s (%s) exit %d: %s", from->name, to->name,
		     addr, rc, out);
	cr_assert(strstr(out, "ALPN protocol: h2"), "no ALPN h2 %s -> %s (%s): %s", from->name,
		  to->name, addr, out);
	cr_assert(strstr(out, "Cipher is ") && !strstr(out, "Cipher is (NONE)"),
		  "no handshake %s -> %s (%s): %s", from->name, to->name, addr, out);
}

/* pid and start time from each of the pod's server pid files */
#define MAX_PROCS 32
static struct {
	int pid;
	unsigned long long start;
	char ns[80];
} procs[MAX_PROCS];
static int nprocs;

static unsigned long long proc_start(int pid, char *state)
{
	char p[64], buf[1024], *r;
	unsigned long long start = 0;
	FILE *f;

	snprintf(p, sizeof(p), "/proc/%d/stat", pid);
	if (!(f = fopen(p, "r")))
		return 0;
	if (!fgets(buf, sizeof(buf), f) || !(r = strrchr(buf, ')'))) {
		fclose(f);
		return 0;
	}
	fclose(f);
	/* after "comm) ": state is field 3, start time field 22 */
	if (sscanf(r + 2,
		   "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
		   "%*s %llu",
		   state, &start) != 2)
		return 0;
	return start;
}

static bool proc_running(int pid, unsigned long long start)
{
	char state = 0;

	return proc_start(pid, &state) == start && state != 'Z' && state != 'X';
}

static void collect_servers(void)
{
	char pat[256];
	glob_t g;

	nprocs = 0;
	snprintf(pat, sizeof(pat), RUN_DIR "/%s/pods/*/servers/*.pid", prefix);
	if (glob(pat, 0, NULL, &g) != 0)
		return;
	for (size_t i = 0; i < g.gl_pathc && nprocs < MAX_PROCS; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");
		char *podname, *end;

		if (!f)
			continue;
		if (fscanf(f, "%d %llu", &procs[nprocs].pid, &procs[nprocs].start) == 2) {
			/* .../pods/<name>/servers/x.pid */
			podname = strstr(g.gl_pathv[i], "/pods/") + 6;
			end = strchr(podname, '/');
			snprintf(procs[nprocs].ns, sizeof(procs[nprocs].ns), "%s%.*s", prefix,
				 (int)(end - podname), podname);
			nprocs++;
		}
		fclose(f);
	}
	globfree(&g);
}

/* A server runs inside its pod's network namespace. */
static void check_server_ns(int i)
{
	struct stat a, b;
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/ns/net", procs[i].pid);
	cr_assert_eq(stat(p, &a), 0, "server %d: %s", procs[i].pid, strerror(errno));
	snprintf(p, sizeof(p), "/var/run/netns/%s", procs[i].ns);
	cr_assert_eq(stat(p, &b), 0);
	cr_assert(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "server %d not in netns %s",
		  procs[i].pid, procs[i].ns);
}

/* ---- tests ---------------------------------------------------------------------------------- */

#define SKIP_UNLESS_RUNNABLE()                                                                     \
	do {                                                                                       \
		const char *why;                                                                   \
		if (!can_run(&why))                                                                \
			cr_skip_test("%s", why);                                                   \
	} while (0)

Test(pods, three_ptp_two_bridge, .init = setup, .fini = teardown, .timeout = 300)
{
	SKIP_UNLESS_RUNNABLE();
	char out[4096];

	for (size_t i = 0; i < NPODS; i++)
		pod_up(&pods[i]);
	for (size_t i = 0; i < NPODS; i++)
		check_pod(&pods[i]);
	/* five distinct addresses */
	for (size_t i = 0; i < NPODS; i++)
		for (size_t j = i + 1; j < NPODS; j++) {
			cr_assert_str_neq(pods[i].v4, pods[j].v4);
			cr_assert_str_neq(pods[i].v6, pods[j].v6);
			cr_assert_str_neq(pods[i].host_if, pods[j].host_if);
		}

	/* list shows them all */
	cr_assert_eq(run(out, sizeof(out), PODS " list --prefix %s | wc -l", prefix), 0);
	cr_assert_eq(atoi(out), (int)NPODS);

	/* servers in B (ptp) and E (bridge); clients in A, C (ptp) and D (bridge) */
	const char *kinds[] = { "http", "dns", "tls" };
	for (int k = 0; k < 3; k++) {
		serve(POD_B, kinds[k]);
		serve(POD_E, kinds[k]);
	}
	/* again: already running is fine */
	serve(POD_B, "http");
	collect_servers();
	cr_assert_eq(nprocs, 12, "expected 12 servers (3 kinds x 2 families x 2 pods), got %d",
		     nprocs);
	for (int i = 0; i < nprocs; i++) {
		cr_assert(proc_running(procs[i].pid, procs[i].start), "server %d not running",
			  procs[i].pid);
		check_server_ns(i);
	}

	struct {
		struct pod *from, *to;
	} pairs[] = { { POD_A, POD_B }, { POD_C, POD_B }, { POD_D, POD_E } };
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		struct pod *f = pairs[i].from, *t = pairs[i].to;

		check_http(f, t, t->v4);
		check_http(f, t, t->v6);
		check_dns(f, t, t->v4, "");
		check_dns(f, t, t->v6, "");
		check_dns(f, t, t->v4, "+tcp");
		check_tls(f, t, t->v4);
		check_tls(f, t, t->v6);
	}

	/* down one pod: its servers and namespace go, the others stay */
	cr_assert_eq(run(NULL, 0, PODS " down c --prefix %s >&2", prefix), 0);
	cr_assert_not(path_exists("/var/run/netns/%s", POD_C->ns));
	cr_assert_eq(if_nametoindex(POD_C->host_if), 0, "%s still exists", POD_C->host_if);
	cr_assert_eq(run(NULL, 0, PODS " down c --prefix %s >&2", prefix), 0,
		     "down not idempotent");
	check_http(POD_A, POD_B, POD_B->v4);

	/* down-all leaves nothing */
	cr_assert_eq(run(NULL, 0, PODS " down-all --prefix %s >&2", prefix), 0);
	for (size_t i = 0; i < NPODS; i++) {
		struct pod *p = &pods[i];

		cr_assert_not(path_exists("/var/run/netns/%s", p->ns), "netns %s left", p->ns);
		cr_assert_eq(if_nametoindex(p->host_if), 0, "veth %s left", p->host_if);
		cr_assert_not(path_exists(RUN_DIR "/.shared/ipam/loupe-%s/%s", p->net, p->v4),
			      "IPAM reservation of %s left", p->v4);
		cr_assert_not(path_exists(RUN_DIR "/.shared/ipam/loupe-%s/%s", p->net, p->v6),
			      "IPAM reservation of %s left", p->v6);
	}
	cr_assert_eq(if_nametoindex(bridge), 0, "bridge %s left", bridge);
	cr_assert_not(path_exists(RUN_DIR "/%s", prefix), "state dir " RUN_DIR "/%s left", prefix);
	for (int i = 0; i < nprocs; i++)
		cr_assert_not(proc_running(procs[i].pid, procs[i].start), "server %d still runs",
			      procs[i].pid);
	/* and again: nothing to do is not an error */
	cr_assert_eq(run(NULL, 0, PODS " down-all --prefix %s >&2", prefix), 0);
}

/* A plugin that fails after it made the veth: up fails, and rolls everything back. */
Test(pods, failed_add_rolls_back, .init = setup, .fini = teardown, .timeout = 120)
{
	SKIP_UNLESS_RUNNABLE();
	char *dir = cni_dir, out[8192], veth[IF_NAMESIZE] = "";
	char ns[80], path[128];
	int rc;

	snprintf(cni_dir, sizeof(cni_dir), "/tmp/loupe-pods-cni.XXXXXX");
	cr_assert_not_null(mkdtemp(cni_dir));
	for (int k = 0; k < 2; k++) {
		const char *plugin = k == 0 ? "ptp" : "bridge";

		FILE *f;

		cr_assert_eq(run(NULL, 0,
				 "ln -sf /usr/lib/cni/loopback /usr/lib/cni/host-local %s/", dir),
			     0);
		/* runs the real plugin, keeps its result, then reports an error */
		snprintf(path, sizeof(path), "%s/%s", dir, plugin);
		f = fopen(path, "w");
		cr_assert_not_null(f);
		fprintf(f,
			"#!/bin/sh\n"
			"/usr/lib/cni/%s >%s/real-$CNI_COMMAND.json || exit 1\n"
			"[ \"$CNI_COMMAND\" = ADD ] || exit 0\n"
			"echo '{\"cniVersion\": \"1.0.0\", \"code\": 999, \"msg\": \"injected "
			"failure\"}'\n"
			"exit 1\n",
			plugin, dir);
		fclose(f);
		cr_assert_eq(chmod(path, 0755), 0);

		rc = run(out, sizeof(out),
			 "LOUPE_CNI_PATH=%s " PODS " up f --net %s --bridge %s --prefix %s 2>&1",
			 dir, plugin, bridge, prefix);
		cr_assert_neq(rc, 0, "up succeeded with a failing %s plugin", plugin);
		cr_assert(strstr(out, "injected failure"), "error does not name the failure: %s",
			  out);
		cr_assert(strstr(out, "rolling back"), "%s", out);

		/* the real plugin did make a veth: find it in its result, and see it gone */
		rc = run(out, sizeof(out),
			 "/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); "
			 "print(next(i[\"name\"] for i in j[\"interfaces\"] if "
			 "i[\"name\"].startswith(\"veth\")))' %s/real-ADD.json",
			 dir);
		cr_assert_eq(rc, 0, "the real %s plugin made nothing: %s", plugin, out);
		sscanf(out, "%15s", veth);
		cr_assert_eq(if_nametoindex(veth), 0, "%s (%s) left after the failed up", veth,
			     plugin);
		snprintf(ns, sizeof(ns), "%sf", prefix);
		cr_assert_not(path_exists("/var/run/netns/%s", ns), "netns %s left", ns);
		cr_assert_not(path_exists(RUN_DIR "/%s", prefix), "state left");
		if (k == 1)
			cr_assert_eq(if_nametoindex(bridge), 0, "bridge %s left", bridge);
		snprintf(path, sizeof(path), "%s/real-ADD.json", dir);
		unlink(path);
	}
}

Test(pods, errors, .init = setup, .fini = teardown, .timeout = 120)
{
	SKIP_UNLESS_RUNNABLE();
	char out[8192];

	/* usage errors: exit 2 */
	cr_assert_eq(run(NULL, 0, PODS " up x --net flannel --prefix %s 2>/dev/null", prefix), 2);
	cr_assert_eq(run(NULL, 0, PODS " up 'x/y' --prefix %s 2>/dev/null", prefix), 2);
	cr_assert_eq(run(NULL, 0, PODS " frobnicate 2>/dev/null"), 2);
	/* unknown pods */
	cr_assert_eq(run(NULL, 0, PODS " down nosuch --prefix %s", prefix), 0);
	cr_assert_neq(run(NULL, 0, PODS " serve nosuch http --prefix %s 2>/dev/null", prefix), 0);
	cr_assert_neq(run(NULL, 0, PODS " exec --prefix %s nosuch true 2>/dev/null", prefix), 0);
	/* twice the same pod */
	cr_assert_eq(run(NULL, 0, PODS " up x --prefix %s >/dev/null", prefix), 0);
	cr_assert_eq(run(out, sizeof(out), PODS " up x --prefix %s 2>&1", prefix), 1);
	cr_assert(strstr(out, "pod exists"), "%s", out);
	/* a command's status comes back through exec */
	cr_assert_eq(run(NULL, 0, PODS " exec --prefix %s x sh -c 'exit 7'", prefix), 7);
	cr_assert_eq(run(NULL, 0, PODS " serve x gopher --prefix %s 2>/dev/null", prefix), 2);
	cr_assert_eq(run(NULL, 0, PODS " down-all --prefix %s", prefix), 0);
	cr_assert_not(path_exists(RUN_DIR "/%s", prefix));
}
