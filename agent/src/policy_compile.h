/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy compiler: a pure function from a validated policy set to the entries of the
 * datapath's policy maps (loupe/datapath.h, "Policies in the datapath" and "Rewrites"), and
 * the table that names each bit; and which rate limit applies to a pod. No syscalls, no
 * privileges: tested as plain C. Not for writing maps (policy_apply.h) or for parsing
 * (policy.h).
 */
#ifndef LOUPE_POLICY_COMPILE_H
#define LOUPE_POLICY_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loupe/datapath.h"
#include "policy.h"

/* The kinds of bits, in the order they are numbered: rules, defaults, rewrites. */
enum loupe_policy_bit_kind {
	LOUPE_POLICY_BIT_RULE = 0,
	LOUPE_POLICY_BIT_DEFAULT,
	LOUPE_POLICY_BIT_REWRITE,
};

/* What one bit stands for. */
struct loupe_policy_bit_info {
	const char *policy; /* metadata.name; owned by the compiled set */
	const char *rule;   /* the rule's or rewrite's name; "" for a policy's defaultAction */
	enum loupe_policy_action action; /* NONE for a rewrite */
	bool is_default;		 /* kind == LOUPE_POLICY_BIT_DEFAULT */
	enum loupe_policy_bit_kind kind;
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
	/* loupe_pol_rewrites[slot * LOUPE_REWRITES_MAX + i] for i < meta.n_rewrites (bit
	 * meta.rewrite_base + i), and the entry each was compiled from (in set) */
	struct loupe_rewrite *rewrites;
	const struct loupe_policy_rewrite **rewrite_src;
	struct loupe_policy_set *set; /* a private sorted copy the strings point into */
};

/*
 * Compiles @set (validated by the parser; any order: the compiler sorts a copy) for @slot
 * with @generation. Returns 0 and *@ret (free with loupe_policy_compiled_free()), or -EINVAL
 * with @ret_err filled when the set does not fit the datapath (more than LOUPE_POLICY_BITS
 * rules, defaults and rewrites, more than LOUPE_REWRITES_MAX rewrites, or a map's capacity),
 * or -ENOMEM. An empty set compiles to n_bits 0.
 *
 * Bits: rules in evaluation order, then defaults (meta.n_rule_bits in all), then rewrites
 * (meta.rewrite_base = n_rule_bits, meta.n_rewrites). A rewrite's bit is in the answers of
 * loupe_pol_ifaces (any_iface), the pod and peer addresses and the ports, like a rule's with
 * its direction and match; never in l4_only, methods, paths or names; its action is 0.
 * meta.flags: LOUPE_POL_HAS_MAPPINGS when a rewrite has mapTo, LOUPE_POL_HAS_RATE_LIMITS
 * when a policy has rateLimits (policies whose selector has labels select no pod: theirs
 * count for neither).
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

/*
 * The rate limit of the pod on interface @ifname (may be NULL: unknown) with addresses @addrs
 * (IPv4 ones IPv4-mapped, ::ffff:a.b.c.d; NULL or @n_addrs 0: unknown) for @direction: that of
 * the first policy in evaluation order that selects the pod and has a limit for the
 * direction. A selector's interfaces need the name to match, its cidrs one of the addresses:
 * with either unknown, a policy that selects by it does not apply. Returns true with *@ret,
 * or false when no limit applies.
 */
bool loupe_policy_compiled_rate(const struct loupe_policy_compiled *c, const char *ifname,
				const uint8_t (*addrs)[16], size_t n_addrs,
				enum loupe_policy_direction direction,
				struct loupe_policy_rate_limit *ret);

/* loupe_rewrite.mask_hash of a header name: FNV-1a 64 of its bytes in lower case. */
uint64_t loupe_policy_mask_hash(const char *name, size_t len);

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
