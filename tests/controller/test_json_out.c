// SPDX-License-Identifier: Apache-2.0
/*
 * The controller's direct JSON writer against the reference (pbjson): byte for byte, for
 * events of every kind with every field set, odd strings (quotes, control characters,
 * invalid UTF-8), unknown enum numbers, and the fallback for what it leaves to pbjson.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "json_out.h"
#include "loupe/v1/event.pb-c.h"
#include "loupe/v1/observer.pb-c.h"
#include "pbjson.h"

static void same(const ProtobufCMessage *m)
{
	char buf[16384];
	char *ref = loupe_pbjson_to_string(m);
	int n = loupe_json_out(m, buf, sizeof(buf));

	cr_assert_not_null(ref);
	cr_assert_geq(n, 0, "json_out failed: %d", n);
	cr_assert_str_eq(buf, ref);
	cr_assert_eq((size_t)n, strlen(ref));
	free(ref);
}

Test(json_out, every_field)
{
	Loupe__V1__Event e = LOUPE__V1__EVENT__INIT;
	Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT, f1 = t, f2 = t;
	Loupe__V1__Interface ifc = LOUPE__V1__INTERFACE__INIT;
	Loupe__V1__Http http = LOUPE__V1__HTTP__INIT;
	Loupe__V1__Tls tls = LOUPE__V1__TLS__INIT;
	Loupe__V1__Dns dns = LOUPE__V1__DNS__INIT;
	Loupe__V1__Verdict v = LOUPE__V1__VERDICT__INIT;
	Loupe__V1__Flow fl = LOUPE__V1__FLOW__INIT;
	Loupe__V1__FlowCounters eg = LOUPE__V1__FLOW_COUNTERS__INIT, in = eg;
	Loupe__V1__Lost lost = LOUPE__V1__LOST__INIT;
	Loupe__V1__Pod pod = LOUPE__V1__POD__INIT;
	char *alpn[] = { "h2", "http/1.1" }, *ips[] = { "198.18.100.2", "fd00:198:18:100::2" };

	t.seconds = 1795000000;
	t.nanos = 123456789;
	f1.seconds = 1795000000;
	f2.seconds = 1795000001;
	f2.nanos = 5000000;
	e.seq = 18446744073709551615ULL;
	e.time = &t;
	e.node = "node-a";
	e.kind = LOUPE__V1__EVENT_KIND__HTTP_REQUEST;
	ifc.name = "veth0";
	ifc.ifindex = 4294967295u;
	e.interface = &ifc;
	e.direction = LOUPE__V1__DIRECTION__POD_EGRESS;
	e.src_ip = "198.18.100.2";
	e.dst_ip = "fd00:198:18:100::3";
	e.src_port = 40000;
	e.dst_port = 443;
	e.protocol = (Loupe__V1__Protocol)99; /* a number the enum does not name */
	e.vlan_id = 0;
	e.has_vlan = true;
	http.method = "GET";
	http.path = "/a\"b\\c\n\t\x01\x1f/d?\xc3\xa9\xff\xfe";
	http.host = "api.example.test";
	http.path_truncated = true;
	e.http = &http;
	tls.sni = "x.example.test";
	tls.version = 0x304;
	tls.n_alpn = 2;
	tls.alpn = alpn;
	e.tls = &tls;
	dns.qname = "example.test";
	dns.qtype = 28;
	dns.tcp = true;
	e.dns = &dns;
	v.action = LOUPE__V1__VERDICT_ACTION__DENY;
	v.policy = "p";
	v.rule = "";
	e.verdict = &v;
	eg.packets = 3;
	eg.bytes = 300;
	fl.egress = &eg;
	fl.ingress = &in;
	fl.first_seen = &f1;
	fl.last_seen = &f2;
	fl.duration_ns = 1005000000;
	fl.end_reason = LOUPE__V1__FLOW_END_REASON__TCP_CLOSE;
	e.flow = &fl;
	lost.count = 7;
	lost.kind = LOUPE__V1__EVENT_KIND__DNS_QUERY;
	e.lost = &lost;
	pod.n_ips = 2;
	pod.ips = ips;
	pod.name = "web-0";
	e.pod = &pod;
	same(&e.base);
}

Test(json_out, empty_and_small)
{
	Loupe__V1__Event e = LOUPE__V1__EVENT__INIT;
	Loupe__V1__GetEventsResponse r = LOUPE__V1__GET_EVENTS_RESPONSE__INIT;
	Loupe__V1__Event *v[1] = { &e };
	char buf[8];

	same(&e.base);
	e.seq = 1;
	e.node = "";
	same(&e.base);
	r.events = v;
	r.n_events = 1;
	r.missed = 3;
	r.notice = "n";
	same(&r.base);
	cr_assert_eq(loupe_json_out(&r.base, buf, sizeof(buf)), -ENOSPC);
}

Test(json_out, leaves_floats_to_pbjson)
{
	Loupe__V1__AgentInfo a = LOUPE__V1__AGENT_INFO__INIT;
	char buf[1024];

	a.node = "n";
	a.event_rate = 1.5;
	cr_assert_eq(loupe_json_out(&a.base, buf, sizeof(buf)), -EOPNOTSUPP);
}
