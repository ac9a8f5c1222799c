/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Puts a policy set in force in the datapath: compiles it into the slot not in force,
 * writes that slot's map entries, switches loupe_pol_active with one store, waits for
 * programs in flight (an update of loupe_pol_sync), then clears the old slot. Keeps the names
 * of the bits of recent generations (events name the rule of the generation that decided)
 * and the per-rule hit totals across applies. Not for parsing or for reading files.
 */
#ifndef LOUPE_POLICY_APPLY_H
#define LOUPE_POLICY_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "datapath.h"
#include "policy.h"
#include "policy_compile.h"

struct loupe_policy_runtime;

/*
 * Binds to @dp's policy maps. When the maps were pinned by an earlier agent and hold a set,
 * it stays in force (the datapath keeps enforcing across a restart) until the first apply;
 * its rules have no names until then. Returns 0 or -errno.
 */
int loupe_policy_runtime_open(struct loupe_datapath *dp, struct loupe_policy_runtime **ret);
struct loupe_policy_runtime *loupe_policy_runtime_free(struct loupe_policy_runtime *rt);

/*
 * Compiles and puts @set in force (an empty set: no policy). All or nothing: on an error the
 * set in force stays and @ret_err says why (-EINVAL), or -errno for a failed map write (the
 * half-written slot is cleared, the old set stays in force). @ifaces: the names and indexes
 * of the node's pod interfaces now (for podSelector.interfaces).
 */
struct loupe_policy_iface {
	int ifindex;
	const char *name;
};
int loupe_policy_apply(struct loupe_policy_runtime *rt, const struct loupe_policy_set *set,
		       const struct loupe_policy_iface *ifaces, size_t n_ifaces,
		       struct loupe_policy_error *ret_err);

/* A pod interface appeared or was renamed / went away: its loupe_pol_ifaces entry. */
int loupe_policy_iface_added(struct loupe_policy_runtime *rt, int ifindex, const char *name);
int loupe_policy_iface_removed(struct loupe_policy_runtime *rt, int ifindex);

/* The generation in force (0 before the first apply and with no pinned set). */
uint32_t loupe_policy_generation(const struct loupe_policy_runtime *rt);

/* What bit @bit of generation @generation stands for; NULL when unknown (too old). */
const struct loupe_policy_bit_info *loupe_policy_bit_lookup(const struct loupe_policy_runtime *rt,
							    uint32_t generation, unsigned int bit);

/*
 * Calls @fn for each rule and default of the set in force with the flows it decided since it
 * was first put in force (totals carried across applies by policy and rule name).
 */
typedef void (*loupe_policy_hits_fn)(void *ctx, const struct loupe_policy_bit_info *info,
				     uint64_t flows);
int loupe_policy_hits_foreach(struct loupe_policy_runtime *rt, loupe_policy_hits_fn fn, void *ctx);

#endif
