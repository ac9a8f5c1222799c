// SPDX-License-Identifier: Apache-2.0
/*
 * Puts compiled policy sets in force: writes the slot not in force, switches
 * loupe_pol_active, waits out the programs in flight and clears the old slot; keeps
 * loupe_rate in step with the set and the pod interfaces; keeps the names of recent
 * generations' bits and the hit totals by rule across applies. Not for compiling
 * (policy_compile.c) or for reading policy files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "policy_apply.h"

/* Generations whose bits stay named: events of a flow decided a few applies ago. */
#define HISTORY 8
/* Hit counters zeroed or read per BPF_MAP_*_BATCH call: ncpus values each. */
#define HITS_BATCH 256

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
	MAP_REWRITES,
	MAP_RATE,
	MAP_N,
};

static const char *const map_names[MAP_N] = {
	[MAP_ACTIVE] = LOUPE_MAP_POL_ACTIVE,
	[MAP_META] = LOUPE_MAP_POL_META,
	[MAP_IFACES] = LOUPE_MAP_POL_IFACES,
	[MAP_ADDRS] = LOUPE_MAP_POL_ADDRS,
	[MAP_PORTS] = LOUPE_MAP_POL_PORTS,
	[MAP_NAMES] = LOUPE_MAP_POL_NAMES,
	[MAP_PATHS] = LOUPE_MAP_POL_PATHS,
	[MAP_METHODS] = LOUPE_MAP_POL_METHODS,
	[MAP_HITS] = LOUPE_MAP_POL_HITS,
	[MAP_SYNC] = LOUPE_MAP_POL_SYNC,
	[MAP_SYNC_INNER] = "loupe_pol_sync_inner",
	[MAP_REWRITES] = LOUPE_MAP_POL_REWRITES,
	[MAP_RATE] = LOUPE_MAP_RATE,
};

/* The maps whose keys carry a slot, and where; the tries after loupe_pol_ifaces. */
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
#define SLOT_KEYED_N (sizeof(slot_keyed) / sizeof(slot_keyed[0]))
#define TRIES_N	     (SLOT_KEYED_N - 1) /* slot_keyed[1 + i] */

/*
 * What a slot holds, as far as this runtime knows. Only loupe_policy_apply() writes the tries
 * and the slot not in force; loupe_pol_ifaces of the slot in force changes with the links, so
 * it is always walked. Knowing spares walking every key of both slots (a bpf() call each) to
 * find the few or none of one slot.
 */
enum slot_state {
	SLOT_UNKNOWN = 0, /* anything: an earlier agent's set, leftovers of a write cut short */
	SLOT_EMPTY,	  /* cleared by this runtime, not written since */
	SLOT_WRITTEN,	  /* its tries hold exactly the keys in slot_keys, written by us */
};

/* The keys of a slot's tries, each trie's key_size bytes apiece; its rewrite entries. */
struct slot_keys {
	uint8_t *v[TRIES_N];
	size_t n[TRIES_N];
	uint32_t n_rewrites; /* loupe_pol_rewrites entries written from the slot's first on */
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
	uint64_t *batch;  /* HITS_BATCH per-CPU values */
	uint32_t batch_keys[HITS_BATCH];
	bool no_batch; /* the kernel has no batch calls for per-CPU arrays */
	enum slot_state state[LOUPE_POLICY_SLOTS];
	struct slot_keys keys[LOUPE_POLICY_SLOTS]; /* SLOT_WRITTEN */
	uint32_t active;
	uint32_t generation;
	/* the set in force when this agent put it there; NULL before the first apply */
	struct loupe_policy_compiled *in_force;
	/* bit names of the last generations, at generation % HISTORY; in_force among them */
	struct loupe_policy_compiled *history[HISTORY];
	struct hit_total *totals; /* sorted by policy, then rule */
	size_t n_totals, cap_totals;
};

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
	rt->batch = calloc((size_t)rt->ncpus * HITS_BATCH, sizeof(*rt->batch));
	r = -ENOMEM;
	if (!rt->percpu || !rt->batch)
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

static void slot_keys_free(struct slot_keys *k)
{
	for (size_t i = 0; i < TRIES_N; i++)
		free(k->v[i]);
	memset(k, 0, sizeof(*k));
}

struct loupe_policy_runtime *loupe_policy_runtime_free(struct loupe_policy_runtime *rt)
{
	if (!rt)
		return NULL;
	for (int i = 0; i < LOUPE_POLICY_SLOTS; i++)
		slot_keys_free(&rt->keys[i]);
	free(rt->batch);
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

const struct loupe_policy_rewrite *
loupe_policy_rewrite_lookup(const struct loupe_policy_runtime *rt, uint32_t generation,
			    unsigned int rewrite)
{
	const struct loupe_policy_compiled *c = rt->history[generation % HISTORY];

	if (!c || c->meta.generation != generation || rewrite >= c->meta.n_rewrites)
		return NULL;
	return c->rewrite_src[rewrite];
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

/* Deletes the @n keys of @keys (@key_size bytes each) from @fd; one already gone is fine. */
static int keys_delete(int fd, const uint8_t *keys, size_t n, size_t key_size)
{
	int r = 0;

	for (size_t i = 0; i < n && !r; i++)
		if ((r = bpf_map_delete_elem(fd, keys + i * key_size)) == -ENOENT)
			r = 0;
	return r;
}

/*
 * Leaves @slot as no set: no entries, no methods, no rewrites, meta zeroed (n_bits 0). A slot
 * this runtime cleared and has not written since is left as it is; one it wrote loses the
 * keys it wrote, without a walk of the tries.
 */
static int slot_clear(struct loupe_policy_runtime *rt, uint32_t slot)
{
	struct loupe_policy_meta meta = { 0 };
	struct loupe_policy_bits none = { 0 };
	struct loupe_rewrite no_rewrite = { 0 };
	struct slot_keys *k = &rt->keys[slot];
	uint32_t n_rewrites;
	int r = 0;

	if (rt->state[slot] == SLOT_EMPTY)
		return 0;
	for (size_t i = 0; i < SLOT_KEYED_N && !r; i++) {
		const struct slot_keyed *m = &slot_keyed[i];

		if (i && rt->state[slot] == SLOT_WRITTEN)
			r = keys_delete(rt->fd[m->map], k->v[i - 1], k->n[i - 1], m->key_size);
		else
			r = map_clear_slot(rt->fd[m->map], m, slot);
	}
	for (uint32_t m = 0; m < LOUPE_POLICY_METHODS && !r; m++) {
		uint32_t key = slot * LOUPE_POLICY_METHODS + m;

		r = bpf_map_update_elem(rt->fd[MAP_METHODS], &key, &none, BPF_ANY);
	}
	/* unknown: all of the slot's entries (an agent may have died half way) */
	n_rewrites = rt->state[slot] == SLOT_WRITTEN ? k->n_rewrites : LOUPE_REWRITES_MAX;
	for (uint32_t i = 0; i < n_rewrites && !r; i++) {
		uint32_t key = slot * LOUPE_REWRITES_MAX + i;

		r = bpf_map_update_elem(rt->fd[MAP_REWRITES], &key, &no_rewrite, BPF_ANY);
	}
	if (!r)
		r = bpf_map_update_elem(rt->fd[MAP_META], &slot, &meta, BPF_ANY);
	if (r)
		return r; /* the state stays: a walk finds whatever is left */
	slot_keys_free(k);
	rt->state[slot] = SLOT_EMPTY;
	return 0;
}

/* Remembers the keys @c wrote into the tries of its slot; false when out of memory. */
static bool slot_keys_keep(struct loupe_policy_runtime *rt, const struct loupe_policy_compiled *c)
{
	const struct loupe_policy_entries *tries[TRIES_N] = { &c->addrs, &c->ports, &c->names,
							      &c->paths };
	struct slot_keys *k = &rt->keys[c->slot];

	slot_keys_free(k);
	for (size_t i = 0; i < TRIES_N; i++) {
		size_t key_size = slot_keyed[i + 1].key_size;

		k->v[i] = malloc(tries[i]->n ? tries[i]->n * key_size : 1);
		if (!k->v[i]) {
			slot_keys_free(k);
			return false;
		}
		for (size_t j = 0; j < tries[i]->n; j++)
			memcpy(k->v[i] + j * key_size, &tries[i]->v[j].key, key_size);
		k->n[i] = tries[i]->n;
	}
	k->n_rewrites = c->meta.n_rewrites;
	return true;
}

/* Zeroes the hit counters of the first @n_bits bits of @slot: only those are ever read. */
static int hits_zero(struct loupe_policy_runtime *rt, uint32_t slot, uint32_t n_bits)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
	uint32_t bit = 0;
	int r = 0;

	if (n_bits > LOUPE_POLICY_BITS)
		n_bits = LOUPE_POLICY_BITS;
	memset(rt->batch, 0, (size_t)rt->ncpus * HITS_BATCH * sizeof(*rt->batch));
	while (bit < n_bits && !rt->no_batch) {
		uint32_t count = n_bits - bit < HITS_BATCH ? n_bits - bit : HITS_BATCH;

		for (uint32_t i = 0; i < count; i++)
			rt->batch_keys[i] = slot * LOUPE_POLICY_BITS + bit + i;
		if (bpf_map_update_batch(rt->fd[MAP_HITS], rt->batch_keys, rt->batch, &count,
					 &opts))
			rt->no_batch = true; /* the rest one by one: a real error shows there */
		bit += count;
	}
	for (; bit < n_bits && !r; bit++) {
		uint32_t key = slot * LOUPE_POLICY_BITS + bit;

		r = bpf_map_update_elem(rt->fd[MAP_HITS], &key, rt->batch, BPF_ANY);
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

/* ---- rate limits ------------------------------------------------------------------------- */

static const enum loupe_policy_direction rate_dirs[LOUPE_DIR_MAX] = {
	[LOUPE_DIR_POD_EGRESS] = LOUPE_POLICY_EGRESS,
	[LOUPE_DIR_POD_INGRESS] = LOUPE_POLICY_INGRESS,
};

/* A loupe_rate entry a set calls for. */
struct rate_want {
	struct loupe_rate_key key; /* first: rate_want_cmp() compares keys and wants alike */
	struct loupe_policy_rate_limit limit;
};

/* The entries @c calls for on @ifaces, malloc'd in *@ret (NULL when none). */
static int rates_wanted(const struct loupe_policy_compiled *c,
			const struct loupe_policy_iface *ifaces, size_t n_ifaces,
			struct rate_want **ret, size_t *ret_n)
{
	struct rate_want *v;
	size_t n = 0;

	*ret = NULL;
	*ret_n = 0;
	if (!(c->meta.flags & LOUPE_POL_HAS_RATE_LIMITS) || !n_ifaces)
		return 0;
	v = calloc(n_ifaces * LOUPE_DIR_MAX, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n_ifaces; i++) {
		for (uint32_t dir = 0; dir < LOUPE_DIR_MAX; dir++) {
			if (!loupe_policy_compiled_rate(c, ifaces[i].name, ifaces[i].addrs,
							ifaces[i].n_addrs, rate_dirs[dir],
							&v[n].limit))
				continue;
			v[n].key = (struct loupe_rate_key){ .ifindex = (uint32_t)ifaces[i].ifindex,
							    .direction = dir };
			n++;
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/*
 * Writes the limit of @key: a full bucket, refilled from the first packet on. An entry with
 * the same rate and burst is left alone: an apply that does not change the limit does not
 * hand the pod a fresh burst.
 */
static int rate_write(struct loupe_policy_runtime *rt, const struct loupe_rate_key *key,
		      const struct loupe_policy_rate_limit *limit, uint32_t generation)
{
	struct loupe_rate v;

	if (!bpf_map_lookup_elem(rt->fd[MAP_RATE], key, &v) &&
	    v.bytes_per_sec == limit->bytes_per_sec && v.burst == limit->burst)
		return 0;
	memset(&v, 0, sizeof(v));
	v.bytes_per_sec = limit->bytes_per_sec;
	v.burst = limit->burst;
	v.tokens = limit->burst;
	v.generation = generation;
	return bpf_map_update_elem(rt->fd[MAP_RATE], key, &v, BPF_ANY);
}

static int rate_delete(struct loupe_policy_runtime *rt, const struct loupe_rate_key *key)
{
	int r = bpf_map_delete_elem(rt->fd[MAP_RATE], key);

	return r == -ENOENT ? 0 : r;
}

static int rate_want_cmp(const void *a, const void *b)
{
	const struct loupe_rate_key *x = a, *y = b; /* the key leads struct rate_want */

	if (x->ifindex != y->ifindex)
		return x->ifindex < y->ifindex ? -1 : 1;
	return (x->direction > y->direction) - (x->direction < y->direction);
}

/*
 * Makes loupe_rate hold exactly @want (sorted here): the entries not wanted are deleted first
 * (found by walking the map: an earlier agent's are in no set in memory), then the wanted
 * written.
 */
static int rates_sync(struct loupe_policy_runtime *rt, struct rate_want *want, size_t n,
		      uint32_t generation)
{
	struct loupe_rate_key cur, next, *stale = NULL;
	size_t n_stale = 0, cap = 0, i;
	void *prev = NULL;
	int r;

	if (n)
		qsort(want, n, sizeof(*want), rate_want_cmp);
	while (!(r = bpf_map_get_next_key(rt->fd[MAP_RATE], prev, &next))) {
		if (!n || !bsearch(&next, want, n, sizeof(*want), rate_want_cmp)) {
			if (n_stale == cap) {
				size_t more = cap ? cap * 2 : 64;
				void *p = realloc(stale, more * sizeof(*stale));

				if (!p) {
					r = -ENOMEM;
					goto out;
				}
				stale = p;
				cap = more;
			}
			stale[n_stale++] = next;
		}
		cur = next;
		prev = &cur;
	}
	if (r != -ENOENT)
		goto out;
	r = 0;
	for (i = 0; i < n_stale && !r; i++)
		r = rate_delete(rt, &stale[i]);
	for (i = 0; i < n && !r; i++)
		r = rate_write(rt, &want[i].key, &want[i].limit, generation);
out:
	free(stale);
	return r;
}

/* ---- interfaces ----------------------------------------------------------------------------- */

int loupe_policy_iface_update(struct loupe_policy_runtime *rt,
			      const struct loupe_policy_iface *iface)
{
	struct loupe_policy_iface_key key = { .slot = rt->active,
					      .ifindex = (uint32_t)iface->ifindex };
	const struct loupe_policy_compiled *c = rt->in_force;
	struct loupe_policy_bits bits;
	int r = 0;

	if (!c)
		return 0;
	if (c->meta.n_bits) {
		if (loupe_policy_compiled_iface_bits(c, iface->name, &bits))
			r = bpf_map_update_elem(rt->fd[MAP_IFACES], &key, &bits, BPF_ANY);
		else if ((r = bpf_map_delete_elem(rt->fd[MAP_IFACES], &key)) == -ENOENT)
			r = 0; /* a renamed interface may have had an entry the new name has not */
		if (r)
			return r;
	}
	for (uint32_t dir = 0; dir < LOUPE_DIR_MAX && !r; dir++) {
		struct loupe_rate_key rk = { .ifindex = (uint32_t)iface->ifindex,
					     .direction = dir };
		struct loupe_policy_rate_limit limit;

		if (c->meta.flags & LOUPE_POL_HAS_RATE_LIMITS &&
		    loupe_policy_compiled_rate(c, iface->name, iface->addrs, iface->n_addrs,
					       rate_dirs[dir], &limit))
			r = rate_write(rt, &rk, &limit, c->meta.generation);
		else
			r = rate_delete(rt, &rk);
	}
	return r;
}

int loupe_policy_iface_added(struct loupe_policy_runtime *rt, int ifindex, const char *name)
{
	struct loupe_policy_iface iface = { .ifindex = ifindex, .name = name };

	return loupe_policy_iface_update(rt, &iface);
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
	*ret_failed = MAP_REWRITES;
	for (uint32_t i = 0; i < c->meta.n_rewrites && !r; i++) {
		uint32_t key = slot * LOUPE_REWRITES_MAX + i;

		r = bpf_map_update_elem(rt->fd[MAP_REWRITES], &key, &c->rewrites[i], BPF_ANY);
	}
	if (r)
		return r;
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

/* Adds the hits of @c, a set leaving force, to the totals; a lost count is not worth failing. */
static void totals_carry(struct loupe_policy_runtime *rt, const struct loupe_policy_compiled *c)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	unsigned int bit = 0, n_bits;
	uint64_t flows;

	if (!c)
		return;
	n_bits = c->meta.n_rule_bits < LOUPE_POLICY_BITS ? c->meta.n_rule_bits : LOUPE_POLICY_BITS;
	/* a batch starts after the key it is given: the bit before, or the map's start */
	while (bit < n_bits && !rt->no_batch) {
		uint32_t count = n_bits - bit < HITS_BATCH ? n_bits - bit : HITS_BATCH;
		uint32_t prev = c->slot * LOUPE_POLICY_BITS + bit - 1, out;
		int r = bpf_map_lookup_batch(rt->fd[MAP_HITS], bit || c->slot ? &prev : NULL, &out,
					     rt->batch_keys, rt->batch, &count, &opts);

		if (r && r != -ENOENT)
			break; /* the rest one by one */
		for (uint32_t i = 0; i < count; i++) {
			flows = 0;
			for (int cpu = 0; cpu < rt->ncpus; cpu++)
				flows += rt->batch[(size_t)i * rt->ncpus + cpu];
			if (flows)
				total_add(rt, &c->bits[bit + i], flows);
		}
		bit += count;
		if (!count)
			break;
	}
	for (; bit < n_bits; bit++)
		if (!hits_read(rt, c->slot, bit, &flows) && flows)
			total_add(rt, &c->bits[bit], flows);
}

int loupe_policy_hits_foreach(struct loupe_policy_runtime *rt, loupe_policy_hits_fn fn, void *ctx)
{
	const struct loupe_policy_compiled *c = rt->in_force;
	uint64_t flows;
	int r;

	if (!c)
		return 0;
	for (unsigned int bit = 0; bit < c->meta.n_rule_bits; bit++) {
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
	struct rate_want *rates = NULL;
	struct loupe_policy_bits bits;
	size_t n_iface_entries = 0, n_rates = 0;
	bool synced;
	int r;

	r = loupe_policy_compile(set, (uint8_t)slot, rt->generation + 1, &c, ret_err);
	if (r)
		return r;
	for (size_t i = 0; i < n_ifaces; i++)
		n_iface_entries += loupe_policy_compiled_iface_bits(c, ifaces[i].name, &bits);
	if (n_iface_entries > LOUPE_POL_IFACES_MAX / 2) {
		loupe_policy_error_setf(
			ret_err,
			"the set selects %zu interfaces by name; the datapath holds at most %d",
			n_iface_entries, LOUPE_POL_IFACES_MAX / 2);
		r = -EINVAL;
		goto out;
	}
	if ((r = rates_wanted(c, ifaces, n_ifaces, &rates, &n_rates))) {
		loupe_policy_error_setf(ret_err, "out of memory");
		goto out;
	}
	if (n_rates > LOUPE_RATE_MAX) {
		loupe_policy_error_setf(
			ret_err,
			"the set limits %zu interfaces and directions; the datapath holds at "
			"most %d",
			n_rates, LOUPE_RATE_MAX);
		r = -EINVAL;
		goto out;
	}

	if ((r = slot_clear(rt, slot))) {
		loupe_policy_error_setf(ret_err, "clearing policy slot %u: %s", slot, strerror(-r));
		goto undo;
	}
	rt->state[slot] = SLOT_UNKNOWN;
	if ((r = slot_fill(rt, c, ifaces, n_ifaces, &failed))) {
		loupe_policy_error_setf(ret_err, "writing %s: %s", map_names[failed], strerror(-r));
		goto undo;
	}
	if (slot_keys_keep(rt, c))
		rt->state[slot] = SLOT_WRITTEN;
	if ((r = bpf_map_update_elem(rt->fd[MAP_ACTIVE], &zero, &slot, BPF_ANY))) {
		loupe_policy_error_setf(ret_err, "writing %s: %s", map_names[MAP_ACTIVE],
					strerror(-r));
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

	/* not slotted: the limits follow the set in force, written once it is */
	if ((r = rates_sync(rt, rates, n_rates, rt->generation)))
		loupe_policy_error_setf(ret_err, "the set is in force, but writing %s failed: %s",
					map_names[MAP_RATE], strerror(-r));
	free(rates);
	return r;

undo:
	slot_clear(rt, slot);
out:
	free(rates);
	loupe_policy_compiled_free(c);
	return r;
}

int loupe_policy_iface_removed(struct loupe_policy_runtime *rt, int ifindex)
{
	struct loupe_policy_iface_key key = { .slot = rt->active, .ifindex = (uint32_t)ifindex };
	int r = 0;

	/* whatever set wrote them: a gone interface's limits are no one's */
	for (uint32_t dir = 0; dir < LOUPE_DIR_MAX && !r; dir++) {
		struct loupe_rate_key rk = { .ifindex = (uint32_t)ifindex, .direction = dir };

		r = rate_delete(rt, &rk);
	}
	if (r || !rt->in_force || !rt->in_force->meta.n_bits)
		return r;
	r = bpf_map_delete_elem(rt->fd[MAP_IFACES], &key);
	return r == -ENOENT ? 0 : r;
}
