// SPDX-License-Identifier: Apache-2.0
/*
 * Rewrites done by the production programs: a set with spec.rewrites put in force with the
 * real apply step, crafted frames through BPF_PROG_TEST_RUN, and the frames as the program
 * left them checked byte by byte: addresses and ports mapped (and mapped back on replies),
 * DSCP, VLAN tags popped, header values masked, with every IPv4 header and TCP/UDP checksum
 * recomputed here and compared. IPv4 and IPv6, with VLAN tags and IP options, and cut frames.
 * Needs root; skips without BPF. Not for the format (test_policy.c in tests/unit).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "fixtures.h"
#include "policy_apply.h"

#define POLICY(name, spec)                                                                         \
	"{'apiVersion':'loupe.dev/v1','kind':'Policy','metadata':{'name':'" name "'},'spec':" spec \
	"}"

#define PASS TC_ACT_UNSPEC
#define DROP TC_ACT_SHOT

struct rw_fx {
	struct fx *fx;
	struct loupe_policy_runtime *rt;
	uint8_t out[LOUPE_PKT_MAX];
	size_t out_len;
	struct loupe_pkt in;
};

static struct rw_fx *rw_open(const char *text)
{
	struct rw_fx *r = calloc(1, sizeof(*r));
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_iface lo = { .ifindex = 1, .name = "lo" };
	struct loupe_policy_error e = { 0 };
	char *json = strdup(text);
	int err;

	cr_assert_not_null(r);
	cr_assert_not_null(json);
	r->fx = fx_open(false);
	err = loupe_policy_runtime_open(r->fx->dp, &r->rt);
	cr_assert_eq(err, 0, "loupe_policy_runtime_open: %s", strerror(-err));
	for (char *c = json; *c; c++)
		if (*c == '\'')
			*c = '"';
	err = loupe_policy_parse(json, strlen(json), "test.json", &set, &e);
	cr_assert_eq(err, 0, "parse: %s: %s\n%s", e.path, e.message, json);
	err = loupe_policy_apply(r->rt, &set, &lo, 1, &e);
	cr_assert_eq(err, 0, "apply: %s: %s", e.path, e.message);
	loupe_policy_set_clear(&set);
	free(json);
	return r;
}

static void rw_close(struct rw_fx *r)
{
	loupe_policy_runtime_free(r->rt);
	fx_close(r->fx);
	free(r);
}

/* Runs @spec in @dir; the frame as it left is in r->out. Returns the TC action. */
static int rw_run(struct rw_fx *r, const char *row, enum loupe_direction dir,
		  const struct loupe_pkt_spec *spec)
{
	int rc = 0x7fffffff, err;

	cr_assert_eq(loupe_pkt_build(spec, &r->in), 0, "row %s: loupe_pkt_build", row);
	fx_row(r->fx, row, r->in.buf, r->in.len);
	r->fx->nrec = 0;
	r->fx->overflow = 0;
	cr_assert_eq(loupe_datapath_read_counters(r->fx->dp, &r->fx->before), 0);
	err = loupe_datapath_run_out(r->fx->dp, dir, r->in.buf, r->in.len, 0, r->out,
				     sizeof(r->out), &r->out_len, &rc);
	cr_assert_eq(err, 0, "row %s: loupe_datapath_run_out: %s", row, strerror(-err));
	cr_assert_geq(loupe_datapath_drain(r->fx->dp), 0);
	cr_assert_eq(loupe_datapath_read_counters(r->fx->dp, &r->fx->after), 0);
	fx_check_decode(r->fx);
	return rc;
}

/* Offsets of the IP and L4 headers of a frame: Ethernet, then any 802.1Q/802.1ad tags. */
static bool frame_offsets(const uint8_t *f, size_t len, size_t *l3, size_t *l4, bool *ipv6,
			  uint8_t *proto)
{
	size_t off = 12;
	uint16_t type;

	for (;;) {
		if (off + 2 > len)
			return false;
		type = (f[off] << 8) | f[off + 1];
		if (type != 0x8100 && type != 0x88a8)
			break;
		off += 4;
	}
	*l3 = off + 2;
	if (type == 0x0800) {
		if (*l3 + 20 > len)
			return false;
		*ipv6 = false;
		*proto = f[*l3 + 9];
		*l4 = *l3 + (f[*l3] & 0x0f) * 4;
	} else if (type == 0x86dd) {
		if (*l3 + 40 > len)
			return false;
		*ipv6 = true;
		*proto = f[*l3 + 6]; /* no extension headers in these rows */
		*l4 = *l3 + 40;
	} else {
		return false;
	}
	return *l4 <= len;
}

/* Every checksum of the frame right: the IPv4 header's, TCP's or UDP's (0 allowed for UDP/4). */
static void expect_checksums(struct rw_fx *r, const char *what)
{
	const uint8_t *f = r->out;
	size_t l3, l4, l4_len;
	uint32_t sum = 0;
	uint8_t proto;
	bool ipv6;

	if (!frame_offsets(f, r->out_len, &l3, &l4, &ipv6, &proto)) {
		fx_fail(r->fx, "%s: the frame does not parse", what);
		return;
	}
	if (!ipv6)
		fx_eq(r->fx, "IPv4 header checksum (folded sum, 0xffff when right)",
		      loupe_pkt_csum_fold(loupe_pkt_csum_add(0, f + l3, (f[l3] & 0x0f) * 4)),
		      0xffff);
	l4_len = r->out_len - l4;
	if (!ipv6) {
		l4_len = ((f[l3 + 2] << 8) | f[l3 + 3]) - (l4 - l3);
		sum = loupe_pkt_csum_add(sum, f + l3 + 12, 8);
	} else {
		l4_len = (f[l3 + 4] << 8) | f[l3 + 5];
		sum = loupe_pkt_csum_add(sum, f + l3 + 8, 32);
	}
	if (proto == IPPROTO_UDP && !ipv6 && f[l4 + 6] == 0 && f[l4 + 7] == 0)
		return; /* no UDP checksum */
	{
		uint8_t pseudo[8] = { 0, 0, l4_len >> 8, l4_len & 0xff, 0, 0, 0, proto };

		sum = loupe_pkt_csum_add(sum, pseudo, sizeof(pseudo));
	}
	sum = loupe_pkt_csum_add(sum, f + l4, l4_len);
	fx_eq(r->fx,
	      proto == IPPROTO_TCP ? "TCP checksum (folded sum)" : "UDP checksum (folded sum)",
	      loupe_pkt_csum_fold(sum), 0xffff);
}

static void expect_addr_port(struct rw_fx *r, bool source, const char *addr, uint16_t port)
{
	size_t l3, l4;
	uint8_t proto, want[16];
	bool ipv6;

	if (!frame_offsets(r->out, r->out_len, &l3, &l4, &ipv6, &proto)) {
		fx_fail(r->fx, "the frame does not parse");
		return;
	}
	if (ipv6) {
		cr_assert_eq(inet_pton(AF_INET6, addr, want), 1);
		fx_true(r->fx, !memcmp(r->out + l3 + (source ? 8 : 24), want, 16),
			"%s address: not %s", source ? "source" : "destination", addr);
	} else {
		cr_assert_eq(inet_pton(AF_INET, addr, want), 1);
		fx_true(r->fx, !memcmp(r->out + l3 + (source ? 12 : 16), want, 4),
			"%s address: not %s", source ? "source" : "destination", addr);
	}
	fx_eq(r->fx, source ? "source port" : "destination port",
	      (r->out[l4 + (source ? 0 : 2)] << 8) | r->out[l4 + (source ? 1 : 3)], port);
}

static const struct loupe_event_rewrite *rw_event(struct rw_fx *r)
{
	const struct fx_record *rec = fx_find(r->fx, LOUPE_EV_REWRITE);

	return rec ? (const struct loupe_event_rewrite *)rec->raw : NULL;
}

static const char MAP_SET[] = "[" POLICY(
	"map", "{'podSelector':{},'rewrites':["
	       "{'name':'to-real','direction':'egress','match':{'cidrs':['198.18.5.5/32'],"
	       "'ports':[{'port':80}]},'mapTo':{'address':'198.18.6.6','port':8080}},"
	       "{'name':'dns-v6','direction':'egress','match':{'cidrs':['fd00:198:18:5::5/128'],"
	       "'ports':[{'protocol':'UDP','port':53}]},'mapTo':{'address':'fd00:198:18:6::6',"
	       "'port':5353}},"
	       "{'name':'udp-v4','direction':'egress','match':{'cidrs':['198.18.5.7/32'],"
	       "'ports':[{'protocol':'UDP','port':53}]},'mapTo':{'address':'198.18.6.7'}}]}") "]";

Test(rewrite, map_tcp_v4_and_reply)
{
	struct rw_fx *r = rw_open(MAP_SET);
	const struct loupe_event_rewrite *ev;
	struct loupe_pkt_spec syn = { .dst = "198.18.5.5",
				      .proto = IPPROTO_TCP,
				      .dport = 80,
				      .tcp = { .flags = LOUPE_TCP_SYN, .seq = 1000 } };
	struct loupe_pkt_spec reply = { .src = "198.18.6.6",
					.dst = LOUPE_PKT_POD4,
					.proto = IPPROTO_TCP,
					.sport = 8080,
					.dport = LOUPE_PKT_SPORT,
					.tcp = { .flags = LOUPE_TCP_SYN | LOUPE_TCP_ACK,
						 .seq = 5000 } };
	struct loupe_pkt_spec data = syn;

	fx_eq(r->fx, "SYN", rw_run(r, "map_syn", LOUPE_DIR_POD_EGRESS, &syn), PASS);
	expect_addr_port(r, false, "198.18.6.6", 8080);
	expect_addr_port(r, true, LOUPE_PKT_POD4, LOUPE_PKT_SPORT);
	expect_checksums(r, "SYN");
	ev = rw_event(r);
	fx_true(r->fx, ev, "no REWRITE event");
	if (ev) {
		uint8_t want[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 6, 6 };

		fx_eq(r->fx, "rewrite.actions", ev->actions, LOUPE_RW_MAP);
		fx_addr_eq(r->fx, "rewrite.new_addr", ev->new_addr, want);
		fx_eq(r->fx, "rewrite.new_port", ev->new_port, 8080);
	}

	/* the reply comes from the real server: the pod sees the address it used */
	reply.reply = false;
	fx_eq(r->fx, "reply", rw_run(r, "map_reply", LOUPE_DIR_POD_INGRESS, &reply), PASS);
	expect_addr_port(r, true, "198.18.5.5", 80);
	expect_addr_port(r, false, LOUPE_PKT_POD4, LOUPE_PKT_SPORT);
	expect_checksums(r, "reply");
	fx_eq(r->fx, "FLOW_START for the reply", fx_count(r->fx, LOUPE_EV_FLOW_START), 0);

	/* data from the pod, again to the virtual address */
	data.tcp.flags = LOUPE_TCP_ACK | LOUPE_TCP_PSH;
	data.tcp.seq = 1001;
	data.payload = "hello, mapped world";
	fx_eq(r->fx, "data", rw_run(r, "map_data", LOUPE_DIR_POD_EGRESS, &data), PASS);
	expect_addr_port(r, false, "198.18.6.6", 8080);
	expect_checksums(r, "data");
	fx_eq(r->fx, "REWRITE events after the first", fx_count(r->fx, LOUPE_EV_REWRITE), 0);
	fx_eq(r->fx, "counters.rewritten[egress]",
	      r->fx->after.rewritten[0] - r->fx->before.rewritten[0], 1);

	/* once the mapped flow is gone (FLOW_END), packets from the real address are its own */
	{
		struct loupe_flow_key key;
		static struct loupe_pkt built;

		cr_assert_eq(loupe_pkt_build(&syn, &built), 0);
		fx_flow_key(&key, &built, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, -1);
		cr_assert_eq(loupe_datapath_flow_delete(r->fx->dp, &key), 0);
		fx_eq(r->fx, "late reply",
		      rw_run(r, "reply_after_flow_end", LOUPE_DIR_POD_INGRESS, &reply), PASS);
		expect_addr_port(r, true, "198.18.6.6", 8080);
		fx_true(r->fx, !memcmp(r->out, r->in.buf, r->in.len),
			"a packet of no mapped flow was changed");
	}

	/* another address is not mapped */
	data.dst = "198.18.5.6";
	data.sport = 40001;
	fx_eq(r->fx, "other", rw_run(r, "not_mapped", LOUPE_DIR_POD_EGRESS, &data), PASS);
	expect_addr_port(r, false, "198.18.5.6", 80);
	fx_true(r->fx, !memcmp(r->out, r->in.buf, r->in.len), "an unmapped frame was changed");
	rw_close(r);
}

Test(rewrite, map_with_a_verdict_waiting_for_the_request)
{
	/* an HTTP rule decides on the request: the request is judged, then mapped too */
	struct rw_fx *r = rw_open("[" POLICY(
		"web", "{'podSelector':{},'rules':[{'name':'audit-http','direction':"
		       "'egress','match':{'http':{'hosts':['svc.test']}},'action':'audit'}],"
		       "'rewrites':[{'name':'to-real','direction':'egress','match':{'cidrs':"
		       "['198.18.5.5/32']},'mapTo':{'address':'198.18.6.6','port':8080}}]}") "]");
	static const char req[] = "GET / HTTP/1.1\r\nHost: svc.test\r\n\r\n";
	struct loupe_pkt_spec syn = { .dst = "198.18.5.5",
				      .proto = IPPROTO_TCP,
				      .dport = 80,
				      .tcp = { .flags = LOUPE_TCP_SYN, .seq = 1000 } };
	struct loupe_pkt_spec seg = syn;

	fx_eq(r->fx, "SYN", rw_run(r, "pending_syn", LOUPE_DIR_POD_EGRESS, &syn), PASS);
	expect_addr_port(r, false, "198.18.6.6", 8080);
	seg.tcp.flags = LOUPE_TCP_ACK | LOUPE_TCP_PSH;
	seg.tcp.seq = 1001;
	seg.payload = req;
	fx_eq(r->fx, "request", rw_run(r, "pending_request", LOUPE_DIR_POD_EGRESS, &seg), PASS);
	fx_eq(r->fx, "POLICY_VERDICT", fx_count(r->fx, LOUPE_EV_POLICY_VERDICT), 1);
	expect_addr_port(r, false, "198.18.6.6", 8080);
	expect_checksums(r, "judged request");
	rw_close(r);
}

Test(rewrite, map_udp_v6_and_v4_zero_checksum)
{
	struct rw_fx *r = rw_open(MAP_SET);
	struct loupe_pkt_spec q6 = {
		.ipv6 = true,
		.dst = "fd00:198:18:5::5",
		.proto = IPPROTO_UDP,
		.dport = 53,
		.dns = &(const struct loupe_pkt_dns){ .id = 9, .qname = "a.test" },
	};
	struct loupe_pkt_spec a6 = q6;
	struct loupe_pkt_spec q4 = {
		.dst = "198.18.5.7", .proto = IPPROTO_UDP, .dport = 53, .payload = "0123456789"
	};
	size_t l3, l4;
	uint8_t proto;
	bool ipv6;

	fx_eq(r->fx, "query", rw_run(r, "map6_query", LOUPE_DIR_POD_EGRESS, &q6), PASS);
	expect_addr_port(r, false, "fd00:198:18:6::6", 5353);
	expect_checksums(r, "query v6");
	a6.src = "fd00:198:18:6::6";
	a6.dst = LOUPE_PKT_POD6;
	a6.sport = 5353;
	a6.dport = LOUPE_PKT_SPORT;
	a6.dns = &(const struct loupe_pkt_dns){ .id = 9, .qname = "a.test", .response = true };
	fx_eq(r->fx, "answer", rw_run(r, "map6_answer", LOUPE_DIR_POD_INGRESS, &a6), PASS);
	expect_addr_port(r, true, "fd00:198:18:5::5", 53);
	expect_checksums(r, "answer v6");

	/* IPv4 UDP without a checksum keeps none; the port is kept when mapTo has none */
	cr_assert_eq(loupe_pkt_build(&q4, &r->in), 0);
	cr_assert(frame_offsets(r->in.buf, r->in.len, &l3, &l4, &ipv6, &proto));
	{
		uint8_t frame[LOUPE_PKT_MAX];
		size_t len = r->in.len;
		int rc = 0;

		memcpy(frame, r->in.buf, len);
		frame[l4 + 6] = frame[l4 + 7] = 0;
		fx_row(r->fx, "udp4_no_checksum", frame, len);
		cr_assert_eq(loupe_datapath_run_out(r->fx->dp, LOUPE_DIR_POD_EGRESS, frame, len, 0,
						    r->out, sizeof(r->out), &r->out_len, &rc),
			     0);
		fx_eq(r->fx, "TC action", rc, PASS);
		expect_addr_port(r, false, "198.18.6.7", 53);
		fx_eq(r->fx, "UDP checksum stays 0", (r->out[l4 + 6] << 8) | r->out[l4 + 7], 0);
		expect_checksums(r, "udp4");
	}
	rw_close(r);
}

Test(rewrite, map_with_ip_options_and_vlan)
{
	struct rw_fx *r = rw_open(MAP_SET);

	for (int opts = 0; opts <= 40; opts += 8) {
		struct loupe_pkt_spec syn = { .vlans = opts % 16 ? 1 : 0,
					      .vlan = { { .vid = 100 } },
					      .dst = "198.18.5.5",
					      .proto = IPPROTO_TCP,
					      .sport = 42000 + opts,
					      .dport = 80,
					      .ip4 = { .opts_len = opts },
					      .tcp = { .flags = LOUPE_TCP_SYN } };
		char row[32];

		snprintf(row, sizeof(row), "map_opts_%d%s", opts, syn.vlans ? "_vlan" : "");
		fx_eq(r->fx, "TC action", rw_run(r, row, LOUPE_DIR_POD_EGRESS, &syn), PASS);
		expect_addr_port(r, false, "198.18.6.6", 8080);
		expect_checksums(r, row);
		fx_eq(r->fx, "frame length", r->out_len, r->in.len);
	}
	rw_close(r);
}

Test(rewrite, dscp_v4_v6)
{
	struct rw_fx *r = rw_open("[" POLICY(
		"qos",
		"{'podSelector':{},'rewrites':[{'name':'ef','direction':'egress','match':"
		"{'ports':[{'port':5060},{'protocol':'UDP','port':5060}]},'setDscp':46}]}") "]");
	struct loupe_pkt_spec s4 = {
		.proto = IPPROTO_UDP, .dport = 5060, .ip4 = { .tos = 0x01 }, .payload = "INVITE"
	};
	struct loupe_pkt_spec s6 = { .ipv6 = true,
				     .proto = IPPROTO_TCP,
				     .dport = 5060,
				     .ip6 = { .flow_label = 0xabcde },
				     .tcp = { .flags = LOUPE_TCP_SYN } };
	const struct loupe_event_rewrite *ev;
	size_t l3, l4;
	uint8_t proto;
	bool ipv6;

	fx_eq(r->fx, "v4", rw_run(r, "dscp_v4", LOUPE_DIR_POD_EGRESS, &s4), PASS);
	cr_assert(frame_offsets(r->out, r->out_len, &l3, &l4, &ipv6, &proto));
	fx_eq(r->fx, "TOS (DSCP 46, ECN kept)", r->out[l3 + 1], (46 << 2) | 1);
	expect_checksums(r, "dscp v4");
	ev = rw_event(r);
	fx_true(r->fx, ev && ev->actions == LOUPE_RW_DSCP && ev->dscp == 46, "REWRITE DSCP 46");

	fx_eq(r->fx, "v6", rw_run(r, "dscp_v6", LOUPE_DIR_POD_EGRESS, &s6), PASS);
	cr_assert(frame_offsets(r->out, r->out_len, &l3, &l4, &ipv6, &proto));
	fx_eq(r->fx, "traffic class", ((r->out[l3] & 0x0f) << 4) | (r->out[l3 + 1] >> 4), 46 << 2);
	fx_eq(r->fx, "flow label kept",
	      ((r->out[l3 + 1] & 0x0f) << 16) | (r->out[l3 + 2] << 8) | r->out[l3 + 3], 0xabcde);
	expect_checksums(r, "dscp v6");

	/* the peer's packets of the flow are not the pod's: unchanged */
	s4.reply = true;
	fx_eq(r->fx, "reply", rw_run(r, "dscp_reply", LOUPE_DIR_POD_INGRESS, &s4), PASS);
	fx_true(r->fx, !memcmp(r->out, r->in.buf, r->in.len), "the reply was changed");
	rw_close(r);
}

Test(rewrite, vlan_pop_and_push)
{
	struct rw_fx *r = rw_open(
		"[" POLICY("tags", "{'podSelector':{},'rewrites':["
				   "{'name':'untag','direction':'egress','match':{'ports':[{'port':"
				   "7000}]},'vlan':{'pop':true}},"
				   "{'name':'tag','direction':'egress','match':{'ports':[{'port':"
				   "7001}]},'vlan':{'push':42}}]}") "]");
	struct loupe_pkt_spec tagged = { .vlans = 1,
					 .vlan = { { .vid = 300 } },
					 .proto = IPPROTO_TCP,
					 .dport = 7000,
					 .tcp = { .flags = LOUPE_TCP_SYN } };
	struct loupe_pkt_spec plain = { .proto = IPPROTO_TCP,
					.dport = 7001,
					.tcp = { .flags = LOUPE_TCP_SYN } };
	const struct loupe_event_rewrite *ev;

	fx_eq(r->fx, "pop", rw_run(r, "vlan_pop", LOUPE_DIR_POD_EGRESS, &tagged), PASS);
	fx_eq(r->fx, "frame length", r->out_len, r->in.len - 4);
	fx_eq(r->fx, "ethertype after pop", (r->out[12] << 8) | r->out[13], 0x0800);
	expect_checksums(r, "pop");
	ev = rw_event(r);
	fx_true(r->fx, ev && ev->actions == LOUPE_RW_VLAN_POP && ev->vlan_id == 300,
		"REWRITE VLAN_POP of 300");

	/* a pushed tag is skb metadata (the live test reads it from a capture) */
	fx_eq(r->fx, "push", rw_run(r, "vlan_push", LOUPE_DIR_POD_EGRESS, &plain), PASS);
	ev = rw_event(r);
	fx_true(r->fx, ev && ev->actions == LOUPE_RW_VLAN_PUSH && ev->vlan_id == 42,
		"REWRITE VLAN_PUSH of 42");
	rw_close(r);
}

static const char MASK_SET[] =
	"[" POLICY("mask", "{'podSelector':{},'rewrites':[{'name':'api-keys','direction':'egress',"
			   "'match':{'ports':[{'port':80}]},'http':{'maskHeaders':['authorization',"
			   "'X-Api-Key']}}]}") "]";

static const char *find(const uint8_t *buf, size_t len, const char *needle)
{
	return memmem(buf, len, needle, strlen(needle));
}

Test(rewrite, mask_headers)
{
	static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: llm.internal\r\n"
				  "Authorization: Bearer sk-proj-0123456789abcdef\r\n"
				  "accept: */*\r\nX-API-KEY:   k-42 \r\nX-Api-Key-Id: keep-me\r\n"
				  "Content-Length: 2\r\n\r\n{}";
	struct rw_fx *r = rw_open(MASK_SET);
	struct loupe_pkt_spec syn = { .proto = IPPROTO_TCP,
				      .dport = 80,
				      .tcp = { .flags = LOUPE_TCP_SYN, .seq = 1 } };
	struct loupe_pkt_spec seg = { .proto = IPPROTO_TCP,
				      .dport = 80,
				      .tcp = { .flags = LOUPE_TCP_ACK | LOUPE_TCP_PSH, .seq = 2 },
				      .payload = req };
	const struct loupe_event_rewrite *ev;
	const uint8_t *payload;
	size_t plen;

	fx_eq(r->fx, "SYN", rw_run(r, "mask_syn", LOUPE_DIR_POD_EGRESS, &syn), PASS);
	fx_eq(r->fx, "request", rw_run(r, "mask_request", LOUPE_DIR_POD_EGRESS, &seg), PASS);
	fx_eq(r->fx, "frame length", r->out_len, r->in.len);
	payload = r->out + r->in.payload_off;
	plen = r->in.payload_len;
	{
		/* as many '*' as the value had bytes */
		char want[128] = "Authorization: ";
		size_t n = strlen("Bearer sk-proj-0123456789abcdef");

		memset(want + strlen(want), '*', n);
		strcat(want, "\r\n");
		fx_true(r->fx, find(payload, plen, want), "Authorization not masked whole");
	}
	fx_true(r->fx,
		find(payload, plen, "X-API-KEY:   ***** \r\n") ||
			find(payload, plen, "X-API-KEY:   *****\r\n"),
		"X-API-KEY not masked");
	fx_true(r->fx, !find(payload, plen, "sk-proj") && !find(payload, plen, "k-42"),
		"a byte of a secret is left");
	fx_true(r->fx, find(payload, plen, "X-Api-Key-Id: keep-me\r\n"),
		"a header not named was changed");
	fx_true(r->fx,
		find(payload, plen, "Host: llm.internal\r\n") &&
			find(payload, plen, "\r\naccept: */*\r\n") &&
			find(payload, plen, "\r\nContent-Length: 2\r\n\r\n{}"),
		"other headers changed");
	expect_checksums(r, "masked request");
	ev = rw_event(r);
	fx_true(r->fx, ev && (ev->actions & LOUPE_RW_MASK) && ev->n_masked == 2,
		"REWRITE MASK of 2 headers");
	rw_close(r);
}

Test(rewrite, cut_frames_written_in_bounds)
{
	static const char req[] = "GET / HTTP/1.1\r\nAuthorization: Bearer secret-secret\r\n\r\n";
	struct rw_fx *r = rw_open(MASK_SET);
	struct loupe_pkt_spec seg = { .proto = IPPROTO_TCP,
				      .dport = 80,
				      .sport = 43000,
				      .tcp = { .flags = LOUPE_TCP_ACK | LOUPE_TCP_PSH, .seq = 2 },
				      .payload = req };

	/* the request cut at every length: what is there of the value is masked, nothing past
	 * the frame is written, every checksum stays right */
	for (size_t cut = 1; cut < sizeof(req) - 1; cut++) {
		char row[32];

		seg.payload_len = cut; /* a segment that ends there (checksums right) */
		seg.sport = 43000 + cut;
		snprintf(row, sizeof(row), "mask_cut_%zu", cut);
		fx_eq(r->fx, "TC action", rw_run(r, row, LOUPE_DIR_POD_EGRESS, &seg), PASS);
		fx_eq(r->fx, "frame length", r->out_len, r->in.len);
		fx_true(r->fx, !find(r->out, r->out_len, "secret"), "a secret byte is left");
		expect_checksums(r, row);
	}
	rw_close(r);
}

Test(rewrite, rate_limit_token_bucket)
{
	/* 3000 bytes of burst, refilled at 100 bytes/s: the runs below take microseconds */
	struct rw_fx *r =
		rw_open("[" POLICY("slow", "{'podSelector':{},'rateLimits':[{'direction':"
					   "'egress','bytesPerSecond':100,'burst':3000}]}") "]");
	static char data[900];
	struct loupe_pkt_spec seg = { .proto = IPPROTO_UDP, .dport = 9000, .payload = data };
	struct loupe_pkt_spec in = seg;
	int passed = 0, dropped = 0, events = 0;

	memset(data, 'x', sizeof(data) - 1);
	for (int i = 0; i < 6; i++) {
		int rc = rw_run(r, "rate", LOUPE_DIR_POD_EGRESS, &seg);

		passed += rc == PASS;
		dropped += rc == DROP;
		events += fx_count(r->fx, LOUPE_EV_RATE_LIMITED);
	}
	/* each frame is 942 bytes: three fit in 3000 bytes, the next three do not */
	fx_eq(r->fx, "passed", passed, 3);
	fx_eq(r->fx, "dropped", dropped, 3);
	fx_eq(r->fx, "RATE_LIMITED events (one per 100 ms at most)", events, 1);
	/* the other direction has no limit */
	in.reply = true;
	fx_eq(r->fx, "ingress", rw_run(r, "rate_ingress", LOUPE_DIR_POD_INGRESS, &in), PASS);
	rw_close(r);
}

Test(rewrite, ipv6_vlan_and_mask)
{
	struct rw_fx *r = rw_open("[" POLICY(
		"v6", "{'podSelector':{},'rewrites':["
		      "{'name':'untag','direction':'egress','match':{'ports':[{'port':7000}]},"
		      "'vlan':{'pop':true}},"
		      "{'name':'keys','direction':'egress','match':{'ports':[{'port':80}]},"
		      "'http':{'maskHeaders':['x-api-key']}}]}") "]");
	static const char req[] = "GET /v1 HTTP/1.1\r\nHost: h\r\nx-api-key: 0123456789\r\n\r\n";
	struct loupe_pkt_spec tagged = { .ipv6 = true,
					 .vlans = 1,
					 .vlan = { { .vid = 301 } },
					 .proto = IPPROTO_TCP,
					 .dport = 7000,
					 .tcp = { .flags = LOUPE_TCP_SYN } };
	struct loupe_pkt_spec seg = { .ipv6 = true,
				      .proto = IPPROTO_TCP,
				      .dport = 80,
				      .tcp = { .flags = LOUPE_TCP_ACK | LOUPE_TCP_PSH, .seq = 2 },
				      .payload = req };

	fx_eq(r->fx, "pop v6", rw_run(r, "vlan_pop_v6", LOUPE_DIR_POD_EGRESS, &tagged), PASS);
	fx_eq(r->fx, "ethertype after pop", (r->out[12] << 8) | r->out[13], 0x86dd);
	fx_eq(r->fx, "frame length", r->out_len, r->in.len - 4);
	expect_checksums(r, "pop v6");

	fx_eq(r->fx, "mask v6", rw_run(r, "mask_v6", LOUPE_DIR_POD_EGRESS, &seg), PASS);
	fx_true(r->fx, find(r->out, r->out_len, "x-api-key: **********\r\n"), "not masked");
	fx_true(r->fx, !find(r->out, r->out_len, "0123456789"), "a byte of the secret is left");
	expect_checksums(r, "mask v6");
	rw_close(r);
}

Test(rewrite, truncated_headers_pass_unchanged)
{
	/* a mapped destination, the frame cut inside its IP or TCP header: no flow, no rewrite,
	 * the frame passes as it came and nothing is written past it. BPF_PROG_TEST_RUN refuses
	 * an untagged frame shorter than its IP header, so the tagged one covers those cuts. */
	struct rw_fx *r = rw_open(MAP_SET);

	for (int tagged = 0; tagged <= 1; tagged++) {
		struct loupe_pkt_spec syn = { .vlans = tagged,
					      .vlan = { { .vid = 7 } },
					      .dst = "198.18.5.5",
					      .proto = IPPROTO_TCP,
					      .dport = 80,
					      .tcp = { .flags = LOUPE_TCP_SYN } };
		size_t whole, first;

		cr_assert_eq(loupe_pkt_build(&syn, &r->in), 0);
		whole = r->in.len;
		first = tagged ? 15 : r->in.l3_off + 20;
		for (size_t len = first; len < whole; len++) {
			uint8_t frame[LOUPE_PKT_MAX];
			int rc = 0, err;
			char row[40];

			cr_assert_eq(loupe_pkt_build(&syn, &r->in), 0);
			memcpy(frame, r->in.buf, len);
			snprintf(row, sizeof(row), "map_cut_at_%zu%s", len,
				 tagged ? "_tagged" : "");
			fx_row(r->fx, row, frame, len);
			err = loupe_datapath_run_out(r->fx->dp, LOUPE_DIR_POD_EGRESS, frame, len, 0,
						     r->out, sizeof(r->out), &r->out_len, &rc);
			cr_assert_eq(err, 0, "%s: %s", row, strerror(-err));
			fx_eq(r->fx, "TC action", rc, PASS);
			fx_eq(r->fx, "frame length", r->out_len, len);
			fx_true(r->fx, !memcmp(r->out, frame, len), "a cut frame was changed");
		}
	}
	rw_close(r);
}
