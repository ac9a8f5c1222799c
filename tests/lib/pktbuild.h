/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small packet builder for tests and benchmarks: one spec struct (designated initializers,
 * zero means "the usual") in, one Ethernet frame out, with lengths and checksums right unless
 * the spec asks for a lie (LOUPE_PKT_RAW). Builds L7 payloads too: HTTP requests, TLS
 * ClientHellos and DNS queries, including the malformed forms the parsers must survive.
 * Addresses are limited to the test ranges 198.18.0.0/15 and fd00:198:18::/48.
 * Not for parsing packets, nor for sending them anywhere.
 */
#ifndef LOUPE_PKTBUILD_H
#define LOUPE_PKTBUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LOUPE_PKT_MAX	    9216
#define LOUPE_PKT_VLANS_MAX 6 /* more tags than any parser should follow */

/* Default endpoints: the pod sends (egress), the peer answers (.reply = true swaps them). */
#define LOUPE_PKT_POD4	"198.18.0.10"
#define LOUPE_PKT_PEER4 "198.19.0.20"
#define LOUPE_PKT_POD6	"fd00:198:18::10"
#define LOUPE_PKT_PEER6 "fd00:198:18:1::20"
#define LOUPE_PKT_SPORT 40000

/* TCP flag bits, as in the header's flags byte. */
#define LOUPE_TCP_FIN 0x01
#define LOUPE_TCP_SYN 0x02
#define LOUPE_TCP_RST 0x04
#define LOUPE_TCP_PSH 0x08
#define LOUPE_TCP_ACK 0x10
#define LOUPE_TCP_URG 0x20

/* A header field the builder would compute, given a value of the test's own instead. */
struct loupe_pkt_raw {
	bool set;
	uint16_t v;
};
#define LOUPE_PKT_RAW(x)                                                                           \
	{                                                                                          \
		.set = true, .v = (x)                                                              \
	}

struct loupe_pkt_vlan {
	uint16_t tpid; /* 0: 0x8100 */
	uint16_t vid;
	uint8_t pcp;
};

/* IPv6 extension headers, in the order given; the list ends at the first NONE. */
enum loupe_pkt_ext_kind {
	LOUPE_PKT_EXT_NONE = 0,
	LOUPE_PKT_EXT_HOP,     /* hop-by-hop options, PadN */
	LOUPE_PKT_EXT_ROUTING, /* segment routing header, segments left 0, one segment */
	LOUPE_PKT_EXT_DEST,    /* destination options, PadN */
	LOUPE_PKT_EXT_FRAG,    /* fragment header */
};

struct loupe_pkt_ext {
	enum loupe_pkt_ext_kind kind;
	uint8_t len; /* hop/dest: Hdr Ext Len (8 * (len + 1) bytes); routing: extra segments */
	uint16_t frag_off; /* bytes, a multiple of 8 */
	bool more;	   /* M flag */
	uint32_t id;
};

/* An HTTP/1.1 request: request line, then headers, Host among them. */
struct loupe_pkt_http {
	const char *method;    /* NULL: "GET" */
	const char *path;      /* NULL: "/" */
	size_t path_pad;       /* > strlen(path): pad the path with 'a' up to this many bytes */
	const char *host;      /* NULL: no Host header */
	const char *host_line; /* instead of "Host: <host>": the whole line, without CRLF */
	int host_index;	       /* headers before the Host header (0: Host first) */
	size_t host_offset;    /* pad one header so that the Host line starts at >= this offset */
	bool line_only;	       /* the request line and the blank line, no headers at all */
};

/* TLS ClientHello extensions that the builder knows, for choosing their order. */
enum loupe_pkt_tls_ext {
	LOUPE_PKT_TLS_END = 0,
	LOUPE_PKT_TLS_GREASE, /* an empty extension of type 0x0a0a */
	LOUPE_PKT_TLS_SNI,
	LOUPE_PKT_TLS_GROUPS,
	LOUPE_PKT_TLS_ALPN,
	LOUPE_PKT_TLS_VERSIONS,
	LOUPE_PKT_TLS_KEY_SHARE,
	LOUPE_PKT_TLS_PADDING,
};

struct loupe_pkt_tls {
	uint16_t record_version; /* 0: 0x0301 */
	uint16_t legacy_version; /* 0: 0x0303 */
	const char *sni;	 /* NULL: no server_name extension */
	const char *alpn[8];	 /* NULL-terminated; empty: no ALPN extension */
	uint16_t versions[8];	 /* supported_versions, 0-terminated; empty: no extension */
	size_t key_share;	 /* > 0: key_share with one x25519 entry of this many key bytes */
	size_t padding;		 /* > 0: padding extension with this many zero bytes */
	/* Extensions in this order (only the listed ones); empty: GREASE, SNI, groups, ALPN,
	 * versions, key_share, padding, each one only when it has something to say. */
	enum loupe_pkt_tls_ext order[8];
};

/* How the question's name is written. */
enum loupe_pkt_dns_form {
	LOUPE_PKT_DNS_PLAIN = 0, /* labels, then the root label */
	LOUPE_PKT_DNS_POINTER, /* first label, then a pointer to the rest, placed after the question */
	LOUPE_PKT_DNS_LOOP,    /* the labels, then a pointer back to the name's start */
	LOUPE_PKT_DNS_LONG_LABEL, /* the first label's length byte says 64 (and 64 bytes follow) */
};

struct loupe_pkt_dns {
	uint16_t id;
	const char *qname; /* dotted, no trailing dot; "" for the root */
	int labels;	   /* > 0 and qname NULL: this many one-letter labels "a.a.a..." */
	uint16_t qtype;	   /* 0: A */
	uint16_t qclass;   /* 0: IN */
	bool response;	   /* QR=1, with one answer */
	bool tcp;	   /* 2-byte length prefix (DNS over TCP) */
	enum loupe_pkt_dns_form form;
};

struct loupe_pkt_ipv4 {
	uint8_t tos;
	uint8_t ttl; /* 0: 64 */
	uint16_t id;
	bool df, mf;
	uint16_t frag_off; /* bytes, a multiple of 8 */
	uint8_t opts_len;  /* options bytes (NOPs, then EOL), rounded up to 4; at most 40 */
	struct loupe_pkt_raw ihl, tot_len, csum;
};

struct loupe_pkt_ipv6 {
	uint8_t hop_limit; /* 0: 64 */
	uint32_t flow_label;
	struct loupe_pkt_ext ext[8];
	struct loupe_pkt_raw plen;
};

struct loupe_pkt_tcp {
	uint8_t flags;	     /* 0: PSH|ACK when there is a payload, else SYN */
	uint32_t seq;	     /* 0: 1000 */
	uint32_t ack;	     /* 0: 2000 when ACK is set */
	uint16_t window;     /* 0: 64240 */
	const uint8_t *opts; /* raw options, padded with NOPs to a multiple of 4 */
	uint8_t opts_len;
	struct loupe_pkt_raw doff, csum;
};

struct loupe_pkt_icmp {
	uint16_t id, seq;
	bool reply; /* echo reply instead of echo request */
};

struct loupe_pkt_spec {
	/* L2 */
	int vlans;					 /* number of tags used from vlan[] */
	struct loupe_pkt_vlan vlan[LOUPE_PKT_VLANS_MAX]; /* outermost first */
	uint16_t ethertype;				 /* 0: IPv4 or IPv6; other: written as is */
	bool l2_only; /* no IP header: the payload follows the Ethernet/VLAN header */

	/* L3 */
	bool ipv6;
	const char *src, *dst; /* NULL: pod -> peer */
	bool reply;	       /* swap addresses, ports and MACs: the peer answers the pod */
	struct loupe_pkt_ipv4 ip4;
	struct loupe_pkt_ipv6 ip6;

	/*
	 * L4: IPPROTO_TCP, _UDP, _ICMP, _ICMPV6; any other: the payload follows the IP header.
	 * The L4 header is written whatever the fragment offset says: a non-first fragment that
	 * starts like a TCP header is exactly what a parser must not believe.
	 */
	uint8_t proto;
	uint16_t sport; /* 0: LOUPE_PKT_SPORT */
	uint16_t dport;
	struct loupe_pkt_tcp tcp;
	struct loupe_pkt_icmp icmp;
	struct loupe_pkt_raw udp_len;

	/* Payload: bytes, or one L7 builder. */
	const char *payload;
	size_t payload_len; /* 0: strlen(payload) */
	const struct loupe_pkt_http *http;
	const struct loupe_pkt_tls *tls;
	const struct loupe_pkt_dns *dns;
	size_t payload_cut; /* > 0: keep only this many payload bytes; lengths follow the cut */
};

struct loupe_pkt {
	uint8_t buf[LOUPE_PKT_MAX];
	size_t len;
	size_t l3_off; /* offsets into buf; 0 when the layer is absent */
	size_t l4_off;
	size_t payload_off;
	size_t payload_len;
	uint8_t src[16], dst[16]; /* as written; IPv4 addresses IPv4-mapped */
	uint16_t sport, dport;	  /* host byte order, as written */
};

/* Builds @spec into @ret. Returns 0, -EINVAL (bad spec, address outside the test ranges) or
 * -ENOSPC (larger than LOUPE_PKT_MAX). */
int loupe_pkt_build(const struct loupe_pkt_spec *spec, struct loupe_pkt *ret);

/* L7 payload builders: write into @buf, return the length, or -EINVAL / -ENOSPC. */
int loupe_pkt_http_request(const struct loupe_pkt_http *spec, uint8_t *buf, size_t cap);
int loupe_pkt_tls_client_hello(const struct loupe_pkt_tls *spec, uint8_t *buf, size_t cap);
int loupe_pkt_dns_query(const struct loupe_pkt_dns *spec, uint8_t *buf, size_t cap);

/* Parses a test address into its 16-byte form (IPv4-mapped for IPv4). Returns 0 or -EINVAL
 * (not an address, or outside 198.18.0.0/15 and fd00:198:18::/48). */
int loupe_pkt_addr(const char *text, uint8_t ret[16]);

/* The Internet checksum of @len bytes, folded, not inverted; @sum carries a partial sum. */
uint32_t loupe_pkt_csum_add(uint32_t sum, const void *data, size_t len);
uint16_t loupe_pkt_csum_fold(uint32_t sum);

/* Hex dump in the form text2pcap reads ("%06zx  aa bb ..."), @prefix before each line. */
void loupe_pkt_hexdump(FILE *f, const char *prefix, const void *buf, size_t len);

/* Writes frames to a classic pcap file (Ethernet link type). Returns 0 or -errno. */
int loupe_pkt_pcap_write(const char *path, const struct loupe_pkt *const *pkts, size_t n);

#endif
