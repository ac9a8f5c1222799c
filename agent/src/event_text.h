/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One readable line per event for a terminal (loupectl replay -o text, later observe).
 * Not a stable format for scripts: they use -o json, the proto3 JSON of loupe.v1.Event.
 */
#ifndef LOUPE_CLI_EVENT_TEXT_H
#define LOUPE_CLI_EVENT_TEXT_H

#include <stddef.h>

#include "event.h"

/* A line is at most this long, with its NUL (longest: HTTP with a full path and host). */
#define LOUPE_EVENT_TEXT_MAX 2048

/*
 * Writes @ev as one line without a newline into @buf. Bytes outside printable ASCII in
 * names, paths and hosts are written as \xNN. Returns the length, or -ENOSPC when the line
 * was cut to fit @size.
 */
int loupe_event_text_format(const struct loupe_event *ev, char *buf, size_t size);

/* "egress", "ingress" or "-". */
const char *loupe_event_text_direction(int direction);

#endif
