// SPDX-License-Identifier: Apache-2.0
/*
 * Replay of a capture file through the real datapath: libpcap reads pcap or pcapng with
 * nanosecond timestamps, every frame goes through loupe_datapath_run() in file order (one
 * datapath, so flow state carries over as with live traffic) and the ring buffer is drained
 * after each frame, so events come out in frame order. A policy set, when given, is put in
 * force on that datapath before the first frame, so verdicts come out as they would on a
 * pod's interface; with an output file, each frame is also written as the program left it
 * (rewrites applied), for tshark. Not for printing or option parsing (cmd_replay.c) nor for
 * live links (the agent).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <pcap/pcap.h>

#include "datapath.h"
#include "event.h"
#include "pipeline.h"
#include "policy_apply.h"
#include "replay.h"

struct replay_run {
	loupe_replay_event_fn on_event;
	void *ctx;
	struct loupe_replay_stats *stats;
	const struct loupe_policy_runtime *policy;
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
	if (ev.kind == LOUPE_EV_POLICY_VERDICT) {
		loupe_pipeline_name_verdict(run->policy, &ev);
		if ((unsigned int)ev.verdict.action < 4)
			run->stats->verdicts_by_action[ev.verdict.action]++;
	}
	if (ev.kind == LOUPE_EV_REWRITE)
		loupe_pipeline_name_rewrite(run->policy, &ev);
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

/* ---- the output capture ------------------------------------------------------------------ */

struct replay_writer {
	pcap_t *dead;
	pcap_dumper_t *dumper;
	uint8_t *out; /* the frame as the program left it */
	size_t out_cap;
	uint8_t *frame; /* what is written: out, a pushed tag, the part not run */
	size_t frame_cap;
};

static void replay_writer_close(struct replay_writer *w)
{
	if (w->dumper)
		pcap_dump_close(w->dumper);
	if (w->dead)
		pcap_close(w->dead);
	free(w->out);
	free(w->frame);
	memset(w, 0, sizeof(*w));
}

/* Nanosecond pcap, Ethernet, the largest snaplen libpcap writes. */
static int replay_writer_open(struct replay_writer *w, const char *path, char *errbuf,
			      size_t errsize)
{
	memset(w, 0, sizeof(*w));
	w->out_cap = loupe_datapath_run_max() + 64;
	w->out = malloc(w->out_cap);
	w->dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144,
						       PCAP_TSTAMP_PRECISION_NANO);
	if (!w->out || !w->dead) {
		replay_writer_close(w);
		replay_err(errbuf, errsize, "%s: out of memory", path);
		return -ENOMEM;
	}
	w->dumper = pcap_dump_open(w->dead, path);
	if (!w->dumper) {
		replay_err(errbuf, errsize, "%s: cannot write the output capture: %s", path,
			   pcap_geterr(w->dead));
		replay_writer_close(w);
		return -EIO;
	}
	return 0;
}

/*
 * The key of @f's flow with its sender as the pod (as the datapath builds it: IPv4-mapped
 * addresses, echo ids as ports for ICMP echo, zero ports for other ICMP); false for a frame
 * the datapath tracks no flow for (not IP, a later fragment, headers cut short).
 */
static bool replay_frame_key(const uint8_t *f, size_t len, struct loupe_flow_key *ret)
{
	size_t off = 14, l4;
	uint16_t proto;
	uint8_t next;

	memset(ret, 0, sizeof(*ret));
	if (len < off)
		return false;
	proto = (uint16_t)(f[12] << 8 | f[13]);
	for (int i = 0; i < 2 && (proto == 0x8100 || proto == 0x88a8); i++) {
		if (len < off + 4)
			return false;
		proto = (uint16_t)(f[off + 2] << 8 | f[off + 3]);
		off += 4;
	}
	if (proto == 0x0800) {
		if (len < off + 20 || (f[off] >> 4) != 4 || (f[off] & 0xf) < 5)
			return false;
		if (((f[off + 6] << 8 | f[off + 7]) & 0x1fff) != 0)
			return false; /* a later fragment */
		ret->pod_addr[10] = ret->pod_addr[11] = 0xff;
		ret->peer_addr[10] = ret->peer_addr[11] = 0xff;
		memcpy(ret->pod_addr + 12, f + off + 12, 4);
		memcpy(ret->peer_addr + 12, f + off + 16, 4);
		next = f[off + 9];
		l4 = off + (size_t)(f[off] & 0xf) * 4;
	} else if (proto == 0x86dd) {
		if (len < off + 40 || (f[off] >> 4) != 6)
			return false;
		memcpy(ret->pod_addr, f + off + 8, 16);
		memcpy(ret->peer_addr, f + off + 24, 16);
		next = f[off + 6];
		l4 = off + 40;
		/* extension headers, at most 6 as the datapath skips */
		for (int i = 0;; i++) {
			size_t hlen;

			if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
			    next != IPPROTO_DSTOPTS && next != IPPROTO_AH &&
			    next != IPPROTO_FRAGMENT)
				break;
			if (i == 6 || len < l4 + 8)
				return false;
			if (next == IPPROTO_FRAGMENT) {
				if (((f[l4 + 2] << 8 | f[l4 + 3]) & 0xfff8) != 0)
					return false; /* a later fragment */
				hlen = 8;
			} else if (next == IPPROTO_AH) {
				hlen = ((size_t)f[l4 + 1] + 2) * 4;
			} else {
				hlen = ((size_t)f[l4 + 1] + 1) * 8;
			}
			next = f[l4];
			l4 += hlen;
		}
	} else {
		return false;
	}
	ret->protocol = next;
	switch (next) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (len < l4 + 4)
			return false;
		memcpy(&ret->pod_port, f + l4, 2);
		memcpy(&ret->peer_port, f + l4 + 2, 2);
		return true;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (len < l4 + 8)
			return false;
		if (next == IPPROTO_ICMP ? f[l4] == 8 || f[l4] == 0
					 : f[l4] == 128 || f[l4] == 129) {
			memcpy(&ret->pod_port, f + l4 + 4, 2);
			memcpy(&ret->peer_port, f + l4 + 4, 2);
		}
		return true;
	default:
		return true;
	}
}

/*
 * The VID the program pushed onto @f (the frame as it came), from its flow: a tag goes onto
 * every packet of its client when the flow's rewrite pushes one. 0 when none.
 */
static uint16_t replay_pushed_vid(const struct loupe_datapath *dp, const uint8_t *f, size_t len)
{
	struct loupe_flow_key key, rev;
	struct loupe_flow flow;

	if (!replay_frame_key(f, len, &key))
		return 0;
	/* the sender as the pod: from the client when the pod opened the flow */
	if (loupe_datapath_flow_lookup(dp, &key, &flow) == 0)
		return (flow.rw_actions & LOUPE_RW_VLAN_PUSH) && flow.origin == LOUPE_DIR_POD_EGRESS
			       ? flow.rw_vlan_id
			       : 0;
	memcpy(rev.pod_addr, key.peer_addr, 16);
	memcpy(rev.peer_addr, key.pod_addr, 16);
	rev.pod_port = key.peer_port;
	rev.peer_port = key.pod_port;
	rev.protocol = key.protocol;
	memset(rev.pad, 0, sizeof(rev.pad));
	if (loupe_datapath_flow_lookup(dp, &rev, &flow) == 0)
		return (flow.rw_actions & LOUPE_RW_VLAN_PUSH) &&
				       flow.origin == LOUPE_DIR_POD_INGRESS
			       ? flow.rw_vlan_id
			       : 0;
	return 0;
}

/*
 * Writes the frame the program left in w->out (@out_len bytes, of the @run_len it was given):
 * with the tag it pushed, if any, after the MAC addresses, and the frame's bytes past
 * @run_len (beyond BPF_PROG_TEST_RUN's limit: no rewrite reaches that far) as they came.
 */
static int replay_write_frame(struct replay_writer *w, const struct loupe_datapath *dp,
			      const struct pcap_pkthdr *hdr, const uint8_t *data, size_t run_len,
			      size_t out_len, struct loupe_replay_stats *stats)
{
	uint16_t vid = replay_pushed_vid(dp, data, hdr->caplen);
	size_t tail = hdr->caplen > run_len ? hdr->caplen - run_len : 0;
	size_t n = out_len + (vid ? 4 : 0) + tail, o = 0;
	struct pcap_pkthdr oh = *hdr;

	if (out_len < 12 || out_len > w->out_cap)
		return -EIO;
	if (n > w->frame_cap) {
		uint8_t *f = realloc(w->frame, n);

		if (!f)
			return -ENOMEM;
		w->frame = f;
		w->frame_cap = n;
	}
	memcpy(w->frame, w->out, 12);
	o = 12;
	if (vid) {
		w->frame[o++] = 0x81;
		w->frame[o++] = 0x00;
		w->frame[o++] = (uint8_t)(vid >> 8);
		w->frame[o++] = (uint8_t)vid;
	}
	memcpy(w->frame + o, w->out + 12, out_len - 12);
	o += out_len - 12;
	memcpy(w->frame + o, data + run_len, tail);
	o += tail;
	oh.caplen = (bpf_u_int32)o;
	oh.len = (bpf_u_int32)((int64_t)hdr->len + (int64_t)o - (int64_t)hdr->caplen);
	pcap_dump((u_char *)w->dumper, &oh, w->frame);
	stats->frames_written++;
	if (o != hdr->caplen || memcmp(w->frame, data, o))
		stats->frames_changed++;
	return 0;
}

/* One frame through the program; with @w, the frame as it left it into w->out. */
static int replay_run_frame(struct loupe_datapath *dp, enum loupe_direction dir,
			    const uint8_t *data, size_t len, size_t wire_len, uint64_t ts_ns,
			    struct replay_writer *w, size_t *ret_out_len, int *ret_action)
{
	if (!w)
		return loupe_datapath_run_wire(dp, dir, data, len, wire_len, ts_ns, ret_action);
	return loupe_datapath_run_wire_out(dp, dir, data, len, wire_len, ts_ns, w->out, w->out_cap,
					   ret_out_len, ret_action);
}

/* The set in force on the replay's datapath, the frames' interface selected by its name. */
static int replay_apply(struct loupe_datapath *dp, const struct loupe_replay_opts *opts,
			const char *name, struct loupe_policy_runtime **ret_rt,
			struct loupe_replay_stats *stats, char *errbuf, size_t errsize)
{
	struct loupe_policy_iface iface = { .ifindex = LOUPE_REPLAY_IFINDEX, .name = opts->iface };
	struct loupe_policy_error perr;
	char line[1280];
	int err;

	err = loupe_policy_runtime_open(dp, ret_rt);
	if (err) {
		replay_err(errbuf, errsize, "%s: the datapath has no policy maps: %s", name,
			   strerror(-err));
		return err;
	}
	err = loupe_policy_apply(*ret_rt, opts->policy, &iface, opts->iface ? 1 : 0, &perr);
	if (err) {
		loupe_policy_error_format(&perr, line, sizeof(line));
		replay_err(errbuf, errsize, "the policies cannot be put in force: %s", line);
		return err;
	}
	stats->policy_generation = loupe_policy_generation(*ret_rt);
	return 0;
}

int loupe_replay_file(const char *path, const struct loupe_replay_opts *opts,
		      loupe_replay_event_fn on_event, void *ctx,
		      struct loupe_replay_stats *ret_stats, char *errbuf, size_t errsize)
{
	struct loupe_datapath_opts dp_opts = { .replay = true };
	struct replay_run run = { .on_event = on_event, .ctx = ctx, .stats = ret_stats };
	const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
	struct loupe_datapath *dp = NULL;
	struct loupe_policy_runtime *rt = NULL;
	struct replay_writer w = { 0 };
	struct pcap_pkthdr *hdr;
	size_t run_len, out_len = 0;
	bool writing = false;
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
	if (opts->policy) {
		err = replay_apply(dp, opts, name, &rt, ret_stats, errbuf, errsize);
		if (err)
			goto out;
		run.policy = rt;
	}
	if (opts->write_pcap) {
		err = replay_writer_open(&w, opts->write_pcap, errbuf, errsize);
		if (err)
			goto out;
		writing = true;
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
		run_len = hdr->caplen;
		err = replay_run_frame(dp, opts->direction, data, run_len, hdr->len, ts_ns,
				       writing ? &w : NULL, &out_len, &action);
		if (err == -EINVAL && hdr->caplen > loupe_datapath_run_max()) {
			/*
			 * BPF_PROG_TEST_RUN takes at most a page less headroom and tailroom. The
			 * refused run did not reach the program, so retrying changes no state; the
			 * cut frame is like one cut by a snaplen, which the datapath handles.
			 */
			run_len = loupe_datapath_run_max();
			err = replay_run_frame(dp, opts->direction, data, run_len, hdr->len, ts_ns,
					       writing ? &w : NULL, &out_len, &action);
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
		if (action == TC_ACT_SHOT)
			ret_stats->frames_dropped++;
		else if (writing) {
			err = replay_write_frame(&w, dp, hdr, data, run_len, out_len, ret_stats);
			if (err) {
				replay_err(errbuf, errsize,
					   "%s: frame %llu: cannot write it to %s: %s", name,
					   (unsigned long long)ret_stats->frames, opts->write_pcap,
					   strerror(-err));
				goto out;
			}
		}
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
	if (writing && (pcap_dump_flush(w.dumper) || ferror(pcap_dump_file(w.dumper)))) {
		replay_err(errbuf, errsize, "%s: writing the output capture failed",
			   opts->write_pcap);
		err = -EIO;
	}

out:
	if (writing)
		replay_writer_close(&w);
	if (dp && loupe_datapath_read_counters(dp, &ret_stats->counters) == 0)
		ret_stats->have_counters = true;
	loupe_policy_runtime_free(rt); /* its map fds are the datapath's */
	loupe_datapath_free(dp);
	if (pcap)
		pcap_close(pcap);
	return err;
}
