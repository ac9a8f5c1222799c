// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl's entry point: global options and the table of subcommands. Each subcommand lives
 * in its own cmd_*.c and parses its own options. Not for the commands' work itself.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "cmd.h"

#ifndef LOUPE_VERSION
#define LOUPE_VERSION "unknown"
#endif

static bool verbose;

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

/* cmd_policy.c (cmd.h could carry these) */
int loupe_cmd_policy(int argc, char **argv);
void loupe_cmd_policy_usage(FILE *out);
/* the controller's commands: cmd_apply.c, cmd_get.c, cmd_observe.c */
int loupe_cmd_apply(int argc, char **argv);
void loupe_cmd_apply_usage(FILE *out);
int loupe_cmd_delete(int argc, char **argv);
void loupe_cmd_delete_usage(FILE *out);
int loupe_cmd_get(int argc, char **argv);
void loupe_cmd_get_usage(FILE *out);
int loupe_cmd_observe(int argc, char **argv);
void loupe_cmd_observe_usage(FILE *out);

static const struct loupe_cmd {
	const char *name;
	loupe_cmd_fn fn;
	const char *summary;
	void (*usage)(FILE *out); /* NULL: the summary says it all */
} loupe_cmds[] = {
	{ "replay", loupe_cmd_replay,
	  "run a capture file (pcap, pcapng) through the datapath, print its events",
	  loupe_cmd_replay_usage },
	{ "policy", loupe_cmd_policy, "validate policy files offline (policy check FILE|DIR...)",
	  loupe_cmd_policy_usage },
	{ "apply", loupe_cmd_apply, "send policies to the controller (apply -f FILE|DIR)",
	  loupe_cmd_apply_usage },
	{ "delete", loupe_cmd_delete, "delete policies from the controller (delete policy NAME)",
	  loupe_cmd_delete_usage },
	{ "get", loupe_cmd_get, "show the controller's policies or agents (get policies|agents)",
	  loupe_cmd_get_usage },
	{ "observe", loupe_cmd_observe, "show events from the controller, past and live",
	  loupe_cmd_observe_usage },
	{ "help", cmd_help, "show help for loupectl or for one command", NULL },
	{ "version", cmd_version, "print loupectl's version", NULL },
};

#define LOUPE_CMDS_N (sizeof(loupe_cmds) / sizeof(loupe_cmds[0]))

static const struct loupe_cmd *cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < LOUPE_CMDS_N; i++)
		if (strcmp(loupe_cmds[i].name, name) == 0)
			return &loupe_cmds[i];
	return NULL;
}

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: loupectl [-v] [--help] [--version] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < LOUPE_CMDS_N; i++)
		fprintf(out, "  %-10s %s\n", loupe_cmds[i].name, loupe_cmds[i].summary);
	fprintf(out,
		"\noptions:\n"
		"  -v, --verbose  show libbpf's messages (the verifier's log when loading fails)\n"
		"  -h, --help     this help\n"
		"  -V, --version  loupectl's version\n"
		"  --controller ADDR, --token-file FILE, --tls-ca FILE, --tls-server-name NAME,\n"
		"  --insecure     the controller's connection, for apply, delete, get, observe\n"
		"                 (also after the command; LOUPE_CONTROLLER, default\n"
		"                 unix:/run/loupe/controller.sock; LOUPE_TOKEN)\n"
		"\nloupectl help COMMAND (or loupectl COMMAND --help) shows a command's options.\n"
		"Exit status: 0 success, 1 the command failed, 2 bad command line.\n");
}

int loupe_cmd_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loupectl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'loupectl %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
	return LOUPE_EXIT_USAGE;
}

int loupe_cmd_getopt_error(const char *cmd, int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "?";

	if (c == ':')
		return loupe_cmd_usage_error(cmd, "option '%s' needs a value", arg);
	if (optopt)
		return loupe_cmd_usage_error(cmd, "unknown option '-%c'", optopt);
	return loupe_cmd_usage_error(cmd, "unknown option '%s'", arg);
}

static int cmd_help(int argc, char **argv)
{
	const struct loupe_cmd *cmd;

	if (argc < 2) {
		usage(stdout);
		return EXIT_SUCCESS;
	}
	if (argc > 2)
		return loupe_cmd_usage_error(NULL, "help takes at most one COMMAND");
	cmd = cmd_find(argv[1]);
	if (!cmd)
		return loupe_cmd_usage_error(NULL, "help: unknown command '%s'", argv[1]);
	if (cmd->usage)
		cmd->usage(stdout);
	else
		printf("usage: loupectl %s\n\n%s\n", cmd->name, cmd->summary);
	return EXIT_SUCCESS;
}

static int cmd_version(int argc, char **argv)
{
	if (argc > 1)
		return loupe_cmd_usage_error("version", "takes no arguments");
	printf("loupectl %s\n", LOUPE_VERSION);
	return EXIT_SUCCESS;
}

/* libbpf prints to stderr by default: the verifier's log is for developers, on request */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (!verbose || level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "verbose", no_argument, NULL, 'v' },
		/* the controller's connection, for every command that talks to it (ctl.c) */
		{ "controller", required_argument, NULL, 1000 },
		{ "token-file", required_argument, NULL, 1001 },
		{ "tls-ca", required_argument, NULL, 1002 },
		{ "tls-server-name", required_argument, NULL, 1003 },
		{ "insecure", no_argument, NULL, 1004 },
		{ NULL, 0, NULL, 0 },
	};
	const struct loupe_cmd *cmd;
	int c;

	opterr = 0; /* our messages, with the command's name and the --help hint */
	/* '+': stop at the command name, the rest are the command's arguments */
	while ((c = getopt_long(argc, argv, "+:hVv", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'V':
			return cmd_version(1, argv);
		case 'v':
			verbose = true;
			break;
		case 1000:
			setenv("LOUPE_CONTROLLER", optarg, 1);
			break;
		case 1001:
			setenv("LOUPE_TOKEN_FILE", optarg, 1);
			break;
		case 1002:
			setenv("LOUPE_TLS_CA", optarg, 1);
			break;
		case 1003:
			setenv("LOUPE_TLS_SERVER_NAME", optarg, 1);
			break;
		case 1004:
			setenv("LOUPE_INSECURE", "true", 1);
			break;
		default:
			return loupe_cmd_getopt_error(NULL, c, argv);
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "loupectl: missing COMMAND\n\n");
		usage(stderr);
		return LOUPE_EXIT_USAGE;
	}
	cmd = cmd_find(argv[optind]);
	if (!cmd)
		return loupe_cmd_usage_error(NULL, "unknown command '%s'", argv[optind]);

	libbpf_set_print(libbpf_print);
	argv += optind;
	argc -= optind;
	optind = 0; /* GNU getopt: 0 re-initialises it for the command's own parsing */
	return cmd->fn(argc, argv);
}
