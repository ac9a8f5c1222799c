/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel <-> user space contract of loupe's datapath: map names, map keys and values,
 * event records, counters and parse-error reasons. Included by the BPF programs and by user
 * space (agent, loupectl, tests, bench). Only fixed-size types; no pointers. Not for
 * BPF-only helpers (bpf/lib/) or user-space API (agent/src/).
 *
 * Numbers in the enums below are stable: they are mirrored in proto/loupe/v1/event.proto and
 * in metrics, so entries are only ever added, never renumbered.
 */
#ifndef LOUPE_DATAPATH_H
#define LOUPE_DATAPATH_H

#include <linux/types.h>

/* Names of the pinned maps and programs (bpffs names, skeleton names). */
#define LOUPE_MAP_FLOWS4       "loupe_flows4"
#define LOUPE_MAP_FLOWS6       "loupe_flows6"
#define LOUPE_MAP_EVENTS       "loupe_events"
#define LOUPE_MAP_COUNTERS     "loupe_counters"
#define LOUPE_MAP_TLS_PENDING  "loupe_tls_pending"
#define LOUPE_PROG_POD_EGRESS  "loupe_pod_egress"
#define LOUPE_PROG_POD_INGRESS "loupe_pod_ingress"

#define LOUPE_FLOWS_DEFAULT_MAX	  65536
#define LOUPE_EVENTS_DEFAULT_SIZE (4u << 20)

/*
 * Limits of what the datapath keeps from L7. A longer value is cut at the limit and the
 * event says so (LOUPE_L7F_*_TRUNCATED). The HTTP Host header is searched for in the first
 * LOUPE_HTTP_SCAN_MAX bytes of the segment that carries the request line. A ClientHello
 * spread over several segments is reassembled up to LOUPE_L7_BUF_MAX bytes.
 */
#define LOUPE_HTTP_METHOD_MAX 8	  /* "OPTIONS" + NUL */
#define LOUPE_HTTP_PATH_MAX   256 /* kept: up to 255 bytes of the request target */
#define LOUPE_HTTP_HOST_MAX   256
#define LOUPE_HTTP_SCAN_MAX   1024 /* power of two */
#define LOUPE_L7_BUF_MAX      2048 /* power of two: payload bytes parsed from one buffer */
#define LOUPE_TLS_PENDING_MAX 1024 /* ClientHellos being reassembled at once */
#define LOUPE_TLS_SNI_MAX     256
#define LOUPE_TLS_ALPN_MAX    64  /* the raw ALPN protocol list, wire format: 63 bytes kept */
#define LOUPE_DNS_NAME_MAX    256 /* dotted presentation, at most 253 characters + NUL */

/* Direction from the pod's point of view; index into the per-direction arrays. */
enum loupe_direction {
	LOUPE_DIR_POD_EGRESS = 0,  /* pod -> world: clsact ingress of the host-side veth */
	LOUPE_DIR_POD_INGRESS = 1, /* world -> pod: clsact egress of the host-side veth */
	LOUPE_DIR_MAX = 2,
};

/* Mirrored by loupe.v1.EventKind (same numbers). */
enum loupe_event_kind {
	LOUPE_EV_UNSPECIFIED = 0,
	LOUPE_EV_FLOW_START = 1,
	LOUPE_EV_FLOW_END = 2,
	LOUPE_EV_HTTP_REQUEST = 3,
	LOUPE_EV_TLS_CLIENT_HELLO = 4,
	LOUPE_EV_DNS_QUERY = 5,
	LOUPE_EV_POLICY_VERDICT = 6,
	LOUPE_EV_REWRITE = 7,
	LOUPE_EV_RATE_LIMITED = 8,
	LOUPE_EV_LOST = 9,
	LOUPE_EV_AGENT = 10,
	LOUPE_EV_KIND_MAX = 11,
};

/*
 * Why a packet could not be parsed as far as its headers claim. Counted per reason; the
 * packet itself is never changed or dropped for it.
 */
enum loupe_parse_error {
	LOUPE_PERR_NONE = 0,
	LOUPE_PERR_ETH_TRUNCATED = 1,
	LOUPE_PERR_VLAN_TRUNCATED = 2,
	LOUPE_PERR_VLAN_TOO_DEEP = 3,
	LOUPE_PERR_IPV4_TRUNCATED = 4,
	LOUPE_PERR_IPV4_BAD_HEADER = 5, /* version, IHL or total length */
	LOUPE_PERR_IPV6_TRUNCATED = 6,
	LOUPE_PERR_IPV6_EXT_TRUNCATED = 7,
	LOUPE_PERR_IPV6_EXT_TOO_MANY = 8,
	LOUPE_PERR_L4_TRUNCATED = 9,
	LOUPE_PERR_TCP_BAD_HEADER = 10, /* data offset */
	LOUPE_PERR_HTTP_MALFORMED = 11,
	LOUPE_PERR_TLS_MALFORMED = 12,
	LOUPE_PERR_DNS_MALFORMED = 13,
	LOUPE_PERR_MAX = 14,
};

/* loupe_event.flags */
enum loupe_event_flags {
	LOUPE_EVF_IPV6 = 1 << 0,
	LOUPE_EVF_VLAN = 1 << 1,	  /* vlan_id is valid (a VID of 0 is a priority tag) */
	LOUPE_EVF_VLAN_INNER = 1 << 2,	  /* inner_vlan_id is valid */
	LOUPE_EVF_VLAN_FROM_SKB = 1 << 3, /* the outer tag came from skb metadata (offloaded) */
	LOUPE_EVF_FRAGMENT = 1 << 4,	  /* first fragment of a fragmented IP packet */
};

/* loupe_l7.flags */
enum loupe_l7_flags {
	LOUPE_L7F_PATH_TRUNCATED = 1 << 0,
	LOUPE_L7F_HOST_TRUNCATED = 1 << 1,
	LOUPE_L7F_HOST_MISSING = 1 << 2, /* no Host header in the scanned bytes */
	LOUPE_L7F_SNI_TRUNCATED = 1 << 3,
	LOUPE_L7F_ALPN_TRUNCATED = 1 << 4,
	LOUPE_L7F_DNS_NAME_INVALID = 1 << 5, /* looping pointer, bad label, too long */
	LOUPE_L7F_DNS_OVER_TCP = 1 << 6,
	LOUPE_L7F_TLS_REASSEMBLED = 1 << 7, /* the ClientHello spanned several segments */
};

/*
 * A flow as seen from one pod: both directions of a connection share one entry. IPv4 and
 * IPv6 flows live in separate maps, as in Cilium's CT maps: hashing a 16-byte key instead of
 * a 40-byte one is a fifth of the cost of an established packet. Ports in network byte
 * order; for ICMP echo both ports hold the echo identifier, for other ICMP messages zero.
 */
struct loupe_flow_key4 {
	__be32 pod_addr;
	__be32 peer_addr;
	__be16 pod_port;
	__be16 peer_port;
	__u8 protocol; /* IPPROTO_* */
	__u8 pad[3];
};

/* The IPv6 flow key; user space also uses it for IPv4 flows, addresses IPv4-mapped. */
struct loupe_flow_key {
	__u8 pod_addr[16];
	__u8 peer_addr[16];
	__be16 pod_port;
	__be16 peer_port;
	__u8 protocol; /* IPPROTO_* */
	__u8 pad[3];
};

/* loupe_flow.state */
enum loupe_flow_state {
	LOUPE_FLOW_TLS_SEEN = 1 << 0, /* a ClientHello was reported: the rest is ciphertext */
	LOUPE_FLOW_DNS_SEEN = 1 << 1,
	LOUPE_FLOW_TLS_PENDING = 1 << 2, /* a ClientHello is being reassembled */
};

/*
 * Counters are updated without atomics: a flow's packets are handled on one CPU at a time
 * in practice (RSS/RPS steer by flow), and an occasional lost increment under a race is
 * preferred to an atomic per packet on the hot path.
 */
struct loupe_flow {
	__u64 first_seen_ns; /* CLOCK_MONOTONIC (coarse where available) */
	__u64 last_seen_ns;
	__u64 packets[LOUPE_DIR_MAX];
	__u64 bytes[LOUPE_DIR_MAX];
	__u32 ifindex;		       /* interface the flow was first seen on */
	__u8 tcp_flags[LOUPE_DIR_MAX]; /* OR of every TCP flag byte seen, per direction */
	__u8 state;		       /* enum loupe_flow_state */
	__u8 ipv6;
	__u16 vlan_id; /* outer VID when first seen; LOUPE_VLAN_NONE when untagged */
	__u8 pad[6];
};

#define LOUPE_VLAN_NONE 0xffff

/*
 * Every event record begins with this header. Records with strings at their end (HTTP, TLS,
 * DNS) are cut after the last string's NUL: a record is between offsetof(strings) + 1 (+ 2
 * for HTTP's two) and sizeof(struct) bytes long, so short names and paths cost short copies.
 */
struct loupe_event_hdr {
	__u64 ts_ns; /* CLOCK_MONOTONIC, or the capture's time in replay */
	__u32 ifindex;
	__u16 kind;	/* enum loupe_event_kind */
	__u8 direction; /* enum loupe_direction */
	__u8 protocol;	/* IPPROTO_* (0 when not IP) */
	__u16 flags;	/* enum loupe_event_flags */
	__u16 vlan_id;	/* outermost tag's VID, 802.1Q or 802.1ad */
	__u16 inner_vlan_id;
	__u16 pad;
	__u8 saddr[16]; /* IPv4-mapped for IPv4 */
	__u8 daddr[16];
	__u16 sport; /* host byte order */
	__u16 dport;
	__u32 pad2;
};

struct loupe_event_flow {
	struct loupe_event_hdr hdr;
	__u8 tcp_flags; /* of the packet that opened the flow */
	__u8 pad[7];
};

struct loupe_event_http {
	struct loupe_event_hdr hdr;
	__u16 flags; /* enum loupe_l7_flags */
	__u16 path_len;
	__u16 host_len;
	__u16 pad;
	char method[LOUPE_HTTP_METHOD_MAX];
	/*
	 * The request target (path_len bytes, NUL), then the Host value as sent, port included
	 * (host_len bytes, NUL): packed, so a typical record is a fifth of its largest size.
	 * The record ends after the second NUL.
	 */
	char strings[LOUPE_HTTP_PATH_MAX + LOUPE_HTTP_HOST_MAX];
};

struct loupe_event_tls {
	struct loupe_event_hdr hdr;
	__u16 flags;	      /* enum loupe_l7_flags */
	__u16 legacy_version; /* ClientHello.legacy_version, e.g. 0x0303 */
	__u16 max_version;    /* highest non-GREASE supported_versions entry, 0 if absent */
	__u16 sni_len;
	__u16 alpn_len; /* bytes used in alpn[] */
	__u16 pad[3];
	__u8 alpn[LOUPE_TLS_ALPN_MAX]; /* ProtocolNameList without its length (len, bytes, ...),
					* at most LOUPE_TLS_ALPN_MAX - 1 bytes */
	char sni[LOUPE_TLS_SNI_MAX];   /* NUL-terminated; last: the record ends after it */
};

struct loupe_event_dns {
	struct loupe_event_hdr hdr;
	__u16 flags; /* enum loupe_l7_flags */
	__u16 qtype;
	__u16 qclass;
	__u16 id;
	__u16 qname_len;
	__u16 pad[3];
	char qname[LOUPE_DNS_NAME_MAX]; /* dotted, no trailing dot; "" for the root; last */
};

/* Per-CPU counters: one array slot holding all of them. */
struct loupe_counters {
	__u64 packets[LOUPE_DIR_MAX];
	__u64 bytes[LOUPE_DIR_MAX];
	__u64 non_ip[LOUPE_DIR_MAX];
	__u64 fragments[LOUPE_DIR_MAX]; /* non-first fragments: no L4 header to read */
	__u64 flows_created;
	__u64 flow_create_failed;
	__u64 parse_errors[LOUPE_PERR_MAX];
	__u64 events[LOUPE_EV_KIND_MAX];      /* submitted to the ring buffer */
	__u64 events_lost[LOUPE_EV_KIND_MAX]; /* ring buffer full: reserve/output failed */
};

#endif /* LOUPE_DATAPATH_H */
