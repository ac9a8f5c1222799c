// SPDX-License-Identifier: Apache-2.0
/*
 * JSON lines of events into a buffer, written out when it fills or on the caller's timer, to
 * a descriptor or to a size-rotated file. Not for formatting events (event_json.c does that).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event_json.h"
#include "output.h"

#define OUTPUT_FILE_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)
#define OUTPUT_FILE_MODE  0640

struct loupe_output {
	int fd;
	bool own_fd;
	char *path; /* NULL: a descriptor, never rotated */
	uint64_t max_size;
	unsigned int backups;
	uint64_t file_size; /* of the current file, buffered bytes included */
	size_t len;	    /* bytes in buf */
	struct loupe_output_stats stats;
	char buf[LOUPE_OUTPUT_BUF_SIZE];
};

static int output_new(int fd, bool own_fd, struct loupe_output **ret_out)
{
	struct loupe_output *o;

	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->fd = fd;
	o->own_fd = own_fd;
	*ret_out = o;
	return 0;
}

int loupe_output_open_fd(int fd, struct loupe_output **ret_out)
{
	if (fd < 0)
		return -EBADF;
	return output_new(fd, false, ret_out);
}

int loupe_output_open(const char *path, uint64_t max_size, unsigned int backups,
		      struct loupe_output **ret_out)
{
	struct loupe_output *o = NULL;
	struct stat st;
	int fd, err;

	if (!path || !path[0])
		return -EINVAL;
	if (strcmp(path, "-") == 0)
		return loupe_output_open_fd(STDOUT_FILENO, ret_out);
	/* room for ".<backups>" in the rotated names */
	if (strlen(path) + 12 >= PATH_MAX)
		return -ENAMETOOLONG;

	fd = open(path, OUTPUT_FILE_FLAGS, OUTPUT_FILE_MODE);
	if (fd < 0)
		return -errno;
	err = fstat(fd, &st) ? -errno : 0;
	/* a FIFO or a device (a log pipeline, /dev/null) is written, never rotated */
	if (!err && !S_ISREG(st.st_mode))
		max_size = 0;
	if (!err)
		err = output_new(fd, true, &o);
	if (!err) {
		o->path = strdup(path);
		if (!o->path)
			err = -ENOMEM;
	}
	if (err)
		goto fail;
	o->max_size = max_size;
	o->backups = backups;
	o->file_size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	*ret_out = o;
	return 0;
fail:
	if (o)
		loupe_output_close(o); /* closes fd */
	else
		close(fd);
	return err;
}

/* Waits until a non-blocking descriptor can take more. */
static int output_wait(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int loupe_output_flush(struct loupe_output *o)
{
	size_t off = 0;
	ssize_t n;
	int err = 0;

	while (off < o->len) {
		n = write(o->fd, o->buf + off, o->len - off);
		if (n > 0) {
			off += (size_t)n;
			o->stats.bytes += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			err = output_wait(o->fd);
			if (err)
				break;
			continue;
		}
		err = n < 0 ? -errno : -EIO;
		break;
	}
	if (off) {
		memmove(o->buf, o->buf + off, o->len - off);
		o->len -= off;
	}
	if (err)
		o->stats.errors++;
	return err;
}

/* path.@i into @buf; path itself for 0. */
static void output_backup_name(const struct loupe_output *o, unsigned int i, char *buf, size_t size)
{
	if (i == 0)
		snprintf(buf, size, "%s", o->path);
	else
		snprintf(buf, size, "%s.%u", o->path, i);
}

/*
 * Shifts the backups and reopens the path. On failure the current descriptor stays in use
 * (its lines are kept, whatever its name now is) and the next attempt comes after another
 * max_size bytes, so a persistent failure costs one try per file's worth of lines.
 */
static int output_rotate(struct loupe_output *o)
{
	char from[PATH_MAX], to[PATH_MAX];
	int fd, flags = OUTPUT_FILE_FLAGS, err;
	struct stat st;

	/* the buffered lines belong to the file being retired */
	err = loupe_output_flush(o);
	if (err)
		goto out;
	if (o->backups == 0)
		flags |= O_TRUNC;
	for (unsigned int i = o->backups; i > 0; i--) {
		output_backup_name(o, i - 1, from, sizeof(from));
		output_backup_name(o, i, to, sizeof(to));
		if (rename(from, to) && errno != ENOENT) {
			err = -errno;
			goto out;
		}
	}
	fd = open(o->path, flags, OUTPUT_FILE_MODE);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	close(o->fd);
	o->fd = fd;
	o->file_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	o->stats.rotations++;
out:
	if (err) {
		o->stats.errors++;
		o->file_size = 0;
	}
	return err;
}

int loupe_output_write_line(struct loupe_output *o, const char *line, size_t len)
{
	size_t need = len + 1;
	int err = 0, r;

	if (need > sizeof(o->buf)) {
		err = -EMSGSIZE;
		goto drop;
	}
	if (o->path && o->max_size && o->file_size && o->file_size + need > o->max_size)
		err = output_rotate(o);
	if (need > sizeof(o->buf) - o->len) {
		r = loupe_output_flush(o);
		if (r && !err)
			err = r;
		if (need > sizeof(o->buf) - o->len)
			goto drop;
	}
	memcpy(o->buf + o->len, line, len);
	o->buf[o->len + len] = '\n';
	o->len += need;
	o->file_size += need;
	o->stats.lines++;
	return err;
drop:
	o->stats.lines_dropped++;
	return err;
}

/* The general case of loupe_output_write(): a line of its own, through write_line. */
static int output_write_copy(struct loupe_output *o, const struct loupe_event *ev)
{
	char line[LOUPE_EVENT_JSON_MAX];
	int n;

	n = loupe_event_json_write(ev, line, sizeof(line));
	if (n < 0) {
		o->stats.errors++;
		o->stats.lines_dropped++;
		return n;
	}
	return loupe_output_write_line(o, line, (size_t)n);
}

/*
 * The line is formatted straight into the buffer's free space and kept when nothing else is
 * due. A rotation (which flushes, moving the buffer) or a line that needs a flush first goes
 * through output_write_copy(): once per buffer's worth of lines at most.
 */
int loupe_output_write(struct loupe_output *o, const struct loupe_event *ev)
{
	size_t need;
	int n;

	n = loupe_event_json_write(ev, o->buf + o->len, sizeof(o->buf) - o->len);
	if (n == -ENOSPC)
		return output_write_copy(o, ev);
	if (n < 0) {
		o->stats.errors++;
		o->stats.lines_dropped++;
		return n;
	}
	need = (size_t)n + 1;
	if (o->path && o->max_size && o->file_size && o->file_size + need > o->max_size)
		return output_write_copy(o, ev);
	o->buf[o->len + (size_t)n] = '\n'; /* over the NUL: the write left room for it */
	o->len += need;
	o->file_size += need;
	o->stats.lines++;
	return 0;
}

void loupe_output_get_stats(const struct loupe_output *o, struct loupe_output_stats *ret_stats)
{
	*ret_stats = o->stats;
}

struct loupe_output *loupe_output_close(struct loupe_output *o)
{
	if (!o)
		return NULL;
	loupe_output_flush(o);
	if (o->own_fd)
		close(o->fd);
	free(o->path);
	free(o);
	return NULL;
}
