/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test helpers that read what `tc -j` says about a device: the filters on one clsact hook,
 * loupe's (by kind and handle) apart from everyone else's, and whether a clsact qdisc is there.
 * They assert through Criterion that tc ran and printed a JSON array.
 * Not for changing tc state, nor a replacement for libbpf's bpf_tc_query().
 */
#ifndef LOUPE_TEST_TCVIEW_H
#define LOUPE_TEST_TCVIEW_H

#include <stdbool.h>
#include <stdint.h>

struct json_object;

/* What `tc -j filter show` lists on one hook. */
struct loupe_tcview_hook {
	int loupe;   /* bpf filters with loupe's handle */
	int foreign; /* every other filter */
	int pref;    /* loupe's filter: priority, direct-action, program */
	bool da;
	uint32_t prog_id;
};

/* "ingress" for hook 0, "egress" for 1. */
const char *loupe_tcview_hook_name(int hook);
/* The JSON array a `tc -j …` command line prints, to json_object_put(). */
struct json_object *loupe_tcview_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The filters on clsact @hook (0 ingress, 1 egress) of @dev; loupe's have kind bpf, @handle. */
struct loupe_tcview_hook loupe_tcview_hook(const char *dev, int hook, uint32_t handle);
bool loupe_tcview_has_clsact(const char *dev);

#endif
