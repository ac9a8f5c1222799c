// SPDX-License-Identifier: Apache-2.0
/*
 * The standalone policy source (policy_watch.c) in a temp directory, no privileges: which
 * changes of a policy directory or file say "read again" (writes, renames over, removals, a
 * ConfigMap's ..data swap) and which do not (other files, dot files, a file still being
 * written), one answer for many pending changes, a directory that goes and comes back, and
 * loading through the watch. Not for parsing (test_policy.c) or applying policies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "policy_watch.h"

static char dir[64];
static struct loupe_policy_watch *w;

#define GOOD_POLICY                                                                                \
	"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\",\"metadata\":{\"name\":\"%s\"},"     \
	"\"spec\":{\"podSelector\":{},\"defaultAction\":\"deny\"}}"

static void setup(void)
{
	strcpy(dir, "/tmp/loupe-test-policy-watch-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	w = loupe_policy_watch_free(w);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(policy_watch, .init = setup, .fini = teardown, .timeout = 30);

static const char *path_of(const char *name)
{
	static char p[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static void write_file(const char *name, const char *text)
{
	FILE *f = fopen(path_of(name), "w");

	cr_assert_not_null(f, "%s: %s", name, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

static void write_policy(const char *name, const char *policy_name)
{
	char text[512];

	snprintf(text, sizeof(text), GOOD_POLICY, policy_name);
	write_file(name, text);
}

/* What the watch says now: 1 read again, 0 nothing. */
static int changed(void)
{
	int r = loupe_policy_watch_process(w);

	cr_assert_geq(r, 0, "process: %s", strerror(-r));
	return r;
}

static void open_watch(const char *name)
{
	int r = loupe_policy_watch_open(name ? path_of(name) : dir, &w);

	cr_assert_eq(r, 0, "open: %s", strerror(-r));
	cr_expect_geq(loupe_policy_watch_fd(w), 0);
	cr_expect(loupe_policy_watch_armed(w));
	cr_expect_eq(changed(), 0, "nothing happened yet");
}

Test(policy_watch, directory)
{
	open_watch(NULL);
	cr_expect_str_eq(loupe_policy_watch_path(w), dir);

	write_policy("a.json", "a");
	cr_expect_eq(changed(), 1, "a new *.json file");
	cr_expect_eq(changed(), 0, "drained: one answer");

	write_file("notes.txt", "x");
	cr_expect_eq(changed(), 0, "not a *.json file");
	write_policy(".hidden.json", "h");
	cr_expect_eq(changed(), 0, "names beginning with '.' are not read");
	write_file("4913", ""); /* vim's probe */
	unlink(path_of("4913"));
	cr_expect_eq(changed(), 0);

	write_policy("a.json", "a2");
	cr_expect_eq(changed(), 1, "rewritten in place");

	/* an editor's save: a temp file renamed over */
	write_policy(".a.json.swp", "a3");
	cr_assert_eq(rename(path_of(".a.json.swp"), path_of("a.json")), 0);
	cr_expect_eq(changed(), 1, "renamed over");

	cr_assert_eq(rename(path_of("a.json"), path_of("a.json.bak")), 0);
	cr_expect_eq(changed(), 1, "renamed away");
	cr_assert_eq(symlink("a.json.bak", path_of("b.json")), 0);
	cr_expect_eq(changed(), 1, "a link added");
	cr_assert_eq(unlink(path_of("b.json")), 0);
	cr_expect_eq(changed(), 1, "removed");

	/* many changes pending: one answer */
	for (int i = 0; i < 200; i++) {
		char name[32];

		snprintf(name, sizeof(name), "p%03d.json", i);
		write_policy(name, "p");
	}
	cr_expect_eq(changed(), 1);
	cr_expect_eq(changed(), 0);
}

/* A new file is read when it is closed, not half-written when it appears. */
Test(policy_watch, file_being_written)
{
	int fd;

	open_watch(NULL);
	fd = open(path_of("slow.json"), O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	cr_expect_eq(changed(), 0, "created, still empty");
	cr_assert_eq(write(fd, "{", 1), 1);
	cr_expect_eq(changed(), 0, "being written");
	cr_assert_eq(close(fd), 0);
	cr_expect_eq(changed(), 1, "closed after writing");
	/* a file created whole (a hard link) counts at once */
	cr_assert_eq(link(path_of("slow.json"), path_of("fast.json")), 0);
	cr_expect_eq(changed(), 1);
}

/* The kubelet's update of a mounted ConfigMap: a new ..<timestamp> dir, ..data swapped. */
Test(policy_watch, configmap_swap)
{
	cr_assert_eq(mkdir(path_of("..2026_11_27_01"), 0700), 0);
	write_policy("..2026_11_27_01/ai.json", "ai");
	cr_assert_eq(symlink("..2026_11_27_01", path_of("..data")), 0);
	cr_assert_eq(symlink("..data/ai.json", path_of("ai.json")), 0);
	open_watch(NULL);

	cr_assert_eq(mkdir(path_of("..2026_11_27_02"), 0700), 0);
	write_policy("..2026_11_27_02/ai.json", "ai2");
	cr_expect_eq(changed(), 0, "the new version, not yet in place");
	cr_assert_eq(symlink("..2026_11_27_02", path_of("..data_tmp")), 0);
	cr_expect_eq(changed(), 0, "..data_tmp is not ..data");
	cr_assert_eq(rename(path_of("..data_tmp"), path_of("..data")), 0);
	cr_expect_eq(changed(), 1, "..data swapped");
	/* the old version goes: nothing to read */
	cr_assert_eq(unlink(path_of("..2026_11_27_01/ai.json")), 0);
	cr_assert_eq(rmdir(path_of("..2026_11_27_01")), 0);
	cr_expect_eq(changed(), 0);
}

/* A file: its directory is watched, filtered by the file's name (and ..data). */
Test(policy_watch, file)
{
	write_policy("p.json", "p");
	open_watch("p.json");
	cr_expect_str_eq(loupe_policy_watch_path(w), path_of("p.json"));

	write_policy("other.json", "o");
	cr_expect_eq(changed(), 0, "another file of the directory");
	write_policy("p.json", "p2");
	cr_expect_eq(changed(), 1, "written in place");
	write_policy("p.json.tmp", "p3");
	cr_expect_eq(changed(), 0);
	cr_assert_eq(rename(path_of("p.json.tmp"), path_of("p.json")), 0);
	cr_expect_eq(changed(), 1, "replaced by a rename");
	cr_assert_eq(symlink(".", path_of("..data")), 0);
	cr_expect_eq(changed(), 1, "a ConfigMap's ..data");
	cr_assert_eq(unlink(path_of("p.json")), 0);
	cr_expect_eq(changed(), 1, "removed");
}

Test(policy_watch, directory_goes_and_comes_back)
{
	char sub[256];

	snprintf(sub, sizeof(sub), "%s/policies", dir);
	cr_assert_eq(mkdir(sub, 0700), 0);
	cr_assert_eq(loupe_policy_watch_open(sub, &w), 0);
	cr_expect_eq(loupe_policy_watch_rearm(w), 0, "armed: nothing to do");

	cr_assert_eq(rmdir(sub), 0);
	cr_expect_eq(changed(), 1, "the directory went: read (and refuse) again");
	cr_expect_not(loupe_policy_watch_armed(w));
	cr_expect_eq(loupe_policy_watch_rearm(w), 0, "still missing");
	cr_expect_not(loupe_policy_watch_armed(w));

	cr_assert_eq(mkdir(sub, 0700), 0);
	cr_expect_eq(loupe_policy_watch_rearm(w), 1, "back: read again");
	cr_expect(loupe_policy_watch_armed(w));
	cr_expect_eq(changed(), 0);
	write_policy("policies/x.json", "x");
	cr_expect_eq(changed(), 1, "watched again");
}

Test(policy_watch, load)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error err;

	write_policy("a.json", "alpha");
	write_policy("b.json", "beta");
	open_watch(NULL);
	cr_assert_eq(loupe_policy_watch_load(w, &set, &err), 0, "%s", err.message);
	cr_expect_eq(set->n_policies, 2);
	cr_expect_str_eq(set->policies[0].name, "alpha");
	loupe_policy_set_free(set);

	write_file("b.json", "{\"apiVersion\":\"loupe.dev/v1\"");
	cr_expect_eq(changed(), 1);
	set = NULL;
	cr_expect_eq(loupe_policy_watch_load(w, &set, &err), -EINVAL);
	cr_expect_null(set);
	cr_expect_not_null(strstr(err.source, "b.json"), "%s", err.source);
}

Test(policy_watch, missing)
{
	cr_expect_eq(loupe_policy_watch_open(path_of("nope.json"), &w), -ENOENT);
	cr_expect_null(w);
	cr_expect_null(loupe_policy_watch_free(NULL));
}
