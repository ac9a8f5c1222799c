/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod veths and their pods' addresses, learnt from rtnetlink: a dump, then notifications
 * (no polling). A pod veth is a veth in this network namespace whose peer lives in another
 * one and whose name matches one of the caller's fnmatch(3) globs. A pod's addresses come
 * from host routes via its veth (ptp, Calico, Cilium) and, for bridged CNIs, from the
 * bridge's neighbour table joined with the bridge FDB. Not for attaching programs (the
 * datapath module) nor for Kubernetes names (a later issue).
 */
#ifndef LOUPE_LINKS_H
#define LOUPE_LINKS_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Links tracked in this namespace: every veth (pod veth or not: a veth can become one when
 * its peer moves away or it is renamed) and every bridge. More are not tracked and are
 * counted in loupe_links_stats.links_dropped, so at most this many pod veths are seen.
 */
#define LOUPE_LINKS_MAX 4096

/*
 * Addresses kept per pod: the lowest, IPv4 before IPv6; more are left out and counted in
 * loupe_links_stats.addrs_truncated. Link-local (fe80::/10, 169.254/16), multicast,
 * loopback and unspecified addresses are never a pod's.
 */
#define LOUPE_POD_ADDRS_MAX 8

struct loupe_pod_addr {
	bool ipv6;
	uint8_t addr[16]; /* IPv4-mapped (::ffff:a.b.c.d) for IPv4 */
};

struct loupe_pod_addrs {
	int n;
	struct loupe_pod_addr a[LOUPE_POD_ADDRS_MAX]; /* sorted: IPv4 first, then by bytes */
};

struct loupe_link {
	int ifindex;
	char name[IF_NAMESIZE];
	bool up;	    /* operationally up (IFLA_OPERSTATE UP) */
	bool admin_up;	    /* IFF_UP */
	int peer_netnsid;   /* IFLA_LINK_NETNSID of the peer's namespace, as seen from ours */
	int master_ifindex; /* the bridge (or other master) it is a port of, 0 if none */
	struct loupe_pod_addrs addrs;
};

/*
 * Called from loupe_links_dump() and loupe_links_process() only; @link is valid for the
 * call. A callback may call loupe_links_get() and loupe_links_count(), not the others.
 * Any may be NULL.
 */
struct loupe_links_cbs {
	/* a new pod veth, or one that now is (renamed into the globs, peer moved away) */
	void (*pod_added)(void *ctx, const struct loupe_link *link);
	/*
	 * deleted, renamed out of the globs, moved to another namespace, peer moved back in;
	 * @name is the name it was last reported with
	 */
	void (*pod_removed)(void *ctx, int ifindex, const char *name);
	/* renamed (still matching), up/down, master, peer namespace or addresses changed */
	void (*pod_changed)(void *ctx, const struct loupe_link *link);
};

struct loupe_links_stats {
	uint64_t resyncs;	  /* full re-dumps after the notification socket overflowed */
	uint64_t links_dropped;	  /* veths and bridges not tracked: LOUPE_LINKS_MAX reached */
	uint64_t facts_dropped;	  /* routes, neighbours, FDB entries not kept: table full */
	uint64_t addrs_truncated; /* times a pod had more than LOUPE_POD_ADDRS_MAX addresses */
};

struct loupe_links;

/*
 * Opens the two rtnetlink sockets (notifications, subscribed here so that nothing between
 * this call and the dump is missed; requests and dumps) and copies @globs (fnmatch(3)
 * patterns, at least one) and @cbs. Call loupe_links_dump() next. Returns 0 or -errno.
 */
int loupe_links_open(const char *const *globs, size_t nglobs, const struct loupe_links_cbs *cbs,
		     void *ctx, struct loupe_links **ret_links);

/* The notification socket: when poll says it is readable, call loupe_links_process(). */
int loupe_links_fd(const struct loupe_links *l);

/*
 * Dumps links, IPv4/IPv6 routes, neighbours and the bridge FDB, and makes the callbacks for
 * what changed since the last report (at start: pod_added for every pod veth, with its
 * addresses). Waits for the kernel up to 5 s per reply. Returns callbacks made or -errno.
 */
int loupe_links_dump(struct loupe_links *l);

/*
 * Reads every pending notification without blocking (up to 1024 reads a call: a flood
 * leaves the socket readable for the next one) and makes the callbacks. If the socket
 * overflowed (ENOBUFS), drops what is queued and re-dumps, so nothing is missed. Returns
 * callbacks made or -errno.
 */
int loupe_links_process(struct loupe_links *l);

/*
 * The pod veth as last reported by the callbacks, or NULL if @ifindex is not one. Valid
 * until the next loupe_links_dump(), loupe_links_process() or loupe_links_free().
 */
const struct loupe_link *loupe_links_get(const struct loupe_links *l, int ifindex);

/* Pod veths as last reported. */
size_t loupe_links_count(const struct loupe_links *l);

/* Counters since open, for metrics. */
void loupe_links_stats(const struct loupe_links *l, struct loupe_links_stats *ret_stats);

/* Closes the sockets and frees everything; makes no callbacks. Accepts and returns NULL. */
struct loupe_links *loupe_links_free(struct loupe_links *l);

#endif
