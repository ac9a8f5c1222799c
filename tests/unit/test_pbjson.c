// SPDX-License-Identifier: Apache-2.0
/*
 * pbjson against hand-built messages: every scalar type, defaults, enums, bytes, strings,
 * well-known types, oneof, nesting, repeated, proto2 presence, and the JSON names of the
 * whole loupe.v1.Event tree. Not for struct loupe_event conversion (test_event_pb.c).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "pbjson.h"
#include "loupe/v1/event.pb-c.h"
#include "test_pbjson.pb-c.h"
#include "test_pbjson2.pb-c.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Encodes @msg and compares the whole text. */
static void expect_json(const ProtobufCMessage *msg, const char *want)
{
	char *got = loupe_pbjson_to_string(msg);

	cr_assert_not_null(got, "encode failed: %s", strerror(errno));
	cr_expect_str_eq(got, want);
	free(got);
}

static void expect_error(const ProtobufCMessage *msg, int want_errno)
{
	char *got;

	errno = 0;
	got = loupe_pbjson_to_string(msg);
	cr_expect_null(got, "expected failure, got %s", got ? got : "");
	cr_expect_eq(errno, want_errno, "errno %d, want %d", errno, want_errno);
	free(got);
}

static void expect_timestamp(int64_t seconds, int32_t nanos, const char *want)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	char buf[LOUPE_PBJSON_TIMESTAMP_MAX + 2];

	ts.seconds = seconds;
	ts.nanos = nanos;
	snprintf(buf, sizeof(buf), "\"%s\"", want);
	expect_json(&ts.base, buf);
}

static void expect_duration(int64_t seconds, int32_t nanos, const char *want)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;

	d.seconds = seconds;
	d.nanos = nanos;
	expect_json(&d.base, want);
}

Test(pbjson, empty_message)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__V1__Event ev = LOUPE__V1__EVENT__INIT;

	expect_json(&all.base, "{}");
	expect_json(&ev.base, "{}");
}

Test(pbjson, every_scalar_type)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__Test__Inner inner = LOUPE__TEST__INNER__INIT;
	uint8_t bytes[] = { 0x00, 0xff, 0xfe, 0x10, 0x80 };

	all.f_int32 = -5;
	all.f_sint32 = -6;
	all.f_sfixed32 = -7;
	all.f_uint32 = UINT32_MAX;
	all.f_fixed32 = 8;
	all.f_int64 = INT64_MIN;
	all.f_sint64 = -9;
	all.f_sfixed64 = 10;
	all.f_uint64 = UINT64_MAX;
	all.f_fixed64 = 11;
	all.f_float = 0.1f;
	all.f_double = 0.1;
	all.f_bool = 1;
	all.f_string = "h\xc3\xa9";
	all.f_bytes.len = sizeof(bytes);
	all.f_bytes.data = bytes;
	all.f_enum = LOUPE__TEST__COLOR__GREEN;
	inner.name = "in";
	inner.n = 3;
	all.f_inner = &inner;
	expect_json(&all.base,
		    "{\"fInt32\":-5,\"fSint32\":-6,\"fSfixed32\":-7,"
		    "\"fUint32\":4294967295,\"fFixed32\":8,"
		    "\"fInt64\":\"-9223372036854775808\",\"fSint64\":\"-9\","
		    "\"fSfixed64\":\"10\",\"fUint64\":\"18446744073709551615\","
		    "\"fFixed64\":\"11\",\"fFloat\":0.1,\"fDouble\":0.1,\"fBool\":true,"
		    "\"fString\":\"h\xc3\xa9\",\"fBytes\":\"AP/+EIA=\",\"fEnum\":\"GREEN\","
		    "\"fInner\":{\"name\":\"in\",\"n\":3}}");
}

Test(pbjson, integer_limits)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;

	all.f_int32 = INT32_MIN;
	all.f_int64 = INT64_MAX;
	all.f_fixed64 = 12;
	expect_json(
		&all.base,
		"{\"fInt32\":-2147483648,\"fInt64\":\"9223372036854775807\",\"fFixed64\":\"12\"}");
}

Test(pbjson, empty_sub_message_is_written)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__Test__Inner inner = LOUPE__TEST__INNER__INIT;

	all.f_inner = &inner;
	expect_json(&all.base, "{\"fInner\":{}}");
}

Test(pbjson, defaults_omitted)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;

	/* explicit zero values, an empty string and empty bytes: nothing to write */
	all.f_string = "";
	all.f_bytes.len = 0;
	all.f_bytes.data = (uint8_t *)"x";
	all.f_enum = LOUPE__TEST__COLOR__COLOR_UNSPECIFIED;
	all.f_double = 0.0;
	all.f_bool = 0;
	all.n_r_int32 = 0;
	expect_json(&all.base, "{}");
}

Test(pbjson, doubles)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	double d[] = { 1.0, -2.5, 1e300, 5e-324, -0.0, NAN, INFINITY, -INFINITY, 123456789.125 };

	all.n_r_double = ARRAY_SIZE(d);
	all.r_double = d;
	expect_json(&all.base, "{\"rDouble\":[1,-2.5,1e+300,5e-324,-0,\"NaN\","
			       "\"Infinity\",\"-Infinity\",123456789.125]}");
}

Test(pbjson, floats_shortest)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;

	all.f_float = 3.14159274f;
	all.f_double = 1.0 / 3.0;
	expect_json(&all.base, "{\"fFloat\":3.1415927,\"fDouble\":0.3333333333333333}");
	all.f_float = -0.0f;
	all.f_double = 0;
	expect_json(&all.base, "{\"fFloat\":-0}");
}

Test(pbjson, enums)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__Test__Color colors[] = { LOUPE__TEST__COLOR__RED,
					LOUPE__TEST__COLOR__COLOR_UNSPECIFIED,
					(Loupe__Test__Color)7 };

	all.f_enum = (Loupe__Test__Color)42; /* unknown: written as its number */
	all.n_r_enum = ARRAY_SIZE(colors);
	all.r_enum = colors;
	expect_json(&all.base, "{\"fEnum\":42,\"rEnum\":[\"RED\",\"COLOR_UNSPECIFIED\",7]}");
}

Test(pbjson, bytes_base64)
{
	static const struct {
		const char *in;
		const char *out;
	} rows[] = {
		{ "f", "Zg==" },	{ "fo", "Zm8=" },	 { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	char want[64];

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		all.f_bytes.data = (uint8_t *)rows[i].in;
		all.f_bytes.len = strlen(rows[i].in);
		snprintf(want, sizeof(want), "{\"fBytes\":\"%s\"}", rows[i].out);
		expect_json(&all.base, want);
	}
}

Test(pbjson, strings_escaped)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;

	all.f_string = "q\"b\\s/n\nt\tc\x01\x1f"
		       "d\x7f";
	expect_json(&all.base, "{\"fString\":\"q\\\"b\\\\s/n\\nt\\tc\\u0001\\u001fd\x7f\"}");

	/* non-ASCII stays UTF-8: é, €, U+1F600 */
	all.f_string = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	expect_json(&all.base, "{\"fString\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}");
}

Test(pbjson, invalid_utf8_replaced)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	struct json_object *obj, *parsed;
	char *s;

	/* stray continuation, overlong '/', surrogate, truncated sequence at the end */
	all.f_string = "a\x80"
		       "b\xc0\xaf"
		       "c\xed\xa0\x80"
		       "d\xe2\x82";
	s = loupe_pbjson_to_string(&all.base);
	cr_assert_not_null(s);
	cr_expect_str_eq(s, "{\"fString\":\"a\xef\xbf\xbd"
			    "b\xef\xbf\xbd\xef\xbf\xbd"
			    "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
			    "d\xef\xbf\xbd\xef\xbf\xbd\"}");
	parsed = json_tokener_parse(s);
	cr_expect_not_null(parsed, "output must be valid JSON");
	json_object_put(parsed);
	free(s);

	obj = loupe_pbjson_encode(&all.base);
	cr_assert_not_null(obj);
	cr_expect(json_object_is_type(obj, json_type_object));
	json_object_put(obj);
}

Test(pbjson, repeated)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__Test__Inner in1 = LOUPE__TEST__INNER__INIT, in2 = LOUPE__TEST__INNER__INIT;
	Loupe__Test__Inner *inners[] = { &in1, &in2 };
	int32_t ints[] = { 0, -1, 2 };
	uint64_t u64s[] = { 0, 1ULL << 63 };
	char *strs[] = { "a", "", "c" };
	protobuf_c_boolean bools[] = { 0, 1 };
	ProtobufCBinaryData bins[] = { { 0, NULL }, { 2, (uint8_t *)"hi" } };

	in2.n = 5;
	all.n_r_int32 = ARRAY_SIZE(ints);
	all.r_int32 = ints;
	all.n_r_uint64 = ARRAY_SIZE(u64s);
	all.r_uint64 = u64s;
	all.n_r_string = ARRAY_SIZE(strs);
	all.r_string = strs;
	all.n_r_inner = ARRAY_SIZE(inners);
	all.r_inner = inners;
	all.n_r_bytes = ARRAY_SIZE(bins);
	all.r_bytes = bins;
	all.n_r_bool = ARRAY_SIZE(bools);
	all.r_bool = bools;
	/* elements are written whatever their value: defaults only drop singular fields */
	expect_json(&all.base, "{\"rInt32\":[0,-1,2],\"rUint64\":[\"0\",\"9223372036854775808\"],"
			       "\"rString\":[\"a\",\"\",\"c\"],\"rInner\":[{},{\"n\":5}],"
			       "\"rBytes\":[\"\",\"aGk=\"],\"rBool\":[false,true]}");
}

Test(pbjson, nested)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__Test__Inner a = LOUPE__TEST__INNER__INIT, b = LOUPE__TEST__INNER__INIT,
			   c = LOUPE__TEST__INNER__INIT;

	a.name = "a";
	a.child = &b;
	b.child = &c;
	c.n = -1;
	all.f_inner = &a;
	expect_json(&all.base, "{\"fInner\":{\"name\":\"a\",\"child\":{\"child\":{\"n\":-1}}}}");
}

Test(pbjson, depth_limit)
{
	static Loupe__Test__Inner chain[LOUPE_PBJSON_DEPTH_MAX + 2];
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	struct json_object *obj;

	for (size_t i = 0; i < ARRAY_SIZE(chain); i++) {
		loupe__test__inner__init(&chain[i]);
		chain[i].child = i + 1 < ARRAY_SIZE(chain) ? &chain[i + 1] : NULL;
	}
	all.f_inner = &chain[0];
	expect_error(&all.base, ELOOP);

	/* LOUPE_PBJSON_DEPTH_MAX levels below the top are fine */
	chain[LOUPE_PBJSON_DEPTH_MAX - 1].child = NULL;
	obj = loupe_pbjson_encode(&all.base);
	cr_expect_not_null(obj);
	json_object_put(obj);
}

Test(pbjson, timestamp_forms)
{
	expect_timestamp(0, 0, "1970-01-01T00:00:00Z");
	expect_timestamp(1, 0, "1970-01-01T00:00:01Z");
	expect_timestamp(1795759975, 123456789, "2026-11-27T06:12:55.123456789Z");
	expect_timestamp(1795759975, 123000000, "2026-11-27T06:12:55.123Z");
	expect_timestamp(1795759975, 123456000, "2026-11-27T06:12:55.123456Z");
	expect_timestamp(1795759975, 1000, "2026-11-27T06:12:55.000001Z");
	expect_timestamp(1795759975, 1, "2026-11-27T06:12:55.000000001Z");
	expect_timestamp(1709251199, 0, "2024-02-29T23:59:59Z");
	expect_timestamp(951868800, 0, "2000-03-01T00:00:00Z");
	expect_timestamp(-1, 500000000, "1969-12-31T23:59:59.500Z");
	expect_timestamp(-62135596800LL, 0, "0001-01-01T00:00:00Z");
	expect_timestamp(253402300799LL, 999999999, "9999-12-31T23:59:59.999999999Z");
}

Test(pbjson, timestamp_out_of_range)
{
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	char buf[LOUPE_PBJSON_TIMESTAMP_MAX];

	ts.seconds = 253402300800LL;
	expect_error(&ts.base, EINVAL);
	ts.seconds = -62135596801LL;
	expect_error(&ts.base, EINVAL);
	ts.seconds = 0;
	ts.nanos = -1;
	expect_error(&ts.base, EINVAL);
	ts.nanos = 1000000000;
	expect_error(&ts.base, EINVAL);

	cr_expect_eq(loupe_pbjson_format_timestamp(0, 0, buf, sizeof(buf) - 1), -ENOSPC);
	cr_expect_eq(loupe_pbjson_format_timestamp(0, 0, buf, sizeof(buf)), 0);
	cr_expect_str_eq(buf, "1970-01-01T00:00:00Z");
}

Test(pbjson, timestamp_inside_messages)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
				    t2 = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Google__Protobuf__Timestamp *list[] = { &ts, &t2 };

	t2.seconds = 60;
	all.ts = &ts; /* present: written even at the epoch */
	all.n_r_ts = ARRAY_SIZE(list);
	all.r_ts = list;
	expect_json(&all.base, "{\"ts\":\"1970-01-01T00:00:00Z\","
			       "\"rTs\":[\"1970-01-01T00:00:00Z\",\"1970-01-01T00:01:00Z\"]}");
}

Test(pbjson, duration_forms)
{
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;

	expect_duration(0, 0, "\"0s\"");
	expect_duration(1, 500000000, "\"1.500s\"");
	expect_duration(-1, -500000000, "\"-1.500s\"");
	expect_duration(0, -1000, "\"-0.000001s\"");
	expect_duration(3, 1, "\"3.000000001s\"");
	expect_duration(315576000000LL, 0, "\"315576000000s\"");
	d.seconds = 1;
	d.nanos = -1;
	expect_error(&d.base, EINVAL);
	d.seconds = 315576000001LL;
	d.nanos = 0;
	expect_error(&d.base, EINVAL);
}

Test(pbjson, wrappers_write_defaults)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Google__Protobuf__UInt64Value u = GOOGLE__PROTOBUF__UINT64_VALUE__INIT;
	Google__Protobuf__BoolValue b = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
	Google__Protobuf__StringValue s = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
	Google__Protobuf__Int32Value i = GOOGLE__PROTOBUF__INT32_VALUE__INIT;

	all.w_uint64 = &u;
	all.w_bool = &b;
	all.w_string = &s;
	all.w_int32 = &i;
	expect_json(&all.base, "{\"wUint64\":\"0\",\"wBool\":false,\"wString\":\"\",\"wInt32\":0}");
	u.value = 99;
	b.value = 1;
	s.value = "x";
	i.value = -3;
	expect_json(&all.base,
		    "{\"wUint64\":\"99\",\"wBool\":true,\"wString\":\"x\",\"wInt32\":-3}");
}

Test(pbjson, any_refused)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;

	all.any = &any;
	expect_error(&all.base, EOPNOTSUPP);
}

Test(pbjson, oneof)
{
	Loupe__Test__All all = LOUPE__TEST__ALL__INIT;
	Loupe__Test__Inner inner = LOUPE__TEST__INNER__INIT;

	/* a chosen member is written even with its type's default value */
	all.choice_case = LOUPE__TEST__ALL__CHOICE_C_INT32;
	all.c_int32 = 0;
	expect_json(&all.base, "{\"cInt32\":0}");
	all.choice_case = LOUPE__TEST__ALL__CHOICE_C_STRING;
	all.c_string = "";
	expect_json(&all.base, "{\"cString\":\"\"}");
	all.choice_case = LOUPE__TEST__ALL__CHOICE_C_INNER;
	all.c_inner = &inner;
	expect_json(&all.base, "{\"cInner\":{}}");
	all.choice_case = LOUPE__TEST__ALL__CHOICE__NOT_SET;
	expect_json(&all.base, "{}");
}

Test(pbjson, proto2_presence)
{
	Loupe__Test2__Legacy m = LOUPE__TEST2__LEGACY__INIT;

	/* required always written; optional scalars by their has_ flag, strings by pointer */
	expect_json(&m.base, "{\"req\":0}");
	m.has_opt = 1;
	m.opt = 0;
	m.opt_str = "";
	m.has_opt_bytes = 1;
	expect_json(&m.base, "{\"req\":0,\"opt\":0,\"optStr\":\"\",\"optBytes\":\"\"}");
	m.has_opt_u64 = 1;
	expect_json(&m.base,
		    "{\"req\":0,\"opt\":0,\"optStr\":\"\",\"optU64\":\"5\",\"optBytes\":\"\"}");
}

Test(pbjson, json_name)
{
	static const struct {
		const char *in;
		const char *out;
	} rows[] = {
		{ "src_ip", "srcIp" },
		{ "vlan_id", "vlanId" },
		{ "has_inner_vlan", "hasInnerVlan" },
		{ "a_b_c_d", "aBCD" },
		{ "x2_y", "x2Y" },
		{ "name_2", "name2" },
		{ "trailing_", "trailing" },
		{ "_leading", "Leading" },
		{ "double__under", "doubleUnder" },
		{ "ALREADY_UPPER", "ALREADYUPPER" },
		{ "mixedCase_x", "mixedCaseX" },
		{ "", "" },
	};
	char buf[32];

	for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
		cr_expect_eq(loupe_pbjson_json_name(rows[i].in, buf, sizeof(buf)),
			     (int)strlen(rows[i].out), "%s", rows[i].in);
		cr_expect_str_eq(buf, rows[i].out);
	}
	cr_expect_eq(loupe_pbjson_json_name("src_ip", buf, 5), -ENAMETOOLONG);
	cr_expect_eq(loupe_pbjson_json_name("src_ip", buf, 6), 5);
	cr_expect_eq(loupe_pbjson_json_name("", buf, 0), -ENAMETOOLONG);
}

Test(pbjson, null_message)
{
	errno = 0;
	cr_expect_null(loupe_pbjson_encode(NULL));
	cr_expect_eq(errno, EINVAL);
}

/*
 * The JSON name of every field in loupe.v1.Event's descriptor tree. A new field fails the
 * count check until it is listed here, with the name clients will see.
 */
static const struct {
	const char *message;
	const char *field;
	const char *json;
} event_names[] = {
	{ "loupe.v1.Event", "seq", "seq" },
	{ "loupe.v1.Event", "time", "time" },
	{ "loupe.v1.Event", "node", "node" },
	{ "loupe.v1.Event", "kind", "kind" },
	{ "loupe.v1.Event", "interface", "interface" },
	{ "loupe.v1.Event", "direction", "direction" },
	{ "loupe.v1.Event", "src_ip", "srcIp" },
	{ "loupe.v1.Event", "dst_ip", "dstIp" },
	{ "loupe.v1.Event", "src_port", "srcPort" },
	{ "loupe.v1.Event", "dst_port", "dstPort" },
	{ "loupe.v1.Event", "protocol", "protocol" },
	{ "loupe.v1.Event", "vlan_id", "vlanId" },
	{ "loupe.v1.Event", "has_vlan", "hasVlan" },
	{ "loupe.v1.Event", "inner_vlan_id", "innerVlanId" },
	{ "loupe.v1.Event", "has_inner_vlan", "hasInnerVlan" },
	{ "loupe.v1.Event", "http", "http" },
	{ "loupe.v1.Event", "tls", "tls" },
	{ "loupe.v1.Event", "dns", "dns" },
	{ "loupe.v1.Event", "verdict", "verdict" },
	{ "loupe.v1.Event", "flow", "flow" },
	{ "loupe.v1.Event", "lost", "lost" },
	{ "loupe.v1.Interface", "name", "name" },
	{ "loupe.v1.Interface", "ifindex", "ifindex" },
	{ "loupe.v1.Http", "method", "method" },
	{ "loupe.v1.Http", "path", "path" },
	{ "loupe.v1.Http", "host", "host" },
	{ "loupe.v1.Http", "path_truncated", "pathTruncated" },
	{ "loupe.v1.Http", "host_truncated", "hostTruncated" },
	{ "loupe.v1.Tls", "sni", "sni" },
	{ "loupe.v1.Tls", "version", "version" },
	{ "loupe.v1.Tls", "alpn", "alpn" },
	{ "loupe.v1.Tls", "legacy_version", "legacyVersion" },
	{ "loupe.v1.Tls", "reassembled", "reassembled" },
	{ "loupe.v1.Dns", "qname", "qname" },
	{ "loupe.v1.Dns", "qtype", "qtype" },
	{ "loupe.v1.Dns", "qclass", "qclass" },
	{ "loupe.v1.Dns", "id", "id" },
	{ "loupe.v1.Dns", "name_invalid", "nameInvalid" },
	{ "loupe.v1.Dns", "tcp", "tcp" },
	{ "loupe.v1.Verdict", "action", "action" },
	{ "loupe.v1.Verdict", "policy", "policy" },
	{ "loupe.v1.Verdict", "rule", "rule" },
	{ "loupe.v1.Verdict", "generation", "generation" },
	{ "loupe.v1.Verdict", "reason", "reason" },
	{ "loupe.v1.Verdict", "origin", "origin" },
	{ "loupe.v1.Flow", "egress", "egress" },
	{ "loupe.v1.Flow", "ingress", "ingress" },
	{ "loupe.v1.Flow", "first_seen", "firstSeen" },
	{ "loupe.v1.Flow", "last_seen", "lastSeen" },
	{ "loupe.v1.Flow", "tcp_flags", "tcpFlags" },
	{ "loupe.v1.Flow", "duration_ns", "durationNs" },
	{ "loupe.v1.Flow", "end_reason", "endReason" },
	{ "loupe.v1.Event", "pod", "pod" },
	{ "loupe.v1.Pod", "namespace", "namespace" },
	{ "loupe.v1.Pod", "name", "name" },
	{ "loupe.v1.Pod", "ips", "ips" },
	{ "loupe.v1.FlowCounters", "packets", "packets" },
	{ "loupe.v1.FlowCounters", "bytes", "bytes" },
	{ "loupe.v1.FlowCounters", "tcp_flags", "tcpFlags" },
	{ "loupe.v1.Lost", "count", "count" },
	{ "loupe.v1.Lost", "kind", "kind" },
	{ "loupe.v1.Event", "rewrite", "rewrite" },
	{ "loupe.v1.Rewrite", "actions", "actions" },
	{ "loupe.v1.Rewrite", "policy", "policy" },
	{ "loupe.v1.Rewrite", "name", "name" },
	{ "loupe.v1.Rewrite", "generation", "generation" },
	{ "loupe.v1.Rewrite", "index", "index" },
	{ "loupe.v1.Rewrite", "new_ip", "newIp" },
	{ "loupe.v1.Rewrite", "new_port", "newPort" },
	{ "loupe.v1.Rewrite", "dscp", "dscp" },
	{ "loupe.v1.Rewrite", "vlan_id", "vlanId" },
	{ "loupe.v1.Rewrite", "masked_headers", "maskedHeaders" },
	{ "loupe.v1.Rewrite", "masked_header_indexes", "maskedHeaderIndexes" },
	{ "loupe.v1.Event", "rate_limited", "rateLimited" },
	{ "loupe.v1.RateLimited", "dropped", "dropped" },
	{ "loupe.v1.RateLimited", "bytes_per_second", "bytesPerSecond" },
	{ "loupe.v1.RateLimited", "burst", "burst" },
};

static const char *expected_json_name(const char *message, const char *field)
{
	for (size_t i = 0; i < ARRAY_SIZE(event_names); i++) {
		if (!strcmp(event_names[i].message, message) &&
		    !strcmp(event_names[i].field, field))
			return event_names[i].json;
	}
	return NULL;
}

/* Walks the tree once per message type; Timestamp is a string in JSON, not walked. */
static size_t walk_names(const ProtobufCMessageDescriptor *d,
			 const ProtobufCMessageDescriptor **seen, size_t *n_seen)
{
	size_t count = 0;
	char buf[64];
	const char *want;

	if (!strcmp(d->name, "google.protobuf.Timestamp"))
		return 0;
	for (size_t i = 0; i < *n_seen; i++) {
		if (seen[i] == d)
			return 0;
	}
	seen[(*n_seen)++] = d;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		want = expected_json_name(d->name, f->name);
		cr_expect_not_null(want, "%s.%s is not in event_names[]", d->name, f->name);
		cr_expect_gt(loupe_pbjson_json_name(f->name, buf, sizeof(buf)), 0);
		if (want)
			cr_expect_str_eq(buf, want, "%s.%s", d->name, f->name);
		count++;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE)
			count += walk_names(f->descriptor, seen, n_seen);
	}
	return count;
}

Test(pbjson, event_field_names)
{
	const ProtobufCMessageDescriptor *seen[32];
	size_t n_seen = 0;

	cr_expect_eq(walk_names(&loupe__v1__event__descriptor, seen, &n_seen),
		     ARRAY_SIZE(event_names));
}

/* Every key path of a JSON value, "a.b.c", into @paths. */
static void collect_paths(struct json_object *obj, const char *prefix, char (*paths)[64], size_t *n)
{
	char path[64];

	if (!json_object_is_type(obj, json_type_object))
		return;
	json_object_object_foreach(obj, key, val)
	{
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
		cr_assert_lt(*n, 128);
		strcpy(paths[(*n)++], path);
		collect_paths(val, path, paths, n);
	}
}

Test(pbjson, event_full_tree_keys)
{
	static const char *const want[] = {
		"seq",
		"time",
		"node",
		"kind",
		"interface",
		"interface.name",
		"interface.ifindex",
		"direction",
		"srcIp",
		"dstIp",
		"srcPort",
		"dstPort",
		"protocol",
		"vlanId",
		"hasVlan",
		"innerVlanId",
		"hasInnerVlan",
		"http",
		"http.method",
		"http.path",
		"http.host",
		"http.pathTruncated",
		"http.hostTruncated",
		"tls",
		"tls.sni",
		"tls.version",
		"tls.alpn",
		"tls.legacyVersion",
		"tls.reassembled",
		"dns",
		"dns.qname",
		"dns.qtype",
		"dns.qclass",
		"dns.id",
		"dns.nameInvalid",
		"dns.tcp",
		"verdict",
		"verdict.action",
		"verdict.policy",
		"verdict.rule",
		"flow",
		"flow.egress",
		"flow.egress.packets",
		"flow.egress.bytes",
		"flow.egress.tcpFlags",
		"flow.ingress",
		"flow.ingress.packets",
		"flow.ingress.bytes",
		"flow.ingress.tcpFlags",
		"flow.firstSeen",
		"flow.lastSeen",
		"flow.tcpFlags",
		"flow.durationNs",
		"flow.endReason",
		"lost",
		"lost.count",
		"lost.kind",
		"pod",
		"pod.namespace",
		"pod.name",
		"pod.ips",
		"rewrite",
		"rewrite.actions",
		"rewrite.policy",
		"rewrite.name",
		"rewrite.generation",
		"rewrite.index",
		"rewrite.newIp",
		"rewrite.newPort",
		"rewrite.dscp",
		"rewrite.vlanId",
		"rewrite.maskedHeaders",
		"rewrite.maskedHeaderIndexes",
		"rateLimited",
		"rateLimited.dropped",
		"rateLimited.bytesPerSecond",
		"rateLimited.burst",
	};
	Loupe__V1__Event ev = LOUPE__V1__EVENT__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Loupe__V1__Interface iface = LOUPE__V1__INTERFACE__INIT;
	Loupe__V1__Pod pod = LOUPE__V1__POD__INIT;
	char *pod_ips[] = { "198.18.100.2" };
	Loupe__V1__Http http = LOUPE__V1__HTTP__INIT;
	Loupe__V1__Tls tls = LOUPE__V1__TLS__INIT;
	Loupe__V1__Dns dns = LOUPE__V1__DNS__INIT;
	Loupe__V1__Verdict verdict = LOUPE__V1__VERDICT__INIT;
	Loupe__V1__Flow flow = LOUPE__V1__FLOW__INIT;
	Loupe__V1__FlowCounters eg = LOUPE__V1__FLOW_COUNTERS__INIT,
				in = LOUPE__V1__FLOW_COUNTERS__INIT;
	Loupe__V1__Lost lost = LOUPE__V1__LOST__INIT;
	Loupe__V1__Rewrite rw = LOUPE__V1__REWRITE__INIT;
	Loupe__V1__RewriteAction rw_actions[] = { LOUPE__V1__REWRITE_ACTION__MAP_TO,
						  LOUPE__V1__REWRITE_ACTION__MASK_HEADERS };
	char *masked[] = { "authorization" };
	uint32_t masked_idx[] = { 0 };
	Loupe__V1__RateLimited rl = LOUPE__V1__RATE_LIMITED__INIT;
	char *alpn[] = { "h2" };
	char paths[128][64];
	size_t n = 0;
	struct json_object *obj, *v;

	ev.seq = 1;
	ev.time = &ts;
	ev.node = "n";
	ev.kind = LOUPE__V1__EVENT_KIND__DNS_QUERY;
	iface.name = "veth0";
	iface.ifindex = 3;
	ev.interface = &iface;
	ev.direction = LOUPE__V1__DIRECTION__POD_INGRESS;
	ev.src_ip = "a";
	ev.dst_ip = "b";
	ev.src_port = 1;
	ev.dst_port = 2;
	ev.protocol = LOUPE__V1__PROTOCOL__UDP;
	ev.vlan_id = 4;
	ev.has_vlan = 1;
	ev.inner_vlan_id = 5;
	ev.has_inner_vlan = 1;
	http.method = "GET";
	http.path = "/";
	http.host = "h";
	http.path_truncated = 1;
	http.host_truncated = 1;
	ev.http = &http;
	tls.sni = "s";
	tls.version = 0x304;
	tls.n_alpn = 1;
	tls.alpn = alpn;
	tls.legacy_version = 0x303;
	tls.reassembled = 1;
	ev.tls = &tls;
	dns.qname = "q";
	dns.qtype = 28;
	dns.qclass = 1;
	dns.id = 9;
	dns.name_invalid = 1;
	dns.tcp = 1;
	ev.dns = &dns;
	verdict.action = LOUPE__V1__VERDICT_ACTION__DENY;
	verdict.policy = "p";
	verdict.rule = "r";
	ev.verdict = &verdict;
	eg.packets = eg.bytes = eg.tcp_flags = 1;
	in.packets = in.bytes = in.tcp_flags = 1;
	flow.egress = &eg;
	flow.ingress = &in;
	flow.first_seen = &ts;
	flow.last_seen = &ts;
	flow.tcp_flags = 2;
	flow.duration_ns = 3;
	flow.end_reason = LOUPE__V1__FLOW_END_REASON__IDLE_TIMEOUT;
	ev.flow = &flow;
	lost.count = 1;
	lost.kind = LOUPE__V1__EVENT_KIND__LOST;
	ev.lost = &lost;
	pod.namespace_ = "ns";
	pod.name = "p";
	pod.n_ips = 1;
	pod.ips = pod_ips;
	ev.pod = &pod;
	rw.n_actions = 2;
	rw.actions = rw_actions;
	rw.policy = "p";
	rw.name = "r";
	rw.generation = 1;
	rw.index = 1;
	rw.new_ip = "198.18.6.6";
	rw.new_port = 8080;
	rw.dscp = 46;
	rw.vlan_id = 100;
	rw.n_masked_headers = 1;
	rw.masked_headers = masked;
	rw.n_masked_header_indexes = 1;
	rw.masked_header_indexes = masked_idx;
	ev.rewrite = &rw;
	rl.dropped = 1;
	rl.bytes_per_second = 2;
	rl.burst = 3;
	ev.rate_limited = &rl;

	obj = loupe_pbjson_encode(&ev.base);
	cr_assert_not_null(obj);
	collect_paths(obj, "", paths, &n);
	cr_expect_eq(n, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		bool found = false;

		for (size_t j = 0; j < n && !found; j++)
			found = !strcmp(paths[j], want[i]);
		cr_expect(found, "%s missing", want[i]);
	}

	/* the types clients rely on */
	cr_assert(json_object_object_get_ex(obj, "dns", &v));
	cr_assert(json_object_object_get_ex(v, "qtype", &v));
	cr_expect(json_object_is_type(v, json_type_int), "dns.qtype must be a number");
	cr_expect_eq(json_object_get_int(v), 28);
	cr_assert(json_object_object_get_ex(obj, "seq", &v));
	cr_expect(json_object_is_type(v, json_type_string), "seq (uint64) must be a string");
	cr_assert(json_object_object_get_ex(obj, "direction", &v));
	cr_expect_str_eq(json_object_get_string(v), "POD_INGRESS");
	cr_assert(json_object_object_get_ex(obj, "protocol", &v));
	cr_expect_str_eq(json_object_get_string(v), "UDP");
	cr_assert(json_object_object_get_ex(obj, "rewrite", &v));
	cr_assert(json_object_object_get_ex(v, "actions", &v));
	cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(v, 1)), "MASK_HEADERS");
	cr_assert(json_object_object_get_ex(obj, "rateLimited", &v));
	cr_assert(json_object_object_get_ex(v, "bytesPerSecond", &v));
	cr_expect(json_object_is_type(v, json_type_string), "bytesPerSecond (uint64): a string");
	json_object_put(obj);
}
