/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TLS ClientHello at the start of a segment: server_name, ALPN (raw list), legacy_version
 * and the highest supported_versions entry. Extensions are walked by their lengths, from the
 * head copy where it holds them and from the packet beyond it, so a large ClientHello
 * (post-quantum key shares) still yields an SNI placed last. Not for other handshake
 * messages or for ClientHellos split over segments.
 */
#ifndef LOUPE_BPF_L7_TLS_H
#define LOUPE_BPF_L7_TLS_H

#include "lib/l7.h"

#define LOUPE_TLS_EXT_MAX	   48 /* extensions walked */
#define LOUPE_TLS_VERSIONS_MAX	   16
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

static __always_inline void loupe_tls_read_sni(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					       const struct loupe_scratch *s,
					       struct loupe_event_tls *ev, __u32 off, __u32 ext_len)
{
	__u32 type, name_len;
	int cut;

	/* server_name_list length (2), name_type (1), name length (2), name */
	if (ext_len < 5 || loupe_l7_read_be(skb, pkt, s, off + 2, 1, &type) || type != 0 ||
	    loupe_l7_read_be(skb, pkt, s, off + 3, 2, &name_len))
		return;
	if (name_len == 0 || name_len + 5 > ext_len || off + 5 + name_len > pkt->payload_len)
		return;
	cut = loupe_l7_copy_str(skb, pkt, off + 5, name_len, ev->sni, LOUPE_TLS_SNI_MAX);
	if (cut < 0)
		return;
	if (cut)
		ev->flags |= LOUPE_L7F_SNI_TRUNCATED;
	ev->sni_len = name_len < LOUPE_TLS_SNI_MAX ? name_len : LOUPE_TLS_SNI_MAX - 1;
}

static __always_inline void loupe_tls_read_alpn(struct __sk_buff *skb, const struct loupe_pkt *pkt,
						struct loupe_event_tls *ev, __u32 off, __u32 ext_len)
{
	__u32 len = ext_len - 2; /* without the list's own length */

	if (ext_len <= 2 || off + ext_len > pkt->payload_len)
		return;
	if (len > LOUPE_TLS_ALPN_MAX) {
		len = LOUPE_TLS_ALPN_MAX;
		ev->flags |= LOUPE_L7F_ALPN_TRUNCATED;
	}
	LOUPE_BARRIER_VAR(len);
	if (len > LOUPE_TLS_ALPN_MAX)
		return;
	LOUPE_BARRIER_VAR(len);
	if (len == 0)
		return;
	if (bpf_skb_load_bytes(skb, pkt->payload_off + off + 2, ev->alpn, len))
		return;
	ev->alpn_len = len;
}

static __always_inline void loupe_tls_read_versions(struct __sk_buff *skb,
						    const struct loupe_pkt *pkt,
						    const struct loupe_scratch *s,
						    struct loupe_event_tls *ev, __u32 off)
{
	__u32 list_len, v, i;

	if (loupe_l7_read_be(skb, pkt, s, off, 1, &list_len))
		return;
	for (i = 0; i < LOUPE_TLS_VERSIONS_MAX; i++) {
		if (2 * i + 2 > list_len || loupe_l7_read_be(skb, pkt, s, off + 1 + 2 * i, 2, &v))
			break;
		if (!loupe_tls_is_grease(v) && v > ev->max_version)
			ev->max_version = v;
	}
}

/*
 * Parses a ClientHello at the start of the payload into s->ev.tls. Returns 1 when an event
 * is ready, 0 when the payload is not a ClientHello.
 */
static __always_inline int loupe_tls_parse(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					   struct loupe_scratch *s, __u32 head_len)
{
	struct loupe_event_tls *ev = &s->ev.tls;
	__u32 v, off, end, rec_end, hs_end, ext_type, ext_len, i;

	/* record: type 22, version, length; handshake: type 1, 24-bit length */
	if (head_len < 11 || loupe_head_u8(s, 0) != 0x16 || loupe_head_u8(s, 5) != 0x01)
		return 0;
	rec_end = 5 + ((loupe_head_u8(s, 3) << 8) | loupe_head_u8(s, 4));
	hs_end = 9 + ((loupe_head_u8(s, 6) << 16) | (loupe_head_u8(s, 7) << 8) | loupe_head_u8(s, 8));
	end = hs_end < rec_end ? hs_end : rec_end;

	ev->flags = 0;
	ev->legacy_version = (loupe_head_u8(s, 9) << 8) | loupe_head_u8(s, 10);
	ev->max_version = 0;
	ev->sni_len = 0;
	ev->alpn_len = 0;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	ev->sni[0] = 0;

	/* legacy_version (2), random (32), session id, cipher suites, compression methods */
	off = 9 + 2 + 32;
	if (loupe_l7_read_be(skb, pkt, s, off, 1, &v))
		return 0;
	off += 1 + v;
	if (loupe_l7_read_be(skb, pkt, s, off, 2, &v))
		return 0;
	off += 2 + v;
	if (loupe_l7_read_be(skb, pkt, s, off, 1, &v))
		return 0;
	off += 1 + v;
	if (loupe_l7_read_be(skb, pkt, s, off, 2, &v))
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
		    loupe_l7_read_be(skb, pkt, s, off, 2, &ext_type) ||
		    loupe_l7_read_be(skb, pkt, s, off + 2, 2, &ext_len))
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
		loupe_tls_read_sni(skb, pkt, s, ev, off, LOUPE_CUR_GET(s, sni_len));
	off = LOUPE_CUR_GET(s, alpn_off);
	if (off)
		loupe_tls_read_alpn(skb, pkt, ev, off, LOUPE_CUR_GET(s, alpn_len));
	off = LOUPE_CUR_GET(s, versions_off);
	if (off)
		loupe_tls_read_versions(skb, pkt, s, ev, off);
	return 1;
}

#endif
