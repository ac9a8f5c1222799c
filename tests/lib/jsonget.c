// SPDX-License-Identifier: Apache-2.0
/*
 * Reading fields of loupe's proto3 JSON events in tests; see jsonget.h. Not a validator.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "jsonget.h"

const char *loupe_json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return "";
	return json_object_get_string(v);
}

uint64_t loupe_json_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return 0;
	if (json_object_is_type(v, json_type_string))
		return strtoull(json_object_get_string(v), NULL, 10);
	return (uint64_t)json_object_get_int64(v);
}

bool loupe_json_bool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

struct json_object *loupe_json_obj(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

bool loupe_json_time(const char *s, uint64_t *ret_ns)
{
	struct tm tm = { 0 };
	uint64_t frac = 0;
	const char *p;
	int digits = 0;

	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return false;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			frac = frac * 10 + (uint64_t)(*p - '0');
	if (*p != 'Z' || digits > 9)
		return false;
	while (digits++ < 9)
		frac *= 10;
	*ret_ns = (uint64_t)timegm(&tm) * 1000000000ull + frac;
	return true;
}
