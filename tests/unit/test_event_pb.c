// SPDX-License-Identifier: Apache-2.0
/*
 * struct loupe_event -> loupe.v1.Event -> JSON, read back with json-c: names, types and
 * values clients see, per kind; and the protobuf wire form of the same message. Not for
 * pbjson's own corner cases (test_pbjson.c) nor for record decoding (test_event.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "event.h"
#include "event_pb.h"

#define TIME_NS	  1795759975123456789ULL /* 2026-11-27T06:12:55.123456789Z */
#define TIME_JSON "2026-11-27T06:12:55.123456789Z"

static const uint8_t v4_src[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 1 };
static const uint8_t v4_dst[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 2 };
static const uint8_t v6_src[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
static const uint8_t v6_dst[16] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, 0, 2
};

static struct loupe_event ev;

static void base_event(enum loupe_event_kind kind)
{
	memset(&ev, 0, sizeof(ev));
	ev.seq = 7;
	ev.time_ns = TIME_NS;
	strcpy(ev.node, "node-1");
	ev.kind = kind;
	strcpy(ev.ifname, "veth1");
	ev.ifindex = 7;
	ev.direction = LOUPE_DIR_POD_EGRESS;
	ev.protocol = 6;
	ev.has_ip = true;
	memcpy(ev.saddr, v4_src, 16);
	memcpy(ev.daddr, v4_dst, 16);
	ev.sport = 40000;
	ev.dport = 80;
}

static struct json_object *to_json(void)
{
	struct json_object *obj;
	char *s;

	s = loupe_event_to_json(&ev);
	cr_assert_not_null(s, "loupe_event_to_json: %s", strerror(errno));
	cr_expect_null(strchr(s, '\n'), "one line");
	obj = json_tokener_parse(s);
	cr_assert_not_null(obj, "not JSON: %s", s);
	free(s);
	return obj;
}

/* The value at a dotted path, or NULL. */
static struct json_object *get(struct json_object *root, const char *path)
{
	char buf[128], *save = NULL, *key;
	struct json_object *cur = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (key = strtok_r(buf, ".", &save); key; key = strtok_r(NULL, ".", &save)) {
		if (!json_object_object_get_ex(cur, key, &cur))
			return NULL;
	}
	return cur;
}

static void expect_str(struct json_object *root, const char *path, const char *want)
{
	struct json_object *v = get(root, path);

	cr_assert_not_null(v, "%s missing", path);
	cr_expect(json_object_is_type(v, json_type_string), "%s is not a string", path);
	cr_expect_str_eq(json_object_get_string(v), want, "%s", path);
}

static void expect_int(struct json_object *root, const char *path, int64_t want)
{
	struct json_object *v = get(root, path);

	cr_assert_not_null(v, "%s missing", path);
	cr_expect(json_object_is_type(v, json_type_int), "%s is not a number", path);
	cr_expect_eq(json_object_get_int64(v), want, "%s", path);
}

static void expect_true(struct json_object *root, const char *path)
{
	struct json_object *v = get(root, path);

	cr_assert_not_null(v, "%s missing", path);
	cr_expect(json_object_is_type(v, json_type_boolean), "%s is not a bool", path);
	cr_expect(json_object_get_boolean(v), "%s", path);
}

static void expect_absent(struct json_object *root, const char *path)
{
	cr_expect_null(get(root, path), "%s should be absent", path);
}

Test(event_json, http_exact)
{
	char *s;

	base_event(LOUPE_EV_HTTP_REQUEST);
	strcpy(ev.http.method, "GET");
	strcpy(ev.http.path, "/a/b?c=\"d\"");
	strcpy(ev.http.host, "example.com");
	s = loupe_event_to_json(&ev);
	cr_assert_not_null(s);
	cr_expect_str_eq(s, "{\"seq\":\"7\",\"time\":\"" TIME_JSON "\",\"node\":\"node-1\","
			    "\"kind\":\"HTTP_REQUEST\",\"interface\":{\"name\":\"veth1\","
			    "\"ifindex\":7},\"direction\":\"POD_EGRESS\",\"srcIp\":\"198.18.0.1\","
			    "\"dstIp\":\"198.18.0.2\",\"srcPort\":40000,\"dstPort\":80,"
			    "\"protocol\":\"TCP\",\"http\":{\"method\":\"GET\","
			    "\"path\":\"/a/b?c=\\\"d\\\"\",\"host\":\"example.com\"}}");
	free(s);
}

Test(event_json, http)
{
	struct json_object *obj;

	base_event(LOUPE_EV_HTTP_REQUEST);
	ev.has_vlan = true;
	ev.vlan_id = 0; /* priority tag */
	ev.has_inner_vlan = true;
	ev.inner_vlan_id = 20;
	strcpy(ev.http.method, "POST");
	strcpy(ev.http.path, "/upload");
	strcpy(ev.http.host, "api.example.com:8080");
	ev.http.path_truncated = true;
	obj = to_json();
	expect_str(obj, "kind", "HTTP_REQUEST");
	expect_str(obj, "direction", "POD_EGRESS");
	expect_str(obj, "seq", "7");
	expect_str(obj, "time", TIME_JSON);
	expect_str(obj, "srcIp", "198.18.0.1");
	expect_str(obj, "dstIp", "198.18.0.2");
	expect_int(obj, "srcPort", 40000);
	expect_int(obj, "dstPort", 80);
	expect_str(obj, "protocol", "TCP");
	expect_true(obj, "hasVlan");
	expect_absent(obj, "vlanId"); /* 0 with hasVlan: a priority tag */
	expect_true(obj, "hasInnerVlan");
	expect_int(obj, "innerVlanId", 20);
	expect_str(obj, "http.method", "POST");
	expect_str(obj, "http.path", "/upload");
	expect_str(obj, "http.host", "api.example.com:8080");
	expect_true(obj, "http.pathTruncated");
	expect_absent(obj, "http.hostTruncated");
	expect_absent(obj, "tls");
	expect_absent(obj, "dns");
	expect_absent(obj, "flow");
	expect_absent(obj, "lost");
	json_object_put(obj);
}

Test(event_json, tls_ipv6)
{
	struct json_object *obj, *alpn;

	base_event(LOUPE_EV_TLS_CLIENT_HELLO);
	ev.ipv6 = true;
	memcpy(ev.saddr, v6_src, 16);
	memcpy(ev.daddr, v6_dst, 16);
	ev.dport = 443;
	ev.has_vlan = true;
	ev.vlan_id = 100;
	strcpy(ev.tls.sni, "www.example.org");
	ev.tls.version = 0x0304;
	ev.tls.legacy_version = 0x0303;
	strcpy(ev.tls.alpn[0], "h2");
	strcpy(ev.tls.alpn[1], "http/1.1");
	ev.tls.alpn_count = 2;
	ev.tls.reassembled = true;
	obj = to_json();
	expect_str(obj, "kind", "TLS_CLIENT_HELLO");
	expect_str(obj, "srcIp", "2001:db8::1");
	expect_str(obj, "dstIp", "2001:db8::abcd:2");
	expect_int(obj, "dstPort", 443);
	expect_int(obj, "vlanId", 100);
	expect_true(obj, "hasVlan");
	expect_absent(obj, "hasInnerVlan");
	expect_str(obj, "tls.sni", "www.example.org");
	expect_int(obj, "tls.version", 0x0304);
	expect_int(obj, "tls.legacyVersion", 0x0303);
	expect_true(obj, "tls.reassembled");
	alpn = get(obj, "tls.alpn");
	cr_assert_not_null(alpn);
	cr_assert(json_object_is_type(alpn, json_type_array));
	cr_assert_eq(json_object_array_length(alpn), 2);
	cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(alpn, 0)), "h2");
	cr_expect_str_eq(json_object_get_string(json_object_array_get_idx(alpn, 1)), "http/1.1");
	expect_absent(obj, "http");
	json_object_put(obj);
}

Test(event_json, dns)
{
	struct json_object *obj;

	base_event(LOUPE_EV_DNS_QUERY);
	ev.direction = LOUPE_DIR_POD_INGRESS;
	ev.protocol = 17;
	ev.dport = 53;
	strcpy(ev.dns.qname, "www.example.com");
	ev.dns.qtype = 28;
	ev.dns.qclass = 1;
	ev.dns.id = 0xbeef;
	ev.dns.tcp = true;
	obj = to_json();
	expect_str(obj, "kind", "DNS_QUERY");
	expect_str(obj, "direction", "POD_INGRESS");
	expect_str(obj, "protocol", "UDP");
	expect_str(obj, "dns.qname", "www.example.com");
	expect_int(obj, "dns.qtype", 28);
	expect_int(obj, "dns.qclass", 1);
	expect_int(obj, "dns.id", 0xbeef);
	expect_true(obj, "dns.tcp");
	expect_absent(obj, "dns.nameInvalid");
	json_object_put(obj);
}

Test(event_json, flow_end)
{
	struct json_object *obj;

	base_event(LOUPE_EV_FLOW_END);
	ev.flow.dir[LOUPE_DIR_POD_EGRESS].packets = 10;
	ev.flow.dir[LOUPE_DIR_POD_EGRESS].bytes = 1500;
	ev.flow.dir[LOUPE_DIR_POD_EGRESS].tcp_flags = 0x1b;
	ev.flow.first_seen_ns = 1000000000ULL;
	ev.flow.last_seen_ns = 6000000000ULL;
	obj = to_json();
	expect_str(obj, "kind", "FLOW_END");
	expect_str(obj, "flow.egress.packets", "10");
	expect_str(obj, "flow.egress.bytes", "1500");
	expect_int(obj, "flow.egress.tcpFlags", 0x1b);
	/* FLOW_END reports a silent direction as present and empty */
	cr_expect_not_null(get(obj, "flow.ingress"));
	expect_absent(obj, "flow.ingress.packets");
	expect_str(obj, "flow.firstSeen", "1970-01-01T00:00:01Z");
	expect_str(obj, "flow.lastSeen", "1970-01-01T00:00:06Z");
	expect_str(obj, "flow.durationNs", "5000000000");
	expect_absent(obj, "flow.tcpFlags");
	json_object_put(obj);
}

Test(event_json, flow_start_from_record)
{
	struct loupe_event_flow rec;
	struct json_object *obj;

	memset(&rec, 0, sizeof(rec));
	rec.hdr.ts_ns = 5000000000ULL;
	rec.hdr.ifindex = 3;
	rec.hdr.kind = LOUPE_EV_FLOW_START;
	rec.hdr.direction = LOUPE_DIR_POD_EGRESS;
	rec.hdr.protocol = 6;
	memcpy(rec.hdr.saddr, v4_src, 16);
	memcpy(rec.hdr.daddr, v4_dst, 16);
	rec.hdr.sport = 1234;
	rec.hdr.dport = 80;
	rec.tcp_flags = 0x02;
	cr_assert_eq(loupe_event_decode(&rec, sizeof(rec), 1795759970000000000LL, &ev), 0);
	obj = to_json();
	expect_str(obj, "kind", "FLOW_START");
	expect_str(obj, "time", "2026-11-27T06:12:55Z");
	expect_int(obj, "interface.ifindex", 3);
	expect_absent(obj, "interface.name");
	expect_absent(obj, "seq");
	expect_absent(obj, "node");
	expect_int(obj, "flow.tcpFlags", 2);
	expect_str(obj, "flow.firstSeen", "2026-11-27T06:12:55Z");
	expect_absent(obj, "flow.egress");
	expect_absent(obj, "flow.ingress");
	expect_absent(obj, "flow.durationNs");
	json_object_put(obj);
}

Test(event_json, lost_without_addresses)
{
	struct json_object *obj;

	base_event(LOUPE_EV_LOST);
	ev.has_ip = false;
	ev.protocol = 0;
	ev.direction = -1;
	ev.ifname[0] = '\0';
	ev.ifindex = 0;
	ev.lost.count = 3;
	ev.lost.kind = LOUPE_EV_HTTP_REQUEST;
	obj = to_json();
	expect_str(obj, "kind", "LOST");
	expect_str(obj, "lost.count", "3");
	expect_str(obj, "lost.kind", "HTTP_REQUEST");
	expect_absent(obj, "srcIp");
	expect_absent(obj, "dstIp");
	expect_absent(obj, "srcPort");
	expect_absent(obj, "protocol");
	expect_absent(obj, "direction");
	expect_absent(obj, "interface");
	json_object_put(obj);
}

static void base_verdict(enum loupe_verdict_subject subject)
{
	base_event(LOUPE_EV_POLICY_VERDICT);
	ev.dport = 443;
	ev.verdict.action = LOUPE_EVENT_ACTION_DENY;
	ev.verdict.reason = LOUPE_EVENT_REASON_RULE;
	ev.verdict.generation = 3;
	ev.verdict.bit = 1;
	ev.verdict.origin = LOUPE_DIR_POD_EGRESS;
	ev.verdict.subject = subject;
	strcpy(ev.verdict.policy, "ai-egress-denied");
	strcpy(ev.verdict.rule, "llm-apis");
}

Test(event_json, verdict_exact)
{
	char *s;

	base_verdict(LOUPE_VERDICT_SUBJECT_TLS_SNI);
	strcpy(ev.tls.sni, "api.openai.com");
	/* only the subject's field shows, whatever else the event holds */
	strcpy(ev.http.host, "not.this");
	ev.tls.version = 0x0304;
	s = loupe_event_to_json(&ev);
	cr_assert_not_null(s);
	cr_expect_str_eq(s, "{\"seq\":\"7\",\"time\":\"" TIME_JSON "\",\"node\":\"node-1\","
			    "\"kind\":\"POLICY_VERDICT\",\"interface\":{\"name\":\"veth1\","
			    "\"ifindex\":7},\"direction\":\"POD_EGRESS\",\"srcIp\":\"198.18.0.1\","
			    "\"dstIp\":\"198.18.0.2\",\"srcPort\":40000,\"dstPort\":443,"
			    "\"protocol\":\"TCP\",\"tls\":{\"sni\":\"api.openai.com\"},"
			    "\"verdict\":{\"action\":\"DENY\",\"policy\":\"ai-egress-denied\","
			    "\"rule\":\"llm-apis\",\"generation\":3,\"reason\":\"RULE\","
			    "\"origin\":\"POD_EGRESS\"}}");
	free(s);
}

Test(event_json, verdict)
{
	struct json_object *obj;

	base_verdict(LOUPE_VERDICT_SUBJECT_HTTP_HOST);
	strcpy(ev.http.host, "api.example.test:8080");
	strcpy(ev.http.method, "GET");
	ev.verdict.action = LOUPE_EVENT_ACTION_AUDIT;
	ev.verdict.reason = LOUPE_EVENT_REASON_DEFAULT_ACTION;
	ev.verdict.rule[0] = '\0';
	ev.verdict.origin = LOUPE_DIR_POD_INGRESS;
	obj = to_json();
	expect_str(obj, "kind", "POLICY_VERDICT");
	expect_str(obj, "http.host", "api.example.test:8080");
	expect_absent(obj, "http.method");
	expect_absent(obj, "tls");
	expect_absent(obj, "dns");
	expect_str(obj, "verdict.action", "AUDIT");
	expect_str(obj, "verdict.policy", "ai-egress-denied");
	expect_absent(obj, "verdict.rule");
	expect_int(obj, "verdict.generation", 3);
	expect_str(obj, "verdict.reason", "DEFAULT_ACTION");
	expect_str(obj, "verdict.origin", "POD_INGRESS");
	json_object_put(obj);

	/* an L4 rule: no name, no L7 message */
	base_verdict(LOUPE_VERDICT_SUBJECT_NONE);
	strcpy(ev.dns.qname, "not.this");
	obj = to_json();
	expect_absent(obj, "http");
	expect_absent(obj, "tls");
	expect_absent(obj, "dns");
	expect_str(obj, "verdict.rule", "llm-apis");
	json_object_put(obj);

	/* the DNS name; a subject that is empty still says which protocol decided */
	base_verdict(LOUPE_VERDICT_SUBJECT_DNS_NAME);
	ev.protocol = 17;
	obj = to_json();
	cr_expect_not_null(get(obj, "dns"));
	expect_absent(obj, "dns.qname");
	json_object_put(obj);

	/* BOUND_EXCEEDED: no rule; a generation the agent forgot: no names */
	base_verdict(LOUPE_VERDICT_SUBJECT_HTTP_HOST);
	ev.verdict.reason = LOUPE_EVENT_REASON_BOUND_EXCEEDED;
	ev.verdict.policy[0] = ev.verdict.rule[0] = '\0';
	ev.http.host_truncated = true;
	obj = to_json();
	expect_str(obj, "verdict.reason", "BOUND_EXCEEDED");
	expect_absent(obj, "verdict.policy");
	expect_true(obj, "http.hostTruncated");
	json_object_put(obj);
}

Test(event_json, rewrite_exact)
{
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 6, 6 };
	char *s;

	base_event(LOUPE_EV_REWRITE);
	ev.rewrite.actions = LOUPE_RW_MAP | LOUPE_RW_DSCP | LOUPE_RW_MASK;
	ev.rewrite.generation = 4;
	ev.rewrite.index = 1;
	memcpy(ev.rewrite.new_addr, mapped, 16);
	ev.rewrite.new_port = 8080;
	ev.rewrite.dscp = 46;
	ev.rewrite.masked_bits = 0x3;
	strcpy(ev.rewrite.policy, "llm-egress");
	strcpy(ev.rewrite.name, "to-gateway");
	strcpy(ev.rewrite.masked[0], "authorization");
	strcpy(ev.rewrite.masked[1], "x-api-key");
	strcpy(ev.rewrite.masked[2], "not-masked");
	s = loupe_event_to_json(&ev);
	cr_assert_not_null(s);
	cr_expect_str_eq(s, "{\"seq\":\"7\",\"time\":\"" TIME_JSON "\",\"node\":\"node-1\","
			    "\"kind\":\"REWRITE\",\"interface\":{\"name\":\"veth1\","
			    "\"ifindex\":7},\"direction\":\"POD_EGRESS\",\"srcIp\":\"198.18.0.1\","
			    "\"dstIp\":\"198.18.0.2\",\"srcPort\":40000,\"dstPort\":80,"
			    "\"protocol\":\"TCP\",\"rewrite\":{\"actions\":[\"MAP_TO\","
			    "\"SET_DSCP\",\"MASK_HEADERS\"],\"policy\":\"llm-egress\","
			    "\"name\":\"to-gateway\",\"generation\":4,\"index\":1,"
			    "\"newIp\":\"198.18.6.6\",\"newPort\":8080,\"dscp\":46,"
			    "\"maskedHeaders\":[\"authorization\",\"x-api-key\"],"
			    "\"maskedHeaderIndexes\":[0,1]}}");
	free(s);
}

Test(event_json, rewrite_and_rate_limited)
{
	struct json_object *obj;

	/* IPv6: the new address is IPv6; a VLAN pushed; names unknown */
	base_event(LOUPE_EV_REWRITE);
	ev.ipv6 = true;
	memcpy(ev.saddr, v6_src, 16);
	memcpy(ev.daddr, v6_dst, 16);
	ev.rewrite.actions = LOUPE_RW_MAP | LOUPE_RW_VLAN_PUSH;
	memcpy(ev.rewrite.new_addr, v6_src, 16);
	ev.rewrite.new_port = 53;
	ev.rewrite.vlan_id = 100;
	ev.rewrite.generation = 2;
	obj = to_json();
	expect_str(obj, "rewrite.newIp", "2001:db8::1");
	expect_int(obj, "rewrite.newPort", 53);
	expect_int(obj, "rewrite.vlanId", 100);
	expect_absent(obj, "rewrite.policy");
	expect_absent(obj, "rewrite.index");
	expect_absent(obj, "rewrite.maskedHeaders");
	expect_absent(obj, "http");
	expect_absent(obj, "rateLimited");
	json_object_put(obj);

	/* masked headers whose names the agent does not know: indexes only */
	base_event(LOUPE_EV_REWRITE);
	ev.rewrite.actions = LOUPE_RW_MASK;
	ev.rewrite.masked_bits = 0x84;
	obj = to_json();
	expect_absent(obj, "rewrite.maskedHeaders");
	expect_absent(obj, "rewrite.newIp");
	cr_expect_eq(json_object_array_length(get(obj, "rewrite.maskedHeaderIndexes")), 2);
	json_object_put(obj);

	base_event(LOUPE_EV_RATE_LIMITED);
	ev.direction = LOUPE_DIR_POD_INGRESS;
	ev.rate_limited.dropped = 31;
	ev.rate_limited.bytes_per_sec = 1250000;
	ev.rate_limited.burst = 62500;
	strcpy(ev.rewrite.name, "not.this");
	obj = to_json();
	expect_str(obj, "kind", "RATE_LIMITED");
	expect_str(obj, "rateLimited.dropped", "31");
	expect_str(obj, "rateLimited.bytesPerSecond", "1250000");
	expect_str(obj, "rateLimited.burst", "62500");
	expect_absent(obj, "rewrite");
	json_object_put(obj);
}

Test(event_json, unnamed_protocol_is_a_number)
{
	struct json_object *obj;

	base_event(LOUPE_EV_FLOW_START);
	ev.protocol = 132; /* SCTP: not in loupe.v1.Protocol */
	obj = to_json();
	expect_int(obj, "protocol", 132);
	json_object_put(obj);
}

Test(event_json, refuses_unterminated_strings)
{
	char *s;

	base_event(LOUPE_EV_HTTP_REQUEST);
	memset(ev.node, 'n', sizeof(ev.node));
	errno = 0;
	cr_expect_null(loupe_event_to_json(&ev));
	cr_expect_eq(errno, EINVAL);

	base_event(LOUPE_EV_DNS_QUERY);
	memset(ev.dns.qname, 'q', sizeof(ev.dns.qname));
	cr_expect_null(loupe_event_to_json(&ev));

	base_event(LOUPE_EV_TLS_CLIENT_HELLO);
	ev.tls.alpn_count = LOUPE_EVENT_ALPN_MAX + 1;
	cr_expect_null(loupe_event_to_json(&ev));

	base_verdict(LOUPE_VERDICT_SUBJECT_TLS_SNI);
	memset(ev.verdict.rule, 'r', sizeof(ev.verdict.rule));
	cr_expect_null(loupe_event_to_json(&ev));
	base_verdict(LOUPE_VERDICT_SUBJECT_TLS_SNI);
	memset(ev.tls.sni, 's', sizeof(ev.tls.sni));
	cr_expect_null(loupe_event_to_json(&ev));
	/* another subject's field is not written, so not checked */
	ev.verdict.subject = LOUPE_VERDICT_SUBJECT_DNS_NAME;
	s = loupe_event_to_json(&ev);
	cr_expect_not_null(s);
	free(s);
}

Test(event_pb, wire_round_trip)
{
	struct loupe_event_pb pb;
	Loupe__V1__Event *back;
	uint8_t buf[2048];
	size_t len;

	base_event(LOUPE_EV_TLS_CLIENT_HELLO);
	strcpy(ev.tls.sni, "example.org");
	strcpy(ev.tls.alpn[0], "h2");
	ev.tls.alpn_count = 1;
	ev.tls.version = 0x0304;
	cr_assert_eq(loupe_event_to_pb(&ev, &pb), 0);
	len = loupe__v1__event__get_packed_size(&pb.msg);
	cr_assert_leq(len, sizeof(buf));
	cr_assert_eq(loupe__v1__event__pack(&pb.msg, buf), len);

	back = loupe__v1__event__unpack(NULL, len, buf);
	cr_assert_not_null(back);
	cr_expect_eq(back->seq, 7);
	cr_assert_not_null(back->time);
	cr_expect_eq(back->time->seconds, 1795759975);
	cr_expect_eq(back->time->nanos, 123456789);
	cr_expect_str_eq(back->node, "node-1");
	cr_expect_eq(back->kind, LOUPE__V1__EVENT_KIND__TLS_CLIENT_HELLO);
	cr_expect_eq(back->direction, LOUPE__V1__DIRECTION__POD_EGRESS);
	cr_expect_str_eq(back->src_ip, "198.18.0.1");
	cr_expect_eq(back->dst_port, 80);
	cr_assert_not_null(back->interface);
	cr_expect_str_eq(back->interface->name, "veth1");
	cr_assert_not_null(back->tls);
	cr_expect_str_eq(back->tls->sni, "example.org");
	cr_assert_eq(back->tls->n_alpn, 1);
	cr_expect_str_eq(back->tls->alpn[0], "h2");
	cr_expect_null(back->http);
	loupe__v1__event__free_unpacked(back, NULL);
}
