/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the TC programs, in one place: user space finds them by the names in
 * loupe/datapath.h. Not for the logic that uses them.
 */
#ifndef LOUPE_BPF_MAPS_H
#define LOUPE_BPF_MAPS_H

#include "lib/common.h"
#include "lib/parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOUPE_FLOWS_DEFAULT_MAX);
	__type(key, struct loupe_flow_key4);
	__type(value, struct loupe_flow);
} loupe_flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOUPE_FLOWS_DEFAULT_MAX);
	__type(key, struct loupe_flow_key);
	__type(value, struct loupe_flow);
} loupe_flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, LOUPE_EVENTS_DEFAULT_SIZE);
} loupe_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct loupe_counters);
} loupe_counters SEC(".maps");

/*
 * Per-CPU working memory for L7 parsing: the head of the payload, the event being built,
 * and the parser's cursors. Cursors live here rather than on the stack on purpose: values
 * read back from a map are unknown to the verifier, so the states of a scanning loop
 * converge instead of multiplying with every possible offset.
 */
struct loupe_l7_cursor {
	__u32 pos;
	__u32 out;
	__u32 remaining;
	__u32 jumps;
	__u32 start;
	__u32 end;
	/* TLS: where the extensions of interest are (0: absent) */
	__u32 sni_off;
	__u32 sni_len;
	__u32 alpn_off;
	__u32 alpn_len;
	__u32 versions_off;
	__u32 pad;
};

/*
 * Payload bytes an L7 parser reads from: the head of one segment (scratch), or a message
 * reassembled from several (loupe_tls_pending). Reads at [len, total) go to the packet.
 */
struct loupe_l7_buf {
	__u32 len;			  /* bytes held in data */
	__u32 total;			  /* bytes of payload the parser may read */
	__u8 data[LOUPE_L7_BUF_MAX + 16]; /* slack: word loads may read past len */
};

/* A ClientHello whose record did not fit its first segment. */
struct loupe_tls_pending {
	__u32 next_seq; /* TCP sequence number of the next byte expected */
	__u32 need;	/* bytes of the record, header included (cut to LOUPE_L7_BUF_MAX) */
	__u32 dir;	/* the client's direction: the peer's segments are not part of it */
	__u32 pad;
	struct loupe_l7_buf buf;
	__u8 slack[LOUPE_L7_BUF_MAX]; /* lets an append at any masked offset stay in bounds */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOUPE_TLS_PENDING_MAX);
	__type(key, struct loupe_flow_key);
	__type(value, struct loupe_tls_pending);
} loupe_tls_pending SEC(".maps");

/* A flow key of either table. */
union loupe_any_flow_key {
	struct loupe_flow_key4 v4;
	struct loupe_flow_key v6;
} __attribute__((aligned(8)));

/* Policy maps: the layout is in loupe/datapath.h ("Policies in the datapath"). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} loupe_pol_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOUPE_POLICY_SLOTS);
	__type(key, __u32);
	__type(value, struct loupe_policy_meta);
} loupe_pol_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LOUPE_POL_IFACES_MAX);
	__type(key, struct loupe_policy_iface_key);
	__type(value, struct loupe_policy_bits);
} loupe_pol_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LOUPE_POL_ADDRS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct loupe_policy_addr_key);
	__type(value, struct loupe_policy_bits);
} loupe_pol_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LOUPE_POL_PORTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct loupe_policy_port_key);
	__type(value, struct loupe_policy_bits);
} loupe_pol_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LOUPE_POL_NAMES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct loupe_policy_name_key);
	__type(value, struct loupe_policy_bits);
} loupe_pol_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, LOUPE_POL_PATHS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct loupe_policy_path_key);
	__type(value, struct loupe_policy_bits);
} loupe_pol_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOUPE_POLICY_SLOTS *LOUPE_POLICY_METHODS);
	__type(key, __u32);
	__type(value, struct loupe_policy_bits);
} loupe_pol_methods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOUPE_POLICY_SLOTS *LOUPE_POLICY_BITS);
	__type(key, __u32);
	__type(value, __u64);
} loupe_pol_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LOUPE_POLICY_SLOTS *LOUPE_REWRITES_MAX);
	__type(key, __u32);
	__type(value, struct loupe_rewrite);
} loupe_pol_rewrites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LOUPE_NAT_REVERSE_MAX);
	__type(key, struct loupe_flow_key);
	__type(value, struct loupe_nat_reverse);
} loupe_nat_reverse SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LOUPE_RATE_MAX);
	__type(key, struct loupe_rate_key);
	__type(value, struct loupe_rate);
} loupe_rate SEC(".maps");

/* Only ever updated by user space: the update returns after programs in flight finished. */
struct loupe_pol_sync_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} loupe_pol_sync_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct loupe_pol_sync_inner);
} loupe_pol_sync SEC(".maps") = {
	.values = { [0] = &loupe_pol_sync_inner },
};

/* The policy judge's working memory: bitmaps and keys are too large for the stack. */
struct loupe_policy_work {
	struct loupe_policy_bits cand;	/* the rules that still fit */
	struct loupe_policy_bits zero;	/* never written: the answer of a lookup that misses */
	struct loupe_flow_key held_key; /* of loupe_tls_pending: a request being held */
	struct loupe_policy_iface_key iface_key;
	struct loupe_policy_addr_key addr_key;
	struct loupe_policy_port_key port_key;
	struct loupe_policy_name_key name_key __attribute__((aligned(8))); /* word stores */
	__u8 name_key_slack[8]; /* word stores may reach past the key */
	struct loupe_policy_path_key path_key __attribute__((aligned(8)));
	__u8 path_key_slack[8];
	/* a name with 8 zero bytes before it */
	__u8 name_stage[8 + LOUPE_HTTP_HOST_MAX + 8] __attribute__((aligned(8)));
	struct loupe_event_verdict ev;
	__u8 ev_slack[8];    /* word copies of the subject may reach past the event */
	__u32 n_words;	     /* words of the bitmaps the set in force uses */
	__u32 rewrite;	     /* the judge's find: the first rewrite entry that fits + 1, 0: none */
	__u32 slot;	     /* the slot the judge read */
	__u32 generation;    /* ... and its set's generation */
	__u32 flags;	     /* ... and its flags (enum loupe_policy_meta_flags) */
	__u32 method_idx;    /* loupe_pol_methods key of the request's method */
	__u32 host_name_len; /* the Host of s->ev.http without its port */
	__u32 host_port;     /* its port, 0 when it gives none */
};

/* Rewrites' working memory: the entry, the events, the bytes of a header value being masked. */
struct loupe_rewrite_work {
	struct loupe_rewrite cfg;
	struct loupe_event_rewrite ev;
	struct loupe_event_rate_limited rate_ev;
	struct loupe_flow_key nat_key;
	union loupe_any_flow_key virt_key; /* the mapped flow a reply belongs to */
	struct loupe_nat_reverse nat;
	__u8 old_span[LOUPE_HTTP_HOST_MAX + 16] __attribute__((aligned(8)));
	__u8 new_span[LOUPE_HTTP_HOST_MAX + 16] __attribute__((aligned(8)));
	__u32 pos, start, end; /* the header scan's cursors (through memory) */
	/* the flow's rewrite, copied by the caller for loupe_rewrite_apply() */
	__u32 flow_actions;
	__u32 flow_rewrite; /* entry + 1 */
	__u32 flow_slot;
	__u32 flow_generation;
	__u16 flow_port;
	__u16 flow_vlan_id;
	__u8 flow_dscp;
	__u8 flow_pad[7];
	__u8 flow_addr[16];
};

struct loupe_scratch {
	struct loupe_l7_buf head;	  /* the head of the segment being parsed */
	struct loupe_pkt pkt;		  /* the packet being parsed, handed to the L7 parsers */
	struct loupe_tls_pending pending; /* a new reassembly, before it goes to the map */
	struct loupe_l7_cursor cur;
	union {
		struct loupe_event_hdr hdr;
		struct loupe_event_http http;
		struct loupe_event_tls tls;
		struct loupe_event_dns dns;
		struct loupe_event_flow flow;
	} ev;
	__u8 ev_slack[64]; /* word copies of DNS labels may reach past the event */
	struct loupe_policy_work pol;
	struct loupe_rewrite_work rw;
	/* loupe_flow_miss(): the key and the entry it creates */
	union loupe_any_flow_key miss_key;
	struct loupe_flow miss_flow;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct loupe_scratch);
} loupe_scratch SEC(".maps");

#endif
