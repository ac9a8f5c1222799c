// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl get: the controller's policies (a table, or a PolicyList that apply takes back),
 * one policy, and the agents with the revision each has in force. Not for events (observe).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cmd.h"
#include "ctl.h"
#include "loupe/v1/observer.pb-c.h"
#include "loupe/v1/policy.pb-c.h"

int loupe_cmd_get(int argc, char **argv);
void loupe_cmd_get_usage(FILE *out);

void loupe_cmd_get_usage(FILE *out)
{
	fprintf(out,
		"usage: loupectl get policies [-o table|json]\n"
		"       loupectl get policy NAME [-o json]\n"
		"       loupectl get agents [-o table|json]\n"
		"\n"
		"Shows the controller's policy set (json: a PolicyList apply takes back, with\n"
		"each policy's source and revision as annotations) or its agents: whether\n"
		"connected, the revision each acknowledged, the last refusal, events/s.\n"
		"\n"
		"  -o, --output FORMAT     table (default) or json\n" LOUPE_CTL_USAGE
		"  -h, --help              this help\n");
}

static uint64_t ts_ns(const Google__Protobuf__Timestamp *t)
{
	return t ? (uint64_t)t->seconds * 1000000000ULL + (uint64_t)t->nanos : 0;
}

static struct json_object *policy_obj(const Loupe__V1__Policy *p)
{
	struct json_object *o = json_tokener_parse(p->json ? p->json : "{}"), *md, *ann;
	char rev[32];

	if (!o)
		return json_object_new_object();
	if (json_object_object_get_ex(o, "metadata", &md)) {
		if (!json_object_object_get_ex(md, "annotations", &ann)) {
			ann = json_object_new_object();
			json_object_object_add(md, "annotations", ann);
		}
		snprintf(rev, sizeof(rev), "%llu", (unsigned long long)p->revision);
		json_object_object_add(ann, "loupe.dev/source",
				       json_object_new_string(p->source ? p->source : ""));
		json_object_object_add(ann, "loupe.dev/revision", json_object_new_string(rev));
		if (p->read_only)
			json_object_object_add(ann, "loupe.dev/read-only",
					       json_object_new_string("true"));
	}
	return o;
}

static int get_policies(const struct loupe_ctl_conn *conn, struct loupe_rpc_ctl *ctl, bool json)
{
	Loupe__V1__ListPoliciesRequest req = LOUPE__V1__LIST_POLICIES_REQUEST__INIT;
	Loupe__V1__ListPoliciesResponse *resp;

	resp = (Loupe__V1__ListPoliciesResponse *)loupe_ctl_call_pb(
		"get", conn, ctl, LOUPE_RPC_POLICY_LIST, &req.base,
		&loupe__v1__list_policies_response__descriptor);
	if (!resp)
		return EXIT_FAILURE;
	if (json) {
		struct json_object *l = json_object_new_object(), *items = json_object_new_array(),
				   *md = json_object_new_object();
		char rev[32];

		snprintf(rev, sizeof(rev), "%llu", (unsigned long long)resp->revision);
		json_object_object_add(l, "apiVersion", json_object_new_string("loupe.dev/v1"));
		json_object_object_add(l, "kind", json_object_new_string("PolicyList"));
		json_object_object_add(md, "revision", json_object_new_string(rev));
		json_object_object_add(l, "metadata", md);
		for (size_t i = 0; i < resp->n_policies; i++)
			json_object_array_add(items, policy_obj(resp->policies[i]));
		json_object_object_add(l, "items", items);
		printf("%s\n", json_object_to_json_string_ext(
				       l, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						  JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(l);
	} else if (!resp->n_policies) {
		printf("No policies (revision %llu).\n", (unsigned long long)resp->revision);
	} else {
		printf("%-32s %8s %5s %9s %6s  %s\n", "NAME", "PRIORITY", "RULES", "REVISION",
		       "AGE", "SOURCE");
		for (size_t i = 0; i < resp->n_policies; i++) {
			const Loupe__V1__Policy *p = resp->policies[i];
			struct json_object *o = json_tokener_parse(p->json), *spec, *x;
			int prio = 1000;
			size_t rules = 0;
			char age[16];

			if (o && json_object_object_get_ex(o, "spec", &spec)) {
				if (json_object_object_get_ex(spec, "priority", &x))
					prio = json_object_get_int(x);
				if (json_object_object_get_ex(spec, "rules", &x))
					rules = json_object_array_length(x);
			}
			json_object_put(o);
			loupe_ctl_age(ts_ns(p->updated), age, sizeof(age));
			printf("%-32s %8d %5zu %9llu %6s  %s%s\n", p->name, prio, rules,
			       (unsigned long long)p->revision, age, p->source,
			       p->read_only ? " (watched, read-only)" : "");
		}
		printf("revision %llu\n", (unsigned long long)resp->revision);
	}
	loupe__v1__list_policies_response__free_unpacked(resp, NULL);
	return EXIT_SUCCESS;
}

static int get_policy(const struct loupe_ctl_conn *conn, struct loupe_rpc_ctl *ctl,
		      const char *name)
{
	Loupe__V1__GetPolicyRequest req = LOUPE__V1__GET_POLICY_REQUEST__INIT;
	Loupe__V1__Policy *p;
	struct json_object *o;
	uint8_t *buf, *out = NULL;
	size_t len, out_len;
	bool ok;

	req.name = (char *)name;
	len = loupe__v1__get_policy_request__get_packed_size(&req);
	buf = malloc(len + 1);
	if (!buf)
		return EXIT_FAILURE;
	loupe__v1__get_policy_request__pack(&req, buf);
	ok = loupe_ctl_call("get", conn, ctl, LOUPE_RPC_POLICY_GET, buf, len, &out, &out_len);
	free(buf);
	if (!ok)
		return EXIT_FAILURE;
	p = loupe__v1__policy__unpack(NULL, out_len, out);
	free(out);
	if (!p)
		return EXIT_FAILURE;
	o = policy_obj(p);
	printf("%s\n",
	       json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	loupe__v1__policy__free_unpacked(p, NULL);
	return EXIT_SUCCESS;
}

static int get_agents(const struct loupe_ctl_conn *conn, struct loupe_rpc_ctl *ctl, bool json)
{
	Loupe__V1__ListAgentsRequest req = LOUPE__V1__LIST_AGENTS_REQUEST__INIT;
	Loupe__V1__ListAgentsResponse *resp;

	resp = (Loupe__V1__ListAgentsResponse *)loupe_ctl_call_pb(
		"get", conn, ctl, LOUPE_RPC_OBSERVER_AGENTS, &req.base,
		&loupe__v1__list_agents_response__descriptor);
	if (!resp)
		return EXIT_FAILURE;
	if (json) {
		loupe_ctl_print_json(&resp->base);
	} else if (!resp->n_agents) {
		printf("No agent has connected (controller revision %llu).\n",
		       (unsigned long long)resp->revision);
	} else {
		printf("%-24s %-9s %-9s %9s %10s %9s  %s\n", "NODE", "STATUS", "REVISION",
		       "EVENTS/S", "EVENTS", "LAST-SEEN", "LAST-ERROR");
		for (size_t i = 0; i < resp->n_agents; i++) {
			const Loupe__V1__AgentInfo *a = resp->agents[i];
			bool current = a->acked_revision == resp->revision &&
				       !strcmp(a->store_id, resp->store_id);
			char rev[32], seen[16];

			snprintf(rev, sizeof(rev), "%llu%s", (unsigned long long)a->acked_revision,
				 current ? "" : "*");
			loupe_ctl_age(ts_ns(a->last_seen), seen, sizeof(seen));
			printf("%-24s %-9s %-9s %9.1f %10llu %9s  %s\n", a->node,
			       a->connected ? "connected" : "away", rev, a->event_rate,
			       (unsigned long long)a->events, a->connected ? "now" : seen,
			       a->last_error[0] ? a->last_error : "-");
		}
		printf("controller revision %llu (* not in force on that node yet)\n",
		       (unsigned long long)resp->revision);
	}
	loupe__v1__list_agents_response__free_unpacked(resp, NULL);
	return EXIT_SUCCESS;
}

int loupe_cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		LOUPE_CTL_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct loupe_ctl_conn conn;
	struct loupe_rpc_ctl *ctl;
	const char *what, *name = NULL;
	bool json = false;
	int c, rc;

	loupe_ctl_conn_init(&conn);
	opterr = 0;
	/* options may come after the words: "get policies -o json" */
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		if (loupe_ctl_conn_opt(&conn, c, optarg))
			continue;
		if (c == 'o') {
			if (strcmp(optarg, "json") && strcmp(optarg, "table"))
				return loupe_cmd_usage_error("get", "-o takes table or json");
			json = !strcmp(optarg, "json");
		} else if (c == 'h') {
			loupe_cmd_get_usage(stdout);
			return EXIT_SUCCESS;
		} else {
			return loupe_cmd_getopt_error("get", c, argv);
		}
	}
	if (optind >= argc)
		return loupe_cmd_usage_error("get", "say what: policies, policy NAME or agents");
	what = argv[optind];
	if (!strcmp(what, "policy") && optind + 1 < argc)
		name = argv[optind + 1];
	else if (strcmp(what, "policies") && strcmp(what, "agents") && strcmp(what, "agent") &&
		 strcmp(what, "policy"))
		return loupe_cmd_usage_error("get",
					     "unknown kind '%s': policies, policy NAME or "
					     "agents",
					     what);
	ctl = loupe_ctl_connect("get", &conn);
	if (!ctl)
		return EXIT_FAILURE;
	if (name)
		rc = get_policy(&conn, ctl, name);
	else if (!strcmp(what, "agents") || !strcmp(what, "agent"))
		rc = get_agents(&conn, ctl, json);
	else
		rc = get_policies(&conn, ctl, json);
	loupe_rpc_ctl_close(ctl);
	return rc;
}
