// SPDX-License-Identifier: Apache-2.0
/*
 * Fixture rows for the header parser of loupe's TC programs: every L2/L3/L4 path, each row
 * one frame through the production object (live egress, live ingress as the peer's reply,
 * and replay), checked against the exact FLOW_START event, flow entry and counter changes.
 * Not for L7 (test_l7.c) or cut frames (test_malformed.c).
 */
#include "fixtures.h"

#include <netinet/in.h>

enum parse_outcome {
	WANT_FLOW = 0, /* a new flow: FLOW_START, a flow entry */
	WANT_FRAGMENT, /* a non-first fragment: counted, nothing else */
	WANT_PERR,     /* a parse error of reason .perr: counted, nothing else */
	WANT_NON_IP,   /* not IP: counted, nothing else */
};

enum parse_ports {
	PORTS_WRITTEN = 0, /* the L4 header's ports */
	PORTS_ECHO_ID,	   /* ICMP echo: both carry the echo id */
	PORTS_ZERO,	   /* a protocol without ports */
};

struct parse_want {
	enum parse_outcome outcome;
	enum loupe_parse_error perr;
	uint16_t flags; /* hdr.flags (LOUPE_EVF_*) */
	uint16_t vlan_id, inner_vlan_id;
	enum parse_ports ports;
};

struct parse_row {
	const char *name;
	const char *what;
	struct loupe_pkt_spec pkt;
	struct parse_want want;
};

#define TCP IPPROTO_TCP
#define UDP IPPROTO_UDP
#define V6  LOUPE_EVF_IPV6
#define VL  LOUPE_EVF_VLAN
#define VLI LOUPE_EVF_VLAN_INNER
#define FRG LOUPE_EVF_FRAGMENT

#define EXT(k, ...)                                                                                \
	{                                                                                          \
		.kind = LOUPE_PKT_EXT_##k, __VA_ARGS__                                             \
	}

static const struct parse_row rows[] = {
	{ "ipv4_tcp",
	  "IPv4 TCP SYN: a flow with its 5-tuple",
	  { .proto = TCP, .dport = 80 },
	  { .outcome = WANT_FLOW } },
	{ "ipv4_udp",
	  "IPv4 UDP datagram",
	  { .proto = UDP, .dport = 5000, .payload = "hello" },
	  { .outcome = WANT_FLOW } },
	{ "ipv4_icmp_echo",
	  "ICMP echo request: both ports carry the echo id",
	  { .proto = IPPROTO_ICMP, .icmp = { .id = 0x4242, .seq = 1 }, .payload = "ping" },
	  { .outcome = WANT_FLOW, .ports = PORTS_ECHO_ID } },
	{ "ipv4_gre",
	  "IPv4 with a protocol that has no ports (GRE): a flow with ports 0",
	  { .proto = 47, .payload = "\x00\x00\x08\x00", .payload_len = 4 },
	  { .outcome = WANT_FLOW, .ports = PORTS_ZERO } },
	{ "ipv6_tcp",
	  "IPv6 TCP SYN",
	  { .ipv6 = true, .proto = TCP, .dport = 443 },
	  { .outcome = WANT_FLOW, .flags = V6 } },
	{ "ipv6_udp",
	  "IPv6 UDP datagram",
	  { .ipv6 = true, .proto = UDP, .dport = 5000, .payload = "hello" },
	  { .outcome = WANT_FLOW, .flags = V6 } },
	{ "ipv6_icmpv6_echo",
	  "ICMPv6 echo request: both ports carry the echo id",
	  { .ipv6 = true,
	    .proto = IPPROTO_ICMPV6,
	    .icmp = { .id = 0x0102, .seq = 9 },
	    .payload = "ping" },
	  { .outcome = WANT_FLOW, .flags = V6, .ports = PORTS_ECHO_ID } },
	{ "ipv4_df",
	  "DF set, not a fragment: no FRAGMENT flag",
	  { .proto = TCP, .dport = 80, .ip4 = { .df = true } },
	  { .outcome = WANT_FLOW } },
	{ "ipv4_first_fragment",
	  "MF set at offset 0: the L4 header is read, flagged FRAGMENT",
	  { .proto = UDP, .dport = 5000, .ip4 = { .mf = true, .id = 7 }, .payload = "part one" },
	  { .outcome = WANT_FLOW, .flags = FRG } },
	{ "ipv4_later_fragment",
	  "offset 1480, MF set, starting with a TCP-looking header: no L4, no flow, a fragment",
	  { .proto = TCP, .dport = 80, .ip4 = { .mf = true, .id = 7, .frag_off = 1480 } },
	  { .outcome = WANT_FRAGMENT } },
	{ "ipv4_last_fragment",
	  "offset 8, MF clear: the last fragment is a later one too",
	  { .proto = UDP, .dport = 5000, .ip4 = { .id = 7, .frag_off = 8 }, .payload = "tail" },
	  { .outcome = WANT_FRAGMENT } },
	{ "ipv6_ext_chain_first_fragment",
	  "hop-by-hop, routing, destination options, fragment (offset 0, M) before TCP",
	  { .ipv6 = true,
	    .proto = TCP,
	    .dport = 80,
	    .ip6 = { .ext = { EXT(HOP), EXT(ROUTING), EXT(DEST),
			      EXT(FRAG, .more = true, .id = 9) } } },
	  { .outcome = WANT_FLOW, .flags = V6 | FRG } },
	{ "ipv6_ext_chain_atomic_fragment",
	  "the same chain with an atomic fragment header (offset 0, no M): not a fragment",
	  { .ipv6 = true,
	    .proto = TCP,
	    .dport = 80,
	    .ip6 = { .ext = { EXT(HOP), EXT(ROUTING), EXT(DEST), EXT(FRAG, .id = 9) } } },
	  { .outcome = WANT_FLOW, .flags = V6 } },
	{ "ipv6_ext_long",
	  "a 40-byte hop-by-hop and an 88-byte destination options header",
	  { .ipv6 = true,
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "x",
	    .ip6 = { .ext = { EXT(HOP, .len = 4), EXT(DEST, .len = 10) } } },
	  { .outcome = WANT_FLOW, .flags = V6 } },
	{ "ipv6_five_ext",
	  "five extension headers before UDP",
	  { .ipv6 = true,
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "x",
	    .ip6 = { .ext = { EXT(HOP), EXT(DEST), EXT(ROUTING), EXT(DEST), EXT(DEST) } } },
	  { .outcome = WANT_FLOW, .flags = V6 } },
	{ "ipv6_six_ext",
	  "six extension headers: LOUPE_IPV6_EXT_MAX (6) says six are skipped before giving up",
	  { .ipv6 = true,
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "x",
	    .ip6 = { .ext = { EXT(HOP), EXT(DEST), EXT(ROUTING), EXT(DEST), EXT(DEST),
			      EXT(DEST) } } },
	  { .outcome = WANT_FLOW, .flags = V6 } },
	{ "ipv6_seven_ext",
	  "seven extension headers: too many, a parse error",
	  { .ipv6 = true,
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "x",
	    .ip6 = { .ext = { EXT(HOP), EXT(DEST), EXT(ROUTING), EXT(DEST), EXT(DEST), EXT(DEST),
			      EXT(DEST) } } },
	  { .outcome = WANT_PERR, .perr = LOUPE_PERR_IPV6_EXT_TOO_MANY } },
	{ "ipv6_later_fragment",
	  "fragment header at offset 1448: no L4, no flow, a fragment",
	  { .ipv6 = true,
	    .proto = TCP,
	    .dport = 80,
	    .ip6 = { .ext = { EXT(FRAG, .frag_off = 1448, .more = true, .id = 5) } } },
	  { .outcome = WANT_FRAGMENT } },
	{ "ipv6_later_fragment_after_ext",
	  "hop-by-hop, then a fragment header at offset 8",
	  { .ipv6 = true,
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "tail",
	    .ip6 = { .ext = { EXT(HOP), EXT(FRAG, .frag_off = 8, .id = 5) } } },
	  { .outcome = WANT_FRAGMENT } },
	{ "vlan_8021q",
	  "one 802.1Q tag",
	  { .vlans = 1, .vlan = { { .vid = 100, .pcp = 3 } }, .proto = TCP, .dport = 80 },
	  { .outcome = WANT_FLOW, .flags = VL, .vlan_id = 100 } },
	{ "vlan_qinq",
	  "802.1ad outer tag, 802.1Q inner tag: vlan_id outer, inner_vlan_id inner",
	  { .vlans = 2,
	    .vlan = { { .tpid = 0x88a8, .vid = 100 }, { .vid = 200 } },
	    .proto = TCP,
	    .dport = 80 },
	  { .outcome = WANT_FLOW, .flags = VL | VLI, .vlan_id = 100, .inner_vlan_id = 200 } },
	{ "vlan_priority_tag",
	  "VID 0 (a priority tag): VLAN flag set, vlan_id 0",
	  { .vlans = 1,
	    .vlan = { { .vid = 0, .pcp = 5 } },
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "x" },
	  { .outcome = WANT_FLOW, .flags = VL, .vlan_id = 0 } },
	{ "vlan_three_tags",
	  "three tags: the outer two are reported",
	  { .vlans = 3,
	    .vlan = { { .tpid = 0x88a8, .vid = 100 }, { .vid = 200 }, { .vid = 300 } },
	    .proto = TCP,
	    .dport = 80 },
	  { .outcome = WANT_FLOW, .flags = VL | VLI, .vlan_id = 100, .inner_vlan_id = 200 } },
	{ "vlan_four_tags",
	  "four tags: still followed",
	  { .vlans = 4,
	    .vlan = { { .vid = 1 }, { .vid = 2 }, { .vid = 3 }, { .vid = 4 } },
	    .ipv6 = true,
	    .proto = UDP,
	    .dport = 5000,
	    .payload = "x" },
	  { .outcome = WANT_FLOW, .flags = V6 | VL | VLI, .vlan_id = 1, .inner_vlan_id = 2 } },
	{ "vlan_five_tags",
	  "five tags: too deep, a parse error",
	  { .vlans = 5,
	    .vlan = { { .vid = 1 }, { .vid = 2 }, { .vid = 3 }, { .vid = 4 }, { .vid = 5 } },
	    .proto = TCP,
	    .dport = 80 },
	  { .outcome = WANT_PERR, .perr = LOUPE_PERR_VLAN_TOO_DEEP } },
	{ "vlan_qinq_ipv6_ext",
	  "QinQ, IPv6, hop-by-hop and destination options, TCP",
	  { .vlans = 2,
	    .vlan = { { .tpid = 0x88a8, .vid = 4094 }, { .vid = 1 } },
	    .ipv6 = true,
	    .proto = TCP,
	    .dport = 80,
	    .ip6 = { .ext = { EXT(HOP), EXT(DEST, .len = 2) } } },
	  { .outcome = WANT_FLOW, .flags = V6 | VL | VLI, .vlan_id = 4094, .inner_vlan_id = 1 } },
	{ "non_ip_arp",
	  "ARP: not IP, counted as such",
	  { .l2_only = true,
	    .ethertype = 0x0806,
	    .payload = "\x00\x01\x08\x00\x06\x04\x00\x01\x02\x00\x00\x00\x00\x0a\xc6\x12\x00\x0a"
		       "\x00\x00\x00\x00\x00\x00\xc6\x13\x00\x14",
	    .payload_len = 28 },
	  { .outcome = WANT_NON_IP } },
	{ "vlan_non_ip",
	  "ARP inside an 802.1Q tag: not IP",
	  { .vlans = 1,
	    .vlan = { { .vid = 7 } },
	    .l2_only = true,
	    .ethertype = 0x0806,
	    .payload = "\x00\x01\x08\x00\x06\x04\x00\x01",
	    .payload_len = 8 },
	  { .outcome = WANT_NON_IP } },
};

/* The TCP flags byte the frame carries (0 for other protocols). */
static uint8_t frame_tcp_flags(const struct loupe_pkt_spec *spec, const struct loupe_pkt *pkt)
{
	return spec->proto == IPPROTO_TCP && pkt->l4_off ? pkt->buf[pkt->l4_off + 13] : 0;
}

static void check_row(struct fx *fx, const struct parse_row *row, const struct loupe_pkt_spec *spec,
		      enum loupe_direction dir, uint64_t ts)
{
	const struct parse_want *want = &row->want;
	struct loupe_counters delta = { 0 };
	struct loupe_pkt pkt;
	struct loupe_flow_key key;
	struct loupe_flow flow;
	uint64_t t0, t1;
	int echo = -1;

	cr_assert_eq(loupe_pkt_build(spec, &pkt), 0, "row %s: loupe_pkt_build", row->name);
	fx_row(fx, row->name, pkt.buf, pkt.len);
	if (want->ports == PORTS_ECHO_ID)
		echo = spec->icmp.id;
	else if (want->ports == PORTS_ZERO)
		echo = 0;

	t0 = fx_mono_ns();
	fx_run_ok(fx, dir, &pkt, ts);
	t1 = fx_mono_ns();
	fx_check_decode(fx);

	delta.packets[dir] = 1;
	delta.bytes[dir] = pkt.len;
	switch (want->outcome) {
	case WANT_FLOW:
		delta.flows_created = 1;
		delta.events[LOUPE_EV_FLOW_START] = 1;
		break;
	case WANT_FRAGMENT:
		delta.fragments[dir] = 1;
		break;
	case WANT_PERR:
		delta.parse_errors[want->perr] = 1;
		break;
	case WANT_NON_IP:
		delta.non_ip[dir] = 1;
		break;
	}
	fx_check_counters(fx, &delta);

	if (want->outcome != WANT_FLOW) {
		fx_eq(fx, "records", fx->nrec, 0);
		return;
	}
	fx_eq(fx, "records", fx->nrec, 1);
	if (fx->nrec != 1)
		return;
	{
		const struct loupe_event_flow *ev = &fx->rec[0].flow;

		fx_eq(fx, "record size", fx->rec[0].size, sizeof(*ev));
		fx_eq(fx, "hdr.kind", ev->hdr.kind, LOUPE_EV_FLOW_START);
		fx_check_hdr(fx, &ev->hdr, &pkt, dir, spec->proto, echo);
		fx_eq(fx, "hdr.flags", ev->hdr.flags, want->flags);
		fx_eq(fx, "hdr.vlan_id", ev->hdr.vlan_id, want->vlan_id);
		fx_eq(fx, "hdr.inner_vlan_id", ev->hdr.inner_vlan_id, want->inner_vlan_id);
		fx_eq(fx, "tcp_flags", ev->tcp_flags, frame_tcp_flags(spec, &pkt));
		if (fx->replay)
			fx_eq(fx, "hdr.ts_ns (replay: the frame's)", ev->hdr.ts_ns, ts);
		else
			fx_true(fx, ev->hdr.ts_ns + 20000000 >= t0 && ev->hdr.ts_ns <= t1,
				"hdr.ts_ns %llu not within the run [%llu, %llu]",
				(unsigned long long)ev->hdr.ts_ns, (unsigned long long)t0,
				(unsigned long long)t1);
	}

	fx_flow_key(&key, &pkt, dir, spec->proto, echo);
	if (!fx_flow(fx, &key, &flow)) {
		fx_fail(fx, "no flow entry under the pod's key");
		return;
	}
	fx_eq(fx, "flow.packets[dir]", flow.packets[dir], 1);
	fx_eq(fx, "flow.packets[other]", flow.packets[dir ^ 1], 0);
	fx_eq(fx, "flow.bytes[dir]", flow.bytes[dir], pkt.len);
	fx_eq(fx, "flow.bytes[other]", flow.bytes[dir ^ 1], 0);
	fx_eq(fx, "flow.tcp_flags[dir]", flow.tcp_flags[dir], frame_tcp_flags(spec, &pkt));
	fx_eq(fx, "flow.ipv6", flow.ipv6, spec->ipv6);
	fx_eq(fx, "flow.vlan_id", flow.vlan_id,
	      want->flags & LOUPE_EVF_VLAN ? want->vlan_id : LOUPE_VLAN_NONE);
	/* a flow opened by a SYN knows where its client's payload begins */
	fx_eq(fx, "flow.state", flow.state,
	      (frame_tcp_flags(spec, &pkt) & 0x12) == 0x02 ? LOUPE_FLOW_SEQ_KNOWN : 0);
	fx_eq(fx, "flow.first_seen_ns == last_seen_ns", flow.first_seen_ns, flow.last_seen_ns);
	if (fx->replay)
		fx_eq(fx, "flow.first_seen_ns (replay)", flow.first_seen_ns, ts);
}

/* One datapath for all rows: each row has a source port of its own, so a flow of its own. */
static void run_rows(bool replay, bool reply)
{
	enum loupe_direction dir = reply ? LOUPE_DIR_POD_INGRESS : LOUPE_DIR_POD_EGRESS;
	struct fx *fx = fx_open(replay);
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct loupe_pkt_spec spec = rows[i].pkt;

		spec.reply = reply;
		spec.sport = 20000 + i;
		check_row(fx, &rows[i], &spec, dir, 1000000000ull * (i + 1));
	}
	fx_close(fx);
}

Test(parse, rows_egress, .description = "each row sent by the pod (live)")
{
	run_rows(false, false);
}

Test(parse, rows_ingress, .description = "each row as the peer's reply, to the pod (live)")
{
	run_rows(false, true);
}

Test(parse, rows_replay, .description = "each row sent by the pod, in replay mode")
{
	run_rows(true, false);
}

Test(parse, ipv4_options, .description = "IPv4 with IHL 6..15: the L4 header after the options")
{
	struct parse_row row = {
		.name = "ipv4_options",
		.pkt = { .proto = IPPROTO_TCP, .dport = 8080 },
		.want = { .outcome = WANT_FLOW },
	};
	struct fx *fx = fx_open(false);
	char name[64];
	int ihl;

	for (ihl = 6; ihl <= 15; ihl++) {
		snprintf(name, sizeof(name), "ipv4_options_ihl_%d", ihl);
		row.name = name;
		row.pkt.ip4.opts_len = 4 * (ihl - 5);
		row.pkt.sport = 30000 + ihl;
		check_row(fx, &row, &row.pkt, LOUPE_DIR_POD_EGRESS, 0);
	}
	fx_close(fx);
}
