// SPDX-License-Identifier: Apache-2.0
/*
 * Policy sets of any size for the benchmarks (policy_set.h). Each CIDR/port rule differs a
 * little from its neighbours (address, prefix, family, direction, protocol, port or range,
 * action), so that the maps hold as many entries as a set written by people would. Not for
 * tests: nothing here says what a packet should get.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy_set.h"

/* docs/policy.md, "AI egress", as it is there. */
static const char AI_EGRESS[] =
	"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
	"\"metadata\":{\"name\":\"ai-egress-allowed\",\"labels\":{\"team\":\"ml\"}},"
	"\"spec\":{\"priority\":10,"
	"\"podSelector\":{\"cidrs\":[\"198.18.100.0/28\",\"fd00:198:18:100::/124\"]},\"rules\":["
	"{\"name\":\"llm-tls\",\"direction\":\"egress\",\"match\":{\"ports\":[{\"port\":443}],"
	"\"tls\":{\"sni\":[\"api.openai.com\",\"*.anthropic.com\","
	"\"generativelanguage.googleapis.com\"]}},\"action\":\"allow\"},"
	"{\"name\":\"llm-http\",\"direction\":\"egress\",\"match\":{\"http\":{\"hosts\":["
	"\"api.openai.com\",\"*.anthropic.com\",\"generativelanguage.googleapis.com\"]}},"
	"\"action\":\"audit\"},"
	"{\"name\":\"llm-dns\",\"direction\":\"egress\",\"match\":{\"dns\":{\"names\":["
	"\"api.openai.com\",\"*.anthropic.com\",\"generativelanguage.googleapis.com\"]}},"
	"\"action\":\"allow\"}]}},"
	"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
	"\"metadata\":{\"name\":\"ai-egress-denied\",\"labels\":{\"team\":\"security\"}},"
	"\"spec\":{\"priority\":20,\"podSelector\":{},\"rules\":["
	"{\"name\":\"llm-sni\",\"direction\":\"egress\",\"match\":{\"tls\":{\"sni\":["
	"\"api.openai.com\",\"*.anthropic.com\",\"generativelanguage.googleapis.com\"]}},"
	"\"action\":\"deny\"},"
	"{\"name\":\"llm-host\",\"direction\":\"egress\",\"match\":{\"http\":{\"hosts\":["
	"\"api.openai.com\",\"*.anthropic.com\",\"generativelanguage.googleapis.com\"]}},"
	"\"action\":\"deny\"},"
	"{\"name\":\"llm-dns\",\"direction\":\"egress\",\"match\":{\"dns\":{\"names\":["
	"\"api.openai.com\",\"*.anthropic.com\",\"generativelanguage.googleapis.com\"]}},"
	"\"action\":\"deny\"}]}}";

void bench_policy_rule(unsigned int i, struct bench_policy_rule *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (i % 8 == 7) {
		ret->family = AF_INET6;
		snprintf(ret->addr, sizeof(ret->addr), "fd00:198:18:ff00::%x", i);
		ret->prefix = 128;
	} else {
		/* a block of 4 addresses each, from 198.19.64.0: /30, /31 or one host */
		uint32_t a = 0xc6134000u + 4 * i + (i % 3 == 2);
		struct in_addr in = { .s_addr = htonl(a) };

		ret->family = AF_INET;
		inet_ntop(AF_INET, &in, ret->addr, sizeof(ret->addr));
		ret->prefix = i % 3 == 0 ? 30 : i % 3 == 1 ? 31 : 32;
	}
	ret->egress = i % 4 != 3;
	ret->proto = i % 5 == 4 ? IPPROTO_UDP : IPPROTO_TCP;
	ret->port = 1000 + (i * 37) % 9000;
	ret->end = i % 10 == 9 ? ret->port + 99 : ret->port;
	ret->act = i % 7 == 0 ? "allow" : i % 11 == 0 ? "audit" : "deny";
}

char *bench_policy_json(unsigned int n_rules, size_t *ret_len)
{
	unsigned int n_nets = n_rules - BENCH_POLICY_AI_RULES;
	struct bench_policy_rule r;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (n_rules < BENCH_POLICY_AI_RULES) {
		errno = EINVAL;
		return NULL;
	}
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	fputc('[', f);
	for (unsigned int i = 0; i < n_nets; i++) {
		if (i % BENCH_POLICY_PER_POLICY == 0)
			fprintf(f,
				"{\"apiVersion\":\"loupe.dev/v1\",\"kind\":\"Policy\","
				"\"metadata\":{\"name\":\"nets-%03u\"},\"spec\":{\"priority\":5,"
				"\"podSelector\":{},\"rules\":[",
				i / BENCH_POLICY_PER_POLICY);
		bench_policy_rule(i, &r);
		fprintf(f,
			"{\"name\":\"net-%u\",\"direction\":\"%s\",\"match\":{\"cidrs\":[\"%s/"
			"%u\"],"
			"\"ports\":[{\"port\":%u",
			i, r.egress ? "egress" : "ingress", r.addr, r.prefix, r.port);
		if (r.end != r.port)
			fprintf(f, ",\"endPort\":%u", r.end);
		fprintf(f, ",\"protocol\":\"%s\"}]},\"action\":\"%s\"}",
			r.proto == IPPROTO_UDP ? "UDP" : "TCP", r.act);
		if (i % BENCH_POLICY_PER_POLICY == BENCH_POLICY_PER_POLICY - 1 || i == n_nets - 1)
			fputs("]}},", f);
		else
			fputc(',', f);
	}
	fputs(AI_EGRESS, f);
	fputc(']', f);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	if (ret_len)
		*ret_len = len;
	return buf;
}

int bench_policy_set(unsigned int n_rules, struct loupe_policy_set **ret,
		     struct loupe_policy_error *ret_err)
{
	struct loupe_policy_set *set = calloc(1, sizeof(*set));
	size_t len;
	char *json;
	int r;

	if (!set)
		return -ENOMEM;
	json = bench_policy_json(n_rules, &len);
	if (!json) {
		r = -errno;
		free(set);
		return r;
	}
	r = loupe_policy_parse(json, len, "bench", set, ret_err);
	free(json);
	if (r) {
		loupe_policy_set_free(set);
		return r;
	}
	*ret = set;
	return 0;
}
