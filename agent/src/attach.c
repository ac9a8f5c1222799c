// SPDX-License-Identifier: Apache-2.0
/*
 * Puts loupe's TC programs on links and takes them off: clsact hooks, direct-action filters
 * under one loupe handle, atomic replacement on restart, and the loupe_links map that
 * remembers which clsact qdiscs loupe created. Not for loading programs or finding links.
 */
#include <errno.h>
#include <limits.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <libmnl/libmnl.h>

#include "attach.h"
#include "loupe/datapath.h"

_Static_assert(sizeof(struct loupe_link_rec) == 64, "loupe_links values are 64 bytes");

#define ATTACH_HOOKS	   2
#define ATTACH_NL_BUF	   32768
#define ATTACH_SWEEP_PRIOS 16

/* [0]: clsact ingress (packets from the pod), [1]: clsact egress (packets to the pod) */
static const enum bpf_tc_attach_point attach_points[ATTACH_HOOKS] = { BPF_TC_INGRESS,
								      BPF_TC_EGRESS };
static const uint32_t attach_parents[ATTACH_HOOKS] = {
	TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS),
	TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS),
};

struct loupe_attach {
	int links_fd;
	int prog_fd[ATTACH_HOOKS];
	uint32_t priority;
};

static uint32_t attach_priority(uint32_t priority)
{
	return priority ? priority : LOUPE_TC_PRIORITY_DEFAULT;
}

/* A pinned loupe_links must be this agent's layout: a hash of u32 -> struct loupe_link_rec. */
static int attach_links_check(int fd)
{
	struct bpf_map_info info = { 0 };
	uint32_t len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	if (info.type != BPF_MAP_TYPE_HASH || info.key_size != sizeof(uint32_t) ||
	    info.value_size != sizeof(struct loupe_link_rec))
		return -EINVAL;
	return 0;
}

/* Opens <pin_dir>/loupe_links; creates and pins it when missing and @create. */
static int attach_links_get(const char *pin_dir, bool create, int *ret_fd)
{
	char path[PATH_MAX];
	int fd = -1, err;

	if (!pin_dir) {
		fd = bpf_map_create(BPF_MAP_TYPE_HASH, LOUPE_MAP_LINKS, sizeof(uint32_t),
				    sizeof(struct loupe_link_rec), LOUPE_LINKS_MAX, NULL);
		err = fd < 0 ? -errno : 0;
		goto out;
	}
	if (snprintf(path, sizeof(path), "%s/%s", pin_dir, LOUPE_MAP_LINKS) >= (int)sizeof(path)) {
		err = -ENAMETOOLONG;
		goto out;
	}
	if (create && mkdir(pin_dir, 0700) && errno != EEXIST) {
		err = -errno;
		goto out;
	}
	/* twice at most: another agent may pin between our lookup and our pin */
	for (int round = 0; round < 2; round++) {
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			err = attach_links_check(fd);
			goto out;
		}
		err = -errno;
		if (err != -ENOENT || !create)
			goto out;
		fd = bpf_map_create(BPF_MAP_TYPE_HASH, LOUPE_MAP_LINKS, sizeof(uint32_t),
				    sizeof(struct loupe_link_rec), LOUPE_LINKS_MAX, NULL);
		if (fd < 0) {
			err = -errno;
			goto out;
		}
		if (!bpf_obj_pin(fd, path)) {
			err = 0;
			goto out;
		}
		err = -errno;
		close(fd);
		fd = -1;
		if (err != -EEXIST)
			goto out;
	}
out:
	if (err && fd >= 0)
		close(fd);
	else if (!err)
		*ret_fd = fd;
	return err;
}

/* Every key of loupe_links, read before any change (a walk restarts when its key goes). */
static int attach_links_keys(int fd, uint32_t **ret_keys, size_t *ret_n)
{
	uint32_t *keys, key, *prev = NULL;
	size_t n = 0;
	int err = 0;

	keys = calloc(LOUPE_LINKS_MAX, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	while (n < LOUPE_LINKS_MAX) {
		if (bpf_map_get_next_key(fd, prev, &key)) {
			if (errno != ENOENT)
				err = -errno;
			break;
		}
		keys[n] = key;
		prev = &keys[n++];
	}
	if (err) {
		free(keys);
		return err;
	}
	*ret_keys = keys;
	*ret_n = n;
	return 0;
}

static struct bpf_tc_hook attach_hook(int ifindex, enum bpf_tc_attach_point point)
{
	return (struct bpf_tc_hook){ .sz = sizeof(struct bpf_tc_hook),
				     .ifindex = ifindex,
				     .attach_point = point };
}

/* Creates loupe's filter, or swaps the program of the one there (NLM_F_REPLACE). */
static int attach_filter(int ifindex, int hook, int prog_fd, uint32_t priority)
{
	struct bpf_tc_hook h = attach_hook(ifindex, attach_points[hook]);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = LOUPE_TC_HANDLE, .priority = priority,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);

	return bpf_tc_attach(&h, &o);
}

/* Removes one filter; one that went meanwhile, with its link or qdisc, is success. */
static int attach_filter_del(int ifindex, int hook, uint32_t handle, uint32_t priority)
{
	struct bpf_tc_hook h = attach_hook(ifindex, attach_points[hook]);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = handle, .priority = priority);
	int err;

	err = bpf_tc_detach(&h, &o);
	return err == -ENOENT || err == -ENODEV || err == -EINVAL ? 0 : err;
}

/*
 * rtnetlink for what libbpf's bpf_tc_* cannot do quietly: listing a hook's filters, and
 * creating clsact only when missing. libbpf logs the kernel's message of every failed
 * request, and the expected ones (a clsact that exists, a link without one) are not news.
 */
struct attach_nl {
	struct mnl_socket *sock;
	unsigned int portid;
	unsigned int seq;
	char *buf;
};

static void attach_nl_close(struct attach_nl *nl)
{
	if (nl->sock)
		mnl_socket_close(nl->sock);
	free(nl->buf);
	*nl = (struct attach_nl){ 0 };
}

static int attach_nl_open(struct attach_nl *nl)
{
	int err = 0;

	*nl = (struct attach_nl){ .seq = time(NULL) };
	nl->buf = malloc(ATTACH_NL_BUF);
	if (!nl->buf) {
		err = -ENOMEM;
		goto out;
	}
	nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl->sock || mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto out;
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
out:
	if (err)
		attach_nl_close(nl);
	return err;
}

/* A tc request in nl->buf: the header and its tcmsg. */
static struct nlmsghdr *attach_nl_tc(struct attach_nl *nl, uint16_t type, uint16_t flags,
				     int ifindex, uint32_t handle, uint32_t parent)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(nl->buf);
	struct tcmsg *tcm;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = ++nl->seq;
	tcm = mnl_nlmsg_put_extra_header(nlh, sizeof(*tcm));
	tcm->tcm_family = AF_UNSPEC;
	tcm->tcm_ifindex = ifindex;
	tcm->tcm_handle = handle;
	tcm->tcm_parent = parent;
	return nlh;
}

/* Sends @nlh and hands each reply to @cb until the dump ends or the kernel acks. */
static int attach_nl_talk(struct attach_nl *nl, const struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	unsigned int seq = nlh->nlmsg_seq;
	ssize_t n;
	int ret;

	if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	do {
		n = mnl_socket_recvfrom(nl->sock, nl->buf, ATTACH_NL_BUF);
		if (n < 0)
			return -errno;
		ret = mnl_cb_run(nl->buf, n, seq, nl->portid, cb, data);
		if (ret < 0)
			return errno ? -errno : -EIO;
	} while (ret > MNL_CB_STOP);
	return 0;
}

/* Creates the clsact qdisc of @ifindex; -EEXIST when there is one (or another ingress qdisc). */
static int attach_clsact_create(struct attach_nl *nl, int ifindex)
{
	struct nlmsghdr *nlh;

	nlh = attach_nl_tc(nl, RTM_NEWQDISC, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ifindex,
			   TC_H_MAKE(TC_H_CLSACT, 0), TC_H_CLSACT);
	mnl_attr_put_strz(nlh, TCA_KIND, "clsact");
	return attach_nl_talk(nl, nlh, NULL, NULL);
}

/* The filters of the clsact hooks of a link, seen from loupe's filter at (handle, priority). */
struct attach_view {
	uint32_t handle;
	uint32_t priority;
	int hook;
	bool loupe[ATTACH_HOOKS];	/* loupe's filter is on the hook */
	uint32_t prog_id[ATTACH_HOOKS]; /* and runs this program */
	int foreign;			/* filters on either hook that are not loupe's */
};

static int attach_view_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct tcmsg *tcm = mnl_nlmsg_get_payload(nlh);
	struct attach_view *v = data;
	const struct nlattr *attr, *opt;
	const char *kind = "";
	uint32_t prog_id = 0;

	if (nlh->nlmsg_type != RTM_NEWTFILTER)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*tcm))
	{
		if (mnl_attr_get_type(attr) == TCA_KIND &&
		    !mnl_attr_validate(attr, MNL_TYPE_STRING))
			kind = mnl_attr_get_str(attr);
		if (mnl_attr_get_type(attr) != TCA_OPTIONS)
			continue;
		mnl_attr_for_each_nested(opt, attr)
		{
			if (mnl_attr_get_type(opt) == TCA_BPF_ID &&
			    !mnl_attr_validate(opt, MNL_TYPE_U32))
				prog_id = mnl_attr_get_u32(opt);
		}
	}
	if (strcmp(kind, "bpf") || TC_H_MAJ(tcm->tcm_info) >> 16 != v->priority ||
	    (tcm->tcm_handle && tcm->tcm_handle != v->handle)) {
		v->foreign++;
	} else if (tcm->tcm_handle) {
		v->loupe[v->hook] = true;
		v->prog_id[v->hook] = prog_id;
	}
	/* handle 0: the message of a filter block (tcf_proto) of loupe's kind and priority */
	return MNL_CB_OK;
}

/* Dumps both hooks of @ifindex, every chain. A link or qdisc that is gone has no filters. */
static int attach_view(struct attach_nl *nl, int ifindex, uint32_t handle, uint32_t priority,
		       struct attach_view *ret)
{
	struct nlmsghdr *nlh;
	int err = 0;

	*ret = (struct attach_view){ .handle = handle, .priority = priority };
	for (ret->hook = 0; ret->hook < ATTACH_HOOKS && !err; ret->hook++) {
		nlh = attach_nl_tc(nl, RTM_GETTFILTER, NLM_F_DUMP, ifindex, 0,
				   attach_parents[ret->hook]);
		err = attach_nl_talk(nl, nlh, attach_view_cb, ret);
	}
	return err;
}

int loupe_attach_open(const struct loupe_attach_opts *opts, int prog_fd_hook_ingress,
		      int prog_fd_hook_egress, struct loupe_attach **ret_attach)
{
	struct loupe_attach *a;
	int err;

	if (prog_fd_hook_ingress < 0 || prog_fd_hook_egress < 0 ||
	    (opts && opts->priority > UINT16_MAX))
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->links_fd = -1;
	a->prog_fd[0] = prog_fd_hook_ingress;
	a->prog_fd[1] = prog_fd_hook_egress;
	a->priority = attach_priority(opts ? opts->priority : 0);
	err = attach_links_get(opts ? opts->pin_dir : NULL, true, &a->links_fd);
	if (err)
		goto fail;
	*ret_attach = a;
	return 0;
fail:
	loupe_attach_free(a);
	return err;
}

struct loupe_attach *loupe_attach_free(struct loupe_attach *a)
{
	if (!a)
		return NULL;
	if (a->links_fd >= 0)
		close(a->links_fd);
	free(a);
	return NULL;
}

int loupe_attach_link(struct loupe_attach *a, int ifindex, const char *name)
{
	struct loupe_link_rec old = { 0 }, rec = { 0 };
	struct attach_nl nl = { 0 };
	struct attach_view v;
	uint32_t key = ifindex;
	char namebuf[IF_NAMESIZE];
	int err, qdisc_err;
	bool held;

	if (ifindex <= 0)
		return -EINVAL;
	if (!name) {
		name = if_indextoname(ifindex, namebuf);
		if (!name)
			return errno == ENXIO || errno == ENODEV ? -ENODEV : -errno;
	}
	held = !bpf_map_lookup_elem(a->links_fd, &key, &old);
	if (!held && errno != ENOENT)
		return -errno;

	if (held)
		rec = old;
	else
		rec.priority = a->priority;
	rec.ifindex = ifindex;
	rec.handle = LOUPE_TC_HANDLE;
	snprintf(rec.name, sizeof(rec.name), "%s", name);
	/*
	 * Recorded before the qdisc is made, so that a crash in between never leaves a clsact
	 * loupe made but forgot; the opposite mistake (believing a foreign, empty clsact ours)
	 * costs less, as a clsact holding other filters is never removed.
	 */
	rec.flags |= LOUPE_LINK_F_QDISC_CREATED;
	if (bpf_map_update_elem(a->links_fd, &key, &rec, BPF_ANY)) {
		err = -errno;
		goto out;
	}
	err = attach_nl_open(&nl);
	if (err)
		goto out;
	qdisc_err = attach_clsact_create(&nl, ifindex);
	if (qdisc_err) {
		/* the clsact was there (-EEXIST), or none was made: ownership stays as it was */
		rec.flags = held ? old.flags : 0;
		err = bpf_map_update_elem(a->links_fd, &key, &rec, BPF_ANY) ? -errno : 0;
		if (qdisc_err != -EEXIST)
			err = qdisc_err;
		if (err)
			goto out;
	}

	for (int hook = 0; hook < ATTACH_HOOKS; hook++) {
		err = attach_filter(ifindex, hook, a->prog_fd[hook], a->priority);
		if (err)
			goto out;
	}
	if (rec.priority != a->priority) {
		/* moved to another priority: the new filters run, the old ones go */
		err = attach_view(&nl, ifindex, rec.handle, rec.priority, &v);
		for (int hook = 0; hook < ATTACH_HOOKS && !err; hook++)
			if (v.loupe[hook])
				err = attach_filter_del(ifindex, hook, rec.handle, rec.priority);
		if (err)
			goto out;
		rec.priority = a->priority;
		if (bpf_map_update_elem(a->links_fd, &key, &rec, BPF_ANY)) {
			err = -errno;
			goto out;
		}
	}
out:
	attach_nl_close(&nl);
	/* a link loupe held keeps what it had: enforcement over tidiness */
	if (err && !held)
		loupe_detach_link(a, ifindex);
	return err;
}

int loupe_detach_link(struct loupe_attach *a, int ifindex)
{
	struct loupe_link_rec rec = { .handle = LOUPE_TC_HANDLE, .priority = a->priority };
	struct attach_nl nl = { 0 };
	struct attach_view v;
	uint32_t key = ifindex;
	bool held;
	int err;

	if (ifindex <= 0)
		return -EINVAL;
	held = !bpf_map_lookup_elem(a->links_fd, &key, &rec);
	if (!held && errno != ENOENT)
		return -errno;

	err = attach_nl_open(&nl);
	if (!err)
		err = attach_view(&nl, ifindex, rec.handle, rec.priority, &v);
	for (int hook = 0; hook < ATTACH_HOOKS && !err; hook++)
		if (v.loupe[hook])
			err = attach_filter_del(ifindex, hook, rec.handle, rec.priority);
	if (err)
		goto out;
	if (held && (rec.flags & LOUPE_LINK_F_QDISC_CREATED) && !v.foreign) {
		struct bpf_tc_hook h = attach_hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS);

		err = bpf_tc_hook_destroy(&h);
		/* gone already: with the link, or someone else removed the qdisc */
		if (err == -ENODEV || err == -ENOENT || err == -EINVAL)
			err = 0;
		if (err)
			goto out;
	}
	if (held && bpf_map_delete_elem(a->links_fd, &key) && errno != ENOENT)
		err = -errno;
out:
	attach_nl_close(&nl);
	return err;
}

int loupe_attach_reattach_all(struct loupe_attach *a)
{
	uint32_t *keys = NULL;
	size_t n = 0;
	int err, first = 0, attached = 0;

	err = attach_links_keys(a->links_fd, &keys, &n);
	if (err)
		goto out;
	for (size_t i = 0; i < n; i++) {
		err = loupe_attach_link(a, keys[i], NULL);
		if (err == -ENODEV) {
			/* the link went while no agent ran; its qdisc and filters went with it */
			if (bpf_map_delete_elem(a->links_fd, &keys[i]) && errno != ENOENT && !first)
				first = -errno;
		} else if (err) {
			if (!first)
				first = err;
		} else {
			attached++;
		}
	}
	err = first;
out:
	free(keys);
	return err ? err : attached;
}

size_t loupe_attach_count(const struct loupe_attach *a)
{
	uint32_t key, next;
	size_t n = 0;

	if (bpf_map_get_next_key(a->links_fd, NULL, &key))
		return 0;
	for (n = 1; n < LOUPE_LINKS_MAX && !bpf_map_get_next_key(a->links_fd, &key, &next); n++)
		key = next;
	return n;
}

/* Whether the program @prog_id is one of loupe's (named loupe_*, as STYLE.md has it). */
/*
 * The ids of the programs pinned under @pin_dir: the sweep removes only filters running
 * these, so an --uninstall for one directory never strips another agent's filters.
 * Returns how many were found (0..2).
 */
static int attach_pinned_prog_ids(const char *pin_dir, uint32_t ret_ids[2])
{
	static const char *const names[] = { LOUPE_PROG_POD_EGRESS, LOUPE_PROG_POD_INGRESS };
	char path[PATH_MAX];
	int n = 0;

	for (size_t i = 0; i < 2; i++) {
		struct bpf_prog_info info = { 0 };
		uint32_t len = sizeof(info);
		int fd;

		snprintf(path, sizeof(path), "%s/%s", pin_dir, names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			ret_ids[n++] = info.id;
		close(fd);
	}
	return n;
}

static bool attach_id_in(uint32_t id, const uint32_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/*
 * Removes, from every link of the current namespace, loupe's filters at any of @prios that
 * run one of the @nids programs of this pin directory (a filter a lost record left behind).
 */
static int attach_sweep(const uint32_t *prios, size_t nprios, const uint32_t *ids, int nids)
{
	struct if_nameindex *links = NULL;
	struct attach_nl nl = { 0 };
	struct attach_view v;
	int err, first = 0;

	err = attach_nl_open(&nl);
	if (err)
		goto out;
	links = if_nameindex();
	if (!links) {
		err = -errno;
		goto out;
	}
	for (struct if_nameindex *l = links; l->if_index; l++) {
		for (size_t p = 0; p < nprios; p++) {
			err = attach_view(&nl, l->if_index, LOUPE_TC_HANDLE, prios[p], &v);
			for (int hook = 0; hook < ATTACH_HOOKS && !err; hook++)
				if (v.loupe[hook] && attach_id_in(v.prog_id[hook], ids, nids))
					err = attach_filter_del(l->if_index, hook, LOUPE_TC_HANDLE,
								prios[p]);
			if (err && !first)
				first = err;
		}
	}
	err = first;
out:
	if (links)
		if_freenameindex(links);
	attach_nl_close(&nl);
	return err;
}

int loupe_attach_uninstall(const char *pin_dir, uint32_t priority)
{
	struct loupe_attach a = { .links_fd = -1, .priority = attach_priority(priority) };
	uint32_t prios[ATTACH_SWEEP_PRIOS] = { a.priority }, *keys = NULL, ids[2] = { 0, 0 };
	struct loupe_link_rec rec;
	char path[PATH_MAX];
	size_t nprios = 1, n = 0;
	int err, first = 0, nids;

	if (!pin_dir || priority > UINT16_MAX)
		return -EINVAL;
	err = attach_links_get(pin_dir, false, &a.links_fd);
	if (err && err != -ENOENT)
		goto out;
	if (!err) {
		err = attach_links_keys(a.links_fd, &keys, &n);
		if (err)
			goto out;
	}
	for (size_t i = 0; i < n; i++) {
		/* a link attached at another priority is swept at that one too */
		if (!bpf_map_lookup_elem(a.links_fd, &keys[i], &rec)) {
			size_t p = 0;

			while (p < nprios && prios[p] != rec.priority)
				p++;
			if (p == nprios && nprios < ATTACH_SWEEP_PRIOS)
				prios[nprios++] = rec.priority;
		}
		err = loupe_detach_link(&a, keys[i]);
		if (err && !first)
			first = err;
	}
	/* kept when a link could not be detached: a second --uninstall still knows the qdiscs */
	if (a.links_fd >= 0 && !first) {
		snprintf(path, sizeof(path), "%s/%s", pin_dir, LOUPE_MAP_LINKS);
		if (unlink(path) && errno != ENOENT)
			first = -errno;
	}
	nids = attach_pinned_prog_ids(pin_dir, ids);
	err = nids ? attach_sweep(prios, nprios, ids, nids) : 0;
	if (err && !first)
		first = err;
	err = first;
out:
	if (a.links_fd >= 0)
		close(a.links_fd);
	free(keys);
	return err;
}
