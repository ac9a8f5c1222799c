// SPDX-License-Identifier: Apache-2.0
/*
 * loupe-agent: loads the datapath (taking over what an earlier agent pinned), attaches it to
 * every pod veth rtnetlink reports, and runs one epoll loop over signals, rtnetlink, the ring
 * buffer and a one-second timer (flow export, losses, metrics). The only module that logs.
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

#include "attach.h"
#include "config.h"
#include "datapath.h"
#include "event_text.h"
#include "links.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "pipeline.h"

#define AGENT_VERSION "0.1.0"

struct agent {
	const struct loupe_agent_config *cfg;
	struct loupe_output *out;
	struct loupe_pipeline *pipeline;
	struct loupe_datapath *dp;
	struct loupe_attach *attach;
	struct loupe_links *links;
	struct loupe_metrics *metrics;
	int epfd, sigfd, timerfd;
	bool stop;
	uint64_t attach_errors;
};

enum agent_source {
	AGENT_SIGNAL = 1,
	AGENT_LINKS,
	AGENT_RING,
	AGENT_TIMER,
};

static int agent_sink(void *ctx, const struct loupe_event *ev)
{
	struct agent *a = ctx;
	char line[1024];
	int n;

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

static void agent_pod_added(void *ctx, const struct loupe_link *link)
{
	struct agent *a = ctx;
	int err = loupe_attach_link(a->attach, link->ifindex, link->name);

	if (err) {
		a->attach_errors++;
		loupe_log(LOUPE_LOG_ERROR, "cannot attach", "iface=%s ifindex=%d error=\"%s\"",
			  link->name, link->ifindex, strerror(-err));
		return;
	}
	loupe_log(LOUPE_LOG_INFO, "attached", "iface=%s ifindex=%d addrs=%d", link->name,
		  link->ifindex, link->addrs.n);
}

static void agent_pod_removed(void *ctx, int ifindex, const char *name)
{
	struct agent *a = ctx;
	int err = loupe_detach_link(a->attach, ifindex);

	if (err)
		loupe_log(LOUPE_LOG_WARN, "cannot detach", "iface=%s ifindex=%d error=\"%s\"", name,
			  ifindex, strerror(-err));
	else
		loupe_log(LOUPE_LOG_INFO, "detached", "iface=%s ifindex=%d", name, ifindex);
}

static void agent_pod_changed(void *ctx, const struct loupe_link *link)
{
	loupe_log(LOUPE_LOG_DEBUG, "pod link changed", "iface=%s ifindex=%d up=%d addrs=%d",
		  link->name, link->ifindex, link->up, link->addrs.n);
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
	loupe_metrics_publish(a->metrics, &snap);
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
	err = loupe_links_dump(a->links);
	if (err < 0) {
		loupe_log(LOUPE_LOG_ERROR, "cannot list the links", "error=\"%s\"", strerror(-err));
		return err;
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
	if (err)
		return err;

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
						/* the policies' reload signal: nothing to reload yet */
						loupe_log(LOUPE_LOG_INFO,
							  "SIGHUP: nothing to reload", NULL);
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
	a->metrics = loupe_metrics_stop(a->metrics);
	a->links = loupe_links_free(a->links);
	a->attach = loupe_attach_free(a->attach);
	a->dp = loupe_datapath_free(a->dp);
	a->pipeline = loupe_pipeline_free(a->pipeline);
	a->out = loupe_output_close(a->out);
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
	if (!cfg.standalone)
		loupe_log(LOUPE_LOG_WARN,
			  "this version has no controller connection: running standalone", NULL);

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
