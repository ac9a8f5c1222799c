/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A protobuf-c message as one line of proto3 JSON, written straight into a buffer: the same
 * bytes as loupe_pbjson_to_string() (proto/pbjson.h, the reference) without building a json-c
 * tree, for the controller's output of every event. Covers integers, bools, enums, strings,
 * nested messages, google.protobuf.Timestamp and repeated fields of these; anything else
 * (floats, bytes, Duration, wrappers, maps) is left to pbjson. Not for parsing.
 */
#ifndef LOUPE_CONTROLLER_JSON_OUT_H
#define LOUPE_CONTROLLER_JSON_OUT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/*
 * Writes @msg into @buf (NUL-terminated). Returns the length, -ENOSPC when @size is too
 * small, -EOPNOTSUPP for a field type this writer leaves to pbjson, -EINVAL for a value the
 * mapping cannot express. On error @buf holds nothing useful.
 */
int loupe_json_out(const ProtobufCMessage *msg, char *buf, size_t size);

#endif
