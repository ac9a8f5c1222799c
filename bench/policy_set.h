/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy sets of any size for the benchmarks, made at run time: the AI egress example of
 * docs/policy.md, last in evaluation order, after as many CIDR/port rules as it takes. Not a
 * fixture of expected verdicts (tests/bpf has those).
 */
#ifndef LOUPE_BENCH_POLICY_SET_H
#define LOUPE_BENCH_POLICY_SET_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* Rules of the AI egress policies (ai-egress-allowed, ai-egress-denied): the last ones. */
#define BENCH_POLICY_AI_RULES 6
/* CIDR/port rules per policy before them (LOUPE_POLICY_RULES_MAX is 256). */
#define BENCH_POLICY_PER_POLICY 250

/* What CIDR/port rule @i (0-based, in evaluation order) matches. */
struct bench_policy_rule {
	char addr[48];	 /* the address its one CIDR starts at */
	uint8_t prefix;	 /* and the CIDR's length */
	int family;	 /* AF_INET or AF_INET6 */
	bool egress;	 /* else ingress */
	uint8_t proto;	 /* IPPROTO_TCP or IPPROTO_UDP */
	uint16_t port;	 /* the first port it matches */
	uint16_t end;	 /* its last */
	const char *act; /* "allow", "deny" or "audit" */
};

void bench_policy_rule(unsigned int i, struct bench_policy_rule *ret);

/*
 * The JSON of a set of @n_rules rules (at least BENCH_POLICY_AI_RULES): n_rules - 6 CIDR/port
 * rules, BENCH_POLICY_PER_POLICY to a policy named "nets-NNN" (priority 5, every pod), then
 * the two AI egress policies (priorities 10 and 20). Their CIDRs lie in 198.19.64.0/18 and
 * fd00:198:18:ff00::/64: no packet of tests/lib/pktbuild.h and no pod of scripts/pods is in
 * them. A malloc'd string, or NULL with errno set.
 */
char *bench_policy_json(unsigned int n_rules, size_t *ret_len);

/* The same, parsed and validated: 0 and *@ret (loupe_policy_set_free()), or -errno. */
int bench_policy_set(unsigned int n_rules, struct loupe_policy_set **ret,
		     struct loupe_policy_error *ret_err);

#endif
