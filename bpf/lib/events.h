/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Events out through the ring buffer, and the per-CPU counters. Every event goes through
 * loupe_event_submit(), which counts it or, when the ring buffer is full, counts the loss:
 * losses are never silent. Not for building the event bodies (l7_*.h, flow.h).
 */
#ifndef LOUPE_BPF_EVENTS_H
#define LOUPE_BPF_EVENTS_H

#include "lib/maps.h"
#include "lib/parse.h"

static __always_inline struct loupe_counters *loupe_counters_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&loupe_counters, &zero);
}

static __always_inline struct loupe_scratch *loupe_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&loupe_scratch, &zero);
}

/* Fills the common header of an event from the packet. */
static __always_inline void loupe_event_hdr_fill(struct loupe_event_hdr *hdr,
						 const struct __sk_buff *skb,
						 const struct loupe_pkt *pkt, __u16 kind, __u8 dir,
						 __u64 now)
{
	hdr->ts_ns = now;
	hdr->ifindex = skb->ifindex;
	hdr->kind = kind;
	hdr->direction = dir;
	hdr->protocol = pkt->protocol;
	hdr->flags = pkt->flags;
	hdr->vlan_id = pkt->vlan_id;
	hdr->inner_vlan_id = pkt->inner_vlan_id;
	hdr->pad = 0;
	__builtin_memcpy(hdr->saddr, pkt->saddr.b, 16);
	__builtin_memcpy(hdr->daddr, pkt->daddr.b, 16);
	hdr->sport = bpf_ntohs(pkt->sport);
	hdr->dport = bpf_ntohs(pkt->dport);
	hdr->pad2 = 0;
}

/* Copies @size bytes of @ev to the ring buffer; counts the event or its loss. */
static __always_inline void loupe_event_submit(struct loupe_counters *cnt, void *ev, __u64 size,
					       __u16 kind)
{
	long err = bpf_ringbuf_output(&loupe_events, ev, size, 0);

	if (!cnt || kind >= LOUPE_EV_KIND_MAX)
		return;
	if (err)
		cnt->events_lost[kind]++;
	else
		cnt->events[kind]++;
}

/*
 * The size of a record that ends with strings of @len bytes in all (NULs excluded) from
 * @str_off on (+ 1 per NUL but the last): the bytes after the last NUL are not sent.
 */
static __always_inline __u64 loupe_record_size(__u64 str_off, __u32 len, __u64 max)
{
	__u64 size = str_off + (len & 0x3ff) + 1;

	return size < max ? size : max;
}

static __always_inline void loupe_count_parse_error(struct loupe_counters *cnt, int perr)
{
	if (cnt && perr > 0 && perr < LOUPE_PERR_MAX)
		cnt->parse_errors[perr]++;
}

#endif
