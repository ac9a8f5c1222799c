// SPDX-License-Identifier: Apache-2.0
/*
 * Replay of a capture file through the real datapath: libpcap reads pcap or pcapng with
 * nanosecond timestamps, every frame goes through loupe_datapath_run() in file order (one
 * datapath, so flow state carries over as with live traffic) and the ring buffer is drained
 * after each frame, so events come out in frame order. Not for printing or option parsing
 * (cmd_replay.c) nor for live links (the agent).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "datapath.h"
#include "event.h"
#include "replay.h"

struct replay_run {
	loupe_replay_event_fn on_event;
	void *ctx;
	struct loupe_replay_stats *stats;
};

static void replay_err(char *errbuf, size_t errsize, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

struct replay_flows {
	struct loupe_event *ev;
	size_t n, cap;
};

/* At the end of the capture every flow still in the table ends: one FLOW_END each. */
static int replay_collect_flow(void *ctx, const struct loupe_flow_key *key,
			       const struct loupe_flow *flow)
{
	struct replay_flows *flows = ctx;

	if (flows->n == flows->cap) {
		size_t cap = flows->cap ? 2 * flows->cap : 64;
		struct loupe_event *ev = realloc(flows->ev, cap * sizeof(*ev));

		if (!ev)
			return -ENOMEM;
		flows->ev = ev;
		flows->cap = cap;
	}
	loupe_event_from_flow(key, flow, 0, &flows->ev[flows->n]);
	flows->ev[flows->n].flow.end_reason = LOUPE_FLOW_END_CAPTURE;
	flows->ev[flows->n].ifindex = 0; /* lo, as for every record of a replay */
	flows->n++;
	return 0;
}

static int replay_cmp_first_seen(const void *a, const void *b)
{
	const struct loupe_event *x = a, *y = b;

	int c;

	if (x->flow.first_seen_ns != y->flow.first_seen_ns)
		return x->flow.first_seen_ns < y->flow.first_seen_ns ? -1 : 1;
	/* flows that began at the same instant: by key, so that output is the same every run */
	c = memcmp(x->saddr, y->saddr, sizeof(x->saddr));
	if (!c)
		c = memcmp(x->daddr, y->daddr, sizeof(x->daddr));
	if (!c)
		c = (int)x->sport - (int)y->sport;
	if (!c)
		c = (int)x->dport - (int)y->dport;
	if (!c)
		c = (int)x->protocol - (int)y->protocol;
	return c;
}

/* FLOW_END for every flow of the capture, in the order the flows began. */
static int replay_end_flows(struct loupe_datapath *dp, struct replay_run *run)
{
	struct replay_flows flows = { 0 };
	int err;

	err = loupe_datapath_flows_foreach(dp, replay_collect_flow, &flows);
	if (!err)
		qsort(flows.ev, flows.n, sizeof(*flows.ev), replay_cmp_first_seen);
	for (size_t i = 0; !err && i < flows.n; i++) {
		flows.ev[i].seq = ++run->stats->events;
		run->stats->events_by_kind[LOUPE_EV_FLOW_END]++;
		err = run->on_event(run->ctx, &flows.ev[i]);
	}
	free(flows.ev);
	return err;
}

static void replay_err(char *errbuf, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	if (!errbuf || !errsize)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errsize, fmt, ap);
	va_end(ap);
}

static int replay_on_record(void *ctx, const void *record, size_t size)
{
	struct replay_run *run = ctx;
	struct loupe_event ev;

	/* A record that does not decode is a datapath bug: count it, keep the others. */
	if (loupe_event_decode(record, size, 0, &ev)) {
		run->stats->records_bad++;
		return 0;
	}
	/* BPF_PROG_TEST_RUN's skb says ifindex 1 (lo): a frame from a file came from no link */
	ev.ifindex = 0;
	ev.ifname[0] = '\0';
	ev.seq = ++run->stats->events;
	if ((unsigned int)ev.kind < LOUPE_EV_KIND_MAX)
		run->stats->events_by_kind[ev.kind]++;
	return run->on_event(run->ctx, &ev);
}

/* Opens @path with libpcap; errors say which file and why, in the user's terms. */
static int replay_open(const char *path, pcap_t **ret_pcap, char *errbuf, size_t errsize)
{
	char pcap_err[PCAP_ERRBUF_SIZE] = "";
	struct stat st;
	pcap_t *pcap;
	FILE *f;
	int err;

	if (strcmp(path, "-") == 0) {
		f = stdin;
		path = "standard input";
	} else {
		f = fopen(path, "rb");
		if (!f) {
			err = -errno;
			replay_err(errbuf, errsize, "%s: cannot open: %s", path, strerror(-err));
			return err;
		}
	}
	if (fstat(fileno(f), &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			replay_err(errbuf, errsize, "%s: is a directory, not a capture file", path);
			err = -EISDIR;
			goto err_close;
		}
		if (S_ISREG(st.st_mode) && st.st_size == 0) {
			replay_err(errbuf, errsize,
				   "%s: not a capture file: the file is empty (expected pcap or "
				   "pcapng)",
				   path);
			err = -EINVAL;
			goto err_close;
		}
	}
	/* libpcap owns (and closes) the FILE from here on. */
	pcap = pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, pcap_err);
	if (!pcap) {
		replay_err(errbuf, errsize,
			   "%s: not a capture file that libpcap can read (pcap or pcapng): %s",
			   path, pcap_err[0] ? pcap_err : "unknown error");
		err = -EINVAL;
		goto err_close;
	}
	*ret_pcap = pcap;
	return 0;

err_close:
	if (f != stdin)
		fclose(f);
	return err;
}

static int replay_check_linktype(pcap_t *pcap, const char *path, char *errbuf, size_t errsize)
{
	int dlt = pcap_datalink(pcap);
	const char *name, *desc;

	if (dlt == DLT_EN10MB)
		return 0;
	name = pcap_datalink_val_to_name(dlt);
	desc = pcap_datalink_val_to_description(dlt);
	if (name)
		replay_err(
			errbuf, errsize,
			"%s: link type %s (%s) is not Ethernet: replay runs Ethernet frames only",
			path, name, desc ? desc : "no description");
	else
		replay_err(errbuf, errsize,
			   "%s: link type %d (unknown to libpcap) is not Ethernet: replay runs "
			   "Ethernet frames only",
			   path, dlt);
	return -EPROTONOSUPPORT;
}

static const char *replay_datapath_hint(int err)
{
	switch (err) {
	case -EPERM:
	case -EACCES:
		if (geteuid() != 0)
			return " (loading BPF programs needs root, or CAP_BPF with CAP_NET_ADMIN)";
		/* as root, EACCES is the verifier's verdict on the program */
		if (err == -EACCES)
			return " (the kernel's verifier refused the programs: loupectl -v replay "
			       "... "
			       "shows its log)";
		return " (as root: capabilities dropped, or a kernel lockdown or sysctl refuses "
		       "BPF; loupectl -v replay ... shows libbpf's log)";
	case -ENOMEM:
		return " (locked-memory limit too low? try ulimit -l unlimited)";
	default:
		return " (loupectl -v replay ... shows libbpf's log)";
	}
}

int loupe_replay_file(const char *path, const struct loupe_replay_opts *opts,
		      loupe_replay_event_fn on_event, void *ctx,
		      struct loupe_replay_stats *ret_stats, char *errbuf, size_t errsize)
{
	struct loupe_datapath_opts dp_opts = { .replay = true };
	struct replay_run run = { .on_event = on_event, .ctx = ctx, .stats = ret_stats };
	const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
	struct loupe_datapath *dp = NULL;
	struct pcap_pkthdr *hdr;
	pcap_t *pcap = NULL;
	const u_char *data;
	int err, rc, action;
	uint64_t ts_ns;

	memset(ret_stats, 0, sizeof(*ret_stats));
	if (errbuf && errsize)
		errbuf[0] = '\0';

	/* The file first: its errors need no privileges and are the likelier ones. */
	err = replay_open(path, &pcap, errbuf, errsize);
	if (err)
		return err;
	err = replay_check_linktype(pcap, name, errbuf, errsize);
	if (err)
		goto out;

	err = loupe_datapath_open(&dp_opts, replay_on_record, &run, &dp);
	if (err) {
		replay_err(errbuf, errsize, "%s: cannot load the datapath: %s%s", name,
			   strerror(-err), replay_datapath_hint(err));
		goto out;
	}

	for (;;) {
		rc = pcap_next_ex(pcap, &hdr, &data);
		if (rc == PCAP_ERROR_BREAK)
			break; /* end of file */
		if (rc != 1) {
			/* e.g. "truncated dump file; tried to read 60 captured bytes, only got 57" */
			replay_err(errbuf, errsize, "%s: frame %llu: cannot read the record: %s",
				   name, (unsigned long long)ret_stats->frames + 1,
				   pcap_geterr(pcap));
			err = -EIO;
			goto out;
		}
		ret_stats->frames++;
		if (hdr->caplen < hdr->len)
			ret_stats->frames_snapped++;
		if (hdr->caplen < LOUPE_REPLAY_FRAME_MIN) {
			if (!ret_stats->frames_short)
				ret_stats->first_short_frame = ret_stats->frames;
			ret_stats->frames_short++;
			continue;
		}
		/* PCAP_TSTAMP_PRECISION_NANO: tv_usec holds nanoseconds. */
		ts_ns = (uint64_t)hdr->ts.tv_sec * 1000000000ull + (uint64_t)hdr->ts.tv_usec;
		err = loupe_datapath_run_wire(dp, opts->direction, data, hdr->caplen, hdr->len,
					      ts_ns, &action);
		if (err == -EINVAL && hdr->caplen > loupe_datapath_run_max()) {
			/*
			 * BPF_PROG_TEST_RUN takes at most a page less headroom and tailroom. The
			 * refused run did not reach the program, so retrying changes no state; the
			 * cut frame is like one cut by a snaplen, which the datapath handles.
			 */
			err = loupe_datapath_run_wire(dp, opts->direction, data,
						      loupe_datapath_run_max(), hdr->len, ts_ns,
						      &action);
			if (!err) {
				ret_stats->run_max = loupe_datapath_run_max();
				if (!ret_stats->frames_cut)
					ret_stats->first_cut_frame = ret_stats->frames;
				ret_stats->frames_cut++;
			}
		}
		if (err) {
			replay_err(errbuf, errsize,
				   "%s: frame %llu (%u bytes): the datapath could not run it: %s",
				   name, (unsigned long long)ret_stats->frames, hdr->caplen,
				   strerror(-err));
			goto out;
		}
		ret_stats->frames_run++;
		rc = loupe_datapath_drain(dp);
		if (rc < 0) {
			err = rc;
			/* The callback's own error (e.g. EPIPE on output) needs no sentence here. */
			replay_err(errbuf, errsize, "%s: frame %llu: reading events failed: %s",
				   name, (unsigned long long)ret_stats->frames, strerror(-err));
			goto out;
		}
	}
	/* the capture is over: so is every flow it opened */
	err = replay_end_flows(dp, &run);
	if (err)
		goto out;

out:
	if (dp && loupe_datapath_read_counters(dp, &ret_stats->counters) == 0)
		ret_stats->have_counters = true;
	loupe_datapath_free(dp);
	if (pcap)
		pcap_close(pcap);
	return err;
}
