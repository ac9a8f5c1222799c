/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the L7 parsers share: a buffer of payload bytes (the head of a segment copied into
 * per-CPU scratch memory, or a reassembled message), bounded reads from it that fall back to
 * the packet past its end, string copies, and word-at-a-time byte search. Not for any one
 * protocol.
 */
#ifndef LOUPE_BPF_L7_H
#define LOUPE_BPF_L7_H

#include "lib/events.h"

#define LOUPE_BUF_MASK (LOUPE_L7_BUF_MAX - 1)

#define LOUPE_ONES  0x0101010101010101ULL
#define LOUPE_HIGHS 0x8080808080808080ULL

/* Cursor fields are read and written through volatile so that the verifier sees unknown
 * values coming back from memory (see struct loupe_scratch). */
#define LOUPE_CUR_GET(s, f)    (*(volatile __u32 *)&(s)->cur.f)
#define LOUPE_CUR_SET(s, f, v) (*(volatile __u32 *)&(s)->cur.f = (v))

/*
 * Copies up to @max (at most LOUPE_L7_BUF_MAX) payload bytes into s->head; reads past them
 * go to the packet. Returns the count (0: none).
 */
static __always_inline __u32 loupe_l7_load_head(struct __sk_buff *skb, const struct loupe_pkt *pkt,
						struct loupe_scratch *s, __u32 max)
{
	__u32 len = pkt->payload_len;

	if (len > max)
		len = max;
	LOUPE_BARRIER_VAR(len);
	if (len == 0 || len > LOUPE_L7_BUF_MAX)
		return 0;
	if (bpf_skb_load_bytes(skb, pkt->payload_off, s->head.data, len))
		return 0;
	s->head.len = len;
	s->head.total = pkt->payload_len;
	/* read back: a cut length (exactly @max) would otherwise double the parsers' states */
	return *(volatile __u32 *)&s->head.len;
}

/*
 * Eight bytes at any offset. The barrier hides the byte array's alignment from clang, which
 * would otherwise split the load into eight; x86 and arm64 load unaligned words natively.
 */
static __always_inline __u64 loupe_buf_u64(const struct loupe_l7_buf *b, __u32 off)
{
	const __u8 *p = &b->data[off & LOUPE_BUF_MASK];

	LOUPE_BARRIER_VAR(p);
	return *(const __u64 *)p;
}

static __always_inline __u8 loupe_buf_u8(const struct loupe_l7_buf *b, __u32 off)
{
	return b->data[off & LOUPE_BUF_MASK];
}

/*
 * Reads @size (1, 2 or 4) bytes at payload offset @off, big-endian, into @ret: from the
 * buffer when it holds them, else from the packet. Returns 0, or -1 past b->total.
 */
static __always_inline int loupe_l7_read_be(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					    const struct loupe_l7_buf *b, __u32 off, __u32 size,
					    __u32 *ret)
{
	__u8 raw[4] = {};
	__u32 i, v = 0;

	if (off + size > b->total || off > 0xffff)
		return -1;
	if (off + size <= b->len) {
		for (i = 0; i < size && i < 4; i++)
			v = (v << 8) | loupe_buf_u8(b, off + i);
		*ret = v;
		return 0;
	}
	if (size > 4 || bpf_skb_load_bytes(skb, pkt->payload_off + off, raw, size))
		return -1;
	for (i = 0; i < size && i < 4; i++)
		v = (v << 8) | raw[i];
	*ret = v;
	return 0;
}

/*
 * Byte index (0..7) of the lowest byte flagged in @t, a haszero() result: the flag of the
 * first zero byte is exact (borrows only reach higher bytes).
 */
static __always_inline __u32 loupe_first_flagged_byte(__u64 t)
{
	__u64 low = (t & -t) >> 7; /* 1 << (8 * k) */

	return (low * 0x0001020304050607ULL) >> 56;
}

/* haszero(w ^ pattern): flags the bytes of @w equal to the byte in every lane of @pattern. */
static __always_inline __u64 loupe_bytes_equal(__u64 w, __u64 pattern)
{
	__u64 v = w ^ pattern;

	return (v - LOUPE_ONES) & ~v & LOUPE_HIGHS;
}

#define LOUPE_LANES(c) ((__u64)(c)*LOUPE_ONES)

/*
 * Copies the string of cur.out bytes at payload offset cur.start into @dst (@cap bytes, a
 * power of two and a multiple of 8; cur.out < @cap) and terminates it: words from the
 * buffer when it holds the string, else one read from the packet. Offset and length come
 * from memory, so the verifier sees one unknown string, not every possible one. Bytes after
 * the NUL up to the next word boundary are unspecified. Returns 0, or -1 when the packet
 * had no such bytes (@dst is then empty).
 */
static __always_inline int loupe_l7_copy_str(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					     struct loupe_scratch *s, const struct loupe_l7_buf *b,
					     char *dst, __u32 cap)
{
	__u32 j, len;

	if (LOUPE_CUR_GET(s, start) + LOUPE_CUR_GET(s, out) <= b->len) {
		for (j = 0; j < LOUPE_HTTP_PATH_MAX / 8; j++) {
			if (j * 8 >= LOUPE_CUR_GET(s, out) || j * 8 + 8 > cap)
				break;
			*(__u64 *)&dst[j * 8] = loupe_buf_u64(b, LOUPE_CUR_GET(s, start) + j * 8);
		}
		dst[LOUPE_CUR_GET(s, out) & (cap - 1)] = 0;
		return 0;
	}
	len = LOUPE_CUR_GET(s, out);
	if (len == 0 || len >= cap ||
	    bpf_skb_load_bytes(skb, pkt->payload_off + LOUPE_CUR_GET(s, start), dst, len)) {
		dst[0] = 0;
		return len == 0 ? 0 : -1;
	}
	dst[len & (cap - 1)] = 0;
	return 0;
}

#endif
