/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto3's canonical JSON mapping for any protobuf-c message, driven by its descriptors:
 * lowerCamelCase names, defaults omitted, enums by name, 64-bit integers as strings, bytes
 * as base64, google.protobuf.Timestamp/Duration as RFC 3339 / "1.5s" strings and the
 * wrapper types as their bare values.
 *
 * Not for parsing JSON back, nor for map fields (protobuf-c does not mark map entries: they
 * come out as arrays of {"key","value"}), nor for custom json_name options (protobuf-c does
 * not keep them). google.protobuf.Any, Struct, Value, ListValue and FieldMask are refused
 * with EOPNOTSUPP rather than encoded wrongly.
 */
#ifndef LOUPE_PBJSON_H
#define LOUPE_PBJSON_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct json_object;

/* Nesting deeper than this is refused with ELOOP (protobuf's own parsers stop at 100). */
#define LOUPE_PBJSON_DEPTH_MAX 100

/*
 * Length of an RFC 3339 timestamp as written by loupe_pbjson_format_timestamp(), NUL
 * included: "9999-12-31T23:59:59.999999999Z".
 */
#define LOUPE_PBJSON_TIMESTAMP_MAX 31

/*
 * Encodes @msg into a new json-c value: an object, or a string for a message that is a
 * well-known type with a string form (Timestamp, Duration). The caller releases it with
 * json_object_put(). Returns NULL and sets errno: EINVAL for a value the mapping cannot
 * express (Timestamp out of 0001..9999, nanos out of range), EOPNOTSUPP, ELOOP, ENOMEM.
 */
struct json_object *loupe_pbjson_encode(const ProtobufCMessage *msg);

/*
 * Same as loupe_pbjson_encode(), serialized on one line without spaces and without
 * escaping '/'. Returns a malloc'd string the caller frees, or NULL and sets errno.
 */
char *loupe_pbjson_to_string(const ProtobufCMessage *msg);

/*
 * The JSON name protoc derives from a field name (FieldDescriptor::json_name): each '_' is
 * dropped and the character after it upper-cased, e.g. "src_ip" -> "srcIp". Writes it NUL
 * terminated into @buf. Returns its length or -ENAMETOOLONG when @len is too small.
 */
int loupe_pbjson_json_name(const char *field_name, char *buf, size_t len);

/*
 * Length of the well-formed UTF-8 sequence (RFC 3629) at @s, of @n bytes (n >= 1), or 0 when
 * there is none. What pbjson and the other JSON writers repair with U+FFFD, byte by byte.
 */
size_t loupe_pbjson_utf8_len(const unsigned char *s, size_t n);

/*
 * Formats a google.protobuf.Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional
 * digits, e.g. "1970-01-01T00:00:01Z", "2026-11-27T06:12:55.123456789Z". Returns 0,
 * -EINVAL when @seconds or @nanos are outside the range the type allows, -ENOSPC when
 * @len is less than LOUPE_PBJSON_TIMESTAMP_MAX.
 */
int loupe_pbjson_format_timestamp(int64_t seconds, int32_t nanos, char *buf, size_t len);

#endif /* LOUPE_PBJSON_H */
