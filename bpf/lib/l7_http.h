/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP/1.x requests from the first bytes of a segment: the method, the request target (kept
 * up to LOUPE_HTTP_PATH_MAX - 1 bytes) and the Host header (searched for in the first
 * LOUPE_HTTP_SCAN_MAX bytes, at most LOUPE_HTTP_SCAN_STEPS lines or words). Header names are
 * matched case-insensitively, the value is stripped of surrounding blanks. Not for responses
 * or bodies.
 */
#ifndef LOUPE_BPF_L7_HTTP_H
#define LOUPE_BPF_L7_HTTP_H

#include "lib/l7.h"

#define LOUPE_HTTP_SCAN_STEPS 256
#define LOUPE_HTTP_OWS_MAX    16 /* blanks skipped around a header value */
/* words searched for the end of a value: a little more than what is kept of it */
#define LOUPE_HTTP_VALUE_WORDS (LOUPE_HTTP_PATH_MAX / 8 + 1)

/* First four bytes of each method as a little-endian u32, as loaded from the packet. */
#define LOUPE_STR4(a, b, c, d)                                                                     \
	((__u32)(a) | ((__u32)(b) << 8) | ((__u32)(c) << 16) | ((__u32)(d) << 24))

/*
 * Length of the method that begins @w (the first eight payload bytes, little-endian), its
 * following space included in the check; 0 when @w does not begin a request.
 */
static __always_inline __u32 loupe_http_method_len(__u64 w)
{
	__u8 c4 = w >> 32, c5 = w >> 40, c6 = w >> 48, c7 = w >> 56;

	switch ((__u32)w) {
	case LOUPE_STR4('G', 'E', 'T', ' '):
	case LOUPE_STR4('P', 'U', 'T', ' '):
		return 3;
	case LOUPE_STR4('P', 'O', 'S', 'T'):
		return c4 == ' ' ? 4 : 0;
	case LOUPE_STR4('H', 'E', 'A', 'D'):
		return c4 == ' ' ? 4 : 0;
	case LOUPE_STR4('P', 'A', 'T', 'C'):
		return c4 == 'H' && c5 == ' ' ? 5 : 0;
	case LOUPE_STR4('T', 'R', 'A', 'C'):
		return c4 == 'E' && c5 == ' ' ? 5 : 0;
	case LOUPE_STR4('D', 'E', 'L', 'E'):
		return c4 == 'T' && c5 == 'E' && c6 == ' ' ? 6 : 0;
	case LOUPE_STR4('C', 'O', 'N', 'N'):
		return c4 == 'E' && c5 == 'C' && c6 == 'T' && c7 == ' ' ? 7 : 0;
	case LOUPE_STR4('O', 'P', 'T', 'I'):
		return c4 == 'O' && c5 == 'N' && c6 == 'S' && c7 == ' ' ? 7 : 0;
	default:
		return 0;
	}
}

/* Cheap first test on the first four payload bytes (little-endian). */
static __always_inline bool loupe_http_maybe_request(__u32 first4)
{
	switch (first4) {
	case LOUPE_STR4('G', 'E', 'T', ' '):
	case LOUPE_STR4('P', 'U', 'T', ' '):
	case LOUPE_STR4('P', 'O', 'S', 'T'):
	case LOUPE_STR4('H', 'E', 'A', 'D'):
	case LOUPE_STR4('P', 'A', 'T', 'C'):
	case LOUPE_STR4('T', 'R', 'A', 'C'):
	case LOUPE_STR4('D', 'E', 'L', 'E'):
	case LOUPE_STR4('C', 'O', 'N', 'N'):
	case LOUPE_STR4('O', 'P', 'T', 'I'):
		return true;
	default:
		return false;
	}
}

/*
 * Loops that go on in one way only keep their cursor in a register. find_host can go on in
 * two ways (the next word, the next line); its cursor goes through memory so that the
 * verifier's states converge (see struct loupe_scratch).
 */

/*
 * Finds the end of the request target that starts at cur.start: the first space. Sets
 * cur.end (head_len when the head ends first).
 */
static __always_inline void loupe_http_find_path_end(struct loupe_scratch *s, __u32 head_len)
{
	__u32 j, pos = LOUPE_CUR_GET(s, start);

	LOUPE_CUR_SET(s, end, head_len);
	for (j = 0; j < LOUPE_HTTP_VALUE_WORDS; j++) {
		__u64 w, t;

		if (pos >= head_len)
			break;
		w = loupe_buf_u64(&s->head, pos);
		t = loupe_bytes_equal(w, LOUPE_LANES(' ')) |
		    loupe_bytes_equal(w, LOUPE_LANES('\r'));
		if (t) {
			pos += loupe_first_flagged_byte(t);
			if (pos < head_len)
				LOUPE_CUR_SET(s, end, pos);
			break;
		}
		pos += 8;
	}
	/* a target longer than what is kept: the headers are searched for after what was read */
	if (j == LOUPE_HTTP_VALUE_WORDS && pos < head_len)
		LOUPE_CUR_SET(s, end, pos);
}

/*
 * Finds the Host header line: walks the header lines from cur.end (the request target's
 * end). Sets cur.start to the first byte after "host:" and returns 1, or returns 0 at the end
 * of the header block, -1 at the end of the head or of the step budget (a later segment may
 * hold it).
 */
static __always_inline int loupe_http_find_host(struct loupe_scratch *s, __u32 head_len)
{
	__u32 j;

	LOUPE_CUR_SET(s, pos, LOUPE_CUR_GET(s, end));
	for (j = 0; j < LOUPE_HTTP_SCAN_STEPS; j++) {
		__u32 pos = LOUPE_CUR_GET(s, pos);
		__u64 t, line;

		if (pos >= head_len)
			return -1;
		t = loupe_bytes_equal(loupe_buf_u64(&s->head, pos), LOUPE_LANES('\n'));
		if (!t) {
			LOUPE_CUR_SET(s, pos, pos + 8);
			continue;
		}
		pos += loupe_first_flagged_byte(t) + 1; /* the next line */
		if (pos >= head_len)
			return -1;
		line = loupe_buf_u64(&s->head, pos);
		if ((__u8)line == '\n' || (__u16)line == ('\r' | ('\n' << 8)))
			return 0; /* empty line: end of the header block */
		if (pos + 5 <= head_len &&
		    ((__u32)line | 0x20202020) == LOUPE_STR4('h', 'o', 's', 't') &&
		    (__u8)(line >> 32) == ':') {
			LOUPE_CUR_SET(s, start, pos + 5);
			return 1;
		}
		LOUPE_CUR_SET(s, pos, pos);
	}
	return -1;
}

/*
 * Bounds the Host value that begins at cur.start: skips leading blanks, ends at CR or LF,
 * drops trailing blanks. Sets cur.start and cur.end. Returns 0; 1 when the value is longer
 * than what is searched for its end (it is cut); 2 when the head ended before the line did
 * (cut, and a later segment may hold the rest).
 */
static __always_inline int loupe_http_trim_value(struct loupe_scratch *s, __u32 head_len)
{
	int cut = 1;
	__u32 j, start = LOUPE_CUR_GET(s, start), pos, end;

	for (j = 0; j < LOUPE_HTTP_OWS_MAX; j++) {
		__u8 c;

		if (start >= head_len)
			break;
		c = loupe_buf_u8(&s->head, start);
		if (c != ' ' && c != '\t')
			break;
		start++;
	}
	LOUPE_CUR_SET(s, start, start);

	LOUPE_CUR_SET(s, end, head_len);
	pos = LOUPE_CUR_GET(s, start);
	for (j = 0; j < LOUPE_HTTP_VALUE_WORDS; j++) {
		__u64 w, t;

		if (pos >= head_len)
			break;
		w = loupe_buf_u64(&s->head, pos);
		t = loupe_bytes_equal(w, LOUPE_LANES('\r')) |
		    loupe_bytes_equal(w, LOUPE_LANES('\n'));
		if (t) {
			pos += loupe_first_flagged_byte(t);
			if (pos < head_len) {
				LOUPE_CUR_SET(s, end, pos);
				cut = 0;
			}
			break;
		}
		pos += 8;
	}

	if (cut && pos >= head_len)
		cut = 2;

	end = LOUPE_CUR_GET(s, end);
	start = LOUPE_CUR_GET(s, start);
	for (j = 0; j < LOUPE_HTTP_OWS_MAX; j++) {
		__u8 c;

		if (end <= start)
			break;
		c = loupe_buf_u8(&s->head, end - 1);
		if (c != ' ' && c != '\t')
			break;
		end--;
	}
	LOUPE_CUR_SET(s, end, end);
	return cut;
}

/*
 * Parses an HTTP request at the start of the payload (already in s->head) into
 * s->ev.http. Returns 1 when an event is ready, 0 when the payload is not a request.
 */
static __always_inline int loupe_http_parse(struct __sk_buff *skb, const struct loupe_pkt *pkt,
					    struct loupe_scratch *s, __u32 head_len)
{
	struct loupe_event_http *ev = &s->ev.http;
	__u32 mlen, start, end, len;
	char *host;
	int found, cut;
	__u64 w;

	if (head_len < 8)
		return 0;
	w = loupe_buf_u64(&s->head, 0);
	mlen = loupe_http_method_len(w);
	if (!mlen)
		return 0;

	ev->flags = 0;
	ev->pad = 0;
	/* the method's bytes, NUL-padded: mlen is at most 7 */
	*(__u64 *)ev->method = w & ((1ULL << (mlen * 8)) - 1);

	LOUPE_CUR_SET(s, start, mlen + 1);
	loupe_http_find_path_end(s, head_len);
	start = LOUPE_CUR_GET(s, start);
	end = LOUPE_CUR_GET(s, end);
	if (end <= start || end > head_len)
		return 0; /* no request target */
	if (end == head_len)
		ev->flags |= LOUPE_L7F_INCOMPLETE;
	len = end - start;
	if (len >= LOUPE_HTTP_PATH_MAX) {
		len = LOUPE_HTTP_PATH_MAX - 1;
		ev->flags |= LOUPE_L7F_PATH_TRUNCATED;
	}
	ev->path_len = len;
	LOUPE_CUR_SET(s, out, len);
	loupe_l7_copy_str(skb, pkt, s, &s->head, ev->strings, LOUPE_HTTP_PATH_MAX);

	/* the Host value follows the path's NUL; empty until found */
	host = &ev->strings[ev->path_len & (LOUPE_HTTP_PATH_MAX - 1)] + 1;
	host[0] = 0;
	ev->host_len = 0;
	if (end < head_len && loupe_buf_u8(&s->head, end) == '\r') {
		/* no version after the target: HTTP/0.9, a request line alone, no headers */
		ev->flags |= LOUPE_L7F_HOST_MISSING;
		return 1;
	}
	found = loupe_http_find_host(s, head_len);
	if (found <= 0) {
		ev->flags |= LOUPE_L7F_HOST_MISSING;
		if (found < 0)
			ev->flags |= LOUPE_L7F_INCOMPLETE;
		return 1;
	}
	cut = loupe_http_trim_value(s, head_len);
	if (cut)
		ev->flags |= LOUPE_L7F_HOST_TRUNCATED;
	if (cut == 2)
		ev->flags |= LOUPE_L7F_INCOMPLETE;
	start = LOUPE_CUR_GET(s, start);
	end = LOUPE_CUR_GET(s, end);
	if (end <= start || end > head_len)
		return 1; /* an empty Host */
	len = end - start;
	if (len >= LOUPE_HTTP_HOST_MAX) {
		len = LOUPE_HTTP_HOST_MAX - 1;
		ev->flags |= LOUPE_L7F_HOST_TRUNCATED;
	}
	ev->host_len = len;
	LOUPE_CUR_SET(s, out, len);
	loupe_l7_copy_str(skb, pkt, s, &s->head, host, LOUPE_HTTP_HOST_MAX);
	return 1;
}

#endif
