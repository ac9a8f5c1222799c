// SPDX-License-Identifier: Apache-2.0
/*
 * Pod veths and their pods' addresses from rtnetlink (libmnl). Not for attaching programs,
 * nor for Kubernetes names.
 *
 * The module mirrors facts from the kernel -- tracked links (veths and bridges), host routes
 * via veths, neighbours on bridges, bridge FDB entries on veth ports -- derives each pod
 * veth's view from them, and reports the difference with what it last reported. Every
 * message is an idempotent update of a fact, so a dump taken while notifications queue up,
 * followed by those notifications, converges on the kernel's state.
 *
 * Kernel behaviours this works around (each where it is handled):
 * - bridges send RTM_NEWLINK/RTM_DELLINK with ifi_family AF_BRIDGE about their ports (a port
 *   leaving the bridge is an AF_BRIDGE DELLINK): those are not link news and are ignored;
 * - moving one end of a veth pair to another namespace sends DELLINK for that end only: the
 *   end left behind, now with a peer elsewhere, is asked for (RTM_GETLINK), and likewise
 *   when the peer comes back;
 * - IPv4 routes via a link are flushed without RTM_DELROUTE when the link is set down,
 *   deleted, or loses its last IPv4 address (and routes with a deleted prefsrc): the first
 *   two are mirrored here, the others by re-dumping IPv4 routes after an RTM_DELADDR;
 * - bridge FDB entries age out (300 s) and neighbours are garbage collected while the pod
 *   still owns its address: those two tables are sticky here (see on_neigh()).
 */
#include <errno.h>
#include <fnmatch.h>
#include <net/if.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include "links.h"

#ifndef RTEXT_FILTER_SKIP_STATS
#define RTEXT_FILTER_SKIP_STATS (1 << 3)
#endif

/* What net/neighbour.h calls NUD_VALID: the entry has a usable link-layer address. */
#define LINKS_NUD_VALID                                                                            \
	(NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY)

#define LINKS_RCVBUF	      (8 << 20)	 /* notifications: room for bursts of pod churn */
#define LINKS_BUF_SIZE	      (64 << 10) /* above the kernel's largest dump skb (32 KiB) */
#define LINKS_FACTS_MAX	      16384	 /* per table: routes, neighbours, FDB entries */
#define LINKS_DUMP_TIMEOUT_MS 5000
#define LINKS_DUMP_TRIES      5	   /* a dump the kernel marks NLM_F_DUMP_INTR is retried */
#define LINKS_READS_MAX	      1024 /* notification reads per loupe_links_process() */
#define LINKS_DRAIN_MAX	      65536
#define LINKS_REGET_MAX	      16
#define LINKS_CANDIDATES_MAX  64

enum link_kind {
	KIND_OTHER,
	KIND_VETH,
	KIND_BRIDGE,
};

struct entry {
	struct loupe_link cur; /* now; cur.addrs is filled when reconciling */
	struct loupe_link rep; /* as last reported, while reported */
	enum link_kind kind;
	uint8_t mac[6];
	int peer_ifindex; /* IFLA_LINK: in our namespace if cur.peer_netnsid < 0 */
	bool pod;	  /* a pod veth now */
	bool reported;	  /* pod_added made, pod_removed not since */
	bool dirty;	  /* compare with rep when reconciling */
	bool stale;	  /* not seen in the dump under way */
};

struct route_fact {
	bool ipv6;
	uint8_t tos;
	uint32_t table;
	uint32_t prio;
	uint8_t dst[16];
	int oif;
	bool stale;
};

struct neigh_fact {
	int ifindex; /* the bridge */
	bool ipv6;
	uint8_t ip[16];
	uint8_t mac[6];
};

struct fdb_fact {
	int bridge;
	uint16_t vlan;
	uint8_t mac[6];
	int port;
};

struct loupe_links {
	struct mnl_socket *ev;	/* notifications */
	struct mnl_socket *req; /* requests and dumps */
	uint32_t req_portid;
	uint32_t seq;
	char **globs;
	size_t nglobs;
	struct loupe_links_cbs cbs;
	void *ctx;

	struct entry *links; /* sorted by ifindex */
	size_t nlinks, caplinks;
	size_t npods; /* reported */
	struct route_fact *routes;
	size_t nroutes, caproutes;
	struct neigh_fact *neighs;
	size_t nneighs, capneighs;
	struct fdb_fact *fdbs;
	size_t nfdbs, capfdbs;

	bool in_dump;
	int reget[LINKS_REGET_MAX];
	int nreget;
	bool reget_all;
	bool resync_routes4;
	int ncalls;
	struct loupe_links_stats stats;
	char buf[LINKS_BUF_SIZE];
};

static int vec_reserve(void **v, size_t *cap, size_t n, size_t size, size_t max)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	if (n >= max)
		return -ENOSPC;
	ncap = *cap ? *cap * 2 : 16;
	if (ncap > max)
		ncap = max;
	p = reallocarray(*v, ncap, size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

static bool addr_is_pod(bool ipv6, const uint8_t a[16])
{
	static const uint8_t zero[16];
	const uint8_t *v4 = a + 12;

	if (!ipv6)
		/* 0/8, 127/8, 169.254/16, multicast, reserved and broadcast */
		return v4[0] != 0 && v4[0] != 127 && v4[0] < 224 && !(v4[0] == 169 && v4[1] == 254);
	if (a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
		return false;
	/* :: and ::1 */
	return memcmp(a, zero, 15) != 0 || a[15] > 1;
}

static void addr_from(bool ipv6, const void *src, uint8_t dst[16])
{
	if (ipv6) {
		memcpy(dst, src, 16);
		return;
	}
	memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	memcpy(dst + 12, src, 4);
}

static bool mac_is_unicast(const uint8_t mac[6])
{
	static const uint8_t zero[6];

	return !(mac[0] & 1) && memcmp(mac, zero, 6) != 0;
}

struct attrs {
	const struct nlattr **tb;
	int max;
};

static int attr_cb(const struct nlattr *a, void *data)
{
	struct attrs *at = data;
	int type = mnl_attr_get_type(a);

	if (type <= at->max)
		at->tb[type] = a;
	return MNL_CB_OK;
}

static bool attr_u32(const struct nlattr *a, uint32_t *ret_v)
{
	if (!a || mnl_attr_get_payload_len(a) < sizeof(uint32_t))
		return false;
	*ret_v = mnl_attr_get_u32(a);
	return true;
}

static bool attr_bytes(const struct nlattr *a, size_t len, const void **ret_p)
{
	if (!a || mnl_attr_get_payload_len(a) != len)
		return false;
	*ret_p = mnl_attr_get_payload(a);
	return true;
}

/* links */

static size_t link_pos(const struct loupe_links *l, int ifindex)
{
	size_t lo = 0, hi = l->nlinks;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->links[mid].cur.ifindex < ifindex)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct entry *link_find(const struct loupe_links *l, int ifindex)
{
	size_t pos = link_pos(l, ifindex);

	if (pos < l->nlinks && l->links[pos].cur.ifindex == ifindex)
		return &l->links[pos];
	return NULL;
}

static void mark_dirty(struct loupe_links *l, int ifindex)
{
	struct entry *e = link_find(l, ifindex);

	if (e)
		e->dirty = true;
}

static bool glob_match(const struct loupe_links *l, const char *name)
{
	for (size_t i = 0; i < l->nglobs; i++)
		if (fnmatch(l->globs[i], name, 0) == 0)
			return true;
	return false;
}

static void report_removed(struct loupe_links *l, struct entry *e)
{
	e->reported = false;
	l->npods--;
	l->ncalls++;
	if (l->cbs.pod_removed)
		l->cbs.pod_removed(l->ctx, e->rep.ifindex, e->rep.name);
}

/* facts */

static bool route_key_eq(const struct route_fact *a, const struct route_fact *b)
{
	return a->ipv6 == b->ipv6 && a->tos == b->tos && a->table == b->table &&
	       a->prio == b->prio && memcmp(a->dst, b->dst, 16) == 0;
}

static void route_remove(struct loupe_links *l, size_t i)
{
	mark_dirty(l, l->routes[i].oif);
	l->routes[i] = l->routes[--l->nroutes];
}

static int route_upsert(struct loupe_links *l, const struct route_fact *key)
{
	int ret;

	for (size_t i = 0; i < l->nroutes; i++) {
		struct route_fact *r = &l->routes[i];

		if (!route_key_eq(r, key))
			continue;
		r->stale = false;
		if (r->oif != key->oif) {
			mark_dirty(l, r->oif);
			mark_dirty(l, key->oif);
			r->oif = key->oif;
		}
		return 0;
	}
	ret = vec_reserve((void **)&l->routes, &l->caproutes, l->nroutes, sizeof(*l->routes),
			  LINKS_FACTS_MAX);
	if (ret == -ENOSPC) {
		l->stats.facts_dropped++;
		return 0;
	}
	if (ret < 0)
		return ret;
	l->routes[l->nroutes++] = *key;
	mark_dirty(l, key->oif);
	return 0;
}

static void route_delete(struct loupe_links *l, const struct route_fact *key)
{
	for (size_t i = 0; i < l->nroutes; i++) {
		if (route_key_eq(&l->routes[i], key)) {
			route_remove(l, i);
			return;
		}
	}
}

/* @v4_only: what the kernel flushes, unannounced, when a link goes down */
static void routes_purge_oif(struct loupe_links *l, int oif, bool v4_only)
{
	for (size_t i = l->nroutes; i-- > 0;)
		if (l->routes[i].oif == oif && !(v4_only && l->routes[i].ipv6))
			route_remove(l, i);
}

static void routes_mark(struct loupe_links *l, bool ipv6)
{
	for (size_t i = 0; i < l->nroutes; i++)
		if (l->routes[i].ipv6 == ipv6)
			l->routes[i].stale = true;
}

static void routes_sweep(struct loupe_links *l)
{
	for (size_t i = l->nroutes; i-- > 0;)
		if (l->routes[i].stale)
			route_remove(l, i);
}

/* Ports whose pod may have @mac's addresses on @bridge. */
static void mark_mac_dirty(struct loupe_links *l, int bridge, const uint8_t mac[6])
{
	for (size_t i = 0; i < l->nfdbs; i++)
		if (l->fdbs[i].bridge == bridge && memcmp(l->fdbs[i].mac, mac, 6) == 0)
			mark_dirty(l, l->fdbs[i].port);
}

static int neigh_upsert(struct loupe_links *l, const struct neigh_fact *key)
{
	int ret;

	for (size_t i = 0; i < l->nneighs; i++) {
		struct neigh_fact *n = &l->neighs[i];

		if (n->ifindex != key->ifindex || n->ipv6 != key->ipv6 ||
		    memcmp(n->ip, key->ip, 16) != 0)
			continue;
		if (memcmp(n->mac, key->mac, 6) != 0) {
			mark_mac_dirty(l, n->ifindex, n->mac);
			mark_mac_dirty(l, key->ifindex, key->mac);
			memcpy(n->mac, key->mac, 6);
		}
		return 0;
	}
	ret = vec_reserve((void **)&l->neighs, &l->capneighs, l->nneighs, sizeof(*l->neighs),
			  LINKS_FACTS_MAX);
	if (ret == -ENOSPC) {
		l->stats.facts_dropped++;
		return 0;
	}
	if (ret < 0)
		return ret;
	l->neighs[l->nneighs++] = *key;
	mark_mac_dirty(l, key->ifindex, key->mac);
	return 0;
}

static void neighs_purge(struct loupe_links *l, int ifindex, const uint8_t *mac)
{
	for (size_t i = l->nneighs; i-- > 0;) {
		struct neigh_fact *n = &l->neighs[i];

		if (n->ifindex == ifindex && (!mac || memcmp(n->mac, mac, 6) == 0))
			l->neighs[i] = l->neighs[--l->nneighs];
	}
}

static bool fdb_has_mac(const struct loupe_links *l, int bridge, const uint8_t mac[6])
{
	for (size_t i = 0; i < l->nfdbs; i++)
		if (l->fdbs[i].bridge == bridge && memcmp(l->fdbs[i].mac, mac, 6) == 0)
			return true;
	return false;
}

static void fdb_remove(struct loupe_links *l, size_t i)
{
	mark_dirty(l, l->fdbs[i].port);
	l->fdbs[i] = l->fdbs[--l->nfdbs];
}

static int fdb_upsert(struct loupe_links *l, const struct fdb_fact *key)
{
	int ret;

	for (size_t i = 0; i < l->nfdbs; i++) {
		struct fdb_fact *f = &l->fdbs[i];

		if (f->bridge != key->bridge || f->vlan != key->vlan ||
		    memcmp(f->mac, key->mac, 6) != 0)
			continue;
		if (f->port != key->port) {
			mark_dirty(l, f->port);
			mark_dirty(l, key->port);
			f->port = key->port;
		}
		return 0;
	}
	ret = vec_reserve((void **)&l->fdbs, &l->capfdbs, l->nfdbs, sizeof(*l->fdbs),
			  LINKS_FACTS_MAX);
	if (ret == -ENOSPC) {
		l->stats.facts_dropped++;
		return 0;
	}
	if (ret < 0)
		return ret;
	l->fdbs[l->nfdbs++] = *key;
	mark_dirty(l, key->port);
	return 0;
}

static void fdb_delete(struct loupe_links *l, const struct fdb_fact *key)
{
	for (size_t i = 0; i < l->nfdbs; i++) {
		struct fdb_fact *f = &l->fdbs[i];

		if (f->bridge == key->bridge && f->vlan == key->vlan &&
		    memcmp(f->mac, key->mac, 6) == 0) {
			fdb_remove(l, i);
			return;
		}
	}
}

/*
 * Entries behind @port (or on bridge @port) except those on @keep_bridge. A MAC no longer
 * behind any port of its bridge takes its neighbours along: they named a pod that is gone,
 * and nothing else would remove them.
 */
static void fdbs_purge_port(struct loupe_links *l, int port, int keep_bridge)
{
	for (size_t i = l->nfdbs; i-- > 0;) {
		struct fdb_fact f = l->fdbs[i];

		if ((f.port != port && f.bridge != port) || f.bridge == keep_bridge)
			continue;
		fdb_remove(l, i);
		if (!fdb_has_mac(l, f.bridge, f.mac))
			neighs_purge(l, f.bridge, f.mac);
	}
}

static void link_remove(struct loupe_links *l, size_t pos)
{
	struct entry *e = &l->links[pos];
	int ifindex = e->cur.ifindex;

	if (e->reported)
		report_removed(l, e);
	routes_purge_oif(l, ifindex, false);
	fdbs_purge_port(l, ifindex, 0);
	neighs_purge(l, ifindex, NULL);
	memmove(&l->links[pos], &l->links[pos + 1], (l->nlinks - pos - 1) * sizeof(*l->links));
	l->nlinks--;
}

/* NULL with *ret_err 0: no room (counted) */
static struct entry *link_insert(struct loupe_links *l, int ifindex, int *ret_err)
{
	size_t pos;
	struct entry *e;
	int ret;

	*ret_err = 0;
	ret = vec_reserve((void **)&l->links, &l->caplinks, l->nlinks, sizeof(*l->links),
			  LOUPE_LINKS_MAX);
	if (ret < 0) {
		if (ret == -ENOSPC)
			l->stats.links_dropped++;
		else
			*ret_err = ret;
		return NULL;
	}
	pos = link_pos(l, ifindex);
	memmove(&l->links[pos + 1], &l->links[pos], (l->nlinks - pos) * sizeof(*l->links));
	l->nlinks++;
	e = &l->links[pos];
	memset(e, 0, sizeof(*e));
	e->cur.ifindex = ifindex;
	e->cur.peer_netnsid = -1;
	return e;
}

static void reget_link(struct loupe_links *l, int ifindex)
{
	if (l->in_dump)
		return; /* the dump is the newer news */
	for (int i = 0; i < l->nreget; i++)
		if (l->reget[i] == ifindex)
			return;
	if (l->nreget == LINKS_REGET_MAX)
		l->reget_all = true;
	else
		l->reget[l->nreget++] = ifindex;
}

static int on_link(struct loupe_links *l, const struct nlmsghdr *nlh)
{
	const struct nlattr *tb[IFLA_MAX + 1] = {}, *info[IFLA_INFO_MAX + 1] = {};
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	enum link_kind kind = KIND_OTHER;
	uint32_t master = 0, peer = 0, u;
	int netnsid = -1, ret = 0;
	bool was_up, existed;
	const void *mac = NULL;
	struct entry *e;
	size_t pos;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi) || ifi->ifi_family != AF_UNSPEC)
		goto out; /* AF_BRIDGE: a bridge's news about a port, not about the link */
	mnl_attr_parse(nlh, sizeof(*ifi), attr_cb, &(struct attrs){ tb, IFLA_MAX });
	if (tb[IFLA_LINKINFO])
		mnl_attr_parse_nested(tb[IFLA_LINKINFO], attr_cb,
				      &(struct attrs){ info, IFLA_INFO_MAX });
	if (info[IFLA_INFO_KIND] &&
	    mnl_attr_validate(info[IFLA_INFO_KIND], MNL_TYPE_NUL_STRING) == 0) {
		const char *k = mnl_attr_get_str(info[IFLA_INFO_KIND]);

		if (strcmp(k, "veth") == 0)
			kind = KIND_VETH;
		else if (strcmp(k, "bridge") == 0)
			kind = KIND_BRIDGE;
	}
	if (attr_u32(tb[IFLA_LINK_NETNSID], &u))
		netnsid = (int32_t)u;
	attr_u32(tb[IFLA_MASTER], &master);
	attr_u32(tb[IFLA_LINK], &peer);

	pos = link_pos(l, ifi->ifi_index);
	existed = pos < l->nlinks && l->links[pos].cur.ifindex == ifi->ifi_index;
	if (nlh->nlmsg_type == RTM_DELLINK || kind == KIND_OTHER) {
		if (existed)
			link_remove(l, pos);
		/* its peer, left in our namespace, now has a peer elsewhere */
		if (nlh->nlmsg_type == RTM_DELLINK && kind == KIND_VETH && netnsid < 0 && peer &&
		    link_find(l, peer))
			reget_link(l, peer);
		goto out;
	}
	if (!tb[IFLA_IFNAME] || mnl_attr_validate(tb[IFLA_IFNAME], MNL_TYPE_NUL_STRING) < 0)
		goto out;

	e = existed ? &l->links[pos] : link_insert(l, ifi->ifi_index, &ret);
	if (!e)
		goto out;
	was_up = e->cur.admin_up;
	e->stale = false;
	e->kind = kind;
	snprintf(e->cur.name, sizeof(e->cur.name), "%s", mnl_attr_get_str(tb[IFLA_IFNAME]));
	e->cur.admin_up = ifi->ifi_flags & IFF_UP;
	if (tb[IFLA_OPERSTATE] && mnl_attr_get_payload_len(tb[IFLA_OPERSTATE]) >= 1) {
		uint8_t op = mnl_attr_get_u8(tb[IFLA_OPERSTATE]);

		e->cur.up =
			op == IF_OPER_UP || (op == IF_OPER_UNKNOWN && ifi->ifi_flags & IFF_RUNNING);
	} else {
		e->cur.up = ifi->ifi_flags & IFF_RUNNING;
	}
	e->cur.peer_netnsid = netnsid;
	e->peer_ifindex = peer;
	if (attr_bytes(tb[IFLA_ADDRESS], 6, &mac))
		memcpy(e->mac, mac, 6);
	if (existed && was_up && !e->cur.admin_up)
		routes_purge_oif(l, e->cur.ifindex, true);
	if ((int)master != e->cur.master_ifindex) {
		fdbs_purge_port(l, e->cur.ifindex, master);
		e->cur.master_ifindex = master;
	}
	e->pod = kind == KIND_VETH && netnsid >= 0 && glob_match(l, e->cur.name);
	e->dirty = true;
	/* its peer came back into our namespace: the peer's own news will not say so */
	if (kind == KIND_VETH && netnsid < 0 && peer) {
		struct entry *p = link_find(l, peer);

		if (p && p->kind == KIND_VETH && p->cur.peer_netnsid >= 0)
			reget_link(l, peer);
	}
out:
	return ret;
}

static int on_route(struct loupe_links *l, const struct nlmsghdr *nlh)
{
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[RTA_MAX + 1] = {};
	struct route_fact key = {};
	const void *dst;
	struct entry *e;
	uint32_t oif;
	bool ipv6;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*rtm))
		return 0;
	if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6)
		return 0;
	ipv6 = rtm->rtm_family == AF_INET6;
	/*
	 * host routes only; RTM_F_CLONED: an IPv6 exception (PMTU), not a route; RTPROT_KERNEL:
	 * the prefix route of the node's own address on the veth (ptp's IPv6 gateway /128 on
	 * every host side), never a pod's
	 */
	if (rtm->rtm_dst_len != (ipv6 ? 128 : 32) || rtm->rtm_flags & RTM_F_CLONED ||
	    rtm->rtm_protocol == RTPROT_KERNEL)
		return 0;
	mnl_attr_parse(nlh, sizeof(*rtm), attr_cb, &(struct attrs){ tb, RTA_MAX });
	if (!attr_bytes(tb[RTA_DST], ipv6 ? 16 : 4, &dst))
		return 0;
	key.ipv6 = ipv6;
	key.tos = rtm->rtm_tos;
	key.table = rtm->rtm_table;
	attr_u32(tb[RTA_TABLE], &key.table);
	attr_u32(tb[RTA_PRIORITY], &key.prio);
	addr_from(ipv6, dst, key.dst);
	if (nlh->nlmsg_type == RTM_NEWROUTE && rtm->rtm_type == RTN_UNICAST && !tb[RTA_MULTIPATH] &&
	    attr_u32(tb[RTA_OIF], &oif) && addr_is_pod(ipv6, key.dst) && (e = link_find(l, oif)) &&
	    e->kind == KIND_VETH) {
		key.oif = oif;
		return route_upsert(l, &key);
	}
	/* deleted, or replaced by one that is not a pod's (blackhole, multipath, elsewhere) */
	route_delete(l, &key);
	return 0;
}

/*
 * Neighbours on bridges and FDB entries behind veth ports are sticky: RTM_DELNEIGH and
 * entries turned FAILED are ignored, since the FDB ages a silent pod's MAC out after 300 s
 * and the neighbour table collects stale entries once above gc_thresh1, while the pod keeps
 * its address. A fact is replaced when the kernel says the address has another MAC or the
 * MAC is behind another port, and goes with its port (deleted, or out of the bridge) or
 * bridge.
 */
static int on_fdb(struct loupe_links *l, const struct nlmsghdr *nlh, const struct ndmsg *ndm,
		  const struct nlattr **tb)
{
	struct fdb_fact key = {};
	const void *mac;
	struct entry *p;
	uint32_t bridge;

	/* NDA_MASTER: the bridge's own table, not a device's address list (NTF_SELF) */
	if (nlh->nlmsg_type != RTM_NEWNEIGH || !attr_u32(tb[NDA_MASTER], &bridge) ||
	    ndm->ndm_flags & NTF_SELF || !attr_bytes(tb[NDA_LLADDR], 6, &mac) ||
	    !mac_is_unicast(mac))
		return 0;
	key.bridge = bridge;
	if (tb[NDA_VLAN] && mnl_attr_get_payload_len(tb[NDA_VLAN]) >= 2)
		key.vlan = mnl_attr_get_u16(tb[NDA_VLAN]);
	memcpy(key.mac, mac, 6);
	key.port = ndm->ndm_ifindex;
	p = link_find(l, key.port);
	/* NUD_PERMANENT: a local entry, frames to it are the host's, not a pod's */
	if (p && p->kind == KIND_VETH && !(ndm->ndm_state & NUD_PERMANENT) &&
	    key.port != key.bridge && memcmp(p->mac, key.mac, 6) != 0)
		return fdb_upsert(l, &key);
	/* moved behind a port that is not a veth (the uplink) */
	fdb_delete(l, &key);
	return 0;
}

static int on_neigh(struct loupe_links *l, const struct nlmsghdr *nlh)
{
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[NDA_MAX + 1] = {};
	struct neigh_fact key = {};
	const void *dst, *mac;
	struct entry *br;

	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(*ndm))
		return 0;
	mnl_attr_parse(nlh, sizeof(*ndm), attr_cb, &(struct attrs){ tb, NDA_MAX });
	if (ndm->ndm_family == AF_BRIDGE)
		return on_fdb(l, nlh, ndm, tb);
	if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6)
		return 0;
	key.ipv6 = ndm->ndm_family == AF_INET6;
	if (nlh->nlmsg_type != RTM_NEWNEIGH || ndm->ndm_flags & NTF_PROXY ||
	    !(ndm->ndm_state & LINKS_NUD_VALID) ||
	    !attr_bytes(tb[NDA_DST], key.ipv6 ? 16 : 4, &dst) ||
	    !attr_bytes(tb[NDA_LLADDR], 6, &mac) || !mac_is_unicast(mac))
		return 0;
	br = link_find(l, ndm->ndm_ifindex);
	if (!br || br->kind != KIND_BRIDGE)
		return 0;
	key.ifindex = ndm->ndm_ifindex;
	addr_from(key.ipv6, dst, key.ip);
	memcpy(key.mac, mac, 6);
	if (!addr_is_pod(key.ipv6, key.ip))
		return 0;
	return neigh_upsert(l, &key);
}

static int on_msg(struct loupe_links *l, const struct nlmsghdr *nlh)
{
	const struct ifaddrmsg *ifa;

	switch (nlh->nlmsg_type) {
	case RTM_NEWLINK:
	case RTM_DELLINK:
		return on_link(l, nlh);
	case RTM_NEWROUTE:
	case RTM_DELROUTE:
		return on_route(l, nlh);
	case RTM_NEWNEIGH:
	case RTM_DELNEIGH:
		return on_neigh(l, nlh);
	case RTM_DELADDR:
		/* may have flushed IPv4 routes unannounced: see the top of the file */
		ifa = mnl_nlmsg_get_payload(nlh);
		if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(*ifa) && ifa->ifa_family == AF_INET &&
		    !l->in_dump)
			l->resync_routes4 = true;
		return 0;
	default:
		return 0;
	}
}

/* pods */

static int pod_addr_cmp(const void *a, const void *b)
{
	const struct loupe_pod_addr *x = a, *y = b;

	if (x->ipv6 != y->ipv6)
		return x->ipv6 ? 1 : -1;
	return memcmp(x->addr, y->addr, 16);
}

static void cand_add(struct loupe_pod_addr *cand, size_t *n, bool *over, bool ipv6,
		     const uint8_t addr[16])
{
	if (*n == LINKS_CANDIDATES_MAX) {
		*over = true;
		return;
	}
	cand[*n].ipv6 = ipv6;
	memcpy(cand[*n].addr, addr, 16);
	(*n)++;
}

static void compute_addrs(struct loupe_links *l, const struct entry *e,
			  struct loupe_pod_addrs *ret_addrs)
{
	struct loupe_pod_addr cand[LINKS_CANDIDATES_MAX];
	int ifindex = e->cur.ifindex;
	bool over = false;
	size_t n = 0;

	for (size_t i = 0; i < l->nroutes; i++)
		if (l->routes[i].oif == ifindex)
			cand_add(cand, &n, &over, l->routes[i].ipv6, l->routes[i].dst);
	for (size_t i = 0; i < l->nfdbs; i++) {
		const struct fdb_fact *f = &l->fdbs[i];

		if (f->port != ifindex)
			continue;
		for (size_t j = 0; j < l->nneighs; j++) {
			const struct neigh_fact *nb = &l->neighs[j];

			if (nb->ifindex == f->bridge && memcmp(nb->mac, f->mac, 6) == 0)
				cand_add(cand, &n, &over, nb->ipv6, nb->ip);
		}
	}
	qsort(cand, n, sizeof(cand[0]), pod_addr_cmp);
	memset(ret_addrs, 0, sizeof(*ret_addrs));
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && pod_addr_cmp(&cand[i - 1], &cand[i]) == 0)
			continue;
		if (ret_addrs->n == LOUPE_POD_ADDRS_MAX) {
			over = true;
			break;
		}
		ret_addrs->a[ret_addrs->n++] = cand[i];
	}
	if (over)
		l->stats.addrs_truncated++;
}

static bool link_differs(const struct loupe_link *a, const struct loupe_link *b)
{
	if (a->ifindex != b->ifindex || strcmp(a->name, b->name) != 0 || a->up != b->up ||
	    a->admin_up != b->admin_up || a->peer_netnsid != b->peer_netnsid ||
	    a->master_ifindex != b->master_ifindex || a->addrs.n != b->addrs.n)
		return true;
	for (int i = 0; i < a->addrs.n; i++)
		if (pod_addr_cmp(&a->addrs.a[i], &b->addrs.a[i]) != 0)
			return true;
	return false;
}

static void reconcile(struct loupe_links *l)
{
	for (size_t i = 0; i < l->nlinks; i++) {
		struct entry *e = &l->links[i];

		if (!e->dirty)
			continue;
		e->dirty = false;
		if (!e->pod) {
			if (e->reported)
				report_removed(l, e);
			continue;
		}
		compute_addrs(l, e, &e->cur.addrs);
		if (!e->reported) {
			e->rep = e->cur;
			e->reported = true;
			l->npods++;
			l->ncalls++;
			if (l->cbs.pod_added)
				l->cbs.pod_added(l->ctx, &e->rep);
		} else if (link_differs(&e->rep, &e->cur)) {
			e->rep = e->cur;
			l->ncalls++;
			if (l->cbs.pod_changed)
				l->cbs.pod_changed(l->ctx, &e->rep);
		}
	}
}

/* requests and dumps */

static int request(struct loupe_links *l, uint16_t type, bool dump, int family, int ifindex,
		   uint32_t *ret_seq)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
	nlh->nlmsg_seq = ++l->seq;
	if (type == RTM_GETLINK) {
		struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));

		ifi->ifi_family = family;
		ifi->ifi_index = ifindex;
		mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	} else if (type == RTM_GETROUTE) {
		struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

		rtm->rtm_family = family;
	} else {
		struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));

		ndm->ndm_family = family;
	}
	*ret_seq = nlh->nlmsg_seq;
	if (mnl_socket_sendto(l->req, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	return 0;
}

/*
 * Reads the answer to request @seq to its end, handing each message to on_msg(); the first
 * error is returned once the answer is read whole, so that the socket is ready for the next.
 */
static int receive(struct loupe_links *l, uint32_t seq, bool *ret_intr)
{
	struct pollfd pfd = { .fd = mnl_socket_get_fd(l->req), .events = POLLIN };
	bool done = false;
	int ret = 0;

	*ret_intr = false;
	while (!done) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)l->buf;
		ssize_t n;
		int len, r;

		r = poll(&pfd, 1, LINKS_DUMP_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			break;
		}
		if (r == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		n = mnl_socket_recvfrom(l->req, l->buf, sizeof(l->buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		for (len = n; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			/* an answer to an earlier request that timed out */
			if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != l->req_portid)
				continue;
			if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
				*ret_intr = true;
			if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) {
				const int *err = mnl_nlmsg_get_payload(nlh);

				if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(*err) && *err < 0 &&
				    !ret)
					ret = *err;
				done = true;
				break;
			}
			if (!ret) {
				r = on_msg(l, nlh);
				if (r < 0)
					ret = r;
			}
			if (!(nlh->nlmsg_flags & NLM_F_MULTI))
				done = true;
		}
	}
	return ret;
}

static int dump_one(struct loupe_links *l, uint16_t type, int family)
{
	uint32_t seq;
	bool intr;
	int ret;

	for (int tries = 0;; tries++) {
		if (type == RTM_GETLINK)
			for (size_t i = 0; i < l->nlinks; i++)
				l->links[i].stale = true;
		if (type == RTM_GETROUTE)
			routes_mark(l, family == AF_INET6);
		ret = request(l, type, true, family, 0, &seq);
		if (ret < 0)
			break;
		ret = receive(l, seq, &intr);
		if (ret < 0)
			break;
		/* an inconsistent dump after a few tries: notifications carry the rest */
		if (!intr || tries + 1 == LINKS_DUMP_TRIES)
			break;
	}
	if (ret < 0)
		goto out;
	if (type == RTM_GETLINK) {
		for (size_t i = l->nlinks; i-- > 0;)
			if (l->links[i].stale)
				link_remove(l, i);
	}
	if (type == RTM_GETROUTE)
		routes_sweep(l);
out:
	return ret;
}

/* Everything queued predates the dump to come, which supersedes it. */
static void drain(struct loupe_links *l)
{
	for (int i = 0; i < LINKS_DRAIN_MAX; i++) {
		ssize_t n = mnl_socket_recvfrom(l->ev, l->buf, sizeof(l->buf));

		if (n < 0 && errno != EINTR && errno != ENOBUFS)
			break;
	}
}

static int dump_all(struct loupe_links *l)
{
	static const struct {
		uint16_t type;
		int family;
	} dumps[] = {
		/* links first: routes and neighbours are kept for links known */
		{ RTM_GETLINK, AF_UNSPEC },  { RTM_GETROUTE, AF_INET }, { RTM_GETROUTE, AF_INET6 },
		{ RTM_GETNEIGH, AF_BRIDGE }, { RTM_GETNEIGH, AF_INET }, { RTM_GETNEIGH, AF_INET6 },
	};
	int ret = 0;

	drain(l);
	l->in_dump = true;
	for (size_t i = 0; i < sizeof(dumps) / sizeof(dumps[0]); i++) {
		ret = dump_one(l, dumps[i].type, dumps[i].family);
		if (ret < 0)
			goto out;
	}
	l->nreget = 0;
	l->reget_all = false;
	l->resync_routes4 = false;
	reconcile(l);
out:
	l->in_dump = false;
	return ret;
}

/* What notifications asked for: links to read again, IPv4 routes to dump again. */
static int catch_up(struct loupe_links *l)
{
	int ret = 0;

	if (l->reget_all) {
		l->in_dump = true;
		ret = dump_one(l, RTM_GETLINK, AF_UNSPEC);
		l->in_dump = false;
		if (ret < 0)
			goto out;
	} else {
		/* the answers make no new requests: they are as new as news gets */
		l->in_dump = true;
		for (int i = 0; i < l->nreget; i++) {
			uint32_t seq;
			bool intr;

			ret = request(l, RTM_GETLINK, false, AF_UNSPEC, l->reget[i], &seq);
			if (ret == 0)
				ret = receive(l, seq, &intr);
			/* gone meanwhile: its DELLINK is queued */
			if (ret == -ENODEV)
				ret = 0;
			if (ret < 0)
				break;
		}
		l->in_dump = false;
		if (ret < 0)
			goto out;
	}
	l->nreget = 0;
	l->reget_all = false;
	if (l->resync_routes4) {
		l->in_dump = true;
		ret = dump_one(l, RTM_GETROUTE, AF_INET);
		l->in_dump = false;
		if (ret < 0)
			goto out;
		l->resync_routes4 = false;
	}
out:
	return ret;
}

/* API */

int loupe_links_open(const char *const *globs, size_t nglobs, const struct loupe_links_cbs *cbs,
		     void *ctx, struct loupe_links **ret_links)
{
	static const unsigned int groups[] = {
		RTNLGRP_LINK,  RTNLGRP_IPV4_ROUTE,  RTNLGRP_IPV6_ROUTE,
		RTNLGRP_NEIGH, RTNLGRP_IPV4_IFADDR,
	};
	int rcvbuf = LINKS_RCVBUF, fd, ret = 0;
	struct loupe_links *l = NULL;

	if (!globs || !nglobs || !ret_links) {
		ret = -EINVAL;
		goto out;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	if (cbs)
		l->cbs = *cbs;
	l->ctx = ctx;
	l->globs = calloc(nglobs, sizeof(*l->globs));
	if (!l->globs) {
		ret = -ENOMEM;
		goto out;
	}
	for (; l->nglobs < nglobs; l->nglobs++) {
		if (!globs[l->nglobs]) {
			ret = -EINVAL;
			goto out;
		}
		l->globs[l->nglobs] = strdup(globs[l->nglobs]);
		if (!l->globs[l->nglobs]) {
			ret = -ENOMEM;
			goto out;
		}
	}

	l->ev = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	l->req = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!l->ev || !l->req) {
		ret = -errno;
		goto out;
	}
	fd = mnl_socket_get_fd(l->ev);
	/* FORCE goes past net.core.rmem_max, with CAP_NET_ADMIN */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0) {
		ret = -errno;
		goto out;
	}
	if (mnl_socket_bind(l->ev, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    mnl_socket_bind(l->req, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		if (mnl_socket_setsockopt(l->ev, NETLINK_ADD_MEMBERSHIP, (void *)&groups[i],
					  sizeof(groups[i])) < 0) {
			ret = -errno;
			goto out;
		}
	}
	l->req_portid = mnl_socket_get_portid(l->req);
	*ret_links = l;
	l = NULL;
out:
	loupe_links_free(l);
	return ret;
}

int loupe_links_fd(const struct loupe_links *l)
{
	return mnl_socket_get_fd(l->ev);
}

int loupe_links_dump(struct loupe_links *l)
{
	int ret;

	l->ncalls = 0;
	ret = dump_all(l);
	return ret < 0 ? ret : l->ncalls;
}

int loupe_links_process(struct loupe_links *l)
{
	int ret = 0;

	l->ncalls = 0;
	for (int i = 0; i < LINKS_READS_MAX; i++) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)l->buf;
		ssize_t n = mnl_socket_recvfrom(l->ev, l->buf, sizeof(l->buf));
		int len;

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOBUFS) {
			l->stats.resyncs++;
			ret = dump_all(l);
			if (ret < 0)
				goto out;
			continue;
		}
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		for (len = n; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			ret = on_msg(l, nlh);
			if (ret < 0)
				goto out;
		}
	}
	ret = catch_up(l);
	if (ret < 0)
		goto out;
	reconcile(l);
	ret = l->ncalls;
out:
	return ret;
}

const struct loupe_link *loupe_links_get(const struct loupe_links *l, int ifindex)
{
	const struct entry *e = link_find(l, ifindex);

	return e && e->reported ? &e->rep : NULL;
}

size_t loupe_links_count(const struct loupe_links *l)
{
	return l->npods;
}

void loupe_links_stats(const struct loupe_links *l, struct loupe_links_stats *ret_stats)
{
	*ret_stats = l->stats;
}

struct loupe_links *loupe_links_free(struct loupe_links *l)
{
	if (!l)
		return NULL;
	if (l->ev)
		mnl_socket_close(l->ev);
	if (l->req)
		mnl_socket_close(l->req);
	for (size_t i = 0; i < l->nglobs; i++)
		free(l->globs[i]);
	free(l->globs);
	free(l->links);
	free(l->routes);
	free(l->neighs);
	free(l->fdbs);
	free(l);
	return NULL;
}
