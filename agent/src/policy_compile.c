// SPDX-License-Identifier: Apache-2.0
/*
 * The policy compiler: numbers the rules, defaults and rewrites of a set in evaluation order
 * and turns the set into the entries of the datapath's policy maps for one slot
 * (loupe/datapath.h, "Policies in the datapath" and "Rewrites"), each trie's entries folded
 * so that the longest match alone answers; and resolves a pod's rate limits. Pure: no
 * syscalls. Not for writing the maps (policy_apply.c) or for validating (policy.c).
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy_compile.h"

/* Every key begins with its prefixlen; the bits it counts start at the slot, right after. */
#define KEY_DATA_OFFSET sizeof(uint32_t)
_Static_assert(offsetof(struct loupe_policy_addr_key, slot) == KEY_DATA_OFFSET, "addr key");
_Static_assert(offsetof(struct loupe_policy_port_key, slot) == KEY_DATA_OFFSET, "port key");
_Static_assert(offsetof(struct loupe_policy_name_key, slot) == KEY_DATA_OFFSET, "name key");
_Static_assert(offsetof(struct loupe_policy_path_key, slot) == KEY_DATA_OFFSET, "path key");
/* the parser's limits are the datapath's (policy.h does not include loupe/datapath.h) */
_Static_assert(LOUPE_POLICY_SET_REWRITES_MAX == LOUPE_REWRITES_MAX, "rewrites in a set");
_Static_assert(LOUPE_POLICY_MASK_HEADERS_MAX == LOUPE_MASK_HEADERS_MAX, "maskHeaders");
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(LOUPE_POLICY_RW_MAP, LOUPE_RW_MAP) &&
		       SAME(LOUPE_POLICY_RW_DSCP, LOUPE_RW_DSCP) &&
		       SAME(LOUPE_POLICY_RW_VLAN_PUSH, LOUPE_RW_VLAN_PUSH) &&
		       SAME(LOUPE_POLICY_RW_VLAN_POP, LOUPE_RW_VLAN_POP) &&
		       SAME(LOUPE_POLICY_RW_MASK, LOUPE_RW_MASK),
	       "rewrite action bits: loupe_rewrite.actions takes the parser's as they are");
#undef SAME

/* Prefix lengths of the entries that match everything after the slot (and kind). */
#define ADDR_PREFIX_KIND  16
#define PORT_PREFIX_DIR	  16
#define PORT_PREFIX_PROTO 24
#define NAME_PREFIX_KIND  32
#define PATH_PREFIX_SLOT  8

/* ---- a private copy of the set ------------------------------------------------------------ */

/*
 * A field-by-field copy rather than a JSON round trip: a set read from a directory may be
 * larger than the parser takes in one text (LOUPE_POLICY_FILE_MAX). Counts are set only once
 * their array exists, so loupe_policy_set_free() can free a copy that failed half way.
 */
static int str_copy(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -ENOMEM : 0;
}

static int mem_copy(void *dst, const void *src, size_t n, size_t size)
{
	void *p = NULL;

	if (n) {
		p = malloc(n * size);
		if (!p)
			return -ENOMEM;
		memcpy(p, src, n * size);
	}
	memcpy(dst, &p, sizeof(p));
	return 0;
}

static int strings_copy(char ***dst, unsigned int *dst_n, char *const *src, unsigned int n)
{
	if (n && !(*dst = calloc(n, sizeof(**dst))))
		return -ENOMEM;
	*dst_n = n;
	for (unsigned int i = 0; i < n; i++)
		if (str_copy(&(*dst)[i], src[i]))
			return -ENOMEM;
	return 0;
}

static int labels_copy(struct loupe_policy_label **dst, unsigned int *dst_n,
		       const struct loupe_policy_label *src, unsigned int n)
{
	if (n && !(*dst = calloc(n, sizeof(**dst))))
		return -ENOMEM;
	*dst_n = n;
	for (unsigned int i = 0; i < n; i++)
		if (str_copy(&(*dst)[i].key, src[i].key) ||
		    str_copy(&(*dst)[i].value, src[i].value))
			return -ENOMEM;
	return 0;
}

static int names_copy(struct loupe_policy_names *dst, const struct loupe_policy_names *src)
{
	if (src->n && !(dst->v = calloc(src->n, sizeof(*dst->v))))
		return -ENOMEM;
	dst->n = src->n;
	for (unsigned int i = 0; i < src->n; i++) {
		dst->v[i].wildcard = src->v[i].wildcard;
		dst->v[i].port = src->v[i].port;
		if (str_copy(&dst->v[i].name, src->v[i].name))
			return -ENOMEM;
	}
	return 0;
}

static int match_copy(struct loupe_policy_match *dst, const struct loupe_policy_match *src)
{
	dst->l7 = src->l7;
	dst->http.methods = src->http.methods;
	if (mem_copy(&dst->cidrs, src->cidrs, src->n_cidrs, sizeof(*src->cidrs)))
		return -ENOMEM;
	dst->n_cidrs = src->n_cidrs;
	if (mem_copy(&dst->ports, src->ports, src->n_ports, sizeof(*src->ports)))
		return -ENOMEM;
	dst->n_ports = src->n_ports;
	if (strings_copy(&dst->http.paths, &dst->http.n_paths, src->http.paths,
			 src->http.n_paths) ||
	    names_copy(&dst->http.hosts, &src->http.hosts) ||
	    names_copy(&dst->tls_sni, &src->tls_sni) ||
	    names_copy(&dst->dns_names, &src->dns_names))
		return -ENOMEM;
	return 0;
}

static int policy_copy(struct loupe_policy *dst, const struct loupe_policy *src)
{
	const struct loupe_policy_selector *ss = &src->selector;
	struct loupe_policy_selector *ds = &dst->selector;

	dst->priority = src->priority;
	dst->default_action = src->default_action;
	if (str_copy(&dst->name, src->name) || str_copy(&dst->source, src->source) ||
	    str_copy(&dst->doc_path, src->doc_path) ||
	    labels_copy(&dst->labels, &dst->n_labels, src->labels, src->n_labels) ||
	    strings_copy(&ds->interfaces, &ds->n_interfaces, ss->interfaces, ss->n_interfaces) ||
	    labels_copy(&ds->labels, &ds->n_labels, ss->labels, ss->n_labels) ||
	    mem_copy(&ds->cidrs, ss->cidrs, ss->n_cidrs, sizeof(*ss->cidrs)))
		return -ENOMEM;
	ds->n_cidrs = ss->n_cidrs;
	if (src->n_rules && !(dst->rules = calloc(src->n_rules, sizeof(*dst->rules))))
		return -ENOMEM;
	dst->n_rules = src->n_rules;
	for (unsigned int i = 0; i < src->n_rules; i++) {
		dst->rules[i].direction = src->rules[i].direction;
		dst->rules[i].action = src->rules[i].action;
		if (str_copy(&dst->rules[i].name, src->rules[i].name) ||
		    match_copy(&dst->rules[i].match, &src->rules[i].match))
			return -ENOMEM;
	}
	memcpy(dst->rate_limits, src->rate_limits, sizeof(dst->rate_limits));
	dst->n_rate_limits = src->n_rate_limits;
	if (src->n_rewrites && !(dst->rewrites = calloc(src->n_rewrites, sizeof(*dst->rewrites))))
		return -ENOMEM;
	dst->n_rewrites = src->n_rewrites;
	for (unsigned int i = 0; i < src->n_rewrites; i++) {
		const struct loupe_policy_rewrite *sr = &src->rewrites[i];
		struct loupe_policy_rewrite *dr = &dst->rewrites[i];

		dr->direction = sr->direction;
		dr->actions = sr->actions;
		dr->map_to = sr->map_to;
		dr->dscp = sr->dscp;
		dr->vlan_id = sr->vlan_id;
		if (str_copy(&dr->name, sr->name) || match_copy(&dr->match, &sr->match) ||
		    strings_copy(&dr->mask_headers, &dr->n_mask_headers, sr->mask_headers,
				 sr->n_mask_headers))
			return -ENOMEM;
	}
	return 0;
}

/* The policies of @src, not its warnings. */
static struct loupe_policy_set *set_copy(const struct loupe_policy_set *src)
{
	struct loupe_policy_set *dst = calloc(1, sizeof(*dst));

	if (!dst)
		return NULL;
	if (src->n_policies && !(dst->policies = calloc(src->n_policies, sizeof(*dst->policies))))
		return loupe_policy_set_free(dst);
	dst->n_policies = dst->cap_policies = src->n_policies;
	dst->n_rules = src->n_rules;
	dst->n_rewrites = src->n_rewrites;
	for (unsigned int i = 0; i < src->n_policies; i++)
		if (policy_copy(&dst->policies[i], &src->policies[i]))
			return loupe_policy_set_free(dst);
	return dst;
}

/* ---- bits ------------------------------------------------------------------------------- */

static void bits_or(struct loupe_policy_bits *dst, const struct loupe_policy_bits *src)
{
	for (unsigned int i = 0; i < LOUPE_POLICY_WORDS; i++)
		dst->w[i] |= src->w[i];
}

static unsigned int set_rule_count(const struct loupe_policy_set *set)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < set->n_policies; i++)
		n += set->policies[i].n_rules;
	return n;
}

static unsigned int set_default_count(const struct loupe_policy_set *set)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < set->n_policies; i++)
		n += set->policies[i].default_action != LOUPE_POLICY_ACTION_NONE;
	return n;
}

static unsigned int set_rewrite_count(const struct loupe_policy_set *set)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < set->n_policies; i++)
		n += set->policies[i].n_rewrites;
	return n;
}

/* Pod labels are not known yet: a selector with labels selects no pod (docs/policy.md). */
static bool selects_nothing(const struct loupe_policy *p)
{
	return p->selector.n_labels > 0;
}

/*
 * Walks the policies of a sorted set with their bits: rules numbered from 0 in order, then
 * the defaults from the rule count on, then the rewrites after the defaults. @default_bit is
 * -1 for a policy without one.
 */
struct bit_walk {
	unsigned int policy;
	unsigned int first_rule_bit;
	int default_bit;
	unsigned int first_rewrite_bit;
	unsigned int next_rule_bit, next_default_bit, next_rewrite_bit;
};

static void bit_walk_start(struct bit_walk *w, const struct loupe_policy_set *set)
{
	memset(w, 0, sizeof(*w));
	w->policy = (unsigned int)-1; /* the first bit_walk_next() moves to policy 0 */
	w->next_default_bit = set_rule_count(set);
	w->next_rewrite_bit = w->next_default_bit + set_default_count(set);
}

static bool bit_walk_next(struct bit_walk *w, const struct loupe_policy_set *set)
{
	const struct loupe_policy *p;

	if (++w->policy >= set->n_policies)
		return false;
	p = &set->policies[w->policy];
	w->first_rule_bit = w->next_rule_bit;
	w->next_rule_bit += p->n_rules;
	w->first_rewrite_bit = w->next_rewrite_bit;
	w->next_rewrite_bit += p->n_rewrites;
	w->default_bit = -1;
	if (p->default_action != LOUPE_POLICY_ACTION_NONE)
		w->default_bit = (int)w->next_default_bit++;
	return true;
}

/* The policy's own bits: its rules', its default's and its rewrites'. */
static void bit_walk_own_bits(const struct bit_walk *w, const struct loupe_policy *p,
			      struct loupe_policy_bits *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (unsigned int i = 0; i < p->n_rules; i++)
		loupe_policy_bit_set(ret, w->first_rule_bit + i);
	if (w->default_bit >= 0)
		loupe_policy_bit_set(ret, (unsigned int)w->default_bit);
	for (unsigned int i = 0; i < p->n_rewrites; i++)
		loupe_policy_bit_set(ret, w->first_rewrite_bit + i);
}

/* ---- entries ---------------------------------------------------------------------------- */

struct entry_vec {
	struct loupe_policy_entries e;
	size_t cap;
};

/* A zeroed entry (padding too) with @value, to fill in; NULL when out of memory. */
static struct loupe_policy_entry *entry_add(struct entry_vec *v,
					    const struct loupe_policy_bits *value)
{
	struct loupe_policy_entry *e;

	if (v->e.n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void *p = realloc(v->e.v, cap * sizeof(*v->e.v));

		if (!p)
			return NULL;
		v->e.v = p;
		v->cap = cap;
	}
	e = &v->e.v[v->e.n++];
	memset(e, 0, sizeof(*e));
	e->value = *value;
	return e;
}

static uint32_t entry_prefixlen(const struct loupe_policy_entry *e)
{
	return e->key.addr.prefixlen; /* the first field of every key */
}

static const uint8_t *entry_data(const struct loupe_policy_entry *e)
{
	return (const uint8_t *)&e->key + KEY_DATA_OFFSET;
}

/* Zeroes the key's bits past its prefix: the kernel ignores them, equality must too. */
static void entry_mask(struct loupe_policy_entry *e, size_t data_len)
{
	uint8_t *d = (uint8_t *)&e->key + KEY_DATA_OFFSET;
	uint32_t bits = entry_prefixlen(e);
	size_t full = bits / 8;

	if (full >= data_len)
		return;
	if (bits % 8)
		d[full++] &= (uint8_t)(0xff << (8 - bits % 8));
	memset(d + full, 0, data_len - full);
}

/* Key bytes, then prefixlen: an entry's covering prefixes sort before it. */
static int entry_cmp(const void *a, const void *b, void *data_len)
{
	const struct loupe_policy_entry *x = a, *y = b;
	int r = memcmp(entry_data(x), entry_data(y), *(const size_t *)data_len);

	if (r)
		return r;
	return (entry_prefixlen(x) > entry_prefixlen(y)) -
	       (entry_prefixlen(x) < entry_prefixlen(y));
}

static bool entry_covers(const struct loupe_policy_entry *outer,
			 const struct loupe_policy_entry *inner)
{
	uint32_t bits = entry_prefixlen(outer);
	const uint8_t *a = entry_data(outer), *b = entry_data(inner);
	size_t full = bits / 8;

	if (bits > entry_prefixlen(inner) || memcmp(a, b, full))
		return false;
	return bits % 8 == 0 || !((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - bits % 8)));
}

/*
 * Merges entries with the same prefix and ORs into each entry the rules of every entry that
 * covers it: sorted by key, an entry's covering prefixes are on a stack of open ancestors.
 */
static int entries_fold(struct loupe_policy_entries *es, size_t key_size)
{
	size_t data_len = key_size - KEY_DATA_OFFSET, n = 0, depth = 0, *stack;

	if (!es->n)
		return 0;
	for (size_t i = 0; i < es->n; i++)
		entry_mask(&es->v[i], data_len);
	qsort_r(es->v, es->n, sizeof(*es->v), entry_cmp, &data_len);
	for (size_t i = 0; i < es->n; i++) {
		if (n && !entry_cmp(&es->v[n - 1], &es->v[i], &data_len))
			bits_or(&es->v[n - 1].value, &es->v[i].value);
		else if (n++ != i)
			es->v[n - 1] = es->v[i];
	}
	es->n = n;

	stack = malloc(n * sizeof(*stack));
	if (!stack)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		while (depth && !entry_covers(&es->v[stack[depth - 1]], &es->v[i]))
			depth--;
		if (depth)
			bits_or(&es->v[i].value, &es->v[stack[depth - 1]].value);
		stack[depth++] = i;
	}
	free(stack);
	return 0;
}

/* ---- compiling ---------------------------------------------------------------------------- */

struct compile_ctx {
	struct loupe_policy_compiled *c;
	struct entry_vec addrs, ports, names, paths;
};

static int add_addr(struct compile_ctx *x, enum loupe_policy_addr_kind kind,
		    const struct loupe_policy_cidr *cidr, const struct loupe_policy_bits *value)
{
	struct loupe_policy_entry *e = entry_add(&x->addrs, value);

	if (!e)
		return -ENOMEM;
	e->key.addr.slot = x->c->slot;
	e->key.addr.kind = kind;
	e->key.addr.prefixlen = ADDR_PREFIX_KIND;
	if (cidr) {
		e->key.addr.prefixlen += cidr->prefix_len;
		memcpy(e->key.addr.addr, cidr->addr, sizeof(e->key.addr.addr));
	}
	return 0;
}

/* @cidrs by family into kinds @kind4/@kind6; none: every address of both families. */
static int add_addrs(struct compile_ctx *x, enum loupe_policy_addr_kind kind4,
		     enum loupe_policy_addr_kind kind6, const struct loupe_policy_cidr *cidrs,
		     unsigned int n, const struct loupe_policy_bits *value)
{
	int r = 0;

	if (!n) {
		if ((r = add_addr(x, kind4, NULL, value)))
			return r;
		return add_addr(x, kind6, NULL, value);
	}
	for (unsigned int i = 0; i < n && !r; i++)
		r = add_addr(x, cidrs[i].family == AF_INET ? kind4 : kind6, &cidrs[i], value);
	return r;
}

static int add_port(struct compile_ctx *x, uint8_t direction, uint8_t protocol, uint32_t prefixlen,
		    uint16_t port, const struct loupe_policy_bits *value)
{
	struct loupe_policy_entry *e = entry_add(&x->ports, value);

	if (!e)
		return -ENOMEM;
	e->key.port.prefixlen = prefixlen;
	e->key.port.slot = x->c->slot;
	e->key.port.direction = direction;
	e->key.port.protocol = protocol;
	e->key.port.port[0] = port >> 8;
	e->key.port.port[1] = port & 0xff;
	return 0;
}

/* @lo..@hi as the fewest prefixes over the 16-bit port: the largest aligned blocks. */
static int add_port_range(struct compile_ctx *x, uint8_t direction, uint8_t protocol, uint32_t lo,
			  uint32_t hi, const struct loupe_policy_bits *value)
{
	int r = 0;

	while (lo <= hi && !r) {
		unsigned int k = 0; /* the block is 2^k ports */

		while (k < 16 && !(lo & ((2u << k) - 1)) && lo + (2u << k) - 1 <= hi)
			k++;
		r = add_port(x, direction, protocol, PORT_PREFIX_PROTO + 16 - k, lo, value);
		lo += 1u << k;
	}
	return r;
}

/* The ports of a rule's or rewrite's @m in @direction. */
static int add_ports(struct compile_ctx *x, enum loupe_policy_direction direction,
		     const struct loupe_policy_match *m, const struct loupe_policy_bits *value)
{
	uint8_t dir =
		direction == LOUPE_POLICY_INGRESS ? LOUPE_DIR_POD_INGRESS : LOUPE_DIR_POD_EGRESS;
	int r = 0;

	if (!m->n_ports)
		return add_port(x, dir, 0, PORT_PREFIX_DIR, 0, value);
	for (unsigned int i = 0; i < m->n_ports && !r; i++) {
		const struct loupe_policy_port *p = &m->ports[i];

		switch (p->protocol) {
		case LOUPE_POLICY_ICMP:
			r = add_port(x, dir, IPPROTO_ICMP, PORT_PREFIX_PROTO, 0, value);
			if (!r)
				r = add_port(x, dir, IPPROTO_ICMPV6, PORT_PREFIX_PROTO, 0, value);
			break;
		case LOUPE_POLICY_UDP:
			r = add_port_range(x, dir, IPPROTO_UDP, p->port, p->end_port, value);
			break;
		default:
			r = add_port_range(x, dir, IPPROTO_TCP, p->port, p->end_port, value);
			break;
		}
	}
	return r;
}

size_t loupe_policy_name_key_bytes(const char *name, bool wildcard_suffix,
				   uint8_t out[LOUPE_POLICY_NAME_KEY_MAX])
{
	size_t len = strlen(name), n = 0;

	/* lower-cased here too, so that a name as read off the wire gives the datapath's key */
	while (len && n < LOUPE_POLICY_NAME_KEY_MAX)
		out[n++] = (uint8_t)tolower((unsigned char)name[--len]);
	if (n < LOUPE_POLICY_NAME_KEY_MAX)
		out[n++] = wildcard_suffix ? '.' : '\0';
	return n;
}

static int add_name(struct compile_ctx *x, enum loupe_policy_name_kind kind,
		    const struct loupe_policy_name *name, const struct loupe_policy_bits *value)
{
	struct loupe_policy_entry *e = entry_add(&x->names, value);
	size_t n = 0;

	if (!e)
		return -ENOMEM;
	e->key.name.slot = x->c->slot;
	e->key.name.kind = kind;
	if (name) {
		/* a wildcard keeps its "*." in the parsed set; the key holds the suffix */
		n = loupe_policy_name_key_bytes(name->wildcard ? name->name + 2 : name->name,
						name->wildcard, e->key.name.name);
		e->key.name.port[0] = name->port >> 8;
		e->key.name.port[1] = name->port & 0xff;
	}
	e->key.name.prefixlen = NAME_PREFIX_KIND + 8 * n;
	return 0;
}

/* Host names with a port are their own kind; none: every name of @kind (port 0). */
static int add_names(struct compile_ctx *x, enum loupe_policy_name_kind kind,
		     const struct loupe_policy_names *names, const struct loupe_policy_bits *value)
{
	int r = 0;

	if (!names->n)
		return add_name(x, kind, NULL, value);
	for (unsigned int i = 0; i < names->n && !r; i++) {
		const struct loupe_policy_name *name = &names->v[i];

		r = add_name(x, name->port ? LOUPE_POL_NAME_HOST_PORT : kind, name, value);
	}
	return r;
}

static int add_path(struct compile_ctx *x, const char *path, const struct loupe_policy_bits *value)
{
	struct loupe_policy_entry *e = entry_add(&x->paths, value);
	size_t n = path ? strlen(path) : 0;

	if (!e)
		return -ENOMEM;
	if (n > LOUPE_POLICY_PATH_KEY_MAX)
		n = LOUPE_POLICY_PATH_KEY_MAX;
	e->key.path.slot = x->c->slot;
	if (n)
		memcpy(e->key.path.path, path, n);
	e->key.path.prefixlen = PATH_PREFIX_SLOT + 8 * n;
	return 0;
}

static int add_http(struct compile_ctx *x, const struct loupe_policy_match *m, unsigned int bit,
		    const struct loupe_policy_bits *value)
{
	int r = 0;

	for (unsigned int i = 0; i < LOUPE_POLICY_METHODS; i++)
		if (!m->http.methods || m->http.methods & (1u << i))
			loupe_policy_bit_set(&x->c->methods[i], bit);
	if (!m->http.n_paths)
		r = add_path(x, NULL, value);
	for (unsigned int i = 0; i < m->http.n_paths && !r; i++)
		r = add_path(x, m->http.paths[i], value);
	if (r)
		return r;
	return add_names(x, LOUPE_POL_NAME_HOST, &m->http.hosts, value);
}

static int add_rule(struct compile_ctx *x, const struct loupe_policy_rule *rule, unsigned int bit)
{
	const struct loupe_policy_match *m = &rule->match;
	struct loupe_policy_bits value = { 0 };
	int r;

	loupe_policy_bit_set(&value, bit);
	if ((r = add_addrs(x, LOUPE_POL_ADDR_PEER4, LOUPE_POL_ADDR_PEER6, m->cidrs, m->n_cidrs,
			   &value)) ||
	    (r = add_ports(x, rule->direction, m, &value)))
		return r;
	switch (m->l7) {
	case LOUPE_POLICY_L7_NONE:
		loupe_policy_bit_set(&x->c->meta.l4_only, bit);
		return 0;
	case LOUPE_POLICY_L7_HTTP:
		return add_http(x, m, bit, &value);
	case LOUPE_POLICY_L7_TLS:
		return add_names(x, LOUPE_POL_NAME_SNI, &m->tls_sni, &value);
	case LOUPE_POLICY_L7_DNS:
		return add_names(x, LOUPE_POL_NAME_DNS, &m->dns_names, &value);
	}
	return -EINVAL;
}

/* A default is a rule that fits every flow of both directions, judged on the first packet. */
static int add_default(struct compile_ctx *x, unsigned int bit)
{
	struct loupe_policy_bits value = { 0 };
	int r;

	loupe_policy_bit_set(&value, bit);
	loupe_policy_bit_set(&x->c->meta.l4_only, bit);
	if ((r = add_addrs(x, LOUPE_POL_ADDR_PEER4, LOUPE_POL_ADDR_PEER6, NULL, 0, &value)) ||
	    (r = add_port(x, LOUPE_DIR_POD_EGRESS, 0, PORT_PREFIX_DIR, 0, &value)))
		return r;
	return add_port(x, LOUPE_DIR_POD_INGRESS, 0, PORT_PREFIX_DIR, 0, &value);
}

/*
 * A rewrite is found by the same lookups as a rule without L7: its peer addresses and ports.
 * It is kept out of l4_only: the judge's first-packet answer is rules only, and the rewrite
 * is picked among the bits from rewrite_base on.
 */
static int add_rewrite(struct compile_ctx *x, const struct loupe_policy_rewrite *rw,
		       unsigned int bit)
{
	const struct loupe_policy_match *m = &rw->match;
	struct loupe_policy_bits value = { 0 };
	int r;

	loupe_policy_bit_set(&value, bit);
	if ((r = add_addrs(x, LOUPE_POL_ADDR_PEER4, LOUPE_POL_ADDR_PEER6, m->cidrs, m->n_cidrs,
			   &value)))
		return r;
	return add_ports(x, rw->direction, m, &value);
}

static int add_policy(struct compile_ctx *x, const struct loupe_policy *p, const struct bit_walk *w)
{
	const struct loupe_policy_selector *sel = &p->selector;
	struct loupe_policy_bits own;
	int r = 0;

	if (selects_nothing(p))
		return 0;
	if (p->n_rate_limits)
		x->c->meta.flags |= LOUPE_POL_HAS_RATE_LIMITS;
	/* limits alone take no bits (they are resolved per pod interface): no entries */
	if (!p->n_rules && w->default_bit < 0 && !p->n_rewrites)
		return 0;
	bit_walk_own_bits(w, p, &own);
	if (!sel->n_interfaces)
		bits_or(&x->c->meta.any_iface, &own);
	r = add_addrs(x, LOUPE_POL_ADDR_POD4, LOUPE_POL_ADDR_POD6, sel->cidrs, sel->n_cidrs, &own);
	for (unsigned int i = 0; i < p->n_rules && !r; i++)
		r = add_rule(x, &p->rules[i], w->first_rule_bit + i);
	if (!r && w->default_bit >= 0)
		r = add_default(x, (unsigned int)w->default_bit);
	for (unsigned int i = 0; i < p->n_rewrites && !r; i++)
		r = add_rewrite(x, &p->rewrites[i], w->first_rewrite_bit + i);
	return r;
}

static uint8_t verdict_of(enum loupe_policy_action a)
{
	switch (a) {
	case LOUPE_POLICY_ACTION_DENY:
		return LOUPE_VERDICT_DENY;
	case LOUPE_POLICY_ACTION_AUDIT:
		return LOUPE_VERDICT_AUDIT;
	default:
		return LOUPE_VERDICT_ALLOW;
	}
}

static void name_bits(struct loupe_policy_compiled *c)
{
	const struct loupe_policy_set *set = c->set;
	struct bit_walk w;

	bit_walk_start(&w, set);
	while (bit_walk_next(&w, set)) {
		const struct loupe_policy *p = &set->policies[w.policy];

		for (unsigned int i = 0; i < p->n_rules; i++) {
			struct loupe_policy_bit_info *b = &c->bits[w.first_rule_bit + i];

			*b = (struct loupe_policy_bit_info){ .policy = p->name,
							     .rule = p->rules[i].name,
							     .action = p->rules[i].action };
		}
		if (w.default_bit >= 0)
			c->bits[w.default_bit] = (struct loupe_policy_bit_info){
				.policy = p->name,
				.rule = "",
				.action = p->default_action,
				.is_default = true,
				.kind = LOUPE_POLICY_BIT_DEFAULT,
			};
		for (unsigned int i = 0; i < p->n_rewrites; i++)
			c->bits[w.first_rewrite_bit + i] = (struct loupe_policy_bit_info){
				.policy = p->name,
				.rule = p->rewrites[i].name,
				.action = LOUPE_POLICY_ACTION_NONE,
				.kind = LOUPE_POLICY_BIT_REWRITE,
			};
	}
	/* a rewrite's action stays 0: it is no verdict */
	for (unsigned int i = 0; i < c->meta.n_rule_bits; i++)
		c->meta.action[i] = verdict_of(c->bits[i].action);
}

uint64_t loupe_policy_mask_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64: offset basis, then per byte */

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)tolower((unsigned char)name[i]);
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The datapath's form of a rewrite entry. */
static void rewrite_compile(const struct loupe_policy_rewrite *rw, struct loupe_rewrite *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->actions = rw->actions;
	if (rw->actions & LOUPE_POLICY_RW_MAP) {
		ret->map_ipv6 = rw->map_to.family == AF_INET6;
		memcpy(ret->map_addr, rw->map_to.addr, ret->map_ipv6 ? 16 : 4);
		ret->map_port = rw->map_to.port;
	}
	if (rw->actions & LOUPE_POLICY_RW_DSCP)
		ret->dscp = rw->dscp;
	if (rw->actions & LOUPE_POLICY_RW_VLAN_PUSH)
		ret->vlan_id = rw->vlan_id;
	for (unsigned int i = 0; i < rw->n_mask_headers && i < LOUPE_MASK_HEADERS_MAX; i++) {
		size_t len = strlen(rw->mask_headers[i]);

		ret->mask_hash[i] = loupe_policy_mask_hash(rw->mask_headers[i], len);
		ret->mask_len[i] = (uint8_t)len;
		ret->n_mask++;
	}
}

/* loupe_pol_rewrites' entries in bit order, and LOUPE_POL_HAS_MAPPINGS. */
static void rewrites_compile(struct loupe_policy_compiled *c)
{
	const struct loupe_policy_set *set = c->set;
	struct bit_walk w;

	bit_walk_start(&w, set);
	while (bit_walk_next(&w, set)) {
		const struct loupe_policy *p = &set->policies[w.policy];

		for (unsigned int i = 0; i < p->n_rewrites; i++) {
			unsigned int k = w.first_rewrite_bit + i - c->meta.rewrite_base;

			rewrite_compile(&p->rewrites[i], &c->rewrites[k]);
			c->rewrite_src[k] = &p->rewrites[i];
			if (p->rewrites[i].actions & LOUPE_POLICY_RW_MAP && !selects_nothing(p))
				c->meta.flags |= LOUPE_POL_HAS_MAPPINGS;
		}
	}
}

/* Both slots live in a map at once during an apply: a set may fill half of it. */
static int check_capacity(const struct loupe_policy_entries *es, const char *map, const char *what,
			  size_t capacity, struct loupe_policy_error *ret_err)
{
	if (es->n <= capacity / 2)
		return 0;
	loupe_policy_error_setf(
		ret_err,
		"the set needs %zu entries of %s (%s); the datapath holds at most %zu for a set",
		es->n, map, what, capacity / 2);
	return -EINVAL;
}

int loupe_policy_compile(const struct loupe_policy_set *set, uint8_t slot, uint32_t generation,
			 struct loupe_policy_compiled **ret, struct loupe_policy_error *ret_err)
{
	struct compile_ctx x = { 0 };
	struct loupe_policy_compiled *c;
	unsigned int n_rule_bits = set_rule_count(set) + set_default_count(set);
	unsigned int n_rewrites = set_rewrite_count(set), n_bits = n_rule_bits + n_rewrites;
	struct bit_walk w;
	int r;

	if (n_rewrites > LOUPE_REWRITES_MAX) {
		loupe_policy_error_setf(ret_err,
					"the set has %u rewrites; the datapath holds at most %u",
					n_rewrites, LOUPE_REWRITES_MAX);
		return -EINVAL;
	}
	if (n_bits > LOUPE_POLICY_BITS) {
		loupe_policy_error_setf(
			ret_err,
			"the set has %u rules, default actions and rewrites; the datapath holds "
			"at most %u",
			n_bits, LOUPE_POLICY_BITS);
		return -EINVAL;
	}

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	x.c = c;
	c->slot = slot;
	c->meta.generation = generation;
	c->meta.n_bits = n_bits;
	c->meta.n_rule_bits = n_rule_bits;
	c->meta.rewrite_base = n_rule_bits;
	c->meta.n_rewrites = n_rewrites;
	r = -ENOMEM;
	c->set = set_copy(set);
	if (!c->set || (n_bits && !(c->bits = calloc(n_bits, sizeof(*c->bits)))) ||
	    (n_rewrites && (!(c->rewrites = calloc(n_rewrites, sizeof(*c->rewrites))) ||
			    !(c->rewrite_src = calloc(n_rewrites, sizeof(*c->rewrite_src))))))
		goto fail;
	loupe_policy_set_sort(c->set);
	name_bits(c);
	rewrites_compile(c);

	bit_walk_start(&w, c->set);
	while (bit_walk_next(&w, c->set))
		if ((r = add_policy(&x, &c->set->policies[w.policy], &w)))
			goto fail;

	c->addrs = x.addrs.e;
	c->ports = x.ports.e;
	c->names = x.names.e;
	c->paths = x.paths.e;
	x.addrs.e.v = x.ports.e.v = x.names.e.v = x.paths.e.v = NULL;
	if ((r = entries_fold(&c->addrs, sizeof(struct loupe_policy_addr_key))) ||
	    (r = entries_fold(&c->ports, sizeof(struct loupe_policy_port_key))) ||
	    (r = entries_fold(&c->names, sizeof(struct loupe_policy_name_key))) ||
	    (r = entries_fold(&c->paths, sizeof(struct loupe_policy_path_key))))
		goto fail;
	if ((r = check_capacity(&c->addrs, "loupe_pol_addrs", "pod and peer addresses",
				LOUPE_POL_ADDRS_MAX, ret_err)) ||
	    (r = check_capacity(&c->ports, "loupe_pol_ports", "protocols and port prefixes",
				LOUPE_POL_PORTS_MAX, ret_err)) ||
	    (r = check_capacity(&c->names, "loupe_pol_names", "host, SNI and DNS names",
				LOUPE_POL_NAMES_MAX, ret_err)) ||
	    (r = check_capacity(&c->paths, "loupe_pol_paths", "HTTP path prefixes",
				LOUPE_POL_PATHS_MAX, ret_err)))
		goto fail;
	*ret = c;
	return 0;

fail:
	free(x.addrs.e.v);
	free(x.ports.e.v);
	free(x.names.e.v);
	free(x.paths.e.v);
	loupe_policy_compiled_free(c);
	return r;
}

struct loupe_policy_compiled *loupe_policy_compiled_free(struct loupe_policy_compiled *c)
{
	if (!c)
		return NULL;
	free(c->addrs.v);
	free(c->ports.v);
	free(c->names.v);
	free(c->paths.v);
	free(c->bits);
	free(c->rewrites);
	free(c->rewrite_src);
	loupe_policy_set_free(c->set);
	free(c);
	return NULL;
}

bool loupe_policy_compiled_iface_bits(const struct loupe_policy_compiled *c, const char *ifname,
				      struct loupe_policy_bits *ret)
{
	const struct loupe_policy_set *set = c->set;
	struct bit_walk w;

	*ret = c->meta.any_iface;
	bit_walk_start(&w, set);
	while (bit_walk_next(&w, set)) {
		const struct loupe_policy *p = &set->policies[w.policy];
		struct loupe_policy_bits own;

		if (selects_nothing(p))
			continue;
		for (unsigned int i = 0; i < p->selector.n_interfaces; i++) {
			if (!fnmatch(p->selector.interfaces[i], ifname, 0)) {
				bit_walk_own_bits(&w, p, &own);
				bits_or(ret, &own);
				break;
			}
		}
	}
	return memcmp(ret, &c->meta.any_iface, sizeof(*ret)) != 0;
}

/* Whether @addr (IPv4-mapped for IPv4) is in @cidr. */
static bool cidr_has(const struct loupe_policy_cidr *cidr, const uint8_t addr[16])
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	bool v4 = !memcmp(addr, v4mapped, sizeof(v4mapped));
	const uint8_t *a = v4 ? addr + 12 : addr;
	unsigned int full = cidr->prefix_len / 8, rest = cidr->prefix_len % 8;

	if (v4 != (cidr->family == AF_INET) || memcmp(a, cidr->addr, full))
		return false;
	return !rest || !((a[full] ^ cidr->addr[full]) & (uint8_t)(0xff << (8 - rest)));
}

/* Whether @p selects the pod on @ifname with @addrs; unknown ones select by nothing. */
static bool selects_pod(const struct loupe_policy *p, const char *ifname,
			const uint8_t (*addrs)[16], size_t n_addrs)
{
	const struct loupe_policy_selector *sel = &p->selector;
	unsigned int i;
	size_t k;

	if (selects_nothing(p))
		return false;
	for (i = 0; i < sel->n_interfaces; i++)
		if (ifname && !fnmatch(sel->interfaces[i], ifname, 0))
			break;
	if (sel->n_interfaces && i == sel->n_interfaces)
		return false;
	if (!sel->n_cidrs)
		return true;
	for (k = 0; addrs && k < n_addrs; k++)
		for (i = 0; i < sel->n_cidrs; i++)
			if (cidr_has(&sel->cidrs[i], addrs[k]))
				return true;
	return false;
}

bool loupe_policy_compiled_rate(const struct loupe_policy_compiled *c, const char *ifname,
				const uint8_t (*addrs)[16], size_t n_addrs,
				enum loupe_policy_direction direction,
				struct loupe_policy_rate_limit *ret)
{
	const struct loupe_policy_set *set = c->set;

	/* sorted: the first policy with a limit for the direction that selects the pod wins */
	for (unsigned int i = 0; i < set->n_policies; i++) {
		const struct loupe_policy *p = &set->policies[i];

		for (unsigned int k = 0; k < p->n_rate_limits; k++) {
			if (p->rate_limits[k].direction != direction)
				continue;
			if (!selects_pod(p, ifname, addrs, n_addrs))
				break;
			*ret = p->rate_limits[k];
			return true;
		}
	}
	return false;
}
