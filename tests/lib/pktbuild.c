// SPDX-License-Identifier: Apache-2.0
/*
 * The packet builder of pktbuild.h: writes headers front to back, then fixes lengths and
 * checksums from the back (L4, then L3), except where the spec gives a raw value. Fields are
 * written byte by byte in network order, so no host struct layout is involved. Not for
 * parsing, and not a general packet library: only what loupe's tests need.
 */
#include "pktbuild.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#define ETH_P_IPV4  0x0800
#define ETH_P_IPV6  0x86dd
#define ETH_P_8021Q 0x8100

#define NEXTHDR_HOP	 0
#define NEXTHDR_ROUTING	 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST	 60
#define NEXTHDR_NONE	 59

static const uint8_t pod_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a };
static const uint8_t peer_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x14 };

/* A bounded writer: every put checks the room left; the first failure sticks. */
struct wr {
	uint8_t *buf;
	size_t len;
	size_t cap;
	int err;
};

static uint8_t *wr_room(struct wr *w, size_t n)
{
	uint8_t *p;

	if (w->err)
		return NULL;
	if (n > w->cap - w->len) {
		w->err = -ENOSPC;
		return NULL;
	}
	p = w->buf + w->len;
	w->len += n;
	return p;
}

static void wr_bytes(struct wr *w, const void *data, size_t n)
{
	uint8_t *p = wr_room(w, n);

	if (p && n)
		memcpy(p, data, n);
}

static void wr_fill(struct wr *w, uint8_t byte, size_t n)
{
	uint8_t *p = wr_room(w, n);

	if (p)
		memset(p, byte, n);
}

static void wr_u8(struct wr *w, uint8_t v)
{
	wr_bytes(w, &v, 1);
}

static void wr_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v };

	wr_bytes(w, b, 2);
}

static void wr_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	wr_bytes(w, b, 4);
}

static void wr_str(struct wr *w, const char *s)
{
	wr_bytes(w, s, strlen(s));
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put24(uint8_t *p, uint32_t v)
{
	p[0] = v >> 16;
	p[1] = v >> 8;
	p[2] = v;
}

/* Length fields are filled in once their contents are written: remember where they are. */
static size_t wr_mark(struct wr *w, size_t n)
{
	size_t at = w->len;

	wr_fill(w, 0, n);
	return at;
}

static void wr_patch16(struct wr *w, size_t at)
{
	if (!w->err)
		put16(w->buf + at, w->len - at - 2);
}

static void wr_patch24(struct wr *w, size_t at)
{
	if (!w->err)
		put24(w->buf + at, w->len - at - 3);
}

uint32_t loupe_pkt_csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

uint16_t loupe_pkt_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

int loupe_pkt_addr(const char *text, uint8_t ret[16])
{
	static const uint8_t net6[6] = { 0xfd, 0x00, 0x01, 0x98, 0x00, 0x18 };
	struct in_addr a4;

	if (!text)
		return -EINVAL;
	if (inet_pton(AF_INET, text, &a4) == 1) {
		const uint8_t *b = (const uint8_t *)&a4;

		/* 198.18.0.0/15 */
		if (b[0] != 198 || (b[1] & 0xfe) != 18)
			return -EINVAL;
		memset(ret, 0, 10);
		ret[10] = 0xff;
		ret[11] = 0xff;
		memcpy(ret + 12, b, 4);
		return 0;
	}
	if (inet_pton(AF_INET6, text, ret) == 1 && !memcmp(ret, net6, sizeof(net6)))
		return 0;
	return -EINVAL;
}

/* HTTP */

static const char *const http_fillers[] = {
	"User-Agent: loupe-test/1.0", "Accept: */*",
	"Accept-Language: en",	      "Cache-Control: no-cache",
	"X-Request-Id: 4f2a9c61",     "Connection: keep-alive",
};

static void http_header(struct wr *w, int i)
{
	char extra[32];

	if (i < (int)(sizeof(http_fillers) / sizeof(http_fillers[0]))) {
		wr_str(w, http_fillers[i]);
	} else {
		snprintf(extra, sizeof(extra), "X-Extra-%d: %d", i, i);
		wr_str(w, extra);
	}
	wr_str(w, "\r\n");
}

int loupe_pkt_http_request(const struct loupe_pkt_http *spec, uint8_t *buf, size_t cap)
{
	const int nfillers = sizeof(http_fillers) / sizeof(http_fillers[0]);
	struct wr w = { .buf = buf, .cap = cap };
	const char *path = spec->path ? spec->path : "/";
	size_t plen = strlen(path);
	int i;

	wr_str(&w, spec->method ? spec->method : "GET");
	wr_u8(&w, ' ');
	wr_str(&w, path);
	if (spec->path_pad > plen)
		wr_fill(&w, 'a', spec->path_pad - plen);
	wr_str(&w, " HTTP/1.1\r\n");
	if (spec->line_only) {
		wr_str(&w, "\r\n");
		return w.err ? w.err : (int)w.len;
	}

	for (i = 0; i < spec->host_index; i++)
		http_header(&w, i);
	if (spec->host || spec->host_line) {
		/* "X-Pad: " + pad + CRLF ends where the Host line is to start. */
		if (spec->host_offset > w.len + 9) {
			wr_str(&w, "X-Pad: ");
			wr_fill(&w, 'p', spec->host_offset - w.len - 2);
			wr_str(&w, "\r\n");
		} else if (spec->host_offset > w.len) {
			return -EINVAL;
		}
		if (spec->host_line) {
			wr_str(&w, spec->host_line);
		} else {
			wr_str(&w, "Host: ");
			wr_str(&w, spec->host);
		}
		wr_str(&w, "\r\n");
	}
	for (i = spec->host_index; i < nfillers; i++)
		http_header(&w, i);
	wr_str(&w, "\r\n");
	return w.err ? w.err : (int)w.len;
}

/* TLS */

static void tls_ext(struct wr *w, const struct loupe_pkt_tls *spec, enum loupe_pkt_tls_ext ext)
{
	size_t len_at, list_at;
	int i;

	switch (ext) {
	case LOUPE_PKT_TLS_GREASE:
		wr_u16(w, 0x1a1a);
		wr_u16(w, 0);
		return;
	case LOUPE_PKT_TLS_SNI:
		if (!spec->sni)
			return;
		wr_u16(w, 0);
		len_at = wr_mark(w, 2);
		list_at = wr_mark(w, 2);
		wr_u8(w, 0); /* host_name */
		wr_u16(w, strlen(spec->sni));
		wr_str(w, spec->sni);
		wr_patch16(w, list_at);
		wr_patch16(w, len_at);
		return;
	case LOUPE_PKT_TLS_GROUPS:
		wr_u16(w, 10);
		wr_u16(w, 8);
		wr_u16(w, 6);
		wr_u16(w, 0x2a2a); /* GREASE */
		wr_u16(w, 0x001d); /* x25519 */
		wr_u16(w, 0x0017); /* secp256r1 */
		return;
	case LOUPE_PKT_TLS_ALPN:
		if (!spec->alpn[0])
			return;
		wr_u16(w, 16);
		len_at = wr_mark(w, 2);
		list_at = wr_mark(w, 2);
		for (i = 0; i < 8 && spec->alpn[i]; i++) {
			wr_u8(w, strlen(spec->alpn[i]));
			wr_str(w, spec->alpn[i]);
		}
		wr_patch16(w, list_at);
		wr_patch16(w, len_at);
		return;
	case LOUPE_PKT_TLS_VERSIONS:
		if (!spec->versions[0])
			return;
		for (i = 0; i < 8 && spec->versions[i]; i++)
			;
		wr_u16(w, 43);
		wr_u16(w, 1 + 2 * i);
		wr_u8(w, 2 * i);
		for (i = 0; i < 8 && spec->versions[i]; i++)
			wr_u16(w, spec->versions[i]);
		return;
	case LOUPE_PKT_TLS_KEY_SHARE:
		if (!spec->key_share)
			return;
		wr_u16(w, 51);
		wr_u16(w, 2 + 4 + spec->key_share);
		wr_u16(w, 4 + spec->key_share);
		wr_u16(w, 0x001d);
		wr_u16(w, spec->key_share);
		wr_fill(w, 0x5a, spec->key_share);
		return;
	case LOUPE_PKT_TLS_PADDING:
		if (!spec->padding)
			return;
		wr_u16(w, 21);
		wr_u16(w, spec->padding);
		wr_fill(w, 0, spec->padding);
		return;
	case LOUPE_PKT_TLS_END:
		return;
	}
}

int loupe_pkt_tls_client_hello(const struct loupe_pkt_tls *spec, uint8_t *buf, size_t cap)
{
	static const enum loupe_pkt_tls_ext default_order[] = {
		LOUPE_PKT_TLS_GREASE,  LOUPE_PKT_TLS_SNI,      LOUPE_PKT_TLS_GROUPS,
		LOUPE_PKT_TLS_ALPN,    LOUPE_PKT_TLS_VERSIONS, LOUPE_PKT_TLS_KEY_SHARE,
		LOUPE_PKT_TLS_PADDING, LOUPE_PKT_TLS_END,
	};
	static const uint16_t suites[] = { 0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f };
	const enum loupe_pkt_tls_ext *order = spec->order[0] ? spec->order : default_order;
	struct wr w = { .buf = buf, .cap = cap };
	size_t rec_at, hs_at, ext_at;
	size_t i;

	wr_u8(&w, 22); /* handshake */
	wr_u16(&w, spec->record_version ? spec->record_version : 0x0301);
	rec_at = wr_mark(&w, 2);
	wr_u8(&w, 1); /* client_hello */
	hs_at = wr_mark(&w, 3);
	wr_u16(&w, spec->legacy_version ? spec->legacy_version : 0x0303);
	for (i = 0; i < 32; i++)
		wr_u8(&w, 0xa0 + i); /* random */
	wr_u8(&w, 32);		     /* legacy_session_id */
	for (i = 0; i < 32; i++)
		wr_u8(&w, 0x50 + i);
	wr_u16(&w, 2 * sizeof(suites) / sizeof(suites[0]));
	for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		wr_u16(&w, suites[i]);
	wr_u8(&w, 1); /* legacy_compression_methods: null */
	wr_u8(&w, 0);
	ext_at = wr_mark(&w, 2);
	for (i = 0; i < 8 && order[i] != LOUPE_PKT_TLS_END; i++)
		tls_ext(&w, spec, order[i]);
	wr_patch16(&w, ext_at);
	wr_patch24(&w, hs_at);
	wr_patch16(&w, rec_at);
	if (!w.err && w.len - 5 > 16384)
		return -EINVAL; /* one record only */
	return w.err ? w.err : (int)w.len;
}

/* DNS */

/* Writes the labels of a dotted name; @first_only stops after the first label. Returns the
 * rest of the name (after the first dot), or NULL at the end. */
static const char *dns_labels(struct wr *w, const char *name, bool first_only)
{
	while (name && *name) {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);

		if (n == 0 || n > 255) {
			w->err = -EINVAL;
			return NULL;
		}
		wr_u8(w, n);
		wr_bytes(w, name, n);
		name = dot ? dot + 1 : NULL;
		if (first_only)
			return name;
	}
	return NULL;
}

int loupe_pkt_dns_query(const struct loupe_pkt_dns *spec, uint8_t *buf, size_t cap)
{
	struct wr w = { .buf = buf, .cap = cap };
	char generated[2 * 128];
	const char *qname = spec->qname;
	const char *rest = NULL;
	size_t base = 0, tcp_at = 0, name_at, ptr_at = 0;
	int i;

	if (!qname) {
		if (spec->labels <= 0 || spec->labels > 128)
			return -EINVAL;
		for (i = 0; i < spec->labels; i++) {
			generated[2 * i] = 'a';
			generated[2 * i + 1] = '.';
		}
		generated[2 * spec->labels - 1] = 0;
		qname = generated;
	}
	if (spec->tcp) {
		tcp_at = wr_mark(&w, 2);
		base = w.len;
	}
	wr_u16(&w, spec->id);
	wr_u16(&w, spec->response ? 0x8180 : 0x0100); /* QR, RD, RA / RD */
	wr_u16(&w, 1);				      /* QDCOUNT */
	wr_u16(&w, spec->response ? 1 : 0);	      /* ANCOUNT */
	wr_u16(&w, 0);
	wr_u16(&w, 0);

	name_at = w.len - base;
	switch (spec->form) {
	case LOUPE_PKT_DNS_PLAIN:
		dns_labels(&w, qname, false);
		wr_u8(&w, 0);
		break;
	case LOUPE_PKT_DNS_POINTER:
		rest = dns_labels(&w, qname, true);
		ptr_at = wr_mark(&w, 2);
		break;
	case LOUPE_PKT_DNS_LOOP:
		dns_labels(&w, qname, false);
		wr_u16(&w, 0xc000 | name_at);
		break;
	case LOUPE_PKT_DNS_LONG_LABEL:
		wr_u8(&w, 64);
		wr_fill(&w, 'x', 64);
		dns_labels(&w, qname, false);
		wr_u8(&w, 0);
		break;
	}
	wr_u16(&w, spec->qtype ? spec->qtype : 1);
	wr_u16(&w, spec->qclass ? spec->qclass : 1);

	if (spec->form == LOUPE_PKT_DNS_POINTER && !w.err) {
		put16(w.buf + ptr_at, 0xc000 | (w.len - base));
		dns_labels(&w, rest, false);
		wr_u8(&w, 0);
	}
	if (spec->response) {
		bool aaaa = spec->qtype == 28;

		wr_u16(&w, 0xc000 | name_at);
		wr_u16(&w, aaaa ? 28 : 1);
		wr_u16(&w, 1);
		wr_u32(&w, 60);
		wr_u16(&w, aaaa ? 16 : 4);
		if (aaaa) {
			static const uint8_t a6[16] = { 0xfd, 0x00, 0x01,	0x98,
							0x00, 0x18, [15] = 0x53 };
			wr_bytes(&w, a6, 16);
		} else {
			wr_u32(&w, 0xc6120035); /* 198.18.0.53 */
		}
	}
	if (spec->tcp)
		wr_patch16(&w, tcp_at);
	return w.err ? w.err : (int)w.len;
}

/* Frames */

static int build_payload(const struct loupe_pkt_spec *spec, struct wr *w)
{
	int n = 0, kinds = !!spec->payload + !!spec->http + !!spec->tls + !!spec->dns;
	uint8_t *p;
	size_t room;

	if (kinds > 1)
		return -EINVAL;
	if (w->err)
		return w->err;
	p = w->buf + w->len;
	room = w->cap - w->len;
	if (spec->payload) {
		n = spec->payload_len ? spec->payload_len : strlen(spec->payload);
		if ((size_t)n > room)
			return -ENOSPC;
		memcpy(p, spec->payload, n);
	} else if (spec->http) {
		n = loupe_pkt_http_request(spec->http, p, room);
	} else if (spec->tls) {
		n = loupe_pkt_tls_client_hello(spec->tls, p, room);
	} else if (spec->dns) {
		n = loupe_pkt_dns_query(spec->dns, p, room);
	}
	if (n < 0)
		return n;
	if (spec->payload_cut && spec->payload_cut < (size_t)n)
		n = spec->payload_cut;
	w->len += n;
	return 0;
}

static void build_ipv6_ext(struct wr *w, const struct loupe_pkt_ext *ext, uint8_t next,
			   const uint8_t dst[16])
{
	size_t i, n;

	wr_u8(w, next);
	switch (ext->kind) {
	case LOUPE_PKT_EXT_HOP:
	case LOUPE_PKT_EXT_DEST:
		/* One PadN option fills the 6 (+ 8 * len) bytes after the first two. */
		n = 6 + 8 * (size_t)ext->len;
		wr_u8(w, ext->len);
		wr_u8(w, 1); /* PadN */
		wr_u8(w, n - 2);
		wr_fill(w, 0, n - 2);
		break;
	case LOUPE_PKT_EXT_ROUTING:
		/* Segment routing header, segments left 0: the last segment is the destination. */
		wr_u8(w, 2 * (ext->len + 1));
		wr_u8(w, 4);
		wr_u8(w, 0);	    /* segments left */
		wr_u8(w, ext->len); /* last entry */
		wr_u8(w, 0);	    /* flags */
		wr_u16(w, 0);	    /* tag */
		for (i = 0; i <= ext->len; i++)
			wr_bytes(w, dst, 16);
		break;
	case LOUPE_PKT_EXT_FRAG:
		wr_u8(w, 0);
		wr_u16(w, (ext->frag_off & ~7) | ext->more);
		wr_u32(w, ext->id);
		break;
	case LOUPE_PKT_EXT_NONE:
		break;
	}
}

static uint8_t ext_proto(enum loupe_pkt_ext_kind kind)
{
	switch (kind) {
	case LOUPE_PKT_EXT_HOP:
		return NEXTHDR_HOP;
	case LOUPE_PKT_EXT_ROUTING:
		return NEXTHDR_ROUTING;
	case LOUPE_PKT_EXT_DEST:
		return NEXTHDR_DEST;
	case LOUPE_PKT_EXT_FRAG:
		return NEXTHDR_FRAGMENT;
	case LOUPE_PKT_EXT_NONE:
		break;
	}
	return NEXTHDR_NONE;
}

/* The L4 checksum over the pseudo-header and the segment as written. */
static uint16_t l4_csum(const struct loupe_pkt *pkt, bool ipv6, uint8_t proto)
{
	size_t len = pkt->len - pkt->l4_off;
	uint8_t pseudo[40] = { 0 };
	uint32_t sum;

	if (ipv6) {
		memcpy(pseudo, pkt->src, 16);
		memcpy(pseudo + 16, pkt->dst, 16);
		pseudo[32] = len >> 24;
		pseudo[33] = len >> 16;
		pseudo[34] = len >> 8;
		pseudo[35] = len;
		pseudo[39] = proto;
		sum = loupe_pkt_csum_add(0, pseudo, 40);
	} else {
		memcpy(pseudo, pkt->src + 12, 4);
		memcpy(pseudo + 4, pkt->dst + 12, 4);
		pseudo[9] = proto;
		pseudo[10] = len >> 8;
		pseudo[11] = len;
		sum = loupe_pkt_csum_add(0, pseudo, 12);
	}
	return ~loupe_pkt_csum_fold(loupe_pkt_csum_add(sum, pkt->buf + pkt->l4_off, len));
}

int loupe_pkt_build(const struct loupe_pkt_spec *spec, struct loupe_pkt *ret)
{
	struct wr w = { .buf = ret->buf, .cap = sizeof(ret->buf) };
	const char *src = spec->src, *dst = spec->dst;
	uint8_t proto = spec->proto;
	int next_at = -1; /* where the last "next header" byte is, to point it at L4 */
	int i, err;

	ret->len = 0;
	ret->l3_off = ret->l4_off = ret->payload_off = ret->payload_len = 0;
	memset(ret->src, 0, sizeof(ret->src));
	memset(ret->dst, 0, sizeof(ret->dst));

	if (!src)
		src = spec->ipv6 ? LOUPE_PKT_POD6 : LOUPE_PKT_POD4;
	if (!dst)
		dst = spec->ipv6 ? LOUPE_PKT_PEER6 : LOUPE_PKT_PEER4;
	if (spec->reply) {
		const char *t = src;

		src = dst;
		dst = t;
	}
	ret->sport = spec->sport ? spec->sport : LOUPE_PKT_SPORT;
	ret->dport = spec->dport;
	if (spec->reply) {
		uint16_t t = ret->sport;

		ret->sport = ret->dport;
		ret->dport = t;
	}
	if (!spec->l2_only) {
		if (loupe_pkt_addr(src, ret->src) || loupe_pkt_addr(dst, ret->dst))
			return -EINVAL;
		/* an IPv4-mapped address in an IPv6 header (or the reverse) is not in range */
		if ((ret->src[10] == 0xff) == spec->ipv6 || (ret->dst[10] == 0xff) == spec->ipv6)
			return -EINVAL;
	}
	if (spec->vlans < 0 || spec->vlans > LOUPE_PKT_VLANS_MAX)
		return -EINVAL;

	/* Ethernet and VLAN tags */
	wr_bytes(&w, spec->reply ? pod_mac : peer_mac, 6);
	wr_bytes(&w, spec->reply ? peer_mac : pod_mac, 6);
	for (i = 0; i < spec->vlans; i++) {
		const struct loupe_pkt_vlan *v = &spec->vlan[i];

		wr_u16(&w, v->tpid ? v->tpid : ETH_P_8021Q);
		wr_u16(&w, (uint16_t)v->pcp << 13 | (v->vid & 0xfff));
	}
	wr_u16(&w, spec->ethertype ? spec->ethertype : spec->ipv6 ? ETH_P_IPV6 : ETH_P_IPV4);
	if (spec->l2_only) {
		ret->payload_off = w.len;
		err = build_payload(spec, &w);
		if (err)
			return err;
		ret->payload_len = w.len - ret->payload_off;
		ret->len = w.len;
		return w.err;
	}

	/* L3 */
	ret->l3_off = w.len;
	if (spec->ipv6) {
		const struct loupe_pkt_ipv6 *ip6 = &spec->ip6;

		wr_u32(&w, 6u << 28 | (ip6->flow_label & 0xfffff));
		wr_u16(&w, 0); /* payload length, below */
		next_at = w.len;
		wr_u8(&w, 0);
		wr_u8(&w, ip6->hop_limit ? ip6->hop_limit : 64);
		wr_bytes(&w, ret->src, 16);
		wr_bytes(&w, ret->dst, 16);
		for (i = 0; i < 8 && ip6->ext[i].kind != LOUPE_PKT_EXT_NONE; i++) {
			if (!w.err)
				w.buf[next_at] = ext_proto(ip6->ext[i].kind);
			next_at = w.len;
			build_ipv6_ext(&w, &ip6->ext[i], 0, ret->dst);
		}
	} else {
		const struct loupe_pkt_ipv4 *ip4 = &spec->ip4;
		size_t opts = (ip4->opts_len + 3u) & ~3u;

		if (opts > 40 || ip4->frag_off & 7)
			return -EINVAL;
		wr_u8(&w, 0x40 | (ip4->ihl.set ? ip4->ihl.v & 0xf : 5 + opts / 4));
		wr_u8(&w, ip4->tos);
		wr_u16(&w, 0); /* total length, below */
		wr_u16(&w, ip4->id);
		wr_u16(&w, ip4->df << 14 | ip4->mf << 13 | ip4->frag_off >> 3);
		wr_u8(&w, ip4->ttl ? ip4->ttl : 64);
		next_at = w.len;
		wr_u8(&w, proto);
		wr_u16(&w, 0); /* checksum, below */
		wr_bytes(&w, ret->src + 12, 4);
		wr_bytes(&w, ret->dst + 12, 4);
		if (opts) {
			wr_fill(&w, 1, opts - 1); /* NOP */
			wr_u8(&w, 0);		  /* EOL */
		}
	}
	if (!w.err)
		w.buf[next_at] = proto;

	/* L4 */
	ret->l4_off = w.len;
	switch (proto) {
	case IPPROTO_TCP: {
		const struct loupe_pkt_tcp *t = &spec->tcp;
		size_t opts = (t->opts_len + 3u) & ~3u;
		bool has_payload = spec->payload || spec->http || spec->tls || spec->dns;
		uint8_t flags = t->flags      ? t->flags
				: has_payload ? LOUPE_TCP_PSH | LOUPE_TCP_ACK
					      : LOUPE_TCP_SYN;

		if (opts > 40)
			return -EINVAL;
		wr_u16(&w, ret->sport);
		wr_u16(&w, ret->dport);
		wr_u32(&w, t->seq ? t->seq : 1000);
		wr_u32(&w, t->ack ? t->ack : flags & LOUPE_TCP_ACK ? 2000 : 0);
		wr_u8(&w, (t->doff.set ? t->doff.v & 0xf : 5 + opts / 4) << 4);
		wr_u8(&w, flags);
		wr_u16(&w, t->window ? t->window : 64240);
		wr_u16(&w, 0); /* checksum, below */
		wr_u16(&w, 0); /* urgent pointer */
		wr_bytes(&w, t->opts, t->opts_len);
		wr_fill(&w, 1, opts - t->opts_len);
		break;
	}
	case IPPROTO_UDP:
		wr_u16(&w, ret->sport);
		wr_u16(&w, ret->dport);
		wr_u16(&w, 0); /* length, below */
		wr_u16(&w, 0); /* checksum, below */
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if ((proto == IPPROTO_ICMPV6) != spec->ipv6)
			return -EINVAL;
		if (proto == IPPROTO_ICMP)
			wr_u8(&w, spec->icmp.reply ? 0 : 8);
		else
			wr_u8(&w, spec->icmp.reply ? 129 : 128);
		wr_u8(&w, 0);
		wr_u16(&w, 0); /* checksum, below */
		wr_u16(&w, spec->icmp.id);
		wr_u16(&w, spec->icmp.seq);
		break;
	default:
		ret->l4_off = 0;
		break;
	}

	ret->payload_off = w.len;
	err = build_payload(spec, &w);
	if (err)
		return err;
	if (w.err)
		return w.err;
	ret->payload_len = w.len - ret->payload_off;
	ret->len = w.len;

	/* Lengths and checksums, inside out. */
	if (proto == IPPROTO_UDP) {
		uint8_t *u = ret->buf + ret->l4_off;

		put16(u + 4, spec->udp_len.set ? spec->udp_len.v : ret->len - ret->l4_off);
		put16(u + 6, l4_csum(ret, spec->ipv6, proto) ?: 0xffff);
	} else if (proto == IPPROTO_TCP) {
		uint8_t *t = ret->buf + ret->l4_off;

		put16(t + 16,
		      spec->tcp.csum.set ? spec->tcp.csum.v : l4_csum(ret, spec->ipv6, proto));
	} else if (proto == IPPROTO_ICMPV6) {
		put16(ret->buf + ret->l4_off + 2, l4_csum(ret, true, proto));
	} else if (proto == IPPROTO_ICMP) {
		uint8_t *c = ret->buf + ret->l4_off;

		put16(c + 2,
		      ~loupe_pkt_csum_fold(loupe_pkt_csum_add(0, c, ret->len - ret->l4_off)));
	}

	if (spec->ipv6) {
		const struct loupe_pkt_raw *plen = &spec->ip6.plen;

		put16(ret->buf + ret->l3_off + 4,
		      plen->set ? plen->v : ret->len - ret->l3_off - 40);
	} else {
		const struct loupe_pkt_ipv4 *ip4 = &spec->ip4;
		uint8_t *h = ret->buf + ret->l3_off;
		size_t hlen = 20 + ((ip4->opts_len + 3u) & ~3u);

		put16(h + 2, ip4->tot_len.set ? ip4->tot_len.v : ret->len - ret->l3_off);
		put16(h + 10, ip4->csum.set ? ip4->csum.v
					    : (uint16_t)~loupe_pkt_csum_fold(
						      loupe_pkt_csum_add(0, h, hlen)));
	}
	return 0;
}

void loupe_pkt_hexdump(FILE *f, const char *prefix, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i % 16 == 0)
			fprintf(f, "%s%06zx ", prefix ? prefix : "", i);
		fprintf(f, " %02x", p[i]);
		if (i % 16 == 15 || i + 1 == len)
			fputc('\n', f);
	}
}

int loupe_pkt_pcap_write(const char *path, const struct loupe_pkt *const *pkts, size_t n)
{
	/* pcap file header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_ETHERNET */
	const uint32_t hdr[6] = { 0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1 };
	FILE *f = fopen(path, "wb");
	size_t i;
	int err = 0;

	if (!f)
		return -errno;
	if (fwrite(hdr, sizeof(hdr), 1, f) != 1)
		err = -EIO;
	for (i = 0; i < n && !err; i++) {
		uint32_t rec[4] = { 1700000000 + i, 0, pkts[i]->len, pkts[i]->len };

		if (fwrite(rec, sizeof(rec), 1, f) != 1 ||
		    fwrite(pkts[i]->buf, pkts[i]->len, 1, f) != 1)
			err = -EIO;
	}
	if (fclose(f) && !err)
		err = -errno;
	return err;
}
