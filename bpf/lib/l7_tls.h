/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TLS ClientHello: server_name, ALPN (raw list), legacy_version and the highest
 * supported_versions entry. Extensions are walked by their lengths, from the buffer and from
 * the packet beyond it, so a large ClientHello (post-quantum key shares) in one segment still
 * yields an SNI placed last. A ClientHello whose record does not fit its first segment is
 * reassembled from the following in-order segments of the flow (up to LOUPE_L7_BUF_MAX bytes)
 * and reported on the segment that completes it. Not for other handshake messages.
 */
#ifndef LOUPE_BPF_L7_TLS_H
#define LOUPE_BPF_L7_TLS_H

#include "lib/l7.h"

#define LOUPE_TLS_EXT_MAX	   48 /* extensions walked */
#define LOUPE_TLS_VERSIONS_MAX	   16
#define LOUPE_TLS_RECORD_HDR	   5
#define LOUPE_TLS_EXT_SERVER_NAME  0
#define LOUPE_TLS_EXT_ALPN	   16
#define LOUPE_TLS_EXT_SUPPORTED_VV 43

/* Cheap first test on the first four payload bytes (little-endian): handshake record, 3.x. */
static __always_inline bool loupe_tls_maybe_client_hello(__u32 first4)
{
	return (first4 & 0xffff) == (0x16 | (0x03 << 8)) && ((first4 >> 16) & 0xff) <= 0x04;
}

static __always_inline bool loupe_tls_is_grease(__u32 v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* Bytes of the ClientHello's record, header included, as its header says. */
static __always_inline __u32 loupe_tls_record_len(const struct loupe_l7_buf *b)
{
	return LOUPE_TLS_RECORD_HDR + ((loupe_buf_u8(b, 3) << 8) | loupe_buf_u8(b, 4));
}

static __always_inline void loupe_tls_read_sni(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					       struct loupe_scratch *s,
					       const struct loupe_l7_buf *b,
					       struct loupe_event_tls *ev, __u32 off, __u32 ext_len)
{
	__u32 type, name_len;

	/* server_name_list length (2), name_type (1), name length (2), name */
	if (ext_len < 5 || loupe_l7_read_be(skb, pkt, b, off + 2, 1, &type) || type != 0 ||
	    loupe_l7_read_be(skb, pkt, b, off + 3, 2, &name_len))
		return;
	if (name_len == 0 || name_len + 5 > ext_len || off + 5 + name_len > b->total)
		return;
	if (name_len >= LOUPE_TLS_SNI_MAX) {
		name_len = LOUPE_TLS_SNI_MAX - 1;
		ev->flags |= LOUPE_L7F_SNI_TRUNCATED;
	}
	LOUPE_CUR_SET(s, start, off + 5);
	LOUPE_CUR_SET(s, out, name_len);
	if (loupe_l7_copy_str(skb, pkt, s, b, ev->sni, LOUPE_TLS_SNI_MAX) == 0)
		ev->sni_len = name_len;
}

static __always_inline void loupe_tls_read_alpn(struct __sk_buff *skb, const struct loupe_pkt *pkt,
						struct loupe_scratch *s,
						const struct loupe_l7_buf *b,
						struct loupe_event_tls *ev, __u32 off,
						__u32 ext_len)
{
	__u32 len = ext_len - 2; /* without the list's own length */

	if (ext_len <= 2 || off + ext_len > b->total)
		return;
	if (len >= LOUPE_TLS_ALPN_MAX) {
		len = LOUPE_TLS_ALPN_MAX - 1;
		ev->flags |= LOUPE_L7F_ALPN_TRUNCATED;
	}
	/* a string copy: the list is kept whole up to its limit, the NUL is not part of it */
	LOUPE_CUR_SET(s, start, off + 2);
	LOUPE_CUR_SET(s, out, len);
	if (loupe_l7_copy_str(skb, pkt, s, b, (char *)ev->alpn, LOUPE_TLS_ALPN_MAX) == 0)
		ev->alpn_len = len;
}

static __always_inline void loupe_tls_read_versions(struct __sk_buff *skb,
						    const struct loupe_pkt *pkt,
						    const struct loupe_l7_buf *b,
						    struct loupe_event_tls *ev, __u32 off)
{
	__u32 list_len, v, i;

	if (loupe_l7_read_be(skb, pkt, b, off, 1, &list_len))
		return;
	for (i = 0; i < LOUPE_TLS_VERSIONS_MAX; i++) {
		if (2 * i + 2 > list_len || loupe_l7_read_be(skb, pkt, b, off + 1 + 2 * i, 2, &v))
			break;
		if (!loupe_tls_is_grease(v) && v > ev->max_version)
			ev->max_version = v;
	}
}

/*
 * Parses a ClientHello at the start of @b into s->ev.tls. Returns 1 when an event is
 * ready, 0 when @b does not begin a ClientHello.
 */
static __always_inline int loupe_tls_parse(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					   struct loupe_scratch *s, const struct loupe_l7_buf *b)
{
	struct loupe_event_tls *ev = &s->ev.tls;
	__u32 v, off, end, hs_end, ext_type, ext_len, i;

	/* record: type 22, version, length; handshake: type 1, 24-bit length */
	if (b->len < 11 || loupe_buf_u8(b, 0) != 0x16 || loupe_buf_u8(b, 5) != 0x01)
		return 0;
	end = loupe_tls_record_len(b);
	hs_end = 9 + ((loupe_buf_u8(b, 6) << 16) | (loupe_buf_u8(b, 7) << 8) | loupe_buf_u8(b, 8));
	if (hs_end < end)
		end = hs_end;

	ev->flags = 0;
	ev->legacy_version = (loupe_buf_u8(b, 9) << 8) | loupe_buf_u8(b, 10);
	ev->max_version = 0;
	ev->sni_len = 0;
	ev->alpn_len = 0;
	/* not the last field: no bytes of an earlier packet may follow the list */
	__builtin_memset(ev->alpn, 0, sizeof(ev->alpn));
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	ev->sni[0] = 0;

	/* legacy_version (2), random (32), session id, cipher suites, compression methods */
	off = 9 + 2 + 32;
	if (loupe_l7_read_be(skb, pkt, b, off, 1, &v))
		return 0;
	off += 1 + v;
	if (loupe_l7_read_be(skb, pkt, b, off, 2, &v))
		return 0;
	off += 2 + v;
	if (loupe_l7_read_be(skb, pkt, b, off, 1, &v))
		return 0;
	off += 1 + v;
	if (loupe_l7_read_be(skb, pkt, b, off, 2, &v))
		return 1; /* no extensions: an old client, still a ClientHello */
	off += 2;
	if (off + v < end)
		end = off + v;

	/* first find the extensions, then read them: nested loops would multiply the
	 * verifier's work */
	LOUPE_CUR_SET(s, pos, off);
	LOUPE_CUR_SET(s, end, end);
	LOUPE_CUR_SET(s, sni_off, 0);
	LOUPE_CUR_SET(s, alpn_off, 0);
	LOUPE_CUR_SET(s, versions_off, 0);
	for (i = 0; i < LOUPE_TLS_EXT_MAX; i++) {
		off = LOUPE_CUR_GET(s, pos);
		if (off + 4 > LOUPE_CUR_GET(s, end) ||
		    loupe_l7_read_be(skb, pkt, b, off, 2, &ext_type) ||
		    loupe_l7_read_be(skb, pkt, b, off + 2, 2, &ext_len))
			break;
		if (ext_type == LOUPE_TLS_EXT_SERVER_NAME) {
			LOUPE_CUR_SET(s, sni_off, off + 4);
			LOUPE_CUR_SET(s, sni_len, ext_len);
		} else if (ext_type == LOUPE_TLS_EXT_ALPN) {
			LOUPE_CUR_SET(s, alpn_off, off + 4);
			LOUPE_CUR_SET(s, alpn_len, ext_len);
		} else if (ext_type == LOUPE_TLS_EXT_SUPPORTED_VV) {
			LOUPE_CUR_SET(s, versions_off, off + 4);
		}
		LOUPE_CUR_SET(s, pos, off + 4 + ext_len);
	}
	off = LOUPE_CUR_GET(s, sni_off);
	if (off)
		loupe_tls_read_sni(skb, pkt, s, b, ev, off, LOUPE_CUR_GET(s, sni_len));
	off = LOUPE_CUR_GET(s, alpn_off);
	if (off)
		loupe_tls_read_alpn(skb, pkt, s, b, ev, off, LOUPE_CUR_GET(s, alpn_len));
	off = LOUPE_CUR_GET(s, versions_off);
	if (off)
		loupe_tls_read_versions(skb, pkt, b, ev, off);
	return 1;
}

/* The flow key of the pending map: the flow's key from the pod's side, IPv4 mapped. */
static __always_inline void loupe_tls_pending_key(struct loupe_flow_key *key,
						  const struct loupe_pkt *pkt, __u8 dir)
{
	bool egress = dir == LOUPE_DIR_POD_EGRESS;

	__builtin_memcpy(key->pod_addr, egress ? pkt->saddr.b : pkt->daddr.b, 16);
	__builtin_memcpy(key->peer_addr, egress ? pkt->daddr.b : pkt->saddr.b, 16);
	key->pod_port = egress ? pkt->sport : pkt->dport;
	key->peer_port = egress ? pkt->dport : pkt->sport;
	key->protocol = pkt->protocol;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
}

/*
 * Appends this segment's payload to the reassembly @p when it is the next in sequence.
 * Returns 1 when the record is complete (or the buffer full, or a gap makes waiting
 * pointless: what is there is parsed), 0 to keep waiting.
 */
static __always_inline int loupe_tls_append(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					    struct loupe_tls_pending *p, __u8 dir)
{
	__u32 have = p->buf.len, n = pkt->payload_len;

	if (dir != p->dir)
		return 0; /* the server's side, in another sequence space: not ours to judge */
	if (pkt->tcp_seq != p->next_seq)
		/* a retransmission of what we hold: wait; a gap: parse what we have */
		return (__s32)(pkt->tcp_seq - p->next_seq) > 0;
	if (have >= LOUPE_L7_BUF_MAX)
		return 1;
	if (n > LOUPE_L7_BUF_MAX - have)
		n = LOUPE_L7_BUF_MAX - have;
	LOUPE_BARRIER_VAR(n);
	if (n == 0 || n > LOUPE_L7_BUF_MAX)
		return 1;
	if (bpf_skb_load_bytes(skb, pkt->payload_off, &p->buf.data[have & LOUPE_BUF_MASK], n))
		return 1;
	p->buf.len = have + n;
	p->buf.total = have + n;
	p->next_seq += pkt->payload_len;
	return p->buf.len >= p->need;
}

/*
 * Starts a reassembly for the ClientHello at the start of this segment when its record goes
 * beyond the segment. Returns 1 when one was started (report nothing yet), 0 when the
 * segment holds the whole record.
 */
static __always_inline int loupe_tls_start_pending(struct __sk_buff *skb,
						   const struct loupe_pkt *pkt,
						   struct loupe_scratch *s, __u8 dir)
{
	struct loupe_tls_pending *p = &s->pending;
	struct loupe_flow_key key __attribute__((aligned(8)));
	__u32 need = loupe_tls_record_len(&s->head), n = pkt->payload_len;

	if (need <= n || n >= LOUPE_L7_BUF_MAX || pkt->protocol != IPPROTO_TCP)
		return 0;
	LOUPE_BARRIER_VAR(n);
	if (n == 0 || n > LOUPE_L7_BUF_MAX)
		return 0;
	if (bpf_skb_load_bytes(skb, pkt->payload_off, p->buf.data, n))
		return 0;
	p->buf.len = n;
	p->buf.total = n;
	p->need = need < LOUPE_L7_BUF_MAX ? need : LOUPE_L7_BUF_MAX;
	p->next_seq = pkt->tcp_seq + n;
	p->dir = dir;
	p->pad = 0;
	loupe_tls_pending_key(&key, pkt, dir);
	return bpf_map_update_elem(&loupe_tls_pending, &key, p, BPF_ANY) == 0;
}

#endif
