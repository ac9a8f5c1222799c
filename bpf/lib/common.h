/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Basics shared by every BPF header library: includes, inline and branch hints, the
 * settings user space fixes before load. Not for maps or parsing.
 */
#ifndef LOUPE_BPF_COMMON_H
#define LOUPE_BPF_COMMON_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "loupe/datapath.h"

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/*
 * Hides a value's origin from the compiler so that it keeps the bounds check that
 * follows (clang otherwise folds checks the verifier needs to see).
 */
#define LOUPE_BARRIER_VAR(var) asm volatile("" : "+r"(var))

/* Settings fixed by user space before load (rodata): dead branches vanish at load time. */
extern const volatile __u8 loupe_cfg_replay;	   /* time from skb->tstamp, direction from flow */
extern const volatile __u8 loupe_cfg_coarse_clock; /* bpf_ktime_get_coarse_ns() is available */

/* "continue": let the next filter (or the default action) decide. */
#define LOUPE_TC_CONTINUE TC_ACT_UNSPEC

/*
 * The packet's bytes as a capture on the veth shows them: skb->len (a GSO packet counts once,
 * whole). In replay, wire_len carries a frame's length before a snaplen or the test-run
 * limit cut it. (Live, wire_len at clsact egress adds the headers of every GSO segment,
 * which no capture on the veth shows, so it is not used there.)
 */
static __always_inline __u32 loupe_wire_bytes(const struct __sk_buff *skb)
{
	__u32 wire;

	if (!loupe_cfg_replay)
		return skb->len;
	wire = skb->wire_len;
	return wire ? wire : skb->len;
}

static __always_inline __u64 loupe_now(const struct __sk_buff *skb)
{
	if (loupe_cfg_replay)
		return skb->tstamp;
	if (loupe_cfg_coarse_clock)
		return bpf_ktime_get_coarse_ns();
	return bpf_ktime_get_ns();
}

#endif
