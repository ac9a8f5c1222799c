// SPDX-License-Identifier: Apache-2.0
/*
 * Running a program to completion and capturing its output, for Criterion tests; see proc.h.
 * Not for daemons the test has to stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include "proc.h"

extern char **environ;

void loupe_tmpdir_create(char *dir, const char *template)
{
	snprintf(dir, LOUPE_TMPDIR_MAX, "%s", template);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void loupe_tmpdir_remove(char *dir)
{
	if (dir[0])
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

char *loupe_tmpdir_path(const char *dir, const char *fmt, ...)
{
	char *name, *p;
	va_list ap;

	va_start(ap, fmt);
	cr_assert(vasprintf(&name, fmt, ap) > 0);
	va_end(ap);
	cr_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	free(name);
	return p;
}

char *loupe_proc_read_all(const char *path, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	f = fopen(path, "rb");
	if (!f)
		return NULL;
	if (getdelim(&buf, &len, '\0', f) < 0) {
		free(buf);
		buf = strdup("");
	}
	if (ret_len)
		*ret_len = strlen(buf);
	fclose(f);
	return buf;
}

struct loupe_proc_result loupe_proc_run(const char *dir, char *const argv[])
{
	char *out_path = loupe_tmpdir_path(dir, "stdout"),
	     *err_path = loupe_tmpdir_path(dir, "stderr");
	posix_spawn_file_actions_t fa;
	struct loupe_proc_result r = { 0 };
	int status, err;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(err, 0, "cannot run %s: %s", argv[0], strerror(err));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r.out = loupe_proc_read_all(out_path, NULL);
	r.err = loupe_proc_read_all(err_path, NULL);
	cr_assert(r.out && r.err, "cannot read the output of %s", argv[0]);
	remove(out_path);
	remove(err_path);
	free(out_path);
	free(err_path);
	return r;
}

void loupe_proc_result_free(struct loupe_proc_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}
