// SPDX-License-Identifier: Apache-2.0
/*
 * proto3 canonical JSON for protobuf-c messages, walking their descriptors (see pbjson.h).
 * Generic: it knows no generated type, only well-known types by their full names. Not for
 * parsing, maps, Any/Struct/FieldMask, nor for printing anything itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "pbjson.h"

/* Range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z. */
#define TIMESTAMP_SECONDS_MIN -62135596800LL
#define TIMESTAMP_SECONDS_MAX 253402300799LL
/* Range of google.protobuf.Duration: about +-10000 years. */
#define DURATION_SECONDS_MAX 315576000000LL
#define NANOS_MAX	     999999999

/* Field names up to this long are converted on the stack. */
#define NAME_STACK_MAX 128

static const char *const wrapper_types[] = {
	"google.protobuf.DoubleValue", "google.protobuf.FloatValue",  "google.protobuf.Int64Value",
	"google.protobuf.UInt64Value", "google.protobuf.Int32Value",  "google.protobuf.UInt32Value",
	"google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue",
};

/* Their JSON forms are not derived from their fields; encoding them field by field would lie. */
static const char *const unsupported_types[] = {
	"google.protobuf.Any",	     "google.protobuf.Struct",	  "google.protobuf.Value",
	"google.protobuf.ListValue", "google.protobuf.FieldMask",
};

static int encode_message(const ProtobufCMessage *msg, int depth, struct json_object **ret);

static bool name_in(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(name, names[i]))
			return true;
	}
	return false;
}

int loupe_pbjson_json_name(const char *field_name, char *buf, size_t len)
{
	bool upper = false;
	size_t n = 0;

	for (const char *p = field_name; *p; p++) {
		if (*p == '_') {
			upper = true;
			continue;
		}
		if (n + 1 >= len)
			return -ENAMETOOLONG;
		buf[n++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
		upper = false;
	}
	if (n >= len)
		return -ENAMETOOLONG;
	buf[n] = '\0';
	return (int)n;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
	int64_t era, y;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*ret_d = doy - (153 * mp + 2) / 5 + 1;
	*ret_m = mp < 10 ? mp + 3 : mp - 9;
	*ret_y = y + (*ret_m <= 2);
}

/* ".123", ".123456", ".123456789" or "": as few digit groups as the value needs. */
static void format_fraction(uint32_t nanos, char *buf, size_t len)
{
	if (nanos == 0)
		buf[0] = '\0';
	else if (nanos % 1000000 == 0)
		snprintf(buf, len, ".%03" PRIu32, nanos / 1000000);
	else if (nanos % 1000 == 0)
		snprintf(buf, len, ".%06" PRIu32, nanos / 1000);
	else
		snprintf(buf, len, ".%09" PRIu32, nanos);
}

int loupe_pbjson_format_timestamp(int64_t seconds, int32_t nanos, char *buf, size_t len)
{
	char frac[16];
	int64_t days, year;
	unsigned month, day, sod;

	if (seconds < TIMESTAMP_SECONDS_MIN || seconds > TIMESTAMP_SECONDS_MAX || nanos < 0 ||
	    nanos > NANOS_MAX)
		return -EINVAL;
	if (len < LOUPE_PBJSON_TIMESTAMP_MAX)
		return -ENOSPC;

	days = seconds / 86400;
	if (seconds % 86400 < 0)
		days--;
	sod = (unsigned)(seconds - days * 86400);
	civil_from_days(days, &year, &month, &day);
	format_fraction((uint32_t)nanos, frac, sizeof(frac));
	snprintf(buf, len, "%04d-%02u-%02uT%02u:%02u:%02u%sZ", (int)year, month, day, sod / 3600,
		 sod / 60 % 60, sod % 60, frac);
	return 0;
}

/* Reads the int64 seconds (field 1) and int32 nanos (field 2) of a Timestamp or Duration. */
static int read_seconds_nanos(const ProtobufCMessage *msg, int64_t *ret_s, int32_t *ret_n)
{
	const ProtobufCFieldDescriptor *fs, *fn;

	fs = protobuf_c_message_descriptor_get_field(msg->descriptor, 1);
	fn = protobuf_c_message_descriptor_get_field(msg->descriptor, 2);
	if (!fs || !fn || fs->type != PROTOBUF_C_TYPE_INT64 || fn->type != PROTOBUF_C_TYPE_INT32)
		return -EINVAL;
	memcpy(ret_s, (const char *)msg + fs->offset, sizeof(*ret_s));
	memcpy(ret_n, (const char *)msg + fn->offset, sizeof(*ret_n));
	return 0;
}

static int new_string(const char *s, size_t n, struct json_object **ret)
{
	if (n > INT_MAX)
		return -EOVERFLOW;
	*ret = json_object_new_string_len(s, (int)n);
	return *ret ? 0 : -ENOMEM;
}

static int encode_timestamp(const ProtobufCMessage *msg, struct json_object **ret)
{
	char buf[LOUPE_PBJSON_TIMESTAMP_MAX];
	int64_t seconds;
	int32_t nanos;
	int err;

	err = read_seconds_nanos(msg, &seconds, &nanos);
	if (err < 0)
		goto out;
	err = loupe_pbjson_format_timestamp(seconds, nanos, buf, sizeof(buf));
	if (err < 0)
		goto out;
	err = new_string(buf, strlen(buf), ret);
out:
	return err;
}

/* "1.5s", "-0.000001s", "3s": the sign once, 0, 3, 6 or 9 fractional digits. */
static int encode_duration(const ProtobufCMessage *msg, struct json_object **ret)
{
	char buf[48], frac[16];
	int64_t seconds;
	int32_t nanos;
	int err;

	err = read_seconds_nanos(msg, &seconds, &nanos);
	if (err < 0)
		goto out;
	if (seconds < -DURATION_SECONDS_MAX || seconds > DURATION_SECONDS_MAX ||
	    nanos < -NANOS_MAX || nanos > NANOS_MAX || (seconds > 0 && nanos < 0) ||
	    (seconds < 0 && nanos > 0)) {
		err = -EINVAL;
		goto out;
	}
	format_fraction((uint32_t)(nanos < 0 ? -nanos : nanos), frac, sizeof(frac));
	snprintf(buf, sizeof(buf), "%s%" PRIu64 "%ss", seconds < 0 || nanos < 0 ? "-" : "",
		 (uint64_t)(seconds < 0 ? -seconds : seconds), frac);
	err = new_string(buf, strlen(buf), ret);
out:
	return err;
}

size_t loupe_pbjson_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c < 0xc2) /* stray continuation byte, or an overlong 2-byte form */
		return 0;
	if (c < 0xe0)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c < 0xf0) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
			return 0; /* overlong, or a UTF-16 surrogate */
		return 3;
	}
	if (c < 0xf5) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
			return 0; /* overlong, or above U+10FFFF */
		return 4;
	}
	return 0;
}

/*
 * A JSON string must be Unicode, and strings here often come off the network: each byte
 * that does not belong to well-formed UTF-8 becomes U+FFFD rather than invalid JSON.
 */
static int encode_string(const char *s, struct json_object **ret)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, k, o = 0;
	char *copy = NULL;
	int err;

	while (i < n && (k = loupe_pbjson_utf8_len(u + i, n - i)))
		i += k;
	if (i == n) {
		err = new_string(s, n, ret);
		goto out;
	}

	copy = malloc(n * 3 + 1);
	if (!copy) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i += k) {
		k = loupe_pbjson_utf8_len(u + i, n - i);
		if (k) {
			memcpy(copy + o, s + i, k);
			o += k;
		} else {
			memcpy(copy + o, "\xef\xbf\xbd", 3);
			o += 3;
			k = 1;
		}
	}
	err = new_string(copy, o, ret);
out:
	free(copy);
	return err;
}

/* Standard alphabet, padded (RFC 4648 section 4), as proto3 JSON writes bytes. */
static int encode_bytes(const ProtobufCBinaryData *b, struct json_object **ret)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;
	char *out = NULL;
	uint32_t v;
	int err;

	if (b->len > (size_t)INT_MAX / 4 * 3) {
		err = -EOVERFLOW;
		goto out;
	}
	out = malloc((b->len + 2) / 3 * 4 + 1);
	if (!out) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i + 3 <= b->len; i += 3) {
		v = (uint32_t)b->data[i] << 16 | (uint32_t)b->data[i + 1] << 8 | b->data[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (b->len - i == 1) {
		v = (uint32_t)b->data[i] << 16;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (b->len - i == 2) {
		v = (uint32_t)b->data[i] << 16 | (uint32_t)b->data[i + 1] << 8;
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = '=';
	}
	err = new_string(out, o, ret);
out:
	free(out);
	return err;
}

/*
 * The shortest "%g" form that reads back as the same float or double, as protobuf's own
 * printers do; json-c's default ("%.17g") would print 0.1 as 0.10000000000000001.
 */
static int encode_double(double d, bool single, struct json_object **ret)
{
	char buf[32];

	if (isnan(d))
		return new_string("NaN", 3, ret);
	if (isinf(d))
		return d > 0 ? new_string("Infinity", 8, ret) : new_string("-Infinity", 9, ret);
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (single ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d)
			break;
	}
	*ret = json_object_new_double_s(d, buf);
	return *ret ? 0 : -ENOMEM;
}

static int encode_enum(const ProtobufCEnumDescriptor *ed, int32_t v, struct json_object **ret)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);

	if (ev)
		return new_string(ev->name, strlen(ev->name), ret);
	*ret = json_object_new_int(v); /* a number this build does not know */
	return *ret ? 0 : -ENOMEM;
}

/* One value of field @f stored at @p (the member, or one element of a repeated field). */
static int encode_value(const ProtobufCFieldDescriptor *f, const void *p, int depth,
			struct json_object **ret)
{
	char num[24];
	int32_t i32;
	uint32_t u32;
	int64_t i64;
	uint64_t u64;
	float fl;
	double db;
	protobuf_c_boolean b;
	const char *s;
	const ProtobufCMessage *sub;

	*ret = NULL;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		memcpy(&i32, p, sizeof(i32));
		*ret = json_object_new_int(i32);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		memcpy(&u32, p, sizeof(u32));
		*ret = json_object_new_int64(u32);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		memcpy(&i64, p, sizeof(i64));
		snprintf(num, sizeof(num), "%" PRId64, i64);
		return new_string(num, strlen(num), ret);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		memcpy(&u64, p, sizeof(u64));
		snprintf(num, sizeof(num), "%" PRIu64, u64);
		return new_string(num, strlen(num), ret);
	case PROTOBUF_C_TYPE_FLOAT:
		memcpy(&fl, p, sizeof(fl));
		return encode_double(fl, true, ret);
	case PROTOBUF_C_TYPE_DOUBLE:
		memcpy(&db, p, sizeof(db));
		return encode_double(db, false, ret);
	case PROTOBUF_C_TYPE_BOOL:
		memcpy(&b, p, sizeof(b));
		*ret = json_object_new_boolean(b != 0);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		memcpy(&i32, p, sizeof(i32));
		return encode_enum(f->descriptor, i32, ret);
	case PROTOBUF_C_TYPE_STRING:
		memcpy(&s, p, sizeof(s));
		return encode_string(s ? s : "", ret);
	case PROTOBUF_C_TYPE_BYTES:
		return encode_bytes(p, ret);
	case PROTOBUF_C_TYPE_MESSAGE:
		memcpy(&sub, p, sizeof(sub));
		if (!sub)
			return -EINVAL; /* only an element of a repeated field gets here as NULL */
		return encode_message(sub, depth + 1, ret);
	default:
		return -EINVAL;
	}
	return *ret ? 0 : -ENOMEM;
}

static size_t value_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default: /* 32-bit integers and enums */
		return sizeof(uint32_t);
	}
}

/* proto3 implicit presence: the zero value of the type is not written. */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
	static const uint8_t zero[sizeof(ProtobufCBinaryData)];
	const char *s;
	ProtobufCBinaryData bin;

	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		memcpy(&s, p, sizeof(s));
		return !s || !*s;
	case PROTOBUF_C_TYPE_BYTES:
		memcpy(&bin, p, sizeof(bin));
		return bin.len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		memcpy(&s, p, sizeof(s));
		return !s;
	default: /* numbers by their bits: -0.0 is not the default, as in protobuf */
		return !memcmp(p, zero, value_size(f->type));
	}
}

static bool is_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
		       const void *member)
{
	const char *base = (const char *)msg;
	uint32_t oneof_case;
	protobuf_c_boolean has;
	const void *ptr;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		memcpy(&oneof_case, base + f->quantifier_offset, sizeof(oneof_case));
		if (oneof_case != f->id)
			return false;
		/* a chosen oneof member is written even when it holds its type's default */
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			memcpy(&ptr, member, sizeof(ptr));
			return ptr != NULL;
		}
		return true;
	}
	switch (f->label) {
	case PROTOBUF_C_LABEL_REQUIRED:
		return true;
	case PROTOBUF_C_LABEL_OPTIONAL:
		if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
			memcpy(&ptr, member, sizeof(ptr));
			return ptr && ptr != f->default_value;
		}
		memcpy(&has, base + f->quantifier_offset, sizeof(has));
		return has != 0;
	default:
		return !is_default(f, member);
	}
}

static int encode_repeated(const ProtobufCFieldDescriptor *f, const char *values, size_t n,
			   int depth, struct json_object **ret)
{
	struct json_object *arr = NULL, *v;
	size_t size = value_size(f->type);
	int err;

	arr = json_object_new_array_ext(n > INT_MAX ? INT_MAX : (int)n);
	if (!arr) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		err = encode_value(f, values + i * size, depth, &v);
		if (err < 0)
			goto out;
		if (json_object_array_add(arr, v)) {
			json_object_put(v);
			err = -ENOMEM;
			goto out;
		}
	}
	*ret = arr;
	arr = NULL;
	err = 0;
out:
	json_object_put(arr);
	return err;
}

/* Returns 1 and sets *ret when the field is to be written, 0 when it is left out, or -errno. */
static int encode_field(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int depth,
			struct json_object **ret)
{
	const char *member = (const char *)msg + f->offset;
	const char *values;
	size_t n;
	int err;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		memcpy(&n, (const char *)msg + f->quantifier_offset, sizeof(n));
		if (n == 0)
			return 0;
		memcpy(&values, member, sizeof(values));
		if (!values)
			return -EINVAL;
		err = encode_repeated(f, values, n, depth, ret);
	} else {
		if (!is_present(msg, f, member))
			return 0;
		err = encode_value(f, member, depth, ret);
	}
	return err < 0 ? err : 1;
}

/* Adds @val under the JSON name of @field_name; takes @val over, even on failure. */
static int add_member(struct json_object *obj, const char *field_name, struct json_object *val)
{
	char stack_buf[NAME_STACK_MAX];
	char *name = stack_buf, *heap = NULL;
	size_t len = strlen(field_name) + 1;
	int err;

	if (len > sizeof(stack_buf)) {
		name = heap = malloc(len);
		if (!name) {
			err = -ENOMEM;
			goto out;
		}
	}
	err = loupe_pbjson_json_name(field_name, name, len);
	if (err < 0)
		goto out;
	if (json_object_object_add(obj, name, val)) {
		err = -ENOMEM;
		goto out;
	}
	val = NULL;
	err = 0;
out:
	json_object_put(val);
	free(heap);
	return err;
}

static int encode_message(const ProtobufCMessage *msg, int depth, struct json_object **ret)
{
	const ProtobufCMessageDescriptor *desc = msg->descriptor;
	struct json_object *obj = NULL, *val;
	int err;

	if (!desc || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC) {
		err = -EINVAL;
		goto out;
	}
	if (depth > LOUPE_PBJSON_DEPTH_MAX) {
		err = -ELOOP;
		goto out;
	}
	if (!strcmp(desc->name, "google.protobuf.Timestamp")) {
		err = encode_timestamp(msg, ret);
		goto out;
	}
	if (!strcmp(desc->name, "google.protobuf.Duration")) {
		err = encode_duration(msg, ret);
		goto out;
	}
	if (name_in(desc->name, wrapper_types, sizeof(wrapper_types) / sizeof(wrapper_types[0])) &&
	    desc->n_fields == 1) {
		/* the bare value, written even when it is the default */
		err = encode_value(&desc->fields[0], (const char *)msg + desc->fields[0].offset,
				   depth, ret);
		goto out;
	}
	if (name_in(desc->name, unsupported_types,
		    sizeof(unsupported_types) / sizeof(unsupported_types[0]))) {
		err = -EOPNOTSUPP;
		goto out;
	}

	obj = json_object_new_object();
	if (!obj) {
		err = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < desc->n_fields; i++) {
		err = encode_field(msg, &desc->fields[i], depth, &val);
		if (err < 0)
			goto out;
		if (err == 0)
			continue;
		err = add_member(obj, desc->fields[i].name, val);
		if (err < 0)
			goto out;
	}
	*ret = obj;
	obj = NULL;
	err = 0;
out:
	json_object_put(obj);
	return err;
}

struct json_object *loupe_pbjson_encode(const ProtobufCMessage *msg)
{
	struct json_object *obj = NULL;
	int err;

	if (!msg) {
		errno = EINVAL;
		return NULL;
	}
	err = encode_message(msg, 0, &obj);
	if (err < 0) {
		errno = -err;
		return NULL;
	}
	return obj;
}

char *loupe_pbjson_to_string(const ProtobufCMessage *msg)
{
	struct json_object *obj;
	const char *s;
	char *ret = NULL;

	obj = loupe_pbjson_encode(msg);
	if (!obj)
		goto out;
	s = json_object_to_json_string_ext(obj,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s) {
		errno = ENOMEM;
		goto out;
	}
	ret = strdup(s);
out:
	json_object_put(obj);
	return ret;
}
