/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers for reading loupe's events as proto3 JSON (loupectl -o json, the agent's event
 * file): a field by name with proto3's defaults for what is left out, and Timestamp strings.
 * Not for checking that the JSON is valid proto3 JSON: an absent or odd field reads as zero.
 */
#ifndef LOUPE_TEST_JSONGET_H
#define LOUPE_TEST_JSONGET_H

#include <stdbool.h>
#include <stdint.h>

struct json_object;

/* proto3 JSON leaves out zero values: an absent string is "", number 0, bool false. */
const char *loupe_json_str(struct json_object *o, const char *key);
/* 64-bit numbers are strings in proto3 JSON; both forms are read. */
uint64_t loupe_json_u64(struct json_object *o, const char *key);
bool loupe_json_bool(struct json_object *o, const char *key);
/* The member @key of @o (NULL @o allowed); NULL when absent. */
struct json_object *loupe_json_obj(struct json_object *o, const char *key);
/* A Timestamp, "YYYY-MM-DDTHH:MM:SS[.fraction]Z" in UTC, as ns since the epoch. */
bool loupe_json_time(const char *s, uint64_t *ret_ns);

#endif
