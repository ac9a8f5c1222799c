// SPDX-License-Identifier: Apache-2.0
/*
 * proto3 JSON without a tree (see json_out.h): the walk of proto/pbjson.c (fields in
 * descriptor order, proto3 presence, lowerCamelCase names, enums by name, 64-bit integers
 * as strings, invalid UTF-8 as U+FFFD) and json-c's string escaping, into a flat buffer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "json_out.h"
#include "pbjson.h"

struct out {
	char *p, *end;
	int err;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->err)
		return;
	if ((size_t)(o->end - o->p) <= n) {
		o->err = -ENOSPC;
		return;
	}
	memcpy(o->p, s, n);
	o->p += n;
}

static void putc_(struct out *o, char c)
{
	put(o, &c, 1);
}

/* As json-c escapes (JSON_C_TO_STRING_NOSLASHESCAPE), after pbjson's UTF-8 repair. */
static void put_string(struct out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, k;

	putc_(o, '"');
	while (i < n && !o->err) {
		unsigned char c = u[i];

		k = loupe_pbjson_utf8_len(u + i, n - i);
		if (!k) {
			put(o, "\xef\xbf\xbd", 3);
			i++;
			continue;
		}
		if (k > 1) {
			put(o, s + i, k);
			i += k;
			continue;
		}
		switch (c) {
		case '"':
			put(o, "\\\"", 2);
			break;
		case '\\':
			put(o, "\\\\", 2);
			break;
		case '\b':
			put(o, "\\b", 2);
			break;
		case '\n':
			put(o, "\\n", 2);
			break;
		case '\r':
			put(o, "\\r", 2);
			break;
		case '\t':
			put(o, "\\t", 2);
			break;
		case '\f':
			put(o, "\\f", 2);
			break;
		default:
			if (c < ' ') {
				char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

				put(o, e, 6);
			} else {
				putc_(o, (char)c);
			}
		}
		i++;
	}
	putc_(o, '"');
}

static void put_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(struct out *o, const char *fmt, ...)
{
	char buf[48];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put(o, buf, (size_t)n);
}

static void put_message(struct out *o, const ProtobufCMessage *msg, int depth);

static size_t value_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	default:
		return 4;
	}
}

static void put_value(struct out *o, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
	int32_t i32;
	uint32_t u32;
	int64_t i64;
	uint64_t u64;
	protobuf_c_boolean b;
	const char *s;
	const ProtobufCMessage *m;
	const ProtobufCEnumValue *ev;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		memcpy(&i32, p, 4);
		put_fmt(o, "%" PRId32, i32);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		memcpy(&u32, p, 4);
		put_fmt(o, "%" PRIu32, u32);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		memcpy(&i64, p, 8);
		put_fmt(o, "\"%" PRId64 "\"", i64);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		memcpy(&u64, p, 8);
		put_fmt(o, "\"%" PRIu64 "\"", u64);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		memcpy(&b, p, sizeof(b));
		put(o, b ? "true" : "false", b ? 4 : 5);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		memcpy(&i32, p, 4);
		ev = protobuf_c_enum_descriptor_get_value(f->descriptor, i32);
		if (ev)
			put_string(o, ev->name);
		else
			put_fmt(o, "%" PRId32, i32);
		break;
	case PROTOBUF_C_TYPE_STRING:
		memcpy(&s, p, sizeof(s));
		put_string(o, s ? s : "");
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		memcpy(&m, p, sizeof(m));
		if (!m)
			o->err = -EINVAL;
		else
			put_message(o, m, depth + 1);
		break;
	default:
		o->err = -EOPNOTSUPP;
	}
}

static bool present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
		    const char *member)
{
	static const uint8_t zero[8];
	uint32_t oneof_case;
	protobuf_c_boolean has;
	const void *ptr;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		memcpy(&oneof_case, (const char *)msg + f->quantifier_offset, 4);
		if (oneof_case != f->id)
			return false;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			memcpy(&ptr, member, sizeof(ptr));
			return ptr != NULL;
		}
		return true;
	}
	if (f->label == PROTOBUF_C_LABEL_REQUIRED)
		return true;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
		if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
			memcpy(&ptr, member, sizeof(ptr));
			return ptr && ptr != f->default_value;
		}
		memcpy(&has, (const char *)msg + f->quantifier_offset, sizeof(has));
		return has != 0;
	}
	if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
		memcpy(&ptr, member, sizeof(ptr));
		return f->type == PROTOBUF_C_TYPE_STRING ? ptr && *(const char *)ptr : ptr != NULL;
	}
	return memcmp(member, zero, value_size(f->type)) != 0;
}

static void put_message(struct out *o, const ProtobufCMessage *msg, int depth)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	bool first = true;

	if (o->err)
		return;
	if (depth > LOUPE_PBJSON_DEPTH_MAX) {
		o->err = -ELOOP;
		return;
	}
	if (!strcmp(d->name, "google.protobuf.Timestamp")) {
		char ts[LOUPE_PBJSON_TIMESTAMP_MAX];
		const ProtobufCFieldDescriptor *fs = protobuf_c_message_descriptor_get_field(d, 1);
		const ProtobufCFieldDescriptor *fn = protobuf_c_message_descriptor_get_field(d, 2);
		int64_t sec;
		int32_t nanos;

		memcpy(&sec, (const char *)msg + fs->offset, 8);
		memcpy(&nanos, (const char *)msg + fn->offset, 4);
		if (loupe_pbjson_format_timestamp(sec, nanos, ts, sizeof(ts)) < 0) {
			o->err = -EINVAL;
			return;
		}
		putc_(o, '"');
		put(o, ts, strlen(ts));
		putc_(o, '"');
		return;
	}
	if (!strncmp(d->name, "google.protobuf.", 16)) {
		o->err = -EOPNOTSUPP; /* Duration, wrappers, Any...: pbjson's */
		return;
	}
	putc_(o, '{');
	for (unsigned int i = 0; i < d->n_fields && !o->err; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *member = (const char *)msg + f->offset;
		char name[128];
		size_t n = 0;

		if (f->type == PROTOBUF_C_TYPE_FLOAT || f->type == PROTOBUF_C_TYPE_DOUBLE ||
		    f->type == PROTOBUF_C_TYPE_BYTES) {
			o->err = -EOPNOTSUPP; /* pbjson's shortest-%g and base64 */
			return;
		}

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			memcpy(&n, (const char *)msg + f->quantifier_offset, sizeof(n));
			if (!n)
				continue;
		} else if (!present(msg, f, member)) {
			continue;
		}
		if (loupe_pbjson_json_name(f->name, name, sizeof(name)) < 0) {
			o->err = -EOPNOTSUPP;
			return;
		}
		if (!first)
			putc_(o, ',');
		first = false;
		putc_(o, '"');
		put(o, name, strlen(name));
		put(o, "\":", 2);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			const char *values;

			memcpy(&values, member, sizeof(values));
			if (!values) {
				o->err = -EINVAL;
				return;
			}
			putc_(o, '[');
			for (size_t k = 0; k < n; k++) {
				if (k)
					putc_(o, ',');
				put_value(o, f, values + k * value_size(f->type), depth);
			}
			putc_(o, ']');
		} else {
			put_value(o, f, member, depth);
		}
	}
	putc_(o, '}');
}

int loupe_json_out(const ProtobufCMessage *msg, char *buf, size_t size)
{
	struct out o = { buf, buf + size, 0 };

	if (!size)
		return -ENOSPC;
	put_message(&o, msg, 0);
	if (o.err)
		return o.err;
	*o.p = '\0';
	return (int)(o.p - buf);
}
