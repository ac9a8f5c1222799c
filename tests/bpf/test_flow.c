// SPDX-License-Identifier: Apache-2.0
/*
 * Fixture sequences for the flow table and the counters: a connection's packets in both
 * directions land in one entry keyed from the pod's side, FLOW_START comes once, per-direction
 * packets/bytes/TCP flags add up, in live and in replay mode. Not for parsing paths
 * (test_parse.c) or L7 (test_l7.c).
 */
#include "fixtures.h"

#include <netinet/in.h>

#define SYN LOUPE_TCP_SYN
#define ACK LOUPE_TCP_ACK
#define PSH LOUPE_TCP_PSH
#define FIN LOUPE_TCP_FIN

/* One packet of a sequence: its direction, and whether the peer sends it. */
struct step {
	const char *name;
	enum loupe_direction dir;
	uint8_t tcp_flags;
	const char *payload;
};

/* A TCP connection, opened and closed, with a non-L7 payload each way. */
static const struct step tcp_conn[] = {
	{ "syn", LOUPE_DIR_POD_EGRESS, SYN, NULL },
	{ "syn_ack", LOUPE_DIR_POD_INGRESS, SYN | ACK, NULL },
	{ "ack", LOUPE_DIR_POD_EGRESS, ACK, NULL },
	{ "data_out", LOUPE_DIR_POD_EGRESS, PSH | ACK, "hello, not a protocol" },
	{ "data_in", LOUPE_DIR_POD_INGRESS, PSH | ACK, "and back" },
	{ "fin_out", LOUPE_DIR_POD_EGRESS, FIN | ACK, NULL },
};

struct flow_case {
	const char *name;
	const char *what;
	struct loupe_pkt_spec base; /* addresses, VLANs; the steps add flags and payload */
	uint16_t vlan_id;	    /* flow.vlan_id expected */
};

static const struct flow_case cases[] = {
	{ "ipv4", "IPv4, untagged", { .proto = IPPROTO_TCP, .dport = 8080 }, LOUPE_VLAN_NONE },
	{ "ipv6_qinq",
	  "IPv6 in QinQ: the flow keeps the outer VID",
	  { .ipv6 = true,
	    .vlans = 2,
	    .vlan = { { .tpid = 0x88a8, .vid = 300 }, { .vid = 12 } },
	    .proto = IPPROTO_TCP,
	    .dport = 8080 },
	  300 },
};

/*
 * Runs the connection; in replay, every peer packet is handed in with the wrong direction
 * hint (egress): the flow that exists decides.
 */
static void run_conn(const struct flow_case *c, bool replay)
{
	const size_t n = sizeof(tcp_conn) / sizeof(tcp_conn[0]);
	struct loupe_counters want = { 0 };
	struct loupe_flow flow = { 0 };
	struct loupe_flow_key key;
	struct loupe_pkt pkt;
	uint64_t packets[2] = { 0 }, bytes[2] = { 0 };
	uint8_t flags[2] = { 0 };
	struct fx *fx = fx_open(replay);
	char row[96];
	size_t i;

	for (i = 0; i < n; i++) {
		const struct step *st = &tcp_conn[i];
		struct loupe_pkt_spec spec = c->base;
		enum loupe_direction hint = replay ? LOUPE_DIR_POD_EGRESS : st->dir;

		spec.reply = st->dir == LOUPE_DIR_POD_INGRESS;
		spec.tcp.flags = st->tcp_flags;
		spec.payload = st->payload;
		cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
		snprintf(row, sizeof(row), "%s/%s", c->name, st->name);
		fx_row(fx, row, pkt.buf, pkt.len);

		fx_run_ok(fx, hint, &pkt, 5000 + 1000 * i);
		fx_check_decode(fx);
		packets[st->dir]++;
		bytes[st->dir] += pkt.len;
		flags[st->dir] |= st->tcp_flags;

		memset(&want, 0, sizeof(want));
		want.packets[st->dir] = 1;
		want.bytes[st->dir] = pkt.len;
		if (i == 0) {
			want.flows_created = 1;
			want.events[LOUPE_EV_FLOW_START] = 1;
		}
		fx_check_counters(fx, &want);
		fx_eq(fx, "records", fx->nrec, i == 0 ? 1 : 0);
		if (i == 0 && fx->nrec == 1) {
			fx_eq(fx, "kind", fx->rec[0].hdr.kind, LOUPE_EV_FLOW_START);
			fx_check_hdr(fx, &fx->rec[0].hdr, &pkt, st->dir, IPPROTO_TCP, -1);
			fx_eq(fx, "FLOW_START tcp_flags", fx->rec[0].flow.tcp_flags, SYN);
		}

		/* after every packet: the one entry, keyed from the pod's side */
		fx_flow_key(&key, &pkt, st->dir, IPPROTO_TCP, -1);
		if (!fx_flow(fx, &key, &flow)) {
			fx_fail(fx, "no flow entry under the pod's key");
			continue;
		}
		fx_eq(fx, "flow.packets[egress]", flow.packets[0], packets[0]);
		fx_eq(fx, "flow.packets[ingress]", flow.packets[1], packets[1]);
		fx_eq(fx, "flow.bytes[egress]", flow.bytes[0], bytes[0]);
		fx_eq(fx, "flow.bytes[ingress]", flow.bytes[1], bytes[1]);
		fx_eq(fx, "flow.tcp_flags[egress]", flow.tcp_flags[0], flags[0]);
		fx_eq(fx, "flow.tcp_flags[ingress]", flow.tcp_flags[1], flags[1]);
		fx_eq(fx, "flow.vlan_id", flow.vlan_id, c->vlan_id);
		fx_eq(fx, "flow.ipv6", flow.ipv6, c->base.ipv6);
		fx_eq(fx, "flow.state (L7 and policy bits)", flow.state & ~LOUPE_FLOW_SEQ_KNOWN, 0);
		if (replay) {
			fx_eq(fx, "flow.first_seen_ns (replay)", flow.first_seen_ns, 5000);
			fx_eq(fx, "flow.last_seen_ns (replay)", flow.last_seen_ns, 5000 + 1000 * i);
		} else {
			fx_true(fx, flow.first_seen_ns <= flow.last_seen_ns,
				"first_seen_ns %llu after last_seen_ns %llu",
				(unsigned long long)flow.first_seen_ns,
				(unsigned long long)flow.last_seen_ns);
		}
	}

	/* the reversed key (the peer as pod) must not exist: one entry per connection */
	{
		struct loupe_flow_key rev;
		struct loupe_flow unused;

		fx_flow_key(&rev, &pkt, LOUPE_DIR_POD_INGRESS, IPPROTO_TCP, -1);
		fx_true(fx, !fx_flow(fx, &rev, &unused), "a second entry keyed from the peer");
	}
	fx_close(fx);
}

Test(flow, tcp_connection_live, .description = "SYN .. FIN: one entry, counts per direction")
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_conn(&cases[i], false);
}

Test(flow, tcp_connection_replay,
     .description = "replay: a known flow's packets take its direction, time from the frame")
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_conn(&cases[i], true);
}

Test(flow, icmp_echo_pair, .description = "echo request and reply share one flow (echo id)")
{
	const struct loupe_pkt_spec base = { .ipv6 = true,
					     .proto = IPPROTO_ICMPV6,
					     .icmp = { .id = 0x7777, .seq = 1 },
					     .payload = "abcd" };
	struct loupe_pkt_spec reply = base;
	struct loupe_pkt req, rep;
	struct loupe_flow_key key;
	struct loupe_flow flow;
	struct fx *fx = fx_open(false);

	reply.reply = true;
	reply.icmp.reply = true;
	cr_assert_eq(loupe_pkt_build(&base, &req), 0);
	cr_assert_eq(loupe_pkt_build(&reply, &rep), 0);

	fx_row(fx, "icmp_echo_request", req.buf, req.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &req, 0);
	fx_eq(fx, "FLOW_START", fx_count(fx, LOUPE_EV_FLOW_START), 1);
	fx_row(fx, "icmp_echo_reply", rep.buf, rep.len);
	fx_run_ok(fx, LOUPE_DIR_POD_INGRESS, &rep, 0);
	fx_eq(fx, "records", fx->nrec, 0);

	fx_flow_key(&key, &req, LOUPE_DIR_POD_EGRESS, IPPROTO_ICMPV6, 0x7777);
	if (!fx_flow(fx, &key, &flow)) {
		fx_fail(fx, "no flow entry for the echo id");
	} else {
		fx_eq(fx, "flow.packets[egress]", flow.packets[0], 1);
		fx_eq(fx, "flow.packets[ingress]", flow.packets[1], 1);
		fx_eq(fx, "flow.bytes[egress]", flow.bytes[0], req.len);
		fx_eq(fx, "flow.bytes[ingress]", flow.bytes[1], rep.len);
	}
	fx_close(fx);
}

/*
 * A frame cut short (a snaplen, or BPF_PROG_TEST_RUN's own limit) counts the bytes it had
 * on the wire, and the datapath still reads its headers.
 */
Test(flow, wire_length_counts, .description = "a cut frame counts its wire length in bytes")
{
	const struct loupe_pkt_spec spec = { .proto = IPPROTO_UDP,
					     .dport = 9000,
					     .payload = "0123456789abcdef0123456789abcdef" };
	struct loupe_flow_key key;
	struct loupe_flow flow;
	struct loupe_pkt pkt;
	struct fx *fx = fx_open(true);
	size_t cut;
	int rc, err;

	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	cut = pkt.payload_off + 4; /* the headers and four payload bytes */
	fx_row(fx, "udp_cut_after_headers", pkt.buf, cut);
	err = loupe_datapath_run_wire(fx->dp, LOUPE_DIR_POD_EGRESS, pkt.buf, cut, pkt.len, 0, &rc);
	fx_eq(fx, "run", err, 0);
	fx_eq(fx, "tc action", rc, -1);
	loupe_datapath_drain(fx->dp);
	fx_eq(fx, "FLOW_START", fx_count(fx, LOUPE_EV_FLOW_START), 1);

	fx_flow_key(&key, &pkt, LOUPE_DIR_POD_EGRESS, IPPROTO_UDP, -1);
	if (!fx_flow(fx, &key, &flow)) {
		fx_fail(fx, "no flow entry");
	} else {
		fx_eq(fx, "flow.packets[egress]", flow.packets[0], 1);
		fx_eq(fx, "flow.bytes[egress] (the wire's, not the captured)", flow.bytes[0],
		      pkt.len);
	}
	fx_close(fx);
}

/* A batch of every kind of packet, both ways: the counters add up to the batch. */
Test(counters, batch, .description = "packets/bytes per direction add up after a mixed batch")
{
	static const struct loupe_pkt_dns dns_a = { .qname = "a.test" };
	static const struct loupe_pkt_spec batch[] = {
		{ .proto = IPPROTO_TCP, .dport = 80 },
		{ .proto = IPPROTO_TCP, .dport = 80, .reply = true, .tcp = { .flags = SYN | ACK } },
		{ .proto = IPPROTO_TCP,
		  .dport = 80,
		  .payload = "GET / HTTP/1.1\r\nHost: a\r\n\r\n" },
		{ .proto = IPPROTO_UDP, .dport = 53, .dns = &dns_a },
		{ .ipv6 = true, .proto = IPPROTO_UDP, .dport = 5000, .payload = "x" },
		{ .ipv6 = true,
		  .proto = IPPROTO_UDP,
		  .dport = 5000,
		  .payload = "yy",
		  .reply = true },
		{ .vlans = 1,
		  .vlan = { { .vid = 5 } },
		  .proto = IPPROTO_ICMP,
		  .icmp = { .id = 1 } },
		{ .l2_only = true, .ethertype = 0x0806, .payload = "arp-ish", .reply = true },
		{ .proto = IPPROTO_UDP, .dport = 9, .ip4 = { .frag_off = 8 }, .payload = "frag" },
		{ .proto = IPPROTO_TCP, .dport = 80, .ip4 = { .ihl = LOUPE_PKT_RAW(3) } },
	};
	const size_t n = sizeof(batch) / sizeof(batch[0]);
	struct loupe_counters start, end;
	uint64_t packets[2] = { 0 }, bytes[2] = { 0 };
	struct fx *fx = fx_open(false);
	int round;
	size_t i;

	cr_assert_eq(loupe_datapath_read_counters(fx->dp, &start), 0);
	for (round = 0; round < 3; round++) {
		for (i = 0; i < n; i++) {
			enum loupe_direction dir =
				batch[i].reply ? LOUPE_DIR_POD_INGRESS : LOUPE_DIR_POD_EGRESS;
			struct loupe_pkt pkt;
			char row[32];

			cr_assert_eq(loupe_pkt_build(&batch[i], &pkt), 0, "batch[%zu]", i);
			snprintf(row, sizeof(row), "batch[%zu]", i);
			fx_row(fx, row, pkt.buf, pkt.len);
			fx_run_ok(fx, dir, &pkt, 0);
			packets[dir]++;
			bytes[dir] += pkt.len;
		}
	}
	fx_row(fx, "batch totals", NULL, 0);
	cr_assert_eq(loupe_datapath_read_counters(fx->dp, &end), 0);
	fx_eq(fx, "packets[egress]", end.packets[0] - start.packets[0], packets[0]);
	fx_eq(fx, "packets[ingress]", end.packets[1] - start.packets[1], packets[1]);
	fx_eq(fx, "bytes[egress]", end.bytes[0] - start.bytes[0], bytes[0]);
	fx_eq(fx, "bytes[ingress]", end.bytes[1] - start.bytes[1], bytes[1]);
	/* flows are new in round 0 only: TCP :80 (three frames), DNS, IPv6 UDP (both ways),
	 * ICMP; the ARP frame is not IP, the fragment has no L4, IHL 3 is a parse error */
	fx_eq(fx, "flows_created", end.flows_created - start.flows_created, 4);
	fx_eq(fx, "non_ip[ingress]", end.non_ip[1] - start.non_ip[1], 3);
	fx_eq(fx, "fragments[egress]", end.fragments[0] - start.fragments[0], 3);
	fx_eq(fx, "parse_errors[IPV4_BAD_HEADER]",
	      end.parse_errors[LOUPE_PERR_IPV4_BAD_HEADER] -
		      start.parse_errors[LOUPE_PERR_IPV4_BAD_HEADER],
	      3);
	fx_close(fx);
}
