// SPDX-License-Identifier: Apache-2.0
/*
 * The standalone policy source: inotify on the policy directory (or on a policy file's
 * directory, filtered by name), drained whole before the caller reads the policies once.
 * Nothing here sleeps, retries on a clock or logs. Not for parsing or applying policies.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy_watch.h"

/* The ConfigMap's link to the directory of the current version (policy.h). */
#define CONFIGMAP_DATA "..data"

/*
 * What changes a policy file or the set of them. IN_CLOSE_WRITE: written in place;
 * IN_MOVED_TO/IN_MOVED_FROM: renamed over or away (editors, the kubelet's ..data swap);
 * IN_CREATE/IN_DELETE: a link or file added or removed; the _SELF events: the directory
 * itself went away. IN_MODIFY is left out: a file being written is read at its close.
 */
#define WATCH_MASK                                                                                 \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF |   \
	 IN_MOVE_SELF | IN_ONLYDIR)

struct loupe_policy_watch {
	int fd;
	int wd; /* -1: lost (the directory went away) */
	char *path;
	char *dir;
	char *name; /* the file's base name; NULL: the directory itself is the source */
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Whether an entry named @name of the watched directory is part of the policies. */
static bool watch_concerns(const struct loupe_policy_watch *w, const char *name)
{
	if (strcmp(name, CONFIGMAP_DATA) == 0)
		return true;
	if (w->name)
		return strcmp(name, w->name) == 0;
	/* what loupe_policy_load_path() reads of a directory */
	return name[0] != '.' && ends_with(name, ".json");
}

/*
 * A new regular file that is still empty is being written: its IN_CLOSE_WRITE follows, so it
 * is read then rather than now, half-written. A link, or a file created whole (ln), counts.
 */
static bool created_empty(const struct loupe_policy_watch *w, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", w->dir, name) >= sizeof(p))
		return false;
	return lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0;
}

static int watch_add(struct loupe_policy_watch *w)
{
	int wd = inotify_add_watch(w->fd, w->dir, WATCH_MASK);

	if (wd < 0)
		return -errno;
	w->wd = wd;
	return 0;
}

int loupe_policy_watch_open(const char *path, struct loupe_policy_watch **ret)
{
	struct loupe_policy_watch *w;
	struct stat st;
	char *copy = NULL;
	int err;

	if (stat(path, &st))
		return -errno;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->wd = -1;
	w->path = strdup(path);
	if (!w->path)
		goto nomem;
	if (S_ISDIR(st.st_mode)) {
		w->dir = strdup(path);
	} else {
		/* dirname() and basename() may change their argument: one copy each */
		copy = strdup(path);
		if (!copy)
			goto nomem;
		w->dir = strdup(dirname(copy));
		free(copy);
		copy = strdup(path);
		if (!copy)
			goto nomem;
		w->name = strdup(basename(copy));
		if (!w->name)
			goto nomem;
	}
	if (!w->dir)
		goto nomem;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0) {
		err = -errno;
		goto fail;
	}
	err = watch_add(w);
	if (err)
		goto fail;
	free(copy);
	*ret = w;
	return 0;

nomem:
	err = -ENOMEM;
fail:
	free(copy);
	loupe_policy_watch_free(w);
	return err;
}

struct loupe_policy_watch *loupe_policy_watch_free(struct loupe_policy_watch *w)
{
	if (!w)
		return NULL;
	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(w->dir);
	free(w->name);
	free(w);
	return NULL;
}

int loupe_policy_watch_fd(const struct loupe_policy_watch *w)
{
	return w->fd;
}

const char *loupe_policy_watch_path(const struct loupe_policy_watch *w)
{
	return w->path;
}

bool loupe_policy_watch_armed(const struct loupe_policy_watch *w)
{
	return w->wd >= 0;
}

int loupe_policy_watch_process(struct loupe_policy_watch *w)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	bool changed = false;
	ssize_t n;

	for (;;) {
		n = read(w->fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
		if (n == 0)
			break;
		for (char *p = buf; p < buf + n; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW) {
				changed = true; /* events were lost: read everything again */
				continue;
			}
			if (ev->wd != w->wd)
				continue; /* a watch removed earlier */
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
				/* the directory went: what is read now fails, and is refused */
				inotify_rm_watch(w->fd, w->wd);
				w->wd = -1;
				changed = true;
				continue;
			}
			if (!ev->len || !watch_concerns(w, ev->name))
				continue;
			if ((ev->mask & IN_CREATE) && created_empty(w, ev->name))
				continue;
			changed = true;
		}
	}
	return changed;
}

int loupe_policy_watch_rearm(struct loupe_policy_watch *w)
{
	int err;

	if (w->wd >= 0)
		return 0;
	err = watch_add(w);
	if (err == -ENOENT || err == -ENOTDIR)
		return 0; /* still missing */
	return err ? err : 1;
}

int loupe_policy_watch_load(const struct loupe_policy_watch *w, struct loupe_policy_set **ret,
			    struct loupe_policy_error *ret_err)
{
	return loupe_policy_load_path(w->path, ret, ret_err);
}
