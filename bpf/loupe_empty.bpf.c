// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The empty TC program: the benchmark's baseline, measured in the same run as the real
 * programs so that figures are ratios, not absolute times on a noisy machine.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int loupe_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
