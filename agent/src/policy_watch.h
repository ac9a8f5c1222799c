/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The standalone agent's policy source: a file or a directory of *.json files (a mounted
 * ConfigMap too), read with loupe_policy_load_path(), and an inotify watch that says when to
 * read it again. The watch is on the directory, never on the file: editors and the kubelet
 * replace files (a rename over, a new ..data link) rather than write them in place, and a
 * watch on the old inode would go quiet. Not for applying a set (policy_apply.h), logging
 * (main.c) or the controller's policies.
 */
#ifndef LOUPE_POLICY_WATCH_H
#define LOUPE_POLICY_WATCH_H

#include <stdbool.h>

#include "policy.h"

struct loupe_policy_watch;

/*
 * Watches @path, a policy file or directory (which must exist: its kind decides what is
 * watched). A directory: the creation, removal, renaming or rewriting of a "*.json" entry
 * not beginning with '.', or of the ConfigMap's "..data" link. A file: the same events in
 * its directory for its own name, or for "..data". The inotify fd is non-blocking and
 * close-on-exec. Returns 0 or -errno (-ENOENT when @path does not exist).
 */
int loupe_policy_watch_open(const char *path, struct loupe_policy_watch **ret);

/* Closes the watch; accepts and returns NULL. */
struct loupe_policy_watch *loupe_policy_watch_free(struct loupe_policy_watch *w);

/* The inotify fd: when it polls readable, call loupe_policy_watch_process(). */
int loupe_policy_watch_fd(const struct loupe_policy_watch *w);

/* The path as given. */
const char *loupe_policy_watch_path(const struct loupe_policy_watch *w);

/*
 * Reads every pending notification without blocking. Returns 1 when at least one concerns
 * the policies (read them again, once), 0 when none does, or -errno. When the watched
 * directory itself was removed or moved, returns 1 and the watch is lost: the next calls
 * to loupe_policy_watch_rearm() try to watch it again.
 */
int loupe_policy_watch_process(struct loupe_policy_watch *w);

/*
 * When the watch was lost, tries to watch the directory again. Returns 1 when it now watches
 * again (the policies may have changed meanwhile: read them), 0 when nothing was to be done or
 * it is still missing, or -errno.
 */
int loupe_policy_watch_rearm(struct loupe_policy_watch *w);

/* Whether the directory is watched (false after it went away, until a rearm succeeds). */
bool loupe_policy_watch_armed(const struct loupe_policy_watch *w);

/* Reads the policies now: loupe_policy_load_path() of the watched path. */
int loupe_policy_watch_load(const struct loupe_policy_watch *w, struct loupe_policy_set **ret,
			    struct loupe_policy_error *ret_err);

#endif
