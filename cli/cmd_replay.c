// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl replay: options, event output (text or proto3 JSON lines) and the summary.
 * The replay itself is replay.c; not for reading captures or running the datapath here.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "event.h"
#include "event_json.h"
#include "event_text.h"
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
		"usage: loupectl replay [-o text|json] [--direction egress|ingress] [--stats] "
		"FILE\n"
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

static void replay_summary(const char *path, const struct loupe_replay_stats *st)
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

int loupe_cmd_replay(int argc, char **argv)
{
	enum {
		OPT_STATS = 0x100
	};
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "direction", required_argument, NULL, 'd' },
		{ "stats", no_argument, NULL, OPT_STATS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct loupe_replay_opts ropts = { .direction = LOUPE_DIR_POD_EGRESS };
	struct replay_out ro = { .format = REPLAY_TEXT, .out = stdout };
	struct loupe_replay_stats st;
	char errbuf[1024];
	bool stats = false;
	const char *path, *name;
	int c, err;

	while ((c = getopt_long(argc, argv, ":o:d:h", opts, NULL)) != -1) {
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
	path = argv[optind];
	name = strcmp(path, "-") == 0 ? "standard input" : path;

	err = loupe_replay_file(path, &ropts, replay_print, &ro, &st, errbuf, sizeof(errbuf));
	/* events already printed stay valid: flush them before any error message */
	if (fflush(ro.out) == EOF && !err) {
		fprintf(stderr, "loupectl replay: writing the events failed: %s\n",
			strerror(errno));
		return EXIT_FAILURE;
	}
	/* no summary when not a frame was read: the error says it all */
	if (!err || st.frames) {
		if (ro.format == REPLAY_TEXT || stats)
			replay_summary(name, &st);
		else
			replay_warnings(name, &st);
	}
	if (err) {
		fprintf(stderr, "loupectl replay: %s\n", errbuf[0] ? errbuf : strerror(-err));
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}
