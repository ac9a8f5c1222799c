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
#define LOUPE_MAP_POL_ACTIVE   "loupe_pol_active"
#define LOUPE_MAP_POL_META     "loupe_pol_meta"
#define LOUPE_MAP_POL_IFACES   "loupe_pol_ifaces"
#define LOUPE_MAP_POL_ADDRS    "loupe_pol_addrs"
#define LOUPE_MAP_POL_PORTS    "loupe_pol_ports"
#define LOUPE_MAP_POL_NAMES    "loupe_pol_names"
#define LOUPE_MAP_POL_PATHS    "loupe_pol_paths"
#define LOUPE_MAP_POL_METHODS  "loupe_pol_methods"
#define LOUPE_MAP_POL_HITS     "loupe_pol_hits"
#define LOUPE_MAP_POL_SYNC     "loupe_pol_sync"
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
	/* HTTP: the request line or the Host line runs past the bytes parsed, and no end of the
	 * header block was seen: a later segment may complete the request */
	LOUPE_L7F_INCOMPLETE = 1 << 8,
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
	LOUPE_FLOW_TLS_PENDING = 1 << 2,  /* a ClientHello is being reassembled */
	LOUPE_FLOW_L7_HELD = 1 << 3,	  /* policy: a request is being reassembled for a verdict */
	LOUPE_FLOW_SEQ_KNOWN = 1 << 4,	  /* client_seq is valid: the flow began with a SYN */
	LOUPE_FLOW_RATE_LIMITED = 1 << 5, /* its pod had a rate limit when it began: metered */
};

/* loupe_flow.verdict: what the policy in force decided for the flow. */
enum loupe_flow_verdict {
	LOUPE_VERDICT_NONE = 0,	   /* no policy when the flow began, or no rule and no default */
	LOUPE_VERDICT_PENDING = 1, /* a rule that needs L7 may decide: judged on the request */
	LOUPE_VERDICT_ALLOW = 2,
	LOUPE_VERDICT_DENY = 3, /* every packet of the flow is dropped, both directions */
	LOUPE_VERDICT_AUDIT = 4,
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
	__u16 vlan_id;	   /* outer VID when first seen; LOUPE_VLAN_NONE when untagged */
	__u8 verdict;	   /* enum loupe_flow_verdict */
	__u8 origin;	   /* enum loupe_direction of the packet that opened the flow */
	__u16 verdict_bit; /* the deciding rule (struct loupe_policy_meta) when decided */
	__u16 rewrite;	   /* the rewrite entry + 1 (loupe_pol_rewrites); 0: none */
	/* TCP: the sequence number of the client's first payload byte, from its SYN (state
	 * LOUPE_FLOW_SEQ_KNOWN): a request judged for a policy must begin there */
	__u32 client_seq;
	__u8 rewrite_reported; /* bit per direction: its REWRITE event was sent */
	__u8 rewrite_slot;     /* the slot the rewrite entry was read from */
	__u8 pad2[2];
	__u32 rewrite_generation; /* the set the rewrite entry came from, for its name */
	/* the rewrite's actions as when the flow began: a policy update does not change them */
	__u8 rw_actions; /* enum loupe_rewrite_actions */
	__u8 rw_dscp;
	__u16 rw_vlan_id;
	__u8 rw_addr[16]; /* LOUPE_RW_MAP: the real destination (IPv4-mapped for IPv4) */
	__u16 rw_port;	  /* LOUPE_RW_MAP: the real destination port, host order; 0: kept */
	__u16 pad3;
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
	__u64 policy_dropped[LOUPE_DIR_MAX];  /* packets dropped by a deny verdict */
	__u64 policy_bound_exceeded;	      /* requests denied: no verdict within the bound */
	__u64 policy_out_of_order;	      /* segments dropped while a request was held */
	__u64 rewritten[LOUPE_DIR_MAX];	      /* packets changed by a rewrite */
	__u64 rewrite_failed;		   /* a rewrite that could not be applied: passed as is */
	__u64 rate_limited[LOUPE_DIR_MAX]; /* packets dropped by a pod's rate limit */
};

/*
 * Policies in the datapath (docs/policy.md for their meaning, docs/datapath.md for this
 * layout). The compiler numbers every rule of the set in evaluation order (priority, name,
 * rule order) and appends one pseudo-rule per policy with a defaultAction, after all rules:
 * bit i of a struct loupe_policy_bits stands for rule i. Each map answers one question about a
 * flow with the set of rules that fit; the flow's candidates are the AND of the answers, and
 * the lowest set bit decides (first match wins).
 *
 * Two sets live side by side in slots 0 and 1 (a slot field leads every key): user space
 * writes the slot not in force, switches loupe_pol_active to it with one 4-byte store, waits
 * for programs in flight (an update of loupe_pol_sync, a map-in-map, returns after an RCU
 * grace period), then clears the old slot. A packet reads the slot once: it never sees half
 * of an update.
 *
 * LPM keys put the slot and a kind before the data, so one trie holds every kind; an entry
 * whose prefix ends after the kind matches everything of that kind. A trie's value is the OR
 * of the rules of every entry that covers it (the compiler folds shorter prefixes into longer
 * ones), so the longest match alone answers.
 */
/* rules and defaults of a set, all policies together (10 000 rules + 1 024 defaults fit) */
#define LOUPE_POLICY_BITS	  16384
#define LOUPE_POLICY_WORDS	  (LOUPE_POLICY_BITS / 64)
#define LOUPE_POLICY_SLOTS	  2
#define LOUPE_POLICY_METHODS	  9	/* GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH */
#define LOUPE_POLICY_NAME_KEY_MAX 252	/* bytes of a reversed name in a key, its NUL included */
#define LOUPE_POLICY_PATH_KEY_MAX 255	/* bytes of an HTTP path prefix in a key */
#define LOUPE_POL_ADDRS_MAX	  65536 /* entries of loupe_pol_addrs, both slots */
#define LOUPE_POL_PORTS_MAX	  65536
#define LOUPE_POL_NAMES_MAX	  65536
#define LOUPE_POL_PATHS_MAX	  16384
#define LOUPE_POL_IFACES_MAX	  8192
#define LOUPE_POLICY_BIT_NONE	  0xffff /* loupe_flow.verdict_bit, events: no rule */
/* Bytes of a request held for a verdict: a longer header block or ClientHello is denied. */
#define LOUPE_POLICY_HOLD_MAX LOUPE_L7_BUF_MAX

struct loupe_policy_bits {
	__u64 w[LOUPE_POLICY_WORDS];
};

/* loupe_pol_active: array of one __u32 at key 0, the slot in force (0 or 1). */

/* loupe_pol_meta: array indexed by slot. */
/* loupe_policy_meta.flags */
enum loupe_policy_meta_flags {
	LOUPE_POL_HAS_MAPPINGS = 1 << 0,    /* a rewrite maps addresses: replies are looked up */
	LOUPE_POL_HAS_RATE_LIMITS = 1 << 1, /* loupe_rate has entries: packets are metered */
};

struct loupe_policy_meta {
	__u32 generation; /* number of the set, increasing; events carry it */
	/* bits in use: rules, then defaults (n_rule_bits of them), then rewrites (from
	 * rewrite_base, n_rewrites); 0: no policy, nothing is judged */
	__u32 n_bits;
	__u32 n_rule_bits;
	__u32 rewrite_base;
	__u32 n_rewrites;
	__u32 flags; /* enum loupe_policy_meta_flags */
	/* rules of the policies that select every interface (no podSelector.interfaces): the
	 * answer of loupe_pol_ifaces for an interface it has no entry for */
	struct loupe_policy_bits any_iface;
	/* rules decided on the first packet: no http, tls or dns; and the defaults */
	struct loupe_policy_bits l4_only;
	__u8 action[LOUPE_POLICY_BITS]; /* enum loupe_flow_verdict: ALLOW, DENY or AUDIT */
};

/* loupe_pol_ifaces: hash. The rules of the policies selecting the interface (any_iface incl.). */
struct loupe_policy_iface_key {
	__u32 slot;
	__u32 ifindex;
};

/* loupe_pol_addrs: LPM trie. Pod addresses (selectors' cidrs) and peer addresses (rules'). */
enum loupe_policy_addr_kind {
	LOUPE_POL_ADDR_POD4 = 1, /* value: rules of the policies selecting the pod's address */
	LOUPE_POL_ADDR_POD6 = 2,
	LOUPE_POL_ADDR_PEER4 = 3, /* value: rules whose match.cidrs hold the peer's address */
	LOUPE_POL_ADDR_PEER6 = 4,
};

struct loupe_policy_addr_key {
	__u32 prefixlen; /* 16 + the address prefix's length */
	__u8 slot;
	__u8 kind;     /* enum loupe_policy_addr_kind */
	__u8 addr[16]; /* IPv4: the first 4 bytes */
};

/*
 * loupe_pol_ports: LPM trie on the flow's direction (who opened it), protocol and the
 * server's port (the peer's in egress, the pod's in ingress), port big-endian. A port range
 * is a few prefixes. Prefix 16: rules of the direction without ports; 24: a protocol, any
 * port (ICMP). Defaults are in both directions at prefix 16.
 */
struct loupe_policy_port_key {
	__u32 prefixlen;
	__u8 slot;
	__u8 direction; /* enum loupe_direction */
	__u8 protocol;	/* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP or IPPROTO_ICMPV6 */
	__u8 port[2];	/* big-endian */
};

/*
 * loupe_pol_names: LPM trie on names, reversed ("moc.ianepo.ipa") so that a "*.suffix" is
 * a prefix: the reversed suffix and a dot. An exact name ends with a NUL. Names are lower
 * case without a trailing dot; a reversed name longer than the key holds is cut (its last
 * labels kept). Prefix 32 of a kind: the rules of that L7 protocol without names.
 */
enum loupe_policy_name_kind {
	LOUPE_POL_NAME_HOST = 1,      /* http.hosts without a port: any port of the Host */
	LOUPE_POL_NAME_HOST_PORT = 2, /* http.hosts "name:port": port set; no prefix-32 entry */
	LOUPE_POL_NAME_SNI = 3,
	LOUPE_POL_NAME_DNS = 4,
};

struct loupe_policy_name_key {
	__u32 prefixlen; /* 32 + 8 * bytes of name */
	__u8 slot;
	__u8 kind;    /* enum loupe_policy_name_kind */
	__u8 port[2]; /* LOUPE_POL_NAME_HOST_PORT: big-endian; otherwise 0 */
	__u8 name[LOUPE_POLICY_NAME_KEY_MAX];
};

/* loupe_pol_paths: LPM trie on HTTP path prefixes. Prefix 8: http rules without paths. */
struct loupe_policy_path_key {
	__u32 prefixlen; /* 8 + 8 * bytes of path */
	__u8 slot;
	__u8 path[LOUPE_POLICY_PATH_KEY_MAX];
};

/*
 * loupe_pol_methods: array indexed by slot * LOUPE_POLICY_METHODS + method (the order
 * above): the http rules that allow the method (all methods when a rule lists none).
 */

/* loupe_pol_hits: per-CPU array of __u64 indexed by slot * LOUPE_POLICY_BITS + bit: flows
 * decided by the rule. User space zeroes a slot before it fills it. */

/* loupe_pol_sync: array of maps (one slot, inner: array of one __u32), only updated. */

/*
 * Rewrites (spec.rewrites, docs/rewrite.md): entries in set order, each a bit after the rules
 * (meta.rewrite_base + i), matched by the same maps; the first that fits a flow on its first
 * packet is kept in the flow (loupe_flow.rewrite) and applied to every packet of the flow.
 * loupe_pol_rewrites: array indexed by slot * LOUPE_REWRITES_MAX + i.
 */
#define LOUPE_MAP_POL_REWRITES "loupe_pol_rewrites"
#define LOUPE_MAP_NAT_REVERSE  "loupe_nat_reverse"
#define LOUPE_MAP_RATE	       "loupe_rate"
#define LOUPE_REWRITES_MAX     256 /* rewrite entries in a set */
#define LOUPE_MASK_HEADERS_MAX 8   /* http.maskHeaders names in one entry */
#define LOUPE_NAT_REVERSE_MAX  65536
#define LOUPE_RATE_MAX	       8192   /* pod interfaces with a rate limit, both directions */
#define LOUPE_REWRITE_NONE     0xffff /* loupe_flow.rewrite: none */

enum loupe_rewrite_actions {
	LOUPE_RW_MAP = 1 << 0,	     /* destination mapped to map_addr (and map_port) */
	LOUPE_RW_DSCP = 1 << 1,	     /* DSCP set to dscp */
	LOUPE_RW_VLAN_PUSH = 1 << 2, /* an 802.1Q tag with vlan_id pushed */
	LOUPE_RW_VLAN_POP = 1 << 3,  /* the outer tag removed */
	LOUPE_RW_MASK = 1 << 4,	     /* HTTP request header values masked */
};

struct loupe_rewrite {
	__u32 actions;	   /* enum loupe_rewrite_actions */
	__u8 map_addr[16]; /* IPv4 in the first 4 bytes; the family is the flow's */
	__u8 map_ipv6;	/* map_addr is an IPv6 address (a flow of the other family is not mapped) */
	__u8 dscp;	/* 0..63 */
	__u16 map_port; /* host order; 0: the port is kept */
	__u16 vlan_id;	/* 1..4094 */
	__u16 n_mask;	/* mask_hash entries used */
	/* FNV-1a 64 of each lower-case header name to mask (policy_compile.c and
	 * bpf/lib/rewrite.h compute it the same way); its length beside it */
	__u64 mask_hash[LOUPE_MASK_HEADERS_MAX];
	__u8 mask_len[LOUPE_MASK_HEADERS_MAX];
};

/*
 * loupe_nat_reverse: LRU hash. For a mapped flow, the key of its replies' flow as they arrive
 * (pod, the real peer address and port: the mapping target) -> the address and port the pod
 * used (the virtual one), so replies are rewritten back before they are tracked.
 */
struct loupe_nat_reverse {
	__u8 virt_addr[16]; /* IPv4-mapped for IPv4 */
	__u16 virt_port;    /* host order */
	__u16 pad[3];
};

/*
 * loupe_rate: hash keyed by pod interface and direction; user space writes the limit (the
 * pod's first policy with spec.rateLimits for that direction), the datapath keeps the bucket.
 */
struct loupe_rate_key {
	__u32 ifindex;
	__u32 direction; /* enum loupe_direction */
};

struct loupe_rate {
#ifdef __bpf__
	struct bpf_spin_lock lock;
#else
	__u32 lock; /* struct bpf_spin_lock (linux/bpf.h clashes with pcap's bpf.h) */
#endif
	__u32 pad;
	__u64 bytes_per_sec;
	__u64 burst;	     /* bytes */
	__u64 tokens;	     /* bytes, at most burst */
	__u64 last_ns;	     /* when tokens were last refilled */
	__u64 dropped;	     /* packets dropped, for the sampled RATE_LIMITED events */
	__u64 last_event_ns; /* RATE_LIMITED events: at most one per LOUPE_RATE_EVENT_NS */
	__u32 generation;    /* the set that wrote the limit */
	__u32 pad2;
};
#define LOUPE_RATE_EVENT_NS 100000000ULL /* 100 ms */

/* What a REWRITE event reports (enum loupe_rewrite_actions), once per flow and direction. */
struct loupe_event_rewrite {
	struct loupe_event_hdr hdr; /* the packet as it came */
	__u32 generation;
	__u16 rewrite; /* the entry: meta.rewrite_base + rewrite is its bit */
	__u16 pad;
	__u32 actions;	   /* what was done to this packet */
	__u8 new_addr[16]; /* MAP: the packet's destination (source on a reply) after */
	__u16 new_port;
	__u8 dscp;	   /* DSCP: the value set */
	__u8 n_masked;	   /* MASK: headers masked */
	__u16 vlan_id;	   /* VLAN_PUSH: the tag pushed; VLAN_POP: the tag removed */
	__u16 masked_bits; /* MASK: bit i set when mask_hash[i] was masked */
};

/* A pod's packets dropped by its rate limit, sampled: counts since the last event. */
struct loupe_event_rate_limited {
	struct loupe_event_hdr hdr; /* the packet that triggered the event */
	__u64 dropped; /* packets dropped since the last event of this pod and direction */
	__u64 bytes_per_sec;
	__u64 burst;
};

/* Why a POLICY_VERDICT was sent. */
enum loupe_verdict_reason {
	LOUPE_VERDICT_RULE = 1,		  /* a rule, or a policy's default (by its bit) */
	LOUPE_VERDICT_BOUND_EXCEEDED = 2, /* no verdict within LOUPE_POLICY_HOLD_MAX: denied */
};

/* The name a verdict was reached on (subject). */
enum loupe_verdict_subject {
	LOUPE_VERDICT_SUBJECT_NONE = 0,
	LOUPE_VERDICT_SUBJECT_HTTP_HOST = 1,
	LOUPE_VERDICT_SUBJECT_TLS_SNI = 2,
	LOUPE_VERDICT_SUBJECT_DNS_NAME = 3,
};

struct loupe_event_verdict {
	struct loupe_event_hdr hdr;
	__u32 generation;
	__u16 bit;	   /* the deciding rule; LOUPE_POLICY_BIT_NONE for BOUND_EXCEEDED */
	__u8 action;	   /* enum loupe_flow_verdict: ALLOW, DENY or AUDIT */
	__u8 reason;	   /* enum loupe_verdict_reason */
	__u8 subject_kind; /* enum loupe_verdict_subject */
	__u8 origin;	   /* enum loupe_direction: who opened the flow */
	__u16 subject_len;
	char subject[LOUPE_HTTP_HOST_MAX]; /* NUL-terminated; last: the record ends after it */
};

#endif /* LOUPE_DATAPATH_H */
