/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attaching loupe's two TC programs to links (clsact, direct-action, a fixed loupe handle),
 * replacing an earlier agent's filters atomically, and remembering across restarts which
 * clsact qdiscs loupe created so that only those are removed. Not for loading the programs
 * (datapath.h) or for finding pod links (rtnetlink discovery is the caller's).
 */
#ifndef LOUPE_ATTACH_H
#define LOUPE_ATTACH_H

#include <stddef.h>
#include <stdint.h>

/* tc filter handle of loupe's filters on both hooks: how loupe's own filters are told apart */
#define LOUPE_TC_HANDLE 0x10ad
/* default tc priority: 1 runs before every other filter of the hook */
#define LOUPE_TC_PRIORITY_DEFAULT 1

/* The ownership map: pinned as <pin_dir>/loupe_links, created and used by user space only. */
#define LOUPE_MAP_LINKS "loupe_links"
#define LOUPE_LINKS_MAX 4096

/* loupe_link_rec.flags */
#define LOUPE_LINK_F_QDISC_CREATED (1u << 0) /* loupe created the link's clsact qdisc */

/*
 * A value of loupe_links, keyed by ifindex (uint32_t). Its layout is an ABI between agent
 * versions (the map outlives the agent): only append into reserved, never reorder.
 */
struct loupe_link_rec {
	uint32_t ifindex;
	uint32_t flags;	   /* LOUPE_LINK_F_* */
	uint32_t priority; /* the tc priority loupe's filters were attached at */
	uint32_t handle;   /* the tc handle of loupe's filters (LOUPE_TC_HANDLE) */
	char name[16];	   /* the link's name when attached (IF_NAMESIZE), for humans */
	uint8_t reserved[32];
};

struct loupe_attach;

struct loupe_attach_opts {
	uint32_t priority;   /* tc priority of loupe's filters, 1..65535; 0: default (1) */
	const char *pin_dir; /* bpffs dir holding loupe_links (made if missing); NULL: no pin */
};

/*
 * Opens (or creates and pins) the ownership map. @prog_fd_hook_ingress runs at the clsact
 * ingress hook of a host-side veth (packets leaving the pod: LOUPE_DIR_POD_EGRESS's program),
 * @prog_fd_hook_egress at its egress hook (LOUPE_DIR_POD_INGRESS's). The fds are borrowed:
 * they must stay open as long as the attach object. A pinned loupe_links whose key or value
 * size differs from this agent's gives -EINVAL. Returns 0 or -errno.
 */
int loupe_attach_open(const struct loupe_attach_opts *opts, int prog_fd_hook_ingress,
		      int prog_fd_hook_egress, struct loupe_attach **ret_attach);

/*
 * Puts loupe's programs on link @ifindex: creates clsact only when missing (and records that
 * loupe did), then attaches or atomically replaces loupe's filter on each hook (the kernel
 * swaps the program under the same handle and priority: no packet passes without one, no
 * second filter). Idempotent; also how a restarted agent takes a link over. A link recorded
 * at another priority is moved: the new filter first, then the old one removed. @name may be
 * NULL (looked up). On failure a link loupe did not hold before is undone as by
 * loupe_detach_link(); one it held keeps its filters. Returns 0 or -errno (-ENODEV: no link).
 */
int loupe_attach_link(struct loupe_attach *a, int ifindex, const char *name);

/*
 * Removes loupe's filters from both hooks of @ifindex, removes the clsact qdisc if loupe
 * created it and no other filter is on it, and forgets the link. A link that is gone, or
 * that loupe never attached to, counts as done. Returns 0 or -errno.
 */
int loupe_detach_link(struct loupe_attach *a, int ifindex);

/*
 * After a restart: attaches this agent's programs (atomic replace) on every link the map
 * holds, and forgets links that no longer exist. Goes through all of them even when one
 * fails. Returns the number of links attached, or the first error (-errno).
 */
int loupe_attach_reattach_all(struct loupe_attach *a);

/* Number of links loupe is attached to (entries of loupe_links). */
size_t loupe_attach_count(const struct loupe_attach *a);

/*
 * Closes the map; leaves every filter in place (enforcement survives the agent), so the
 * program fds may be closed after this. Accepts and returns NULL.
 */
struct loupe_attach *loupe_attach_free(struct loupe_attach *a);

/*
 * `loupe-agent --uninstall`: detaches every link in <pin_dir>/loupe_links (filters, and the
 * qdiscs loupe created), unpins the map, then sweeps every link of the current network
 * namespace for a leftover loupe filter (LOUPE_TC_HANDLE at @priority, 0: default, running
 * a program named loupe_*) and removes it. The datapath's pins are the caller's
 * (loupe_datapath_unpin(), afterwards). Goes on after a failure, and then keeps the map's
 * pin so that a second run still knows which qdiscs are loupe's. A pinned loupe_links of
 * another layout: -EINVAL, nothing touched. No pin: only the sweep. Returns 0 or the first
 * error (-errno).
 */
int loupe_attach_uninstall(const char *pin_dir, uint32_t priority);

#endif
