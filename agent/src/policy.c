// SPDX-License-Identifier: Apache-2.0
/*
 * Policy parser and validator: JSON text (json-c) to struct loupe_policy_set, each problem
 * refused with its JSON path, line, column and a sentence; loading files and ConfigMap
 * directories; the normalised JSON form. Not for compiling policies to maps, nor for
 * precedence at run time (only the sort into evaluation order). Never prints.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "policy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* How much of a user's string a message quotes. */
#define QUOTE_MAX 64

/* ---- names of enums ---------------------------------------------------------------------- */

static const char *const action_names[] = {
	[LOUPE_POLICY_ACTION_ALLOW] = "allow",
	[LOUPE_POLICY_ACTION_DENY] = "deny",
	[LOUPE_POLICY_ACTION_AUDIT] = "audit",
};

static const char *const direction_names[] = {
	[LOUPE_POLICY_EGRESS] = "egress",
	[LOUPE_POLICY_INGRESS] = "ingress",
};

static const char *const protocol_names[] = {
	[LOUPE_POLICY_TCP] = "TCP",
	[LOUPE_POLICY_UDP] = "UDP",
	[LOUPE_POLICY_ICMP] = "ICMP",
};

static const char *const method_names[LOUPE_POLICY_HTTP_METHODS_N] = {
	[LOUPE_POLICY_HTTP_GET] = "GET",	 [LOUPE_POLICY_HTTP_HEAD] = "HEAD",
	[LOUPE_POLICY_HTTP_POST] = "POST",	 [LOUPE_POLICY_HTTP_PUT] = "PUT",
	[LOUPE_POLICY_HTTP_DELETE] = "DELETE",	 [LOUPE_POLICY_HTTP_CONNECT] = "CONNECT",
	[LOUPE_POLICY_HTTP_OPTIONS] = "OPTIONS", [LOUPE_POLICY_HTTP_TRACE] = "TRACE",
	[LOUPE_POLICY_HTTP_PATCH] = "PATCH",
};

const char *loupe_policy_action_name(enum loupe_policy_action a)
{
	if ((unsigned int)a < ARRAY_SIZE(action_names) && action_names[a])
		return action_names[a];
	return "none";
}

const char *loupe_policy_direction_name(enum loupe_policy_direction d)
{
	if ((unsigned int)d < ARRAY_SIZE(direction_names) && direction_names[d])
		return direction_names[d];
	return "unknown";
}

const char *loupe_policy_protocol_name(enum loupe_policy_protocol p)
{
	if ((unsigned int)p < ARRAY_SIZE(protocol_names) && protocol_names[p])
		return protocol_names[p];
	return "unknown";
}

const char *loupe_policy_http_method_name(enum loupe_policy_http_method m)
{
	if ((unsigned int)m < ARRAY_SIZE(method_names))
		return method_names[m];
	return "unknown";
}

/* ---- small helpers ----------------------------------------------------------------------- */

static char *xdup(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Grows *@v (of @size-byte elements) to hold at least @need; *@cap is its capacity. */
static int grow(void **v, unsigned int *cap, unsigned int need, size_t size)
{
	unsigned int ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*v, (size_t)ncap * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

/*
 * @s as a JSON string literal for a message: quotes, escapes, and cut after QUOTE_MAX bytes
 * (not inside a UTF-8 sequence) with "..." after the closing quote.
 */
static const char *quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t n = 0, i, max = len > QUOTE_MAX ? QUOTE_MAX : len;
	int w;

	if (max < len)
		while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
			max--;
	if (size < 8) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[n++] = '"';
	for (i = 0; i < max && n + 8 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			w = snprintf(buf + n, size - n, "\\u%04x", c);
			n += (size_t)w;
		} else {
			buf[n++] = (char)c;
		}
	}
	buf[n++] = '"';
	if (i < len && n + 4 < size) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* A key that a path shows as .key; others are shown as ["key"]. */
static bool key_is_plain(const char *k, size_t len)
{
	size_t i;

	if (len == 0 || !(isalpha((unsigned char)k[0]) || k[0] == '_'))
		return false;
	for (i = 1; i < len; i++)
		if (!(isalnum((unsigned char)k[i]) || k[i] == '_' || k[i] == '-'))
			return false;
	return true;
}

/* Appends to a path in @buf (of @size bytes, *@plen used); a path that does not fit is cut. */
static void path_add_key(char *buf, size_t size, size_t *plen, const char *k, size_t klen)
{
	char q[QUOTE_MAX * 6 + 8];
	int w;

	if (key_is_plain(k, klen) && *plen + klen + 2 <= size) {
		/* the common case, without snprintf(): the scan does it for every key */
		if (*plen)
			buf[(*plen)++] = '.';
		memcpy(buf + *plen, k, klen);
		*plen += klen;
		buf[*plen] = '\0';
		return;
	}
	if (key_is_plain(k, klen))
		w = snprintf(buf + *plen, size - *plen, "%s%.*s", *plen ? "." : "", (int)klen, k);
	else
		w = snprintf(buf + *plen, size - *plen, "[%s]", quote(q, sizeof(q), k, klen));
	*plen += (size_t)w;
	if (*plen >= size)
		*plen = size - 1;
}

static void path_add_index(char *buf, size_t size, size_t *plen, size_t i)
{
	int w = snprintf(buf + *plen, size - *plen, "[%zu]", i);

	*plen += (size_t)w;
	if (*plen >= size)
		*plen = size - 1;
}

/* 1-based line and column (in UTF-8 characters) of byte @off of @s. */
static void text_position(const char *s, size_t len, size_t off, unsigned int *line,
			  unsigned int *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	if (off > len)
		off = len;
	for (i = 0; i < off; i++) {
		if (s[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)s[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

static void error_set(struct loupe_policy_error *e, const char *source, const char *path,
		      const char *fmt, va_list ap)
{
	snprintf(e->source, sizeof(e->source), "%s", source ? source : "");
	snprintf(e->path, sizeof(e->path), "%s", path ? path : "");
	e->line = 0;
	e->column = 0;
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
}

static int error_simple(struct loupe_policy_error *e, int r, const char *source, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));

static int error_simple(struct loupe_policy_error *e, int r, const char *source, const char *fmt,
			...)
{
	va_list ap;

	va_start(ap, fmt);
	error_set(e, source, "", fmt, ap);
	va_end(ap);
	return r;
}

void loupe_policy_error_setf(struct loupe_policy_error *e, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	memset(e, 0, sizeof(*e));
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

int loupe_policy_error_format(const struct loupe_policy_error *e, char *buf, size_t size)
{
	char where[64] = "";

	if (e->line)
		snprintf(where, sizeof(where), " (line %u, column %u)", e->line, e->column);
	return snprintf(buf, size, "%s%s%s%s%s%s", e->source, e->source[0] ? ": " : "", e->path,
			e->path[0] ? ": " : "", e->message, where);
}

/* ---- the strict scan: what json-c lets through, duplicate keys, where a path is ---------- */

/*
 * json-c (even with JSON_TOKENER_STRICT) accepts single-quoted strings, NaN and Infinity,
 * raw control characters in strings, "-01" and "1.", and keeps the last of duplicate keys.
 * A duplicate key in a security policy is a trap (a reviewer reads the first value, the
 * parser keeps the last), so the text is scanned again by RFC 8259's grammar. The same walk
 * finds where a JSON path is in the text, for the line and column of a validation error.
 */
struct jscan {
	const char *s;
	size_t len, pos;
	char path[256];
	size_t plen;
	/* locate mode: the deepest value on the way to target */
	const char *target;
	size_t found_off, found_plen;
	bool found;
	/* decoded keys of the objects being scanned, innermost last (a stack) */
	char *arena;
	size_t arena_len, arena_cap;
	struct jkey *keys;
	unsigned int n_keys, cap_keys;
	/* the first problem */
	bool failed;
	size_t err_off;
	char err_path[256];
	char err_msg[256];
};

struct jkey {
	size_t key; /* in the arena */
	size_t len, off;
};

static int jscan_fail(struct jscan *j, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int jscan_fail(struct jscan *j, size_t off, const char *fmt, ...)
{
	va_list ap;

	if (j->failed)
		return -EINVAL;
	j->failed = true;
	j->err_off = off;
	memcpy(j->err_path, j->path, j->plen + 1);
	va_start(ap, fmt);
	vsnprintf(j->err_msg, sizeof(j->err_msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void jscan_ws(struct jscan *j)
{
	while (j->pos < j->len && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' ||
				   j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
		j->pos++;
}

/* Notes the value at j->pos (path j->path) when it is target or on the way to it. */
static void jscan_visit(struct jscan *j, size_t off)
{
	size_t n = j->plen;

	if (!j->target || strncmp(j->target, j->path, n) != 0)
		return;
	if (j->target[n] != '\0' && n > 0 && j->target[n] != '.' && j->target[n] != '[')
		return;
	if (!j->found || n >= j->found_plen) {
		j->found = true;
		j->found_off = off;
		j->found_plen = n;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void utf8_put(char *out, size_t *n, uint32_t cp)
{
	if (cp < 0x80) {
		out[(*n)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*n)++] = (char)(0xc0 | (cp >> 6));
		out[(*n)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*n)++] = (char)(0xe0 | (cp >> 12));
		out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*n)++] = (char)(0xf0 | (cp >> 18));
		out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/*
 * A string at j->pos; with @ret_off, its decoded bytes are appended to the arena (never
 * longer than the literal) at *@ret_off. Surrogates are combined; a lone one decodes as
 * U+FFFD, as json-c does.
 */
static int jscan_string(struct jscan *j, size_t *ret_off, size_t *ret_len)
{
	size_t start = j->pos, n = 0;
	char *out = NULL;
	int i, h;

	if (j->pos >= j->len || j->s[j->pos] != '"') {
		if (j->pos < j->len && j->s[j->pos] == '\'')
			return jscan_fail(j, j->pos,
					  "not valid JSON: strings are in double quotes");
		return jscan_fail(j, j->pos, "not valid JSON: a string is expected");
	}
	if (ret_off) {
		/* the literal's length bounds the decoded one */
		size_t e = j->pos + 1, need;

		while (e < j->len && j->s[e] != '"')
			e += j->s[e] == '\\' ? 2 : 1;
		need = j->arena_len + (e - j->pos) + 1;
		if (need > j->arena_cap) {
			size_t cap = j->arena_cap ? j->arena_cap : 4096;
			char *p;

			while (cap < need)
				cap *= 2;
			p = realloc(j->arena, cap);
			if (!p)
				return -ENOMEM;
			j->arena = p;
			j->arena_cap = cap;
		}
		out = j->arena + j->arena_len;
	}
	j->pos++;
	while (j->pos < j->len && j->s[j->pos] != '"') {
		unsigned char c = (unsigned char)j->s[j->pos];
		uint32_t cp = 0;

		if (c < 0x20) {
			return jscan_fail(j, j->pos,
					  "not valid JSON: a control character in a string must "
					  "be escaped (\\n, \\t, \\u00XX)");
		}
		if (c != '\\') {
			if (out)
				out[n++] = (char)c;
			j->pos++;
			continue;
		}
		if (j->pos + 1 >= j->len)
			break;
		switch (j->s[j->pos + 1]) {
		case '"':
		case '\\':
		case '/':
			cp = (unsigned char)j->s[j->pos + 1];
			break;
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			if (j->pos + 6 > j->len)
				goto bad_escape;
			for (i = 0; i < 4; i++) {
				h = hexval(j->s[j->pos + 2 + i]);
				if (h < 0)
					goto bad_escape;
				cp = cp << 4 | (uint32_t)h;
			}
			if (cp == 0) {
				return jscan_fail(j, j->pos,
						  "\\u0000 (a NUL character) is not allowed in a "
						  "string");
			}
			j->pos += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && j->pos + 8 <= j->len &&
			    j->s[j->pos + 2] == '\\' && j->s[j->pos + 3] == 'u') {
				uint32_t lo = 0;

				for (i = 0; i < 4; i++) {
					h = hexval(j->s[j->pos + 4 + i]);
					if (h < 0)
						goto bad_escape;
					lo = lo << 4 | (uint32_t)h;
				}
				if (lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					j->pos += 6;
				}
			}
			if (cp >= 0xd800 && cp < 0xe000)
				cp = 0xfffd;
			break;
		default:
			goto bad_escape;
		}
		if (out)
			utf8_put(out, &n, cp);
		j->pos += 2;
	}
	if (j->pos >= j->len)
		return jscan_fail(j, start, "not valid JSON: the string does not end");
	j->pos++;
	if (out) {
		out[n] = '\0';
		*ret_off = j->arena_len;
		*ret_len = n;
		j->arena_len += n + 1;
	}
	return 0;

bad_escape:
	return jscan_fail(j, j->pos, "not valid JSON: a bad escape sequence in a string");
}

/* RFC 8259: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int jscan_number(struct jscan *j)
{
	size_t start = j->pos, p = j->pos;
	const char *s = j->s;

	if (p < j->len && s[p] == '-')
		p++;
	if (p < j->len && (s[p] == 'I' || s[p] == 'N'))
		return jscan_fail(j, start, "NaN and Infinity are not JSON numbers");
	if (p < j->len && s[p] == '0') {
		p++;
		if (p < j->len && isdigit((unsigned char)s[p]))
			return jscan_fail(j, start,
					  "not valid JSON: a number has no leading zeros");
	} else if (p < j->len && isdigit((unsigned char)s[p])) {
		while (p < j->len && isdigit((unsigned char)s[p]))
			p++;
	} else {
		return jscan_fail(j, start, "not valid JSON: a number is expected");
	}
	if (p < j->len && s[p] == '.') {
		p++;
		if (p >= j->len || !isdigit((unsigned char)s[p]))
			return jscan_fail(j, start,
					  "not valid JSON: a digit must follow a decimal point");
		while (p < j->len && isdigit((unsigned char)s[p]))
			p++;
	}
	if (p < j->len && (s[p] == 'e' || s[p] == 'E')) {
		p++;
		if (p < j->len && (s[p] == '+' || s[p] == '-'))
			p++;
		if (p >= j->len || !isdigit((unsigned char)s[p]))
			return jscan_fail(j, start, "not valid JSON: an exponent needs digits");
		while (p < j->len && isdigit((unsigned char)s[p]))
			p++;
	}
	j->pos = p;
	return 0;
}

static int jkey_cmp(const void *a, const void *b, void *arena)
{
	const struct jkey *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp((char *)arena + x->key, (char *)arena + y->key, n);

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static int jscan_value(struct jscan *j, unsigned int depth);

static bool jkey_eq(const struct jscan *j, const struct jkey *a, const struct jkey *b)
{
	return a->len == b->len && memcmp(j->arena + a->key, j->arena + b->key, a->len) == 0;
}

static int jscan_object(struct jscan *j, unsigned int depth)
{
	size_t base = j->plen, koff, arena_base = j->arena_len, klen, kat;
	unsigned int keys_base = j->n_keys, n, i;
	struct jkey *keys, *dup = NULL;
	int r = 0;

	j->pos++; /* '{' */
	jscan_ws(j);
	if (j->pos < j->len && j->s[j->pos] == '}') {
		j->pos++;
		return 0;
	}
	for (;;) {
		jscan_ws(j);
		koff = j->pos;
		r = jscan_string(j, &kat, &klen);
		if (r < 0)
			goto out;
		r = grow((void **)&j->keys, &j->cap_keys, j->n_keys + 1, sizeof(*j->keys));
		if (r < 0)
			goto out;
		j->keys[j->n_keys++] = (struct jkey){ kat, klen, koff };
		path_add_key(j->path, sizeof(j->path), &j->plen, j->arena + kat, klen);
		jscan_visit(j, koff);
		jscan_ws(j);
		if (j->pos >= j->len || j->s[j->pos] != ':') {
			r = jscan_fail(j, j->pos, "not valid JSON: ':' is expected after a key");
			goto out;
		}
		j->pos++;
		jscan_ws(j);
		r = jscan_value(j, depth + 1);
		if (r < 0)
			goto out;
		j->plen = base;
		j->path[base] = '\0';
		jscan_ws(j);
		if (j->pos < j->len && j->s[j->pos] == ',') {
			j->pos++;
			continue;
		}
		if (j->pos < j->len && j->s[j->pos] == '}') {
			j->pos++;
			break;
		}
		r = jscan_fail(j, j->pos, "not valid JSON: ',' or '}' is expected");
		goto out;
	}

	/* of all keys given more than once, the one whose second use comes first */
	keys = j->keys + keys_base;
	n = j->n_keys - keys_base;
	qsort_r(keys, n, sizeof(*keys), jkey_cmp, j->arena);
	for (i = 1; i < n; i++)
		if (jkey_eq(j, &keys[i], &keys[i - 1]) && (!dup || keys[i].off < dup->off) &&
		    (i < 2 || !jkey_eq(j, &keys[i], &keys[i - 2])))
			dup = &keys[i];
	if (dup) {
		unsigned int line, col;

		text_position(j->s, j->len, (dup - 1)->off, &line, &col);
		path_add_key(j->path, sizeof(j->path), &j->plen, j->arena + dup->key, dup->len);
		r = jscan_fail(j, dup->off,
			       "this key is given twice (first at line %u, column %u): an object "
			       "has one value per key",
			       line, col);
	}
out:
	j->plen = base;
	j->path[base] = '\0';
	j->n_keys = keys_base;
	j->arena_len = arena_base;
	return r;
}

static int jscan_array(struct jscan *j, unsigned int depth)
{
	size_t base = j->plen, i = 0;
	int r;

	j->pos++; /* '[' */
	jscan_ws(j);
	if (j->pos < j->len && j->s[j->pos] == ']') {
		j->pos++;
		return 0;
	}
	for (;; i++) {
		jscan_ws(j);
		path_add_index(j->path, sizeof(j->path), &j->plen, i);
		jscan_visit(j, j->pos);
		r = jscan_value(j, depth + 1);
		j->plen = base;
		j->path[base] = '\0';
		if (r < 0)
			return r;
		jscan_ws(j);
		if (j->pos < j->len && j->s[j->pos] == ',') {
			j->pos++;
			continue;
		}
		if (j->pos < j->len && j->s[j->pos] == ']') {
			j->pos++;
			return 0;
		}
		return jscan_fail(j, j->pos, "not valid JSON: ',' or ']' is expected");
	}
}

static int jscan_value(struct jscan *j, unsigned int depth)
{
	static const char *const words[] = { "true", "false", "null" };
	size_t i;
	char c;

	if (depth > 64)
		return jscan_fail(j, j->pos, "not valid JSON: nested too deep");
	jscan_ws(j);
	if (j->pos >= j->len)
		return jscan_fail(j, j->pos, "not valid JSON: a value is expected");
	c = j->s[j->pos];
	if (c == '{')
		return jscan_object(j, depth);
	if (c == '[')
		return jscan_array(j, depth);
	if (c == '"' || c == '\'')
		return jscan_string(j, NULL, NULL);
	if (c == '-' || isdigit((unsigned char)c) || c == 'N' || c == 'I')
		return jscan_number(j);
	for (i = 0; i < ARRAY_SIZE(words); i++) {
		size_t wl = strlen(words[i]);

		if (j->len - j->pos >= wl && memcmp(j->s + j->pos, words[i], wl) == 0) {
			j->pos += wl;
			return 0;
		}
	}
	return jscan_fail(j, j->pos, "not valid JSON: unexpected character");
}

/* The whole text: one value, then only white space. */
static int jscan_run(struct jscan *j)
{
	int r;

	j->path[0] = '\0';
	j->plen = 0;
	jscan_visit(j, 0);
	r = jscan_value(j, 0);
	if (r < 0)
		return r;
	jscan_ws(j);
	if (j->pos < j->len)
		return jscan_fail(j, j->pos, "not valid JSON: there is more after the value");
	return 0;
}

static void jscan_free(struct jscan *j)
{
	free(j->arena);
	free(j->keys);
}

/* Fills @e's line and column with where @e->path is in @s (or its deepest part that is). */
static void locate(const char *s, size_t len, struct loupe_policy_error *e)
{
	struct jscan j = { .s = s, .len = len, .target = e->path };

	jscan_run(&j);
	jscan_free(&j);
	if (j.found)
		text_position(s, len, j.found_off, &e->line, &e->column);
}

/* ---- validation context ------------------------------------------------------------------ */

struct pctx {
	const char *source;
	struct loupe_policy_error *err;
	char path[256];
	size_t plen;
	struct loupe_policy_error *warnings;
	unsigned int n_warnings, cap_warnings;
	bool oom;
};

static size_t push_key(struct pctx *c, const char *key)
{
	size_t old = c->plen;

	path_add_key(c->path, sizeof(c->path), &c->plen, key, strlen(key));
	return old;
}

static size_t push_index(struct pctx *c, size_t i)
{
	size_t old = c->plen;

	path_add_index(c->path, sizeof(c->path), &c->plen, i);
	return old;
}

static void pop(struct pctx *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

static int vfail(struct pctx *c, const char *fmt, va_list ap)
{
	error_set(c->err, c->source, c->path, fmt, ap);
	return -EINVAL;
}

static int fail(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct pctx *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vfail(c, fmt, ap);
	va_end(ap);
	return r;
}

/* fail() at the member @key of the current object. */
static int fail_at(struct pctx *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_at(struct pctx *c, const char *key, const char *fmt, ...)
{
	size_t old = push_key(c, key);
	va_list ap;

	va_start(ap, fmt);
	vfail(c, fmt, ap);
	va_end(ap);
	pop(c, old);
	return -EINVAL;
}

static int oom(struct pctx *c)
{
	fail(c, "out of memory");
	c->oom = true;
	return -ENOMEM;
}

static void warn(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct pctx *c, const char *fmt, ...)
{
	va_list ap;

	if (grow((void **)&c->warnings, &c->cap_warnings, c->n_warnings + 1, sizeof(*c->warnings)) <
	    0)
		return; /* a warning lost to memory pressure is no reason to refuse */
	va_start(ap, fmt);
	error_set(&c->warnings[c->n_warnings++], c->source, c->path, fmt, ap);
	va_end(ap);
}

/* ---- JSON values ------------------------------------------------------------------------- */

/* Whether @obj has @key; *@ret is its value (NULL for a JSON null). */
static bool member(json_object *obj, const char *key, json_object **ret)
{
	return json_object_object_get_ex(obj, key, ret);
}

static const char *type_desc(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
	case json_type_int:
		return "a number";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "a value";
}

static int want(struct pctx *c, json_object *v, enum json_type t, const char *what)
{
	if (json_object_get_type(v) == t)
		return 0;
	return fail(c, "%s is expected, not %s", what, type_desc(v));
}

#define want_object(c, v) want(c, v, json_type_object, "an object")
#define want_array(c, v)  want(c, v, json_type_array, "an array")
#define want_string(c, v) want(c, v, json_type_string, "a string")

/* An object's members must all be in @known (NULL-terminated); the first other is refused. */
static int check_fields(struct pctx *c, json_object *obj, const char *const *known)
{
	char list[256];
	size_t n = 0, i;

	json_object_object_foreach(obj, key, val)
	{
		(void)val;
		for (i = 0; known[i]; i++)
			if (strcmp(key, known[i]) == 0)
				break;
		if (known[i])
			continue;
		for (i = 0; known[i]; i++)
			if (strcasecmp(key, known[i]) == 0)
				return fail_at(c, key, "unknown field (did you mean \"%s\"?)",
					       known[i]);
		for (i = 0; known[i]; i++)
			n += (size_t)snprintf(list + n, n < sizeof(list) ? sizeof(list) - n : 0,
					      "%s%s", i ? ", " : "", known[i]);
		return fail_at(c, key, "unknown field; the fields here are %s", list);
	}
	return 0;
}

/* A whole number in @min..@max. */
static int get_int(struct pctx *c, json_object *v, int64_t min, int64_t max, int64_t *ret)
{
	int64_t x;

	if (json_object_get_type(v) == json_type_double)
		return fail(c, "a whole number is expected, not %s",
			    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	if (json_object_get_type(v) != json_type_int)
		return fail(c, "a number is expected, not %s", type_desc(v));
	x = json_object_get_int64(v);
	if (x == INT64_MAX || x == INT64_MIN) /* json-c saturates: the text was larger */
		return fail(c, "the number is out of range %lld..%lld", (long long)min,
			    (long long)max);
	if (x < min || x > max)
		return fail(c, "%lld is out of range %lld..%lld", (long long)x, (long long)min,
			    (long long)max);
	*ret = x;
	return 0;
}

/* One of @names (indexed by the enum, NULL holes skipped); *@ret is the index. */
static int get_enum(struct pctx *c, json_object *v, const char *const *names, size_t n, int *ret)
{
	char q[QUOTE_MAX * 6 + 8], list[128];
	const char *s;
	size_t i, len, w = 0;
	int r;

	r = want_string(c, v);
	if (r < 0)
		return r;
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	for (i = 0; i < n; i++) {
		if (names[i] && strcmp(s, names[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	}
	for (i = 0; i < n; i++)
		if (names[i])
			w += (size_t)snprintf(list + w, w < sizeof(list) ? sizeof(list) - w : 0,
					      "%s%s", w ? ", " : "", names[i]);
	return fail(c, "%s is not one of %s", quote(q, sizeof(q), s, len), list);
}

/*
 * A list: an array of 1..LOUPE_POLICY_LIST_MAX entries. An empty list is refused: it would
 * read as "match nothing" to some and as "no restriction" to others.
 */
static int get_list(struct pctx *c, json_object *v, size_t *ret_n)
{
	size_t n;
	int r;

	r = want_array(c, v);
	if (r < 0)
		return r;
	n = json_object_array_length(v);
	if (n == 0)
		return fail(c, "an empty list is not allowed: leave the field out to not restrict "
			       "by it");
	if (n > LOUPE_POLICY_LIST_MAX)
		return fail(c, "%zu entries are too many: a list holds at most %d", n,
			    LOUPE_POLICY_LIST_MAX);
	*ret_n = n;
	return 0;
}

/* The required "direction" member of @v: rules, rewrites and rate limits. */
static int parse_direction(struct pctx *c, json_object *v, enum loupe_policy_direction *ret)
{
	json_object *f;
	size_t old;
	int r, e;

	if (!member(v, "direction", &f))
		return fail_at(c, "direction", "missing: egress or ingress");
	old = push_key(c, "direction");
	r = get_enum(c, f, direction_names, ARRAY_SIZE(direction_names), &e);
	pop(c, old);
	if (r < 0)
		return r;
	*ret = (enum loupe_policy_direction)e;
	return 0;
}

/* ---- names, addresses, globs, labels ----------------------------------------------------- */

/* DNS-1123 label: metadata.name and rule names. */
static int check_label_name(struct pctx *c, const char *s, size_t len)
{
	char q[QUOTE_MAX * 6 + 8];
	size_t i;

	if (len == 0)
		return fail(c, "an empty name is not allowed");
	if (len > LOUPE_POLICY_NAME_MAX)
		return fail(c, "%s is longer than %d characters", quote(q, sizeof(q), s, len),
			    LOUPE_POLICY_NAME_MAX);
	for (i = 0; i < len; i++) {
		bool alnum = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9');

		if (alnum || (s[i] == '-' && i > 0 && i < len - 1))
			continue;
		return fail(c,
			    "%s is not a valid name: lower-case letters, digits and '-', starting "
			    "and ending with a letter or digit (a DNS-1123 label)",
			    quote(q, sizeof(q), s, len));
	}
	return 0;
}

/* The required "name" member of @v (a @noun), a DNS-1123 label, copied to *@ret_name. */
static int parse_object_name(struct pctx *c, json_object *v, const char *noun, char **ret_name)
{
	json_object *f;
	size_t old;
	int r;

	if (!member(v, "name", &f))
		return fail_at(c, "name", "missing: every %s has a name (a DNS-1123 label)", noun);
	old = push_key(c, "name");
	r = want_string(c, f);
	if (r == 0)
		r = check_label_name(c, json_object_get_string(f),
				     (size_t)json_object_get_string_len(f));
	pop(c, old);
	if (r < 0)
		return r;
	*ret_name = strdup(json_object_get_string(f));
	return *ret_name ? 0 : oom(c);
}

/*
 * A host, SNI or DNS name: exact or "*.suffix", case-insensitive (stored lower case), one
 * trailing dot dropped, labels of 1..63 of [a-z0-9_-], at most 253 characters. With
 * @allow_port (http.hosts) a ":port" suffix is taken apart.
 */
static int parse_name(struct pctx *c, const char *s, size_t len, bool allow_port,
		      struct loupe_policy_name *ret)
{
	char q[QUOTE_MAX * 6 + 8], buf[LOUPE_POLICY_DNS_NAME_MAX + 2];
	const char *colon = NULL, *label;
	size_t n, i, llen;
	long port = 0;

	quote(q, sizeof(q), s, len);
	if (len == 0)
		return fail(c, "an empty name is not allowed");
	if (allow_port)
		colon = memrchr(s, ':', len);
	if (colon) {
		const char *p = colon + 1, *end = s + len;

		if (p == end)
			return fail(c, "%s has an empty port after ':'", q);
		if (*p == '0' || end - p > 5)
			return fail(c, "%s: the port after ':' is not a port number (1..65535)", q);
		for (; p < end; p++) {
			if (!isdigit((unsigned char)*p))
				return fail(c,
					    "%s: the port after ':' is not a port number "
					    "(1..65535)",
					    q);
			port = port * 10 + (*p - '0');
		}
		if (port > 65535)
			return fail(c, "%s: the port after ':' is not a port number (1..65535)", q);
		len = (size_t)(colon - s);
		if (len == 0)
			return fail(c, "%s has no name before the port", q);
	}
	if (len > LOUPE_POLICY_DNS_NAME_MAX + 1)
		return fail(c, "%s is longer than %d characters", q, LOUPE_POLICY_DNS_NAME_MAX);
	for (i = 0; i < len; i++)
		buf[i] = (char)tolower((unsigned char)s[i]);
	n = len;
	if (buf[n - 1] == '.')
		n--;
	buf[n] = '\0';
	if (n == 0)
		return fail(c, "%s has no name, only a dot", q);
	if (n > LOUPE_POLICY_DNS_NAME_MAX)
		return fail(c, "%s is longer than %d characters", q, LOUPE_POLICY_DNS_NAME_MAX);
	ret->wildcard = false;
	label = buf;
	if (buf[0] == '*') {
		if (n == 1)
			return fail(c,
				    "a wildcard needs a suffix, as in \"*.example.com\"; to match "
				    "every name, leave the list out");
		if (buf[1] != '.')
			return fail(c,
				    "%s: '*' may only be the whole first label, as in "
				    "\"*.example.com\"",
				    q);
		ret->wildcard = true;
		label = buf + 2;
		if (!*label)
			return fail(c,
				    "a wildcard needs a suffix, as in \"*.example.com\"; to match "
				    "every name, leave the list out");
	}
	for (;;) {
		const char *dot = strchr(label, '.');

		llen = dot ? (size_t)(dot - label) : strlen(label);
		if (llen == 0)
			return fail(c,
				    "%s has an empty label (two dots in a row, or a leading dot)",
				    q);
		if (llen > 63)
			return fail(c, "%s has a label longer than 63 characters", q);
		for (i = 0; i < llen; i++) {
			unsigned char ch = (unsigned char)label[i];

			if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
			    ch == '_')
				continue;
			if (ch == '*')
				return fail(c,
					    "%s: '*' may only be the whole first label, as in "
					    "\"*.example.com\"",
					    q);
			if (ch >= 0x80)
				return fail(c,
					    "%s is not an ASCII name: write an international name "
					    "in its xn-- form",
					    q);
			if (ch == ':' && !allow_port)
				return fail(c, "%s: a port is not allowed here, only in http.hosts",
					    q);
			return fail(c,
				    "%s: '%c' is not allowed in a name (letters, digits, '-', '_' "
				    "and dots)",
				    q, isprint(ch) ? ch : '?');
		}
		if (!dot)
			break;
		label = dot + 1;
	}
	ret->name = xdup(buf, n);
	if (!ret->name)
		return oom(c);
	ret->port = (uint16_t)port;
	return 0;
}

static void names_free(struct loupe_policy_names *ns)
{
	unsigned int i;

	for (i = 0; i < ns->n; i++)
		free(ns->v[i].name);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

static int parse_names(struct pctx *c, json_object *v, bool allow_port,
		       struct loupe_policy_names *ret)
{
	size_t n, i, old;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	ret->v = calloc(n, sizeof(*ret->v));
	if (!ret->v)
		return oom(c);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);

		old = push_index(c, i);
		r = want_string(c, e);
		if (r == 0)
			r = parse_name(c, json_object_get_string(e),
				       (size_t)json_object_get_string_len(e), allow_port,
				       &ret->v[i]);
		pop(c, old);
		if (r < 0)
			return r;
		ret->n++;
	}
	return 0;
}

/* "a.b.c.d/len" or "v6/len"; a bare address is a /32 or /128. Host bits must be zero. */
static int parse_cidr(struct pctx *c, const char *s, size_t len, struct loupe_policy_cidr *ret)
{
	char q[QUOTE_MAX * 6 + 8], addr[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len, i;
	unsigned int plen = 0, max, bytes;
	uint8_t masked[16];

	quote(q, sizeof(q), s, len);
	if (alen == 0 || alen >= sizeof(addr))
		return fail(c, "%s is not an IPv4 or IPv6 prefix", q);
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	memset(ret, 0, sizeof(*ret));
	ret->family = memchr(addr, ':', alen) ? AF_INET6 : AF_INET;
	if (inet_pton(ret->family, addr, ret->addr) != 1)
		return fail(c, "%s is not an IPv4 or IPv6 prefix", q);
	max = ret->family == AF_INET ? 32 : 128;
	if (slash) {
		const char *p = slash + 1, *end = s + len;

		if (p == end || end - p > 3 || (*p == '0' && end - p > 1))
			goto bad_len;
		for (; p < end; p++) {
			if (!isdigit((unsigned char)*p))
				goto bad_len;
			plen = plen * 10 + (unsigned int)(*p - '0');
		}
		if (plen > max)
			goto bad_len;
	} else {
		plen = max;
	}
	ret->prefix_len = (uint8_t)plen;
	bytes = max / 8;
	memcpy(masked, ret->addr, bytes);
	for (i = 0; i < bytes; i++) {
		unsigned int bits = i * 8 >= plen ? 0 : plen - i * 8 >= 8 ? 8 : plen - i * 8;

		masked[i] &= (uint8_t)(0xff00 >> bits);
	}
	if (memcmp(masked, ret->addr, bytes) != 0) {
		inet_ntop(ret->family, masked, net, sizeof(net));
		return fail(c,
			    "%s has address bits set past the prefix length: write %s/%u for the "
			    "network, or %s/%u for the one address",
			    q, net, plen, addr, max);
	}
	return 0;

bad_len:
	return fail(c, "%s is not an IPv4 or IPv6 prefix: the length after '/' is 0..%u", q, max);
}

static int parse_cidrs(struct pctx *c, json_object *v, struct loupe_policy_cidr **ret,
		       unsigned int *ret_n)
{
	size_t n, i, old;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	*ret = calloc(n, sizeof(**ret));
	if (!*ret)
		return oom(c);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);

		old = push_index(c, i);
		r = want_string(c, e);
		if (r == 0)
			r = parse_cidr(c, json_object_get_string(e),
				       (size_t)json_object_get_string_len(e), &(*ret)[i]);
		pop(c, old);
		if (r < 0)
			return r;
		(*ret_n)++;
	}
	return 0;
}

/* The fewest characters a name matching glob @s has ('*' none, '?' and [...] one each). */
static size_t glob_min_len(const char *s)
{
	size_t n = 0;
	const char *e;

	for (; *s; s++) {
		if (*s == '*')
			continue;
		n++;
		if (*s == '\\' && s[1]) {
			s++;
		} else if (*s == '[') {
			e = strchr(s + 2, ']'); /* "[]...]": the first ']' is a member */
			if (s[1] && e)
				s = e;
		}
	}
	return n;
}

static int parse_interfaces(struct pctx *c, json_object *v, struct loupe_policy_selector *sel)
{
	char q[QUOTE_MAX * 6 + 8];
	size_t n, i, old, len, k;
	const char *s;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	sel->interfaces = calloc(n, sizeof(*sel->interfaces));
	if (!sel->interfaces)
		return oom(c);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);

		old = push_index(c, i);
		r = want_string(c, e);
		if (r < 0)
			goto out;
		s = json_object_get_string(e);
		len = (size_t)json_object_get_string_len(e);
		quote(q, sizeof(q), s, len);
		if (len == 0) {
			r = fail(c, "an empty glob matches no interface");
			goto out;
		}
		if (len > LOUPE_POLICY_GLOB_MAX) {
			r = fail(c, "%s is longer than %d characters", q, LOUPE_POLICY_GLOB_MAX);
			goto out;
		}
		for (k = 0; k < len; k++) {
			unsigned char ch = (unsigned char)s[k];

			if (ch <= ' ' || ch == 0x7f || ch == '/' || ch == ':') {
				r = fail(c,
					 "%s: an interface name has no '/', ':', blanks or control "
					 "characters",
					 q);
				goto out;
			}
		}
		if (glob_min_len(s) > 15) {
			r = fail(c,
				 "%s matches no interface: its names have at least %zu characters, "
				 "an interface name at most 15",
				 q, glob_min_len(s));
			goto out;
		}
		sel->interfaces[i] = xdup(s, len);
		if (!sel->interfaces[i]) {
			r = oom(c);
			goto out;
		}
		sel->n_interfaces++;
	out:
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Kubernetes' label name and value characters: alnum at both ends, [-_.] inside. */
static bool label_chars_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (isalnum(ch) && ch < 0x80)
			continue;
		if ((ch == '-' || ch == '_' || ch == '.') && i > 0 && i < len - 1)
			continue;
		return false;
	}
	return true;
}

/* "[prefix/]name": prefix a DNS subdomain of at most 253, name 1..63. */
static bool label_key_ok(const char *k, size_t len)
{
	const char *slash = memchr(k, '/', len);
	size_t i, plen;

	if (slash) {
		plen = (size_t)(slash - k);
		if (plen == 0 || plen > 253)
			return false;
		for (i = 0; i < plen; i++) {
			char ch = k[i];

			if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
			      ((ch == '-' || ch == '.') && i > 0 && i < plen - 1)))
				return false;
		}
		k = slash + 1;
		len -= plen + 1;
	}
	return len >= 1 && len <= LOUPE_POLICY_LABEL_MAX && label_chars_ok(k, len);
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct loupe_policy_label *)a)->key,
		      ((const struct loupe_policy_label *)b)->key);
}

static void labels_free(struct loupe_policy_label *l, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

static int parse_labels(struct pctx *c, json_object *v, struct loupe_policy_label **ret,
			unsigned int *ret_n)
{
	char q[QUOTE_MAX * 6 + 8];
	size_t n, old, vlen;
	const char *s;
	int r;

	r = want_object(c, v);
	if (r < 0)
		return r;
	n = (size_t)json_object_object_length(v);
	if (n > LOUPE_POLICY_LIST_MAX)
		return fail(c, "%zu labels are too many: at most %d", n, LOUPE_POLICY_LIST_MAX);
	if (n == 0)
		return 0;
	*ret = calloc(n, sizeof(**ret));
	if (!*ret)
		return oom(c);
	json_object_object_foreach(v, key, val)
	{
		struct loupe_policy_label *l = &(*ret)[*ret_n];

		old = push_key(c, key);
		if (!label_key_ok(key, strlen(key))) {
			r = fail(c,
				 "%s is not a label key: [prefix/]name, the name 1..63 letters, "
				 "digits, '-', '_' or '.', beginning and ending with a letter or "
				 "digit",
				 quote(q, sizeof(q), key, strlen(key)));
			goto next;
		}
		r = want_string(c, val);
		if (r < 0)
			goto next;
		s = json_object_get_string(val);
		vlen = (size_t)json_object_get_string_len(val);
		if (vlen > LOUPE_POLICY_LABEL_MAX || !label_chars_ok(s, vlen)) {
			r = fail(c,
				 "%s is not a label value: at most 63 letters, digits, '-', '_' or "
				 "'.', beginning and ending with a letter or digit",
				 quote(q, sizeof(q), s, vlen));
			goto next;
		}
		l->key = strdup(key);
		l->value = xdup(s, vlen);
		if (!l->key || !l->value) {
			free(l->key);
			free(l->value);
			r = oom(c);
			goto next;
		}
		(*ret_n)++;
	next:
		pop(c, old);
		if (r < 0)
			return r;
	}
	qsort(*ret, *ret_n, sizeof(**ret), label_cmp);
	return 0;
}

/* ---- rules ------------------------------------------------------------------------------- */

static int parse_port(struct pctx *c, json_object *v, struct loupe_policy_port *p)
{
	static const char *const known[] = { "port", "endPort", "protocol", NULL };
	json_object *port, *end, *proto;
	bool has_port, has_end;
	int64_t x;
	size_t old;
	int r, e;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	p->protocol = LOUPE_POLICY_TCP;
	if (member(v, "protocol", &proto)) {
		old = push_key(c, "protocol");
		r = get_enum(c, proto, protocol_names, ARRAY_SIZE(protocol_names), &e);
		pop(c, old);
		if (r < 0)
			return r;
		p->protocol = (enum loupe_policy_protocol)e;
	}
	has_port = member(v, "port", &port);
	has_end = member(v, "endPort", &end);
	if (p->protocol == LOUPE_POLICY_ICMP) {
		if (has_port)
			return fail_at(c, "port", "ICMP has no ports: leave port out");
		if (has_end)
			return fail_at(c, "endPort", "ICMP has no ports: leave endPort out");
		return 0;
	}
	if (!has_port)
		return fail_at(c, "port",
			       "missing: %s needs a port (1..65535; with endPort, a range)",
			       protocol_names[p->protocol]);
	old = push_key(c, "port");
	r = get_int(c, port, 1, 65535, &x);
	pop(c, old);
	if (r < 0)
		return r;
	p->port = p->end_port = (uint16_t)x;
	if (has_end) {
		old = push_key(c, "endPort");
		r = get_int(c, end, 0, 65535, &x);
		if (r == 0 && x < p->port)
			r = fail(c, "%lld is below port %u", (long long)x, p->port);
		pop(c, old);
		if (r < 0)
			return r;
		p->end_port = (uint16_t)x;
	}
	return 0;
}

static int parse_ports(struct pctx *c, json_object *v, struct loupe_policy_match *m)
{
	size_t n, i, old;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	m->ports = calloc(n, sizeof(*m->ports));
	if (!m->ports)
		return oom(c);
	for (i = 0; i < n; i++) {
		old = push_index(c, i);
		r = parse_port(c, json_object_array_get_idx(v, i), &m->ports[i]);
		pop(c, old);
		if (r < 0)
			return r;
		m->n_ports++;
	}
	return 0;
}

static int parse_methods(struct pctx *c, json_object *v, uint32_t *ret)
{
	char q[QUOTE_MAX * 6 + 8];
	size_t n, i, old;
	unsigned int k;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);
		const char *s;

		old = push_index(c, i);
		r = want_string(c, e);
		if (r < 0)
			goto next;
		s = json_object_get_string(e);
		for (k = 0; k < LOUPE_POLICY_HTTP_METHODS_N; k++)
			if (strcasecmp(s, method_names[k]) == 0)
				break;
		if (k == LOUPE_POLICY_HTTP_METHODS_N)
			r = fail(c,
				 "%s is not a standard HTTP method (GET, HEAD, POST, PUT, DELETE, "
				 "CONNECT, OPTIONS, TRACE, PATCH)",
				 quote(q, sizeof(q), s, (size_t)json_object_get_string_len(e)));
		else
			*ret |= 1u << k;
	next:
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_paths(struct pctx *c, json_object *v, struct loupe_policy_match *m)
{
	char q[QUOTE_MAX * 6 + 8];
	size_t n, i, k, old, len;
	const char *s;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	m->http.paths = calloc(n, sizeof(*m->http.paths));
	if (!m->http.paths)
		return oom(c);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);

		old = push_index(c, i);
		r = want_string(c, e);
		if (r < 0)
			goto next;
		s = json_object_get_string(e);
		len = (size_t)json_object_get_string_len(e);
		quote(q, sizeof(q), s, len);
		if (len == 0 || s[0] != '/') {
			r = fail(c, "%s is not a path prefix: it must begin with '/'", q);
			goto next;
		}
		if (len > LOUPE_POLICY_HTTP_PATH_MAX) {
			r = fail(c,
				 "%s is longer than %d bytes (what the datapath keeps of a path)",
				 q, LOUPE_POLICY_HTTP_PATH_MAX);
			goto next;
		}
		for (k = 0; k < len; k++) {
			unsigned char ch = (unsigned char)s[k];

			if (ch <= ' ' || ch >= 0x7f) {
				r = fail(c,
					 "%s: a request target has no blanks, control or non-ASCII "
					 "characters (percent-encode them, as the client sends "
					 "them)",
					 q);
				goto next;
			}
		}
		m->http.paths[i] = xdup(s, len);
		if (!m->http.paths[i]) {
			r = oom(c);
			goto next;
		}
		m->http.n_paths++;
	next:
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_http(struct pctx *c, json_object *v, struct loupe_policy_match *m)
{
	static const char *const known[] = { "methods", "paths", "hosts", NULL };
	json_object *f;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	if (member(v, "methods", &f)) {
		old = push_key(c, "methods");
		r = parse_methods(c, f, &m->http.methods);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "paths", &f)) {
		old = push_key(c, "paths");
		r = parse_paths(c, f, m);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "hosts", &f)) {
		old = push_key(c, "hosts");
		r = parse_names(c, f, true, &m->http.hosts);
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

/* tls {sni} and dns {names}: an object with one list of names. */
static int parse_names_object(struct pctx *c, json_object *v, const char *field,
			      struct loupe_policy_names *ret)
{
	const char *const known[] = { field, NULL };
	json_object *f;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0 || !member(v, field, &f))
		return r;
	old = push_key(c, field);
	r = parse_names(c, f, false, ret);
	pop(c, old);
	return r;
}

/* Whether a port entry can carry DNS queries: the datapath sees them on port 53. */
static bool port_has_53(const struct loupe_policy_port *p)
{
	return p->protocol != LOUPE_POLICY_ICMP && p->port <= 53 && p->end_port >= 53;
}

static int parse_match(struct pctx *c, json_object *v, struct loupe_policy_match *m)
{
	static const char *const known[] = { "cidrs", "ports", "http", "tls", "dns", NULL };
	static const char *const l7[] = { "http", "tls", "dns" };
	const char *first = NULL;
	json_object *f;
	unsigned int i;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	for (i = 0; i < ARRAY_SIZE(l7); i++) {
		if (!member(v, l7[i], &f))
			continue;
		if (first)
			return fail(c,
				    "a rule can match on one of http, tls and dns, not %s and %s "
				    "(a flow carries one L7 protocol; write two rules)",
				    first, l7[i]);
		first = l7[i];
		m->l7 = (enum loupe_policy_l7)(LOUPE_POLICY_L7_HTTP + i);
	}
	if (member(v, "cidrs", &f)) {
		old = push_key(c, "cidrs");
		r = parse_cidrs(c, f, &m->cidrs, &m->n_cidrs);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "ports", &f)) {
		old = push_key(c, "ports");
		r = parse_ports(c, f, m);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (first && member(v, first, &f)) {
		old = push_key(c, first);
		if (m->l7 == LOUPE_POLICY_L7_HTTP)
			r = parse_http(c, f, m);
		else if (m->l7 == LOUPE_POLICY_L7_TLS)
			r = parse_names_object(c, f, "sni", &m->tls_sni);
		else
			r = parse_names_object(c, f, "names", &m->dns_names);
		pop(c, old);
		if (r < 0)
			return r;
	}

	/* the L7 protocol must be able to run over what ports allows */
	for (i = 0; i < m->n_ports && m->l7 != LOUPE_POLICY_L7_NONE; i++) {
		enum loupe_policy_protocol p = m->ports[i].protocol;
		size_t o1, o2;

		if (p == LOUPE_POLICY_TCP ||
		    (m->l7 == LOUPE_POLICY_L7_DNS && p == LOUPE_POLICY_UDP))
			continue;
		o1 = push_key(c, "ports");
		o2 = push_index(c, i);
		if (m->l7 == LOUPE_POLICY_L7_DNS)
			r = fail_at(c, "protocol",
				    "ICMP cannot carry dns: DNS is matched over UDP and TCP");
		else
			r = fail_at(c, "protocol",
				    "%s cannot carry %s: %s is matched in TCP flows only",
				    protocol_names[p], first,
				    m->l7 == LOUPE_POLICY_L7_HTTP ? "HTTP" : "TLS");
		pop(c, o2);
		pop(c, o1);
		return r;
	}
	if (m->l7 == LOUPE_POLICY_L7_DNS && m->n_ports) {
		for (i = 0; i < m->n_ports; i++)
			if (port_has_53(&m->ports[i]))
				break;
		if (i == m->n_ports)
			return fail_at(c, "ports",
				       "no entry includes port 53, the one port where DNS queries "
				       "are seen: this rule could never match");
	}
	return 0;
}

static void match_free(struct loupe_policy_match *m)
{
	unsigned int i;

	free(m->cidrs);
	free(m->ports);
	for (i = 0; i < m->http.n_paths; i++)
		free(m->http.paths[i]);
	free(m->http.paths);
	names_free(&m->http.hosts);
	names_free(&m->tls_sni);
	names_free(&m->dns_names);
}

static bool match_is_empty(const struct loupe_policy_match *m)
{
	return !m->n_cidrs && !m->n_ports && m->l7 == LOUPE_POLICY_L7_NONE;
}

/*
 * Rules and rewrites are lists of entries that begin alike: a name (one namespace for both:
 * events and metrics name them alike), a direction and a match. What tells them apart in
 * their messages and their match is here.
 */
struct entry_head {
	const char *name;
	enum loupe_policy_direction direction;
	const struct loupe_policy_match *match;
};

struct entry_kind {
	const char *list;  /* the spec member: "rules" */
	const char *noun;  /* "rule" */
	const char *verb;  /* what an entry does to a flow: "match" */
	const char *never; /* an entry hidden by an earlier one "never matches" */
	const char *fits;  /* an earlier one "matches" every flow */
	int max;
	int (*parse_match)(struct pctx *c, json_object *v, struct loupe_policy_match *m);
	struct entry_head (*head)(const struct loupe_policy *p, size_t i);
};

static int parse_rewrite_match(struct pctx *c, json_object *v, struct loupe_policy_match *m);

static struct entry_head rule_head(const struct loupe_policy *p, size_t i)
{
	return (struct entry_head){ p->rules[i].name, p->rules[i].direction, &p->rules[i].match };
}

static struct entry_head rewrite_head(const struct loupe_policy *p, size_t i)
{
	return (struct entry_head){ p->rewrites[i].name, p->rewrites[i].direction,
				    &p->rewrites[i].match };
}

static const struct entry_kind rule_kind = {
	.list = "rules",
	.noun = "rule",
	.verb = "match",
	.never = "never matches",
	.fits = "matches",
	.max = LOUPE_POLICY_RULES_MAX,
	.parse_match = parse_match,
	.head = rule_head,
};

static const struct entry_kind rewrite_kind = {
	.list = "rewrites",
	.noun = "rewrite",
	.verb = "rewrite",
	.never = "never applies",
	.fits = "fits",
	.max = LOUPE_POLICY_REWRITES_MAX,
	.parse_match = parse_rewrite_match,
	.head = rewrite_head,
};

/* An entry's object, its fields in @known, and its name, direction and match. */
static int parse_entry_head(struct pctx *c, json_object *v, const struct entry_kind *kind,
			    const char *const *known, char **ret_name,
			    enum loupe_policy_direction *ret_direction,
			    struct loupe_policy_match *m)
{
	json_object *f;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r == 0)
		r = parse_object_name(c, v, kind->noun, ret_name);
	if (r == 0)
		r = parse_direction(c, v, ret_direction);
	if (r < 0)
		return r;

	if (!member(v, "match", &f))
		return fail_at(c, "match", "missing: write \"match\": {} to %s every %s flow",
			       kind->verb, direction_names[*ret_direction]);
	old = push_key(c, "match");
	r = kind->parse_match(c, f, m);
	pop(c, old);
	return r;
}

/* The array @v of at most kind->max entries of @size bytes: *@ret is NULL when it is empty. */
static int entries_alloc(struct pctx *c, json_object *v, const struct entry_kind *kind, size_t size,
			 void **ret, size_t *ret_n)
{
	size_t n;
	int r;

	r = want_array(c, v);
	if (r < 0)
		return r;
	n = json_object_array_length(v);
	if (n > (size_t)kind->max)
		return fail(c, "%zu %s are too many: a policy has at most %d", n, kind->list,
			    kind->max);
	*ret_n = n;
	if (n == 0)
		return 0;
	*ret = calloc(n, size);
	return *ret ? 0 : oom(c);
}

/* @name, at "name" of the current entry, must not be the name of the first @n of @kind. */
static int check_name_unique(struct pctx *c, const struct loupe_policy *p,
			     const struct entry_kind *kind, size_t n, const char *name)
{
	size_t k;

	for (k = 0; k < n; k++)
		if (strcmp(kind->head(p, k).name, name) == 0)
			return fail_at(c, "name", "\"%s\" is also the name of %s[%zu]", name,
				       kind->list, k);
	return 0;
}

/* The first entry that fits applies: one that fits every flow hides the later ones. */
static void warn_hidden(struct pctx *c, const struct loupe_policy *p, const struct entry_kind *kind,
			size_t n)
{
	struct entry_head hi, hk;
	size_t i, k, old;

	for (i = 0; i < n; i++) {
		hi = kind->head(p, i);
		for (k = 0; k < i; k++) {
			hk = kind->head(p, k);
			if (hk.direction == hi.direction && match_is_empty(hk.match))
				break;
		}
		if (k == i)
			continue;
		old = push_index(c, i);
		warn(c, "%s: %s[%zu] (\"%s\") before it %s every %s flow with \"match\": {}",
		     kind->never, kind->list, k, hk.name, kind->fits,
		     direction_names[hi.direction]);
		pop(c, old);
	}
}

static int parse_rule(struct pctx *c, json_object *v, struct loupe_policy_rule *rule)
{
	static const char *const known[] = { "name", "direction", "match", "action", NULL };
	json_object *f;
	size_t old;
	int r, e;

	r = parse_entry_head(c, v, &rule_kind, known, &rule->name, &rule->direction, &rule->match);
	if (r < 0)
		return r;

	if (!member(v, "action", &f))
		return fail_at(c, "action", "missing: allow, deny or audit");
	old = push_key(c, "action");
	r = get_enum(c, f, action_names, ARRAY_SIZE(action_names), &e);
	pop(c, old);
	if (r < 0)
		return r;
	rule->action = (enum loupe_policy_action)e;
	return 0;
}

/* ---- rewrites and rate limits ------------------------------------------------------------ */

/*
 * A rewrite's match: cidrs and ports. Its entry is chosen on a flow's first packet, before
 * any request, ClientHello or query, so L7 fields are refused with the reason.
 */
static int parse_rewrite_match(struct pctx *c, json_object *v, struct loupe_policy_match *m)
{
	static const char *const known[] = { "cidrs", "ports", NULL };
	static const char *const l7[][2] = {
		{ "http", "an HTTP request" },
		{ "tls", "a TLS ClientHello" },
		{ "dns", "a DNS query" },
	};
	json_object *f;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r < 0)
		return r;
	for (unsigned int i = 0; i < ARRAY_SIZE(l7); i++)
		if (member(v, l7[i][0], &f))
			return fail_at(c, l7[i][0],
				       "a rewrite matches on cidrs and ports only: it is chosen on "
				       "a flow's first packet, before %s is seen",
				       l7[i][1]);
	r = check_fields(c, v, known);
	if (r < 0)
		return r;
	if (member(v, "cidrs", &f)) {
		old = push_key(c, "cidrs");
		r = parse_cidrs(c, f, &m->cidrs, &m->n_cidrs);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "ports", &f)) {
		old = push_key(c, "ports");
		r = parse_ports(c, f, m);
		pop(c, old);
	}
	return r;
}

/* One destination address: not a prefix, and one a flow can be sent to. */
static int parse_map_address(struct pctx *c, const char *s, size_t len,
			     struct loupe_policy_rewrite *rw)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t zero[16] = { 0 };
	char q[QUOTE_MAX * 6 + 8], addr[INET6_ADDRSTRLEN];
	uint8_t *a = rw->map_to.addr;
	bool v6;

	quote(q, sizeof(q), s, len);
	if (memchr(s, '/', len))
		return fail(c, "%s is a prefix: a mapping sends flows to one address", q);
	if (len == 0 || len >= sizeof(addr))
		return fail(c, "%s is not an IPv4 or IPv6 address", q);
	memcpy(addr, s, len);
	addr[len] = '\0';
	v6 = memchr(addr, ':', len) != NULL;
	rw->map_to.family = v6 ? AF_INET6 : AF_INET;
	if (inet_pton(rw->map_to.family, addr, a) != 1)
		return fail(c, "%s is not an IPv4 or IPv6 address", q);
	if (!memcmp(a, zero, v6 ? 16 : 4))
		return fail(c, "%s is the unspecified address: no flow can be sent there", q);
	if ((!v6 && a[0] >= 224 && a[0] < 240) || (v6 && a[0] == 0xff))
		return fail(c, "%s is a multicast address: a mapping sends a flow to one host", q);
	if (!v6 && !memcmp(a, "\xff\xff\xff\xff", 4))
		return fail(c, "%s is the broadcast address: a mapping sends a flow to one host",
			    q);
	if ((!v6 && a[0] == 127) || (v6 && !memcmp(a, zero, 15) && a[15] == 1))
		return fail(c,
			    "%s is a loopback address: the kernel drops a pod's packets sent to "
			    "one",
			    q);
	if (v6 && !memcmp(a, v4mapped, sizeof(v4mapped)))
		return fail(c,
			    "%s is an IPv4-mapped IPv6 address: write the IPv4 address (an IPv4 "
			    "mapping applies to IPv4 flows)",
			    q);
	return 0;
}

static int parse_map_to(struct pctx *c, json_object *v, struct loupe_policy_rewrite *rw)
{
	static const char *const known[] = { "address", "port", NULL };
	json_object *f;
	int64_t x;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	if (!member(v, "address", &f))
		return fail_at(c, "address",
			       "missing: the IPv4 or IPv6 address the flows are sent to");
	old = push_key(c, "address");
	r = want_string(c, f);
	if (r == 0)
		r = parse_map_address(c, json_object_get_string(f),
				      (size_t)json_object_get_string_len(f), rw);
	pop(c, old);
	if (r < 0)
		return r;
	if (member(v, "port", &f)) {
		old = push_key(c, "port");
		r = get_int(c, f, 1, 65535, &x);
		pop(c, old);
		if (r < 0)
			return r;
		rw->map_to.port = (uint16_t)x;
	}
	rw->actions |= LOUPE_POLICY_RW_MAP;
	return 0;
}

static int parse_vlan(struct pctx *c, json_object *v, struct loupe_policy_rewrite *rw)
{
	static const char *const known[] = { "push", "pop", NULL };
	json_object *push, *pop_v;
	bool has_push, has_pop;
	int64_t x;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	has_push = member(v, "push", &push);
	has_pop = member(v, "pop", &pop_v);
	if (has_push && has_pop)
		return fail(c, "push and pop together: a rewrite pushes a tag or pops one");
	if (!has_push && !has_pop)
		return fail(c, "missing: push (a VLAN ID, 1..4094) or pop (true)");
	if (has_push) {
		old = push_key(c, "push");
		r = get_int(c, push, 1, 4094, &x);
		pop(c, old);
		if (r < 0)
			return r;
		rw->vlan_id = (uint16_t)x;
		rw->actions |= LOUPE_POLICY_RW_VLAN_PUSH;
		return 0;
	}
	old = push_key(c, "pop");
	r = want(c, pop_v, json_type_boolean, "true");
	if (r == 0 && !json_object_get_boolean(pop_v))
		r = fail(c, "false pops nothing: write \"pop\": true, or leave vlan out");
	pop(c, old);
	if (r < 0)
		return r;
	rw->actions |= LOUPE_POLICY_RW_VLAN_POP;
	return 0;
}

/* RFC 7230 tchar: what a header field name is made of. */
static bool is_tchar(unsigned char ch)
{
	return isalnum(ch) ? ch < 0x80 : ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int parse_mask_headers(struct pctx *c, json_object *v, struct loupe_policy_rewrite *rw)
{
	char q[QUOTE_MAX * 6 + 8];
	size_t n, i, k, old, len;
	const char *s;
	int r;

	r = get_list(c, v, &n);
	if (r < 0)
		return r;
	if (n > LOUPE_POLICY_MASK_HEADERS_MAX)
		return fail(c, "%zu headers are too many: a rewrite masks at most %d", n,
			    LOUPE_POLICY_MASK_HEADERS_MAX);
	rw->mask_headers = calloc(n, sizeof(*rw->mask_headers));
	if (!rw->mask_headers)
		return oom(c);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);
		char *name;

		old = push_index(c, i);
		r = want_string(c, e);
		if (r < 0)
			goto next;
		s = json_object_get_string(e);
		len = (size_t)json_object_get_string_len(e);
		quote(q, sizeof(q), s, len);
		if (len == 0) {
			r = fail(c, "an empty header name is not allowed");
			goto next;
		}
		if (len > LOUPE_POLICY_HEADER_NAME_MAX) {
			r = fail(c, "%s is longer than %d characters", q,
				 LOUPE_POLICY_HEADER_NAME_MAX);
			goto next;
		}
		for (k = 0; k < len; k++) {
			if (!is_tchar((unsigned char)s[k])) {
				r = fail(c,
					 "%s is not a header name: letters, digits and "
					 "!#$%%&'*+-.^_`|~ only (an RFC 7230 token), without the "
					 "':'",
					 q);
				goto next;
			}
		}
		name = xdup(s, len);
		if (!name) {
			r = oom(c);
			goto next;
		}
		for (k = 0; k < len; k++)
			name[k] = (char)tolower((unsigned char)name[k]);
		for (k = 0; k < rw->n_mask_headers; k++)
			if (!strcmp(rw->mask_headers[k], name))
				break;
		if (k < rw->n_mask_headers) {
			free(name);
			r = fail(c,
				 "%s is also maskHeaders[%zu]: header names are case-insensitive",
				 q, k);
			goto next;
		}
		rw->mask_headers[rw->n_mask_headers++] = name;
	next:
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_rewrite_http(struct pctx *c, json_object *v, struct loupe_policy_rewrite *rw)
{
	static const char *const known[] = { "maskHeaders", NULL };
	json_object *f;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	if (!member(v, "maskHeaders", &f))
		return fail_at(c, "maskHeaders",
			       "missing: the request headers whose values are masked");
	old = push_key(c, "maskHeaders");
	r = parse_mask_headers(c, f, rw);
	pop(c, old);
	if (r < 0)
		return r;
	rw->actions |= LOUPE_POLICY_RW_MASK;
	return 0;
}

/* What the actions need of the direction and the match (the whole entry is parsed). */
static int check_rewrite(struct pctx *c, const struct loupe_policy_rewrite *rw)
{
	const struct loupe_policy_match *m = &rw->match;
	char addr[INET6_ADDRSTRLEN];
	unsigned int i;
	size_t old;
	int r;

	if (rw->actions & LOUPE_POLICY_RW_MAP) {
		if (rw->direction != LOUPE_POLICY_EGRESS)
			return fail_at(c, "mapTo",
				       "a mapping is for egress: the pod opens the flow to the "
				       "address that is mapped");
		for (i = 0; i < m->n_ports && rw->map_to.port; i++) {
			if (m->ports[i].protocol != LOUPE_POLICY_ICMP)
				continue;
			old = push_key(c, "mapTo");
			r = fail_at(c, "port",
				    "match.ports[%u] is ICMP, which has no ports: leave the port "
				    "out, or write a rewrite of its own for ICMP",
				    i);
			pop(c, old);
			return r;
		}
		for (i = 0; i < m->n_ports; i++)
			if (m->ports[i].protocol != LOUPE_POLICY_ICMP)
				break;
		if (m->n_ports && i == m->n_ports)
			return fail_at(
				c, "mapTo",
				"match.ports holds only ICMP, and a mapping applies to TCP and "
				"UDP flows: it would never apply");
		for (i = 0; i < m->n_cidrs; i++)
			if (m->cidrs[i].family == rw->map_to.family)
				break;
		if (m->n_cidrs && i == m->n_cidrs) {
			inet_ntop(rw->map_to.family, rw->map_to.addr, addr, sizeof(addr));
			old = push_key(c, "mapTo");
			r = fail_at(
				c, "address",
				"\"%s\" is an %s address but match.cidrs holds only %s prefixes: "
				"a mapping applies to flows of its own family, so this one "
				"never would",
				addr, rw->map_to.family == AF_INET ? "IPv4" : "IPv6",
				rw->map_to.family == AF_INET ? "IPv6" : "IPv4");
			pop(c, old);
			return r;
		}
	}
	if (rw->actions & LOUPE_POLICY_RW_MASK && m->n_ports) {
		for (i = 0; i < m->n_ports; i++)
			if (m->ports[i].protocol == LOUPE_POLICY_TCP)
				break;
		if (i == m->n_ports)
			return fail_at(c, "http",
				       "maskHeaders masks HTTP requests, which run over TCP, and "
				       "match.ports has no TCP entry: it would never apply");
	}
	return 0;
}

static int parse_rewrite(struct pctx *c, json_object *v, struct loupe_policy_rewrite *rw)
{
	static const char *const known[] = { "name",	"direction", "match", "mapTo",
					     "setDscp", "vlan",	     "http",  NULL };
	json_object *f;
	int64_t x;
	size_t old;
	int r;

	r = parse_entry_head(c, v, &rewrite_kind, known, &rw->name, &rw->direction, &rw->match);
	if (r < 0)
		return r;

	if (member(v, "mapTo", &f)) {
		old = push_key(c, "mapTo");
		r = parse_map_to(c, f, rw);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "setDscp", &f)) {
		old = push_key(c, "setDscp");
		r = get_int(c, f, 0, 63, &x);
		pop(c, old);
		if (r < 0)
			return r;
		rw->dscp = (uint8_t)x;
		rw->actions |= LOUPE_POLICY_RW_DSCP;
	}
	if (member(v, "vlan", &f)) {
		old = push_key(c, "vlan");
		r = parse_vlan(c, f, rw);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "http", &f)) {
		old = push_key(c, "http");
		r = parse_rewrite_http(c, f, rw);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (!rw->actions)
		return fail(c, "a rewrite needs at least one action: mapTo, setDscp, vlan or http");
	return check_rewrite(c, rw);
}

static void rewrite_free(struct loupe_policy_rewrite *rw)
{
	unsigned int i;

	free(rw->name);
	match_free(&rw->match);
	for (i = 0; i < rw->n_mask_headers; i++)
		free(rw->mask_headers[i]);
	free(rw->mask_headers);
}

static int parse_rewrites(struct pctx *c, json_object *v, struct loupe_policy *p)
{
	size_t n, i, old;
	int r;

	r = entries_alloc(c, v, &rewrite_kind, sizeof(*p->rewrites), (void **)&p->rewrites, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		struct loupe_policy_rewrite *rw = &p->rewrites[i];

		old = push_index(c, i);
		p->n_rewrites++; /* freed by policy_free() from here on */
		r = parse_rewrite(c, json_object_array_get_idx(v, i), rw);
		if (r == 0)
			r = check_name_unique(c, p, &rule_kind, p->n_rules, rw->name);
		if (r == 0)
			r = check_name_unique(c, p, &rewrite_kind, i, rw->name);
		pop(c, old);
		if (r < 0)
			return r;
	}
	warn_hidden(c, p, &rewrite_kind, n);
	return 0;
}

/*
 * The default burst: 0.4 s at the rate, at least a GSO packet. TCP through a policer recovers
 * from a loss by a retransmission timeout (200 ms at least): a burst below the rate x 0.2 s
 * leaves the link idle for part of it (docs/rewrite.md has the measurements).
 */
static uint64_t default_burst(uint64_t bytes_per_sec)
{
	uint64_t b = bytes_per_sec / 5 * 2;

	if (b < LOUPE_POLICY_BURST_MIN_DEFAULT)
		b = LOUPE_POLICY_BURST_MIN_DEFAULT;
	return b > LOUPE_POLICY_BURST_MAX ? LOUPE_POLICY_BURST_MAX : b;
}

static int parse_rate_limit(struct pctx *c, json_object *v, struct loupe_policy_rate_limit *rl)
{
	static const char *const known[] = { "direction", "bytesPerSecond", "burst", NULL };
	json_object *f;
	int64_t x;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r == 0)
		r = parse_direction(c, v, &rl->direction);
	if (r < 0)
		return r;

	if (!member(v, "bytesPerSecond", &f))
		return fail_at(c, "bytesPerSecond",
			       "missing: the rate, in bytes per second (1..%llu)",
			       (unsigned long long)LOUPE_POLICY_RATE_MAX);
	old = push_key(c, "bytesPerSecond");
	r = get_int(c, f, 1, (int64_t)LOUPE_POLICY_RATE_MAX, &x);
	pop(c, old);
	if (r < 0)
		return r;
	rl->bytes_per_sec = (uint64_t)x;

	rl->burst = default_burst(rl->bytes_per_sec);
	if (member(v, "burst", &f)) {
		old = push_key(c, "burst");
		r = get_int(c, f, 1, (int64_t)LOUPE_POLICY_BURST_MAX, &x);
		if (r == 0 && x < LOUPE_POLICY_BURST_MIN_DEFAULT)
			warn(c,
			     "a token bucket never passes a packet larger than its burst, and a "
			     "pod's TCP packets reach 64 KiB with GSO: a burst under %d bytes can "
			     "stall its connections",
			     LOUPE_POLICY_BURST_MIN_DEFAULT);
		pop(c, old);
		if (r < 0)
			return r;
		rl->burst = (uint64_t)x;
	}
	return 0;
}

static int parse_rate_limits(struct pctx *c, json_object *v, struct loupe_policy *p)
{
	size_t n, i, k, old;
	int r;

	r = want_array(c, v);
	if (r < 0)
		return r;
	n = json_object_array_length(v);
	if (n > ARRAY_SIZE(p->rate_limits))
		return fail(c, "%zu rate limits are too many: a policy has one per direction", n);
	for (i = 0; i < n; i++) {
		struct loupe_policy_rate_limit *rl = &p->rate_limits[i];

		old = push_index(c, i);
		r = parse_rate_limit(c, json_object_array_get_idx(v, i), rl);
		for (k = 0; r == 0 && k < i; k++)
			if (p->rate_limits[k].direction == rl->direction)
				r = fail_at(
					c, "direction",
					"rateLimits[%zu] is also for %s: a policy has one limit "
					"per direction",
					k, direction_names[rl->direction]);
		pop(c, old);
		if (r < 0)
			return r;
		p->n_rate_limits++;
	}
	return 0;
}

/* ---- policies ---------------------------------------------------------------------------- */

static void selector_free(struct loupe_policy_selector *s)
{
	unsigned int i;

	for (i = 0; i < s->n_interfaces; i++)
		free(s->interfaces[i]);
	free(s->interfaces);
	free(s->cidrs);
	labels_free(s->labels, s->n_labels);
}

static void policy_free(struct loupe_policy *p)
{
	unsigned int i;

	free(p->name);
	free(p->source);
	free(p->doc_path);
	labels_free(p->labels, p->n_labels);
	selector_free(&p->selector);
	for (i = 0; i < p->n_rules; i++) {
		free(p->rules[i].name);
		match_free(&p->rules[i].match);
	}
	free(p->rules);
	for (i = 0; i < p->n_rewrites; i++)
		rewrite_free(&p->rewrites[i]);
	free(p->rewrites);
	memset(p, 0, sizeof(*p));
}

static int parse_selector(struct pctx *c, json_object *v, struct loupe_policy_selector *sel)
{
	static const char *const known[] = { "interfaces", "cidrs", "labels", NULL };
	json_object *f;
	size_t old;
	int r;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	if (member(v, "interfaces", &f)) {
		old = push_key(c, "interfaces");
		r = parse_interfaces(c, f, sel);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "cidrs", &f)) {
		old = push_key(c, "cidrs");
		r = parse_cidrs(c, f, &sel->cidrs, &sel->n_cidrs);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "labels", &f)) {
		old = push_key(c, "labels");
		r = parse_labels(c, f, &sel->labels, &sel->n_labels);
		if (r == 0 && sel->n_labels)
			warn(c, "pod labels are not known yet (they come with pod identity from "
				"Kubernetes): until then this selector selects no pod");
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_rules(struct pctx *c, json_object *v, struct loupe_policy *p)
{
	size_t n, i, old;
	int r;

	r = entries_alloc(c, v, &rule_kind, sizeof(*p->rules), (void **)&p->rules, &n);
	if (r < 0)
		return r;
	for (i = 0; i < n; i++) {
		struct loupe_policy_rule *rule = &p->rules[i];

		old = push_index(c, i);
		p->n_rules++; /* freed by policy_free() from here on */
		r = parse_rule(c, json_object_array_get_idx(v, i), rule);
		if (r == 0)
			r = check_name_unique(c, p, &rule_kind, i, rule->name);
		pop(c, old);
		if (r < 0)
			return r;
	}
	warn_hidden(c, p, &rule_kind, n);
	return 0;
}

static int parse_spec(struct pctx *c, json_object *v, struct loupe_policy *p)
{
	static const char *const known[] = { "priority", "podSelector", "defaultAction",
					     "rules",	 "rewrites",	"rateLimits",
					     NULL };
	json_object *f;
	int64_t x;
	size_t old;
	int r, e;

	r = want_object(c, v);
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	p->priority = LOUPE_POLICY_PRIORITY_DEFAULT;
	if (member(v, "priority", &f)) {
		old = push_key(c, "priority");
		r = get_int(c, f, 0, 65535, &x);
		pop(c, old);
		if (r < 0)
			return r;
		p->priority = (uint16_t)x;
	}
	if (!member(v, "podSelector", &f))
		return fail_at(c, "podSelector",
			       "missing: write \"podSelector\": {} to select "
			       "every pod");
	old = push_key(c, "podSelector");
	r = parse_selector(c, f, &p->selector);
	pop(c, old);
	if (r < 0)
		return r;
	if (member(v, "defaultAction", &f)) {
		old = push_key(c, "defaultAction");
		r = get_enum(c, f, action_names, ARRAY_SIZE(action_names), &e);
		pop(c, old);
		if (r < 0)
			return r;
		p->default_action = (enum loupe_policy_action)e;
	}
	if (member(v, "rules", &f)) {
		old = push_key(c, "rules");
		r = parse_rules(c, f, p);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "rewrites", &f)) {
		old = push_key(c, "rewrites");
		r = parse_rewrites(c, f, p);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (member(v, "rateLimits", &f)) {
		old = push_key(c, "rateLimits");
		r = parse_rate_limits(c, f, p);
		pop(c, old);
		if (r < 0)
			return r;
	}
	if (!p->n_rules && p->default_action == LOUPE_POLICY_ACTION_NONE && !p->n_rewrites &&
	    !p->n_rate_limits)
		warn(c, "this policy has no rules, defaultAction, rewrites or rateLimits: it "
			"changes nothing");
	return 0;
}

static int parse_metadata(struct pctx *c, json_object *v, struct loupe_policy *p)
{
	json_object *f;
	size_t old;
	int r;

	/* other fields (namespace, annotations, uid, ...) are Kubernetes' and ignored */
	r = want_object(c, v);
	if (r < 0)
		return r;
	r = parse_object_name(c, v, "policy", &p->name);
	if (r < 0)
		return r;
	if (member(v, "labels", &f)) {
		old = push_key(c, "labels");
		r = parse_labels(c, f, &p->labels, &p->n_labels);
		pop(c, old);
		if (r < 0)
			return r;
	}
	return 0;
}

/* @obj[@key] must be the string @wanted; with @optional it may be left out (PolicyList items). */
static int check_header(struct pctx *c, json_object *obj, const char *key, const char *wanted,
			bool optional, const char *hint)
{
	char q[QUOTE_MAX * 6 + 8];
	json_object *f;
	size_t old;
	int r;

	if (!member(obj, key, &f)) {
		if (optional)
			return 0;
		return fail_at(c, key, "missing: write \"%s\": \"%s\"", key, wanted);
	}
	old = push_key(c, key);
	r = want_string(c, f);
	if (r == 0 && strcmp(json_object_get_string(f), wanted) != 0)
		r = fail(c, "%s is not %s%s",
			 quote(q, sizeof(q), json_object_get_string(f),
			       (size_t)json_object_get_string_len(f)),
			 wanted, hint);
	pop(c, old);
	return r;
}

static int parse_policy(struct pctx *c, json_object *v, bool header_optional,
			struct loupe_policy *p)
{
	static const char *const known[] = { "apiVersion", "kind", "metadata", "spec", NULL };
	json_object *f;
	size_t old;
	int r;

	if (json_object_get_type(v) != json_type_object)
		return fail(c, "a policy (an object) is expected, not %s", type_desc(v));
	r = check_header(c, v, "apiVersion", LOUPE_POLICY_API_VERSION, header_optional,
			 ", the one version loupe reads");
	if (r == 0)
		r = check_header(c, v, "kind", "Policy", header_optional,
				 " (a file holds a Policy, an array of them or a PolicyList)");
	if (r == 0)
		r = check_fields(c, v, known);
	if (r < 0)
		return r;
	p->doc_path = strdup(c->path);
	p->source = strdup(c->source);
	if (!p->doc_path || !p->source)
		return oom(c);
	if (!member(v, "metadata", &f))
		return fail_at(c, "metadata", "missing: a policy has metadata with its name");
	old = push_key(c, "metadata");
	r = parse_metadata(c, f, p);
	pop(c, old);
	if (r < 0)
		return r;
	if (!member(v, "spec", &f))
		return fail_at(c, "spec", "missing: a policy has a spec");
	old = push_key(c, "spec");
	r = parse_spec(c, f, p);
	pop(c, old);
	return r;
}

/* ---- documents and sets ------------------------------------------------------------------ */

struct doc {
	struct loupe_policy *v;
	unsigned int n, cap;
	unsigned int n_rules, n_rewrites;
};

static void doc_free(struct doc *d)
{
	unsigned int i;

	for (i = 0; i < d->n; i++)
		policy_free(&d->v[i]);
	free(d->v);
}

/* The policy at c->path, checked against @set and the ones before it in @d. */
static int doc_add(struct pctx *c, struct doc *d, json_object *v, bool header_optional,
		   const struct loupe_policy_set *set)
{
	struct loupe_policy *p;
	unsigned int i, total;
	size_t old;
	int r;

	if (set->n_policies + d->n >= LOUPE_POLICY_SET_MAX)
		return fail(c, "a policy set holds at most %d policies", LOUPE_POLICY_SET_MAX);
	if (grow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v)) < 0)
		return oom(c);
	p = &d->v[d->n++];
	memset(p, 0, sizeof(*p));
	r = parse_policy(c, v, header_optional, p);
	if (r < 0)
		return r;

	old = push_key(c, "metadata");
	push_key(c, "name");
	for (i = 0; i < set->n_policies && r == 0; i++)
		if (strcmp(set->policies[i].name, p->name) == 0)
			r = fail(c, "\"%s\" is also the name of the policy in %s%s%s", p->name,
				 set->policies[i].source,
				 set->policies[i].doc_path[0] ? " at " : "",
				 set->policies[i].doc_path);
	for (i = 0; i + 1 < d->n && r == 0; i++)
		if (strcmp(d->v[i].name, p->name) == 0)
			r = fail(c, "\"%s\" is also the name of the policy at %s", p->name,
				 d->v[i].doc_path);
	pop(c, old);
	if (r < 0)
		return r;

	total = set->n_rules + d->n_rules + p->n_rules;
	if (total > LOUPE_POLICY_SET_RULES_MAX) {
		old = push_key(c, "spec");
		push_key(c, "rules");
		r = fail(c,
			 "with these the set has %u rules; it holds at most %d (all policies "
			 "together)",
			 total, LOUPE_POLICY_SET_RULES_MAX);
		pop(c, old);
		return r;
	}
	d->n_rules += p->n_rules;

	total = set->n_rewrites + d->n_rewrites + p->n_rewrites;
	if (total > LOUPE_POLICY_SET_REWRITES_MAX) {
		old = push_key(c, "spec");
		push_key(c, "rewrites");
		r = fail(c,
			 "with these the set has %u rewrites; it holds at most %d (all policies "
			 "together)",
			 total, LOUPE_POLICY_SET_REWRITES_MAX);
		pop(c, old);
		return r;
	}
	d->n_rewrites += p->n_rewrites;
	return 0;
}

static int parse_list(struct pctx *c, json_object *root, bool generic, struct doc *d,
		      const struct loupe_policy_set *set)
{
	static const char *const known[] = { "apiVersion", "kind", "metadata", "items", NULL };
	json_object *items;
	size_t n, i, old, o2;
	int r;

	r = check_header(c, root, "apiVersion", generic ? "v1" : LOUPE_POLICY_API_VERSION, false,
			 "");
	if (r == 0)
		r = check_fields(c, root, known);
	if (r < 0)
		return r;
	if (!member(root, "items", &items))
		return fail_at(c, "items", "missing: a list has items (an array of policies)");
	old = push_key(c, "items");
	r = want_array(c, items);
	n = r == 0 ? json_object_array_length(items) : 0;
	for (i = 0; i < n && r == 0; i++) {
		o2 = push_index(c, i);
		/* a PolicyList's items may leave out apiVersion and kind: the list has them */
		r = doc_add(c, d, json_object_array_get_idx(items, i), !generic, set);
		pop(c, o2);
	}
	pop(c, old);
	return r;
}

static int parse_doc(struct pctx *c, json_object *root, struct doc *d,
		     const struct loupe_policy_set *set)
{
	json_object *kind;
	const char *k;
	size_t n, i, old;
	int r = 0;

	switch (json_object_get_type(root)) {
	case json_type_array:
		n = json_object_array_length(root);
		for (i = 0; i < n && r == 0; i++) {
			old = push_index(c, i);
			r = doc_add(c, d, json_object_array_get_idx(root, i), false, set);
			pop(c, old);
		}
		return r;
	case json_type_object:
		if (member(root, "kind", &kind) && json_object_is_type(kind, json_type_string)) {
			k = json_object_get_string(kind);
			if (strcmp(k, "PolicyList") == 0)
				return parse_list(c, root, false, d, set);
			if (strcmp(k, "List") == 0)
				return parse_list(c, root, true, d, set);
		}
		return doc_add(c, d, root, false, set);
	default:
		return fail(c, "a policy, an array of policies or a PolicyList is expected, not %s",
			    type_desc(root));
	}
}

/* json-c's tokener, strict; a syntax error with its line and column. */
static int parse_json(const char *s, size_t len, const char *source, json_object **ret,
		      struct loupe_policy_error *e)
{
	enum json_tokener_error te;
	json_tokener *tok;
	json_object *root;
	size_t i, end;

	for (i = 0; i < len && strchr(" \t\r\n", s[i]); i++)
		;
	if (i == len)
		return error_simple(e, -EINVAL, source,
				    "empty: a policy, an array of policies or a PolicyList is "
				    "expected");
	tok = json_tokener_new();
	if (!tok)
		return error_simple(e, -ENOMEM, source, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, s, (int)len);
	te = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!root) {
		if (te == json_tokener_continue)
			error_simple(e, -EINVAL, source,
				     "not valid JSON: the text ends inside an object, array or "
				     "string");
		else
			error_simple(e, -EINVAL, source, "not valid JSON: %s",
				     json_tokener_error_desc(te));
		text_position(s, len, end, &e->line, &e->column);
		return -EINVAL;
	}
	*ret = root;
	return 0;
}

int loupe_policy_parse(const char *json, size_t len, const char *source_name,
		       struct loupe_policy_set *set, struct loupe_policy_error *ret_err)
{
	struct loupe_policy_error local;
	struct pctx c = { .source = source_name ? source_name : "" };
	struct jscan j = { 0 };
	json_object *root = NULL;
	struct doc d = { 0 };
	unsigned int i;
	int r;

	c.err = ret_err ? ret_err : &local;
	memset(c.err, 0, sizeof(*c.err));
	if (len > LOUPE_POLICY_FILE_MAX)
		return error_simple(c.err, -EFBIG, c.source,
				    "%zu bytes are too many: a policy file has at most %u (%u MiB)",
				    len, LOUPE_POLICY_FILE_MAX, LOUPE_POLICY_FILE_MAX >> 20);
	/* a byte order mark is not JSON, but editors write one */
	if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0) {
		json += 3;
		len -= 3;
	}
	r = parse_json(json, len, c.source, &root, c.err);
	if (r < 0)
		return r;
	j.s = json;
	j.len = len;
	r = jscan_run(&j);
	jscan_free(&j);
	if (r == -ENOMEM) {
		r = error_simple(c.err, -ENOMEM, c.source, "out of memory");
		goto out;
	}
	if (r < 0) {
		error_simple(c.err, r, c.source, "%s", j.err_msg);
		snprintf(c.err->path, sizeof(c.err->path), "%s", j.err_path);
		text_position(json, len, j.err_off, &c.err->line, &c.err->column);
		goto out;
	}

	r = parse_doc(&c, root, &d, set);
	if (r < 0) {
		if (c.oom)
			r = -ENOMEM;
		else
			locate(json, len, c.err);
		goto out;
	}
	if (grow((void **)&set->policies, &set->cap_policies, set->n_policies + d.n,
		 sizeof(*set->policies)) < 0 ||
	    grow((void **)&set->warnings, &set->cap_warnings, set->n_warnings + c.n_warnings,
		 sizeof(*set->warnings)) < 0) {
		r = error_simple(c.err, -ENOMEM, c.source, "out of memory");
		goto out;
	}
	memcpy(set->policies + set->n_policies, d.v, d.n * sizeof(*d.v));
	set->n_policies += d.n;
	set->n_rules += d.n_rules;
	set->n_rewrites += d.n_rewrites;
	d.n = 0;
	for (i = 0; i < c.n_warnings; i++) {
		locate(json, len, &c.warnings[i]);
		set->warnings[set->n_warnings++] = c.warnings[i];
	}
	r = 0;
out:
	doc_free(&d);
	free(c.warnings);
	json_object_put(root);
	return r;
}

/* ---- files and directories --------------------------------------------------------------- */

static int load_file(const char *path, const char *name, struct loupe_policy_set *set,
		     struct loupe_policy_error *e)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t got;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_simple(e, -errno, name, "cannot open: %s", strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = error_simple(e, -errno, name, "cannot read: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = error_simple(e, -EINVAL, name, "not a regular file");
		goto out;
	}
	if (st.st_size > LOUPE_POLICY_FILE_MAX) {
		r = error_simple(e, -EFBIG, name,
				 "%lld bytes are too many: a policy file has at most %u (%u MiB)",
				 (long long)st.st_size, LOUPE_POLICY_FILE_MAX,
				 LOUPE_POLICY_FILE_MAX >> 20);
		goto out;
	}
	/* one byte more than the limit: a file that grew since fstat() is caught */
	buf = malloc(LOUPE_POLICY_FILE_MAX + 1u);
	if (!buf) {
		r = error_simple(e, -ENOMEM, name, "out of memory");
		goto out;
	}
	while (n < LOUPE_POLICY_FILE_MAX + 1u) {
		got = read(fd, buf + n, LOUPE_POLICY_FILE_MAX + 1u - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = error_simple(e, -errno, name, "cannot read: %s", strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	r = loupe_policy_parse(buf, n, name, set, e);
out:
	free(buf);
	close(fd);
	return r;
}

/* "@a@sep@b" into @buf; -ENAMETOOLONG when it does not fit. */
static int path_join(char *buf, size_t size, const char *a, const char *sep, const char *b)
{
	int w = snprintf(buf, size, "%s%s%s", a, sep, b);

	return w < 0 || (size_t)w >= size ? -ENAMETOOLONG : 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_json_name(const char *n)
{
	size_t len = strlen(n);

	return n[0] != '.' && len > 5 && strcmp(n + len - 5, ".json") == 0;
}

/*
 * A ConfigMap volume: "..data" links to "..<timestamp>/" which holds the files, and each
 * "name" links to "..data/name". The kubelet swaps ..data at once on an update; reading
 * through one resolution of it sees one version of every file.
 */
static int load_dir_once(const char *dir, struct loupe_policy_set *set,
			 struct loupe_policy_error *e, char *data_target, size_t target_size)
{
	char base[PATH_MAX], path[PATH_MAX], shown[PATH_MAX], link[PATH_MAX];
	const char *sep = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
	char **names = NULL;
	unsigned int n = 0, cap = 0, i;
	struct dirent *de;
	struct stat st;
	ssize_t ll;
	DIR *d;
	int r = 0;

	data_target[0] = '\0';
	if (path_join(base, sizeof(base), dir, "", "") < 0 ||
	    path_join(path, sizeof(path), dir, sep, "..data") < 0)
		return error_simple(e, -ENAMETOOLONG, dir, "the path is too long");
	ll = readlink(path, link, sizeof(link) - 1);
	if (ll > 0) {
		link[ll] = '\0';
		snprintf(data_target, target_size, "%s", link);
		if (path_join(base, sizeof(base), link[0] == '/' ? "" : dir,
			      link[0] == '/' ? "" : sep, link) < 0)
			return error_simple(e, -ENAMETOOLONG, dir, "the path is too long");
	}

	d = opendir(base);
	if (!d)
		return error_simple(e, -errno, dir, "cannot read the directory: %s",
				    strerror(errno));
	while ((errno = 0, de = readdir(d))) {
		if (!is_json_name(de->d_name))
			continue;
		if (grow((void **)&names, &cap, n + 1, sizeof(*names)) < 0 ||
		    !(names[n] = strdup(de->d_name))) {
			r = error_simple(e, -ENOMEM, dir, "out of memory");
			goto out;
		}
		n++;
	}
	if (errno) {
		r = error_simple(e, -errno, dir, "cannot read the directory: %s", strerror(errno));
		goto out;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n; i++) {
		if (path_join(path, sizeof(path), base, "/", names[i]) < 0 ||
		    path_join(shown, sizeof(shown), dir, sep, names[i]) < 0) {
			r = error_simple(e, -ENAMETOOLONG, dir, "a path is too long");
			goto out;
		}
		if (stat(path, &st) < 0) {
			r = error_simple(e, -errno, shown, "cannot read: %s", strerror(errno));
			goto out;
		}
		if (S_ISDIR(st.st_mode))
			continue; /* "x.json/" is a directory: not read, as subdirectories are not */
		r = load_file(path, shown, set, e);
		if (r < 0)
			goto out;
	}
	if (n == 0 && grow((void **)&set->warnings, &set->cap_warnings, set->n_warnings + 1,
			   sizeof(*set->warnings)) == 0) {
		struct loupe_policy_error *w = &set->warnings[set->n_warnings++];

		error_simple(w, 0, dir, "no *.json file here: the set is empty");
	}
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return r;
}

static int load_dir(const char *dir, struct loupe_policy_set *set, struct loupe_policy_error *e)
{
	char before[PATH_MAX], now[PATH_MAX], path[PATH_MAX];
	const char *sep = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
	ssize_t ll;
	int tries, r = 0;

	for (tries = 0; tries < 3; tries++) {
		r = load_dir_once(dir, set, e, before, sizeof(before));
		if (r != -ENOENT || !before[0])
			return r;
		/* the kubelet swapped ..data and removed the old version under us: again */
		if (path_join(path, sizeof(path), dir, sep, "..data") < 0)
			return r;
		ll = readlink(path, now, sizeof(now) - 1);
		if (ll <= 0)
			return r;
		now[ll] = '\0';
		if (strcmp(now, before) == 0)
			return r;
		loupe_policy_set_clear(set);
	}
	return r;
}

int loupe_policy_load_path(const char *file_or_dir, struct loupe_policy_set **ret,
			   struct loupe_policy_error *ret_err)
{
	struct loupe_policy_error local;
	struct loupe_policy_error *e = ret_err ? ret_err : &local;
	struct loupe_policy_set *set;
	struct stat st;
	int r;

	memset(e, 0, sizeof(*e));
	if (stat(file_or_dir, &st) < 0)
		return error_simple(e, -errno, file_or_dir, "cannot read: %s", strerror(errno));
	set = calloc(1, sizeof(*set));
	if (!set)
		return error_simple(e, -ENOMEM, file_or_dir, "out of memory");
	if (S_ISDIR(st.st_mode))
		r = load_dir(file_or_dir, set, e);
	else
		r = load_file(file_or_dir, file_or_dir, set, e);
	if (r < 0) {
		loupe_policy_set_free(set);
		return r;
	}
	*ret = set;
	return 0;
}

/* ---- sets -------------------------------------------------------------------------------- */

void loupe_policy_set_clear(struct loupe_policy_set *set)
{
	unsigned int i;

	if (!set)
		return;
	for (i = 0; i < set->n_policies; i++)
		policy_free(&set->policies[i]);
	free(set->policies);
	free(set->warnings);
	memset(set, 0, sizeof(*set));
}

struct loupe_policy_set *loupe_policy_set_free(struct loupe_policy_set *set)
{
	loupe_policy_set_clear(set);
	free(set);
	return NULL;
}

static int policy_order(const void *a, const void *b)
{
	const struct loupe_policy *x = a, *y = b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return strcmp(x->name, y->name);
}

void loupe_policy_set_sort(struct loupe_policy_set *set)
{
	/* names are unique in a set: the order is total, qsort's instability does not show */
	if (set->n_policies)
		qsort(set->policies, set->n_policies, sizeof(*set->policies), policy_order);
}

/* ---- normalised JSON --------------------------------------------------------------------- */

static json_object *json_str(const char *s)
{
	return json_object_new_string(s);
}

static int add(json_object *obj, const char *key, json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(obj, key, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int push(json_object *arr, json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_array_add(arr, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static json_object *labels_json(const struct loupe_policy_label *l, unsigned int n)
{
	json_object *o = json_object_new_object();
	unsigned int i;

	for (i = 0; o && i < n; i++)
		if (add(o, l[i].key, json_str(l[i].value)) < 0) {
			json_object_put(o);
			return NULL;
		}
	return o;
}

static json_object *cidrs_json(const struct loupe_policy_cidr *v, unsigned int n)
{
	json_object *a = json_object_new_array();
	char buf[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];
	unsigned int i;

	for (i = 0; a && i < n; i++) {
		inet_ntop(v[i].family, v[i].addr, addr, sizeof(addr));
		snprintf(buf, sizeof(buf), "%s/%u", addr, v[i].prefix_len);
		if (push(a, json_str(buf)) < 0) {
			json_object_put(a);
			return NULL;
		}
	}
	return a;
}

static json_object *names_json(const struct loupe_policy_names *ns)
{
	json_object *a = json_object_new_array();
	char buf[LOUPE_POLICY_DNS_NAME_MAX + 8];
	unsigned int i;

	for (i = 0; a && i < ns->n; i++) {
		if (ns->v[i].port)
			snprintf(buf, sizeof(buf), "%s:%u", ns->v[i].name, ns->v[i].port);
		else
			snprintf(buf, sizeof(buf), "%s", ns->v[i].name);
		if (push(a, json_str(buf)) < 0) {
			json_object_put(a);
			return NULL;
		}
	}
	return a;
}

static json_object *strings_json(char *const *v, unsigned int n)
{
	json_object *a = json_object_new_array();
	unsigned int i;

	for (i = 0; a && i < n; i++)
		if (push(a, json_str(v[i])) < 0) {
			json_object_put(a);
			return NULL;
		}
	return a;
}

static json_object *match_json(const struct loupe_policy_match *m)
{
	json_object *o = json_object_new_object(), *a, *h;
	unsigned int i;
	int r = 0;

	if (!o)
		return NULL;
	if (m->n_cidrs)
		r = add(o, "cidrs", cidrs_json(m->cidrs, m->n_cidrs));
	if (r == 0 && m->n_ports) {
		a = json_object_new_array();
		r = add(o, "ports", a);
		for (i = 0; r == 0 && i < m->n_ports; i++) {
			const struct loupe_policy_port *p = &m->ports[i];
			json_object *e = json_object_new_object();

			r = push(a, e);
			if (r == 0 && p->protocol != LOUPE_POLICY_ICMP) {
				r = add(e, "port", json_object_new_int(p->port));
				if (r == 0)
					r = add(e, "endPort", json_object_new_int(p->end_port));
			}
			if (r == 0)
				r = add(e, "protocol", json_str(protocol_names[p->protocol]));
		}
	}
	if (r == 0 && m->l7 == LOUPE_POLICY_L7_HTTP) {
		h = json_object_new_object();
		r = add(o, "http", h);
		if (r == 0 && m->http.methods) {
			a = json_object_new_array();
			r = add(h, "methods", a);
			for (i = 0; r == 0 && i < LOUPE_POLICY_HTTP_METHODS_N; i++)
				if (m->http.methods & (1u << i))
					r = push(a, json_str(method_names[i]));
		}
		if (r == 0 && m->http.n_paths)
			r = add(h, "paths", strings_json(m->http.paths, m->http.n_paths));
		if (r == 0 && m->http.hosts.n)
			r = add(h, "hosts", names_json(&m->http.hosts));
	}
	if (r == 0 && m->l7 == LOUPE_POLICY_L7_TLS) {
		h = json_object_new_object();
		r = add(o, "tls", h);
		if (r == 0 && m->tls_sni.n)
			r = add(h, "sni", names_json(&m->tls_sni));
	}
	if (r == 0 && m->l7 == LOUPE_POLICY_L7_DNS) {
		h = json_object_new_object();
		r = add(o, "dns", h);
		if (r == 0 && m->dns_names.n)
			r = add(h, "names", names_json(&m->dns_names));
	}
	if (r < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *rewrite_json(const struct loupe_policy_rewrite *rw)
{
	json_object *o = json_object_new_object(), *h;
	char addr[INET6_ADDRSTRLEN];
	int r;

	if (!o)
		return NULL;
	r = add(o, "name", json_str(rw->name));
	if (r == 0)
		r = add(o, "direction", json_str(direction_names[rw->direction]));
	if (r == 0)
		r = add(o, "match", match_json(&rw->match));
	if (r == 0 && rw->actions & LOUPE_POLICY_RW_MAP) {
		h = json_object_new_object();
		r = add(o, "mapTo", h);
		inet_ntop(rw->map_to.family, rw->map_to.addr, addr, sizeof(addr));
		if (r == 0)
			r = add(h, "address", json_str(addr));
		if (r == 0 && rw->map_to.port)
			r = add(h, "port", json_object_new_int(rw->map_to.port));
	}
	if (r == 0 && rw->actions & LOUPE_POLICY_RW_DSCP)
		r = add(o, "setDscp", json_object_new_int(rw->dscp));
	if (r == 0 && rw->actions & (LOUPE_POLICY_RW_VLAN_PUSH | LOUPE_POLICY_RW_VLAN_POP)) {
		h = json_object_new_object();
		r = add(o, "vlan", h);
		if (r == 0 && rw->actions & LOUPE_POLICY_RW_VLAN_PUSH)
			r = add(h, "push", json_object_new_int(rw->vlan_id));
		else if (r == 0)
			r = add(h, "pop", json_object_new_boolean(1));
	}
	if (r == 0 && rw->actions & LOUPE_POLICY_RW_MASK) {
		h = json_object_new_object();
		r = add(o, "http", h);
		if (r == 0)
			r = add(h, "maskHeaders",
				strings_json(rw->mask_headers, rw->n_mask_headers));
	}
	if (r < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *rate_limit_json(const struct loupe_policy_rate_limit *rl)
{
	json_object *o = json_object_new_object();
	int r;

	if (!o)
		return NULL;
	r = add(o, "direction", json_str(direction_names[rl->direction]));
	if (r == 0)
		r = add(o, "bytesPerSecond", json_object_new_int64((int64_t)rl->bytes_per_sec));
	if (r == 0)
		r = add(o, "burst", json_object_new_int64((int64_t)rl->burst));
	if (r < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *policy_json(const struct loupe_policy *p)
{
	json_object *o = json_object_new_object(), *meta, *ann, *spec, *sel, *rules, *rule;
	const struct loupe_policy_selector *s = &p->selector;
	unsigned int i;
	int r;

	if (!o)
		return NULL;
	r = add(o, "apiVersion", json_str(LOUPE_POLICY_API_VERSION));
	if (r == 0)
		r = add(o, "kind", json_str("Policy"));
	meta = json_object_new_object();
	if (r == 0)
		r = add(o, "metadata", meta);
	if (r == 0)
		r = add(meta, "name", json_str(p->name));
	if (r == 0 && p->n_labels)
		r = add(meta, "labels", labels_json(p->labels, p->n_labels));
	ann = json_object_new_object();
	if (r == 0)
		r = add(meta, "annotations", ann);
	if (r == 0)
		r = add(ann, "loupe.dev/source", json_str(p->source));

	spec = json_object_new_object();
	if (r == 0)
		r = add(o, "spec", spec);
	if (r == 0)
		r = add(spec, "priority", json_object_new_int(p->priority));
	sel = json_object_new_object();
	if (r == 0)
		r = add(spec, "podSelector", sel);
	if (r == 0 && s->n_interfaces)
		r = add(sel, "interfaces", strings_json(s->interfaces, s->n_interfaces));
	if (r == 0 && s->n_cidrs)
		r = add(sel, "cidrs", cidrs_json(s->cidrs, s->n_cidrs));
	if (r == 0 && s->n_labels)
		r = add(sel, "labels", labels_json(s->labels, s->n_labels));
	if (r == 0 && p->default_action)
		r = add(spec, "defaultAction", json_str(action_names[p->default_action]));
	rules = json_object_new_array();
	if (r == 0)
		r = add(spec, "rules", rules);
	for (i = 0; r == 0 && i < p->n_rules; i++) {
		const struct loupe_policy_rule *ru = &p->rules[i];

		rule = json_object_new_object();
		r = push(rules, rule);
		if (r == 0)
			r = add(rule, "name", json_str(ru->name));
		if (r == 0)
			r = add(rule, "direction", json_str(direction_names[ru->direction]));
		if (r == 0)
			r = add(rule, "match", match_json(&ru->match));
		if (r == 0)
			r = add(rule, "action", json_str(action_names[ru->action]));
	}
	/* left out when empty: the normalised form of a set without them is as it was */
	if (r == 0 && p->n_rewrites) {
		rules = json_object_new_array();
		r = add(spec, "rewrites", rules);
		for (i = 0; r == 0 && i < p->n_rewrites; i++)
			r = push(rules, rewrite_json(&p->rewrites[i]));
	}
	if (r == 0 && p->n_rate_limits) {
		rules = json_object_new_array();
		r = add(spec, "rateLimits", rules);
		for (i = 0; r == 0 && i < p->n_rate_limits; i++)
			r = push(rules, rate_limit_json(&p->rate_limits[i]));
	}
	if (r < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

char *loupe_policy_set_to_json(const struct loupe_policy_set *set)
{
	json_object *o = json_object_new_object(), *items;
	char *s = NULL;
	unsigned int i;
	int r;

	if (!o) {
		errno = ENOMEM;
		return NULL;
	}
	r = add(o, "apiVersion", json_str(LOUPE_POLICY_API_VERSION));
	if (r == 0)
		r = add(o, "kind", json_str("PolicyList"));
	items = json_object_new_array();
	if (r == 0)
		r = add(o, "items", items);
	for (i = 0; r == 0 && i < set->n_policies; i++)
		r = push(items, policy_json(&set->policies[i]));
	if (r == 0)
		s = strdup(json_object_to_json_string_ext(
			o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
				   JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	if (!s)
		errno = ENOMEM;
	return s;
}
