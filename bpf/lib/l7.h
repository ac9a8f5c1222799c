/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the L7 parsers share: the head of the payload copied into per-CPU scratch memory,
 * bounded reads from it (falling back to the packet past the head), and word-at-a-time byte
 * search. Not for any one protocol.
 */
#ifndef LOUPE_BPF_L7_H
#define LOUPE_BPF_L7_H

#include "lib/events.h"

#define LOUPE_HEAD_MASK (LOUPE_HTTP_SCAN_MAX - 1)

#define LOUPE_ONES  0x0101010101010101ULL
#define LOUPE_HIGHS 0x8080808080808080ULL

/* Cursor fields are read and written through volatile so that the verifier sees unknown
 * values coming back from memory (see struct loupe_scratch). */
#define LOUPE_CUR_GET(s, f)    (*(volatile __u32 *)&(s)->cur.f)
#define LOUPE_CUR_SET(s, f, v) (*(volatile __u32 *)&(s)->cur.f = (v))

/* Copies up to LOUPE_HTTP_SCAN_MAX payload bytes to s->head; returns the count (0: none). */
static __always_inline __u32 loupe_l7_load_head(struct __sk_buff *skb, const struct loupe_pkt *pkt,
						struct loupe_scratch *s)
{
	__u32 len = pkt->payload_len;

	if (len > LOUPE_HTTP_SCAN_MAX)
		len = LOUPE_HTTP_SCAN_MAX;
	LOUPE_BARRIER_VAR(len);
	if (len == 0 || len > LOUPE_HTTP_SCAN_MAX)
		return 0;
	if (bpf_skb_load_bytes(skb, pkt->payload_off, s->head, len))
		return 0;
	s->head_len = len;
	return len;
}

/*
 * Eight bytes at any offset. The barrier hides the byte array's alignment from clang, which
 * would otherwise split the load into eight; x86 and arm64 load unaligned words natively.
 */
static __always_inline __u64 loupe_head_u64(const struct loupe_scratch *s, __u32 off)
{
	const __u8 *p = &s->head[off & LOUPE_HEAD_MASK];

	LOUPE_BARRIER_VAR(p);
	return *(const __u64 *)p;
}

static __always_inline __u8 loupe_head_u8(const struct loupe_scratch *s, __u32 off)
{
	return s->head[off & LOUPE_HEAD_MASK];
}

/*
 * Reads @size (1, 2 or 4) bytes at payload offset @off, big-endian, into @ret. From the head
 * when it holds them, else from the packet. Returns 0, or -1 past the end of the payload.
 */
static __always_inline int loupe_l7_read_be(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					    const struct loupe_scratch *s, __u32 off, __u32 size,
					    __u32 *ret)
{
	__u8 b[4] = {};
	__u32 i;

	if (off + size > pkt->payload_len || off > 0xffff)
		return -1;
	if (off + size <= s->head_len) {
		__u32 v = 0;

		for (i = 0; i < size && i < 4; i++)
			v = (v << 8) | loupe_head_u8(s, off + i);
		*ret = v;
		return 0;
	}
	if (size == 1) {
		if (bpf_skb_load_bytes(skb, pkt->payload_off + off, b, 1))
			return -1;
		*ret = b[0];
	} else if (size == 2) {
		if (bpf_skb_load_bytes(skb, pkt->payload_off + off, b, 2))
			return -1;
		*ret = (b[0] << 8) | b[1];
	} else {
		if (bpf_skb_load_bytes(skb, pkt->payload_off + off, b, 4))
			return -1;
		*ret = ((__u32)b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
	}
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

#define LOUPE_LANES(c) ((__u64)(c) * LOUPE_ONES)

/*
 * Copies @len bytes at payload offset @off into @dst (capacity @cap including the NUL) and
 * terminates it. Longer values are cut; returns 1 when cut, 0 otherwise, -1 on failure.
 */
static __always_inline int loupe_l7_copy_str(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					     __u32 off, __u32 len, char *dst, __u32 cap)
{
	int cut = 0;

	if (len >= cap) {
		len = cap - 1;
		cut = 1;
	}
	len &= 0x1ff;
	if (len == 0 || len >= cap) {
		dst[0] = 0;
		return len == 0 ? cut : -1;
	}
	if (bpf_skb_load_bytes(skb, pkt->payload_off + off, dst, len)) {
		dst[0] = 0;
		return -1;
	}
	dst[len & (cap - 1)] = 0;
	return cut;
}

/*
 * Copies cur.out bytes at payload offset cur.start, a string that lies in the head, into
 * @dst (@cap bytes, a power of two, cur.out < @cap) and terminates it: words from the
 * scratch copy instead of another call into the packet. Offset and length come from memory,
 * so the verifier sees one unknown string, not every possible one. Bytes after the NUL up to
 * the next word boundary are unspecified.
 */
static __always_inline void loupe_l7_copy_head_str(struct loupe_scratch *s, char *dst, __u32 cap)
{
	__u32 j;

	for (j = 0; j < LOUPE_HTTP_PATH_MAX / 8; j++) {
		if (j * 8 >= LOUPE_CUR_GET(s, out) || j * 8 + 8 > cap)
			break;
		*(__u64 *)&dst[j * 8] = loupe_head_u64(s, LOUPE_CUR_GET(s, start) + j * 8);
	}
	dst[LOUPE_CUR_GET(s, out) & (cap - 1)] = 0;
}

#endif
