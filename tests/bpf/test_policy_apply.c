// SPDX-License-Identifier: Apache-2.0
/*
 * Putting policy sets in force in the real maps (policy_apply.c): each apply fills the slot
 * not in force and switches to it (rewrite entries too), the old slot is emptied, a refused
 * or failed apply leaves the set in force as it was, hit totals follow rules across applies,
 * interfaces come and go, loupe_rate follows sets and interfaces, and a set pinned by an
 * earlier agent stays in force. Needs root; skips without BPF. Not for what the compiler
 * produces (tests/unit/test_policy_compile.c) nor for judging or rewriting packets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <criterion/criterion.h>

#include "fixtures.h"
#include "policy_apply.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A policy's name and spec (JSON, ' for "); a set ends with a NULL name. */
struct policy_text {
	const char *name;
	const char *spec;
};

/* Rules of every kind, an interface glob and a default: bits web 0, sni 1, dns 2, smtp 3,
 * a's default 4. */
static const struct policy_text SET_A[] = {
	{ "a", "{'podSelector':{'interfaces':['veth*'],'cidrs':['198.18.0.0/16']},"
	       "'defaultAction':'deny','rules':["
	       "{'name':'web','direction':'egress','match':{'cidrs':['198.19.0.0/16'],"
	       "'ports':[{'port':80,'endPort':90}],'http':{'methods':['GET'],"
	       "'paths':['/v1/'],'hosts':['api.example.com']}},'action':'allow'},"
	       "{'name':'sni','direction':'egress',"
	       "'match':{'tls':{'sni':['*.example.com']}},'action':'audit'},"
	       "{'name':'dns','direction':'egress',"
	       "'match':{'dns':{'names':['x.io']}},'action':'deny'}]}" },
	{ "b", "{'podSelector':{},'rules':["
	       "{'name':'smtp','direction':'egress','match':{'ports':[{'port':25}]},"
	       "'action':'deny'}]}" },
	{ NULL, NULL },
};

static const struct policy_text SET_B[] = {
	{ "c", "{'podSelector':{},'rules':["
	       "{'name':'r','direction':'egress','match':{'cidrs':['10.0.0.0/8']},"
	       "'action':'allow'}]}" },
	{ NULL, NULL },
};

/* Another "a", and a policy whose rules come before smtp: smtp is bit 4 here. */
static const struct policy_text SET_A_MORE[] = {
	{ "a", "{'podSelector':{},'rules':["
	       "{'name':'web','direction':'egress','match':{},'action':'allow'}]}" },
	{ "aa", "{'podSelector':{},'rules':["
		"{'name':'first','direction':'ingress','match':{},'action':'allow'},"
		"{'name':'second','direction':'ingress','match':{},'action':'audit'},"
		"{'name':'third','direction':'ingress','match':{},'action':'audit'}]}" },
	{ "b", "{'podSelector':{},'rules':["
	       "{'name':'smtp','direction':'egress','match':{'ports':[{'port':25}]},"
	       "'action':'deny'}]}" },
	{ NULL, NULL },
};

static const struct policy_text SET_SMTP[] = {
	{ "no-smtp", "{'podSelector':{},'rules':["
		     "{'name':'smtp','direction':'egress',"
		     "'match':{'cidrs':['198.19.0.0/16'],'ports':[{'port':25}]},"
		     "'action':'deny'}]}" },
	{ NULL, NULL },
};

/* Rewrites of every kind: three in "rw" (bits 2, 3, 4 after r and rw's default), one in
 * "rw2" selected by interface name (bit 5). */
static const struct policy_text SET_RW[] = {
	{ "rw", "{'podSelector':{},'defaultAction':'audit','rules':["
		"{'name':'r','direction':'egress','match':{'ports':[{'port':25}]},"
		"'action':'deny'}],'rewrites':["
		"{'name':'map','direction':'egress','match':{'cidrs':['198.19.0.0/16']},"
		"'mapTo':{'address':'198.18.6.6','port':8080}},"
		"{'name':'mask','direction':'egress','match':{'ports':[{'port':80}]},"
		"'http':{'maskHeaders':['Authorization','X-Api-Key']}},"
		"{'name':'dscp','direction':'ingress','match':{},'setDscp':10}]}" },
	{ "rw2", "{'podSelector':{'interfaces':['veth*']},'rewrites':["
		 "{'name':'v','direction':'egress','match':{},'vlan':{'push':7}}]}" },
	{ NULL, NULL },
};

/* veth7 (10.244.1.7): egress 1000 by name; eth8 (10.244.2.8): egress 2000, ingress 3000. */
static const struct policy_text SET_RATE[] = {
	{ "lim-veth", "{'priority':1,'podSelector':{'interfaces':['veth*']},'rateLimits':["
		      "{'direction':'egress','bytesPerSecond':1000,'burst':70000}]}" },
	{ "lim-cidr", "{'priority':2,'podSelector':{'cidrs':['10.244.2.0/24','fd00:1::/64']},"
		      "'rateLimits':[{'direction':'egress','bytesPerSecond':2000},"
		      "{'direction':'ingress','bytesPerSecond':3000}]}" },
	{ NULL, NULL },
};

/* eth8's egress limit unchanged, the others gone. */
static const struct policy_text SET_RATE_LESS[] = {
	{ "lim-cidr", "{'priority':2,'podSelector':{'cidrs':['10.244.2.0/24']},"
		      "'rateLimits':[{'direction':'egress','bytesPerSecond':2000}]}" },
	{ NULL, NULL },
};

/* eth8's egress limit changed. */
static const struct policy_text SET_RATE_MORE[] = {
	{ "lim-cidr", "{'priority':2,'podSelector':{'cidrs':['10.244.2.0/24']},"
		      "'rateLimits':[{'direction':'egress','bytesPerSecond':4000}]}" },
	{ NULL, NULL },
};

/* IPv4 addresses IPv4-mapped, as links.h gives them. */
static const uint8_t ADDRS7[][16] = {
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 244, 1, 7 },
};
static const uint8_t ADDRS8[][16] = {
	{ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 244, 2, 8 },
	{ 0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8 },
};

static const struct loupe_policy_iface IFACES[] = {
	{ .ifindex = 7, .name = "veth7", .addrs = ADDRS7, .n_addrs = 1 },
	{ .ifindex = 8, .name = "eth8", .addrs = ADDRS8, .n_addrs = 2 },
};

/* ------------------------------------------------------------------ helpers */

/* JSON text is written with ' for " to stay readable. */
static struct loupe_policy_set *parse(const char *text)
{
	struct loupe_policy_set *set = calloc(1, sizeof(*set));
	struct loupe_policy_error e;
	char *json = strdup(text);
	int r;

	cr_assert_not_null(set);
	cr_assert_not_null(json);
	for (char *p = json; *p; p++)
		if (*p == '\'')
			*p = '"';
	r = loupe_policy_parse(json, strlen(json), "test.json", set, &e);
	cr_assert_eq(r, 0, "parse: %s: %s\n%s", e.path, e.message, json);
	free(json);
	return set;
}

static struct loupe_policy_set *parse_set(const struct policy_text *policies)
{
	struct loupe_policy_set *set;
	char *json = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&json, &len);

	cr_assert_not_null(f);
	fputc('[', f);
	for (size_t i = 0; policies[i].name; i++)
		fprintf(f,
			"%s{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'%s'},"
			"'spec':%s}",
			i ? "," : "", policies[i].name, policies[i].spec);
	fputc(']', f);
	fclose(f);
	set = parse(json);
	free(json);
	return set;
}

static int map_fd(struct fx *fx, const char *name)
{
	int fd = loupe_datapath_map_fd(fx->dp, name);

	cr_assert_geq(fd, 0, "%s: %s", name, strerror(-fd));
	return fd;
}

static struct loupe_policy_runtime *runtime_open(struct fx *fx)
{
	struct loupe_policy_runtime *rt = NULL;
	int r = loupe_policy_runtime_open(fx->dp, &rt);

	cr_assert_eq(r, 0, "loupe_policy_runtime_open: %s", strerror(-r));
	return rt;
}

static void apply_ok(struct loupe_policy_runtime *rt, const struct policy_text *policies,
		     const struct loupe_policy_iface *ifaces, size_t n)
{
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_error e = { 0 };
	int r = loupe_policy_apply(rt, set, ifaces, n, &e);

	cr_assert_eq(r, 0, "apply: %s: %s", strerror(-r), e.message);
	loupe_policy_set_free(set);
}

/* What the apply of @policies as generation @generation into @slot should have written. */
static struct loupe_policy_compiled *compiled(const struct policy_text *policies, uint8_t slot,
					      uint32_t generation)
{
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = NULL;
	struct loupe_policy_error e;

	cr_assert_eq(loupe_policy_compile(set, slot, generation, &c, &e), 0, "%s", e.message);
	loupe_policy_set_free(set);
	return c;
}

static uint32_t active_slot(struct fx *fx)
{
	uint32_t zero = 0, slot = 99;

	cr_assert_eq(bpf_map_lookup_elem(map_fd(fx, LOUPE_MAP_POL_ACTIVE), &zero, &slot), 0);
	return slot;
}

static struct loupe_policy_meta meta_of(struct fx *fx, uint32_t slot)
{
	struct loupe_policy_meta meta;

	cr_assert_eq(bpf_map_lookup_elem(map_fd(fx, LOUPE_MAP_POL_META), &slot, &meta), 0);
	return meta;
}

/* The maps whose keys carry the slot. */
static const struct {
	const char *name;
	size_t key_size;
	bool slot_is_u32;
} keyed[] = {
	{ LOUPE_MAP_POL_IFACES, sizeof(struct loupe_policy_iface_key), true },
	{ LOUPE_MAP_POL_ADDRS, sizeof(struct loupe_policy_addr_key), false },
	{ LOUPE_MAP_POL_PORTS, sizeof(struct loupe_policy_port_key), false },
	{ LOUPE_MAP_POL_NAMES, sizeof(struct loupe_policy_name_key), false },
	{ LOUPE_MAP_POL_PATHS, sizeof(struct loupe_policy_path_key), false },
};

static size_t slot_keys(struct fx *fx, size_t map, uint32_t slot)
{
	uint8_t cur[sizeof(struct loupe_policy_name_key)], next[sizeof(cur)];
	int fd = map_fd(fx, keyed[map].name);
	void *prev = NULL;
	size_t n = 0;

	while (!bpf_map_get_next_key(fd, prev, next)) {
		uint32_t s = keyed[map].slot_is_u32 ? ((struct loupe_policy_iface_key *)next)->slot
						    : ((struct loupe_policy_addr_key *)next)->slot;

		n += s == slot;
		memcpy(cur, next, keyed[map].key_size);
		prev = cur;
	}
	return n;
}

static void expect_entries(struct fx *fx, const char *map, const struct loupe_policy_entries *es)
{
	int fd = map_fd(fx, map);

	for (size_t i = 0; i < es->n; i++) {
		struct loupe_policy_bits got;

		if (bpf_map_lookup_elem(fd, &es->v[i].key, &got)) {
			cr_expect_fail("%s: entry %zu of %zu missing", map, i, es->n);
			continue;
		}
		cr_expect_eq(memcmp(&got, &es->v[i].value, sizeof(got)), 0,
			     "%s: entry %zu: another value", map, i);
	}
}

/* Asserts the maps hold @c in its slot, and only @c, with its interface entries for @ifaces. */
static void expect_slot_holds(struct fx *fx, const struct loupe_policy_compiled *c,
			      const struct loupe_policy_iface *ifaces, size_t n_ifaces)
{
	const struct loupe_policy_entries *tries[] = { &c->addrs, &c->ports, &c->names, &c->paths };
	struct loupe_policy_meta meta = meta_of(fx, c->slot);
	int methods = map_fd(fx, LOUPE_MAP_POL_METHODS), ifs = map_fd(fx, LOUPE_MAP_POL_IFACES);
	size_t n_ifaces_needed = 0;

	cr_expect_eq(memcmp(&meta, &c->meta, sizeof(meta)), 0, "meta[%u] differs", c->slot);
	for (size_t i = 0; i < ARRAY_SIZE(tries); i++) {
		cr_expect_eq(slot_keys(fx, i + 1, c->slot), tries[i]->n, "%s: %zu keys, want %zu",
			     keyed[i + 1].name, slot_keys(fx, i + 1, c->slot), tries[i]->n);
		expect_entries(fx, keyed[i + 1].name, tries[i]);
	}
	for (uint32_t m = 0; m < LOUPE_POLICY_METHODS; m++) {
		uint32_t key = c->slot * LOUPE_POLICY_METHODS + m;
		struct loupe_policy_bits got;

		cr_assert_eq(bpf_map_lookup_elem(methods, &key, &got), 0);
		cr_expect_eq(memcmp(&got, &c->methods[m], sizeof(got)), 0, "methods[%u]", key);
	}
	for (size_t i = 0; i < n_ifaces; i++) {
		struct loupe_policy_iface_key key = { .slot = c->slot,
						      .ifindex = (uint32_t)ifaces[i].ifindex };
		struct loupe_policy_bits want, got;
		bool needed = loupe_policy_compiled_iface_bits(c, ifaces[i].name, &want);
		int r = bpf_map_lookup_elem(ifs, &key, &got);

		n_ifaces_needed += needed;
		cr_expect_eq(r == 0, needed, "%s: entry %s", ifaces[i].name,
			     r ? "missing" : "there");
		if (!r && needed)
			cr_expect_eq(memcmp(&got, &want, sizeof(got)), 0, "%s: value",
				     ifaces[i].name);
	}
	cr_expect_eq(slot_keys(fx, 0, c->slot), n_ifaces_needed);
	for (uint32_t i = 0; i < LOUPE_REWRITES_MAX; i++) {
		struct loupe_rewrite got, none = { 0 };
		const struct loupe_rewrite *want = i < c->meta.n_rewrites ? &c->rewrites[i] : &none;
		uint32_t key = c->slot * LOUPE_REWRITES_MAX + i;

		cr_assert_eq(bpf_map_lookup_elem(map_fd(fx, LOUPE_MAP_POL_REWRITES), &key, &got),
			     0);
		cr_expect_eq(memcmp(&got, want, sizeof(got)), 0, "rewrites[%u] of slot %u", i,
			     c->slot);
	}
}

static void expect_slot_empty(struct fx *fx, uint32_t slot)
{
	int methods = map_fd(fx, LOUPE_MAP_POL_METHODS), rws = map_fd(fx, LOUPE_MAP_POL_REWRITES);
	struct loupe_policy_bits none = { 0 };
	struct loupe_rewrite no_rewrite = { 0 };

	for (uint32_t i = 0; i < LOUPE_REWRITES_MAX; i++) {
		uint32_t key = slot * LOUPE_REWRITES_MAX + i;
		struct loupe_rewrite got;

		cr_assert_eq(bpf_map_lookup_elem(rws, &key, &got), 0);
		cr_expect_eq(memcmp(&got, &no_rewrite, sizeof(got)), 0,
			     "rewrites[%u] of slot %u not cleared", i, slot);
	}

	cr_expect_eq(meta_of(fx, slot).n_bits, 0, "meta[%u].n_bits", slot);
	for (size_t i = 0; i < ARRAY_SIZE(keyed); i++)
		cr_expect_eq(slot_keys(fx, i, slot), 0, "%s: keys of slot %u left", keyed[i].name,
			     slot);
	for (uint32_t m = 0; m < LOUPE_POLICY_METHODS; m++) {
		uint32_t key = slot * LOUPE_POLICY_METHODS + m;
		struct loupe_policy_bits got;

		cr_assert_eq(bpf_map_lookup_elem(methods, &key, &got), 0);
		cr_expect_eq(memcmp(&got, &none, sizeof(got)), 0, "methods[%u] not cleared", key);
	}
}

/* Every key and value of the policy maps, one after the other: a snapshot to compare. */
static char *maps_dump(struct fx *fx, size_t *ret_len)
{
	static const char *const names[] = { LOUPE_MAP_POL_ACTIVE, LOUPE_MAP_POL_META,
					     LOUPE_MAP_POL_IFACES, LOUPE_MAP_POL_ADDRS,
					     LOUPE_MAP_POL_PORTS,  LOUPE_MAP_POL_NAMES,
					     LOUPE_MAP_POL_PATHS,  LOUPE_MAP_POL_METHODS };
	char *buf = NULL;
	FILE *f = open_memstream(&buf, ret_len);

	cr_assert_not_null(f);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct bpf_map_info info = { 0 };
		uint32_t info_len = sizeof(info);
		int fd = map_fd(fx, names[i]);
		static uint8_t cur[512], next[512], value[sizeof(struct loupe_policy_meta)];
		void *prev = NULL;

		cr_assert_eq(bpf_obj_get_info_by_fd(fd, &info, &info_len), 0);
		cr_assert_leq(info.key_size, sizeof(cur));
		cr_assert_leq(info.value_size, sizeof(value));
		while (!bpf_map_get_next_key(fd, prev, next)) {
			cr_assert_eq(bpf_map_lookup_elem(fd, next, value), 0);
			fwrite(next, 1, info.key_size, f);
			fwrite(value, 1, info.value_size, f);
			memcpy(cur, next, info.key_size);
			prev = cur;
		}
	}
	fclose(f);
	return buf;
}

static void hits_write(struct fx *fx, uint32_t slot, unsigned int bit, uint64_t cpu0,
		       uint64_t last_cpu)
{
	int ncpus = loupe_datapath_ncpus(fx->dp);
	uint64_t *v = calloc(ncpus, sizeof(*v));
	uint32_t key = slot * LOUPE_POLICY_BITS + bit;

	cr_assert_not_null(v);
	v[0] = cpu0;
	v[ncpus - 1] += last_cpu;
	cr_assert_eq(bpf_map_update_elem(map_fd(fx, LOUPE_MAP_POL_HITS), &key, v, BPF_ANY), 0);
	free(v);
}

struct hit_row {
	char name[160];
	uint64_t flows;
};

struct hits {
	struct hit_row rows[64];
	size_t n;
};

static void on_hits(void *ctx, const struct loupe_policy_bit_info *info, uint64_t flows)
{
	struct hits *h = ctx;

	cr_assert_lt(h->n, ARRAY_SIZE(h->rows));
	snprintf(h->rows[h->n].name, sizeof(h->rows[0].name), "%s/%s", info->policy, info->rule);
	h->rows[h->n++].flows = flows;
}

/* The flows of "policy/rule" in the set in force; -1 when it is not in it. */
static long long hits_of(struct loupe_policy_runtime *rt, const char *name)
{
	struct hits h = { .n = 0 };

	cr_assert_eq(loupe_policy_hits_foreach(rt, on_hits, &h), 0);
	for (size_t i = 0; i < h.n; i++)
		if (!strcmp(h.rows[i].name, name))
			return (long long)h.rows[i].flows;
	return -1;
}

static const char *bit_name(struct loupe_policy_runtime *rt, uint32_t generation, unsigned bit)
{
	static char buf[160];
	const struct loupe_policy_bit_info *b = loupe_policy_bit_lookup(rt, generation, bit);

	if (!b)
		return "(none)";
	snprintf(buf, sizeof(buf), "%s/%s", b->policy, b->rule);
	return buf;
}

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------ tests */

Test(policy_apply, switches_slots, .description = "A in slot 1, then B in slot 0, A gone")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	struct loupe_policy_compiled *a = compiled(SET_A, 1, 1), *b = compiled(SET_B, 0, 2);

	cr_expect_eq(loupe_policy_generation(rt), 0, "a fresh datapath has no set");
	cr_expect_eq(active_slot(fx), 0);

	apply_ok(rt, SET_A, IFACES, ARRAY_SIZE(IFACES));
	cr_expect_eq(loupe_policy_generation(rt), 1);
	cr_expect_eq(active_slot(fx), 1);
	cr_expect_gt(a->addrs.n + a->ports.n + a->names.n + a->paths.n, 8);
	expect_slot_holds(fx, a, IFACES, ARRAY_SIZE(IFACES));
	expect_slot_empty(fx, 0);
	cr_expect_eq(slot_keys(fx, 0, 1), 1, "veth7 has an entry, eth8 none");
	cr_expect_str_eq(bit_name(rt, 1, 0), "a/web");
	cr_expect_str_eq(bit_name(rt, 1, 4), "a/");

	apply_ok(rt, SET_B, IFACES, ARRAY_SIZE(IFACES));
	cr_expect_eq(loupe_policy_generation(rt), 2);
	cr_expect_eq(active_slot(fx), 0);
	expect_slot_holds(fx, b, IFACES, ARRAY_SIZE(IFACES));
	expect_slot_empty(fx, 1);
	/* events of flows decided by the earlier generation still find their rule */
	cr_expect_str_eq(bit_name(rt, 1, 3), "b/smtp");
	cr_expect_str_eq(bit_name(rt, 2, 0), "c/r");
	cr_expect_str_eq(bit_name(rt, 2, 1), "(none)");
	cr_expect_str_eq(bit_name(rt, 3, 0), "(none)");

	/* an empty set: nothing judged, in force like any other */
	struct loupe_policy_set empty = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error e;

	cr_expect_eq(loupe_policy_apply(rt, &empty, NULL, 0, &e), 0);
	cr_expect_eq(active_slot(fx), 1);
	cr_expect_eq(meta_of(fx, 1).generation, 3);
	expect_slot_empty(fx, 0);
	expect_slot_empty(fx, 1);

	loupe_policy_compiled_free(a);
	loupe_policy_compiled_free(b);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, history_of_eight, .description = "bit names of the last 8 generations")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);

	for (int i = 0; i < 10; i++)
		apply_ok(rt, i % 2 ? SET_B : SET_A, NULL, 0);
	cr_expect_eq(loupe_policy_generation(rt), 10);
	cr_expect_str_eq(bit_name(rt, 2, 0), "(none)");
	cr_expect_str_eq(bit_name(rt, 3, 0), "a/web");
	cr_expect_str_eq(bit_name(rt, 10, 0), "c/r");
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, refused_set_changes_nothing, .description = "over the limit: -EINVAL")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	struct loupe_policy_set *big;
	struct loupe_policy_error e;
	char *json = NULL, *before, *after;
	size_t len = 0, before_len, after_len;
	FILE *f = open_memstream(&json, &len);

	cr_assert_not_null(f);
	fputs("[", f);
	/* more peer addresses than half the address trie holds (both slots live at once) */
	for (int p = 0; p < 3; p++) {
		fprintf(f,
			"%s{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'p%d'},"
			"'spec':{'podSelector':{},'rules':[",
			p ? "," : "", p);
		for (int i = 0; i < 256; i++) {
			fprintf(f, "%s{'name':'r%d','direction':'egress','match':{'cidrs':[",
				i ? "," : "", i);
			for (int k = 0; k < 64; k++)
				fprintf(f, "%s'10.%d.%d.%d'", k ? "," : "", p, i, k);
			fputs("]},'action':'deny'}", f);
		}
		fputs("]}}", f);
	}
	fputs("]", f);
	fclose(f);
	big = parse(json);
	free(json);

	apply_ok(rt, SET_A, IFACES, ARRAY_SIZE(IFACES));
	before = maps_dump(fx, &before_len);
	cr_expect_eq(loupe_policy_apply(rt, big, IFACES, ARRAY_SIZE(IFACES), &e), -EINVAL);
	cr_expect(strstr(e.message, "loupe_pol_addrs"), "%s", e.message);
	after = maps_dump(fx, &after_len);
	cr_expect_eq(after_len, before_len);
	cr_expect(after_len == before_len && !memcmp(before, after, before_len),
		  "the maps changed");
	cr_expect_eq(loupe_policy_generation(rt), 1);
	cr_expect_eq(active_slot(fx), 1);
	cr_expect_str_eq(bit_name(rt, 1, 3), "b/smtp");

	/* the next apply goes on from the set in force */
	apply_ok(rt, SET_B, NULL, 0);
	cr_expect_eq(loupe_policy_generation(rt), 2);
	cr_expect_eq(active_slot(fx), 0);
	free(before);
	free(after);
	loupe_policy_set_free(big);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, failed_write_keeps_the_set, .description = "a full trie: the old set stays")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	struct loupe_policy_compiled *a = compiled(SET_A, 1, 1);
	int addrs = map_fd(fx, LOUPE_MAP_POL_ADDRS);
	struct loupe_policy_bits junk = { .w = { 1 } };
	struct loupe_policy_set *set = parse_set(SET_A);
	struct loupe_policy_error e;
	int r;

	/* slot 0 (in force, as a fresh datapath says) takes the whole trie */
	for (uint32_t i = 0; i < LOUPE_POL_ADDRS_MAX; i++) {
		struct loupe_policy_addr_key k = { .prefixlen = 48,
						   .slot = 0,
						   .kind = LOUPE_POL_ADDR_PEER4 };

		memcpy(k.addr, &i, sizeof(i));
		cr_assert_eq(bpf_map_update_elem(addrs, &k, &junk, BPF_ANY), 0, "entry %u", i);
	}
	r = loupe_policy_apply(rt, set, IFACES, ARRAY_SIZE(IFACES), &e);
	cr_expect_lt(r, 0);
	cr_expect_neq(r, -EINVAL);
	cr_expect(!strncmp(e.message, "writing loupe_pol_addrs: ", 25), "%s", e.message);
	cr_expect_eq(loupe_policy_generation(rt), 0);
	cr_expect_eq(active_slot(fx), 0);
	expect_slot_empty(fx, 1); /* the interface entry written before the failure too */
	cr_expect_eq(slot_keys(fx, 1, 0), LOUPE_POL_ADDRS_MAX, "slot 0 was touched");

	/* once there is room, the same set goes in */
	for (uint32_t i = 0; i < LOUPE_POL_ADDRS_MAX; i++) {
		struct loupe_policy_addr_key k = { .prefixlen = 48,
						   .slot = 0,
						   .kind = LOUPE_POL_ADDR_PEER4 };

		memcpy(k.addr, &i, sizeof(i));
		cr_assert_eq(bpf_map_delete_elem(addrs, &k), 0);
	}
	cr_expect_eq(loupe_policy_apply(rt, set, IFACES, ARRAY_SIZE(IFACES), &e), 0, "%s",
		     e.message);
	expect_slot_holds(fx, a, IFACES, ARRAY_SIZE(IFACES));
	loupe_policy_set_free(set);
	loupe_policy_compiled_free(a);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, leftovers_are_cleared, .description = "keys a crashed agent left in a slot")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	struct loupe_policy_compiled *b = compiled(SET_B, 1, 1);
	struct loupe_policy_bits junk = { .w = { 5 } };
	struct loupe_policy_addr_key ak = { .prefixlen = 48, .slot = 1, .kind = 3, .addr = { 9 } };
	struct loupe_policy_name_key nk = { .prefixlen = 40, .slot = 1, .kind = 4, .name = "x" };
	struct loupe_policy_path_key pk = { .prefixlen = 16, .slot = 1, .path = "/" };
	struct loupe_policy_port_key tk = { .prefixlen = 24, .slot = 1, .protocol = 6 };
	struct loupe_policy_iface_key ik = { .slot = 1, .ifindex = 99 };

	cr_assert_eq(bpf_map_update_elem(map_fd(fx, LOUPE_MAP_POL_ADDRS), &ak, &junk, 0), 0);
	cr_assert_eq(bpf_map_update_elem(map_fd(fx, LOUPE_MAP_POL_NAMES), &nk, &junk, 0), 0);
	cr_assert_eq(bpf_map_update_elem(map_fd(fx, LOUPE_MAP_POL_PATHS), &pk, &junk, 0), 0);
	cr_assert_eq(bpf_map_update_elem(map_fd(fx, LOUPE_MAP_POL_PORTS), &tk, &junk, 0), 0);
	cr_assert_eq(bpf_map_update_elem(map_fd(fx, LOUPE_MAP_POL_IFACES), &ik, &junk, 0), 0);
	apply_ok(rt, SET_B, NULL, 0);
	expect_slot_holds(fx, b, NULL, 0);
	loupe_policy_compiled_free(b);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, hits_follow_rules, .description = "totals by policy and rule across applies")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);

	apply_ok(rt, SET_A, NULL, 0); /* slot 1, smtp is bit 3 */
	cr_expect_eq(hits_of(rt, "b/smtp"), 0);
	hits_write(fx, 1, 3, 5, 2);
	hits_write(fx, 1, 0, 1, 0);
	cr_expect_eq(hits_of(rt, "b/smtp"), 7, "the sum over CPUs");
	cr_expect_eq(hits_of(rt, "a/web"), 1);
	cr_expect_eq(hits_of(rt, "a/"), 0, "the default is a row too");

	apply_ok(rt, SET_A_MORE, NULL, 0); /* slot 0, smtp is bit 4 */
	cr_expect_eq(hits_of(rt, "b/smtp"), 7, "carried to the rule's new bit");
	cr_expect_eq(hits_of(rt, "aa/first"), 0);
	cr_expect_eq(hits_of(rt, "a/"), -1, "not in the set in force");
	hits_write(fx, 0, 4, 3, 0);
	cr_expect_eq(hits_of(rt, "b/smtp"), 10);

	apply_ok(rt, SET_B, NULL, 0);
	cr_expect_eq(hits_of(rt, "b/smtp"), -1);
	cr_expect_eq(hits_of(rt, "c/r"), 0, "a slot's counters start at zero");
	apply_ok(rt, SET_A, NULL, 0);
	cr_expect_eq(hits_of(rt, "b/smtp"), 10, "kept while the rule was out of force");
	cr_expect_eq(hits_of(rt, "a/web"), 1);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, hits_from_the_datapath, .description = "a denied SYN counts for its rule")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	struct loupe_pkt pkt;
	int rc;

	apply_ok(rt, SET_SMTP, NULL, 0);
	for (uint16_t sport = 40000; sport < 40003; sport++) {
		struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .sport = sport, .dport = 25 };

		if (sport == 40002) /* after an apply of the same set: counted in the new slot */
			apply_ok(rt, SET_SMTP, NULL, 0);
		cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
		fx_row(fx, "smtp SYN", pkt.buf, pkt.len);
		cr_assert_eq(fx_run(fx, LOUPE_DIR_POD_EGRESS, pkt.buf, pkt.len, 0, &rc), 0);
		fx_eq(fx, "TC action", rc, TC_ACT_SHOT);
		fx_eq(fx, "hits", hits_of(rt, "no-smtp/smtp"), sport - 40000 + 1);
	}
	struct loupe_pkt_spec web = { .proto = IPPROTO_TCP, .dport = 80 };

	cr_assert_eq(loupe_pkt_build(&web, &pkt), 0);
	fx_row(fx, "web SYN", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	fx_eq(fx, "hits", hits_of(rt, "no-smtp/smtp"), 3);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, interfaces_come_and_go)
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	int ifs = map_fd(fx, LOUPE_MAP_POL_IFACES);
	struct loupe_policy_compiled *a = compiled(SET_A, 1, 1);
	struct loupe_policy_iface_key key = { .slot = 1, .ifindex = 9 };
	struct loupe_policy_bits got, want;

	/* nothing in force: nothing to write */
	cr_expect_eq(loupe_policy_iface_added(rt, 9, "veth9"), 0);
	cr_expect_eq(slot_keys(fx, 0, 0) + slot_keys(fx, 0, 1), 0);

	apply_ok(rt, SET_A, NULL, 0);
	cr_expect_eq(loupe_policy_iface_added(rt, 9, "veth9"), 0);
	cr_assert_eq(bpf_map_lookup_elem(ifs, &key, &got), 0, "no entry for veth9");
	cr_assert(loupe_policy_compiled_iface_bits(a, "veth9", &want));
	cr_expect_eq(memcmp(&got, &want, sizeof(got)), 0);
	cr_expect_eq(loupe_policy_iface_added(rt, 9, "eth9"), 0, "renamed");
	cr_expect_neq(bpf_map_lookup_elem(ifs, &key, &got), 0, "eth9 needs no entry");
	cr_expect_eq(loupe_policy_iface_added(rt, 9, "veth9"), 0);
	cr_expect_eq(loupe_policy_iface_removed(rt, 9), 0);
	cr_expect_neq(bpf_map_lookup_elem(ifs, &key, &got), 0, "the entry outlived the link");
	cr_expect_eq(loupe_policy_iface_removed(rt, 9), 0, "twice");
	loupe_policy_compiled_free(a);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

/* ------------------------------------------------------------------ rewrites and rate limits */

Test(policy_apply, rewrites_follow_the_slot, .description = "written with the slot, cleared")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	struct loupe_policy_compiled *rw = compiled(SET_RW, 1, 1), *b = compiled(SET_B, 0, 2);
	int rws = map_fd(fx, LOUPE_MAP_POL_REWRITES);
	struct loupe_rewrite junk = { .actions = LOUPE_RW_DSCP, .dscp = 63 };
	const struct loupe_policy_bit_info *info;
	const struct loupe_policy_rewrite *src;
	struct loupe_policy_meta meta;
	uint32_t key = 1 * LOUPE_REWRITES_MAX + 200;

	/* a crashed agent's entry past the new set's: cleared before the slot is written */
	cr_assert_eq(bpf_map_update_elem(rws, &key, &junk, BPF_ANY), 0);
	apply_ok(rt, SET_RW, IFACES, ARRAY_SIZE(IFACES));
	cr_expect_eq(active_slot(fx), 1);
	cr_assert_eq(rw->meta.n_rewrites, 4);
	expect_slot_holds(fx, rw, IFACES, ARRAY_SIZE(IFACES));
	expect_slot_empty(fx, 0);
	meta = meta_of(fx, 1);
	cr_expect_eq(meta.n_bits, 6);
	cr_expect_eq(meta.n_rule_bits, 2);
	cr_expect_eq(meta.rewrite_base, 2);
	cr_expect_eq(meta.n_rewrites, 4);
	cr_expect_eq(meta.flags, LOUPE_POL_HAS_MAPPINGS);
	cr_expect_eq(rw->rewrites[0].actions, LOUPE_RW_MAP);
	cr_expect_eq(rw->rewrites[1].n_mask, 2);
	cr_expect_eq(rw->rewrites[3].vlan_id, 7);

	/* events name a rewrite by its entry: the bit and the parsed entry */
	info = loupe_policy_bit_lookup(rt, 1, meta.rewrite_base + 1);
	cr_assert_not_null(info);
	cr_expect_str_eq(info->policy, "rw");
	cr_expect_str_eq(info->rule, "mask");
	cr_expect_eq(info->kind, LOUPE_POLICY_BIT_REWRITE);
	src = loupe_policy_rewrite_lookup(rt, 1, 1);
	cr_assert_not_null(src);
	cr_expect_str_eq(src->mask_headers[0], "authorization");
	src = loupe_policy_rewrite_lookup(rt, 1, 3);
	cr_assert_not_null(src);
	cr_expect_str_eq(src->name, "v");
	cr_expect_null(loupe_policy_rewrite_lookup(rt, 1, 4));
	cr_expect_null(loupe_policy_rewrite_lookup(rt, 2, 0));
	/* hit rows are rules and defaults only */
	cr_expect_eq(hits_of(rt, "rw/r"), 0);
	cr_expect_eq(hits_of(rt, "rw/"), 0);
	cr_expect_eq(hits_of(rt, "rw/map"), -1);

	/* a set without rewrites: both slots' entries zero */
	apply_ok(rt, SET_B, IFACES, ARRAY_SIZE(IFACES));
	expect_slot_holds(fx, b, IFACES, ARRAY_SIZE(IFACES));
	expect_slot_empty(fx, 1);
	cr_expect_eq(meta_of(fx, 0).flags, 0);

	/* and back: the slot written again from scratch, then cleared by what was written */
	apply_ok(rt, SET_RW, NULL, 0);
	cr_expect_eq(active_slot(fx), 1);
	rw->meta.generation = 3;
	expect_slot_holds(fx, rw, NULL, 0);
	apply_ok(rt, SET_A, NULL, 0);
	expect_slot_empty(fx, 1);
	loupe_policy_compiled_free(rw);
	loupe_policy_compiled_free(b);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

/* The loupe_rate entries, as "ifindex/direction:rate/burst/tokens/generation" sorted. */
static char *rates_dump(struct fx *fx)
{
	int fd = map_fd(fx, LOUPE_MAP_RATE);
	struct loupe_rate_key cur, next, keys[64];
	char *out = NULL, *lines[64];
	size_t n = 0, len = 0;
	void *prev = NULL;
	FILE *f;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		cr_assert_lt(n, ARRAY_SIZE(keys));
		keys[n++] = next;
		cur = next;
		prev = &cur;
	}
	for (size_t i = 0; i < n; i++) {
		struct loupe_rate v;

		cr_assert_eq(bpf_map_lookup_elem(fd, &keys[i], &v), 0);
		cr_assert(asprintf(&lines[i], "%u/%s:%llu/%llu/%llu/%u", keys[i].ifindex,
				   keys[i].direction == LOUPE_DIR_POD_EGRESS ? "egress" : "ingress",
				   (unsigned long long)v.bytes_per_sec, (unsigned long long)v.burst,
				   (unsigned long long)v.tokens, v.generation) > 0);
		cr_expect_eq(v.last_ns, 0, "a written bucket is refilled from its first packet");
	}
	qsort(lines, n, sizeof(*lines), line_cmp);
	f = open_memstream(&out, &len);
	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s%s", i ? " " : "", lines[i]);
		free(lines[i]);
	}
	fclose(f);
	return out;
}

static void expect_rates(struct fx *fx, const char *want, const char *what)
{
	char *got = rates_dump(fx);

	cr_expect_str_eq(got, want, "%s: loupe_rate {%s}, want {%s}", what, got, want);
	free(got);
}

Test(policy_apply, rate_limits_follow_the_set, .description = "written after the switch")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	int fd = map_fd(fx, LOUPE_MAP_RATE);
	struct loupe_rate_key k8 = { .ifindex = 8, .direction = LOUPE_DIR_POD_EGRESS };
	struct loupe_rate_key k99 = { .ifindex = 99, .direction = LOUPE_DIR_POD_INGRESS };
	struct loupe_rate v = { .bytes_per_sec = 1, .burst = 1, .tokens = 1 };

	/* an earlier agent's entry for an interface that is no more */
	cr_assert_eq(bpf_map_update_elem(fd, &k99, &v, BPF_ANY), 0);
	apply_ok(rt, SET_RATE, IFACES, ARRAY_SIZE(IFACES));
	cr_expect_eq(meta_of(fx, 1).flags, LOUPE_POL_HAS_RATE_LIMITS);
	cr_expect_eq(meta_of(fx, 1).n_bits, 0, "limits alone: no bits");
	expect_rates(fx,
		     "7/egress:1000/70000/70000/1 8/egress:2000/65536/65536/1 "
		     "8/ingress:3000/65536/65536/1",
		     "veth7 by name, eth8 by address");

	/* the datapath spends tokens; an apply that keeps the limit keeps the bucket */
	cr_assert_eq(bpf_map_lookup_elem(fd, &k8, &v), 0);
	v.tokens = 5;
	v.last_ns = 123;
	cr_assert_eq(bpf_map_update_elem(fd, &k8, &v, BPF_ANY), 0);
	apply_ok(rt, SET_RATE_LESS, IFACES, ARRAY_SIZE(IFACES));
	cr_assert_eq(bpf_map_lookup_elem(fd, &k8, &v), 0);
	cr_expect_eq(v.tokens, 5);
	cr_expect_eq(v.last_ns, 123);
	cr_expect_eq(v.generation, 1, "written by generation 1");
	v.last_ns = 0;
	cr_assert_eq(bpf_map_update_elem(fd, &k8, &v, BPF_ANY), 0);
	expect_rates(fx, "8/egress:2000/65536/5/1", "the others no longer limited");

	/* a changed limit: a full bucket */
	apply_ok(rt, SET_RATE_MORE, IFACES, ARRAY_SIZE(IFACES));
	expect_rates(fx, "8/egress:4000/65536/65536/3", "rate changed");

	/* interfaces not given: no limits */
	apply_ok(rt, SET_RATE_MORE, IFACES, 1);
	expect_rates(fx, "", "eth8 not among the interfaces");

	apply_ok(rt, SET_RATE, IFACES, ARRAY_SIZE(IFACES));
	apply_ok(rt, SET_B, IFACES, ARRAY_SIZE(IFACES));
	expect_rates(fx, "", "a set without limits");
	cr_expect_eq(meta_of(fx, active_slot(fx)).flags, 0);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, rate_limits_of_interfaces, .description = "pods come, change and go")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	int fd = map_fd(fx, LOUPE_MAP_RATE);
	struct loupe_rate_key k5 = { .ifindex = 5, .direction = LOUPE_DIR_POD_EGRESS };
	struct loupe_rate v = { .bytes_per_sec = 1, .burst = 1, .tokens = 1 };
	struct loupe_policy_iface renamed = IFACES[0], moved = IFACES[1];

	/* before the first apply an earlier agent's limits stay, but a gone pod's go */
	cr_assert_eq(bpf_map_update_elem(fd, &k5, &v, BPF_ANY), 0);
	cr_expect_eq(loupe_policy_iface_update(rt, &IFACES[0]), 0);
	expect_rates(fx, "5/egress:1/1/1/0", "nothing in force: nothing written");
	cr_expect_eq(loupe_policy_iface_removed(rt, 5), 0);
	expect_rates(fx, "", "the pod went away");

	apply_ok(rt, SET_RATE, NULL, 0);
	expect_rates(fx, "", "no interfaces yet");
	cr_expect_eq(loupe_policy_iface_update(rt, &IFACES[0]), 0);
	expect_rates(fx, "7/egress:1000/70000/70000/1", "veth7 came");
	cr_expect_eq(loupe_policy_iface_added(rt, 8, "eth8"), 0);
	expect_rates(fx, "7/egress:1000/70000/70000/1", "eth8's addresses unknown");
	cr_expect_eq(loupe_policy_iface_update(rt, &IFACES[1]), 0);
	expect_rates(fx,
		     "7/egress:1000/70000/70000/1 8/egress:2000/65536/65536/1 "
		     "8/ingress:3000/65536/65536/1",
		     "eth8's addresses known");
	cr_expect_eq(loupe_policy_iface_update(rt, &IFACES[1]), 0);
	expect_rates(fx,
		     "7/egress:1000/70000/70000/1 8/egress:2000/65536/65536/1 "
		     "8/ingress:3000/65536/65536/1",
		     "the same again");

	/* renamed out of the glob; moved out of the prefix */
	renamed.name = "eth7";
	cr_expect_eq(loupe_policy_iface_update(rt, &renamed), 0);
	moved.n_addrs = 0;
	cr_expect_eq(loupe_policy_iface_update(rt, &moved), 0);
	expect_rates(fx, "", "neither is selected now");
	cr_expect_eq(loupe_policy_iface_update(rt, &IFACES[1]), 0);
	cr_expect_eq(loupe_policy_iface_removed(rt, 8), 0);
	cr_expect_eq(loupe_policy_iface_removed(rt, 8), 0, "twice");
	expect_rates(fx, "", "eth8 went away");
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

Test(policy_apply, rate_limits_refused, .description = "more than loupe_rate holds: -EINVAL")
{
	struct fx *fx = fx_open(false);
	struct loupe_policy_runtime *rt = runtime_open(fx);
	size_t n = LOUPE_RATE_MAX / 2 + 1;
	struct loupe_policy_iface *ifaces = calloc(n, sizeof(*ifaces));
	struct loupe_policy_set *set = parse_set(SET_RATE);
	struct loupe_policy_error e;
	char(*names)[16] = calloc(n, sizeof(*names));

	cr_assert_not_null(ifaces);
	cr_assert_not_null(names);
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "x%zu", i);
		ifaces[i] = (struct loupe_policy_iface){
			.ifindex = (int)(100 + i), .name = names[i], .addrs = ADDRS8, .n_addrs = 1
		};
	}
	apply_ok(rt, SET_RATE, IFACES, ARRAY_SIZE(IFACES));
	cr_expect_eq(loupe_policy_apply(rt, set, ifaces, n, &e), -EINVAL);
	cr_expect(strstr(e.message, "8194 interfaces and directions"), "%s", e.message);
	cr_expect(strstr(e.message, "at most 8192"), "%s", e.message);
	cr_expect_eq(loupe_policy_generation(rt), 1);
	expect_rates(fx,
		     "7/egress:1000/70000/70000/1 8/egress:2000/65536/65536/1 "
		     "8/ingress:3000/65536/65536/1",
		     "unchanged");
	/* one pod fewer fits */
	cr_expect_eq(loupe_policy_apply(rt, set, ifaces, n - 1, &e), 0, "%s", e.message);
	loupe_policy_set_free(set);
	free(ifaces);
	free(names);
	loupe_policy_runtime_free(rt);
	fx_close(fx);
}

/* ------------------------------------------------------------------ a restart */

static char mnt[64];
static bool mounted;

static void pin_setup(void)
{
	strcpy(mnt, "/tmp/loupe-bpffs-XXXXXX");
	cr_assert_not_null(mkdtemp(mnt), "mkdtemp: %s", strerror(errno));
	if (mount("bpf", mnt, "bpf", 0, NULL)) {
		int err = errno;

		rmdir(mnt);
		if (err == EPERM)
			cr_skip_test("mounting a bpffs needs root");
		cr_assert_fail("mount -t bpf %s: %s", mnt, strerror(err));
	}
	mounted = true;
}

static void pin_teardown(void)
{
	char dir[128];

	if (!mounted)
		return;
	snprintf(dir, sizeof(dir), "%s/loupe", mnt);
	loupe_datapath_unpin(dir);
	umount(mnt);
	rmdir(mnt);
	mounted = false;
}

static int ignore_record(void *ctx, const void *record, size_t size)
{
	return 0;
}

Test(policy_apply, pinned_set_survives_a_restart, .init = pin_setup, .fini = pin_teardown)
{
	struct loupe_datapath_opts opts = { 0 };
	struct fx fx = { 0 };
	struct loupe_policy_runtime *rt;
	struct loupe_policy_compiled *b = compiled(SET_B, 0, 2);
	char dir[128];
	int r;

	snprintf(dir, sizeof(dir), "%s/loupe", mnt);
	opts.pin_dir = dir;
	r = loupe_datapath_open(&opts, ignore_record, NULL, &fx.dp);
	if (r == -EPERM || r == -EACCES)
		cr_skip_test("loupe_datapath_open: %s", strerror(-r));
	cr_assert_eq(r, 0, "%s", strerror(-r));
	rt = runtime_open(&fx);
	apply_ok(rt, SET_A, IFACES, ARRAY_SIZE(IFACES));
	loupe_policy_runtime_free(rt);
	fx.dp = loupe_datapath_free(fx.dp);

	/* the next agent: the set stays in force, unnamed, and the generations go on */
	cr_assert_eq(loupe_datapath_open(&opts, ignore_record, NULL, &fx.dp), 0);
	rt = runtime_open(&fx);
	cr_expect_eq(loupe_policy_generation(rt), 1);
	cr_expect_eq(active_slot(&fx), 1);
	cr_expect_eq(meta_of(&fx, 1).n_bits, 5);
	cr_expect_null(loupe_policy_bit_lookup(rt, 1, 0));
	cr_expect_eq(hits_of(rt, "b/smtp"), -1);
	apply_ok(rt, SET_B, IFACES, ARRAY_SIZE(IFACES));
	cr_expect_eq(loupe_policy_generation(rt), 2);
	cr_expect_eq(active_slot(&fx), 0);
	expect_slot_holds(&fx, b, IFACES, ARRAY_SIZE(IFACES));
	expect_slot_empty(&fx, 1);
	loupe_policy_compiled_free(b);
	loupe_policy_runtime_free(rt);
	fx.dp = loupe_datapath_free(fx.dp);
}
