// SPDX-License-Identifier: Apache-2.0
/*
 * Malformed frames through loupe's TC programs: full frames cut at every length, and headers
 * whose length fields lie. The program must always say "continue", count a truncated header
 * as a parse error, and emit nothing that is not in the packet: every field of every event is
 * the full frame's value, or a prefix of it, or "unknown" (0, ""). Not for well-formed paths
 * (test_parse.c, test_l7.c).
 */
#include "fixtures.h"

#include <netinet/in.h>

struct cut_case {
	const char *name;
	struct loupe_pkt_spec pkt;
	enum loupe_event_kind l7; /* the full frame's L7 event */
};

static const struct loupe_pkt_http http_req = { .path = "/index.html?q=1",
						.host = "cut.example.test",
						.host_index = 1 };
static const struct loupe_pkt_dns dns_q = { .id = 0x5151,
					    .qname = "www.cut.example.test",
					    .qtype = 28 };
static const struct loupe_pkt_tls tls_ch = { .sni = "tls.cut.example.test",
					     .alpn = { "h2", "http/1.1" },
					     .versions = { 0x0a0a, 0x0304, 0x0303 },
					     .key_share = 32 };

static const struct cut_case cut_cases[] = {
	{ "ipv4_tcp_http",
	  { .proto = IPPROTO_TCP, .dport = 80, .http = &http_req },
	  LOUPE_EV_HTTP_REQUEST },
	{ "ipv6_udp_dns",
	  { .ipv6 = true, .proto = IPPROTO_UDP, .dport = 53, .dns = &dns_q },
	  LOUPE_EV_DNS_QUERY },
	{ "ipv4_tcp_tls",
	  { .proto = IPPROTO_TCP, .dport = 443, .tls = &tls_ch },
	  LOUPE_EV_TLS_CLIENT_HELLO },
	{ "vlan_ipv4_tcp_tls",
	  { .vlans = 1,
	    .vlan = { { .vid = 7 } },
	    .proto = IPPROTO_TCP,
	    .dport = 443,
	    .ip4 = { .opts_len = 8 },
	    .tls = &tls_ch },
	  LOUPE_EV_TLS_CLIENT_HELLO },
	{ "qinq_ipv6_ext_http",
	  { .vlans = 2,
	    .vlan = { { .tpid = 0x88a8, .vid = 10 }, { .vid = 20 } },
	    .ipv6 = true,
	    .ip6 = { .ext = { { .kind = LOUPE_PKT_EXT_HOP },
			      { .kind = LOUPE_PKT_EXT_ROUTING },
			      { .kind = LOUPE_PKT_EXT_DEST, .len = 1 } } },
	    .proto = IPPROTO_TCP,
	    .dport = 80,
	    .http = &http_req },
	  LOUPE_EV_HTTP_REQUEST },
};

static bool is_prefix(const char *got, size_t cap, const char *full)
{
	size_t n = strnlen(got, cap);

	return n < cap && !strncmp(got, full, n);
}

/* @got (a record of the cut frame) against @ref (the full frame's record of the same kind). */
static void check_subset(struct fx *fx, const struct fx_record *got, const struct fx_record *ref,
			 const struct loupe_pkt *pkt)
{
	const struct loupe_event_hdr *g = &got->hdr, *r = &ref->hdr;

	fx_eq(fx, "hdr.direction", g->direction, r->direction);
	fx_eq(fx, "hdr.protocol", g->protocol, r->protocol);
	fx_addr_eq(fx, "hdr.saddr", g->saddr, pkt->src);
	fx_addr_eq(fx, "hdr.daddr", g->daddr, pkt->dst);
	fx_eq(fx, "hdr.sport", g->sport, pkt->sport);
	fx_eq(fx, "hdr.dport", g->dport, pkt->dport);
	fx_eq(fx, "hdr.flags", g->flags, r->flags);
	fx_eq(fx, "hdr.vlan_id", g->vlan_id, r->vlan_id);
	fx_eq(fx, "hdr.inner_vlan_id", g->inner_vlan_id, r->inner_vlan_id);

	switch (g->kind) {
	case LOUPE_EV_FLOW_START:
		fx_eq(fx, "tcp_flags", got->flow.tcp_flags, ref->flow.tcp_flags);
		break;
	case LOUPE_EV_HTTP_REQUEST: {
		const struct loupe_event_http *a = &got->http, *b = &ref->http;
		/* packed strings: the path, then the Host value after its NUL */
		const char *a_path = a->strings, *b_path = b->strings;
		const char *a_host = a->strings + a->path_len + 1;
		const char *b_host = b->strings + b->path_len + 1;

		fx_true(fx, is_prefix(a->method, sizeof(a->method), b->method), "method \"%.8s\"",
			a->method);
		fx_true(fx, is_prefix(a_path, LOUPE_HTTP_PATH_MAX, b_path),
			"path \"%.255s\" not a prefix of \"%s\"", a_path, b_path);
		fx_true(fx, is_prefix(a_host, LOUPE_HTTP_HOST_MAX, b_host),
			"host \"%.255s\" not a prefix of \"%s\"", a_host, b_host);
		fx_eq(fx, "path_len", a->path_len, strnlen(a_path, LOUPE_HTTP_PATH_MAX));
		fx_eq(fx, "host_len", a->host_len, strnlen(a_host, LOUPE_HTTP_HOST_MAX));
		break;
	}
	case LOUPE_EV_TLS_CLIENT_HELLO: {
		const struct loupe_event_tls *a = &got->tls, *b = &ref->tls;

		fx_true(fx, is_prefix(a->sni, sizeof(a->sni), b->sni),
			"sni \"%.255s\" not a prefix of \"%s\"", a->sni, b->sni);
		fx_eq(fx, "sni_len", a->sni_len, strnlen(a->sni, sizeof(a->sni)));
		fx_eq(fx, "legacy_version", a->legacy_version, b->legacy_version);
		fx_true(fx, a->max_version == 0 || a->max_version == b->max_version,
			"max_version 0x%04x, the full frame's 0x%04x", a->max_version,
			b->max_version);
		fx_true(fx, a->alpn_len <= b->alpn_len && !memcmp(a->alpn, b->alpn, a->alpn_len),
			"alpn (%u bytes) not a prefix of the full frame's", a->alpn_len);
		break;
	}
	case LOUPE_EV_DNS_QUERY: {
		const struct loupe_event_dns *a = &got->dns, *b = &ref->dns;

		fx_true(fx, is_prefix(a->qname, sizeof(a->qname), b->qname),
			"qname \"%.255s\" not a prefix of \"%s\"", a->qname, b->qname);
		fx_eq(fx, "qname_len", a->qname_len, strnlen(a->qname, sizeof(a->qname)));
		fx_eq(fx, "id", a->id, b->id);
		fx_true(fx, a->qtype == 0 || a->qtype == b->qtype, "qtype %u", a->qtype);
		fx_true(fx, a->qclass == 0 || a->qclass == b->qclass, "qclass %u", a->qclass);
		break;
	}
	default:
		fx_fail(fx, "unexpected record kind %u", g->kind);
	}
}

/*
 * BPF_PROG_TEST_RUN refuses a TC frame shorter than an Ethernet header, and (kernel 6.18) an
 * untagged IPv4/IPv6 frame shorter than the fixed IP header: it reads that header to set up
 * the skb. Behind a VLAN tag the kernel does not look, so those cuts reach the program (the
 * tagged cases cover them).
 */
static bool kernel_refuses(const struct loupe_pkt *pkt, const struct cut_case *c, size_t k)
{
	if (k < 14)
		return true;
	if (c->pkt.vlans)
		return false;
	return k < pkt->l3_off + (c->pkt.ipv6 ? 40 : 20);
}

/* The parse error a frame cut at @k must count, or -1 when several are right. */
static int cut_reason(const struct loupe_pkt *pkt, const struct cut_case *c, size_t k)
{
	size_t l4_hlen = c->pkt.proto == IPPROTO_TCP ? 20 : 8;

	if (k < pkt->l3_off)
		return LOUPE_PERR_VLAN_TRUNCATED;
	if (k < pkt->l3_off + (c->pkt.ipv6 ? 40 : 20 + ((c->pkt.ip4.opts_len + 3) & ~3)))
		return c->pkt.ipv6 ? LOUPE_PERR_IPV6_TRUNCATED : LOUPE_PERR_IPV4_TRUNCATED;
	if (k < pkt->l4_off)
		return -1; /* in the extension headers: EXT_TRUNCATED, or L4 past the last one */
	if (k < pkt->l4_off + l4_hlen)
		return LOUPE_PERR_L4_TRUNCATED;
	return 0;
}

static void run_cuts(const struct cut_case *c, bool replay)
{
	struct fx_record ref[4];
	size_t nref, i, k;
	struct loupe_pkt full, pkt;
	struct loupe_pkt_spec spec = c->pkt;
	enum loupe_direction dir = LOUPE_DIR_POD_EGRESS;
	struct fx *fx = fx_open(replay);
	char row[96];

	/* the full frame, on a fresh datapath: the reference */
	spec.sport = 9999;
	cr_assert_eq(loupe_pkt_build(&spec, &full), 0);
	snprintf(row, sizeof(row), "%s/full", c->name);
	fx_row(fx, row, full.buf, full.len);
	fx_run_ok(fx, dir, &full, 1);
	fx_check_decode(fx);
	fx_eq(fx, "FLOW_START", fx_count(fx, LOUPE_EV_FLOW_START), 1);
	fx_eq(fx, "L7 events", fx_count(fx, c->l7), 1);
	fx_eq(fx, "records", fx->nrec, 2);
	nref = fx->nrec < 4 ? fx->nrec : 4;
	memcpy(ref, fx->rec, nref * sizeof(ref[0]));

	for (k = 0; k <= full.len; k++) {
		struct loupe_counters delta = { 0 };
		int err, rc, reason;
		uint64_t perrs = 0;

		spec.sport = 10000 + k; /* a flow of its own */
		cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
		snprintf(row, sizeof(row), "%s/cut_%zu_of_%zu", c->name, k, pkt.len);
		fx_row(fx, row, pkt.buf, k);
		err = fx_run(fx, dir, pkt.buf, k, 2 + k, &rc);
		if (kernel_refuses(&pkt, c, k)) {
			fx_eq(fx, "run result (the kernel refuses the frame)", err, -EINVAL);
			fx_eq(fx, "records", fx->nrec, 0);
			fx_check_counters(fx, &delta);
			continue;
		}
		if (err) {
			fx_fail(fx, "loupe_datapath_run: %s", strerror(-err));
			continue;
		}
		fx_eq(fx, "TC action", rc, TC_ACT_UNSPEC);
		fx_check_decode(fx);
		fx_eq(fx, "counters.packets[dir]", fx->after.packets[dir] - fx->before.packets[dir],
		      1);
		fx_eq(fx, "counters.bytes[dir]", fx->after.bytes[dir] - fx->before.bytes[dir], k);
		for (i = 0; i < LOUPE_PERR_MAX; i++)
			perrs += fx->after.parse_errors[i] - fx->before.parse_errors[i];

		reason = cut_reason(&pkt, c, k);
		if (reason) {
			/* a header is cut: counted once, no flow, no event */
			fx_eq(fx, "parse errors counted", perrs, 1);
			if (reason > 0) {
				char what[48];

				snprintf(what, sizeof(what), "counters.parse_errors[%d]", reason);
				fx_eq(fx, what,
				      fx->after.parse_errors[reason] -
					      fx->before.parse_errors[reason],
				      1);
			} else {
				fx_true(fx,
					fx->after.parse_errors[LOUPE_PERR_IPV6_EXT_TRUNCATED] !=
							fx->before.parse_errors
								[LOUPE_PERR_IPV6_EXT_TRUNCATED] ||
						fx->after.parse_errors[LOUPE_PERR_L4_TRUNCATED] !=
							fx->before.parse_errors
								[LOUPE_PERR_L4_TRUNCATED],
					"a cut extension header counted as neither "
					"IPV6_EXT_TRUNCATED "
					"nor L4_TRUNCATED");
			}
			fx_eq(fx, "records", fx->nrec, 0);
			continue;
		}
		/* the headers are whole: a flow, and maybe a partial L7 event */
		fx_eq(fx, "parse errors counted", perrs, 0);
		fx_eq(fx, "FLOW_START", fx_count(fx, LOUPE_EV_FLOW_START), 1);
		fx_true(fx, fx->nrec <= 2, "%zu records", fx->nrec);
		for (i = 0; i < fx->nrec; i++) {
			const struct fx_record *r = &fx->rec[i];
			size_t j;
			bool matched = false;

			for (j = 0; j < nref; j++) {
				if (ref[j].hdr.kind != r->hdr.kind)
					continue;
				check_subset(fx, r, &ref[j], &pkt);
				matched = true;
			}
			if (!matched)
				fx_fail(fx, "record of kind %u, which the full frame does not give",
					r->hdr.kind);
		}
		/* the whole frame again (another flow): the same L7 event as the reference */
		if (k == full.len)
			fx_eq(fx, "L7 events of the whole frame", fx_count(fx, c->l7), 1);
	}
	fx_close(fx);
}

Test(malformed, cut_every_length,
     .description = "every prefix of four frames: continue, "
		    "count, no garbage")
{
	size_t i;

	for (i = 0; i < sizeof(cut_cases) / sizeof(cut_cases[0]); i++)
		run_cuts(&cut_cases[i], false);
}

Test(malformed, cut_every_length_replay, .description = "the same in replay mode")
{
	size_t i;

	for (i = 0; i < sizeof(cut_cases) / sizeof(cut_cases[0]); i++)
		run_cuts(&cut_cases[i], true);
}

/* Headers whose length fields lie. */
struct lie_row {
	const char *name;
	const char *what;
	struct loupe_pkt_spec pkt;
	enum loupe_parse_error perr; /* 0: parsed, a flow */
	bool http;		     /* an HTTP_REQUEST event */
};

#define GET_A "GET /a HTTP/1.1\r\nHost: lie.test\r\n\r\n"

static const struct lie_row lie_rows[] = {
	{ "ipv4_ihl_4",
	  "IHL 4 (16 bytes): bad header",
	  { .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip4 = { .ihl = LOUPE_PKT_RAW(4) },
	    .payload = GET_A },
	  .perr = LOUPE_PERR_IPV4_BAD_HEADER },
	{ "ipv4_ihl_0",
	  "IHL 0: bad header",
	  { .proto = IPPROTO_TCP, .dport = 80, .ip4 = { .ihl = LOUPE_PKT_RAW(0) } },
	  .perr = LOUPE_PERR_IPV4_BAD_HEADER },
	{ "ipv4_tot_len_below_ihl",
	  "total length 16, below the 20-byte header: bad header",
	  { .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip4 = { .tot_len = LOUPE_PKT_RAW(16) },
	    .payload = GET_A },
	  .perr = LOUPE_PERR_IPV4_BAD_HEADER },
	{ "ipv4_ihl_past_frame",
	  "IHL 15 on a frame that ends 20 bytes after the IP header",
	  { .l2_only = true,
	    .ethertype = 0x0800,
	    .payload = "\x4f\x00\x00\x50\x00\x00\x00\x00\x40\x06\x00\x00\xc6\x12\x00\x0a"
		       "\xc6\x13\x00\x14"
		       "0123456789abcdefghij",
	    .payload_len = 40 },
	  .perr = LOUPE_PERR_IPV4_TRUNCATED },
	{ "ipv4_tot_len_headers_only",
	  "total length covers IP and TCP only: no payload, no HTTP",
	  { .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip4 = { .tot_len = LOUPE_PKT_RAW(40) },
	    .payload = GET_A },
	  .http = false },
	{ "ipv4_tot_len_long",
	  "total length 1500 on a short frame: the bytes present are read",
	  { .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip4 = { .tot_len = LOUPE_PKT_RAW(1500) },
	    .payload = GET_A },
	  .http = true },
	{ "ipv4_tot_len_inside_tcp",
	  "total length 30 ends inside the TCP header: the L4 header is not in the packet",
	  { .proto = IPPROTO_TCP, .dport = 80, .ip4 = { .tot_len = LOUPE_PKT_RAW(30) } },
	  .perr = LOUPE_PERR_L4_TRUNCATED },
	{ "ipv4_version_6",
	  "version 6 in an IPv4 (0x0800) frame: bad header",
	  { .l2_only = true,
	    .ethertype = 0x0800,
	    .payload = "\x65\x00\x00\x28\x00\x00\x00\x00\x40\x06\x00\x00\xc6\x12\x00\x0a"
		       "\xc6\x13\x00\x14\x9c\x40\x00\x50\x00\x00\x00\x01\x00\x00\x00\x00"
		       "\x50\x02\xfa\xf0\x00\x00\x00\x00",
	    .payload_len = 40 },
	  .perr = LOUPE_PERR_IPV4_BAD_HEADER },
	{ "tcp_doff_4",
	  "TCP data offset 4: bad header",
	  { .proto = IPPROTO_TCP,
	    .dport = 80,
	    .tcp = { .doff = LOUPE_PKT_RAW(4) },
	    .payload = GET_A },
	  .perr = LOUPE_PERR_TCP_BAD_HEADER },
	{ "tcp_doff_0",
	  "TCP data offset 0: bad header",
	  { .proto = IPPROTO_TCP, .dport = 80, .tcp = { .doff = LOUPE_PKT_RAW(0) } },
	  .perr = LOUPE_PERR_TCP_BAD_HEADER },
	{ "tcp_doff_past_segment",
	  "data offset 15 (60 bytes) on a 30-byte segment: no payload",
	  { .proto = IPPROTO_TCP,
	    .dport = 80,
	    .tcp = { .doff = LOUPE_PKT_RAW(15) },
	    .payload = "GET / HTTP/1.1" },
	  .http = false },
	{ "ipv6_plen_zero",
	  "IPv6 payload length 0 before a TCP segment with a request",
	  { .ipv6 = true,
	    .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip6 = { .plen = LOUPE_PKT_RAW(0) },
	    .payload = GET_A },
	  .perr = LOUPE_PERR_L4_TRUNCATED },
	{ "ipv6_plen_huge",
	  "IPv6 payload length 65535 on a short frame: the bytes present are read",
	  { .ipv6 = true,
	    .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip6 = { .plen = LOUPE_PKT_RAW(65535) },
	    .payload = GET_A },
	  .http = true },
	{ "ipv6_plen_headers_only",
	  "IPv6 payload length covers the TCP header only: no HTTP",
	  { .ipv6 = true,
	    .proto = IPPROTO_TCP,
	    .dport = 80,
	    .ip6 = { .plen = LOUPE_PKT_RAW(20) },
	    .payload = GET_A },
	  .http = false },
	{ "udp_len_lies",
	  "UDP length 200 on a short datagram: the bytes present are read",
	  { .proto = IPPROTO_UDP, .dport = 53, .udp_len = LOUPE_PKT_RAW(200), .dns = &dns_q },
	  .http = false },
};

Test(malformed, length_fields_lie,
     .description = "IHL, total length, data offset, payload "
		    "length that lie")
{
	struct fx *fx = fx_open(false);
	size_t i;

	for (i = 0; i < sizeof(lie_rows) / sizeof(lie_rows[0]); i++) {
		const struct lie_row *row = &lie_rows[i];
		struct loupe_pkt_spec spec = row->pkt;
		struct loupe_counters delta = { 0 };
		struct loupe_pkt pkt;

		spec.sport = 12000 + i;
		cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0, "row %s", row->name);
		fx_row(fx, row->name, pkt.buf, pkt.len);
		fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
		fx_check_decode(fx);

		delta.packets[0] = 1;
		delta.bytes[0] = pkt.len;
		if (row->perr) {
			delta.parse_errors[row->perr] = 1;
		} else {
			delta.flows_created = 1;
			delta.events[LOUPE_EV_FLOW_START] = 1;
			delta.events[LOUPE_EV_HTTP_REQUEST] = row->http;
			delta.events[LOUPE_EV_DNS_QUERY] = spec.dns != NULL;
		}
		fx_check_counters(fx, &delta);
		fx_eq(fx, "HTTP records", fx_count(fx, LOUPE_EV_HTTP_REQUEST), row->http);
		if (row->http && fx_find(fx, LOUPE_EV_HTTP_REQUEST)) {
			const struct loupe_event_http *h =
				&fx_find(fx, LOUPE_EV_HTTP_REQUEST)->http;

			fx_streq(fx, "host", h->strings + h->path_len + 1, LOUPE_HTTP_HOST_MAX,
				 "lie.test");
		}
	}
	fx_close(fx);
}
