/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Standalone event output: events as JSON lines (loupe_event_json_write), buffered, to stdout,
 * any file descriptor, or a file rotated by size with a fixed number of backups. Lines are
 * never split across files nor interleaved. Single-threaded: the agent's loop owns it. Not
 * for logs (log.h) nor for the controller stream.
 */
#ifndef LOUPE_OUTPUT_H
#define LOUPE_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* Bytes buffered before a write(2); also flushed by loupe_output_flush(). */
#define LOUPE_OUTPUT_BUF_SIZE (64u << 10)

struct loupe_output;

struct loupe_output_stats {
	uint64_t lines;		/* lines accepted: written, or buffered for writing */
	uint64_t bytes;		/* bytes written to the file or descriptor */
	uint64_t rotations;	/* completed rotations */
	uint64_t errors;	/* failed write, open, rename, or JSON formatting */
	uint64_t lines_dropped; /* lines refused because of an error */
};

/*
 * Opens an output: @path "-" is stdout (never rotated, not closed); else a file opened with
 * O_APPEND|O_CREAT (mode 0640, existing lines kept) and rotated before a line would take it
 * past @max_size bytes (0: never): path.(N-1) -> path.N ... path -> path.1, keeping @backups
 * old files; with @backups 0 the file is truncated instead. A line longer than @max_size
 * goes alone into a fresh file. Returns 0 or -errno.
 */
int loupe_output_open(const char *path, uint64_t max_size, unsigned int backups,
		      struct loupe_output **ret_out);

/* An output on @fd, which stays the caller's (not closed); never rotated. Returns 0 or -errno. */
int loupe_output_open_fd(int fd, struct loupe_output **ret_out);

/*
 * Appends @ev as one JSON line. Flushes when the buffer is full; rotates first when due.
 * Returns 0, or -errno of a failure (formatting, write, rotation). Bytes a failed write left
 * behind stay buffered and are written first next time, so no line is cut or lost while
 * the buffer has room; a line that finds no room is dropped (stats.lines_dropped).
 */
int loupe_output_write(struct loupe_output *o, const struct loupe_event *ev);

/* As loupe_output_write() for a ready line without its newline (@len bytes, no '\n' inside). */
int loupe_output_write_line(struct loupe_output *o, const char *line, size_t len);

/*
 * Writes out everything buffered: call it from a timer (lines reach readers within one
 * period) and before exit. Retries EINTR and partial writes. Returns 0 or -errno; what was
 * not written stays buffered.
 */
int loupe_output_flush(struct loupe_output *o);

void loupe_output_get_stats(const struct loupe_output *o, struct loupe_output_stats *ret_stats);

/* Flushes (errors ignored: call loupe_output_flush() first to see them), closes; NULL. */
struct loupe_output *loupe_output_close(struct loupe_output *o);

#endif
