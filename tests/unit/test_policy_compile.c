// SPDX-License-Identifier: Apache-2.0
/*
 * The policy compiler (policy_compile.c), without privileges: bit numbering, the entries of
 * every map with their folded values, port ranges, name and path keys, the limits, interface
 * globs; rewrite bits and loupe_pol_rewrites entries, rate limits per pod; and the worked
 * examples of docs/policy.md judged by a user-space mirror of the datapath's lookups
 * (bpf/lib/policy.h). Not for writing maps (tests/bpf/test_policy_apply.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "policy_compile.h"
#include "proc.h"

#define GOOD_DIR      LOUPE_TEST_DATA "/policies"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ helpers */

/* JSON text is written with ' for " to stay readable. */
static struct loupe_policy_set *parse(const char *text)
{
	struct loupe_policy_set *set = calloc(1, sizeof(*set));
	struct loupe_policy_error e;
	char *json = strdup(text), line[1280];
	int r;

	cr_assert_not_null(set);
	cr_assert_not_null(json);
	for (char *p = json; *p; p++)
		if (*p == '\'')
			*p = '"';
	r = loupe_policy_parse(json, strlen(json), "test.json", set, &e);
	loupe_policy_error_format(&e, line, sizeof(line));
	cr_assert_eq(r, 0, "parse: %s\n%s", line, json);
	free(json);
	return set;
}

/* A policy's name and spec (JSON, ' for "), for parse_set(). */
struct policy_text {
	const char *name;
	const char *spec;
};

/* A set of policies, the list ending with a NULL name. */
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

static struct loupe_policy_set *load(const char *path)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error e;
	char line[1280];
	int r = loupe_policy_load_path(path, &set, &e);

	loupe_policy_error_format(&e, line, sizeof(line));
	cr_assert_eq(r, 0, "%s: %s", path, line);
	return set;
}

/* Asserts what every compiled map holds: sorted by key, no duplicates, zero past the prefix. */
static void check_canonical(const struct loupe_policy_entries *es, size_t key_size, uint8_t slot,
			    const char *map)
{
	size_t data_len = key_size - sizeof(uint32_t);

	for (size_t i = 0; i < es->n; i++) {
		const uint8_t *d = (const uint8_t *)&es->v[i].key + sizeof(uint32_t);
		uint32_t pl = es->v[i].key.addr.prefixlen;

		cr_assert_leq(pl, 8 * data_len, "%s[%zu]: prefixlen %u", map, i, pl);
		cr_assert_eq(d[0], slot, "%s[%zu]: slot %u", map, i, d[0]);
		for (size_t bit = pl; bit < 8 * data_len; bit++)
			cr_assert_eq(d[bit / 8] >> (7 - bit % 8) & 1, 0,
				     "%s[%zu]: bit %zu past prefix %u is set", map, i, bit, pl);
		if (i) {
			const uint8_t *p = (const uint8_t *)&es->v[i - 1].key + sizeof(uint32_t);
			int r = memcmp(p, d, data_len);

			cr_assert(r < 0 || (r == 0 && es->v[i - 1].key.addr.prefixlen < pl),
				  "%s[%zu]: not after [%zu] in key order", map, i, i - 1);
		}
	}
}

static struct loupe_policy_compiled *compile_slot(const struct loupe_policy_set *set, uint8_t slot)
{
	struct loupe_policy_compiled *c = NULL;
	struct loupe_policy_error e;
	int r = loupe_policy_compile(set, slot, 7, &c, &e);

	cr_assert_eq(r, 0, "compile: %d: %s", r, e.message);
	cr_assert_not_null(c);
	cr_assert_eq(c->slot, slot);
	cr_assert_eq(c->meta.generation, 7);
	check_canonical(&c->addrs, sizeof(struct loupe_policy_addr_key), slot, "addrs");
	check_canonical(&c->ports, sizeof(struct loupe_policy_port_key), slot, "ports");
	check_canonical(&c->names, sizeof(struct loupe_policy_name_key), slot, "names");
	check_canonical(&c->paths, sizeof(struct loupe_policy_path_key), slot, "paths");
	return c;
}

static struct loupe_policy_compiled *compile(const struct loupe_policy_set *set)
{
	return compile_slot(set, 1);
}

/* Expects the bits set in @b to be @want ("0,3,5"); the message says where and what. */
static __attribute__((format(printf, 4, 5))) void
expect_bits_at(int line, struct loupe_policy_bits b, const char *want, const char *fmt, ...)
{
	char got[8192], what[256];
	size_t n = 0;
	va_list ap;

	got[0] = 0;
	for (unsigned int i = 0; i < LOUPE_POLICY_BITS; i++)
		if (loupe_policy_bit_test(&b, i))
			n += snprintf(got + n, sizeof(got) - n, "%s%u", n ? "," : "", i);
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	cr_expect_str_eq(got, want, "line %d:%s: bits {%s}, want {%s}", line, what, got, want);
}

#define expect_bits(b, want, ...) expect_bits_at(__LINE__, b, want, " " __VA_ARGS__)

/* The entry an LPM trie answers for @key (full length in its prefixlen), as the kernel does. */
static const struct loupe_policy_entry *lpm(const struct loupe_policy_entries *es, const void *key)
{
	const struct loupe_policy_entry *best = NULL;
	const uint8_t *k = (const uint8_t *)key + sizeof(uint32_t);
	uint32_t key_pl;

	memcpy(&key_pl, key, sizeof(key_pl));
	for (size_t i = 0; i < es->n; i++) {
		const uint8_t *d = (const uint8_t *)&es->v[i].key + sizeof(uint32_t);
		uint32_t pl = es->v[i].key.addr.prefixlen, bit;

		if (pl > key_pl || (best && pl <= best->key.addr.prefixlen))
			continue;
		for (bit = 0; bit < pl; bit++)
			if ((d[bit / 8] ^ k[bit / 8]) >> (7 - bit % 8) & 1)
				break;
		if (bit == pl)
			best = &es->v[i];
	}
	return best;
}

static struct loupe_policy_bits lpm_bits(const struct loupe_policy_entries *es, const void *key)
{
	const struct loupe_policy_entry *e = lpm(es, key);
	struct loupe_policy_bits none = { 0 };

	return e ? e->value : none;
}

static struct loupe_policy_addr_key addr_key(uint8_t slot, uint8_t kind, const char *addr)
{
	struct loupe_policy_addr_key k;
	int family = strchr(addr, ':') ? AF_INET6 : AF_INET;

	memset(&k, 0, sizeof(k));
	k.slot = slot;
	k.kind = kind;
	k.prefixlen = 16 + (family == AF_INET ? 32 : 128);
	cr_assert_eq(inet_pton(family, addr, k.addr), 1, "%s", addr);
	return k;
}

static struct loupe_policy_bits addr_bits(const struct loupe_policy_compiled *c, uint8_t kind,
					  const char *addr)
{
	struct loupe_policy_addr_key k = addr_key(c->slot, kind, addr);

	return lpm_bits(&c->addrs, &k);
}

static struct loupe_policy_port_key port_key(uint8_t slot, uint8_t dir, uint8_t proto,
					     uint16_t port)
{
	struct loupe_policy_port_key k;

	memset(&k, 0, sizeof(k));
	k.prefixlen = 16 + 8 + 16;
	k.slot = slot;
	k.direction = dir;
	k.protocol = proto;
	k.port[0] = port >> 8;
	k.port[1] = port & 0xff;
	return k;
}

static struct loupe_policy_bits port_bits(const struct loupe_policy_compiled *c, uint8_t dir,
					  uint8_t proto, uint16_t port)
{
	struct loupe_policy_port_key k = port_key(c->slot, dir, proto, port);

	return lpm_bits(&c->ports, &k);
}

/* The datapath's key for a name it read (bpf/lib/policy.h), built here independently. */
static struct loupe_policy_name_key name_key(uint8_t slot, uint8_t kind, uint16_t port,
					     const char *name)
{
	struct loupe_policy_name_key k;
	size_t len = strlen(name);

	memset(&k, 0, sizeof(k));
	if (len && name[len - 1] == '.')
		len--;
	k.prefixlen = 32 + 8 * LOUPE_POLICY_NAME_KEY_MAX;
	k.slot = slot;
	k.kind = kind;
	k.port[0] = port >> 8;
	k.port[1] = port & 0xff;
	for (size_t j = 0; j < len && j < LOUPE_POLICY_NAME_KEY_MAX; j++) {
		char ch = name[len - 1 - j];

		k.name[j] = ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch;
	}
	return k;
}

static struct loupe_policy_bits name_bits(const struct loupe_policy_compiled *c, uint8_t kind,
					  uint16_t port, const char *name)
{
	struct loupe_policy_name_key k = name_key(c->slot, kind, port, name);

	return lpm_bits(&c->names, &k);
}

static struct loupe_policy_bits path_bits(const struct loupe_policy_compiled *c, const char *path)
{
	struct loupe_policy_path_key k;

	memset(&k, 0, sizeof(k));
	k.slot = c->slot;
	k.prefixlen = 8 + 8 * strlen(path);
	memcpy(k.path, path, strlen(path));
	return lpm_bits(&c->paths, &k);
}

/* The entry with exactly this key, or NULL. */
static const struct loupe_policy_entry *find(const struct loupe_policy_entries *es, const void *key,
					     size_t key_size)
{
	for (size_t i = 0; i < es->n; i++)
		if (!memcmp(&es->v[i].key, key, key_size))
			return &es->v[i];
	return NULL;
}

static void bits_and(struct loupe_policy_bits *dst, const struct loupe_policy_bits *src)
{
	for (unsigned int i = 0; i < LOUPE_POLICY_WORDS; i++)
		dst->w[i] &= src->w[i];
}

static void bits_or(struct loupe_policy_bits *dst, const struct loupe_policy_bits *src)
{
	for (unsigned int i = 0; i < LOUPE_POLICY_WORDS; i++)
		dst->w[i] |= src->w[i];
}

static bool bits_empty(const struct loupe_policy_bits *b)
{
	for (unsigned int i = 0; i < LOUPE_POLICY_WORDS; i++)
		if (b->w[i])
			return false;
	return true;
}

/* Asserts @bit is in no entry, no methods and none of the meta's sets. */
static void expect_bit_nowhere(const struct loupe_policy_compiled *c, unsigned int bit)
{
	const struct loupe_policy_entries *maps[] = { &c->addrs, &c->ports, &c->names, &c->paths };

	for (size_t m = 0; m < ARRAY_SIZE(maps); m++)
		for (size_t i = 0; i < maps[m]->n; i++)
			cr_expect_not(loupe_policy_bit_test(&maps[m]->v[i].value, bit),
				      "bit %u in map %zu entry %zu", bit, m, i);
	for (unsigned int m = 0; m < LOUPE_POLICY_METHODS; m++)
		cr_expect_not(loupe_policy_bit_test(&c->methods[m], bit), "bit %u in method %u",
			      bit, m);
	cr_expect_not(loupe_policy_bit_test(&c->meta.any_iface, bit), "bit %u in any_iface", bit);
	cr_expect_not(loupe_policy_bit_test(&c->meta.l4_only, bit), "bit %u in l4_only", bit);
}

/* ------------------------------------------------------------------ a mirror of the judge */

enum l7_kind {
	L7_FIRST,
	L7_NONE,
	L7_HTTP,
	L7_TLS,
	L7_DNS
};

struct flow {
	const char *ifname;
	const char *pod, *peer; /* addresses of one family */
	uint8_t dir;		/* LOUPE_DIR_POD_EGRESS: the pod opened it */
	uint8_t proto;
	uint16_t port; /* the server's */
	enum l7_kind l7;
	int method; /* enum loupe_policy_http_method */
	const char *path, *host, *name;
	uint16_t host_port;
};

/* Whether a verdict is pending: returned with the first bit. */
#define PENDING 0x10000
#define NO_RULE -1

/* The bits that fit a flow's interface, pod, peer, protocol and port. */
static struct loupe_policy_bits first_packet_bits(const struct loupe_policy_compiled *c,
						  const struct flow *f)
{
	bool v6 = strchr(f->pod, ':');
	struct loupe_policy_bits cand, v;

	loupe_policy_compiled_iface_bits(c, f->ifname ? f->ifname : "veth0", &cand);
	v = addr_bits(c, v6 ? LOUPE_POL_ADDR_POD6 : LOUPE_POL_ADDR_POD4, f->pod);
	bits_and(&cand, &v);
	v = addr_bits(c, v6 ? LOUPE_POL_ADDR_PEER6 : LOUPE_POL_ADDR_PEER4, f->peer);
	bits_and(&cand, &v);
	v = port_bits(c, f->dir, f->proto, f->port);
	bits_and(&cand, &v);
	return cand;
}

/* What bpf/lib/policy.h's loupe_policy_judge() decides: the first fitting rule bit. */
static int judge(const struct loupe_policy_compiled *c, const struct flow *f)
{
	struct loupe_policy_bits cand, v, l7 = { 0 };
	int bit = NO_RULE;

	if (!c->meta.n_bits)
		return NO_RULE;
	cand = first_packet_bits(c, f);
	if (f->l7 == L7_FIRST) {
		if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
			bits_and(&cand, &c->meta.l4_only);
	} else {
		if (f->l7 == L7_HTTP) {
			l7 = c->methods[f->method];
			v = path_bits(c, f->path);
			bits_and(&l7, &v);
			v = name_bits(c, LOUPE_POL_NAME_HOST, 0, f->host);
			if (f->host_port) {
				struct loupe_policy_bits hp = name_bits(c, LOUPE_POL_NAME_HOST_PORT,
									f->host_port, f->host);

				bits_or(&v, &hp);
			}
			bits_and(&l7, &v);
		} else if (f->l7 == L7_TLS) {
			l7 = name_bits(c, LOUPE_POL_NAME_SNI, 0, f->name);
		} else if (f->l7 == L7_DNS) {
			l7 = name_bits(c, LOUPE_POL_NAME_DNS, 0, f->name);
		}
		bits_or(&l7, &c->meta.l4_only);
		bits_and(&cand, &l7);
	}
	for (unsigned int i = 0; i < c->meta.n_rule_bits; i++) {
		if (loupe_policy_bit_test(&cand, i)) {
			bit = (int)i;
			break;
		}
	}
	if (bit >= 0 && f->l7 == L7_FIRST && !loupe_policy_bit_test(&c->meta.l4_only, bit))
		return bit | PENDING;
	return bit;
}

/*
 * The rewrite entry the datapath keeps for a flow (loupe/datapath.h, "Rewrites"): the first
 * rewrite bit that fits its first packet, as an index from rewrite_base; -1 for none.
 */
static int pick_rewrite(const struct loupe_policy_compiled *c, const struct flow *f)
{
	struct loupe_policy_bits cand;

	if (!c->meta.n_rewrites)
		return -1;
	cand = first_packet_bits(c, f);
	for (unsigned int i = 0; i < c->meta.n_rewrites; i++)
		if (loupe_policy_bit_test(&cand, c->meta.rewrite_base + i))
			return (int)i;
	return -1;
}

/* "policy/rewrite" of what pick_rewrite() returned, or "-". */
static const char *picked(const struct loupe_policy_compiled *c, int r)
{
	static char buf[160];

	if (r < 0)
		return "-";
	cr_assert_lt((unsigned int)r, c->meta.n_rewrites);
	snprintf(buf, sizeof(buf), "%s/%s", c->bits[c->meta.rewrite_base + r].policy,
		 c->bits[c->meta.rewrite_base + r].rule);
	return buf;
}

/* "policy/rule" of what judge() returned, or "-" for none, "…+pending". */
static const char *judged(const struct loupe_policy_compiled *c, int r)
{
	static char buf[4][160];
	static int next;
	char *s = buf[next++ % 4];
	int bit = r & 0xffff;

	if (r == NO_RULE)
		return "-";
	cr_assert_lt(bit, c->meta.n_bits);
	snprintf(s, sizeof(buf[0]), "%s/%s%s", c->bits[bit].policy, c->bits[bit].rule,
		 r & PENDING ? "+pending" : "");
	return s;
}

/* ------------------------------------------------------------------ numbering */

Test(policy_compile, bits_in_evaluation_order, .description = "priority, name, rule order")
{
	static const struct policy_text policies[] = {
		{ "b", "{'priority':10,'podSelector':{},'rules':["
		       "{'name':'b1','direction':'egress','match':{},'action':'allow'},"
		       "{'name':'b2','direction':'ingress','match':{},'action':'audit'}]}" },
		{ "c", "{'priority':20,'podSelector':{},'defaultAction':'allow'}" },
		{ "a", "{'priority':10,'podSelector':{},'rules':["
		       "{'name':'a1','direction':'egress','match':{},'action':'deny'}]}" },
		{ "z", "{'priority':5,'podSelector':{},'defaultAction':'deny','rules':["
		       "{'name':'z1','direction':'egress','match':{},'action':'audit'}]}" },
		{ NULL, NULL },
	};
	/* read out of order: the compiler sorts a copy, the caller's set stays as it was */
	struct loupe_policy_set *set = parse_set(policies);
	static const struct {
		const char *policy, *rule;
		enum loupe_policy_action action;
		bool is_default;
		uint8_t verdict;
	} want[] = {
		{ "z", "z1", LOUPE_POLICY_ACTION_AUDIT, false, LOUPE_VERDICT_AUDIT },
		{ "a", "a1", LOUPE_POLICY_ACTION_DENY, false, LOUPE_VERDICT_DENY },
		{ "b", "b1", LOUPE_POLICY_ACTION_ALLOW, false, LOUPE_VERDICT_ALLOW },
		{ "b", "b2", LOUPE_POLICY_ACTION_AUDIT, false, LOUPE_VERDICT_AUDIT },
		{ "z", "", LOUPE_POLICY_ACTION_DENY, true, LOUPE_VERDICT_DENY },
		{ "c", "", LOUPE_POLICY_ACTION_ALLOW, true, LOUPE_VERDICT_ALLOW },
	};
	struct loupe_policy_compiled *c = compile(set);

	cr_assert_eq(c->meta.n_bits, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		cr_expect_str_eq(c->bits[i].policy, want[i].policy, "bit %zu", i);
		cr_expect_str_eq(c->bits[i].rule, want[i].rule, "bit %zu", i);
		cr_expect_eq(c->bits[i].action, want[i].action, "bit %zu", i);
		cr_expect_eq(c->bits[i].is_default, want[i].is_default, "bit %zu", i);
		cr_expect_eq(c->meta.action[i], want[i].verdict, "bit %zu", i);
	}
	for (size_t i = ARRAY_SIZE(want); i < LOUPE_POLICY_BITS; i++)
		cr_expect_eq(c->meta.action[i], 0, "action of unused bit %zu", i);
	cr_expect_str_eq(set->policies[0].name, "b", "the caller's set was reordered");
	/* every pod, every interface: all own bits; rules without L7 and defaults: first packet */
	expect_bits(c->meta.any_iface, "0,1,2,3,4,5");
	expect_bits(c->meta.l4_only, "0,1,2,3,4,5");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, defaults_fit_every_flow, .description = "prefix-16 peers, both directions")
{
	static const struct policy_text policies[] = {
		{ "p", "{'podSelector':{},'defaultAction':'deny','rules':["
		       "{'name':'web','direction':'egress','match':{'cidrs':['10.0.0.0/8'],"
		       "'ports':[{'port':443}],'tls':{}},'action':'allow'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	struct loupe_policy_addr_key a4 = { .prefixlen = 16,
					    .slot = 1,
					    .kind = LOUPE_POL_ADDR_PEER4 };
	struct loupe_policy_addr_key a6 = { .prefixlen = 16,
					    .slot = 1,
					    .kind = LOUPE_POL_ADDR_PEER6 };
	const struct loupe_policy_entry *e;

	cr_assert_eq(c->meta.n_bits, 2);
	cr_expect(c->bits[1].is_default);
	e = find(&c->addrs, &a4, sizeof(a4));
	cr_assert_not_null(e, "no prefix-16 PEER4 entry");
	expect_bits(e->value, "1");
	e = find(&c->addrs, &a6, sizeof(a6));
	cr_assert_not_null(e, "no prefix-16 PEER6 entry");
	expect_bits(e->value, "1");
	for (uint8_t dir = 0; dir < LOUPE_DIR_MAX; dir++) {
		struct loupe_policy_port_key k = { .prefixlen = 16, .slot = 1, .direction = dir };

		e = find(&c->ports, &k, sizeof(k));
		cr_assert_not_null(e, "no prefix-16 ports entry of direction %u", dir);
		expect_bits(e->value, "1", "direction %u", dir);
	}
	expect_bits(c->meta.l4_only, "1", "a TLS rule is not decided on the first packet");
	expect_bits(port_bits(c, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, 443), "0,1");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "10.9.9.9"), "0,1");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "11.0.0.1"), "1");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, labels_selector_selects_nothing, .description = "its bits in no answer")
{
	static const struct policy_text policies[] = {
		{ "lab",
		  "{'priority':1,'podSelector':{'labels':{'app':'x'},'interfaces':['veth*']},"
		  "'defaultAction':'deny','rules':["
		  "{'name':'h','direction':'egress','match':{'cidrs':['10.0.0.0/8'],"
		  "'ports':[{'port':80}],'http':{'paths':['/a']}},'action':'deny'},"
		  "{'name':'d','direction':'egress','match':{'dns':{'names':['x.io']}},"
		  "'action':'deny'}]}" },
		{ "other", "{'priority':2,'podSelector':{},'rules':["
			   "{'name':'o','direction':'egress','match':{},'action':'allow'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	struct loupe_policy_bits ifb;

	/* numbered all the same: h 0, d 1, o 2, lab's default 3 */
	cr_assert_eq(c->meta.n_bits, 4);
	cr_expect_str_eq(c->bits[0].rule, "h");
	cr_expect_str_eq(c->bits[2].rule, "o");
	cr_expect_str_eq(c->bits[3].policy, "lab");
	for (unsigned int bit = 0; bit < 4; bit++)
		if (bit != 2)
			expect_bit_nowhere(c, bit);
	cr_expect_not(loupe_policy_compiled_iface_bits(c, "veth1", &ifb));
	expect_bits(ifb, "2");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_POD4, "10.1.1.1"), "2");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, largest_set, .description = "the most the parser accepts fits the datapath")
{
	struct loupe_policy_compiled *c = NULL;
	struct loupe_policy_set *set;
	struct loupe_policy_error e;
	char *json = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	/* LOUPE_POLICY_SET_RULES_MAX rules in 40 policies, and LOUPE_POLICY_SET_MAX policies
	 * with a defaultAction each: bits past these are unreachable */
	f = open_memstream(&json, &len);
	cr_assert_not_null(f);
	fputs("[", f);
	for (int p = 0; p < LOUPE_POLICY_SET_MAX; p++) {
		int rules = p < 40 ? LOUPE_POLICY_SET_RULES_MAX / 40 : 0;

		fprintf(f,
			"%s{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':"
			"{'name':'p%04d'},'spec':{'podSelector':{},'defaultAction':'audit',"
			"'rules':[",
			p ? "," : "", p);
		for (int i = 0; i < rules; i++)
			fprintf(f,
				"%s{'name':'r%d','direction':'egress','match':"
				"{'ports':[{'port':%d}]},'action':'deny'}",
				i ? "," : "", i, i + 1);
		/* and the most rewrites a set holds: 4 x 64 */
		fputs("],'rewrites':[", f);
		for (int i = 0; i < (p < 4 ? LOUPE_POLICY_REWRITES_MAX : 0); i++)
			fprintf(f,
				"%s{'name':'w%d','direction':'ingress','match':"
				"{'ports':[{'port':%d}]},'setDscp':%d}",
				i ? "," : "", i, 1000 + i, i % 64);
		fputs("]}}", f);
	}
	fputs("]", f);
	fclose(f);
	set = parse(json);
	free(json);

	r = loupe_policy_compile(set, 0, 1, &c, &e);
	cr_assert_eq(r, 0, "%s", e.message);
	cr_expect_eq(c->meta.n_rule_bits, LOUPE_POLICY_SET_RULES_MAX + LOUPE_POLICY_SET_MAX);
	cr_expect_eq(c->meta.rewrite_base, c->meta.n_rule_bits);
	cr_expect_eq(c->meta.n_rewrites, LOUPE_REWRITES_MAX);
	cr_expect_eq(c->meta.n_bits, c->meta.n_rule_bits + LOUPE_REWRITES_MAX);
	cr_expect_leq(c->meta.n_bits, LOUPE_POLICY_BITS);
	cr_expect_str_eq(c->bits[LOUPE_POLICY_SET_RULES_MAX].policy, "p0000");
	cr_expect(c->bits[LOUPE_POLICY_SET_RULES_MAX].is_default);
	cr_expect_str_eq(c->bits[c->meta.rewrite_base].policy, "p0000");
	cr_expect_str_eq(c->bits[c->meta.rewrite_base].rule, "w0");
	cr_expect_str_eq(c->bits[c->meta.n_bits - 1].policy, "p0003");
	cr_expect_str_eq(c->bits[c->meta.n_bits - 1].rule, "w63");
	cr_expect_eq(c->rewrites[LOUPE_REWRITES_MAX - 1].dscp, 63);
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, map_capacity, .description = "a trie is filled to half at most")
{
	struct loupe_policy_compiled *c = NULL;
	struct loupe_policy_set *set;
	struct loupe_policy_error e;
	char *json = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&json, &len);
	int port = 1, r;

	/* 513 rules of 64 distinct ports: 32832 port entries, more than 65536 / 2 */
	cr_assert_not_null(f);
	fputs("[", f);
	for (int p = 0; p < 3; p++) {
		fprintf(f,
			"%s{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'p%d'},"
			"'spec':{'podSelector':{},'rules':[",
			p ? "," : "", p);
		for (int i = 0; i < (p < 2 ? 256 : 1); i++) {
			fprintf(f, "%s{'name':'r%d','direction':'egress','match':{'ports':[",
				i ? "," : "", i);
			for (int k = 0; k < 64; k++)
				fprintf(f, "%s{'port':%d}", k ? "," : "", port++);
			fputs("]},'action':'deny'}", f);
		}
		fputs("]}}", f);
	}
	fputs("]", f);
	fclose(f);
	set = parse(json);
	free(json);

	r = loupe_policy_compile(set, 0, 1, &c, &e);
	cr_expect_eq(r, -EINVAL);
	cr_expect_null(c);
	cr_expect_str_eq(e.path, "");
	cr_expect(strstr(e.message, "32832 entries of loupe_pol_ports"), "%s", e.message);
	cr_expect(strstr(e.message, "at most 32768"), "%s", e.message);
	loupe_policy_set_free(set);
}

Test(policy_compile, empty_set)
{
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_compiled *c = compile_slot(&set, 0);
	struct loupe_policy_bits b;

	cr_expect_eq(c->meta.n_bits, 0);
	cr_expect_eq(c->addrs.n + c->ports.n + c->names.n + c->paths.n, 0);
	cr_expect(bits_empty(&c->meta.any_iface));
	cr_expect(bits_empty(&c->meta.l4_only));
	for (unsigned int m = 0; m < LOUPE_POLICY_METHODS; m++)
		cr_expect(bits_empty(&c->methods[m]));
	cr_expect_not(loupe_policy_compiled_iface_bits(c, "veth0", &b));
	loupe_policy_compiled_free(c);
}

/* ------------------------------------------------------------------ addresses */

Test(policy_compile, cidrs_fold, .description = "a prefix's rules reach the longer ones")
{
	static const struct policy_text policies[] = {
		{ "p", "{'podSelector':{'cidrs':['10.244.0.0/16']},'rules':["
		       "{'name':'wide','direction':'egress',"
		       "'match':{'cidrs':['10.0.0.0/8','2001:db8::/32']},'action':'deny'},"
		       "{'name':'narrow','direction':'egress','match':{'cidrs':['10.1.0.0/16']},"
		       "'action':'deny'},"
		       "{'name':'any','direction':'egress','match':{},'action':'deny'},"
		       "{'name':'same','direction':'egress','match':{'cidrs':['10.1.0.0/16']},"
		       "'action':'deny'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	struct loupe_policy_addr_key k;
	const struct loupe_policy_entry *e;

	k = addr_key(1, LOUPE_POL_ADDR_PEER4, "10.1.0.0");
	k.prefixlen = 16 + 16;
	e = find(&c->addrs, &k, sizeof(k));
	cr_assert_not_null(e, "no 10.1.0.0/16 entry");
	expect_bits(e->value, "0,1,2,3", "10.1.0.0/16: its rules, /8's and /0's");
	k = addr_key(1, LOUPE_POL_ADDR_PEER4, "10.0.0.0");
	k.prefixlen = 16 + 8;
	e = find(&c->addrs, &k, sizeof(k));
	cr_assert_not_null(e, "no 10.0.0.0/8 entry");
	expect_bits(e->value, "0,2");

	/* one entry per prefix: POD4 /16, PEER4 /0 /8 /16, PEER6 /0 /32 */
	cr_expect_eq(c->addrs.n, 6);
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "10.1.2.3"), "0,1,2,3");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "10.2.0.1"), "0,2");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "11.0.0.1"), "2");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER6, "2001:db8::1"), "0,2");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER6, "2001:db9::1"), "2");
	/* the pod: its own bits within the selector's cidrs, none outside; no IPv6 cidrs */
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_POD4, "10.244.3.4"), "0,1,2,3");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_POD4, "10.245.3.4"), "");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_POD6, "fd00::1"), "");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, selector_without_cidrs, .description = "every pod address of both families")
{
	static const struct policy_text policies[] = {
		{ "p", "{'podSelector':{},'rules':["
		       "{'name':'r','direction':'egress','match':{},'action':'deny'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile_slot(set, 0);

	for (uint8_t kind = LOUPE_POL_ADDR_POD4; kind <= LOUPE_POL_ADDR_PEER6; kind++) {
		struct loupe_policy_addr_key k = { .prefixlen = 16, .slot = 0, .kind = kind };
		const struct loupe_policy_entry *e = find(&c->addrs, &k, sizeof(k));

		cr_assert_not_null(e, "no prefix-16 entry of kind %u", kind);
		expect_bits(e->value, "0", "kind %u", kind);
	}
	cr_expect_eq(c->addrs.n, 4);
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ ports */

/* The ports of @proto and @dir that map to @bit must be exactly @lo..@hi. */
static void expect_port_range(const struct loupe_policy_compiled *c, uint8_t dir, uint8_t proto,
			      unsigned int bit, uint32_t lo, uint32_t hi)
{
	unsigned int wrong = 0;

	for (uint32_t p = 0; p <= 65535; p++) {
		struct loupe_policy_bits b = port_bits(c, dir, proto, (uint16_t)p);
		bool in = p >= lo && p <= hi;

		if (loupe_policy_bit_test(&b, bit) != in && wrong++ < 5)
			cr_expect_fail("proto %u dir %u port %u: bit %u %s", proto, dir, p, bit,
				       in ? "missing" : "set");
	}
	cr_expect_eq(wrong, 0, "%u ports wrong for %u..%u", wrong, lo, hi);
}

static size_t count_ports(const struct loupe_policy_compiled *c, uint8_t dir, uint8_t proto)
{
	size_t n = 0;

	for (size_t i = 0; i < c->ports.n; i++)
		n += c->ports.v[i].key.port.direction == dir &&
		     c->ports.v[i].key.port.protocol == proto &&
		     c->ports.v[i].key.port.prefixlen > 16;
	return n;
}

Test(policy_compile, port_ranges, .description = "fewest prefixes, exactly the range")
{
	static const struct policy_text policies[] = {
		{ "p", "{'podSelector':{},'rules':["
		       "{'name':'web','direction':'egress',"
		       "'match':{'ports':[{'port':80,'endPort':90}]},'action':'deny'},"
		       "{'name':'all','direction':'ingress',"
		       "'match':{'ports':[{'port':1,'endPort':65535,'protocol':'UDP'}]},"
		       "'action':'deny'},"
		       "{'name':'one','direction':'egress',"
		       "'match':{'ports':[{'port':65535,'protocol':'UDP'}]},'action':'deny'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	static const struct {
		uint16_t port;
		uint32_t prefixlen;
	} web[] = { { 80, 24 + 13 }, { 88, 24 + 15 }, { 90, 24 + 16 } };

	for (size_t i = 0; i < ARRAY_SIZE(web); i++) {
		struct loupe_policy_port_key k =
			port_key(1, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, web[i].port);
		const struct loupe_policy_entry *e;

		k.prefixlen = web[i].prefixlen;
		e = find(&c->ports, &k, sizeof(k));
		cr_expect_not_null(e, "no entry %u/%u", web[i].port, web[i].prefixlen);
		if (e)
			expect_bits(e->value, "0", "port %u", web[i].port);
	}
	cr_expect_eq(count_ports(c, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP), 3);
	expect_port_range(c, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, 0, 80, 90);
	expect_port_range(c, LOUPE_DIR_POD_INGRESS, IPPROTO_TCP, 0, 1, 0);
	expect_port_range(c, LOUPE_DIR_POD_EGRESS, IPPROTO_UDP, 0, 1, 0);

	/* 1..65535: 1, 2-3, 4-7, ... 32768-65535 */
	cr_expect_eq(count_ports(c, LOUPE_DIR_POD_INGRESS, IPPROTO_UDP), 16);
	expect_port_range(c, LOUPE_DIR_POD_INGRESS, IPPROTO_UDP, 1, 1, 65535);
	expect_port_range(c, LOUPE_DIR_POD_EGRESS, IPPROTO_UDP, 2, 65535, 65535);
	expect_port_range(c, LOUPE_DIR_POD_INGRESS, IPPROTO_TCP, 1, 1, 0);
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, icmp_and_no_ports, .description = "ICMP: both families, any type")
{
	static const struct policy_text policies[] = {
		{ "p",
		  "{'podSelector':{},'rules':["
		  "{'name':'ping','direction':'egress','match':{'ports':[{'protocol':'ICMP'}]},"
		  "'action':'allow'},"
		  "{'name':'in','direction':'ingress','match':{},'action':'deny'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	struct loupe_policy_port_key k4 = port_key(1, LOUPE_DIR_POD_EGRESS, IPPROTO_ICMP, 0);
	struct loupe_policy_port_key k6 = port_key(1, LOUPE_DIR_POD_EGRESS, IPPROTO_ICMPV6, 0);
	struct loupe_policy_port_key kin = { .prefixlen = 16,
					     .slot = 1,
					     .direction = LOUPE_DIR_POD_INGRESS };

	k4.prefixlen = k6.prefixlen = 24;
	cr_expect_not_null(find(&c->ports, &k4, sizeof(k4)), "no ICMP entry");
	cr_expect_not_null(find(&c->ports, &k6, sizeof(k6)), "no ICMPv6 entry");
	cr_expect_not_null(find(&c->ports, &kin, sizeof(kin)), "no prefix-16 ingress entry");
	cr_expect_eq(c->ports.n, 3);
	expect_bits(port_bits(c, LOUPE_DIR_POD_EGRESS, IPPROTO_ICMP, 0x0800), "0");
	expect_bits(port_bits(c, LOUPE_DIR_POD_EGRESS, IPPROTO_ICMPV6, 0), "0");
	expect_bits(port_bits(c, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, 0), "");
	expect_bits(port_bits(c, LOUPE_DIR_POD_INGRESS, IPPROTO_ICMP, 0), "1");
	expect_bits(port_bits(c, LOUPE_DIR_POD_INGRESS, IPPROTO_UDP, 53), "1");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ names, methods, paths */

Test(policy_compile, name_key_bytes)
{
	static const struct {
		const char *name;
		bool wildcard;
		const char *key;
		size_t len;
	} rows[] = {
		{ "api.openai.com", false, "moc.ianepo.ipa", 15 },
		{ "anthropic.com", true, "moc.ciporhtna.", 14 },
		{ "API.OpenAI.com", false, "moc.ianepo.ipa", 15 },
		{ "a", false, "a", 2 },
	};
	uint8_t out[LOUPE_POLICY_NAME_KEY_MAX];
	char longname[260];

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		size_t n;

		memset(out, 0xee, sizeof(out));
		n = loupe_policy_name_key_bytes(rows[i].name, rows[i].wildcard, out);
		cr_expect_eq(n, rows[i].len, "%s: %zu bytes", rows[i].name, n);
		cr_expect_eq(memcmp(out, rows[i].key, rows[i].len), 0, "%s: key %.*s", rows[i].name,
			     (int)n, out);
	}
	/* 253 characters: reversed and cut at 252, the NUL and the first label's start dropped */
	memset(longname, 'a', 253);
	longname[0] = 'z';
	longname[252] = 'y';
	longname[253] = 0;
	cr_expect_eq(loupe_policy_name_key_bytes(longname, false, out), LOUPE_POLICY_NAME_KEY_MAX);
	cr_expect_eq(out[0], 'y');
	cr_expect_eq(out[LOUPE_POLICY_NAME_KEY_MAX - 1], 'a', "the cut keeps the last labels");
}

Test(policy_compile, names, .description = "exact, wildcard, host ports, kinds")
{
	static const struct policy_text policies[] = {
		{ "p",
		  "{'podSelector':{},'rules':["
		  "{'name':'sni','direction':'egress',"
		  "'match':{'tls':{'sni':['api.openai.com','*.anthropic.com']}},'action':'deny'},"
		  "{'name':'host','direction':'egress',"
		  "'match':{'http':{'hosts':['api.example.com:8080','*.example.com']}},"
		  "'action':'deny'},"
		  "{'name':'anyhost','direction':'egress','match':{'http':{}},'action':'audit'},"
		  "{'name':'dns','direction':'egress',"
		  "'match':{'dns':{'names':['x.example.com']}},'action':'deny'},"
		  "{'name':'anydns','direction':'egress','match':{'dns':{}},'action':'audit'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	struct loupe_policy_name_key k;
	const struct loupe_policy_entry *e;

	/* the exact key of an exact name: reversed, NUL, prefixlen over the NUL */
	memset(&k, 0, sizeof(k));
	k.slot = 1;
	k.kind = LOUPE_POL_NAME_SNI;
	memcpy(k.name, "moc.ianepo.ipa", 15);
	k.prefixlen = 32 + 8 * 15;
	e = find(&c->names, &k, sizeof(k));
	cr_assert_not_null(e, "no entry for api.openai.com");
	expect_bits(e->value, "0");
	memset(k.name, 0, sizeof(k.name));
	memcpy(k.name, "moc.ciporhtna.", 14);
	k.prefixlen = 32 + 8 * 14;
	cr_expect_not_null(find(&c->names, &k, sizeof(k)), "no entry for *.anthropic.com");
	memset(&k, 0, sizeof(k));
	k.slot = 1;
	k.kind = LOUPE_POL_NAME_HOST_PORT;
	k.port[0] = 8080 >> 8;
	k.port[1] = 8080 & 0xff;
	memcpy(k.name, "moc.elpmaxe.ipa", 16);
	k.prefixlen = 32 + 8 * 16;
	cr_expect_not_null(find(&c->names, &k, sizeof(k)), "no HOST_PORT entry, port big-endian");

	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "api.openai.com"), "0");
	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "API.OpenAI.com."), "0");
	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "x.api.openai.com"), "");
	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "claude.anthropic.com"), "0");
	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "a.b.anthropic.com"), "0");
	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "anthropic.com"), "");
	expect_bits(name_bits(c, LOUPE_POL_NAME_SNI, 0, "xanthropic.com"), "");
	/* the Host: a rule without hosts is in every HOST answer, not in HOST_PORT ones */
	expect_bits(name_bits(c, LOUPE_POL_NAME_HOST, 0, "a.example.com"), "1,2");
	expect_bits(name_bits(c, LOUPE_POL_NAME_HOST, 0, "api.example.com"), "1,2");
	expect_bits(name_bits(c, LOUPE_POL_NAME_HOST, 0, "example.com"), "2");
	expect_bits(name_bits(c, LOUPE_POL_NAME_HOST_PORT, 8080, "api.example.com"), "1");
	expect_bits(name_bits(c, LOUPE_POL_NAME_HOST_PORT, 8081, "api.example.com"), "");
	expect_bits(name_bits(c, LOUPE_POL_NAME_DNS, 0, "x.example.com"), "3,4");
	expect_bits(name_bits(c, LOUPE_POL_NAME_DNS, 0, "y.example.com"), "4");
	/* L7 rules are judged on the request */
	expect_bits(c->meta.l4_only, "");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, methods_and_paths, .description = "method lists, path prefixes folded")
{
	static const struct policy_text policies[] = {
		{ "p", "{'podSelector':{},'rules':["
		       "{'name':'v1','direction':'egress',"
		       "'match':{'http':{'methods':['GET','POST'],'paths':['/v1/']}},"
		       "'action':'allow'},"
		       "{'name':'chat','direction':'egress',"
		       "'match':{'http':{'paths':['/v1/chat','/v1/']}},'action':'deny'},"
		       "{'name':'any','direction':'egress',"
		       "'match':{'http':{'methods':['PATCH']}},'action':'audit'},"
		       "{'name':'tls','direction':'egress','match':{'tls':{}},'action':'deny'},"
		       "{'name':'l4','direction':'egress','match':{},'action':'deny'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	static const char *const methods[LOUPE_POLICY_METHODS] = {
		[LOUPE_POLICY_HTTP_GET] = "0,1",   [LOUPE_POLICY_HTTP_HEAD] = "1",
		[LOUPE_POLICY_HTTP_POST] = "0,1",  [LOUPE_POLICY_HTTP_PUT] = "1",
		[LOUPE_POLICY_HTTP_DELETE] = "1",  [LOUPE_POLICY_HTTP_CONNECT] = "1",
		[LOUPE_POLICY_HTTP_OPTIONS] = "1", [LOUPE_POLICY_HTTP_TRACE] = "1",
		[LOUPE_POLICY_HTTP_PATCH] = "1,2",
	};
	struct loupe_policy_path_key k = { .prefixlen = 8, .slot = 1 };
	const struct loupe_policy_entry *e;

	for (unsigned int m = 0; m < LOUPE_POLICY_METHODS; m++)
		expect_bits(c->methods[m], methods[m], "method %u", m);
	e = find(&c->paths, &k, sizeof(k));
	cr_assert_not_null(e, "no prefix-8 path entry");
	expect_bits(e->value, "2");
	/* "/v1/" twice in rule 1 and once in rule 0: one entry */
	cr_expect_eq(c->paths.n, 3);
	expect_bits(path_bits(c, "/v1/chat/completions"), "0,1,2");
	expect_bits(path_bits(c, "/v1/models"), "0,1,2");
	expect_bits(path_bits(c, "/v10"), "2");
	expect_bits(path_bits(c, "/"), "2");
	expect_bits(c->meta.l4_only, "4");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ interfaces */

Test(policy_compile, interface_globs, .description = "own bits only where a glob matches")
{
	static const struct policy_text policies[] = {
		{ "veths", "{'priority':1,'podSelector':{'interfaces':['veth*','lxc?1']},"
			   "'defaultAction':'deny','rules':["
			   "{'name':'a','direction':'egress','match':{},'action':'deny'}]}" },
		{ "all", "{'priority':2,'podSelector':{},'rules':["
			 "{'name':'b','direction':'egress','match':{},'action':'allow'}]}" },
		{ "tap", "{'priority':3,'podSelector':{'interfaces':['tap*']},'rules':["
			 "{'name':'c','direction':'egress','match':{},'action':'allow'}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	static const struct {
		const char *ifname;
		bool entry;
		const char *bits;
	} rows[] = {
		{ "veth1a2b", true, "0,1,3" }, { "lxca1", true, "0,1,3" }, { "lxca2", false, "1" },
		{ "tap0", true, "1,2" },       { "eth0", false, "1" },
	};

	expect_bits(c->meta.any_iface, "1");
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		struct loupe_policy_bits b;

		memset(&b, 0xa5, sizeof(b));
		cr_expect_eq(loupe_policy_compiled_iface_bits(c, rows[i].ifname, &b), rows[i].entry,
			     "%s", rows[i].ifname);
		expect_bits(b, rows[i].bits, "%s", rows[i].ifname);
	}
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ rewrites and rate limits */

/* FNV-1a 64 of the lower-case names, computed apart from the code under test (Python). */
#define FNV_EMPTY	      0xcbf29ce484222325ULL /* the offset basis */
#define FNV_A		      0xaf63dc4c8601ec8cULL /* "a", FNV's own test vector */
#define FNV_AUTHORIZATION     0xff974ce1fd18159eULL
#define FNV_X_API_KEY	      0x414580a58be797ccULL
#define FNV_API_KEY	      0x63aca50dcbe4f005ULL
#define FNV_ANTHROPIC_API_KEY 0xec493d3e3cda32c0ULL

/* Asserts no name or path entry holds a bit of @first..@first + @n - 1. */
static void expect_bits_not_in_l7(const struct loupe_policy_compiled *c, unsigned int first,
				  unsigned int n)
{
	const struct loupe_policy_entries *maps[] = { &c->names, &c->paths };

	for (unsigned int bit = first; bit < first + n; bit++) {
		for (size_t m = 0; m < ARRAY_SIZE(maps); m++)
			for (size_t i = 0; i < maps[m]->n; i++)
				cr_expect_not(loupe_policy_bit_test(&maps[m]->v[i].value, bit),
					      "bit %u in %s entry %zu", bit, m ? "paths" : "names",
					      i);
		for (unsigned int m = 0; m < LOUPE_POLICY_METHODS; m++)
			cr_expect_not(loupe_policy_bit_test(&c->methods[m], bit),
				      "bit %u in method %u", bit, m);
		cr_expect_not(loupe_policy_bit_test(&c->meta.l4_only, bit), "bit %u in l4_only",
			      bit);
		cr_expect_eq(c->meta.action[bit], 0, "bit %u has an action", bit);
	}
}

Test(policy_compile, rewrite_bits_after_rules, .description = "rules, defaults, then rewrites")
{
	static const struct policy_text policies[] = {
		{ "b", "{'priority':10,'podSelector':{},'defaultAction':'deny','rules':["
		       "{'name':'b1','direction':'egress','match':{},'action':'allow'}],"
		       "'rewrites':["
		       "{'name':'bw1','direction':'egress','match':{'cidrs':['10.0.0.0/8']},"
		       "'setDscp':1},"
		       "{'name':'bw2','direction':'ingress','match':{'ports':[{'port':22}]},"
		       "'vlan':{'push':5}}]}" },
		{ "a", "{'priority':10,'podSelector':{'interfaces':['veth*']},'rules':["
		       "{'name':'a1','direction':'egress','match':{'http':{}},'action':'audit'}],"
		       "'rewrites':[{'name':'aw1','direction':'egress','match':{},"
		       "'mapTo':{'address':'198.18.6.6','port':8080}}]}" },
		{ "z",
		  "{'priority':5,'podSelector':{'labels':{'app':'x'}},'rewrites':["
		  "{'name':'zw','direction':'egress','match':{},'mapTo':{'address':'10.9.9.9'}}],"
		  "'rateLimits':[{'direction':'egress','bytesPerSecond':1}]}" },
		{ "c", "{'priority':20,'podSelector':{'cidrs':['10.244.0.0/16']},"
		       "'rateLimits':[{'direction':'ingress','bytesPerSecond':1000}]}" },
		{ NULL, NULL },
	};
	static const struct {
		const char *policy, *name;
		enum loupe_policy_bit_kind kind;
		enum loupe_policy_action action;
		uint8_t verdict;
	} want[] = {
		{ "a", "a1", LOUPE_POLICY_BIT_RULE, LOUPE_POLICY_ACTION_AUDIT,
		  LOUPE_VERDICT_AUDIT },
		{ "b", "b1", LOUPE_POLICY_BIT_RULE, LOUPE_POLICY_ACTION_ALLOW,
		  LOUPE_VERDICT_ALLOW },
		{ "b", "", LOUPE_POLICY_BIT_DEFAULT, LOUPE_POLICY_ACTION_DENY, LOUPE_VERDICT_DENY },
		{ "z", "zw", LOUPE_POLICY_BIT_REWRITE, LOUPE_POLICY_ACTION_NONE, 0 },
		{ "a", "aw1", LOUPE_POLICY_BIT_REWRITE, LOUPE_POLICY_ACTION_NONE, 0 },
		{ "b", "bw1", LOUPE_POLICY_BIT_REWRITE, LOUPE_POLICY_ACTION_NONE, 0 },
		{ "b", "bw2", LOUPE_POLICY_BIT_REWRITE, LOUPE_POLICY_ACTION_NONE, 0 },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);
	const char *pod = "10.244.1.1";
	struct {
		const char *sentence;
		struct flow f;
		const char *want;
	} rows[] = {
		{ "veth: a's entry first (a before b by name)",
		  { .ifname = "veth3",
		    .pod = pod,
		    .peer = "10.1.1.1",
		    .proto = IPPROTO_TCP,
		    .port = 443 },
		  "a/aw1" },
		{ "eth: a does not select it",
		  { .ifname = "eth3",
		    .pod = pod,
		    .peer = "10.1.1.1",
		    .proto = IPPROTO_UDP,
		    .port = 53 },
		  "b/bw1" },
		{ "eth, a peer outside bw1's cidrs",
		  { .ifname = "eth3",
		    .pod = pod,
		    .peer = "11.0.0.1",
		    .proto = IPPROTO_TCP,
		    .port = 443 },
		  "-" },
		{ "eth, IPv6: bw1's cidrs are IPv4",
		  { .ifname = "eth3",
		    .pod = "fd00::1",
		    .peer = "2001:db8::1",
		    .proto = IPPROTO_TCP,
		    .port = 443 },
		  "-" },
		{ "veth, IPv6: aw1 fits (the datapath maps only its own family)",
		  { .ifname = "veth3",
		    .pod = "fd00::1",
		    .peer = "2001:db8::1",
		    .proto = IPPROTO_TCP,
		    .port = 443 },
		  "a/aw1" },
		{ "ingress to port 22",
		  { .ifname = "veth3",
		    .pod = pod,
		    .peer = "11.0.0.1",
		    .dir = LOUPE_DIR_POD_INGRESS,
		    .proto = IPPROTO_TCP,
		    .port = 22 },
		  "b/bw2" },
		{ "ingress to port 23",
		  { .ifname = "veth3",
		    .pod = pod,
		    .peer = "11.0.0.1",
		    .dir = LOUPE_DIR_POD_INGRESS,
		    .proto = IPPROTO_TCP,
		    .port = 23 },
		  "-" },
		{ "ICMP egress on eth to 10/8",
		  { .ifname = "eth3", .pod = pod, .peer = "10.2.2.2", .proto = IPPROTO_ICMP },
		  "b/bw1" },
	};
	struct loupe_policy_bits ifb;

	cr_assert_eq(c->meta.n_bits, ARRAY_SIZE(want));
	cr_expect_eq(c->meta.n_rule_bits, 3);
	cr_expect_eq(c->meta.rewrite_base, 3);
	cr_expect_eq(c->meta.n_rewrites, 4);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		cr_expect_str_eq(c->bits[i].policy, want[i].policy, "bit %zu", i);
		cr_expect_str_eq(c->bits[i].rule, want[i].name, "bit %zu", i);
		cr_expect_eq(c->bits[i].kind, want[i].kind, "bit %zu", i);
		cr_expect_eq(c->bits[i].is_default, want[i].kind == LOUPE_POLICY_BIT_DEFAULT,
			     "bit %zu", i);
		cr_expect_eq(c->bits[i].action, want[i].action, "bit %zu", i);
		cr_expect_eq(c->meta.action[i], want[i].verdict, "bit %zu", i);
	}
	/* the rewrites' entries in the same order, each pointing at what it was compiled from */
	for (unsigned int i = 0; i < c->meta.n_rewrites; i++)
		cr_expect_str_eq(c->rewrite_src[i]->name, want[3 + i].name, "rewrite %u", i);

	/* selection like the rules of their policy; matching like a rule without L7 */
	expect_bits(c->meta.any_iface, "1,2,5,6", "b's bits; a selects by name, z nothing");
	cr_expect(loupe_policy_compiled_iface_bits(c, "veth0", &ifb));
	expect_bits(ifb, "0,1,2,4,5,6");
	cr_expect_not(loupe_policy_compiled_iface_bits(c, "eth0", &ifb));
	expect_bits(c->meta.l4_only, "1,2", "a rewrite is no first-packet verdict");
	expect_bits_not_in_l7(c, 3, 4);
	expect_bit_nowhere(c, 3);
	for (unsigned int m = 0; m < LOUPE_POLICY_METHODS; m++)
		expect_bits(c->methods[m], "0", "method %u", m);
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_POD4, pod), "0,1,2,4,5,6");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "10.1.1.1"), "0,1,2,4,5,6");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER4, "11.0.0.1"), "0,1,2,4,6");
	expect_bits(addr_bits(c, LOUPE_POL_ADDR_PEER6, "2001:db8::1"), "0,1,2,4,6");
	expect_bits(port_bits(c, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, 443), "0,1,2,4,5");
	expect_bits(port_bits(c, LOUPE_DIR_POD_INGRESS, IPPROTO_TCP, 22), "2,6");
	expect_bits(port_bits(c, LOUPE_DIR_POD_INGRESS, IPPROTO_UDP, 22), "2");
	cr_expect_eq(c->meta.flags, LOUPE_POL_HAS_MAPPINGS | LOUPE_POL_HAS_RATE_LIMITS);

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		cr_expect_str_eq(picked(c, pick_rewrite(c, &rows[i].f)), rows[i].want, "%s",
				 rows[i].sentence);
	/* and a rewrite never decides a verdict */
	rows[0].f.ifname = "eth3";
	cr_expect_str_eq(judged(c, judge(c, &rows[0].f)), "b/b1");
	rows[5].f.proto = IPPROTO_UDP;
	cr_expect_str_eq(judged(c, judge(c, &rows[5].f)), "b/");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* The loupe_rewrite an entry compiles to, field by field against a zeroed struct. */
static void expect_rewrite(const struct loupe_policy_compiled *c, unsigned int i,
			   const struct loupe_rewrite *want)
{
	const struct loupe_rewrite *got = &c->rewrites[i];

	cr_assert_lt(i, c->meta.n_rewrites);
	cr_expect_eq(got->actions, want->actions, "rewrite %u: actions %#x", i, got->actions);
	cr_expect_eq(memcmp(got->map_addr, want->map_addr, 16), 0, "rewrite %u: map_addr", i);
	cr_expect_eq(got->map_ipv6, want->map_ipv6, "rewrite %u: map_ipv6", i);
	cr_expect_eq(got->map_port, want->map_port, "rewrite %u: map_port %u", i, got->map_port);
	cr_expect_eq(got->dscp, want->dscp, "rewrite %u: dscp", i);
	cr_expect_eq(got->vlan_id, want->vlan_id, "rewrite %u: vlan_id", i);
	cr_expect_eq(got->n_mask, want->n_mask, "rewrite %u: n_mask", i);
	for (unsigned int k = 0; k < LOUPE_MASK_HEADERS_MAX; k++) {
		cr_expect_eq(got->mask_hash[k], want->mask_hash[k], "rewrite %u: hash %u %#llx", i,
			     k, (unsigned long long)got->mask_hash[k]);
		cr_expect_eq(got->mask_len[k], want->mask_len[k], "rewrite %u: len %u", i, k);
	}
	cr_expect_eq(memcmp(got, want, sizeof(*got)), 0, "rewrite %u: padding", i);
}

Test(policy_compile, rewrite_entries, .description = "loupe_pol_rewrites of the examples")
{
	struct loupe_policy_set *set = load(GOOD_DIR "/mask-api-keys.json");
	struct loupe_policy_compiled *c;
	struct loupe_policy_error e;
	struct loupe_rewrite want;
	char *text;
	size_t len;

	text = loupe_proc_read_all(GOOD_DIR "/rewrite-map.json", &len);
	cr_assert_not_null(text);
	cr_assert_eq(loupe_policy_parse(text, len, "rewrite-map.json", set, &e), 0, "%s",
		     e.message);
	free(text);
	c = compile(set);
	/* mask-api-keys (priority 40) before rewrite-map (50) */
	cr_assert_eq(c->meta.n_rewrites, 6);
	cr_expect_eq(c->meta.n_rule_bits, 1);
	cr_expect_eq(c->meta.flags, LOUPE_POL_HAS_MAPPINGS);

	memset(&want, 0, sizeof(want));
	want.actions = LOUPE_RW_MASK;
	want.n_mask = 4;
	want.mask_hash[0] = FNV_AUTHORIZATION;
	want.mask_len[0] = 13;
	want.mask_hash[1] = FNV_X_API_KEY;
	want.mask_len[1] = 9;
	want.mask_hash[2] = FNV_API_KEY;
	want.mask_len[2] = 7;
	want.mask_hash[3] = FNV_ANTHROPIC_API_KEY;
	want.mask_len[3] = 17;
	expect_rewrite(c, 0, &want);
	cr_expect_str_eq(c->rewrite_src[0]->mask_headers[1], "x-api-key");

	memset(&want, 0, sizeof(want));
	want.actions = LOUPE_RW_MAP;
	memcpy(want.map_addr, (uint8_t[]){ 198, 18, 6, 6 }, 4);
	want.map_port = 8080;
	expect_rewrite(c, 1, &want);

	memset(&want, 0, sizeof(want));
	want.actions = LOUPE_RW_MAP;
	cr_assert_eq(inet_pton(AF_INET6, "fd00:198:18:6::6", want.map_addr), 1);
	want.map_ipv6 = 1;
	want.map_port = 8080;
	expect_rewrite(c, 2, &want);

	memset(&want, 0, sizeof(want));
	want.actions = LOUPE_RW_MAP;
	memcpy(want.map_addr, (uint8_t[]){ 198, 18, 6, 53 }, 4);
	expect_rewrite(c, 3, &want);

	memset(&want, 0, sizeof(want));
	want.actions = LOUPE_RW_DSCP | LOUPE_RW_VLAN_PUSH;
	want.dscp = 8;
	want.vlan_id = 100;
	expect_rewrite(c, 4, &want);

	memset(&want, 0, sizeof(want));
	want.actions = LOUPE_RW_VLAN_POP;
	expect_rewrite(c, 5, &want);
	cr_expect_str_eq(c->bits[c->meta.rewrite_base + 5].rule, "untag");
	cr_expect_str_eq(c->bits[c->meta.rewrite_base + 5].policy, "rewrite-map");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, mask_hash, .description = "FNV-1a 64 of the lower-case name")
{
	cr_expect_eq(loupe_policy_mask_hash("", 0), FNV_EMPTY);
	cr_expect_eq(loupe_policy_mask_hash("a", 1), FNV_A);
	cr_expect_eq(loupe_policy_mask_hash("A", 1), FNV_A);
	cr_expect_eq(loupe_policy_mask_hash("Authorization", 13), FNV_AUTHORIZATION);
	cr_expect_eq(loupe_policy_mask_hash("X-API-KEY: secret", 9), FNV_X_API_KEY,
		     "the name's bytes only, as the datapath hashes them before the ':'");
}

Test(policy_compile, rewrite_flags, .description = "mappings and limits of selecting policies")
{
	static const struct policy_text nothing[] = {
		{ "lab", "{'podSelector':{'labels':{'a':'b'}},'rewrites':[{'name':'m',"
			 "'direction':'egress','match':{},'mapTo':{'address':'10.0.0.1'}}],"
			 "'rateLimits':[{'direction':'egress','bytesPerSecond':1}]}" },
		{ "dscp", "{'podSelector':{},'rewrites':[{'name':'d','direction':'egress',"
			  "'match':{},'setDscp':46}]}" },
		{ NULL, NULL },
	};
	struct loupe_policy_set *set = parse_set(nothing);
	struct loupe_policy_compiled *c = compile(set);

	cr_expect_eq(c->meta.flags, 0, "a label selector selects no pod yet");
	cr_expect_eq(c->meta.n_rewrites, 2, "numbered all the same");
	cr_expect_eq(c->rewrites[0].dscp, 46, "dscp before lab, by name");
	cr_expect_eq(c->rewrites[1].actions, LOUPE_RW_MAP, "compiled all the same");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);

	set = load(GOOD_DIR "/rate-limit.json");
	c = compile(set);
	cr_expect_eq(c->meta.flags, LOUPE_POL_HAS_RATE_LIMITS);
	cr_expect_eq(c->meta.n_bits, 0, "limits take no bits");
	cr_expect_eq(c->addrs.n + c->ports.n + c->names.n + c->paths.n, 0, "nor entries");
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* An address for compiled_rate(): IPv4 IPv4-mapped. */
static void pod_addr(const char *text, uint8_t out[16])
{
	memset(out, 0, 16);
	if (strchr(text, ':')) {
		cr_assert_eq(inet_pton(AF_INET6, text, out), 1, "%s", text);
		return;
	}
	out[10] = out[11] = 0xff;
	cr_assert_eq(inet_pton(AF_INET, text, out + 12), 1, "%s", text);
}

Test(policy_compile, rate_limit_per_pod, .description = "first selecting policy per direction")
{
	static const struct policy_text policies[] = {
		{ "labels", "{'priority':0,'podSelector':{'labels':{'a':'b'}},'rateLimits':["
			    "{'direction':'egress','bytesPerSecond':1},"
			    "{'direction':'ingress','bytesPerSecond':1}]}" },
		{ "first", "{'priority':1,'podSelector':{'interfaces':['veth1*']},'rateLimits':["
			   "{'direction':'egress','bytesPerSecond':1000}]}" },
		{ "cidr",
		  "{'priority':2,'podSelector':{'cidrs':['10.244.1.0/24','fd00:1::/64']},"
		  "'rateLimits':[{'direction':'egress','bytesPerSecond':2000,'burst':70000},"
		  "{'direction':'ingress','bytesPerSecond':2500}]}" },
		{ "both", "{'priority':2,'podSelector':{'interfaces':['veth2*'],"
			  "'cidrs':['10.244.9.0/24']},'rateLimits':["
			  "{'direction':'egress','bytesPerSecond':4000}]}" },
		{ "all", "{'priority':3,'podSelector':{},'rateLimits':["
			 "{'direction':'ingress','bytesPerSecond':3000}]}" },
		{ NULL, NULL },
	};
	static const struct {
		const char *sentence, *ifname, *addr[2];
		enum loupe_policy_direction dir;
		uint64_t rate; /* 0: none */
	} rows[] = {
		{ "by name first", "veth10", { "10.244.1.5" }, LOUPE_POLICY_EGRESS, 1000 },
		{ "first has no ingress limit",
		  "veth10",
		  { "10.244.1.5" },
		  LOUPE_POLICY_INGRESS,
		  2500 },
		{ "by address", "veth20", { "10.244.1.5" }, LOUPE_POLICY_EGRESS, 2000 },
		{ "by address, IPv6", "veth20", { "fd00:1::5" }, LOUPE_POLICY_EGRESS, 2000 },
		{ "by its second address",
		  "veth20",
		  { "10.244.2.5", "fd00:1::9" },
		  LOUPE_POLICY_EGRESS,
		  2000 },
		{ "no policy selects it", "veth20", { "10.244.2.5" }, LOUPE_POLICY_EGRESS, 0 },
		{ "every pod, ingress", "veth20", { "10.244.2.5" }, LOUPE_POLICY_INGRESS, 3000 },
		{ "addresses unknown", "veth20", { NULL }, LOUPE_POLICY_EGRESS, 0 },
		{ "addresses unknown, ingress", "veth20", { NULL }, LOUPE_POLICY_INGRESS, 3000 },
		{ "name unknown", NULL, { "10.244.1.5" }, LOUPE_POLICY_EGRESS, 2000 },
		{ "IPv4-compatible is not IPv4",
		  "veth20",
		  { "::10.244.1.5" },
		  LOUPE_POLICY_EGRESS,
		  0 },
		{ "name and address both", "veth20", { "10.244.9.1" }, LOUPE_POLICY_EGRESS, 4000 },
		{ "name without the address", "veth20", { "10.244.8.1" }, LOUPE_POLICY_EGRESS, 0 },
		{ "address without the name", "eth0", { "10.244.9.1" }, LOUPE_POLICY_EGRESS, 0 },
	};
	struct loupe_policy_set *set = parse_set(policies);
	struct loupe_policy_compiled *c = compile(set);

	cr_expect_eq(c->meta.flags, LOUPE_POL_HAS_RATE_LIMITS);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		uint8_t addrs[2][16];
		size_t n = 0;
		struct loupe_policy_rate_limit got = { 0 };
		bool found;

		for (; n < 2 && rows[i].addr[n]; n++)
			pod_addr(rows[i].addr[n], addrs[n]);
		found = loupe_policy_compiled_rate(c, rows[i].ifname, n ? addrs : NULL, n,
						   rows[i].dir, &got);
		cr_expect_eq(found, rows[i].rate != 0, "%s: found %d", rows[i].sentence, found);
		if (found && rows[i].rate) {
			cr_expect_eq(got.bytes_per_sec, rows[i].rate, "%s: rate %llu",
				     rows[i].sentence, (unsigned long long)got.bytes_per_sec);
			cr_expect_eq(got.direction, rows[i].dir, "%s", rows[i].sentence);
		}
	}
	/* the limit whole: its burst as given (or filled in) */
	{
		uint8_t a[1][16];
		struct loupe_policy_rate_limit got;

		pod_addr("10.244.1.7", a[0]);
		cr_assert(loupe_policy_compiled_rate(c, "veth20", a, 1, LOUPE_POLICY_EGRESS, &got));
		cr_expect_eq(got.burst, 70000);
		cr_assert(
			loupe_policy_compiled_rate(c, "veth20", a, 1, LOUPE_POLICY_INGRESS, &got));
		cr_expect_eq(got.burst, LOUPE_POLICY_BURST_MIN_DEFAULT);
	}
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

/* ------------------------------------------------------------------ the worked examples */

Test(policy_compile, ai_egress_example, .description = "docs/policy.md example 3, row by row")
{
	struct loupe_policy_set *set = load(GOOD_DIR "/ai-egress.json");
	struct loupe_policy_compiled *c = compile(set);
	const char *sel = "198.18.100.5", *other = "10.244.1.2", *peer = "203.0.113.7";
	struct {
		const char *sentence;
		struct flow f;
		const char *want;
	} rows[] = {
		{ "selected: DNS query api.openai.com",
		  { .pod = sel,
		    .peer = peer,
		    .proto = IPPROTO_UDP,
		    .port = 53,
		    .l7 = L7_DNS,
		    .name = "api.openai.com" },
		  "ai-egress-allowed/llm-dns" },
		{ "selected: TLS to api.anthropic.com:443",
		  { .pod = sel,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "api.anthropic.com" },
		  "ai-egress-allowed/llm-tls" },
		{ "selected: plain HTTP, Host api.openai.com",
		  { .pod = sel,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 80,
		    .l7 = L7_HTTP,
		    .path = "/v1/x",
		    .host = "api.openai.com" },
		  "ai-egress-allowed/llm-http" },
		{ "selected: TLS to api.openai.com:8443",
		  { .pod = sel,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 8443,
		    .l7 = L7_TLS,
		    .name = "api.openai.com" },
		  "ai-egress-denied/llm-sni" },
		{ "selected: TLS to example.com",
		  { .pod = sel,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "example.com" },
		  "-" },
		{ "other: DNS query claude.anthropic.com",
		  { .pod = other,
		    .peer = peer,
		    .proto = IPPROTO_UDP,
		    .port = 53,
		    .l7 = L7_DNS,
		    .name = "claude.anthropic.com" },
		  "ai-egress-denied/llm-dns" },
		{ "other: TLS to generativelanguage.googleapis.com",
		  { .pod = other,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "generativelanguage.googleapis.com" },
		  "ai-egress-denied/llm-sni" },
		{ "other: HTTP, Host api.openai.com:80",
		  { .pod = other,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 80,
		    .l7 = L7_HTTP,
		    .path = "/",
		    .host = "api.openai.com",
		    .host_port = 80 },
		  "ai-egress-denied/llm-host" },
		{ "other: TLS to anthropic.com",
		  { .pod = other,
		    .peer = peer,
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "anthropic.com" },
		  "-" },
		{ "other: the first packet waits for the request",
		  { .pod = other, .peer = peer, .proto = IPPROTO_TCP, .port = 443 },
		  "ai-egress-denied/llm-sni+pending" },
		{ "other: IPv6, TLS to api.openai.com",
		  { .pod = "fd00::5",
		    .peer = "2001:db8::1",
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "api.openai.com" },
		  "ai-egress-denied/llm-sni" },
		{ "selected, IPv6: TLS to api.openai.com",
		  { .pod = "fd00:198:18:100::7",
		    .peer = "2001:db8::1",
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "api.openai.com" },
		  "ai-egress-allowed/llm-tls" },
		{ "other: ICMP is not judged by L7 rules",
		  { .pod = other, .peer = peer, .proto = IPPROTO_ICMP },
		  "-" },
	};

	cr_assert_eq(c->meta.n_bits, 6);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		rows[i].f.dir = LOUPE_DIR_POD_EGRESS;
		cr_expect_str_eq(judged(c, judge(c, &rows[i].f)), rows[i].want, "%s",
				 rows[i].sentence);
	}
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, allowlist_and_deny_examples, .description = "docs/policy.md examples 1, 2")
{
	struct loupe_policy_set *set = load(GOOD_DIR "/deny-cidr-port.json");
	struct loupe_policy_compiled *c;
	const char *pod = "10.244.7.9";
	struct {
		const char *sentence;
		struct flow f;
		const char *want;
	} rows[] = {
		{ "cloud metadata, any port",
		  { .pod = pod, .peer = "169.254.169.254", .proto = IPPROTO_TCP, .port = 80 },
		  "deny-metadata-and-smtp/cloud-metadata" },
		{ "smtp anywhere",
		  { .pod = "10.1.1.1", .peer = "192.0.2.1", .proto = IPPROTO_TCP, .port = 587 },
		  "deny-metadata-and-smtp/smtp" },
		{ "cluster DNS over UDP",
		  { .pod = pod, .peer = "10.96.0.10", .proto = IPPROTO_UDP, .port = 53 },
		  "payments-egress/cluster-dns" },
		{ "postgres",
		  { .pod = pod, .peer = "10.244.9.4", .proto = IPPROTO_TCP, .port = 5432 },
		  "payments-egress/postgres" },
		{ "postgres port elsewhere: the default",
		  { .pod = pod, .peer = "10.244.8.4", .proto = IPPROTO_TCP, .port = 5432 },
		  "payments-egress/" },
		{ "443: waits for the ClientHello",
		  { .pod = pod, .peer = "192.0.2.9", .proto = IPPROTO_TCP, .port = 443 },
		  "payments-egress/psp+pending" },
		{ "443, api.stripe.com",
		  { .pod = pod,
		    .peer = "192.0.2.9",
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "api.stripe.com" },
		  "payments-egress/psp" },
		{ "443, another SNI: the default",
		  { .pod = pod,
		    .peer = "192.0.2.9",
		    .proto = IPPROTO_TCP,
		    .port = 443,
		    .l7 = L7_TLS,
		    .name = "evil.example" },
		  "payments-egress/" },
		{ "22: denied on its SYN",
		  { .pod = pod, .peer = "192.0.2.9", .proto = IPPROTO_TCP, .port = 22 },
		  "payments-egress/" },
		{ "ping",
		  { .pod = pod, .peer = "192.0.2.9", .proto = IPPROTO_ICMP },
		  "payments-egress/ping" },
		{ "ingress to the pod",
		  { .pod = pod,
		    .peer = "192.0.2.9",
		    .dir = LOUPE_DIR_POD_INGRESS,
		    .proto = IPPROTO_TCP,
		    .port = 8080 },
		  "payments-egress/from-anywhere" },
		{ "a pod outside the namespace: no rule",
		  { .pod = "10.244.6.1", .peer = "192.0.2.9", .proto = IPPROTO_TCP, .port = 22 },
		  "-" },
	};

	struct loupe_policy_error e;
	size_t len;
	char *text = loupe_proc_read_all(GOOD_DIR "/egress-allowlist.json", &len);

	/* one set of both files */
	cr_assert_not_null(text);
	cr_assert_eq(loupe_policy_parse(text, len, "egress-allowlist.json", set, &e), 0, "%s",
		     e.message);
	free(text);
	c = compile(set);
	for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
		cr_expect_str_eq(judged(c, judge(c, &rows[i].f)), rows[i].want, "%s",
				 rows[i].sentence);
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}

Test(policy_compile, every_example_compiles)
{
	struct loupe_policy_set *set = load(GOOD_DIR);
	struct loupe_policy_compiled *c = compile_slot(set, 0);
	unsigned int defaults = 0;

	for (unsigned int i = 0; i < set->n_policies; i++)
		defaults += set->policies[i].default_action != LOUPE_POLICY_ACTION_NONE;
	cr_expect_gt(defaults, 0);
	cr_expect_eq(c->meta.n_rule_bits, set->n_rules + defaults);
	cr_expect_eq(c->meta.rewrite_base, c->meta.n_rule_bits);
	cr_expect_gt(set->n_rewrites, 0);
	cr_expect_eq(c->meta.n_rewrites, set->n_rewrites);
	cr_expect_eq(c->meta.n_bits, c->meta.n_rule_bits + c->meta.n_rewrites);
	cr_expect_eq(c->meta.flags, LOUPE_POL_HAS_MAPPINGS | LOUPE_POL_HAS_RATE_LIMITS);
	loupe_policy_compiled_free(c);
	loupe_policy_set_free(set);
}
