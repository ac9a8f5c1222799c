// SPDX-License-Identifier: Apache-2.0
/*
 * Puts compiled policy sets in force: writes the slot not in force, switches
 * loupe_pol_active, waits out the programs in flight and clears the old slot; keeps the names
 * of recent generations' bits and the hit totals by rule across applies. Not for compiling
 * (policy_compile.c) or for reading policy files.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "policy_apply.h"

/* Generations whose bits stay named: events of a flow decided a few applies ago. */
#define HISTORY 8

enum pol_map {
	MAP_ACTIVE,
	MAP_META,
	MAP_IFACES,
	MAP_ADDRS,
	MAP_PORTS,
	MAP_NAMES,
	MAP_PATHS,
	MAP_METHODS,
	MAP_HITS,
	MAP_SYNC,
	MAP_SYNC_INNER,
	MAP_N,
};

static const char *const map_names[MAP_N] = {
	[MAP_ACTIVE] = LOUPE_MAP_POL_ACTIVE,	   [MAP_META] = LOUPE_MAP_POL_META,
	[MAP_IFACES] = LOUPE_MAP_POL_IFACES,	   [MAP_ADDRS] = LOUPE_MAP_POL_ADDRS,
	[MAP_PORTS] = LOUPE_MAP_POL_PORTS,	   [MAP_NAMES] = LOUPE_MAP_POL_NAMES,
	[MAP_PATHS] = LOUPE_MAP_POL_PATHS,	   [MAP_METHODS] = LOUPE_MAP_POL_METHODS,
	[MAP_HITS] = LOUPE_MAP_POL_HITS,	   [MAP_SYNC] = LOUPE_MAP_POL_SYNC,
	[MAP_SYNC_INNER] = "loupe_pol_sync_inner",
};

/* The maps whose keys carry a slot, and where. */
static const struct slot_keyed {
	enum pol_map map;
	size_t key_size;
	bool slot_is_u32; /* loupe_pol_ifaces: __u32 slot at 0; the tries: __u8 after prefixlen */
} slot_keyed[] = {
	{ MAP_IFACES, sizeof(struct loupe_policy_iface_key), true },
	{ MAP_ADDRS, sizeof(struct loupe_policy_addr_key), false },
	{ MAP_PORTS, sizeof(struct loupe_policy_port_key), false },
	{ MAP_NAMES, sizeof(struct loupe_policy_name_key), false },
	{ MAP_PATHS, sizeof(struct loupe_policy_path_key), false },
};

/* Flows decided by a rule in the sets that are no longer in force, by its names. */
struct hit_total {
	char *policy;
	char *rule;
	uint64_t flows;
};

struct loupe_policy_runtime {
	int fd[MAP_N];
	int ncpus;
	uint64_t *percpu; /* one per-CPU value: ncpus __u64 */
	uint32_t active;
	uint32_t generation;
	/* the set in force when this agent put it there; NULL before the first apply */
	struct loupe_policy_compiled *in_force;
	/* bit names of the last generations, at generation % HISTORY; in_force among them */
	struct loupe_policy_compiled *history[HISTORY];
	struct hit_total *totals; /* sorted by policy, then rule */
	size_t n_totals, cap_totals;
};

static void error_set(struct loupe_policy_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void error_set(struct loupe_policy_error *e, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	memset(e, 0, sizeof(*e));
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

int loupe_policy_runtime_open(struct loupe_datapath *dp, struct loupe_policy_runtime **ret)
{
	struct loupe_policy_runtime *rt = calloc(1, sizeof(*rt));
	struct loupe_policy_meta meta;
	uint32_t zero = 0;
	int r;

	if (!rt)
		return -ENOMEM;
	for (int i = 0; i < MAP_N; i++) {
		rt->fd[i] = loupe_datapath_map_fd(dp, map_names[i]);
		if (rt->fd[i] < 0) {
			r = rt->fd[i];
			goto fail;
		}
	}
	rt->ncpus = loupe_datapath_ncpus(dp);
	rt->percpu = calloc(rt->ncpus, sizeof(*rt->percpu));
	r = -ENOMEM;
	if (!rt->percpu)
		goto fail;

	/* a set pinned by an earlier agent stays in force; generations continue from it */
	if ((r = bpf_map_lookup_elem(rt->fd[MAP_ACTIVE], &zero, &rt->active)))
		goto fail;
	if (rt->active >= LOUPE_POLICY_SLOTS)
		rt->active = 0;
	if ((r = bpf_map_lookup_elem(rt->fd[MAP_META], &rt->active, &meta)))
		goto fail;
	rt->generation = meta.generation;
	*ret = rt;
	return 0;

fail:
	loupe_policy_runtime_free(rt);
	return r;
}

struct loupe_policy_runtime *loupe_policy_runtime_free(struct loupe_policy_runtime *rt)
{
	if (!rt)
		return NULL;
	for (int i = 0; i < HISTORY; i++)
		loupe_policy_compiled_free(rt->history[i]);
	for (size_t i = 0; i < rt->n_totals; i++) {
		free(rt->totals[i].policy);
		free(rt->totals[i].rule);
	}
	free(rt->totals);
	free(rt->percpu);
	free(rt);
	return NULL;
}

uint32_t loupe_policy_generation(const struct loupe_policy_runtime *rt)
{
	return rt->generation;
}

const struct loupe_policy_bit_info *loupe_policy_bit_lookup(const struct loupe_policy_runtime *rt,
							    uint32_t generation, unsigned int bit)
{
	const struct loupe_policy_compiled *c = rt->history[generation % HISTORY];

	if (!c || c->meta.generation != generation || bit >= c->meta.n_bits)
		return NULL;
	return &c->bits[bit];
}

/* ---- slots ------------------------------------------------------------------------------- */

static bool key_in_slot(const struct slot_keyed *m, const void *key, uint32_t slot)
{
	if (m->slot_is_u32)
		return ((const struct loupe_policy_iface_key *)key)->slot == slot;
	return ((const struct loupe_policy_addr_key *)key)->slot == slot; /* same place in all */
}

/*
 * Deletes every key of @slot, found by walking the map rather than from a compiled set: an
 * agent that died half way through a write left keys that no set in memory names. Keys are
 * collected first: a trie's walk starts over after its current key is deleted.
 */
static int map_clear_slot(int fd, const struct slot_keyed *m, uint32_t slot)
{
	union { /* room for the largest key of these maps */
		struct loupe_policy_iface_key iface;
		struct loupe_policy_name_key name;
		struct loupe_policy_path_key path;
	} cur, next;
	uint8_t *keys = NULL;
	size_t n = 0, cap = 0;
	void *prev = NULL;
	int r;

	while (!(r = bpf_map_get_next_key(fd, prev, &next))) {
		if (key_in_slot(m, &next, slot)) {
			if (n == cap) {
				size_t more = cap ? cap * 2 : 256;
				void *p = realloc(keys, more * m->key_size);

				if (!p) {
					r = -ENOMEM;
					goto out;
				}
				keys = p;
				cap = more;
			}
			memcpy(keys + n++ * m->key_size, &next, m->key_size);
		}
		memcpy(&cur, &next, m->key_size);
		prev = &cur;
	}
	if (r != -ENOENT)
		goto out;
	r = 0;
	for (size_t i = 0; i < n && !r; i++)
		if ((r = bpf_map_delete_elem(fd, keys + i * m->key_size)) == -ENOENT)
			r = 0;
out:
	free(keys);
	return r;
}

/* Leaves @slot as no set: no entries, no methods, meta zeroed (n_bits 0). */
static int slot_clear(struct loupe_policy_runtime *rt, uint32_t slot)
{
	struct loupe_policy_meta meta = { 0 };
	struct loupe_policy_bits none = { 0 };
	int r = 0;

	for (size_t i = 0; i < sizeof(slot_keyed) / sizeof(slot_keyed[0]) && !r; i++)
		r = map_clear_slot(rt->fd[slot_keyed[i].map], &slot_keyed[i], slot);
	for (uint32_t m = 0; m < LOUPE_POLICY_METHODS && !r; m++) {
		uint32_t key = slot * LOUPE_POLICY_METHODS + m;

		r = bpf_map_update_elem(rt->fd[MAP_METHODS], &key, &none, BPF_ANY);
	}
	if (r)
		return r;
	return bpf_map_update_elem(rt->fd[MAP_META], &slot, &meta, BPF_ANY);
}

/* Zeroes the hit counters of the first @n_bits bits of @slot: only those are ever read. */
static int hits_zero(struct loupe_policy_runtime *rt, uint32_t slot, uint32_t n_bits)
{
	int r = 0;

	memset(rt->percpu, 0, rt->ncpus * sizeof(*rt->percpu));
	for (uint32_t bit = 0; bit < n_bits && bit < LOUPE_POLICY_BITS && !r; bit++) {
		uint32_t key = slot * LOUPE_POLICY_BITS + bit;

		r = bpf_map_update_elem(rt->fd[MAP_HITS], &key, rt->percpu, BPF_ANY);
	}
	return r;
}

static int hits_read(struct loupe_policy_runtime *rt, uint32_t slot, unsigned int bit,
		     uint64_t *ret)
{
	uint32_t key = slot * LOUPE_POLICY_BITS + bit;
	int r = bpf_map_lookup_elem(rt->fd[MAP_HITS], &key, rt->percpu);

	*ret = 0;
	for (int cpu = 0; cpu < rt->ncpus && !r; cpu++)
		*ret += rt->percpu[cpu];
	return r;
}

static int entries_write(int fd, const struct loupe_policy_entries *es)
{
	int r = 0;

	for (size_t i = 0; i < es->n && !r; i++)
		r = bpf_map_update_elem(fd, &es->v[i].key, &es->v[i].value, BPF_ANY);
	return r;
}

int loupe_policy_iface_added(struct loupe_policy_runtime *rt, int ifindex, const char *name)
{
	struct loupe_policy_iface_key key = { .slot = rt->active, .ifindex = (uint32_t)ifindex };
	struct loupe_policy_bits bits;
	int r;

	if (!rt->in_force || !rt->in_force->meta.n_bits)
		return 0;
	if (loupe_policy_compiled_iface_bits(rt->in_force, name, &bits))
		return bpf_map_update_elem(rt->fd[MAP_IFACES], &key, &bits, BPF_ANY);
	/* a renamed interface may have had an entry that the new name does not call for */
	r = bpf_map_delete_elem(rt->fd[MAP_IFACES], &key);
	return r == -ENOENT ? 0 : r;
}

/* Writes every entry of @c into its (cleared) slot, meta last; names the map that failed. */
static int slot_fill(struct loupe_policy_runtime *rt, const struct loupe_policy_compiled *c,
		     const struct loupe_policy_iface *ifaces, size_t n_ifaces,
		     enum pol_map *ret_failed)
{
	uint32_t slot = c->slot;
	int r = 0;
	const struct {
		enum pol_map map;
		const struct loupe_policy_entries *entries;
	} tries[] = {
		{ MAP_ADDRS, &c->addrs },
		{ MAP_PORTS, &c->ports },
		{ MAP_NAMES, &c->names },
		{ MAP_PATHS, &c->paths },
	};

	*ret_failed = MAP_HITS;
	if ((r = hits_zero(rt, slot, c->meta.n_bits)))
		return r;
	*ret_failed = MAP_IFACES;
	for (size_t i = 0; i < n_ifaces && !r; i++) {
		struct loupe_policy_iface_key key = { .slot = slot,
						      .ifindex = (uint32_t)ifaces[i].ifindex };
		struct loupe_policy_bits bits;

		if (loupe_policy_compiled_iface_bits(c, ifaces[i].name, &bits))
			r = bpf_map_update_elem(rt->fd[MAP_IFACES], &key, &bits, BPF_ANY);
	}
	if (r)
		return r;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		*ret_failed = tries[i].map;
		if ((r = entries_write(rt->fd[tries[i].map], tries[i].entries)))
			return r;
	}
	*ret_failed = MAP_METHODS;
	for (uint32_t m = 0; m < LOUPE_POLICY_METHODS && !r; m++) {
		uint32_t key = slot * LOUPE_POLICY_METHODS + m;

		r = bpf_map_update_elem(rt->fd[MAP_METHODS], &key, &c->methods[m], BPF_ANY);
	}
	if (r)
		return r;
	*ret_failed = MAP_META;
	return bpf_map_update_elem(rt->fd[MAP_META], &slot, &c->meta, BPF_ANY);
}

/* ---- hit totals ----------------------------------------------------------------------------- */

static int total_cmp(const char *policy, const char *rule, const struct hit_total *t)
{
	int r = strcmp(policy, t->policy);

	return r ? r : strcmp(rule, t->rule);
}

/* The index where (@policy, @rule) is or would go. */
static size_t total_index(const struct loupe_policy_runtime *rt, const char *policy,
			  const char *rule)
{
	size_t lo = 0, hi = rt->n_totals;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (total_cmp(policy, rule, &rt->totals[mid]) > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static uint64_t total_get(const struct loupe_policy_runtime *rt,
			  const struct loupe_policy_bit_info *b)
{
	size_t i = total_index(rt, b->policy, b->rule);

	if (i < rt->n_totals && !total_cmp(b->policy, b->rule, &rt->totals[i]))
		return rt->totals[i].flows;
	return 0;
}

static int total_add(struct loupe_policy_runtime *rt, const struct loupe_policy_bit_info *b,
		     uint64_t flows)
{
	size_t i = total_index(rt, b->policy, b->rule);
	struct hit_total t;

	if (i < rt->n_totals && !total_cmp(b->policy, b->rule, &rt->totals[i])) {
		rt->totals[i].flows += flows;
		return 0;
	}
	if (rt->n_totals == rt->cap_totals) {
		size_t cap = rt->cap_totals ? rt->cap_totals * 2 : 64;
		void *p = realloc(rt->totals, cap * sizeof(*rt->totals));

		if (!p)
			return -ENOMEM;
		rt->totals = p;
		rt->cap_totals = cap;
	}
	t = (struct hit_total){ .policy = strdup(b->policy),
				.rule = strdup(b->rule),
				.flows = flows };
	if (!t.policy || !t.rule) {
		free(t.policy);
		free(t.rule);
		return -ENOMEM;
	}
	memmove(&rt->totals[i + 1], &rt->totals[i], (rt->n_totals - i) * sizeof(*rt->totals));
	rt->totals[i] = t;
	rt->n_totals++;
	return 0;
}

/* Adds the hits of @c, a set leaving force, to the totals. */
static void totals_carry(struct loupe_policy_runtime *rt, const struct loupe_policy_compiled *c)
{
	uint64_t flows;

	if (!c)
		return;
	for (unsigned int bit = 0; bit < c->meta.n_bits; bit++)
		if (!hits_read(rt, c->slot, bit, &flows) && flows)
			total_add(rt, &c->bits[bit], flows); /* a lost count is not worth failing */
}

int loupe_policy_hits_foreach(struct loupe_policy_runtime *rt, loupe_policy_hits_fn fn, void *ctx)
{
	const struct loupe_policy_compiled *c = rt->in_force;
	uint64_t flows;
	int r;

	if (!c)
		return 0;
	for (unsigned int bit = 0; bit < c->meta.n_bits; bit++) {
		if ((r = hits_read(rt, c->slot, bit, &flows)))
			return r;
		fn(ctx, &c->bits[bit], total_get(rt, &c->bits[bit]) + flows);
	}
	return 0;
}

/* ---- apply ---------------------------------------------------------------------------------- */

/* Keeps @c for its bit names and interface selection; the entries are in the maps now. */
static void history_push(struct loupe_policy_runtime *rt, struct loupe_policy_compiled *c)
{
	struct loupe_policy_compiled **h = &rt->history[c->meta.generation % HISTORY];

	free(c->addrs.v);
	free(c->ports.v);
	free(c->names.v);
	free(c->paths.v);
	memset(&c->addrs, 0, sizeof(c->addrs));
	memset(&c->ports, 0, sizeof(c->ports));
	memset(&c->names, 0, sizeof(c->names));
	memset(&c->paths, 0, sizeof(c->paths));
	loupe_policy_compiled_free(*h);
	*h = c;
}

int loupe_policy_apply(struct loupe_policy_runtime *rt, const struct loupe_policy_set *set,
		       const struct loupe_policy_iface *ifaces, size_t n_ifaces,
		       struct loupe_policy_error *ret_err)
{
	uint32_t old = rt->active, slot = 1 - rt->active, zero = 0;
	struct loupe_policy_compiled *c = NULL;
	enum pol_map failed = MAP_IFACES;
	struct loupe_policy_bits bits;
	size_t n_iface_entries = 0;
	bool synced;
	int r;

	r = loupe_policy_compile(set, (uint8_t)slot, rt->generation + 1, &c, ret_err);
	if (r)
		return r;
	for (size_t i = 0; i < n_ifaces; i++)
		n_iface_entries += loupe_policy_compiled_iface_bits(c, ifaces[i].name, &bits);
	if (n_iface_entries > LOUPE_POL_IFACES_MAX / 2) {
		error_set(ret_err,
			  "the set selects %zu interfaces by name; the datapath holds at most %d",
			  n_iface_entries, LOUPE_POL_IFACES_MAX / 2);
		r = -EINVAL;
		goto out;
	}

	if ((r = slot_clear(rt, slot))) {
		error_set(ret_err, "clearing policy slot %u: %s", slot, strerror(-r));
		goto undo;
	}
	if ((r = slot_fill(rt, c, ifaces, n_ifaces, &failed))) {
		error_set(ret_err, "writing %s: %s", map_names[failed], strerror(-r));
		goto undo;
	}
	if ((r = bpf_map_update_elem(rt->fd[MAP_ACTIVE], &zero, &slot, BPF_ANY))) {
		error_set(ret_err, "writing %s: %s", map_names[MAP_ACTIVE], strerror(-r));
		goto undo;
	}

	/*
	 * An update of a map-in-map returns after an RCU grace period (maybe_wait_bpf_programs()
	 * in kernel/bpf/syscall.c): then no program reads the old slot any more, and its hit
	 * counters are final. Should the update fail, the old slot is left as it is: out of
	 * force, and cleared before the next apply writes it.
	 */
	synced = !bpf_map_update_elem(rt->fd[MAP_SYNC], &zero, &rt->fd[MAP_SYNC_INNER], BPF_ANY);
	totals_carry(rt, rt->in_force);
	if (synced)
		slot_clear(rt, old); /* leftovers are cleared before the slot is written again */
	rt->active = slot;
	rt->generation = c->meta.generation;
	rt->in_force = c;
	history_push(rt, c);
	return 0;

undo:
	slot_clear(rt, slot);
out:
	loupe_policy_compiled_free(c);
	return r;
}

int loupe_policy_iface_removed(struct loupe_policy_runtime *rt, int ifindex)
{
	struct loupe_policy_iface_key key = { .slot = rt->active, .ifindex = (uint32_t)ifindex };
	int r;

	if (!rt->in_force || !rt->in_force->meta.n_bits)
		return 0;
	r = bpf_map_delete_elem(rt->fd[MAP_IFACES], &key);
	return r == -ENOENT ? 0 : r;
}
