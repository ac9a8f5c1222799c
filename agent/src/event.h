/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The user-space form of an event: plain C, decoded and checked from a ring buffer record
 * (or built by user space: FLOW_END, LOST, AGENT). Not protobuf: conversion to the wire
 * type lives in event_pb.c, the rpc side.
 */
#ifndef LOUPE_EVENT_H
#define LOUPE_EVENT_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loupe/datapath.h"

/* Decoded ALPN protocol names kept per TLS event; more are dropped. */
#define LOUPE_EVENT_ALPN_MAX 8

/* Buffer size for loupe_event_format_addr(): INET6_ADDRSTRLEN. */
#define LOUPE_EVENT_ADDR_MAX 46

/* Why a FLOW_END was sent: mirrors loupe.v1.FlowEndReason. */
enum loupe_flow_end_reason {
	LOUPE_FLOW_END_UNSPECIFIED = 0,
	LOUPE_FLOW_END_IDLE = 1,
	LOUPE_FLOW_END_ACTIVE = 2,
	LOUPE_FLOW_END_CAPTURE = 3,
	LOUPE_FLOW_END_AGENT_STOP = 4,
	LOUPE_FLOW_END_TCP_CLOSE = 5,
};

#define LOUPE_EVENT_POD_IPS_MAX 8

/* A policy or rule name with its NUL: policy.h's LOUPE_POLICY_NAME_MAX (63) + 1. */
#define LOUPE_EVENT_POLICY_NAME_MAX 64

/* A maskHeaders name with its NUL: policy.h's LOUPE_POLICY_HEADER_NAME_MAX (64) + 1. */
#define LOUPE_EVENT_HEADER_NAME_MAX 65

/* What a POLICY_VERDICT decided: mirrors loupe.v1.VerdictAction. */
enum loupe_event_action {
	LOUPE_EVENT_ACTION_UNSPECIFIED = 0,
	LOUPE_EVENT_ACTION_ALLOW = 1,
	LOUPE_EVENT_ACTION_DENY = 2,
	LOUPE_EVENT_ACTION_AUDIT = 3,
};

/* Why: mirrors loupe.v1.VerdictReason. */
enum loupe_event_reason {
	LOUPE_EVENT_REASON_UNSPECIFIED = 0,
	LOUPE_EVENT_REASON_RULE = 1,
	LOUPE_EVENT_REASON_DEFAULT_ACTION = 2, /* the record says RULE; the bit is a default */
	LOUPE_EVENT_REASON_BOUND_EXCEEDED = 3,
};

struct loupe_event_flow_dir {
	uint64_t packets;
	uint64_t bytes;
	uint8_t tcp_flags;
};

struct loupe_event {
	uint64_t seq;
	uint64_t time_ns; /* CLOCK_REALTIME, ns since the epoch */
	char node[64];
	enum loupe_event_kind kind;
	char ifname[IF_NAMESIZE];
	uint32_t ifindex;
	int direction; /* enum loupe_direction, or -1 when not known */
	uint8_t protocol;
	bool ipv6;
	bool has_ip;	   /* addresses and ports are set */
	uint8_t saddr[16]; /* IPv4-mapped for IPv4 */
	uint8_t daddr[16];
	uint16_t sport;
	uint16_t dport;
	bool has_vlan;
	uint16_t vlan_id;
	bool has_inner_vlan;
	uint16_t inner_vlan_id;
	/* the pod behind the interface (agent): its addresses, IPv4-mapped for IPv4 */
	int pod_ip_count;
	struct {
		bool ipv6;
		uint8_t addr[16];
	} pod_ips[LOUPE_EVENT_POD_IPS_MAX];

	/* kind-specific, valid for the matching kind only */
	struct {
		char method[LOUPE_HTTP_METHOD_MAX];
		char path[LOUPE_HTTP_PATH_MAX];
		char host[LOUPE_HTTP_HOST_MAX];
		bool path_truncated;
		bool host_truncated;
	} http;
	struct {
		char sni[LOUPE_TLS_SNI_MAX];
		uint16_t version; /* max supported version, else legacy */
		uint16_t legacy_version;
		char alpn[LOUPE_EVENT_ALPN_MAX][LOUPE_TLS_ALPN_MAX]; /* decoded protocol names */
		int alpn_count;
		bool reassembled;
	} tls;
	struct {
		char qname[LOUPE_DNS_NAME_MAX];
		uint16_t qtype;
		uint16_t qclass;
		uint16_t id;
		bool name_invalid;
		bool tcp;
	} dns;
	struct {
		struct loupe_event_flow_dir dir[LOUPE_DIR_MAX];
		uint64_t first_seen_ns; /* CLOCK_REALTIME */
		uint64_t last_seen_ns;
		uint8_t tcp_flags;		       /* FLOW_START: the opening packet's */
		enum loupe_flow_end_reason end_reason; /* FLOW_END */
	} flow;
	struct {
		uint64_t count;
		enum loupe_event_kind kind;
	} lost;
	/*
	 * POLICY_VERDICT. The name it was decided on is in http.host, tls.sni or dns.qname, as
	 * @subject says (those sub-messages are written for a verdict only then). policy and
	 * rule are filled by whoever knows the set's names (the pipeline, replay).
	 */
	struct {
		enum loupe_event_action action;
		enum loupe_event_reason reason;
		uint32_t generation;
		uint16_t bit; /* the deciding rule's; LOUPE_POLICY_BIT_NONE: none */
		int origin;   /* enum loupe_direction of who opened the flow, or -1 */
		enum loupe_verdict_subject subject;
		char policy[LOUPE_EVENT_POLICY_NAME_MAX];
		char rule[LOUPE_EVENT_POLICY_NAME_MAX]; /* "" for a defaultAction */
	} verdict;
	/*
	 * REWRITE: what was done to the packet (the event's addresses and ports are the packet
	 * as it came). A field is set only with its action: new_addr and new_port with
	 * LOUPE_RW_MAP, dscp with LOUPE_RW_DSCP, vlan_id with LOUPE_RW_VLAN_PUSH or _POP,
	 * masked_bits with LOUPE_RW_MASK. policy, name and masked[] are filled by whoever knows
	 * the set's names (the pipeline, replay): masked[i] names bit i of masked_bits.
	 */
	struct {
		uint32_t actions; /* enum loupe_rewrite_actions */
		uint32_t generation;
		uint16_t index;	      /* the rewrite's entry in its set: bit rewrite_base + index */
		uint8_t new_addr[16]; /* IPv4-mapped for IPv4 */
		uint16_t new_port;
		uint8_t dscp;
		uint16_t vlan_id;
		uint16_t masked_bits; /* bit i: the value of http.maskHeaders[i] was masked */
		char policy[LOUPE_EVENT_POLICY_NAME_MAX];
		char name[LOUPE_EVENT_POLICY_NAME_MAX];
		char masked[LOUPE_MASK_HEADERS_MAX][LOUPE_EVENT_HEADER_NAME_MAX];
	} rewrite;
	struct {
		uint64_t dropped; /* since the last RATE_LIMITED of the pod and direction */
		uint64_t bytes_per_sec;
		uint64_t burst;
	} rate_limited;
};

/*
 * Decodes one ring buffer record. @mono_to_real_ns is added to monotonic kernel times
 * (0 in replay, where record times are capture times already). Kinds the datapath emits:
 * FLOW_START, HTTP_REQUEST, TLS_CLIENT_HELLO, DNS_QUERY, POLICY_VERDICT (its subject goes to
 * http.host, tls.sni or dns.qname; an action, reason, subject kind or origin this build does
 * not know reads as unspecified rather than losing the verdict), REWRITE (fields of actions it
 * does not report are zeroed; masked bits past LOUPE_MASK_HEADERS_MAX are dropped) and
 * RATE_LIMITED. Rejects a record whose kind is
 * not one of them, whose size does not match its kind, or whose length fields exceed
 * their buffers. Strings are never trusted to be terminated: each is cut at its length
 * field, its first NUL and its buffer's last byte (a cut path or host sets *_truncated).
 * seq, node and ifname are left empty for the caller. FLOW_START sets flow.first_seen_ns
 * and flow.last_seen_ns to time_ns. Returns 0 or -EINVAL (then *ret_ev is zeroed).
 */
int loupe_event_decode(const void *record, size_t size, int64_t mono_to_real_ns,
		       struct loupe_event *ret_ev);

/* The loupe.v1.EventKind name, e.g. "FLOW_START"; NULL and errno EINVAL when out of range. */
const char *loupe_event_kind_name(enum loupe_event_kind kind);

/*
 * True when the strings @ev's kind uses are terminated within their arrays: what the JSON
 * writers and the protobuf conversion borrow as they are.
 */
bool loupe_event_strings_valid(const struct loupe_event *ev);

/* True for an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
bool loupe_addr_is_v4_mapped(const uint8_t *addr);

/* The loupe.v1.VerdictAction name ("ALLOW", "DENY", "AUDIT"); "?" when out of range. */
const char *loupe_event_action_name(enum loupe_event_action action);

/* The loupe.v1.VerdictReason name ("RULE", "DEFAULT_ACTION", ...); "?" when out of range. */
const char *loupe_event_reason_name(enum loupe_event_reason reason);

/*
 * Writes @addr (IPv4-mapped for IPv4) as @ev's addresses are written (loupe_event_format_addr():
 * dotted IPv4 for an IPv4-mapped address of an IPv4 event, else IPv6). Returns 0 or -ENOSPC.
 */
int loupe_event_format_other_addr(const struct loupe_event *ev, const uint8_t *addr, char *buf,
				  size_t len);

/* The upper-case name of a parse error reason ("IPV4_TRUNCATED"); "?" when unknown. */
const char *loupe_parse_error_name(enum loupe_parse_error reason);

/*
 * A FLOW_END event from a flow table entry: the pod is the source, its peer the
 * destination; per-direction packets, bytes and TCP flags; first and last seen.
 * @mono_to_real_ns as for loupe_event_decode().
 */
void loupe_event_from_flow(const struct loupe_flow_key *key, const struct loupe_flow *flow,
			   int64_t mono_to_real_ns, struct loupe_event *ret_ev);

/*
 * Writes the source (@src) or destination address of @ev in presentation form: dotted
 * IPv4 for an IPv4-mapped address of an IPv4 event, else IPv6. @len: LOUPE_EVENT_ADDR_MAX
 * is enough. Returns 0, -EINVAL when the event has no addresses (!has_ip), -ENOSPC.
 */
int loupe_event_format_addr(const struct loupe_event *ev, bool src, char *buf, size_t len);

#endif
