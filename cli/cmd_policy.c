// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl policy: "check" validates policy files and directories offline and prints each
 * input's verdict, or the set in its normalised JSON form. Parsing and validating are
 * policy.c's; not for compiling or applying policies.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "policy.h"

/* Declared in loupectl.c next to the dispatch table. */
int loupe_cmd_policy(int argc, char **argv);
void loupe_cmd_policy_usage(FILE *out);

void loupe_cmd_policy_usage(FILE *out)
{
	fprintf(out,
		"usage: loupectl policy check [-o text|json] FILE|DIR...\n"
		"\n"
		"Validates loupe policies (loupe.dev/v1 Policy, an array of them or a PolicyList)\n"
		"without an agent or privileges. A DIR is read as the agent reads it: its *.json\n"
		"files in name order, a mounted ConfigMap through its ..data link. Each input is "
		"a\n"
		"set of its own: \"OK  INPUT: N policies, M rules\", or the first problem as\n"
		"\"FILE: JSON.PATH: sentence (line L, column C)\" on stderr. Warnings (valid, but\n"
		"probably not what was meant) go to stderr and do not fail the check.\n"
		"\n"
		"  -o, --output FORMAT     text (default), or json: each valid input's set on\n"
		"                          stdout, normalised (lower-case names, defaults filled\n"
		"                          in, policies in evaluation order); OK lines on stderr\n"
		"  -h, --help              this help\n"
		"\n"
		"Exit status: 0 every input is valid, 1 one is not (or cannot be read), 2 a bad\n"
		"command line. The format: docs/policy.md.\n");
}

static void print_error(const struct loupe_policy_error *e, const char *prefix)
{
	char line[1280];

	loupe_policy_error_format(e, line, sizeof(line));
	fprintf(stderr, "%s%s\n", prefix, line);
}

/* 0 valid, 1 invalid or unreadable, as the exit status counts them. */
static int check_one(const char *input, bool json)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error err;
	unsigned int i;
	char *text;
	int r;

	r = loupe_policy_load_path(input, &set, &err);
	if (r < 0) {
		print_error(&err, "");
		return 1;
	}
	for (i = 0; i < set->n_warnings; i++)
		print_error(&set->warnings[i], "warning: ");
	fprintf(json ? stderr : stdout, "OK  %s: %u %s, %u %s\n", input, set->n_policies,
		set->n_policies == 1 ? "policy" : "policies", set->n_rules,
		set->n_rules == 1 ? "rule" : "rules");
	if (json) {
		loupe_policy_set_sort(set);
		text = loupe_policy_set_to_json(set);
		if (!text) {
			fprintf(stderr, "loupectl policy check: %s: out of memory\n", input);
			loupe_policy_set_free(set);
			return 1;
		}
		printf("%s\n", text);
		free(text);
	}
	loupe_policy_set_free(set);
	return 0;
}

static int policy_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	int c, i, bad = 0;

	while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (strcmp(optarg, "json") == 0)
				json = true;
			else if (strcmp(optarg, "text") == 0)
				json = false;
			else
				return loupe_cmd_usage_error(
					"policy", "-o takes text or json, not '%s'", optarg);
			break;
		case 'h':
			loupe_cmd_policy_usage(stdout);
			return EXIT_SUCCESS;
		default:
			return loupe_cmd_getopt_error("policy", c, argv);
		}
	}
	if (optind >= argc)
		return loupe_cmd_usage_error("policy", "check needs at least one FILE or DIR");
	for (i = optind; i < argc; i++)
		bad |= check_one(argv[i], json);
	if (fflush(stdout) == EOF) {
		perror("loupectl policy check: stdout");
		return EXIT_FAILURE;
	}
	return bad ? EXIT_FAILURE : EXIT_SUCCESS;
}

int loupe_cmd_policy(int argc, char **argv)
{
	if (argc < 2)
		return loupe_cmd_usage_error("policy", "missing the subcommand: check");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		loupe_cmd_policy_usage(stdout);
		return EXIT_SUCCESS;
	}
	if (strcmp(argv[1], "check") == 0)
		return policy_check(argc - 1, argv + 1);
	return loupe_cmd_usage_error("policy", "unknown subcommand '%s' (there is: check)",
				     argv[1]);
}
