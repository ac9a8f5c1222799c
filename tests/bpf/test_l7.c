// SPDX-License-Identifier: Apache-2.0
/*
 * Fixture rows for the L7 readers of loupe's TC programs: HTTP request line and Host, TLS
 * ClientHello (SNI, ALPN, versions), DNS query name and type. Each row is one frame on a flow
 * of its own, checked against the exact event record (fields, flags, record size) or its
 * absence. Not for header parsing (test_parse.c) or cut frames (test_malformed.c).
 */
#include "fixtures.h"

#include <netinet/in.h>
#include <stddef.h>

struct l7_want {
	enum loupe_event_kind kind; /* LOUPE_EV_UNSPECIFIED: no L7 event at all */
	uint16_t flags;		    /* LOUPE_L7F_* */
	/* HTTP */
	const char *method, *path, *host;
	/* TLS; alpn in wire form (length-prefixed names) */
	const char *sni;
	const char *alpn;
	uint16_t legacy_version, max_version;
	/* DNS */
	const char *qname;
	uint16_t qtype, qclass, id;
};

struct l7_row {
	const char *name;
	const char *what;
	struct loupe_pkt_spec pkt; /* .reply: the peer sends it, run as pod ingress */
	struct l7_want want;
};

/* Long values, filled in by fill_long_values() before the rows run. */
static char path_300[301], path_255[256], path_256[257];
static char want_path_255[256];
static char sni_300[301], want_sni_255[256];
static char host_300[301], want_host_255[256];
static char host_cut_want[64];

static void fill_long_values(void)
{
	memset(path_300, 'p', 300);
	path_300[0] = '/';
	memcpy(want_path_255, path_300, 255);
	memcpy(path_255, path_300, 255);
	memcpy(path_256, path_300, 256);
	memset(sni_300, 's', 300);
	memcpy(want_sni_255, sni_300, 255);
	memset(host_300, 'h', 300);
	memcpy(want_host_255, host_300, 255);
}

#define HTTP_REQ(...)                                                                              \
	.proto = IPPROTO_TCP, .dport = 80, .http = &(const struct loupe_pkt_http)                  \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}
#define TLS_CH(...)                                                                                \
	.proto = IPPROTO_TCP, .dport = 443, .tls = &(const struct loupe_pkt_tls)                   \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}
#define DNS_Q(...)                                                                                 \
	.proto = IPPROTO_UDP, .dport = 53, .dns = &(const struct loupe_pkt_dns)                    \
	{                                                                                          \
		__VA_ARGS__                                                                        \
	}

#define HTTP LOUPE_EV_HTTP_REQUEST
#define TLS  LOUPE_EV_TLS_CLIENT_HELLO
#define DNS  LOUPE_EV_DNS_QUERY

#define METHOD_ROW(m)                                                                              \
	{                                                                                          \
		"http_method_" m, "the " m " method",                                              \
			{ HTTP_REQ(.method = m, .path = "/api/v1/items?id=7",                      \
				   .host = "api.test") },                                          \
		{                                                                                  \
			HTTP, .method = m, .path = "/api/v1/items?id=7", .host = "api.test"        \
		}                                                                                  \
	}

static const struct l7_row http_rows[] = {
	METHOD_ROW("GET"),
	METHOD_ROW("HEAD"),
	METHOD_ROW("POST"),
	METHOD_ROW("PUT"),
	METHOD_ROW("DELETE"),
	METHOD_ROW("CONNECT"),
	METHOD_ROW("OPTIONS"),
	METHOD_ROW("TRACE"),
	METHOD_ROW("PATCH"),
	{ "http_path_255",
	  "a 255-byte path: kept whole",
	  { HTTP_REQ(.path = path_255, .host = "a.test") },
	  { HTTP, .method = "GET", .path = want_path_255, .host = "a.test" } },
	{ "http_path_256",
	  "a 256-byte path: cut at 255, flagged",
	  { HTTP_REQ(.path = path_256, .host = "a.test") },
	  { HTTP, LOUPE_L7F_PATH_TRUNCATED, .method = "GET", .path = want_path_255,
	    .host = "a.test" } },
	{ "http_path_300",
	  "a 300-byte path: cut at 255, flagged",
	  { HTTP_REQ(.path = path_300, .host = "a.test") },
	  { HTTP, LOUPE_L7F_PATH_TRUNCATED, .method = "GET", .path = want_path_255,
	    .host = "a.test" } },
	{ "http_host_first",
	  "Host is the first header",
	  { HTTP_REQ(.host = "first.test", .host_index = 0) },
	  { HTTP, .method = "GET", .path = "/", .host = "first.test" } },
	{ "http_host_fifth",
	  "Host is the fifth header",
	  { HTTP_REQ(.host = "fifth.test", .host_index = 4) },
	  { HTTP, .method = "GET", .path = "/", .host = "fifth.test" } },
	{ "http_host_lowercase",
	  "host: in lower case",
	  { HTTP_REQ(.host_line = "host: lower.test", .host_index = 2) },
	  { HTTP, .method = "GET", .path = "/", .host = "lower.test" } },
	{ "http_host_upper_padded",
	  "HOST:   x  : blanks around the value dropped",
	  { HTTP_REQ(.host_line = "HOST:   x  ", .host_index = 1) },
	  { HTTP, .method = "GET", .path = "/", .host = "x" } },
	{ "http_host_tabs",
	  "Host:<tab>t.test<tab>: tabs dropped too",
	  { HTTP_REQ(.host_line = "Host:\tt.test\t") },
	  { HTTP, .method = "GET", .path = "/", .host = "t.test" } },
	{ "http_host_port",
	  "Host with a port: kept as sent",
	  { HTTP_REQ(.host = "svc.test:8080") },
	  { HTTP, .method = "GET", .path = "/", .host = "svc.test:8080" } },
	{ "http_host_300",
	  "a 300-byte Host: cut at 255, flagged",
	  { HTTP_REQ(.host = host_300) },
	  { HTTP, LOUPE_L7F_HOST_TRUNCATED, .method = "GET", .path = "/", .host = want_host_255 } },
	{ "http_host_beyond_scan",
	  "Host starts after LOUPE_HTTP_SCAN_MAX bytes: missing, the header block not seen whole",
	  { HTTP_REQ(.host = "far.test", .host_offset = LOUPE_HTTP_SCAN_MAX + 76) },
	  { HTTP, LOUPE_L7F_HOST_MISSING | LOUPE_L7F_INCOMPLETE, .method = "GET", .path = "/",
	    .host = "" } },
	{ "http_host_cut_by_scan",
	  "Host starts inside the scanned bytes, its value ends after them: a cut value, flagged",
	  { HTTP_REQ(.host = "abcdefghijklmnopqrstuvwxyz.example.test",
		     .host_offset = LOUPE_HTTP_SCAN_MAX - 16) },
	  { HTTP, LOUPE_L7F_HOST_TRUNCATED | LOUPE_L7F_INCOMPLETE, .method = "GET", .path = "/",
	    .host = host_cut_want } },
	{ "http_line_only",
	  "a request line alone, no headers: host missing",
	  { HTTP_REQ(.method = "OPTIONS", .path = "*", .line_only = true) },
	  { HTTP, LOUPE_L7F_HOST_MISSING, .method = "OPTIONS", .path = "*", .host = "" } },
	{ "http_no_host",
	  "headers, none of them Host",
	  { HTTP_REQ(.path = "/nohost") },
	  { HTTP, LOUPE_L7F_HOST_MISSING, .method = "GET", .path = "/nohost", .host = "" } },
	{ "http_ipv6_vlan",
	  "a request over IPv6 in an 802.1Q tag",
	  { .ipv6 = true,
	    .vlans = 1,
	    .vlan = { { .vid = 42 } },
	    HTTP_REQ(.method = "POST", .path = "/v6", .host = "[fd00:198:18::20]:80") },
	  { HTTP, .method = "POST", .path = "/v6", .host = "[fd00:198:18::20]:80" } },
	{ "http_to_pod",
	  "a request the pod receives (the pod is the server)",
	  { .reply = true, HTTP_REQ(.path = "/in", .host = "pod.test") },
	  { HTTP, .method = "GET", .path = "/in", .host = "pod.test" } },
	{ "not_http",
	  "HELLO world: no event",
	  { .proto = IPPROTO_TCP, .dport = 80, .payload = "HELLO world\r\n\r\n" },
	  { 0 } },
	{ "http_lowercase_method",
	  "get / HTTP/1.1: methods are case-sensitive, no event",
	  { .proto = IPPROTO_TCP, .dport = 80, .payload = "get / HTTP/1.1\r\nHost: a\r\n\r\n" },
	  { 0 } },
	{ "http_method_prefix",
	  "GETS / HTTP/1.1: not a method, no event",
	  { .proto = IPPROTO_TCP, .dport = 80, .payload = "GETS / HTTP/1.1\r\nHost: a\r\n\r\n" },
	  { 0 } },
	{ "http_response",
	  "HTTP/1.1 200 OK from the server: no event",
	  { .reply = true,
	    .proto = IPPROTO_TCP,
	    .dport = 80,
	    .payload = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\nok" },
	  { 0 } },
	{ "http_over_udp",
	  "a request in a UDP datagram: not HTTP, no event",
	  { .proto = IPPROTO_UDP, .dport = 80, .payload = "GET / HTTP/1.1\r\nHost: a\r\n\r\n" },
	  { 0 } },
};

#define ALPN_H2_H11 "\x02h2\x08http/1.1"

static const struct l7_row tls_rows[] = {
	{ "tls_client_hello",
	  "SNI, ALPN h2 and http/1.1, GREASE 0x0a0a in supported_versions",
	  { TLS_CH(.sni = "www.example.test", .alpn = { "h2", "http/1.1" },
		   .versions = { 0x0a0a, 0x0304, 0x0303 }, .key_share = 32) },
	  { TLS, .sni = "www.example.test", .alpn = ALPN_H2_H11, .legacy_version = 0x0303,
	    .max_version = 0x0304 } },
	{ "tls_sni_last_big",
	  "SNI last, after a 1200-byte key share and 400 bytes of padding",
	  { TLS_CH(.sni = "last.example.test", .alpn = { "h2" }, .versions = { 0x0304, 0x0303 },
		   .key_share = 1200, .padding = 400,
		   .order = { LOUPE_PKT_TLS_GREASE, LOUPE_PKT_TLS_VERSIONS, LOUPE_PKT_TLS_ALPN,
			      LOUPE_PKT_TLS_KEY_SHARE, LOUPE_PKT_TLS_PADDING,
			      LOUPE_PKT_TLS_SNI }) },
	  { TLS, .sni = "last.example.test", .alpn = "\x02h2", .legacy_version = 0x0303,
	    .max_version = 0x0304 } },
	{ "tls_ipv6_big",
	  "the same over IPv6: a ~1800-byte frame",
	  { .ipv6 = true,
	    TLS_CH(.sni = "v6.example.test", .versions = { 0x1a1a, 0x0304 }, .key_share = 1200,
		   .padding = 400,
		   .order = { LOUPE_PKT_TLS_KEY_SHARE, LOUPE_PKT_TLS_PADDING,
			      LOUPE_PKT_TLS_VERSIONS, LOUPE_PKT_TLS_SNI }) },
	  { TLS, .sni = "v6.example.test", .alpn = "", .legacy_version = 0x0303,
	    .max_version = 0x0304 } },
	{ "tls_no_sni",
	  "no server_name: an event with an empty SNI",
	  { TLS_CH(.alpn = { "http/1.1" }, .versions = { 0x0304 }) },
	  { TLS, .sni = "", .alpn = "\x08http/1.1", .legacy_version = 0x0303,
	    .max_version = 0x0304 } },
	{ "tls_no_versions",
	  "TLS 1.2 client: no supported_versions, max_version 0",
	  { TLS_CH(.sni = "old.test") },
	  { TLS, .sni = "old.test", .alpn = "", .legacy_version = 0x0303 } },
	{ "tls_only_grease",
	  "supported_versions holds only GREASE: max_version 0",
	  { TLS_CH(.sni = "g.test", .versions = { 0x2a2a, 0xfafa }) },
	  { TLS, .sni = "g.test", .alpn = "", .legacy_version = 0x0303 } },
	{ "tls_sni_300",
	  "a 300-byte SNI: cut at 255, flagged",
	  { TLS_CH(.sni = sni_300, .versions = { 0x0304 }) },
	  { TLS, LOUPE_L7F_SNI_TRUNCATED, .sni = want_sni_255, .alpn = "", .legacy_version = 0x0303,
	    .max_version = 0x0304 } },
	{ "tls_alpn_long",
	  "an ALPN list of 77 bytes: the first 63 kept (and a NUL), flagged",
	  { TLS_CH(.sni = "a.test",
		   .alpn = { "protocol-number-one-0123456789", "protocol-number-two-0123456789",
			     "protocol-three" }) },
	  { TLS, LOUPE_L7F_ALPN_TRUNCATED, .sni = "a.test",
	    .alpn = "\x1eprotocol-number-one-0123456789\x1eprotocol-number-two-0123456789\x0e",
	    .legacy_version = 0x0303 } },
	{ "tls_cut_in_random",
	  "the segment ends inside the random: no event",
	  { .payload_cut = 30, TLS_CH(.sni = "cut.test") },
	  { 0 } },
	{ "tls_cut_in_sni",
	  "the record goes on past the segment (inside the SNI): held for reassembly, no event yet",
	  { .payload_cut = 110, TLS_CH(.sni = "cut.example.test", .versions = { 0x0304 }) },
	  { 0 } },
	{ "tls_server_hello",
	  "a handshake record that is not a ClientHello: no event",
	  { .reply = true,
	    .proto = IPPROTO_TCP,
	    .dport = 443,
	    .payload = "\x16\x03\x03\x00\x2a\x02\x00\x00\x26\x03\x03",
	    .payload_len = 11 },
	  { 0 } },
	{ "tls_application_data",
	  "an application data record: no event",
	  { .proto = IPPROTO_TCP,
	    .dport = 443,
	    .payload = "\x17\x03\x03\x00\x10"
		       "0123456789abcdef",
	    .payload_len = 21 },
	  { 0 } },
};

static const struct l7_row dns_rows[] = {
	{ "dns_a",
	  "UDP query, type A",
	  { DNS_Q(.id = 0x1234, .qname = "www.example.test") },
	  { DNS, .qname = "www.example.test", .qtype = 1, .qclass = 1, .id = 0x1234 } },
	{ "dns_aaaa",
	  "UDP query, type AAAA, over IPv6",
	  { .ipv6 = true, DNS_Q(.id = 0xbeef, .qname = "v6.example.test", .qtype = 28) },
	  { DNS, .qname = "v6.example.test", .qtype = 28, .qclass = 1, .id = 0xbeef } },
	{ "dns_tcp",
	  "a query over TCP port 53, after the 2-byte length",
	  { .proto = IPPROTO_TCP,
	    .dport = 53,
	    .dns =
		    &(const struct loupe_pkt_dns){
			    .id = 77, .qname = "tcp.example.test", .qtype = 16, .tcp = true } },
	  { DNS, LOUPE_L7F_DNS_OVER_TCP, .qname = "tcp.example.test", .qtype = 16, .qclass = 1,
	    .id = 77 } },
	{ "dns_root",
	  "a query for the root: an empty name",
	  { DNS_Q(.id = 1, .qname = "", .qtype = 2) },
	  { DNS, .qname = "", .qtype = 2, .qclass = 1, .id = 1 } },
	{ "dns_127_labels",
	  "127 one-letter labels: 253 characters, the longest valid name",
	  { DNS_Q(.id = 2, .labels = 127) },
	  { DNS, .qname = NULL /* 127 x "a." less the last dot, checked below */, .qtype = 1,
	    .qclass = 1, .id = 2 } },
	{ "dns_128_labels",
	  "128 labels: 255 characters, too long, flagged invalid",
	  { DNS_Q(.id = 3, .labels = 128) },
	  { DNS, LOUPE_L7F_DNS_NAME_INVALID, .qname = "", .qtype = 0, .qclass = 0, .id = 3 } },
	{ "dns_loop",
	  "a compression pointer back to the name's start: invalid, empty name",
	  { DNS_Q(.id = 4, .qname = "loop.test", .form = LOUPE_PKT_DNS_LOOP) },
	  { DNS, LOUPE_L7F_DNS_NAME_INVALID, .qname = "", .qtype = 1, .qclass = 1, .id = 4 } },
	{ "dns_forward_pointer",
	  "a pointer forward (only backward ones are followed): invalid",
	  { DNS_Q(.id = 5, .qname = "www.fwd.test", .form = LOUPE_PKT_DNS_POINTER) },
	  { DNS, LOUPE_L7F_DNS_NAME_INVALID, .qname = "", .qtype = 1, .qclass = 1, .id = 5 } },
	{ "dns_long_label",
	  "a label length byte of 64: invalid",
	  { DNS_Q(.id = 6, .qname = "x.test", .form = LOUPE_PKT_DNS_LONG_LABEL) },
	  { DNS, LOUPE_L7F_DNS_NAME_INVALID, .qname = "", .qtype = 0, .qclass = 0, .id = 6 } },
	{ "dns_response",
	  "a response (QR=1) from the server: no DNS_QUERY",
	  { .reply = true, DNS_Q(.id = 7, .qname = "www.example.test", .response = true) },
	  { 0 } },
	{ "dns_to_pod",
	  "a query the pod receives (the pod is a resolver)",
	  { .reply = true, DNS_Q(.id = 8, .qname = "in.example.test") },
	  { DNS, .qname = "in.example.test", .qtype = 1, .qclass = 1, .id = 8 } },
	{ "dns_not_port_53",
	  "a DNS query to port 5353 over UDP: not read",
	  { .proto = IPPROTO_UDP,
	    .dport = 5353,
	    .dns = &(const struct loupe_pkt_dns){ .id = 9, .qname = "mdns.local" } },
	  { 0 } },
};

static char dns_127_want[254];

static void check_http(struct fx *fx, const struct fx_record *r, const struct l7_want *w)
{
	const struct loupe_event_http *ev = &r->http;

	size_t path_len = strlen(w->path);

	/* packed: the path, its NUL, the Host value, its NUL, and nothing after */
	fx_eq(fx, "record size", r->size,
	      offsetof(struct loupe_event_http, strings) + path_len + 1 + strlen(w->host) + 1);
	fx_eq(fx, "flags", ev->flags, w->flags);
	fx_streq(fx, "method", ev->method, sizeof(ev->method), w->method);
	fx_streq(fx, "path", ev->strings, LOUPE_HTTP_PATH_MAX, w->path);
	fx_streq(fx, "host", ev->strings + path_len + 1, LOUPE_HTTP_HOST_MAX, w->host);
	fx_eq(fx, "path_len", ev->path_len, strlen(w->path));
	fx_eq(fx, "host_len", ev->host_len, strlen(w->host));
}

static void check_tls(struct fx *fx, const struct fx_record *r, const struct l7_want *w)
{
	const struct loupe_event_tls *ev = &r->tls;
	size_t alpn_len = strlen(w->alpn);

	fx_eq(fx, "record size", r->size,
	      offsetof(struct loupe_event_tls, sni) + strlen(w->sni) + 1);
	fx_eq(fx, "flags", ev->flags, w->flags);
	fx_streq(fx, "sni", ev->sni, sizeof(ev->sni), w->sni);
	fx_eq(fx, "sni_len", ev->sni_len, strlen(w->sni));
	fx_eq(fx, "legacy_version", ev->legacy_version, w->legacy_version);
	fx_eq(fx, "max_version", ev->max_version, w->max_version);
	fx_eq(fx, "alpn_len", ev->alpn_len, alpn_len);
	fx_true(fx, ev->alpn_len != alpn_len || !memcmp(ev->alpn, w->alpn, alpn_len),
		"alpn bytes differ: got \"%.*s\"", ev->alpn_len, (const char *)ev->alpn);
}

static void check_dns(struct fx *fx, const struct fx_record *r, const struct l7_want *w)
{
	const struct loupe_event_dns *ev = &r->dns;
	const char *qname = w->qname ? w->qname : dns_127_want;

	fx_eq(fx, "record size", r->size,
	      offsetof(struct loupe_event_dns, qname) + strlen(qname) + 1);
	fx_eq(fx, "flags", ev->flags, w->flags);
	fx_streq(fx, "qname", ev->qname, sizeof(ev->qname), qname);
	fx_eq(fx, "qname_len", ev->qname_len, strlen(qname));
	fx_eq(fx, "qtype", ev->qtype, w->qtype);
	fx_eq(fx, "qclass", ev->qclass, w->qclass);
	fx_eq(fx, "id", ev->id, w->id);
}

static void check_row(struct fx *fx, const struct l7_row *row, uint16_t sport)
{
	static const enum loupe_event_kind l7_kinds[] = { HTTP, TLS, DNS };
	struct loupe_pkt_spec spec = row->pkt;
	enum loupe_direction dir = spec.reply ? LOUPE_DIR_POD_INGRESS : LOUPE_DIR_POD_EGRESS;
	const struct fx_record *r;
	struct loupe_pkt pkt;
	size_t k;

	spec.sport = sport;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0, "row %s: loupe_pkt_build", row->name);
	fx_row(fx, row->name, pkt.buf, pkt.len);
	fx_run_ok(fx, dir, &pkt, 0);
	fx_check_decode(fx);

	fx_eq(fx, "FLOW_START records", fx_count(fx, LOUPE_EV_FLOW_START), 1);
	for (k = 0; k < sizeof(l7_kinds) / sizeof(l7_kinds[0]); k++) {
		char what[48];

		snprintf(what, sizeof(what), "%s records", loupe_event_kind_name(l7_kinds[k]));
		fx_eq(fx, what, fx_count(fx, l7_kinds[k]), l7_kinds[k] == row->want.kind);
		fx_eq(fx, "counters.events[kind]",
		      fx->after.events[l7_kinds[k]] - fx->before.events[l7_kinds[k]],
		      l7_kinds[k] == row->want.kind);
	}
	if (!row->want.kind)
		return;
	r = fx_find(fx, row->want.kind);
	if (!r)
		return;
	fx_check_hdr(fx, &r->hdr, &pkt, dir, spec.proto, -1);
	switch (row->want.kind) {
	case HTTP:
		check_http(fx, r, &row->want);
		break;
	case TLS:
		check_tls(fx, r, &row->want);
		break;
	case DNS:
		check_dns(fx, r, &row->want);
		break;
	default:
		break;
	}
}

static void run_table(const struct l7_row *rows, size_t n, bool replay)
{
	struct fx *fx = fx_open(replay);
	size_t i;

	fill_long_values();
	for (i = 0; i < 127; i++) {
		dns_127_want[2 * i] = 'a';
		dns_127_want[2 * i + 1] = '.';
	}
	dns_127_want[253] = 0;
	/* http_host_cut_by_scan: the Host line starts 16 bytes before the end of the scan */
	snprintf(host_cut_want, sizeof(host_cut_want), "%.10s", "abcdefghijklmnopqrstuvwxyz");

	for (i = 0; i < n; i++)
		check_row(fx, &rows[i], 21000 + i);
	fx_close(fx);
}

Test(l7, http, .description = "HTTP request rows")
{
	run_table(http_rows, sizeof(http_rows) / sizeof(http_rows[0]), false);
}

Test(l7, http_replay, .description = "HTTP request rows in replay mode")
{
	run_table(http_rows, sizeof(http_rows) / sizeof(http_rows[0]), true);
}

Test(l7, tls, .description = "TLS ClientHello rows")
{
	run_table(tls_rows, sizeof(tls_rows) / sizeof(tls_rows[0]), false);
}

Test(l7, dns, .description = "DNS query rows")
{
	run_table(dns_rows, sizeof(dns_rows) / sizeof(dns_rows[0]), false);
}

Test(l7, dns_replay, .description = "DNS query rows in replay mode")
{
	run_table(dns_rows, sizeof(dns_rows) / sizeof(dns_rows[0]), true);
}

/* After a ClientHello the flow is ciphertext: a second one on it is not read. */
Test(l7, tls_once_per_flow, .description = "a second ClientHello on the same flow: no event")
{
	static const struct loupe_pkt_tls ch = { .sni = "once.test", .versions = { 0x0304 } };
	const struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 443, .tls = &ch };
	struct loupe_flow_key key;
	struct loupe_flow flow;
	struct loupe_pkt pkt;
	struct fx *fx = fx_open(false);

	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	fx_row(fx, "tls_first", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	fx_eq(fx, "TLS records", fx_count(fx, TLS), 1);
	fx_flow_key(&key, &pkt, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, -1);
	fx_true(fx, fx_flow(fx, &key, &flow), "no flow entry");
	fx_eq(fx, "flow.state", flow.state & ~LOUPE_FLOW_SEQ_KNOWN, LOUPE_FLOW_TLS_SEEN);

	fx_row(fx, "tls_second", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	fx_eq(fx, "records", fx->nrec, 0);
	fx_close(fx);
}

/*
 * Bytes of a record past a string (from the word after its NUL; the bytes up to there come
 * from the same packet) and past alpn_len must not carry what an earlier packet left in the
 * per-CPU scratch: a long Host, then a short one on another flow.
 */
Test(l7, no_stale_bytes, .description = "record bytes past a string are not an earlier packet's")
{
	static const struct loupe_pkt_http long_req = { .path = "/long", .host = host_300 };
	static const struct loupe_pkt_http short_req = { .path = "/s", .host = "s.test" };
	static const struct loupe_pkt_tls long_alpn = {
		.sni = "a.test",
		.alpn = { "abcdefghijklmnopqrstuvwxyz", "0123456789012345678901234567" }
	};
	static const struct loupe_pkt_tls short_alpn = { .sni = "b.test", .alpn = { "h2" } };
	struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 80 };
	struct loupe_pkt pkt;
	const struct fx_record *r;
	struct fx *fx = fx_open(false);
	size_t i;

	fill_long_values();
	spec.sport = 1001;
	spec.http = &long_req;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	fx_row(fx, "stale_long_host", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	spec.sport = 1002;
	spec.http = &short_req;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	fx_row(fx, "stale_short_host", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	/* the HTTP record ends at the Host value's NUL: nothing of the long one is sent */
	r = fx_find(fx, HTTP);
	if (r) {
		fx_eq(fx, "short HTTP record size", r->size,
		      offsetof(struct loupe_event_http, strings) + strlen("/s") + 1 +
			      strlen("s.test") + 1);
		fx_streq(fx, "host", r->http.strings + strlen("/s") + 1, LOUPE_HTTP_HOST_MAX,
			 "s.test");
	} else {
		fx_fail(fx, "no HTTP record");
	}

	spec.http = NULL;
	spec.dport = 443;
	spec.sport = 1003;
	spec.tls = &long_alpn;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	fx_row(fx, "stale_long_alpn", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	spec.sport = 1004;
	spec.tls = &short_alpn;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);
	fx_row(fx, "stale_short_alpn", pkt.buf, pkt.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &pkt, 0);
	r = fx_find(fx, TLS);
	if (r) {
		for (i = (r->tls.alpn_len + 8) & ~7ul; i < sizeof(r->tls.alpn); i++)
			if (r->tls.alpn[i]) {
				fx_fail(fx,
					"alpn[%zu] = 0x%02x after alpn_len %u: an earlier packet's "
					"byte",
					i, r->tls.alpn[i], r->tls.alpn_len);
				break;
			}
	} else {
		fx_fail(fx, "no TLS record");
	}
	fx_close(fx);
}

/* A ClientHello in two segments: the event comes with the second, whole, flagged. */
Test(l7, tls_two_segments,
     .description = "a ClientHello split after 110 bytes is reassembled, the peer's data apart")
{
	static const struct loupe_pkt_tls ch = { .sni = "split.example.test",
						 .alpn = { "h2" },
						 .versions = { 0x0304, 0x0303 },
						 .key_share = 32 };
	static uint8_t hello[2048];
	struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 443, .sport = 2001 };
	struct loupe_pkt first, second;
	const struct fx_record *r;
	struct fx *fx = fx_open(false);
	int n = loupe_pkt_tls_client_hello(&ch, hello, sizeof(hello));

	cr_assert_gt(n, 110);
	spec.payload = (const char *)hello;
	spec.payload_len = 110;
	cr_assert_eq(loupe_pkt_build(&spec, &first), 0);
	spec.payload = (const char *)hello + 110;
	spec.payload_len = n - 110;
	spec.tcp.seq = 1000 + 110;
	cr_assert_eq(loupe_pkt_build(&spec, &second), 0);

	/* the server's side, sequence numbers of its own, between the two: not part of it */
	struct loupe_pkt_spec peer_spec = spec;
	struct loupe_pkt peer;

	peer_spec.reply = true;
	peer_spec.payload = "\x17\x03\x03\x00\x01x";
	peer_spec.payload_len = 6;
	peer_spec.tcp.seq = 1000 + 4096; /* ahead of the client's next byte: would read as a gap */
	cr_assert_eq(loupe_pkt_build(&peer_spec, &peer), 0);

	fx_row(fx, "tls_split_first", first.buf, first.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &first, 0);
	fx_eq(fx, "TLS records", fx_count(fx, TLS), 0);
	fx_row(fx, "tls_split_peer_data", peer.buf, peer.len);
	fx_run_ok(fx, LOUPE_DIR_POD_INGRESS, &peer, 0);
	fx_eq(fx, "TLS records after the peer's segment", fx_count(fx, TLS), 0);
	fx_row(fx, "tls_split_second", second.buf, second.len);
	fx_run_ok(fx, LOUPE_DIR_POD_EGRESS, &second, 0);
	fx_check_decode(fx);
	fx_eq(fx, "TLS records", fx_count(fx, TLS), 1);
	r = fx_find(fx, TLS);
	if (r) {
		const struct l7_want want = { TLS,
					      LOUPE_L7F_TLS_REASSEMBLED,
					      .sni = "split.example.test",
					      .alpn = "\x02h2",
					      .legacy_version = 0x0303,
					      .max_version = 0x0304 };

		fx_check_hdr(fx, &r->hdr, &second, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, -1);
		check_tls(fx, r, &want);
	}
	fx_close(fx);
}
