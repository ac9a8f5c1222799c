// SPDX-License-Identifier: Apache-2.0
/*
 * Reading `tc -j` output for the attach tests; see tcview.h. Not for changing tc state.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "tcview.h"

const char *loupe_tcview_hook_name(int hook)
{
	return hook == 0 ? "ingress" : "egress";
}

struct json_object *loupe_tcview_json(const char *fmt, ...)
{
	char cmd[256], buf[65536];
	struct json_object *j;
	size_t n = 0, r;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	cr_assert_not_null(f, "%s: %s", cmd, strerror(errno));
	while (n < sizeof(buf) - 1 && (r = fread(buf + n, 1, sizeof(buf) - 1 - n, f)) > 0)
		n += r;
	buf[n] = 0;
	cr_assert_eq(pclose(f), 0, "%s failed", cmd);
	j = json_tokener_parse(buf);
	cr_assert(j && json_object_is_type(j, json_type_array), "%s: not a JSON array: %s", cmd,
		  buf);
	return j;
}

struct loupe_tcview_hook loupe_tcview_hook(const char *dev, int hook, uint32_t handle)
{
	struct json_object *j =
		loupe_tcview_json("tc -j filter show dev %s %s", dev, loupe_tcview_hook_name(hook));
	struct loupe_tcview_hook v = { 0 };

	for (size_t i = 0; i < json_object_array_length(j); i++) {
		struct json_object *f = json_object_array_get_idx(j, i), *o, *x, *prog;
		const char *kind = "", *h = "";

		/* an entry without options heads a block of filters of one kind and priority */
		if (!json_object_object_get_ex(f, "options", &o))
			continue;
		if (json_object_object_get_ex(f, "kind", &x))
			kind = json_object_get_string(x);
		if (json_object_object_get_ex(o, "handle", &x))
			h = json_object_get_string(x);
		if (strcmp(kind, "bpf") || strtoul(h, NULL, 0) != handle) {
			v.foreign++;
			continue;
		}
		v.loupe++;
		if (json_object_object_get_ex(f, "pref", &x))
			v.pref = json_object_get_int(x);
		v.da = json_object_object_get_ex(o, "direct-action", &x) &&
		       json_object_get_boolean(x);
		if (json_object_object_get_ex(o, "prog", &prog) &&
		    json_object_object_get_ex(prog, "id", &x))
			v.prog_id = json_object_get_int64(x);
	}
	json_object_put(j);
	return v;
}

bool loupe_tcview_has_clsact(const char *dev)
{
	struct json_object *j = loupe_tcview_json("tc -j qdisc show dev %s", dev), *x;
	bool found = false;

	for (size_t i = 0; i < json_object_array_length(j); i++)
		if (json_object_object_get_ex(json_object_array_get_idx(j, i), "kind", &x) &&
		    !strcmp(json_object_get_string(x), "clsact"))
			found = true;
	json_object_put(j);
	return found;
}
