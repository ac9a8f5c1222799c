// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl replay: options, event output (text or proto3 JSON lines) and the summary, and
 * reading --policy. The replay itself is replay.c; not for reading captures or running the
 * datapath here.
 */
#include <errno.h>
#include <getopt.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "event.h"
#include "event_json.h"
#include "event_text.h"
#include "policy.h"
#include "replay.h"

enum replay_format {
	REPLAY_TEXT,
	REPLAY_JSON,
};

struct replay_out {
	enum replay_format format;
	FILE *out;
};

void loupe_cmd_replay_usage(FILE *out)
{
	fprintf(out,
		"usage: loupectl replay [-o text|json] [--direction egress|ingress] [--stats]\n"
		"                       [--policy FILE|DIR [--iface NAME]] [--write-pcap OUT]\n"
		"                       FILE\n"
		"\n"
		"Runs every frame of FILE (pcap or pcapng, Ethernet; '-' for standard input) in\n"
		"order through loupe's datapath with BPF_PROG_TEST_RUN and prints the events it\n"
		"emits. Needs root (it loads the BPF programs).\n"
		"\n"
		"  -o, --output FORMAT     text (default): one readable line per event;\n"
		"                          json: one loupe.v1.Event per line (proto3 JSON), seq "
		"from 1\n"
		"  -d, --direction DIR     direction of a frame that opens a new flow (default "
		"egress:\n"
		"                          the sender of a flow's first frame is the pod); later\n"
		"                          frames take their flow's direction\n"
		"      --stats             print the summary on stderr in json mode too\n"
		"                          (text mode always prints it)\n"
		"  -p, --policy FILE|DIR   put these policies in force first (as the agent reads\n"
		"                          them) and show each verdict (POLICY_VERDICT) and the\n"
		"                          packets a deny would drop; a dry run: nothing is sent,\n"
		"                          the capture is not changed\n"
		"      --iface NAME        the pod interface the frames count as coming from, for\n"
		"                          policies that select pods by interface name (default:\n"
		"                          none: such policies select no frame)\n"
		"  -w, --write-pcap OUT    write every frame the datapath let through to OUT "
		"(pcap,\n"
		"                          nanosecond timestamps) as it left the program: with\n"
		"                          --policy, rewritten (mapped, DSCP, VLAN, masked);\n"
		"                          dropped frames are not written\n"
		"  -h, --help              this help\n");
}

static int replay_print(void *ctx, struct loupe_event *ev)
{
	struct replay_out *ro = ctx;
	char line[LOUPE_EVENT_TEXT_MAX];
	char *json;

	if (ro->format == REPLAY_JSON) {
		json = loupe_event_to_json(ev);
		if (!json)
			return errno ? -errno : -ENOMEM;
		fputs(json, ro->out);
		free(json);
	} else {
		/* a line cut at LOUPE_EVENT_TEXT_MAX is still worth printing */
		loupe_event_text_format(ev, line, sizeof(line));
		fputs(line, ro->out);
	}
	if (fputc('\n', ro->out) == EOF)
		return -EIO;
	return 0;
}

static void replay_summary(const char *path, const struct loupe_replay_stats *st, bool policy,
			   const char *written)
{
	const struct loupe_counters *c = &st->counters;
	uint64_t perr = 0, lost = 0;
	bool first;
	int i;

	fprintf(stderr, "replay %s: %llu frames, %llu run through the datapath", path,
		(unsigned long long)st->frames, (unsigned long long)st->frames_run);
	if (st->frames_short)
		fprintf(stderr, ", %llu skipped (shorter than %d bytes)",
			(unsigned long long)st->frames_short, LOUPE_REPLAY_FRAME_MIN);
	if (st->frames_cut)
		fprintf(stderr,
			", %llu longer than %u bytes replayed cut to that (BPF_PROG_TEST_RUN's "
			"limit)",
			(unsigned long long)st->frames_cut, st->run_max);
	if (st->frames_snapped)
		fprintf(stderr, ", %llu cut by the capture's snaplen (replayed as captured)",
			(unsigned long long)st->frames_snapped);
	fprintf(stderr, "\n");

	fprintf(stderr, "events: %llu", (unsigned long long)st->events);
	first = true;
	for (i = 0; i < LOUPE_EV_KIND_MAX; i++) {
		if (!st->events_by_kind[i])
			continue;
		fprintf(stderr, "%s%s %llu", first ? " (" : ", ",
			loupe_event_kind_name((enum loupe_event_kind)i),
			(unsigned long long)st->events_by_kind[i]);
		first = false;
	}
	fprintf(stderr, "%s\n", first ? "" : ")");
	if (st->records_bad)
		fprintf(stderr, "undecodable ring buffer records: %llu (dropped)\n",
			(unsigned long long)st->records_bad);

	if (!st->have_counters)
		return;
	if (policy) {
		fprintf(stderr,
			"policies: generation %u, verdicts: %llu (ALLOW %llu, DENY %llu, AUDIT "
			"%llu)\n",
			st->policy_generation,
			(unsigned long long)st->events_by_kind[LOUPE_EV_POLICY_VERDICT],
			(unsigned long long)st->verdicts_by_action[LOUPE_EVENT_ACTION_ALLOW],
			(unsigned long long)st->verdicts_by_action[LOUPE_EVENT_ACTION_DENY],
			(unsigned long long)st->verdicts_by_action[LOUPE_EVENT_ACTION_AUDIT]);
		fprintf(stderr,
			"dropped by policy (a dry run: the capture is unchanged): %llu frames; "
			"packets egress %llu, ingress %llu; requests denied past the hold bound "
			"%llu; "
			"out-of-order segments %llu\n",
			(unsigned long long)st->frames_dropped,
			(unsigned long long)c->policy_dropped[LOUPE_DIR_POD_EGRESS],
			(unsigned long long)c->policy_dropped[LOUPE_DIR_POD_INGRESS],
			(unsigned long long)c->policy_bound_exceeded,
			(unsigned long long)c->policy_out_of_order);
		fprintf(stderr,
			"rewrites: %llu REWRITE events; packets rewritten egress %llu, ingress "
			"%llu; failed %llu; dropped by rate limits egress %llu, ingress %llu\n",
			(unsigned long long)st->events_by_kind[LOUPE_EV_REWRITE],
			(unsigned long long)c->rewritten[LOUPE_DIR_POD_EGRESS],
			(unsigned long long)c->rewritten[LOUPE_DIR_POD_INGRESS],
			(unsigned long long)c->rewrite_failed,
			(unsigned long long)c->rate_limited[LOUPE_DIR_POD_EGRESS],
			(unsigned long long)c->rate_limited[LOUPE_DIR_POD_INGRESS]);
	}
	if (written)
		fprintf(stderr, "written to %s: %llu frames, %llu of them changed\n", written,
			(unsigned long long)st->frames_written,
			(unsigned long long)st->frames_changed);
	for (i = 1; i < LOUPE_PERR_MAX; i++)
		perr += c->parse_errors[i];
	fprintf(stderr, "parse errors: %llu", (unsigned long long)perr);
	first = true;
	for (i = 1; i < LOUPE_PERR_MAX; i++) {
		if (!c->parse_errors[i])
			continue;
		fprintf(stderr, "%s%s %llu", first ? " (" : ", ",
			loupe_parse_error_name((enum loupe_parse_error)i),
			(unsigned long long)c->parse_errors[i]);
		first = false;
	}
	fprintf(stderr, "%s\n", first ? "" : ")");
	for (i = 0; i < LOUPE_EV_KIND_MAX; i++)
		lost += c->events_lost[i];
	fprintf(stderr, "events lost (ring buffer full): %llu\n", (unsigned long long)lost);
}

/* json without --stats keeps stderr quiet, except for what the user should not miss */
static void replay_warnings(const char *path, const struct loupe_replay_stats *st)
{
	uint64_t lost = 0;
	int i;

	if (st->frames_short)
		fprintf(stderr,
			"loupectl replay: %s: %llu frame(s) shorter than %d bytes skipped (the "
			"first "
			"is frame %llu): BPF_PROG_TEST_RUN needs a whole Ethernet header\n",
			path, (unsigned long long)st->frames_short, LOUPE_REPLAY_FRAME_MIN,
			(unsigned long long)st->first_short_frame);
	if (st->frames_cut)
		fprintf(stderr,
			"loupectl replay: %s: %llu frame(s) longer than %u bytes replayed cut to "
			"that "
			"(the first is frame %llu): BPF_PROG_TEST_RUN takes no more\n",
			path, (unsigned long long)st->frames_cut, st->run_max,
			(unsigned long long)st->first_cut_frame);
	if (st->records_bad)
		fprintf(stderr,
			"loupectl replay: %s: %llu undecodable ring buffer record(s) dropped\n",
			path, (unsigned long long)st->records_bad);
	for (i = 0; st->have_counters && i < LOUPE_EV_KIND_MAX; i++)
		lost += st->counters.events_lost[i];
	if (lost)
		fprintf(stderr,
			"loupectl replay: %s: %llu event(s) lost, the ring buffer was full\n", path,
			(unsigned long long)lost);
}

/* "FILE: PATH: sentence (line L, column C)" on stderr, as loupectl policy check prints it. */
static void replay_policy_error(const char *prefix, const struct loupe_policy_error *e)
{
	char line[1280];

	loupe_policy_error_format(e, line, sizeof(line));
	fprintf(stderr, "%s%s\n", prefix, line);
}

/*
 * Reads --policy before the capture: its errors need no privileges. A policy that selects pods
 * by interface name selects no frame without --iface: say so, it would look like no verdict.
 */
static int replay_read_policy(const char *path, const char *iface, struct loupe_policy_set **ret)
{
	struct loupe_policy_error perr;
	struct loupe_policy_set *set = NULL;
	unsigned int i;
	int err;

	err = loupe_policy_load_path(path, &set, &perr);
	if (err) {
		replay_policy_error("loupectl replay: ", &perr);
		return err;
	}
	for (i = 0; i < set->n_warnings; i++)
		replay_policy_error("loupectl replay: warning: ", &set->warnings[i]);
	for (i = 0; !iface && i < set->n_policies; i++) {
		const struct loupe_policy *p = &set->policies[i];

		if (p->selector.n_interfaces)
			fprintf(stderr,
				"loupectl replay: warning: %s: policy %s selects pods by interface "
				"name (%s%s): without --iface NAME it selects no frame of the "
				"capture\n",
				p->source ? p->source : path, p->name, p->selector.interfaces[0],
				p->selector.n_interfaces > 1 ? ", ..." : "");
	}
	*ret = set;
	return 0;
}

int loupe_cmd_replay(int argc, char **argv)
{
	enum {
		OPT_STATS = 0x100,
		OPT_IFACE,
	};
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "direction", required_argument, NULL, 'd' },
		{ "stats", no_argument, NULL, OPT_STATS },
		{ "policy", required_argument, NULL, 'p' },
		{ "iface", required_argument, NULL, OPT_IFACE },
		{ "write-pcap", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct loupe_replay_opts ropts = { .direction = LOUPE_DIR_POD_EGRESS };
	struct replay_out ro = { .format = REPLAY_TEXT, .out = stdout };
	struct loupe_replay_stats st;
	struct loupe_policy_set *set = NULL;
	const char *path, *name, *policy = NULL;
	char errbuf[1536];
	bool stats = false;
	int c, err;

	while ((c = getopt_long(argc, argv, ":o:d:p:w:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (strcmp(optarg, "text") == 0)
				ro.format = REPLAY_TEXT;
			else if (strcmp(optarg, "json") == 0)
				ro.format = REPLAY_JSON;
			else
				return loupe_cmd_usage_error(
					"replay", "unknown output format '%s' (text or json)",
					optarg);
			break;
		case 'd':
			if (strcmp(optarg, "egress") == 0)
				ropts.direction = LOUPE_DIR_POD_EGRESS;
			else if (strcmp(optarg, "ingress") == 0)
				ropts.direction = LOUPE_DIR_POD_INGRESS;
			else
				return loupe_cmd_usage_error(
					"replay", "unknown direction '%s' (egress or ingress)",
					optarg);
			break;
		case OPT_STATS:
			stats = true;
			break;
		case 'p':
			if (!optarg[0])
				return loupe_cmd_usage_error("replay",
							     "--policy needs a file or directory");
			policy = optarg;
			break;
		case OPT_IFACE:
			if (!optarg[0] || strlen(optarg) >= IF_NAMESIZE || strchr(optarg, '/'))
				return loupe_cmd_usage_error(
					"replay",
					"--iface '%s' is not an interface name (1 to %d "
					"characters, no '/')",
					optarg, IF_NAMESIZE - 1);
			ropts.iface = optarg;
			break;
		case 'w':
			/* standard output carries the events */
			if (!optarg[0] || strcmp(optarg, "-") == 0)
				return loupe_cmd_usage_error(
					"replay", "--write-pcap needs a file name ('-' is not one: "
						  "the events go to standard output)");
			ropts.write_pcap = optarg;
			break;
		case 'h':
			loupe_cmd_replay_usage(stdout);
			return EXIT_SUCCESS;
		default:
			return loupe_cmd_getopt_error("replay", c, argv);
		}
	}
	if (optind >= argc)
		return loupe_cmd_usage_error("replay", "missing FILE");
	if (argc - optind > 1)
		return loupe_cmd_usage_error("replay", "takes one FILE, got %d arguments",
					     argc - optind);
	if (ropts.iface && !policy)
		return loupe_cmd_usage_error("replay", "--iface goes with --policy");
	path = argv[optind];
	if (ropts.write_pcap && strcmp(ropts.write_pcap, path) == 0)
		return loupe_cmd_usage_error("replay",
					     "--write-pcap %s would overwrite the capture", path);
	name = strcmp(path, "-") == 0 ? "standard input" : path;

	if (policy) {
		if (replay_read_policy(policy, ropts.iface, &set))
			return EXIT_FAILURE;
		ropts.policy = set;
	}
	err = loupe_replay_file(path, &ropts, replay_print, &ro, &st, errbuf, sizeof(errbuf));
	loupe_policy_set_free(set);
	/* events already printed stay valid: flush them before any error message */
	if (fflush(ro.out) == EOF && !err) {
		fprintf(stderr, "loupectl replay: writing the events failed: %s\n",
			strerror(errno));
		return EXIT_FAILURE;
	}
	/* no summary when not a frame was read: the error says it all */
	if (!err || st.frames) {
		if (ro.format == REPLAY_TEXT || stats)
			replay_summary(name, &st, policy != NULL, ropts.write_pcap);
		else
			replay_warnings(name, &st);
	}
	if (err) {
		fprintf(stderr, "loupectl replay: %s\n", errbuf[0] ? errbuf : strerror(-err));
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}
