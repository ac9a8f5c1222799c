/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy enforcement: judges a flow against the set in force (loupe/datapath.h, "Policies in
 * the datapath"), on its first packet when rules without L7 decide, else on the packet that
 * completes its request line and headers, ClientHello or query. Holds nothing back: segments
 * of a request that cannot complete it pass, the one that completes it waits for the verdict
 * (it is judged in place), a segment out of order while a request is held is dropped for the
 * client to send again in order. Not for the parsing (l7_*.h) or the flow table (flow.h).
 */
#ifndef LOUPE_BPF_POLICY_H
#define LOUPE_BPF_POLICY_H

#include "lib/l7_report.h"

/* What the judge knows of the flow's L7 (argument of loupe_policy_judge). */
enum loupe_judge_l7 {
	LOUPE_JUDGE_FIRST = 0, /* the flow's first packet: L7 unknown, may leave it pending */
	LOUPE_JUDGE_NO_L7 = 1, /* the request is not HTTP, TLS or DNS: L7 rules do not fit */
	LOUPE_JUDGE_HTTP = 2,  /* s->ev.http holds the request */
	LOUPE_JUDGE_TLS = 3,   /* s->ev.tls holds the ClientHello */
	LOUPE_JUDGE_DNS = 4,   /* s->ev.dns holds the query */
	LOUPE_JUDGE_BOUND = 5, /* no verdict within LOUPE_POLICY_HOLD_MAX bytes: denied */
};

/*
 * The judge's answer, packed in an int: the verdict in the low byte (LOUPE_VERDICT_PENDING:
 * not decided yet), the deciding bit above, and what the caller does with the packet and
 * the flow.
 */
#define LOUPE_JUDGED_VERDICT(r)	   ((r)&0x7)
#define LOUPE_JUDGED_DROP	   (1 << 3) /* drop this packet (the flow's verdict aside) */
#define LOUPE_JUDGED_HELD_SET	   (1 << 4) /* a request is being held: flow state L7_HELD */
#define LOUPE_JUDGED_HELD_CLEAR	   (1 << 5)
#define LOUPE_JUDGED_TLS_SEEN	   (1 << 6) /* a ClientHello went by: the rest is ciphertext */
#define LOUPE_JUDGED_BIT(r)	   (((__u32)(r) >> 16) & 0xffff)
#define LOUPE_JUDGED(verdict, bit) ((verdict) | ((__u32)(bit) << 16))

/*
 * Bitmap loops run over the words a set uses (s->pol.n_words, from meta.n_bits), not over
 * all LOUPE_POLICY_WORDS: a set of 50 rules costs one word. They are global functions: the
 * verifier checks each loop once, not once for every state a caller reaches it in.
 */
__noinline int loupe_bits_and(struct loupe_policy_bits *dst, const struct loupe_policy_bits *src,
			      __u32 n)
{
	if (!dst || !src)
		return 0;
	for (int i = 0; i < LOUPE_POLICY_WORDS; i++) {
		if (i >= n)
			break;
		dst->w[i] &= src->w[i];
	}
	return 0;
}

/* Index of the lowest set bit of a non-zero word: BPF has no count-trailing-zeros. */
static __always_inline __u32 loupe_lowest_bit(__u64 w)
{
	__u32 n = 0;

	w &= -w;
	if (w & 0xffffffff00000000ULL)
		n += 32;
	if (w & 0xffff0000ffff0000ULL)
		n += 16;
	if (w & 0xff00ff00ff00ff00ULL)
		n += 8;
	if (w & 0xf0f0f0f0f0f0f0f0ULL)
		n += 4;
	if (w & 0xccccccccccccccccULL)
		n += 2;
	if (w & 0xaaaaaaaaaaaaaaaaULL)
		n += 1;
	return n;
}

/*
 * s->pol.cand = @a & @b & @c & @d over the set's words (s->pol.n_words), in one pass.
 * @first_only: stop after the first word that is not zero (cand is then cut there), for a
 * judge that needs nothing but the first bit. Returns the words written.
 */
__noinline __u32 loupe_bits_and4(const struct loupe_policy_bits *a,
				 const struct loupe_policy_bits *b,
				 const struct loupe_policy_bits *c,
				 const struct loupe_policy_bits *d, int first_only)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 n;
	int i;

	if (!s || !a || !b || !c || !d)
		return 0;
	n = s->pol.n_words;
	for (i = 0; i < LOUPE_POLICY_WORDS; i++) {
		__u64 w;

		if (i >= n)
			break;
		w = a->w[i] & b->w[i] & c->w[i] & d->w[i];
		s->pol.cand.w[i] = w;
		if (w && first_only)
			return i + 1;
	}
	return i;
}

/*
 * The first rule of s->pol.cand that is decided without L7 (@l4_only) or is an L7 rule
 * the request fits: @m & @p & (@h | @hp) (HTTP: its method's, its path's, its Host's with
 * any port and with its port; TLS and DNS: the name's, given four times). One pass.
 */
__noinline __u32 loupe_bits_first_l7(const struct loupe_policy_bits *m,
				     const struct loupe_policy_bits *p,
				     const struct loupe_policy_bits *h,
				     const struct loupe_policy_bits *hp,
				     const struct loupe_policy_bits *l4_only)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 n;

	if (!s || !m || !p || !h || !hp || !l4_only)
		return LOUPE_POLICY_BIT_NONE;
	n = s->pol.n_words;
	for (int i = 0; i < LOUPE_POLICY_WORDS; i++) {
		__u64 w;

		if (i >= n)
			break;
		w = s->pol.cand.w[i] & (l4_only->w[i] | (m->w[i] & p->w[i] & (h->w[i] | hp->w[i])));
		if (w)
			return i * 64 + loupe_lowest_bit(w);
	}
	return LOUPE_POLICY_BIT_NONE;
}

/* The first rule in @b, or LOUPE_POLICY_BIT_NONE. */
__noinline __u32 loupe_bits_first(const struct loupe_policy_bits *b, __u32 n)
{
	if (!b)
		return LOUPE_POLICY_BIT_NONE;
	for (int i = 0; i < LOUPE_POLICY_WORDS; i++) {
		if (i >= n)
			break;
		if (b->w[i])
			return i * 64 + loupe_lowest_bit(b->w[i]);
	}
	return LOUPE_POLICY_BIT_NONE;
}

/* The first bit at or after @from in @b (LOUPE_POLICY_BIT_NONE when none). */
__noinline __u32 loupe_bits_first_from(const struct loupe_policy_bits *b, __u32 from, __u32 n)
{
	__u32 first = from / 64;
	__u64 word;

	if (!b)
		return LOUPE_POLICY_BIT_NONE;
	for (__u32 k = 0; k < LOUPE_POLICY_WORDS; k++) {
		__u32 i = first + k;

		if (i >= n || i >= LOUPE_POLICY_WORDS)
			break;
		LOUPE_BARRIER_VAR(i); /* an index per word, not a pointer clang walks */
		word = b->w[i & (LOUPE_POLICY_WORDS - 1)];
		if (k == 0)
			word &= ~0ULL << (from & 63);
		if (word)
			return i * 64 + loupe_lowest_bit(word);
	}
	return LOUPE_POLICY_BIT_NONE;
}

static __always_inline bool loupe_bits_test(const struct loupe_policy_bits *b, __u32 bit)
{
	bit &= LOUPE_POLICY_BITS - 1;
	return (b->w[bit / 64] >> (bit % 64)) & 1;
}

/* Each byte of @v from 'A' to 'Z' in lower case (bytes at or above 0x80 are left alone). */
static __always_inline __u64 loupe_lower_word(__u64 v)
{
	__u64 low7 = v & 0x7f7f7f7f7f7f7f7fULL;
	__u64 from_a = low7 + LOUPE_LANES(0x80 - 'A');
	__u64 past_z = low7 + LOUPE_LANES(0x80 - 'Z' - 1);

	return v | ((from_a & ~past_z & ~v & LOUPE_HIGHS) >> 2);
}

/* Which name of s->ev a lookup is for. */
enum loupe_policy_name_src {
	LOUPE_NAME_SRC_HTTP_HOST,
	LOUPE_NAME_SRC_TLS_SNI,
	LOUPE_NAME_SRC_DNS_QNAME,
};

/*
 * Builds in s->pol.name_key the loupe_pol_names key of the name @src of s->ev (its first @len
 * bytes: a Host without its port) as @kind (with @port for HOST_PORT). The key is the name
 * reversed, in lower case, one trailing dot dropped, a
 * NUL after it, cut at LOUPE_POLICY_NAME_KEY_MAX bytes: the compiler builds its keys the same
 * way (loupe_policy_name_key_bytes()). A global function: the verifier checks it once.
 */
__noinline int loupe_policy_name_key(int src, __u32 len, int kind, __u32 port)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_policy_work *w;
	const char *name;
	__u32 j, off;

	if (!s)
		return 0;
	w = &s->pol;
	if (src == LOUPE_NAME_SRC_HTTP_HOST)
		name = &s->ev.http.strings[(s->ev.http.path_len & (LOUPE_HTTP_PATH_MAX - 1)) + 1];
	else if (src == LOUPE_NAME_SRC_TLS_SNI)
		name = s->ev.tls.sni;
	else
		name = s->ev.dns.qname;
	len &= LOUPE_HTTP_HOST_MAX - 1;
	if (len > 0 && name[len - 1] == '.')
		len--;

	/* the name after 8 zero bytes: reversing word by word then reads zeros before it */
	*(__u64 *)&w->name_stage[0] = 0;
	for (j = 0; j < LOUPE_HTTP_HOST_MAX / 8; j++) {
		if (j * 8 >= len)
			break;
		*(__u64 *)&w->name_stage[8 + j * 8] = *(const __u64 *)&name[j * 8];
	}
	w->name_key.prefixlen = 32 + 8 * LOUPE_POLICY_NAME_KEY_MAX;
	w->name_key.slot = w->iface_key.slot;
	w->name_key.kind = kind;
	w->name_key.port[0] = port >> 8;
	w->name_key.port[1] = port & 0xff;
	/* key bytes 8j..8j+7 are name bytes len-1-8j down to len-8-8j: one byte swap */
	for (j = 0; j < LOUPE_HTTP_HOST_MAX / 8; j++) {
		__u64 word = 0;

		if (j * 8 < len) {
			off = (len - j * 8) & (LOUPE_HTTP_HOST_MAX - 1);
			word = loupe_lower_word(__builtin_bswap64(*(__u64 *)&w->name_stage[off]));
		}
		*(__u64 *)&w->name_key.name[j * 8] = word;
	}
	return 1;
}

/* Index of the standard method in the NUL-padded method bytes; -1 for none. */
static __always_inline int loupe_policy_method_index(const char *method)
{
	__u64 m = *(const __u64 *)method;

	switch (m) {
	case LOUPE_STR4('G', 'E', 'T', 0):
		return 0;
	case LOUPE_STR4('H', 'E', 'A', 'D'):
		return 1;
	case LOUPE_STR4('P', 'O', 'S', 'T'):
		return 2;
	case LOUPE_STR4('P', 'U', 'T', 0):
		return 3;
	case LOUPE_STR4('D', 'E', 'L', 'E') | ((__u64)LOUPE_STR4('T', 'E', 0, 0) << 32):
		return 4;
	case LOUPE_STR4('C', 'O', 'N', 'N') | ((__u64)LOUPE_STR4('E', 'C', 'T', 0) << 32):
		return 5;
	case LOUPE_STR4('O', 'P', 'T', 'I') | ((__u64)LOUPE_STR4('O', 'N', 'S', 0) << 32):
		return 6;
	case LOUPE_STR4('T', 'R', 'A', 'C') | ((__u64)LOUPE_STR4('E', 0, 0, 0) << 32):
		return 7;
	case LOUPE_STR4('P', 'A', 'T', 'C') | ((__u64)LOUPE_STR4('H', 0, 0, 0) << 32):
		return 8;
	default:
		return -1;
	}
}

/*
 * The keys of the request in s->ev.http: its method's index in loupe_pol_methods
 * (s->pol.method_idx), its path's key (s->pol.path_key), its Host split into name and port
 * (s->pol.host_name_len, host_port). Returns 0 when the method is not a standard one.
 */
__noinline int loupe_policy_http_rules(int slot)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_policy_work *w;
	struct loupe_event_http *http;
	__u32 path_len, host_len, name_len, port = 0, mult = 1, j;
	bool colon = false;
	const char *host;
	int m;

	if (!s)
		return 0;
	w = &s->pol;
	http = &s->ev.http;
	m = loupe_policy_method_index(http->method);
	if (m < 0)
		return 0;
	w->method_idx = (slot & 1) * LOUPE_POLICY_METHODS + m;

	/* the path: byte prefixes */
	path_len = http->path_len & (LOUPE_HTTP_PATH_MAX - 1);
	w->path_key.prefixlen = 8 + 8 * path_len;
	w->path_key.slot = slot;
	for (j = 0; j < LOUPE_HTTP_PATH_MAX / 8; j++)
		*(__u64 *)&w->path_key.path[j * 8] = *(const __u64 *)&http->strings[j * 8];

	/* the Host: "name" or "name:port"; an IPv6 literal ("[::1]:80") is no name */
	host_len = http->host_len & (LOUPE_HTTP_HOST_MAX - 1);
	host = &http->strings[path_len + 1];
	name_len = host_len;
	for (j = 0; j < 6; j++) {
		__u8 c;

		if (j >= host_len)
			break;
		c = host[(host_len - 1 - j) & (LOUPE_HTTP_HOST_MAX - 1)];
		if (c == ':') {
			colon = j > 0 && j + 1 < host_len;
			break;
		}
		if (c < '0' || c > '9')
			break;
		port += (c - '0') * mult;
		mult *= 10;
	}
	if (colon && port && port <= 0xffff)
		name_len = host_len - 1 - j;
	else
		port = 0;
	w->host_name_len = name_len;
	w->host_port = port;
	return 1;
}

/* Copies the name the verdict was reached on into the verdict event. */
static __always_inline void loupe_policy_subject(struct loupe_scratch *s, int l7)
{
	struct loupe_event_verdict *ev = &s->pol.ev;
	const char *src;
	__u32 len, j;

	ev->subject_kind = LOUPE_VERDICT_SUBJECT_NONE;
	ev->subject_len = 0;
	ev->subject[0] = 0;
	if (l7 == LOUPE_JUDGE_HTTP) {
		len = s->ev.http.host_len;
		src = &s->ev.http.strings[(s->ev.http.path_len & (LOUPE_HTTP_PATH_MAX - 1)) + 1];
		ev->subject_kind = LOUPE_VERDICT_SUBJECT_HTTP_HOST;
	} else if (l7 == LOUPE_JUDGE_TLS) {
		len = s->ev.tls.sni_len;
		src = s->ev.tls.sni;
		ev->subject_kind = LOUPE_VERDICT_SUBJECT_TLS_SNI;
	} else if (l7 == LOUPE_JUDGE_DNS) {
		len = s->ev.dns.qname_len;
		src = s->ev.dns.qname;
		ev->subject_kind = LOUPE_VERDICT_SUBJECT_DNS_NAME;
	} else {
		return;
	}
	len &= LOUPE_HTTP_HOST_MAX - 1;
	for (j = 0; j < LOUPE_HTTP_HOST_MAX / 8; j++) {
		if (j * 8 > len)
			break;
		*(__u64 *)&ev->subject[j * 8] = *(const __u64 *)&src[j * 8];
	}
	ev->subject[len] = 0;
	ev->subject_len = len;
}

/* Sends the POLICY_VERDICT of @judged (LOUPE_JUDGED(action, bit)) for the packet in s->pkt. */
__noinline int loupe_policy_report(struct __sk_buff *skb, int dir, int l7, int judged, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	const struct loupe_policy_meta *meta;
	struct loupe_event_verdict *ev;
	__u32 zero = 0, slot, *active;

	if (!s || !skb)
		return 0;
	active = bpf_map_lookup_elem(&loupe_pol_active, &zero);
	if (!active)
		return 0;
	slot = *active & 1;
	meta = bpf_map_lookup_elem(&loupe_pol_meta, &slot);
	if (!meta)
		return 0;
	ev = &s->pol.ev;
	loupe_event_hdr_fill(&ev->hdr, skb, &s->pkt, LOUPE_EV_POLICY_VERDICT, dir, now);
	ev->generation = meta->generation;
	ev->bit = LOUPE_JUDGED_BIT(judged);
	ev->action = LOUPE_JUDGED_VERDICT(judged);
	ev->reason = l7 == LOUPE_JUDGE_BOUND ? LOUPE_VERDICT_BOUND_EXCEEDED : LOUPE_VERDICT_RULE;
	ev->origin = dir;
	loupe_policy_subject(s, l7);
	loupe_event_submit(loupe_counters_get(), ev,
			   loupe_record_size(offsetof(struct loupe_event_verdict, subject),
					     ev->subject_len, sizeof(*ev)),
			   LOUPE_EV_POLICY_VERDICT);
	return 0;
}

/*
 * Judges the flow of the packet in s->pkt, seen in direction @dir, the direction of the
 * packet that opened it (@dir is the flow's origin: the judge is only asked on the client's
 * packets). Reports the verdict (POLICY_VERDICT) and counts the rule's hit when it decides.
 * Returns LOUPE_JUDGED(verdict, bit); LOUPE_VERDICT_PENDING when a rule that needs L7
 * comes first and @l7 is LOUPE_JUDGE_FIRST; LOUPE_VERDICT_NONE when no policy or no rule
 * fits.
 */
__noinline int loupe_policy_judge(struct __sk_buff *skb, int dir, int l7, __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_policy_work *w;
	const struct loupe_policy_bits *iface_rules, *pod_rules, *peer_rules, *port_rules;
	const struct loupe_policy_meta *meta;
	const struct loupe_pkt *pkt;
	__u32 zero = 0, slot, bit, idx;
	bool egress = dir == LOUPE_DIR_POD_EGRESS;
	int first_only;
	__u16 server_port;
	__u32 *active;
	__u64 *hits;
	__u8 action;

	if (!s || !skb)
		return LOUPE_VERDICT_NONE;
	w = &s->pol;
	pkt = &s->pkt;
	w->rewrite = 0;
	w->flags = 0;
	active = bpf_map_lookup_elem(&loupe_pol_active, &zero);
	if (!active)
		return LOUPE_VERDICT_NONE;
	slot = *active & 1;
	meta = bpf_map_lookup_elem(&loupe_pol_meta, &slot);
	if (!meta)
		return LOUPE_VERDICT_NONE;
	w->flags = meta->flags; /* a set of rate limits alone has flags and no bits */
	if (!meta->n_bits)
		return LOUPE_VERDICT_NONE;
	w->generation = meta->generation;

	if (l7 == LOUPE_JUDGE_BOUND) {
		struct loupe_counters *cnt = loupe_counters_get();

		if (cnt)
			cnt->policy_bound_exceeded++;
		bit = LOUPE_POLICY_BIT_NONE;
		action = LOUPE_VERDICT_DENY;
		goto report;
	}

	/* the pod: its interface, its address */
	w->iface_key.slot = slot;
	w->iface_key.ifindex = skb->ifindex;
	iface_rules = bpf_map_lookup_elem(&loupe_pol_ifaces, &w->iface_key);
	w->n_words = (meta->n_bits + 63) / 64;

	w->addr_key.slot = slot;
	if (pkt->flags & LOUPE_EVF_IPV6) {
		w->addr_key.prefixlen = 16 + 128;
		w->addr_key.kind = LOUPE_POL_ADDR_POD6;
		__builtin_memcpy(w->addr_key.addr, egress ? pkt->saddr.b : pkt->daddr.b, 16);
	} else {
		w->addr_key.prefixlen = 16 + 32;
		w->addr_key.kind = LOUPE_POL_ADDR_POD4;
		__builtin_memset(w->addr_key.addr, 0, 16);
		__builtin_memcpy(w->addr_key.addr, egress ? &pkt->saddr.w[3] : &pkt->daddr.w[3], 4);
	}
	pod_rules = bpf_map_lookup_elem(&loupe_pol_addrs, &w->addr_key);
	if (!pod_rules)
		return LOUPE_VERDICT_NONE;

	/* the peer */
	w->addr_key.kind += LOUPE_POL_ADDR_PEER4 - LOUPE_POL_ADDR_POD4;
	if (pkt->flags & LOUPE_EVF_IPV6)
		__builtin_memcpy(w->addr_key.addr, egress ? pkt->daddr.b : pkt->saddr.b, 16);
	else
		__builtin_memcpy(w->addr_key.addr, egress ? &pkt->daddr.w[3] : &pkt->saddr.w[3], 4);
	peer_rules = bpf_map_lookup_elem(&loupe_pol_addrs, &w->addr_key);
	if (!peer_rules)
		return LOUPE_VERDICT_NONE;

	/* direction, protocol and the server's port: the judge only sees packets of the flow's
	 * opener, so it is the destination port (the peer's in egress, the pod's in ingress) */
	server_port = bpf_ntohs(pkt->dport);
	w->port_key.prefixlen = 16 + 8 + 16;
	w->port_key.slot = slot;
	w->port_key.direction = dir & 1;
	w->port_key.protocol = pkt->protocol;
	w->port_key.port[0] = server_port >> 8;
	w->port_key.port[1] = server_port & 0xff;
	port_rules = bpf_map_lookup_elem(&loupe_pol_ports, &w->port_key);
	if (!port_rules)
		return LOUPE_VERDICT_NONE;

	/* a TCP or UDP flow's first packet without rewrites needs only the first rule */
	first_only = l7 == LOUPE_JUDGE_FIRST && !meta->n_rewrites &&
		     (pkt->protocol == IPPROTO_TCP || pkt->protocol == IPPROTO_UDP);
	idx = loupe_bits_and4(iface_rules ? iface_rules : &meta->any_iface, pod_rules, peer_rules,
			      port_rules, first_only);
	if (first_only) {
		bit = loupe_bits_first(&w->cand, idx);
		goto decide;
	}

	if (l7 == LOUPE_JUDGE_FIRST && meta->n_rewrites) {
		/* the flow's rewrite: the first entry that fits, decided on this packet */
		bit = loupe_bits_first_from(&w->cand, meta->rewrite_base, w->n_words);
		if (bit >= meta->rewrite_base && bit - meta->rewrite_base < meta->n_rewrites &&
		    bit - meta->rewrite_base < LOUPE_REWRITES_MAX) {
			w->rewrite = bit - meta->rewrite_base + 1;
			w->slot = slot;
		}
	}
	if (l7 == LOUPE_JUDGE_FIRST) {
		/* only TCP and UDP carry what L7 rules match */
		if (pkt->protocol != IPPROTO_TCP && pkt->protocol != IPPROTO_UDP)
			loupe_bits_and(&w->cand, &meta->l4_only, w->n_words);
	} else {
		/* the L7 rules the request fits; a miss is no rule (the zero bitmap) */
		const struct loupe_policy_bits *m = &w->zero, *p = &w->zero, *h = &w->zero,
					       *hp = &w->zero, *v;

		if (l7 == LOUPE_JUDGE_HTTP && loupe_policy_http_rules(slot)) {
			v = bpf_map_lookup_elem(&loupe_pol_methods, &w->method_idx);
			m = v ? v : &w->zero;
			v = bpf_map_lookup_elem(&loupe_pol_paths, &w->path_key);
			p = v ? v : &w->zero;
			loupe_policy_name_key(LOUPE_NAME_SRC_HTTP_HOST, w->host_name_len,
					      LOUPE_POL_NAME_HOST, 0);
			v = bpf_map_lookup_elem(&loupe_pol_names, &w->name_key);
			h = v ? v : &w->zero;
			if (w->host_port) {
				loupe_policy_name_key(LOUPE_NAME_SRC_HTTP_HOST, w->host_name_len,
						      LOUPE_POL_NAME_HOST_PORT, w->host_port);
				v = bpf_map_lookup_elem(&loupe_pol_names, &w->name_key);
				hp = v ? v : &w->zero;
			}
		} else if (l7 == LOUPE_JUDGE_TLS || l7 == LOUPE_JUDGE_DNS) {
			if (l7 == LOUPE_JUDGE_TLS)
				loupe_policy_name_key(LOUPE_NAME_SRC_TLS_SNI, s->ev.tls.sni_len,
						      LOUPE_POL_NAME_SNI, 0);
			else
				loupe_policy_name_key(LOUPE_NAME_SRC_DNS_QNAME, s->ev.dns.qname_len,
						      LOUPE_POL_NAME_DNS, 0);
			v = bpf_map_lookup_elem(&loupe_pol_names, &w->name_key);
			m = p = h = v ? v : &w->zero;
		}
		bit = loupe_bits_first_l7(m, p, h, hp, &meta->l4_only);
		goto decide;
	}
	bit = loupe_bits_first(&w->cand, w->n_words);
decide:
	if (bit >= meta->n_rule_bits || bit >= LOUPE_POLICY_BITS)
		return LOUPE_VERDICT_NONE; /* no rule; rewrite bits come after the rules */
	if (l7 == LOUPE_JUDGE_FIRST && !loupe_bits_test(&meta->l4_only, bit))
		return LOUPE_JUDGED(LOUPE_VERDICT_PENDING, bit);
	action = meta->action[bit & (LOUPE_POLICY_BITS - 1)];
	if (action < LOUPE_VERDICT_ALLOW || action > LOUPE_VERDICT_AUDIT)
		return LOUPE_VERDICT_NONE;
	idx = slot * LOUPE_POLICY_BITS + (bit & (LOUPE_POLICY_BITS - 1));
	hits = bpf_map_lookup_elem(&loupe_pol_hits, &idx);
	if (hits)
		*hits += 1;

report:
	loupe_policy_report(skb, dir, l7, LOUPE_JUDGED(action, bit), now);
	return LOUPE_JUDGED(action, bit);
}

/* What the first bytes of a request in s->head (@len of them) are, for the judge. */
enum loupe_request_kind {
	LOUPE_REQUEST_OTHER, /* neither HTTP nor TLS: L7 rules do not fit */
	LOUPE_REQUEST_MAYBE, /* too short to tell: a method or a record header cut short */
	LOUPE_REQUEST_HTTP,
	LOUPE_REQUEST_TLS,
};

static __always_inline int loupe_policy_request_kind(const struct loupe_l7_buf *b, __u32 len)
{
	__u64 w = loupe_buf_u64(b, 0);
	__u32 j;

	if (len >= 8)
		return loupe_http_method_len(w)		 ? LOUPE_REQUEST_HTTP
		       : loupe_tls_maybe_client_hello(w) ? LOUPE_REQUEST_TLS
							 : LOUPE_REQUEST_OTHER;
	if (len >= 3 && loupe_tls_maybe_client_hello(w))
		return LOUPE_REQUEST_TLS;
	if (len >= 1 && (__u8)w == 0x16 && (len < 2 || (__u8)(w >> 8) == 0x03))
		return LOUPE_REQUEST_MAYBE;
	/* a method cut short, or a method, its space and the start of a target: upper-case
	 * letters up to the first space, anything after it */
	for (j = 0; j < 7; j++) {
		__u8 c = w >> (8 * j);

		if (j >= len || c == ' ')
			return j > 0 ? LOUPE_REQUEST_MAYBE : LOUPE_REQUEST_OTHER;
		if (c < 'A' || c > 'Z')
			return LOUPE_REQUEST_OTHER;
	}
	return LOUPE_REQUEST_MAYBE;
}

/*
 * The request's bytes held so far (the loupe_tls_pending entry of s->pol.held_key), into
 * s->head for the parsers (they read nothing more). Returns their count, 0 when none.
 */
__noinline __u32 loupe_policy_held_to_head(void)
{
	struct loupe_scratch *s = loupe_scratch_get();
	const struct loupe_tls_pending *p;
	__u32 len, j;

	if (!s)
		return 0;
	p = bpf_map_lookup_elem(&loupe_tls_pending, &s->pol.held_key);
	if (!p)
		return 0;
	len = p->buf.len;

	if (len > LOUPE_L7_BUF_MAX)
		len = LOUPE_L7_BUF_MAX;
	for (j = 0; j < LOUPE_L7_BUF_MAX / 8; j++) {
		if (j * 8 >= len)
			break;
		*(__u64 *)&s->head.data[j * 8] = *(const __u64 *)&p->buf.data[j * 8];
	}
	s->head.len = len;
	s->head.total = len;
	return *(volatile __u32 *)&s->head.len;
}

/* Keeps the first @len bytes of this first segment (in s->head) until the request is complete. */
__noinline int loupe_policy_hold_start(__u32 len, int dir)
{
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_tls_pending *p;
	__u32 j;

	if (!s)
		return 0;
	p = &s->pending;

	for (j = 0; j < LOUPE_L7_BUF_MAX / 8; j++) {
		if (j * 8 >= len)
			break;
		*(__u64 *)&p->buf.data[j * 8] = *(const __u64 *)&s->head.data[j * 8];
	}
	p->buf.len = len;
	p->buf.total = len;
	p->need = LOUPE_POLICY_HOLD_MAX;
	p->next_seq = s->pkt.tcp_seq + s->pkt.payload_len;
	p->dir = dir;
	p->pad = 0;
	loupe_tls_pending_key(&s->pol.held_key, &s->pkt, dir);
	return bpf_map_update_elem(&loupe_tls_pending, &s->pol.held_key, p, BPF_ANY) == 0;
}

/*
 * Judges the request whose first @len bytes are in s->head (s->head.total may say that more
 * can be read from the packet). @last: no more bytes will be held (the bound is reached).
 * Returns the judge's answer, or LOUPE_VERDICT_PENDING to wait for more.
 */
__noinline int loupe_policy_judge_request(struct __sk_buff *skb, int dir, __u32 len, int last,
					  __u64 now)
{
	struct loupe_scratch *s = loupe_scratch_get();
	__u32 need;

	if (!s || !skb)
		return LOUPE_VERDICT_PENDING;

	switch (loupe_policy_request_kind(&s->head, len)) {
	case LOUPE_REQUEST_MAYBE:
		if (last)
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now);
		return LOUPE_VERDICT_PENDING;
	case LOUPE_REQUEST_HTTP:
		if (!loupe_l7_http_parse_head(skb, len))
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_NO_L7, now);
		if (s->ev.http.flags & LOUPE_L7F_INCOMPLETE)
			return last ? loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now)
				    : LOUPE_VERDICT_PENDING;
		loupe_l7_emit_http(skb, s, dir, now);
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_HTTP, now);
	case LOUPE_REQUEST_TLS:
		if (len < LOUPE_TLS_RECORD_HDR)
			return last ? loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now)
				    : LOUPE_VERDICT_PENDING;
		need = loupe_tls_record_len(&s->head);
		if (need > s->head.total && !last)
			return LOUPE_VERDICT_PENDING;
		/* a ClientHello split over several TLS records: its SNI may be in a record the
		 * parser does not join, so it cannot be judged: fail closed (docs/policy.md) */
		if (len >= 9 && loupe_buf_u8(&s->head, 5) == 0x01 &&
		    4 + ((loupe_buf_u8(&s->head, 6) << 16) | (loupe_buf_u8(&s->head, 7) << 8) |
			 loupe_buf_u8(&s->head, 8)) >
			    need - LOUPE_TLS_RECORD_HDR)
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now) |
			       LOUPE_JUDGED_TLS_SEEN;
		if (!loupe_l7_tls_parse_head(skb))
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_NO_L7, now) |
			       LOUPE_JUDGED_TLS_SEEN;
		/* a ClientHello past the bound is judged on what was held, if its SNI was there */
		if (need > s->head.total && !s->ev.tls.sni_len)
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now) |
			       LOUPE_JUDGED_TLS_SEEN;
		loupe_l7_emit_tls(skb, s, dir, now);
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_TLS, now) | LOUPE_JUDGED_TLS_SEEN;
	default:
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_NO_L7, now);
	}
}

/*
 * A payload segment from the client of a flow whose verdict waits for its request (the
 * packet is in s->pkt). @state: the flow's (L7_HELD: earlier segments are held;
 * SEQ_KNOWN: the request must begin at @expect_seq). Returns the judge's answer with what to
 * do with the packet and the flow's state (LOUPE_JUDGED_*).
 */
__noinline int loupe_policy_on_payload(struct __sk_buff *skb, int dir, int state, __u32 expect_seq,
				       __u64 now)
{
	bool held = state & LOUPE_FLOW_L7_HELD, seq_known = state & LOUPE_FLOW_SEQ_KNOWN;
	struct loupe_scratch *s = loupe_scratch_get();
	struct loupe_counters *cnt = loupe_counters_get();
	struct loupe_tls_pending *p;
	const struct loupe_pkt *pkt;
	__u32 len, have, n;
	int r;

	if (!s || !skb || !cnt)
		return LOUPE_VERDICT_PENDING;
	pkt = &s->pkt;
	/* the first of IP fragments: the rest of the request is in fragments that carry no
	 * ports and cannot be judged: fail closed */
	if (pkt->flags & LOUPE_EVF_FRAGMENT)
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now) |
		       (held ? LOUPE_JUDGED_HELD_CLEAR : 0);
	if (pkt->protocol == IPPROTO_UDP) {
		if (loupe_l7_dns(skb, dir, now) == LOUPE_L7_REPORTED)
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_DNS, now);
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_NO_L7, now);
	}
	if (pkt->protocol != IPPROTO_TCP)
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_NO_L7, now);

	if (!held) {
		/* the request must begin at the client's first byte: a later segment sent
		 * first waits for the client to send it again, in order */
		if (seq_known && pkt->tcp_seq != expect_seq) {
			if ((__s32)(pkt->tcp_seq + pkt->payload_len - expect_seq) <= 0)
				return LOUPE_VERDICT_PENDING;
			cnt->policy_out_of_order++;
			return LOUPE_VERDICT_PENDING | LOUPE_JUDGED_DROP;
		}
		len = loupe_l7_load_head(skb, pkt, s, LOUPE_L7_BUF_MAX);
		if (!len)
			return LOUPE_VERDICT_PENDING;
		r = loupe_policy_judge_request(skb, dir, len,
					       pkt->payload_len >= LOUPE_POLICY_HOLD_MAX, now);
		if (LOUPE_JUDGED_VERDICT(r) != LOUPE_VERDICT_PENDING)
			return r;
		if (!loupe_policy_hold_start(len, dir))
			return loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now);
		return LOUPE_VERDICT_PENDING | LOUPE_JUDGED_HELD_SET;
	}

	loupe_tls_pending_key(&s->pol.held_key, pkt, dir);
	p = bpf_map_lookup_elem(&loupe_tls_pending, &s->pol.held_key);
	if (!p) /* evicted: what was held is gone, so no verdict can be reached */
		return loupe_policy_judge(skb, dir, LOUPE_JUDGE_BOUND, now) |
		       LOUPE_JUDGED_HELD_CLEAR;
	if (pkt->tcp_seq != p->next_seq) {
		if ((__s32)(pkt->tcp_seq + pkt->payload_len - p->next_seq) <= 0)
			return LOUPE_VERDICT_PENDING; /* a copy of held bytes */
		cnt->policy_out_of_order++;
		return LOUPE_VERDICT_PENDING | LOUPE_JUDGED_DROP;
	}
	have = p->buf.len;
	n = pkt->payload_len;
	if (have > LOUPE_POLICY_HOLD_MAX)
		have = LOUPE_POLICY_HOLD_MAX;
	if (n > LOUPE_POLICY_HOLD_MAX - have)
		n = LOUPE_POLICY_HOLD_MAX - have;
	LOUPE_BARRIER_VAR(n);
	if (n > 0 && n <= LOUPE_L7_BUF_MAX &&
	    !bpf_skb_load_bytes(skb, pkt->payload_off, &p->buf.data[have & LOUPE_BUF_MASK], n))
		p->buf.len = have + n;
	p->next_seq += pkt->payload_len;
	len = loupe_policy_held_to_head();
	r = loupe_policy_judge_request(skb, dir, len,
				       have + pkt->payload_len >= LOUPE_POLICY_HOLD_MAX, now);
	if (LOUPE_JUDGED_VERDICT(r) == LOUPE_VERDICT_PENDING)
		return r;
	loupe_tls_pending_key(&s->pol.held_key, pkt, dir);
	bpf_map_delete_elem(&loupe_tls_pending, &s->pol.held_key);
	return r | LOUPE_JUDGED_HELD_CLEAR;
}

#endif
