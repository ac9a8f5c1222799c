/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replay of a capture file (pcap or pcapng, Ethernet) through the real datapath with
 * BPF_PROG_TEST_RUN, one frame at a time and in order, handing each decoded event to a
 * callback. Not for printing (cmd_replay.c does that) nor for live traffic (the agent).
 */
#ifndef LOUPE_CLI_REPLAY_H
#define LOUPE_CLI_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "loupe/datapath.h"
#include "policy.h"

/* BPF_PROG_TEST_RUN refuses a frame shorter than an Ethernet header. */
#define LOUPE_REPLAY_FRAME_MIN 14

/* BPF_PROG_TEST_RUN's skb comes from the loopback device: every frame is on ifindex 1. */
#define LOUPE_REPLAY_IFINDEX 1

struct loupe_replay_opts {
	/* Direction of a frame that opens a new flow; later frames take their flow's. */
	enum loupe_direction direction;
	/*
	 * A policy set put in force before the first frame (NULL: none): verdicts are shown as
	 * POLICY_VERDICT events with their policy and rule, denied frames counted. A dry run:
	 * nothing is sent anywhere, the capture is not changed.
	 */
	const struct loupe_policy_set *policy;
	/* The interface name the frames count as coming from, for podSelector.interfaces
	 * (NULL: none, so a policy that selects pods by interface name selects none). */
	const char *iface;
	/*
	 * A pcap file (nanosecond timestamps, Ethernet) to write each frame to as the program
	 * left it: rewritten by the policies' rewrites, a tag it pushed (skb metadata to the
	 * kernel) put into the frame as a NIC would send it; frames the program dropped and
	 * frames not run (too short) are not written. NULL: none.
	 */
	const char *write_pcap;
};

struct loupe_replay_stats {
	uint64_t frames;	    /* records read from the file */
	uint64_t frames_run;	    /* handed to the datapath */
	uint64_t frames_short;	    /* shorter than LOUPE_REPLAY_FRAME_MIN: skipped */
	uint64_t frames_snapped;    /* caplen < len: replayed as captured */
	uint64_t first_short_frame; /* 1-based number of the first skipped frame, 0 if none */
	uint64_t frames_cut; /* longer than BPF_PROG_TEST_RUN takes: replayed cut to its limit */
	uint64_t first_cut_frame;
	uint32_t run_max; /* that limit, when a frame was cut */
	uint64_t events;  /* handed to the callback, = the last seq */
	uint64_t events_by_kind[LOUPE_EV_KIND_MAX];
	uint64_t records_bad;		/* ring buffer records that did not decode: dropped */
	uint64_t frames_dropped;	/* the program said TC_ACT_SHOT: a deny verdict */
	uint64_t frames_written;	/* to opts.write_pcap */
	uint64_t frames_changed;	/* written with other bytes than they came with */
	uint32_t policy_generation;	/* the set's, when opts.policy */
	uint64_t verdicts_by_action[4]; /* POLICY_VERDICT events by enum loupe_event_action */
	bool have_counters;		/* counters below were read from the datapath */
	struct loupe_counters counters;
};

/*
 * Called for each event in the order the datapath emitted them, with ev->seq numbered from
 * 1. A non-zero return stops the replay and is returned by loupe_replay_file().
 */
typedef int (*loupe_replay_event_fn)(void *ctx, struct loupe_event *ev);

/*
 * Replays the capture at @path ("-" for standard input). @ret_stats is filled as far as the
 * replay got, also on error. On error, @errbuf holds one sentence naming the file and the
 * problem. Returns 0 or -errno: -ENOENT, -EACCES, -EISDIR... (cannot open), -EINVAL (not a
 * capture file), -EPROTONOSUPPORT (link type not Ethernet), -EIO (truncated or unreadable
 * record, or writing opts.write_pcap failed), a datapath error, or the callback's return.
 */
int loupe_replay_file(const char *path, const struct loupe_replay_opts *opts,
		      loupe_replay_event_fn on_event, void *ctx,
		      struct loupe_replay_stats *ret_stats, char *errbuf, size_t errsize);

#endif
