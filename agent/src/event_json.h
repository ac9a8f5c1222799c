/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An event as one line of JSON: loupe.v1.Event in proto3's canonical JSON mapping, the one
 * JSON form of events everywhere (loupectl, agent, controller). Implemented on the rpc side
 * (event_pb.c), declared here without protobuf types so that callers stay free of them.
 */
#ifndef LOUPE_EVENT_JSON_H
#define LOUPE_EVENT_JSON_H

#include "event.h"

/* @ev as one line, without a newline: a malloc'd string, or NULL with errno set. */
char *loupe_event_to_json(const struct loupe_event *ev);

#endif
