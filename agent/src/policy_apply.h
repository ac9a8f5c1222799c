/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Puts a policy set in force in the datapath: compiles it into the slot not in force,
 * writes that slot's map entries (rewrite entries included), switches loupe_pol_active with
 * one store, waits for programs in flight (an update of loupe_pol_sync), then clears the old
 * slot; keeps loupe_rate (not slotted) right for the pod interfaces as sets, pods and their
 * addresses change. Keeps the names of the bits of recent generations (events name the rule
 * or rewrite of the generation that decided) and the per-rule hit totals across applies. Not
 * for parsing or for reading files.
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
 * A pod interface: its index, its name (for podSelector.interfaces) and its pod's addresses
 * (for the podSelector.cidrs of rate limits).
 */
struct loupe_policy_iface {
	int ifindex;
	const char *name;
	/* IPv4 addresses IPv4-mapped (::ffff:a.b.c.d), as links.h's struct loupe_pod_addr has
	 * them; NULL or n_addrs 0: unknown, and then only the rate limits of policies without
	 * podSelector.cidrs apply to the pod */
	const uint8_t (*addrs)[16];
	size_t n_addrs;
};

/*
 * Compiles and puts @set in force (an empty set: no policy). All or nothing: on an error the
 * set in force stays and @ret_err says why (-EINVAL), or -errno for a failed map write (the
 * half-written slot is cleared, the old set stays in force). @ifaces: the node's pod
 * interfaces now (interface selection, and which rate limit each gets).
 *
 * loupe_rate is written after the switch: an entry per interface and direction with a limit
 * (docs/rewrite.md), those no longer limited (or not in @ifaces) deleted; an entry whose rate
 * and burst are unchanged is left as it is (its bucket is not refilled). Should that write
 * fail, -errno is returned with @ret_err saying so, but the set is in force
 * (loupe_policy_generation() has moved on): the next apply or interface update retries.
 */
int loupe_policy_apply(struct loupe_policy_runtime *rt, const struct loupe_policy_set *set,
		       const struct loupe_policy_iface *ifaces, size_t n_ifaces,
		       struct loupe_policy_error *ret_err);

/*
 * A pod interface appeared, was renamed or its pod's addresses changed: its loupe_pol_ifaces
 * entry and its loupe_rate entries for the set in force (before the first apply the maps are
 * left as an earlier agent wrote them). Returns 0 or -errno.
 */
int loupe_policy_iface_update(struct loupe_policy_runtime *rt,
			      const struct loupe_policy_iface *iface);

/* loupe_policy_iface_update() with the pod's addresses unknown. */
int loupe_policy_iface_added(struct loupe_policy_runtime *rt, int ifindex, const char *name);

/* A pod interface went away: its loupe_pol_ifaces and loupe_rate entries are deleted. */
int loupe_policy_iface_removed(struct loupe_policy_runtime *rt, int ifindex);

/* The generation in force (0 before the first apply and with no pinned set). */
uint32_t loupe_policy_generation(const struct loupe_policy_runtime *rt);

/* What bit @bit of generation @generation stands for; NULL when unknown (too old). */
const struct loupe_policy_bit_info *loupe_policy_bit_lookup(const struct loupe_policy_runtime *rt,
							    uint32_t generation, unsigned int bit);

/*
 * Rewrite entry @rewrite (loupe_flow.rewrite - 1, loupe_event_rewrite.rewrite) of generation
 * @generation, as parsed: its mask_headers[i] is the header of mask_hash[i]. Its bit, for
 * loupe_policy_bit_lookup(), is meta.rewrite_base + @rewrite. NULL when unknown.
 */
const struct loupe_policy_rewrite *
loupe_policy_rewrite_lookup(const struct loupe_policy_runtime *rt, uint32_t generation,
			    unsigned int rewrite);

/*
 * Calls @fn for each rule and default of the set in force (not its rewrites) with the flows
 * it decided since it was first put in force (totals carried across applies by policy and
 * rule name).
 */
typedef void (*loupe_policy_hits_fn)(void *ctx, const struct loupe_policy_bit_info *info,
				     uint64_t flows);
int loupe_policy_hits_foreach(struct loupe_policy_runtime *rt, loupe_policy_hits_fn fn, void *ctx);

#endif
