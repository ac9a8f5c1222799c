/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers for running a program and reading what it wrote: a temp dir per test, a child
 * run to completion with its stdout and stderr captured in files of that dir, a file read
 * whole. They assert through Criterion, so they are for Criterion tests only.
 * Not for long-running children (daemons with timeouts and signals): the tests that start
 * agents keep their own process control.
 */
#ifndef LOUPE_TEST_PROC_H
#define LOUPE_TEST_PROC_H

#include <stddef.h>

#define LOUPE_TMPDIR_MAX 64

/* What a finished child did. */
struct loupe_proc_result {
	int status; /* exit code, or 128 + signal */
	char *out;
	char *err;
};

/* mkdtemp() of @template (…XXXXXX) into @dir[LOUPE_TMPDIR_MAX]; asserts it worked. */
void loupe_tmpdir_create(char *dir, const char *template);
/* Removes @dir and all below it, then empties @dir; an empty @dir is left alone. */
void loupe_tmpdir_remove(char *dir);
/* A fresh "@dir/<printf of @fmt>", to free(). */
char *loupe_tmpdir_path(const char *dir, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The whole of @path, NUL-terminated, to free(); NULL when it cannot be opened. */
char *loupe_proc_read_all(const char *path, size_t *ret_len);

/*
 * Runs @argv (NULL-terminated; argv[0] looked up in PATH when it has no '/') without a shell,
 * stdin from /dev/null, stdout and stderr to files of @dir, which are read back whole.
 */
struct loupe_proc_result loupe_proc_run(const char *dir, char *const argv[]);
void loupe_proc_result_free(struct loupe_proc_result *r);

#endif
