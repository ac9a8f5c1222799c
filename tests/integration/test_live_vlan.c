// SPDX-License-Identifier: Apache-2.0
/*
 * The VLAN tag the kernel keeps in the skb: on receive, a veth moves a frame's outer tag
 * into skb metadata before tc ingress, which BPF_PROG_TEST_RUN cannot reproduce. This test
 * attaches the real program to the host side of a real veth whose pod side lives in a
 * network namespace of its own, injects tagged frames from the pod side through AF_PACKET
 * (the kernel here has no 802.1Q devices), and checks the events. Not for in-packet tags:
 * tests/bpf covers those.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <criterion/criterion.h>

#include "datapath.h"
#include "event.h"

#define MAX_EVENTS 64

static struct {
	char ns[32];
	char host_if[IF_NAMESIZE];
	char pod_if[IF_NAMESIZE];
	bool ns_made;
	bool link_made;
	struct loupe_datapath *dp;
	struct bpf_tc_hook hook;
	bool hook_made;
	struct loupe_event events[MAX_EVENTS];
	int nevents;
} t;

static int run_cmd(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static int collect(void *ctx, const void *record, size_t size)
{
	if (t.nevents < MAX_EVENTS &&
	    loupe_event_decode(record, size, 0, &t.events[t.nevents]) == 0)
		t.nevents++;
	return 0;
}

static void teardown(void)
{
	if (t.hook_made) {
		t.hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		bpf_tc_hook_destroy(&t.hook);
	}
	t.dp = loupe_datapath_free(t.dp);
	if (t.link_made)
		run_cmd("ip link del %s 2>/dev/null", t.host_if);
	if (t.ns_made)
		run_cmd("ip netns del %s 2>/dev/null", t.ns);
	memset(&t, 0, sizeof(t));
}

static void setup(void)
{
	struct loupe_datapath_opts opts = { 0 };
	int err, ifindex;

	snprintf(t.ns, sizeof(t.ns), "loupe-vlan-%d", getpid());
	snprintf(t.host_if, sizeof(t.host_if), "lvh%d", getpid());
	snprintf(t.pod_if, sizeof(t.pod_if), "lvp%d", getpid());

	err = loupe_datapath_open(&opts, collect, NULL, &t.dp);
	if (err == -EPERM)
		cr_skip_test("loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN)");
	cr_assert_eq(err, 0, "loupe_datapath_open: %s", strerror(-err));

	cr_assert_eq(run_cmd("ip netns add %s", t.ns), 0);
	t.ns_made = true;
	cr_assert_eq(run_cmd("ip link add %s type veth peer name %s netns %s", t.host_if, t.pod_if,
			     t.ns),
		     0);
	t.link_made = true;
	/* no IPv6 on either side: router solicitations would only be noise here */
	cr_assert_eq(run_cmd("sysctl -qw net.ipv6.conf.%s.disable_ipv6=1 && ip link set %s up && "
			     "ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && "
			     "ip -n %s link set %s up",
			     t.host_if, t.host_if, t.ns, t.ns, t.pod_if),
		     0);

	ifindex = if_nametoindex(t.host_if);
	cr_assert_gt(ifindex, 0);
	t.hook = (struct bpf_tc_hook){ .sz = sizeof(t.hook),
				       .ifindex = ifindex,
				       .attach_point = BPF_TC_INGRESS };
	err = bpf_tc_hook_create(&t.hook);
	cr_assert(err == 0 || err == -EEXIST, "clsact on %s: %s", t.host_if, strerror(-err));
	t.hook_made = true;
	LIBBPF_OPTS(bpf_tc_opts, tc, .handle = 1, .priority = 1,
		    .prog_fd = loupe_datapath_prog_fd(t.dp, LOUPE_DIR_POD_EGRESS));
	err = bpf_tc_attach(&t.hook, &tc);
	cr_assert_eq(err, 0, "attach: %s", strerror(-err));
}

static uint16_t ip_checksum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (p[i] << 8) | p[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* An Ethernet frame with the given tags, carrying a DNS query for @name (type A). */
static size_t build_tagged_query(uint8_t *f, const uint16_t *tpids, const uint16_t *vids, int ntags,
				 const char *name)
{
	static const uint8_t dst[6] = { 0x02, 0, 0, 0, 0, 0x01 },
			     src[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	size_t off = 0, ip_off, udp_off, dns_off;
	const char *label = name;

	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	off = 12;
	for (int i = 0; i < ntags; i++) {
		f[off++] = tpids[i] >> 8;
		f[off++] = tpids[i] & 0xff;
		f[off++] = vids[i] >> 8;
		f[off++] = vids[i] & 0xff;
	}
	f[off++] = 0x08;
	f[off++] = 0x00;

	ip_off = off;
	udp_off = ip_off + 20;
	dns_off = udp_off + 8;
	off = dns_off;
	memset(f + off, 0, 12);
	f[off] = 0x12, f[off + 1] = 0x34; /* id */
	f[off + 2] = 0x01;		  /* RD */
	f[off + 5] = 1;			  /* QDCOUNT */
	off += 12;
	while (*label) {
		const char *dot = strchr(label, '.');
		size_t n = dot ? (size_t)(dot - label) : strlen(label);

		f[off++] = n;
		memcpy(f + off, label, n);
		off += n;
		label += n + (dot ? 1 : 0);
	}
	f[off++] = 0;
	f[off++] = 0, f[off++] = 1; /* A */
	f[off++] = 0, f[off++] = 1; /* IN */

	/* UDP 198.18.77.2:40053 -> 198.18.77.1:53, checksum 0 (none, legal on IPv4) */
	f[udp_off] = 40053 >> 8, f[udp_off + 1] = 40053 & 0xff;
	f[udp_off + 2] = 0, f[udp_off + 3] = 53;
	f[udp_off + 4] = (off - udp_off) >> 8, f[udp_off + 5] = (off - udp_off) & 0xff;
	f[udp_off + 6] = f[udp_off + 7] = 0;

	memset(f + ip_off, 0, 20);
	f[ip_off] = 0x45;
	f[ip_off + 2] = (off - ip_off) >> 8, f[ip_off + 3] = (off - ip_off) & 0xff;
	f[ip_off + 8] = 64;
	f[ip_off + 9] = 17;
	inet_pton(AF_INET, "198.18.77.2", f + ip_off + 12);
	inet_pton(AF_INET, "198.18.77.1", f + ip_off + 16);
	uint16_t csum = ip_checksum(f + ip_off, 20);
	f[ip_off + 10] = csum >> 8, f[ip_off + 11] = csum & 0xff;
	return off;
}

/* Sends @frame out of the pod side: the socket is made inside the pod's namespace. */
static void send_from_pod(const uint8_t *frame, size_t len)
{
	char path[64];
	int self, ns, fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", t.ns);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(self >= 0 && ns >= 0, "netns fds: %s", strerror(errno));
	cr_assert_eq(setns(ns, CLONE_NEWNET), 0, "setns: %s", strerror(errno));
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	int pod_ifindex = if_nametoindex(t.pod_if);
	cr_assert_eq(setns(self, CLONE_NEWNET), 0, "setns back: %s", strerror(errno));
	close(self);
	close(ns);
	cr_assert(fd >= 0, "AF_PACKET socket: %s", strerror(errno));
	cr_assert_gt(pod_ifindex, 0);

	struct sockaddr_ll to = { .sll_family = AF_PACKET,
				  .sll_ifindex = pod_ifindex,
				  .sll_halen = ETH_ALEN };
	ssize_t n = sendto(fd, frame, len, 0, (struct sockaddr *)&to, sizeof(to));
	close(fd);
	cr_assert_eq(n, (ssize_t)len, "sendto: %s", strerror(errno));
}

/* Waits (deadline 5 s) for the DNS_QUERY event for @name. */
static const struct loupe_event *wait_dns_event(const char *name)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		for (int i = 0; i < t.nevents; i++)
			if (t.events[i].kind == LOUPE_EV_DNS_QUERY &&
			    strcmp(t.events[i].dns.qname, name) == 0)
				return &t.events[i];
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= 5)
			return NULL;
		loupe_datapath_poll(t.dp, 100);
	}
}

TestSuite(live_vlan, .init = setup, .fini = teardown, .timeout = 60);

Test(live_vlan, outer_8021q_tag_comes_from_skb_metadata)
{
	uint8_t frame[256];
	uint16_t tpid[] = { 0x8100 }, vid[] = { 42 };
	size_t len = build_tagged_query(frame, tpid, vid, 1, "tagged.example.test");
	const struct loupe_event *ev;

	send_from_pod(frame, len);
	ev = wait_dns_event("tagged.example.test");
	cr_assert_not_null(ev, "no DNS_QUERY event for the tagged frame within 5 s");
	cr_expect(ev->has_vlan, "the event has no VLAN");
	cr_expect_eq(ev->vlan_id, 42);
	cr_expect_not(ev->has_inner_vlan);
	cr_expect_eq(ev->direction, LOUPE_DIR_POD_EGRESS);
	cr_expect_eq(ev->dport, 53);
	cr_expect_eq(ev->dns.qtype, 1);
}

Test(live_vlan, qinq_outer_from_skb_inner_from_packet)
{
	uint8_t frame[256];
	uint16_t tpid[] = { 0x88a8, 0x8100 }, vid[] = { 7, 42 };
	size_t len = build_tagged_query(frame, tpid, vid, 2, "qinq.example.test");
	const struct loupe_event *ev;

	send_from_pod(frame, len);
	ev = wait_dns_event("qinq.example.test");
	cr_assert_not_null(ev, "no DNS_QUERY event for the QinQ frame within 5 s");
	cr_expect(ev->has_vlan);
	cr_expect_eq(ev->vlan_id, 7, "outer (802.1ad) VID: %u", ev->vlan_id);
	cr_expect(ev->has_inner_vlan);
	cr_expect_eq(ev->inner_vlan_id, 42, "inner (802.1Q) VID: %u", ev->inner_vlan_id);
}

Test(live_vlan, untagged_frame_has_no_vlan)
{
	uint8_t frame[256];
	size_t len = build_tagged_query(frame, NULL, NULL, 0, "plain.example.test");
	const struct loupe_event *ev;

	send_from_pod(frame, len);
	ev = wait_dns_event("plain.example.test");
	cr_assert_not_null(ev, "no DNS_QUERY event for the untagged frame within 5 s");
	cr_expect_not(ev->has_vlan);
}
