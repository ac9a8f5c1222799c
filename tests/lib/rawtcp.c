// SPDX-License-Identifier: Apache-2.0
/*
 * The raw TCP client of rawtcp.h: frames built here (Ethernet, IPv4, TCP), sent and read on an
 * AF_PACKET socket made in the pod's namespace. Not a TCP stack: see rawtcp.h for what it
 * leaves out.
 */
#include "rawtcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pktbuild.h"

#define ETH_HLEN_ 14
#define IP_HLEN_  20
#define TCP_HLEN_ 20
#define FRAME_MAX 2048
#define RX_MAX	  65536
#define MSS	  1400 /* what the SYN says; the plans here send far less */

struct loupe_rawtcp {
	int fd;
	int ifindex;
	uint8_t mac[6], gw_mac[6];
	uint32_t saddr, daddr; /* network order */
	uint16_t sport, dport;
	uint8_t ttl;
	uint16_t ip_id;
	int rto_first, rto_max;
	uint32_t frag_at;

	/* ours: payload byte i has sequence number isn + 1 + i */
	uint32_t isn;
	uint8_t *data;
	uint32_t len;
	struct loupe_rawtcp_seg segs[LOUPE_RAWTCP_SEGS_MAX]; /* the plan, by offset */
	size_t n_segs;
	uint32_t sent_hi; /* the end of the highest byte sent */
	bool recovery;	  /* after a timeout: a partial ACK sends the next piece at once */
	uint32_t recover; /* recovery ends once this much is acknowledged */
	int rto;	  /* ms, doubles on each timeout up to rto_max */
	double rto_at;	  /* when the timer fires; 0: not running */
	bool syn_sent;

	/* theirs */
	uint32_t rcv_nxt;
	bool fin;

	struct loupe_rawtcp_stats st;
	uint8_t rx[RX_MAX];
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs @fn(@arg) with this thread in namespace @netns (NULL: where it is). */
static int in_netns(const char *netns, int (*fn)(void *), void *arg)
{
	char path[PATH_MAX];
	int here, there, rc, err;

	if (!netns)
		return fn(arg);
	snprintf(path, sizeof(path), "/var/run/netns/%s", netns);
	here = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (here < 0)
		return -errno;
	there = open(path, O_RDONLY | O_CLOEXEC);
	if (there < 0) {
		err = -errno;
		close(here);
		return err;
	}
	if (setns(there, CLONE_NEWNET)) {
		err = -errno;
		close(there);
		close(here);
		return err;
	}
	rc = fn(arg);
	/* back where the caller was; failing here would leave the thread elsewhere */
	if (setns(here, CLONE_NEWNET))
		abort();
	close(there);
	close(here);
	return rc;
}

struct mac_req {
	const char *ifname;
	uint8_t *mac;
};

static int mac_get(void *arg)
{
	struct mac_req *r = arg;
	struct ifreq ifr = { 0 };
	int fd, err = 0;

	if (strlen(r->ifname) >= IFNAMSIZ)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, r->ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr))
		err = -errno;
	else
		memcpy(r->mac, ifr.ifr_hwaddr.sa_data, 6);
	close(fd);
	return err;
}

int loupe_rawtcp_if_mac(const char *netns, const char *ifname, uint8_t ret_mac[6])
{
	struct mac_req r = { ifname, ret_mac };

	return in_netns(netns, mac_get, &r);
}

struct open_req {
	struct loupe_rawtcp *c;
	const char *ifname;
};

static int socket_open(void *arg)
{
	struct open_req *r = arg;
	struct loupe_rawtcp *c = r->c;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP) };
	struct mac_req m = { r->ifname, c->mac };
	int one = 1, err;

	err = mac_get(&m);
	if (err)
		return err;
	c->ifindex = if_nametoindex(r->ifname);
	if (!c->ifindex)
		return -errno;
	c->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_IP));
	if (c->fd < 0)
		return -errno;
	sll.sll_ifindex = c->ifindex;
	if (bind(c->fd, (struct sockaddr *)&sll, sizeof(sll)))
		return -errno;
	/* our own frames are not news; older kernels lack it, and then recv_one skips them */
	setsockopt(c->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	return 0;
}

static int addr4(const char *text, uint32_t *ret)
{
	uint8_t a[16];
	int err = loupe_pkt_addr(text, a);

	if (err)
		return err;
	if (!strchr(text, '.'))
		return -EINVAL; /* IPv4 only */
	memcpy(ret, &a[12], 4);
	return 0;
}

int loupe_rawtcp_open(const struct loupe_rawtcp_cfg *cfg, struct loupe_rawtcp **ret)
{
	struct loupe_rawtcp *c;
	struct open_req r;
	int err;

	*ret = NULL;
	if (!cfg->ifname || !cfg->src || !cfg->dst || !cfg->sport || !cfg->dport)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	err = addr4(cfg->src, &c->saddr);
	if (!err)
		err = addr4(cfg->dst, &c->daddr);
	if (err)
		goto fail;
	memcpy(c->gw_mac, cfg->gw_mac, 6);
	c->sport = cfg->sport;
	c->dport = cfg->dport;
	c->ttl = cfg->ttl ? cfg->ttl : 64;
	c->rto_first = cfg->rto_ms > 0 ? cfg->rto_ms : 100;
	c->rto_max = cfg->rto_max_ms > 0 ? cfg->rto_max_ms : 800;
	c->rto = c->rto_first;
	if (cfg->frag_at && (cfg->frag_at % 8 || cfg->frag_at < TCP_HLEN_ + 4)) {
		err = -EINVAL;
		goto fail;
	}
	c->frag_at = cfg->frag_at;
	/* far from 0 and from wrapping, so that relative offsets read plainly in a capture */
	if (getrandom(&c->isn, sizeof(c->isn), 0) != sizeof(c->isn))
		c->isn = (uint32_t)now_ms() * 2654435761u;
	c->isn = 0x10000000u + c->isn % 0x40000000u;
	c->st.isn = c->isn;
	r = (struct open_req){ c, cfg->ifname };
	err = in_netns(cfg->netns, socket_open, &r);
	if (err)
		goto fail;
	*ret = c;
	return 0;
fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return err;
}

/* Frame @f (Ethernet, IPv4, @l4_len bytes of TCP) sent as two fragments, split at frag_at. */
static int send_fragments(struct loupe_rawtcp *c, const uint8_t *f, size_t l4_len)
{
	uint8_t part[FRAME_MAX];
	size_t at[2] = { 0, c->frag_at }, len[2] = { c->frag_at, l4_len - c->frag_at };

	for (int i = 0; i < 2; i++) {
		uint8_t *ip = part + ETH_HLEN_;
		uint16_t v, csum;

		memcpy(part, f, ETH_HLEN_ + IP_HLEN_);
		memcpy(ip + IP_HLEN_, f + ETH_HLEN_ + IP_HLEN_ + at[i], len[i]);
		v = htons(IP_HLEN_ + len[i]);
		memcpy(ip + 2, &v, 2);
		v = htons((i == 0 ? 0x2000 : 0) | at[i] / 8); /* MF on the first, no DF */
		memcpy(ip + 6, &v, 2);
		memset(ip + 10, 0, 2);
		csum = htons((uint16_t)~loupe_pkt_csum_fold(loupe_pkt_csum_add(0, ip, IP_HLEN_)));
		memcpy(ip + 10, &csum, 2);
		if (send(c->fd, part, ETH_HLEN_ + IP_HLEN_ + len[i], 0) < 0)
			return -errno;
	}
	return 0;
}

/* One frame: @flags, @seq, with payload bytes [@off, @off + @n) of the data. */
static int send_tcp(struct loupe_rawtcp *c, uint8_t flags, uint32_t seq, uint32_t off, uint32_t n)
{
	uint8_t f[FRAME_MAX] = { 0 }, *ip = f + ETH_HLEN_, *tcp = ip + IP_HLEN_;
	size_t opt_len = (flags & 0x02) ? 4 : 0, tcp_len = TCP_HLEN_ + opt_len + n;
	uint16_t tot = IP_HLEN_ + tcp_len, csum;
	uint32_t sum, v;
	uint8_t pseudo[12];

	if (ETH_HLEN_ + tot > FRAME_MAX)
		return -EMSGSIZE;
	memcpy(f, c->gw_mac, 6);
	memcpy(f + 6, c->mac, 6);
	f[12] = 0x08;
	f[13] = 0x00;

	ip[0] = 0x45;
	v = htons(tot);
	memcpy(ip + 2, &v, 2);
	v = htons(c->ip_id++);
	memcpy(ip + 4, &v, 2);
	ip[6] = 0x40; /* DF */
	ip[8] = c->ttl;
	ip[9] = 6;
	memcpy(ip + 12, &c->saddr, 4);
	memcpy(ip + 16, &c->daddr, 4);
	csum = htons((uint16_t)~loupe_pkt_csum_fold(loupe_pkt_csum_add(0, ip, IP_HLEN_)));
	memcpy(ip + 10, &csum, 2);

	v = htons(c->sport);
	memcpy(tcp, &v, 2);
	v = htons(c->dport);
	memcpy(tcp + 2, &v, 2);
	v = htonl(seq);
	memcpy(tcp + 4, &v, 4);
	v = htonl((flags & 0x10) ? c->rcv_nxt : 0);
	memcpy(tcp + 8, &v, 4);
	tcp[12] = (uint8_t)(((TCP_HLEN_ + opt_len) / 4) << 4);
	tcp[13] = flags;
	tcp[14] = 0xff; /* window 65535 */
	tcp[15] = 0xff;
	if (opt_len) {
		tcp[20] = 2; /* MSS */
		tcp[21] = 4;
		tcp[22] = MSS >> 8;
		tcp[23] = MSS & 0xff;
	}
	if (n)
		memcpy(tcp + TCP_HLEN_ + opt_len, c->data + off, n);
	memcpy(pseudo, &c->saddr, 4);
	memcpy(pseudo + 4, &c->daddr, 4);
	pseudo[8] = 0;
	pseudo[9] = 6;
	pseudo[10] = tcp_len >> 8;
	pseudo[11] = tcp_len & 0xff;
	sum = loupe_pkt_csum_add(0, pseudo, sizeof(pseudo));
	sum = loupe_pkt_csum_add(sum, tcp, tcp_len);
	csum = htons((uint16_t)~loupe_pkt_csum_fold(sum));
	memcpy(tcp + 16, &csum, 2);

	if (n && c->frag_at && tcp_len > c->frag_at)
		return send_fragments(c, f, tcp_len);
	if (send(c->fd, f, ETH_HLEN_ + tot, 0) < 0)
		return -errno;
	return 0;
}

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

static int send_ack(struct loupe_rawtcp *c)
{
	return send_tcp(c, F_ACK, c->isn + 1 + c->st.acked, 0, 0);
}

/* The data from @off to the end of the plan's segment that holds it. */
static int send_from(struct loupe_rawtcp *c, uint32_t off, bool again)
{
	for (size_t i = 0; i < c->n_segs; i++) {
		const struct loupe_rawtcp_seg *s = &c->segs[i];
		int err;

		if (off < s->off || off >= s->off + s->len)
			continue;
		err = send_tcp(c, F_ACK | F_PSH, c->isn + 1 + off, off, s->off + s->len - off);
		if (err)
			return err;
		if (again)
			c->st.retransmits++;
		return 0;
	}
	return 0;
}

/* What one frame from the server says. */
static void on_segment(struct loupe_rawtcp *c, const uint8_t *tcp, size_t tcp_len)
{
	size_t doff = (tcp[12] >> 4) * 4;
	uint8_t flags = tcp[13];
	uint32_t seq, ack, rel, n;

	if (doff < TCP_HLEN_ || doff > tcp_len)
		return;
	memcpy(&seq, tcp + 4, 4);
	memcpy(&ack, tcp + 8, 4);
	seq = ntohl(seq);
	ack = ntohl(ack);
	n = tcp_len - doff;

	if (flags & F_RST) {
		c->st.reset = true;
		return;
	}
	if (!c->st.established) {
		if ((flags & (F_SYN | F_ACK)) == (F_SYN | F_ACK) && ack == c->isn + 1) {
			c->rcv_nxt = seq + 1;
			c->st.established = true;
			c->rto_at = 0;
			c->rto = c->rto_first;
			send_ack(c);
		}
		return;
	}
	if (flags & F_SYN) { /* our ACK of its SYN-ACK was lost: say it again */
		send_ack(c);
		return;
	}
	if (flags & F_ACK) {
		rel = ack - (c->isn + 1);
		if (rel <= c->len && (int32_t)(rel - c->st.acked) > 0) {
			c->st.acked = rel;
			c->rto = c->rto_first;
			c->rto_at = rel < c->sent_hi ? now_ms() + c->rto : 0;
			if (c->recovery && rel >= c->recover)
				c->recovery = false;
			if (c->recovery)
				send_from(c, rel, true);
		}
	}
	if (n || (flags & F_FIN)) {
		if (seq == c->rcv_nxt) {
			uint32_t room = RX_MAX - c->st.rx_len;
			uint32_t take = n < room ? n : room;

			memcpy(c->rx + c->st.rx_len, tcp + doff, take);
			c->st.rx_len += take;
			c->rcv_nxt += n;
			if ((flags & F_FIN) && !c->fin) {
				c->fin = true;
				c->rcv_nxt++;
			}
		}
		send_ack(c); /* in order or not: what we have */
	}
}

/* Reads every frame waiting; 0 or -errno. */
static int recv_all(struct loupe_rawtcp *c)
{
	uint8_t f[FRAME_MAX];

	for (;;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(c->fd, f, sizeof(f), 0, (struct sockaddr *)&from, &fl);
		const uint8_t *ip = f + ETH_HLEN_;
		size_t ihl, tot;
		uint16_t port;

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		if (from.sll_pkttype == PACKET_OUTGOING || n < ETH_HLEN_ + IP_HLEN_ + TCP_HLEN_)
			continue;
		if (f[12] != 0x08 || f[13] != 0x00 || (ip[0] >> 4) != 4 || ip[9] != 6)
			continue;
		ihl = (ip[0] & 0xf) * 4;
		tot = (size_t)ip[2] << 8 | ip[3];
		if (ihl < IP_HLEN_ || tot < ihl + TCP_HLEN_ || ETH_HLEN_ + tot > (size_t)n)
			continue;
		if (memcmp(ip + 12, &c->daddr, 4) || memcmp(ip + 16, &c->saddr, 4))
			continue;
		memcpy(&port, ip + ihl, 2);
		if (ntohs(port) != c->dport)
			continue;
		memcpy(&port, ip + ihl + 2, 2);
		if (ntohs(port) != c->sport)
			continue;
		on_segment(c, ip + ihl, tot - ihl);
	}
}

/* The timer: the SYN, or the first piece not acknowledged, again. */
static int on_timer(struct loupe_rawtcp *c)
{
	int err;

	if (!c->st.established) {
		err = send_tcp(c, F_SYN, c->isn, 0, 0);
	} else if (c->st.acked < c->sent_hi) {
		err = send_from(c, c->st.acked, true);
		c->recovery = true;
		c->recover = c->sent_hi;
	} else {
		c->rto_at = 0;
		return 0;
	}
	c->rto = c->rto * 2 < c->rto_max ? c->rto * 2 : c->rto_max;
	c->rto_at = now_ms() + c->rto;
	return err;
}

int loupe_rawtcp_pump(struct loupe_rawtcp *c, bool (*done)(const struct loupe_rawtcp *, void *),
		      void *arg, int timeout_ms)
{
	double end = now_ms() + timeout_ms;
	int err;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		double now, until;

		err = recv_all(c);
		if (err)
			return err;
		if (done(c, arg))
			return 0;
		now = now_ms();
		if (c->rto_at && now >= c->rto_at) {
			err = on_timer(c);
			if (err)
				return err;
			continue;
		}
		if (now >= end)
			return -ETIMEDOUT;
		until = c->rto_at && c->rto_at < end ? c->rto_at : end;
		poll(&p, 1, (int)(until - now) + 1);
	}
}

static bool is_established(const struct loupe_rawtcp *c, void *arg)
{
	(void)arg;
	return c->st.established || c->st.reset;
}

int loupe_rawtcp_connect(struct loupe_rawtcp *c, int timeout_ms)
{
	int err;

	if (c->syn_sent)
		return -EALREADY;
	c->syn_sent = true;
	err = send_tcp(c, F_SYN, c->isn, 0, 0);
	if (err)
		return err;
	c->rto_at = now_ms() + c->rto;
	err = loupe_rawtcp_pump(c, is_established, NULL, timeout_ms);
	if (err)
		return err;
	return c->st.established ? 0 : -ECONNREFUSED;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct loupe_rawtcp_seg *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

int loupe_rawtcp_send_plan(struct loupe_rawtcp *c, const void *data, uint32_t len,
			   const struct loupe_rawtcp_seg *plan, size_t n)
{
	uint32_t at = 0;
	int err;

	if (!c->st.established || c->data || !n || n > LOUPE_RAWTCP_SEGS_MAX || !len)
		return -EINVAL;
	memcpy(c->segs, plan, n * sizeof(*plan));
	qsort(c->segs, n, sizeof(*plan), seg_cmp);
	for (size_t i = 0; i < n; i++) {
		if (c->segs[i].off != at || !c->segs[i].len || c->segs[i].len > MSS)
			return -EINVAL;
		at += c->segs[i].len;
	}
	if (at != len)
		return -EINVAL;
	c->data = malloc(len);
	if (!c->data)
		return -ENOMEM;
	memcpy(c->data, data, len);
	c->len = len;
	c->n_segs = n;
	for (size_t i = 0; i < n; i++) {
		err = send_tcp(c, F_ACK | F_PSH, c->isn + 1 + plan[i].off, plan[i].off,
			       plan[i].len);
		if (err)
			return err;
		c->st.sent++;
		if (plan[i].off + plan[i].len > c->sent_hi)
			c->sent_hi = plan[i].off + plan[i].len;
	}
	c->rto = c->rto_first;
	c->rto_at = now_ms() + c->rto;
	return 0;
}

static bool acked_upto(const struct loupe_rawtcp *c, void *arg)
{
	return c->st.acked >= *(uint32_t *)arg;
}

int loupe_rawtcp_wait_acked(struct loupe_rawtcp *c, uint32_t upto, int timeout_ms)
{
	return loupe_rawtcp_pump(c, acked_upto, &upto, timeout_ms);
}

static bool retransmitted(const struct loupe_rawtcp *c, void *arg)
{
	return c->st.retransmits >= *(uint32_t *)arg;
}

int loupe_rawtcp_wait_retransmits(struct loupe_rawtcp *c, uint32_t n, int timeout_ms)
{
	return loupe_rawtcp_pump(c, retransmitted, &n, timeout_ms);
}

struct needle {
	const void *p;
	size_t len;
};

static bool rx_has(const struct loupe_rawtcp *c, void *arg)
{
	const struct needle *nd = arg;

	return memmem(c->rx, c->st.rx_len, nd->p, nd->len) != NULL;
}

int loupe_rawtcp_wait_rx(struct loupe_rawtcp *c, const void *needle, size_t needle_len,
			 int timeout_ms)
{
	struct needle nd = { needle, needle_len };

	return loupe_rawtcp_pump(c, rx_has, &nd, timeout_ms);
}

struct loupe_rawtcp_stats loupe_rawtcp_stats(const struct loupe_rawtcp *c)
{
	return c->st;
}

const uint8_t *loupe_rawtcp_rx(const struct loupe_rawtcp *c, uint32_t *ret_len)
{
	*ret_len = c->st.rx_len;
	return c->rx;
}

struct loupe_rawtcp *loupe_rawtcp_free(struct loupe_rawtcp *c)
{
	if (!c)
		return NULL;
	/* RFC 5961: a RST at exactly the server's next expected byte is taken at once */
	if (c->fd >= 0 && c->st.established && !c->st.reset)
		send_tcp(c, F_RST | F_ACK, c->isn + 1 + c->st.acked, 0, 0);
	if (c->fd >= 0)
		close(c->fd);
	free(c->data);
	free(c);
	return NULL;
}
