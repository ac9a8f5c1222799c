/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What loupectl's subcommands share: their entry points for the dispatch table in
 * loupectl.c, exit codes and the usage-error helper. Not for the work they do (modules).
 */
#ifndef LOUPE_CLI_CMD_H
#define LOUPE_CLI_CMD_H

#include <stdio.h>
#include <stdlib.h>

/* Exit codes: EXIT_SUCCESS, EXIT_FAILURE (the command failed), and this for a bad command line. */
#define LOUPE_EXIT_USAGE 2

/* A subcommand: argv[0] is its name; getopt state is reset before the call. */
typedef int (*loupe_cmd_fn)(int argc, char **argv);

int loupe_cmd_replay(int argc, char **argv);
void loupe_cmd_replay_usage(FILE *out);

/* Prints "loupectl CMD: MESSAGE" and a hint to --help on stderr; returns LOUPE_EXIT_USAGE. */
int loupe_cmd_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The message for getopt_long's '?' or ':' return (opterr is off). */
int loupe_cmd_getopt_error(const char *cmd, int c, char **argv);

#endif
