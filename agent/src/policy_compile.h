/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy compiler: a pure function from a validated policy set to the entries of the
 * datapath's policy maps (loupe/datapath.h, "Policies in the datapath"), and the table that
 * names each rule bit. No syscalls, no privileges: tested as plain C. Not for writing maps
 * (policy_apply.h) or for parsing (policy.h).
 */
#ifndef LOUPE_POLICY_COMPILE_H
#define LOUPE_POLICY_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loupe/datapath.h"
#include "policy.h"

/* What one rule bit stands for. */
struct loupe_policy_bit_info {
	const char *policy; /* metadata.name; owned by the compiled set */
	const char *rule;   /* the rule's name; "" for a policy's defaultAction */
	enum loupe_policy_action action;
	bool is_default;
};

/* One entry of an LPM trie or hash map: key bytes (the map's key struct) and its rules. */
struct loupe_policy_entry {
	union {
		struct loupe_policy_addr_key addr;
		struct loupe_policy_port_key port;
		struct loupe_policy_name_key name;
		struct loupe_policy_path_key path;
	} key; /* zeroed past what the kind uses */
	struct loupe_policy_bits value;
};

struct loupe_policy_entries {
	struct loupe_policy_entry *v;
	size_t n;
};

/*
 * A compiled set for one slot. Interface selection depends on the links of the node, so it
 * is kept as globs per policy and answered by loupe_policy_compiled_iface_bits().
 */
struct loupe_policy_compiled {
	uint8_t slot;
	struct loupe_policy_meta meta;				/* for loupe_pol_meta[slot] */
	struct loupe_policy_entries addrs, ports, names, paths; /* sorted, no duplicate key */
	struct loupe_policy_bits methods[LOUPE_POLICY_METHODS];
	struct loupe_policy_bit_info *bits; /* meta.n_bits of them */
	struct loupe_policy_set *set;	    /* a private sorted copy the strings point into */
};

/*
 * Compiles @set (validated by the parser; any order: the compiler sorts a copy) for @slot
 * with @generation. Returns 0 and *@ret (free with loupe_policy_compiled_free()), or -EINVAL
 * with @ret_err filled when the set does not fit the datapath (more than LOUPE_POLICY_BITS
 * rules and defaults, or a map's capacity), or -ENOMEM. An empty set compiles to n_bits 0.
 */
int loupe_policy_compile(const struct loupe_policy_set *set, uint8_t slot, uint32_t generation,
			 struct loupe_policy_compiled **ret, struct loupe_policy_error *ret_err);

struct loupe_policy_compiled *loupe_policy_compiled_free(struct loupe_policy_compiled *c);

/*
 * The value of loupe_pol_ifaces for interface @ifname: the rules of every policy whose
 * selector's interface globs match it, OR meta.any_iface. Returns true when that differs
 * from any_iface (an entry is needed), false when the interface needs none.
 */
bool loupe_policy_compiled_iface_bits(const struct loupe_policy_compiled *c, const char *ifname,
				      struct loupe_policy_bits *ret);

/* Helpers shared with tests and the datapath's user-space mirror. */
static inline bool loupe_policy_bit_test(const struct loupe_policy_bits *b, unsigned int i)
{
	return i < LOUPE_POLICY_BITS && (b->w[i / 64] >> (i % 64)) & 1;
}

static inline void loupe_policy_bit_set(struct loupe_policy_bits *b, unsigned int i)
{
	if (i < LOUPE_POLICY_BITS)
		b->w[i / 64] |= 1ULL << (i % 64);
}

/* The reversed-name key bytes for @name (lower case, no trailing dot), as the datapath
 * builds them; @wildcard_suffix: "*.suffix" given as "suffix" (ends with '.' in the key).
 * Returns the number of bytes used in @out (at most LOUPE_POLICY_NAME_KEY_MAX). */
size_t loupe_policy_name_key_bytes(const char *name, bool wildcard_suffix,
				   uint8_t out[LOUPE_POLICY_NAME_KEY_MAX]);

#endif
