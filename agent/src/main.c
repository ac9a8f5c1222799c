// SPDX-License-Identifier: Apache-2.0
/*
 * loupe-agent: loads the datapath (taking over what an earlier agent pinned), puts the
 * policies in force, attaches it to every pod veth rtnetlink reports, and runs one epoll loop
 * over signals, rtnetlink, the ring buffer, the policy watch and a one-second timer (flow
 * export, losses, metrics). The only module that logs.
 */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "agent_client.h"
#include "attach.h"
#include "config.h"
#include "datapath.h"
#include "event_text.h"
#include "links.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "pipeline.h"
#include "policy.h"
#include "policy_apply.h"
#include "policy_watch.h"

#define AGENT_VERSION "0.1.0"

/*
 * A pod interface as the links callbacks last reported it: for podSelector.interfaces, and
 * its pod's addresses (IPv4-mapped) for the podSelector.cidrs of rate limits.
 */
struct agent_pod {
	int ifindex;
	char name[IF_NAMESIZE];
	uint8_t addrs[LOUPE_POD_ADDRS_MAX][16];
	size_t n_addrs;
};

/*
 * Where the policies come from and what is in force. One source at a time: the file or
 * directory of --policy (standalone), or none; the controller's, later, goes through
 * agent_policy_apply() too.
 */
struct agent_policy {
	struct loupe_policy_runtime *rt;  /* NULL: the datapath has no policy maps */
	struct loupe_policy_watch *watch; /* --policy's file or directory */
	struct loupe_policy_set *first;	  /* read before the datapath loads, applied in setup */
	char *in_force_json; /* the normalised set in force: unchanged ones are skipped */
	uint64_t reloads_ok, reloads_refused;
	struct loupe_metrics_rule_hits *hits; /* for /metrics, refilled every tick */
	size_t n_hits, cap_hits;
};

struct agent {
	const struct loupe_agent_config *cfg;
	struct loupe_output *out;
	struct loupe_pipeline *pipeline;
	struct loupe_datapath *dp;
	struct loupe_attach *attach;
	struct loupe_links *links;
	struct loupe_metrics *metrics;
	struct agent_policy policy;
	struct loupe_rpc_agent *ctl; /* the controller connection; NULL: standalone */
	struct agent_pod *pods;	     /* every pod veth, attached or not */
	size_t n_pods, cap_pods;
	bool starting; /* the initial link dump: attach after the policies are in force */
	int epfd, sigfd, timerfd;
	bool stop;
	uint64_t attach_errors;
};

enum agent_source {
	AGENT_SIGNAL = 1,
	AGENT_LINKS,
	AGENT_RING,
	AGENT_TIMER,
	AGENT_POLICY,
	AGENT_CONTROLLER,
};

static int agent_sink(void *ctx, const struct loupe_event *ev)
{
	struct agent *a = ctx;
	char line[1024];
	int n;

	if (a->ctl) /* buffered until the controller has it */
		return loupe_rpc_agent_send(a->ctl, ev);
	if (!a->cfg->output_text)
		return loupe_output_write(a->out, ev);
	n = loupe_event_text_format(ev, line, sizeof(line));
	if (n < 0 && n != -ENOSPC) /* a line cut to fit is still written */
		return n;
	return loupe_output_write_line(a->out, line, strlen(line));
}

/* Interface name and pod addresses of an event, from what rtnetlink told us. */
static bool agent_enrich(void *ctx, struct loupe_event *ev)
{
	struct agent *a = ctx;
	const struct loupe_link *link = a->links ? loupe_links_get(a->links, ev->ifindex) : NULL;
	int n;

	if (!link)
		return false;
	snprintf(ev->ifname, sizeof(ev->ifname), "%s", link->name);
	n = link->addrs.n < LOUPE_EVENT_POD_IPS_MAX ? link->addrs.n : LOUPE_EVENT_POD_IPS_MAX;
	for (int i = 0; i < n; i++) {
		ev->pod_ips[i].ipv6 = link->addrs.a[i].ipv6;
		memcpy(ev->pod_ips[i].addr, link->addrs.a[i].addr, 16);
	}
	ev->pod_ip_count = n;
	return true;
}

static struct agent_pod *agent_pod_find(struct agent *a, int ifindex)
{
	for (size_t i = 0; i < a->n_pods; i++)
		if (a->pods[i].ifindex == ifindex)
			return &a->pods[i];
	return NULL;
}

/* Records @ifindex as a pod interface named @name (new, or renamed). */
static int agent_pod_set(struct agent *a, int ifindex, const char *name)
{
	struct agent_pod *p = agent_pod_find(a, ifindex);

	if (!p) {
		if (a->n_pods == a->cap_pods) {
			size_t cap = a->cap_pods ? 2 * a->cap_pods : 64;
			struct agent_pod *pods = realloc(a->pods, cap * sizeof(*pods));

			if (!pods)
				return -ENOMEM;
			a->pods = pods;
			a->cap_pods = cap;
		}
		p = &a->pods[a->n_pods++];
		p->ifindex = ifindex;
		p->n_addrs = 0;
	}
	snprintf(p->name, sizeof(p->name), "%s", name);
	return 0;
}

/* Records the addresses of @link's pod (an interface agent_pod_set() knows): true if changed. */
static bool agent_pod_set_addrs(struct agent *a, const struct loupe_link *link)
{
	struct agent_pod *p = agent_pod_find(a, link->ifindex);
	uint8_t addrs[LOUPE_POD_ADDRS_MAX][16];
	size_t n = 0;

	if (!p)
		return false;
	for (int i = 0; i < link->addrs.n && n < LOUPE_POD_ADDRS_MAX; i++)
		memcpy(addrs[n++], link->addrs.a[i].addr, 16);
	if (n == p->n_addrs && memcmp(addrs, p->addrs, n * 16) == 0)
		return false;
	memcpy(p->addrs, addrs, n * 16);
	p->n_addrs = n;
	return true;
}

/* @p as the policies take a pod interface (borrowed from @p). */
static struct loupe_policy_iface agent_pod_iface(const struct agent_pod *p)
{
	return (struct loupe_policy_iface){
		.ifindex = p->ifindex,
		.name = p->name,
		.addrs = p->n_addrs ? (const uint8_t(*)[16])p->addrs : NULL,
		.n_addrs = p->n_addrs,
	};
}

/* The interface's entries for the set in force (selection, rate limits); logs a failure. */
static void agent_policy_iface_update(struct agent *a, int ifindex, const char *name)
{
	struct agent_pod *p = agent_pod_find(a, ifindex);
	struct loupe_policy_iface iface;
	int err;

	if (!a->policy.rt)
		return;
	if (p) {
		iface = agent_pod_iface(p);
		err = loupe_policy_iface_update(a->policy.rt, &iface);
	} else {
		err = loupe_policy_iface_added(a->policy.rt, ifindex, name);
	}
	if (err)
		loupe_log(LOUPE_LOG_ERROR, "cannot select the interface for the policies",
			  "iface=%s ifindex=%d error=\"%s\"", name, ifindex, strerror(-err));
}

static void agent_pod_forget(struct agent *a, int ifindex)
{
	struct agent_pod *p = agent_pod_find(a, ifindex);

	if (p)
		*p = a->pods[--a->n_pods];
}

/* The interface's policy entry first: its first packet is judged by the set in force. */
static void agent_attach_pod(struct agent *a, int ifindex, const char *name, int n_addrs)
{
	int err;

	agent_policy_iface_update(a, ifindex, name);
	err = loupe_attach_link(a->attach, ifindex, name);
	if (err) {
		a->attach_errors++;
		loupe_log(LOUPE_LOG_ERROR, "cannot attach", "iface=%s ifindex=%d error=\"%s\"",
			  name, ifindex, strerror(-err));
		return;
	}
	loupe_log(LOUPE_LOG_INFO, "attached", "iface=%s ifindex=%d addrs=%d", name, ifindex,
		  n_addrs);
}

static void agent_pod_added(void *ctx, const struct loupe_link *link)
{
	struct agent *a = ctx;

	if (agent_pod_set(a, link->ifindex, link->name))
		loupe_log(LOUPE_LOG_WARN,
			  "out of memory: the interface is not known to the policies",
			  "iface=%s ifindex=%d", link->name, link->ifindex);
	agent_pod_set_addrs(a, link);
	if (a->starting)
		return; /* attached once the policies are in force */
	agent_attach_pod(a, link->ifindex, link->name, link->addrs.n);
}

static void agent_pod_removed(void *ctx, int ifindex, const char *name)
{
	struct agent *a = ctx;
	int err;

	agent_pod_forget(a, ifindex);
	if (a->starting)
		return;
	err = loupe_detach_link(a->attach, ifindex);
	if (err)
		loupe_log(LOUPE_LOG_WARN, "cannot detach", "iface=%s ifindex=%d error=\"%s\"", name,
			  ifindex, strerror(-err));
	else
		loupe_log(LOUPE_LOG_INFO, "detached", "iface=%s ifindex=%d", name, ifindex);
	/* after the detach: no packet of the interface runs without its entry before */
	if (a->policy.rt) {
		err = loupe_policy_iface_removed(a->policy.rt, ifindex);
		if (err)
			loupe_log(LOUPE_LOG_WARN, "cannot remove the interface from the policies",
				  "iface=%s ifindex=%d error=\"%s\"", name, ifindex,
				  strerror(-err));
	}
}

static void agent_pod_changed(void *ctx, const struct loupe_link *link)
{
	struct agent *a = ctx;
	struct agent_pod *p = agent_pod_find(a, link->ifindex);
	bool renamed = !p || strcmp(p->name, link->name) != 0, readdressed;

	loupe_log(LOUPE_LOG_DEBUG, "pod link changed", "iface=%s ifindex=%d up=%d addrs=%d",
		  link->name, link->ifindex, link->up, link->addrs.n);
	if (renamed)
		agent_pod_set(a, link->ifindex, link->name);
	readdressed = agent_pod_set_addrs(a, link);
	if (!renamed && !readdressed)
		return;
	/* a new name may be selected by other policies' interface globs, new addresses by
	 * their cidrs (rate limits) */
	if (!a->starting)
		agent_policy_iface_update(a, link->ifindex, link->name);
}

/* ---- policies ----------------------------------------------------------------------------- */

static void agent_publish_metrics(struct agent *a);

/* @s as a log value's inside: quotes and backslashes escaped (log.c quotes only msg). */
static const char *agent_quote(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	for (; *s && o + 2 < size; s++) {
		if (*s == '"' || *s == '\\')
			buf[o++] = '\\';
		buf[o++] = *s;
	}
	buf[o] = '\0';
	return buf;
}

static void agent_policy_warnings(const struct loupe_policy_set *set)
{
	char line[1280], q[1600];

	for (unsigned int i = 0; i < set->n_warnings; i++) {
		loupe_policy_error_format(&set->warnings[i], line, sizeof(line));
		loupe_log(LOUPE_LOG_WARN, "policy warning", "warning=\"%s\"",
			  agent_quote(line, q, sizeof(q)));
	}
}

/*
 * The pod interfaces now, as loupe_policy_apply() takes them: names and addresses borrowed
 * from a->pods.
 */
static struct loupe_policy_iface *agent_policy_ifaces(const struct agent *a)
{
	struct loupe_policy_iface *ifaces = calloc(a->n_pods ? a->n_pods : 1, sizeof(*ifaces));

	for (size_t i = 0; ifaces && i < a->n_pods; i++)
		ifaces[i] = agent_pod_iface(&a->pods[i]);
	return ifaces;
}

/*
 * Puts @set in force, whatever its source. @json: its normalised form, kept (taken) to know
 * an unchanged set later; may be NULL. Returns 0, or -errno with @ret_err saying why (the set
 * in force stays).
 */
static int agent_policy_apply(struct agent *a, const struct loupe_policy_set *set, char *json,
			      struct loupe_policy_error *ret_err)
{
	struct loupe_policy_iface *ifaces = agent_policy_ifaces(a);
	int err;

	if (!ifaces) {
		free(json);
		memset(ret_err, 0, sizeof(*ret_err));
		snprintf(ret_err->message, sizeof(ret_err->message), "out of memory");
		return -ENOMEM;
	}
	err = loupe_policy_apply(a->policy.rt, set, ifaces, a->n_pods, ret_err);
	free(ifaces);
	if (err) {
		free(json);
		return err;
	}
	free(a->policy.in_force_json);
	a->policy.in_force_json = json;
	return 0;
}

/*
 * Reads --policy again and puts it in force (@why: "sighup", "file-change", ...). A refused
 * set is logged and counted; the set in force stays. A change that leaves the normalised set
 * as it is (a touch, a file rewritten the same) is not applied again, except on SIGHUP.
 */
static void agent_policy_reload(struct agent *a, const char *why, bool force)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error perr;
	char line[1280], q[1600];
	char *json;
	int err;

	if (!a->policy.watch || !a->policy.rt)
		return;
	err = loupe_policy_watch_load(a->policy.watch, &set, &perr);
	if (!err) {
		json = loupe_policy_set_to_json(set);
		if (json && !force && a->policy.in_force_json &&
		    strcmp(json, a->policy.in_force_json) == 0) {
			loupe_log(LOUPE_LOG_DEBUG, "policies unchanged", "trigger=%s generation=%u",
				  why, loupe_policy_generation(a->policy.rt));
			free(json);
			loupe_policy_set_free(set);
			return;
		}
		agent_policy_warnings(set);
		err = agent_policy_apply(a, set, json, &perr);
	}
	/* /metrics shows the outcome by the time it is logged */
	if (err)
		a->policy.reloads_refused++;
	else
		a->policy.reloads_ok++;
	agent_publish_metrics(a);
	if (err) {
		loupe_policy_error_format(&perr, line, sizeof(line));
		loupe_log(LOUPE_LOG_ERROR, "policies refused: the set in force stays",
			  "trigger=%s path=%s generation=%u error=\"%s\"", why,
			  loupe_policy_watch_path(a->policy.watch),
			  loupe_policy_generation(a->policy.rt), agent_quote(line, q, sizeof(q)));
	} else {
		loupe_log(LOUPE_LOG_INFO, "policies applied",
			  "trigger=%s path=%s generation=%u policies=%u rules=%u", why,
			  loupe_policy_watch_path(a->policy.watch),
			  loupe_policy_generation(a->policy.rt), set->n_policies, set->n_rules);
	}
	loupe_policy_set_free(set);
}

/*
 * Before the datapath: --policy is read, and watched from before the read so that no change
 * after it is missed. A set refused here stops the agent: nothing is touched yet.
 */
static int agent_policy_read_first(struct agent *a)
{
	const char *path = a->cfg->policy_path;
	struct loupe_policy_error perr;
	char line[1280], q[1600];
	int err;

	if (!path[0])
		return 0;
	err = loupe_policy_watch_open(path, &a->policy.watch);
	if (err) {
		loupe_log(LOUPE_LOG_ERROR, "cannot read the policies", "path=%s error=\"%s\"", path,
			  strerror(-err));
		return err;
	}
	err = loupe_policy_watch_load(a->policy.watch, &a->policy.first, &perr);
	if (err) {
		loupe_policy_error_format(&perr, line, sizeof(line));
		loupe_log(LOUPE_LOG_ERROR, "policies refused", "path=%s error=\"%s\"", path,
			  agent_quote(line, q, sizeof(q)));
		return err;
	}
	agent_policy_warnings(a->policy.first);
	return 0;
}

/*
 * With the datapath loaded and the pod interfaces known, before they are attached: the first
 * set in force. Without --policy, a standalone agent has no policy: a set an earlier agent left
 * pinned is taken away. With a controller, that set stays in force until the controller's.
 */
static int agent_policy_start(struct agent *a)
{
	struct loupe_policy_set none = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error perr;
	char line[1280], q[1600];
	int err;

	err = loupe_policy_runtime_open(a->dp, &a->policy.rt);
	if (err) {
		a->policy.rt = NULL;
		if (a->policy.first) {
			loupe_log(LOUPE_LOG_ERROR, "the datapath cannot enforce policies",
				  "error=\"%s\"", strerror(-err));
			return err;
		}
		loupe_log(LOUPE_LOG_WARN, "no policy maps in the datapath: policies are off",
			  "error=\"%s\"", strerror(-err));
		return 0;
	}
	loupe_pipeline_set_policy(a->pipeline, a->policy.rt);

	if (a->policy.first) {
		err = agent_policy_apply(a, a->policy.first,
					 loupe_policy_set_to_json(a->policy.first), &perr);
		if (err) {
			loupe_policy_error_format(&perr, line, sizeof(line));
			loupe_log(LOUPE_LOG_ERROR, "policies refused", "path=%s error=\"%s\"",
				  a->cfg->policy_path, agent_quote(line, q, sizeof(q)));
			return err;
		}
		loupe_log(LOUPE_LOG_INFO, "policies applied",
			  "trigger=start path=%s generation=%u policies=%u rules=%u",
			  a->cfg->policy_path, loupe_policy_generation(a->policy.rt),
			  a->policy.first->n_policies, a->policy.first->n_rules);
		a->policy.first = loupe_policy_set_free(a->policy.first);
		return 0;
	}
	if (a->cfg->standalone && loupe_policy_generation(a->policy.rt) > 0) {
		err = agent_policy_apply(a, &none, NULL, &perr);
		if (err) {
			loupe_policy_error_format(&perr, line, sizeof(line));
			loupe_log(LOUPE_LOG_ERROR, "cannot take away an earlier agent's policies",
				  "error=\"%s\"", agent_quote(line, q, sizeof(q)));
			return err;
		}
		loupe_log(LOUPE_LOG_INFO, "no --policy: an earlier agent's policies are taken away",
			  "generation=%u", loupe_policy_generation(a->policy.rt));
	}
	return 0;
}

static void agent_policy_hit(void *ctx, const struct loupe_policy_bit_info *info, uint64_t flows)
{
	struct agent_policy *pol = ctx;
	struct loupe_metrics_rule_hits *h;

	if (pol->n_hits == pol->cap_hits) {
		size_t cap = pol->cap_hits ? 2 * pol->cap_hits : 64;
		struct loupe_metrics_rule_hits *hits = realloc(pol->hits, cap * sizeof(*hits));

		if (!hits)
			return; /* a scrape with fewer rules; the next tick tries again */
		pol->hits = hits;
		pol->cap_hits = cap;
	}
	h = &pol->hits[pol->n_hits++];
	snprintf(h->policy, sizeof(h->policy), "%s", info->policy);
	snprintf(h->rule, sizeof(h->rule), "%s", info->is_default ? "" : info->rule);
	snprintf(h->action, sizeof(h->action), "%s", loupe_policy_action_name(info->action));
	h->flows = flows;
}

static void agent_policy_free(struct agent_policy *pol)
{
	pol->watch = loupe_policy_watch_free(pol->watch);
	pol->first = loupe_policy_set_free(pol->first);
	pol->rt = loupe_policy_runtime_free(pol->rt);
	free(pol->in_force_json);
	free(pol->hits);
	memset(pol, 0, sizeof(*pol));
}

/* The agent's bpffs directory needs a bpffs under it: mount one on /sys/fs/bpf if missing. */
static int agent_ensure_bpffs(const char *dir)
{
	char parent[PATH_MAX];
	struct statfs st;

	snprintf(parent, sizeof(parent), "%s", dir);
	dirname(parent);
	if (statfs(parent, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (strcmp(parent, "/sys/fs/bpf") != 0)
		return -ENOTSUP; /* somewhere else: not ours to mount */
	if (mount("bpf", parent, "bpf", 0, "mode=0700"))
		return -errno;
	loupe_log(LOUPE_LOG_INFO, "mounted bpffs", "path=%s", parent);
	return 0;
}

static void agent_publish_metrics(struct agent *a)
{
	struct loupe_metrics_snapshot snap;
	struct loupe_pipeline_stats ps;

	if (!a->metrics)
		return;
	memset(&snap, 0, sizeof(snap));
	loupe_datapath_read_counters(a->dp, &snap.dp);
	loupe_datapath_ring_fill(a->dp, &snap.ringbuf_pending, &snap.ringbuf_size);
	loupe_pipeline_get_stats(a->pipeline, &ps);
	memcpy(snap.events_emitted, ps.events, sizeof(snap.events_emitted));
	snap.records_invalid = ps.records_bad;
	snap.lost_reported = ps.lost_reported;
	snap.ifaces_attached = loupe_attach_count(a->attach);
	if (a->links) {
		struct loupe_links_stats ls;

		loupe_links_stats(a->links, &ls);
		snap.links_resyncs = ls.resyncs;
		snap.links_dropped = ls.links_dropped;
		snap.pod_addrs_truncated = ls.addrs_truncated;
	}
	loupe_output_get_stats(a->out, &snap.output);
	snap.verdicts_unnamed = ps.verdicts_unnamed;
	snap.policy_reloads_ok = a->policy.reloads_ok;
	snap.policy_reloads_refused = a->policy.reloads_refused;
	if (a->policy.rt) {
		snap.policy_generation = loupe_policy_generation(a->policy.rt);
		a->policy.n_hits = 0;
		loupe_policy_hits_foreach(a->policy.rt, agent_policy_hit, &a->policy);
		snap.rule_hits = a->policy.hits;
		snap.n_rule_hits = a->policy.n_hits;
	}
	if (a->ctl) {
		struct loupe_rpc_agent_stats cs;

		loupe_rpc_agent_get_stats(a->ctl, &cs);
		snap.controller = true;
		snap.controller_connected = cs.connected;
		snap.controller_connects = cs.connects;
		snap.events_sent = cs.events_sent;
		snap.events_acked = cs.events_acked;
		snap.events_buffered = cs.buffered;
		snap.events_dropped = cs.events_dropped;
		snap.controller_revision = cs.revision;
	}
	loupe_metrics_publish(a->metrics, &snap);
}

/*
 * A bundle from the controller (or the node's last one, at start): parsed and put in force
 * whole, or refused with the parser's sentence, which goes back to the controller.
 */
static int agent_controller_policy(void *ctx, const char *json, size_t len, uint64_t revision,
				   char *err, size_t errsize)
{
	struct agent *a = ctx;
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error perr;
	char line[1280], q[1600];
	int r;

	if (!a->policy.rt) {
		snprintf(err, errsize, "this node's datapath has no policy maps");
		return -ENOTSUP;
	}
	r = loupe_policy_parse(json, len, "the controller's bundle", &set, &perr);
	if (!r)
		r = agent_policy_apply(a, &set, loupe_policy_set_to_json(&set), &perr);
	if (r) {
		loupe_policy_error_format(&perr, line, sizeof(line));
		snprintf(err, errsize, "%s", line[0] ? line : strerror(-r));
		loupe_log(LOUPE_LOG_ERROR, "controller's policies refused",
			  "revision=%llu error=\"%s\"", (unsigned long long)revision,
			  agent_quote(err, q, sizeof(q)));
	} else {
		loupe_log(LOUPE_LOG_INFO, "policies applied",
			  "trigger=controller revision=%llu generation=%u policies=%u rules=%u",
			  (unsigned long long)revision, loupe_policy_generation(a->policy.rt),
			  set.n_policies, set.n_rules);
	}
	loupe_policy_set_clear(&set);
	return r;
}

static void agent_controller_state(void *ctx, bool up, const char *detail)
{
	struct agent *a = ctx;
	char q[512];

	if (up)
		loupe_log(LOUPE_LOG_INFO, "controller connected", "controller=%s",
			  a->cfg->controller);
	else
		loupe_log(LOUPE_LOG_WARN,
			  "controller away: enforcing the last revision, buffering "
			  "events",
			  "controller=%s detail=\"%s\"", a->cfg->controller,
			  agent_quote(detail, q, sizeof(q)));
}

static void agent_grpc_log(int severity, const char *message)
{
	loupe_log(severity >= 2 ? LOUPE_LOG_WARN : LOUPE_LOG_DEBUG, "grpc", "detail=\"%s\"",
		  message);
}

/* Controller mode: the connection, and the node's last revision put in force again. */
static int agent_controller_start(struct agent *a)
{
	const struct loupe_agent_config *cfg = a->cfg;
	struct loupe_rpc_agent_opts o = {
		.chan = { .target = cfg->controller,
			  .insecure = cfg->insecure,
			  .tls_ca = cfg->tls_ca[0] ? cfg->tls_ca : NULL,
			  .tls_cert = cfg->tls_cert[0] ? cfg->tls_cert : NULL,
			  .tls_key = cfg->tls_key[0] ? cfg->tls_key : NULL,
			  .server_name = cfg->tls_server_name[0] ? cfg->tls_server_name : NULL },
		.node = cfg->node_name,
		.version = AGENT_VERSION,
		.state_dir = cfg->state_dir,
		.event_buffer = cfg->event_buffer,
		.on_policy = agent_controller_policy,
		.on_state = agent_controller_state,
		.ctx = a,
	};
	char err[512];
	int r;

	loupe_rpc_set_log(agent_grpc_log);
	r = loupe_rpc_agent_start(&o, &a->ctl, err, sizeof(err));
	if (r) {
		loupe_log(LOUPE_LOG_ERROR, "cannot set up the controller connection",
			  "controller=%s error=\"%s\"", cfg->controller, err);
		return r;
	}
	loupe_rpc_agent_process(a->ctl);
	return 0;
}

static int agent_add(int epfd, int fd, enum agent_source source)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = source };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

static int agent_setup(struct agent *a)
{
	const struct loupe_agent_config *cfg = a->cfg;
	const char *globs[LOUPE_CONFIG_GLOBS_MAX];
	struct loupe_links_cbs cbs = { .pod_added = agent_pod_added,
				       .pod_removed = agent_pod_removed,
				       .pod_changed = agent_pod_changed };
	struct loupe_datapath_opts dp_opts = { .flows_max = cfg->flows_max,
					       .events_size = cfg->ringbuf_size,
					       .pin_dir = cfg->bpffs_dir };
	struct loupe_pipeline_opts pl_opts = { .node = cfg->node_name,
					       .flow_idle_ns = cfg->flow_idle_timeout_ms * 1000000,
					       .flow_active_ns =
						       cfg->flow_active_timeout_ms * 1000000,
					       .sink = agent_sink,
					       .sink_ctx = a,
					       .enrich = agent_enrich,
					       .enrich_ctx = a };
	struct loupe_attach_opts at_opts = { .priority = cfg->tc_priority,
					     .pin_dir = cfg->bpffs_dir };
	struct itimerspec tick = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	sigset_t mask;
	int err;

	/* the policies first: a refused set stops the agent before it touches anything */
	err = agent_policy_read_first(a);
	if (err)
		return err;
	err = loupe_output_open(cfg->output, cfg->output_max_size, cfg->output_backups, &a->out);
	if (err) {
		loupe_log(LOUPE_LOG_ERROR, "cannot open the output", "output=%s error=\"%s\"",
			  cfg->output, strerror(-err));
		return err;
	}
	err = loupe_pipeline_new(&pl_opts, &a->pipeline);
	if (err)
		return err;

	err = agent_ensure_bpffs(cfg->bpffs_dir);
	if (err)
		loupe_log(LOUPE_LOG_WARN, "no bpffs for the pins", "dir=%s error=\"%s\"",
			  cfg->bpffs_dir, strerror(-err));
	err = loupe_datapath_open(&dp_opts, loupe_pipeline_on_record, a->pipeline, &a->dp);
	if (err) {
		loupe_log(LOUPE_LOG_ERROR, "cannot load the datapath",
			  "pin_dir=%s error=\"%s\" hint=\"--log-level debug shows libbpf's log; an "
			  "incompatible earlier version's pins go with --uninstall\"",
			  cfg->bpffs_dir, strerror(-err));
		return err;
	}
	err = loupe_pipeline_attach_datapath(a->pipeline, a->dp);
	if (err)
		return err;

	err = loupe_attach_open(&at_opts, loupe_datapath_prog_fd(a->dp, LOUPE_DIR_POD_EGRESS),
				loupe_datapath_prog_fd(a->dp, LOUPE_DIR_POD_INGRESS), &a->attach);
	if (err) {
		loupe_log(LOUPE_LOG_ERROR, "cannot open the attachments", "error=\"%s\"",
			  strerror(-err));
		return err;
	}
	/* an earlier agent's links get this agent's programs, swapped in place */
	err = loupe_attach_reattach_all(a->attach);
	if (err < 0)
		loupe_log(LOUPE_LOG_WARN, "cannot take over every earlier attachment",
			  "error=\"%s\"", strerror(-err));
	else if (loupe_attach_count(a->attach))
		loupe_log(LOUPE_LOG_INFO, "took over", "interfaces=%zu",
			  loupe_attach_count(a->attach));

	for (unsigned int i = 0; i < cfg->iface_globs_count; i++)
		globs[i] = cfg->iface_globs[i];
	err = loupe_links_open(globs, cfg->iface_globs_count, &cbs, a, &a->links);
	if (err) {
		loupe_log(LOUPE_LOG_ERROR, "cannot open rtnetlink", "error=\"%s\"", strerror(-err));
		return err;
	}
	/*
	 * The pod interfaces are listed, the policies put in force for them, and only then are
	 * new ones attached: no flow of a new pod begins before the set that judges it.
	 */
	a->starting = true;
	err = loupe_links_dump(a->links);
	if (err < 0) {
		loupe_log(LOUPE_LOG_ERROR, "cannot list the links", "error=\"%s\"", strerror(-err));
		return err;
	}
	err = agent_policy_start(a);
	if (err)
		return err;
	if (!cfg->standalone && cfg->controller[0]) {
		err = agent_controller_start(a);
		if (err)
			return err;
	}
	a->starting = false;
	for (size_t i = 0; i < a->n_pods; i++) {
		const struct loupe_link *link = loupe_links_get(a->links, a->pods[i].ifindex);

		agent_attach_pod(a, a->pods[i].ifindex, a->pods[i].name, link ? link->addrs.n : 0);
	}

	if (cfg->metrics_enabled) {
		struct loupe_metrics_opts m_opts = { .addr = cfg->metrics_addr,
						     .version = AGENT_VERSION };

		err = loupe_metrics_start(&m_opts, &a->metrics);
		if (err) {
			loupe_log(LOUPE_LOG_ERROR, "cannot serve metrics", "addr=%s error=\"%s\"",
				  cfg->metrics_addr, strerror(-err));
			return err;
		}
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	a->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	a->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->sigfd < 0 || a->timerfd < 0 || a->epfd < 0)
		return -errno;
	if (timerfd_settime(a->timerfd, 0, &tick, NULL))
		return -errno;
	err = agent_add(a->epfd, a->sigfd, AGENT_SIGNAL);
	if (!err)
		err = agent_add(a->epfd, loupe_links_fd(a->links), AGENT_LINKS);
	if (!err)
		err = agent_add(a->epfd, loupe_datapath_events_fd(a->dp), AGENT_RING);
	if (!err)
		err = agent_add(a->epfd, a->timerfd, AGENT_TIMER);
	if (!err && a->policy.watch)
		err = agent_add(a->epfd, loupe_policy_watch_fd(a->policy.watch), AGENT_POLICY);
	if (!err && a->ctl)
		err = agent_add(a->epfd, loupe_rpc_agent_fd(a->ctl), AGENT_CONTROLLER);
	if (err)
		return err;

	/* /metrics has figures (the policy generation among them) from the moment it is ready */
	agent_publish_metrics(a);
	if (a->metrics)
		loupe_metrics_set_ready(a->metrics, true);
	loupe_log(LOUPE_LOG_INFO, "ready", "node=%s interfaces=%zu pin_dir=%s", cfg->node_name,
		  loupe_attach_count(a->attach), cfg->bpffs_dir);
	return 0;
}

static void agent_on_timer(struct agent *a)
{
	uint64_t expirations;
	int err;

	if (read(a->timerfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		return;
	/* the policy directory went away: watched again once it is back (the one polled case) */
	if (a->policy.watch && !loupe_policy_watch_armed(a->policy.watch)) {
		err = loupe_policy_watch_rearm(a->policy.watch);
		if (err > 0)
			agent_policy_reload(a, "directory-back", false);
		else if (err < 0)
			loupe_log(LOUPE_LOG_WARN, "cannot watch the policies",
				  "path=%s error=\"%s\"", loupe_policy_watch_path(a->policy.watch),
				  strerror(-err));
	}
	loupe_datapath_drain(a->dp);
	if (a->metrics)
		loupe_metrics_heartbeat(a->metrics);
	err = loupe_pipeline_tick(a->pipeline);
	if (err < 0)
		loupe_log(LOUPE_LOG_WARN, "flow export failed", "error=\"%s\"", strerror(-err));
	err = loupe_output_flush(a->out);
	if (err < 0)
		loupe_log(LOUPE_LOG_WARN, "cannot write events", "error=\"%s\"", strerror(-err));
	agent_publish_metrics(a);
}

static int agent_loop(struct agent *a)
{
	struct epoll_event evs[8];
	struct signalfd_siginfo si;
	int n, err;

	while (!a->stop) {
		n = epoll_wait(a->epfd, evs, 8, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u32) {
			case AGENT_SIGNAL:
				while (read(a->sigfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						if (a->policy.watch)
							agent_policy_reload(a, "sighup", true);
						else
							loupe_log(LOUPE_LOG_INFO,
								  "SIGHUP: no --policy to reload",
								  NULL);
						continue;
					}
					loupe_log(LOUPE_LOG_INFO, "stopping", "signal=%u",
						  si.ssi_signo);
					a->stop = true;
				}
				break;
			case AGENT_LINKS:
				err = loupe_links_process(a->links);
				if (err < 0)
					loupe_log(LOUPE_LOG_WARN, "rtnetlink", "error=\"%s\"",
						  strerror(-err));
				break;
			case AGENT_RING:
				loupe_datapath_drain(a->dp);
				break;
			case AGENT_TIMER:
				agent_on_timer(a);
				break;
			case AGENT_CONTROLLER:
				loupe_rpc_agent_process(a->ctl);
				break;
			case AGENT_POLICY:
				/* every pending change drained, then one read of the policies */
				err = loupe_policy_watch_process(a->policy.watch);
				if (err > 0)
					agent_policy_reload(a, "file-change", false);
				else if (err < 0)
					loupe_log(LOUPE_LOG_WARN, "policy watch", "error=\"%s\"",
						  strerror(-err));
				break;
			}
		}
	}
	return 0;
}

/* Enforcement outlives the agent: filters, programs and maps stay; only our fds close. */
static void agent_teardown(struct agent *a)
{
	if (a->dp)
		loupe_datapath_drain(a->dp);
	if (a->out)
		loupe_output_flush(a->out);
	/* a moment for the controller to take what is buffered; the rest is lost with us */
	a->ctl = loupe_rpc_agent_stop(a->ctl, 2000);
	a->metrics = loupe_metrics_stop(a->metrics);
	a->links = loupe_links_free(a->links);
	a->attach = loupe_attach_free(a->attach);
	if (a->pipeline)
		loupe_pipeline_set_policy(a->pipeline, NULL);
	agent_policy_free(&a->policy); /* its map fds are the datapath's */
	a->dp = loupe_datapath_free(a->dp);
	a->pipeline = loupe_pipeline_free(a->pipeline);
	a->out = loupe_output_close(a->out);
	free(a->pods);
	if (a->epfd >= 0)
		close(a->epfd);
	if (a->sigfd >= 0)
		close(a->sigfd);
	if (a->timerfd >= 0)
		close(a->timerfd);
}

static int agent_uninstall(const struct loupe_agent_config *cfg)
{
	int err = loupe_attach_uninstall(cfg->bpffs_dir, cfg->tc_priority);
	int err2 = loupe_datapath_unpin(cfg->bpffs_dir);

	if (err || err2) {
		loupe_log(LOUPE_LOG_ERROR, "uninstall incomplete", "pin_dir=%s error=\"%s\"",
			  cfg->bpffs_dir, strerror(-(err ? err : err2)));
		return EXIT_FAILURE;
	}
	loupe_log(LOUPE_LOG_INFO, "uninstalled", "pin_dir=%s", cfg->bpffs_dir);
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	static struct loupe_agent_config cfg;
	struct agent a = { .cfg = &cfg, .epfd = -1, .sigfd = -1, .timerfd = -1 };
	char errbuf[512];
	int err;

	err = loupe_config_parse(argc, argv, NULL, &cfg, errbuf, sizeof(errbuf));
	if (err) {
		fprintf(stderr, "loupe-agent: %s\nTry 'loupe-agent --help'.\n", errbuf);
		return 2;
	}
	if (cfg.help) {
		fputs(loupe_config_usage(), stdout);
		return EXIT_SUCCESS;
	}
	if (cfg.version) {
		printf("loupe-agent %s\n", AGENT_VERSION);
		return EXIT_SUCCESS;
	}
	loupe_log_max = cfg.log_level;
	loupe_log_libbpf();

	if (cfg.uninstall)
		return agent_uninstall(&cfg);
	if (!cfg.standalone && !cfg.controller[0])
		loupe_log(LOUPE_LOG_WARN,
			  "no --controller (LOUPE_CONTROLLER) given: running standalone", NULL);

	err = agent_setup(&a);
	if (!err)
		err = agent_loop(&a);
	agent_teardown(&a);
	if (err) {
		loupe_log(LOUPE_LOG_ERROR, "agent failed", "error=\"%s\"", strerror(-err));
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}
