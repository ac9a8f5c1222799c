/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * DNS queries (QR = 0) over UDP, and over TCP when the query sits in one segment: the first
 * question's name (dotted, at most 253 characters), type and class. Compression pointers are
 * followed backwards only and at most LOUPE_DNS_JUMPS_MAX times; a looping pointer, a bad
 * label or an over-long name gives an event flagged LOUPE_L7F_DNS_NAME_INVALID with an empty
 * name. Not for answers.
 */
#ifndef LOUPE_BPF_L7_DNS_H
#define LOUPE_BPF_L7_DNS_H

#include "lib/l7.h"

#define LOUPE_DNS_PORT	    53
#define LOUPE_DNS_HDR_LEN   12
#define LOUPE_DNS_JUMPS_MAX 8
#define LOUPE_DNS_STEPS	    (127 + LOUPE_DNS_JUMPS_MAX + 1) /* labels, jumps, the end */

/* cur.pos: read position; cur.out: bytes written; cur.jumps: pointers followed; cur.end: where the question continues after the name;
 * cur.start: where the message starts (pointers are relative to it). */
enum loupe_dns_name_result {
	LOUPE_DNS_NAME_OK = 0,
	LOUPE_DNS_NAME_INVALID = 1,
	LOUPE_DNS_NAME_TRUNCATED = 2, /* the packet ends inside the name: invalid too */
};

/*
 * Walks the name label by label: each label is copied as eight whole words (labels are at
 * most 63 bytes), which the next label's dot or the final NUL partly overwrite. Cheaper than
 * a byte loop, and a far smaller loop for the verifier. The copies may reach 63 bytes past
 * the name's limit: struct loupe_scratch has slack after the event for them.
 */
static __always_inline int loupe_dns_read_name(struct loupe_scratch *s, __u32 head_len, char *out)
{
	__u32 j, k;

	for (j = 0; j < LOUPE_DNS_STEPS; j++) {
		__u32 pos = LOUPE_CUR_GET(s, pos);
		__u32 o = LOUPE_CUR_GET(s, out);
		__u8 c;

		if (pos >= head_len)
			return LOUPE_DNS_NAME_TRUNCATED;
		c = loupe_buf_u8(&s->head, pos);
		if (c == 0) {
			if (!LOUPE_CUR_GET(s, jumps))
				LOUPE_CUR_SET(s, end, pos + 1);
			/* the last label's dot becomes the NUL; the root is "" */
			if (o)
				o--;
			out[o & (LOUPE_DNS_NAME_MAX - 1)] = 0;
			LOUPE_CUR_SET(s, out, o);
			return LOUPE_DNS_NAME_OK;
		}
		if ((c & 0xc0) == 0xc0) {
			__u32 target;

			if (pos + 1 >= head_len)
				return LOUPE_DNS_NAME_TRUNCATED;
			target = LOUPE_CUR_GET(s, start) +
				 (((c & 0x3f) << 8) | loupe_buf_u8(&s->head, pos + 1));
			if (!LOUPE_CUR_GET(s, jumps))
				LOUPE_CUR_SET(s, end, pos + 2);
			/* only backwards, and not forever: a pointer loop is an invalid name */
			if (target >= pos || LOUPE_CUR_GET(s, jumps) >= LOUPE_DNS_JUMPS_MAX)
				return LOUPE_DNS_NAME_INVALID;
			LOUPE_CUR_SET(s, jumps, LOUPE_CUR_GET(s, jumps) + 1);
			LOUPE_CUR_SET(s, pos, target);
			continue;
		}
		if (c & 0xc0)
			return LOUPE_DNS_NAME_INVALID; /* 0x40, 0x80: reserved label types */
		/* each label is followed by a dot; the name, without its last dot, stays within
		 * 253 characters */
		if (o + c > LOUPE_DNS_NAME_MAX - 3)
			return LOUPE_DNS_NAME_INVALID;
		if (pos + 1 + c > head_len)
			return LOUPE_DNS_NAME_TRUNCATED;
		for (k = 0; k < 8; k++)
			*(__u64 *)&out[(o & (LOUPE_DNS_NAME_MAX - 1)) + k * 8] =
				loupe_buf_u64(&s->head, pos + 1 + k * 8);
		out[(o + c) & (LOUPE_DNS_NAME_MAX - 1)] = '.';
		LOUPE_CUR_SET(s, out, o + c + 1);
		LOUPE_CUR_SET(s, pos, pos + 1 + c);
	}
	return LOUPE_DNS_NAME_INVALID;
}

/*
 * Parses a DNS query at the start of the payload (after the 2-byte length over TCP) into
 * s->ev.dns. Returns 1 when an event is ready, 0 when the payload is not a query.
 */
static __always_inline int loupe_dns_parse(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					   struct loupe_scratch *s, __u32 head_len)
{
	struct loupe_event_dns *ev = &s->ev.dns;
	__u32 msg = pkt->protocol == IPPROTO_TCP ? 2 : 0;
	__u32 end, qdcount;
	int res;

	if (head_len < msg + LOUPE_DNS_HDR_LEN + 1)
		return 0;
	/* over TCP, the length prefix must say the query ends within this segment */
	if (msg &&
	    ((loupe_buf_u8(&s->head, 0) << 8) | loupe_buf_u8(&s->head, 1)) > pkt->payload_len - 2)
		return 0;
	/* QR = 0 (a query), opcode QUERY (0), at least one question */
	if (loupe_buf_u8(&s->head, msg + 2) & 0xf8)
		return 0;
	qdcount = (loupe_buf_u8(&s->head, msg + 4) << 8) | loupe_buf_u8(&s->head, msg + 5);
	if (qdcount == 0)
		return 0;

	ev->flags = msg ? LOUPE_L7F_DNS_OVER_TCP : 0;
	ev->id = (loupe_buf_u8(&s->head, msg) << 8) | loupe_buf_u8(&s->head, msg + 1);
	ev->qtype = 0;
	ev->qclass = 0;
	ev->qname_len = 0;
	ev->pad[0] = ev->pad[1] = ev->pad[2] = 0;
	ev->qname[0] = 0;

	LOUPE_CUR_SET(s, pos, msg + LOUPE_DNS_HDR_LEN);
	LOUPE_CUR_SET(s, out, 0);
	LOUPE_CUR_SET(s, jumps, 0);
	LOUPE_CUR_SET(s, end, 0);
	/* the message's start, through memory: UDP and TCP then share one walk of the loop */
	LOUPE_CUR_SET(s, start, msg);
	res = loupe_dns_read_name(s, head_len, ev->qname);
	if (res == LOUPE_DNS_NAME_OK) {
		ev->qname_len = LOUPE_CUR_GET(s, out);
	} else {
		ev->flags |= LOUPE_L7F_DNS_NAME_INVALID;
		ev->qname[0] = 0;
	}
	/* the type follows the name's end in the question, known once a pointer was met */
	end = LOUPE_CUR_GET(s, end);
	if (end && end + 4 <= head_len) {
		ev->qtype = (loupe_buf_u8(&s->head, end) << 8) | loupe_buf_u8(&s->head, end + 1);
		ev->qclass =
			(loupe_buf_u8(&s->head, end + 2) << 8) | loupe_buf_u8(&s->head, end + 3);
	}
	return 1;
}

#endif
