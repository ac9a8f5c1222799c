/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An event as one line of JSON: loupe.v1.Event in proto3's canonical JSON mapping, the one
 * JSON form of events everywhere (loupectl, agent, controller). Written directly from the
 * plain struct (event_json.c), byte for byte what the generic protobuf path writes
 * (loupe_event_to_json_pb() in event_pb.h, the reference); declared here without protobuf
 * types so that callers stay free of them.
 */
#ifndef LOUPE_EVENT_JSON_H
#define LOUPE_EVENT_JSON_H

#include <stddef.h>

#include "event.h"

/* A buffer this long holds the line of any event, NUL included. */
#define LOUPE_EVENT_JSON_MAX 8192

/* @ev as one line, without a newline: a malloc'd string, or NULL with errno set. */
char *loupe_event_to_json(const struct loupe_event *ev);

/*
 * Writes @ev as one line, without a newline, NUL-terminated, into @buf of @size bytes;
 * allocates nothing. Returns its length (the NUL not counted), -ENOSPC when @size is not
 * more than that, -EINVAL for an event whose strings are not terminated within their
 * arrays or whose ALPN count is out of range. On error @buf holds "" (when @size > 0):
 * never a cut line.
 */
int loupe_event_json_write(const struct loupe_event *ev, char *buf, size_t size);

#endif
