// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl apply and delete: policies to the controller and out of it. A file is sent as
 * written (the controller's errors then point into it: path, line, column); a directory is
 * read and validated here as the controller would, and sent as one PolicyList so that it is
 * applied all or nothing. Not for validating offline (policy check).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "ctl.h"
#include "loupe/v1/policy.pb-c.h"
#include "policy.h"

int loupe_cmd_apply(int argc, char **argv);
void loupe_cmd_apply_usage(FILE *out);
int loupe_cmd_delete(int argc, char **argv);
void loupe_cmd_delete_usage(FILE *out);

void loupe_cmd_apply_usage(FILE *out)
{
	fprintf(out,
		"usage: loupectl apply -f FILE|DIR [-f ...] [--dry-run] [-o text|json]\n"
		"\n"
		"Sends policies (loupe.dev/v1 Policy, an array or a PolicyList; a DIR's *.json\n"
		"files, a mounted ConfigMap through ..data) to the controller, which stores\n"
		"them and pushes the new revision to every agent. Each -f is applied whole or\n"
		"not at all; a refusal names the file, the JSON path and the line.\n"
		"\n"
		"  -f, --filename PATH     a policy file or directory (repeatable)\n"
		"      --dry-run           validate on the controller, change nothing\n"
		"  -o, --output FORMAT     text (default) or json (the controller's "
		"answer)\n" LOUPE_CTL_USAGE "  -h, --help              this help\n"
		"\n"
		"Exit status: 0 applied, 1 refused or unreachable, 2 bad command line.\n");
}

void loupe_cmd_delete_usage(FILE *out)
{
	fprintf(out,
		"usage: loupectl delete policy NAME...\n"
		"\n"
		"Deletes policies from the controller's store, all or none, and pushes the new\n"
		"revision to every agent. Policies of the controller's watched directory are\n"
		"removed there, not here.\n"
		"\n" LOUPE_CTL_USAGE "  -h, --help              this help\n");
}

static char *read_input(const char *path, const char **ret_kind)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error perr;
	struct stat st;
	char line[1280], *text;

	if (stat(path, &st)) {
		fprintf(stderr, "loupectl apply: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		*ret_kind = "file";
		text = loupe_rpc_read_file(path, LOUPE_POLICY_FILE_MAX);
		if (!text)
			fprintf(stderr, "loupectl apply: %s: %s\n", path,
				errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
		return text;
	}
	*ret_kind = "directory";
	if (loupe_policy_load_path(path, &set, &perr) < 0) {
		loupe_policy_error_format(&perr, line, sizeof(line));
		fprintf(stderr, "loupectl apply: %s\n", line);
		return NULL;
	}
	text = loupe_policy_set_to_json(set);
	loupe_policy_set_free(set);
	if (!text)
		fprintf(stderr, "loupectl apply: %s: out of memory\n", path);
	return text;
}

static int apply_one(struct loupe_rpc_ctl *ctl, const struct loupe_ctl_conn *conn, const char *path,
		     bool dry_run, bool json)
{
	Loupe__V1__ApplyRequest req = LOUPE__V1__APPLY_REQUEST__INIT;
	Loupe__V1__ApplyResponse *resp;
	const char *kind = "file";
	char *text = read_input(path, &kind);

	if (!text)
		return 1;
	req.json = text;
	req.source = (char *)path;
	req.dry_run = dry_run;
	resp = (Loupe__V1__ApplyResponse *)loupe_ctl_call_pb(
		"apply", conn, ctl, LOUPE_RPC_POLICY_APPLY, &req.base,
		&loupe__v1__apply_response__descriptor);
	free(text);
	if (!resp)
		return 1;
	if (json) {
		loupe_ctl_print_json(&resp->base);
	} else {
		const char *dr = dry_run ? " (dry run)" : "";

		for (size_t i = 0; i < resp->n_warnings; i++)
			fprintf(stderr, "warning: %s\n", resp->warnings[i]);
		for (size_t i = 0; i < resp->n_created; i++)
			printf("policy/%s created%s\n", resp->created[i], dr);
		for (size_t i = 0; i < resp->n_configured; i++)
			printf("policy/%s configured%s\n", resp->configured[i], dr);
		for (size_t i = 0; i < resp->n_unchanged; i++)
			printf("policy/%s unchanged\n", resp->unchanged[i]);
		printf("revision %llu\n", (unsigned long long)resp->revision);
	}
	loupe__v1__apply_response__free_unpacked(resp, NULL);
	return 0;
}

int loupe_cmd_apply(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "filename", required_argument, NULL, 'f' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		LOUPE_CTL_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct loupe_ctl_conn conn;
	struct loupe_rpc_ctl *ctl;
	const char *files[64];
	size_t n = 0;
	bool dry = false, json = false;
	int c, rc = 0;

	loupe_ctl_conn_init(&conn);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f:o:h", opts, NULL)) != -1) {
		if (loupe_ctl_conn_opt(&conn, c, optarg))
			continue;
		switch (c) {
		case 'f':
			if (n == 64)
				return loupe_cmd_usage_error("apply", "at most 64 -f");
			files[n++] = optarg;
			break;
		case 'n':
			dry = true;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "text"))
				return loupe_cmd_usage_error("apply", "-o takes text or json");
			json = !strcmp(optarg, "json");
			break;
		case 'h':
			loupe_cmd_apply_usage(stdout);
			return EXIT_SUCCESS;
		default:
			return loupe_cmd_getopt_error("apply", c, argv);
		}
	}
	if (optind < argc)
		return loupe_cmd_usage_error("apply", "unexpected argument '%s' (files go with -f)",
					     argv[optind]);
	if (!n)
		return loupe_cmd_usage_error("apply", "give the policies with -f FILE|DIR");
	ctl = loupe_ctl_connect("apply", &conn);
	if (!ctl)
		return EXIT_FAILURE;
	for (size_t i = 0; i < n && !rc; i++)
		rc = apply_one(ctl, &conn, files[i], dry, json);
	loupe_rpc_ctl_close(ctl);
	return rc ? EXIT_FAILURE : EXIT_SUCCESS;
}

int loupe_cmd_delete(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		LOUPE_CTL_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	Loupe__V1__DeleteRequest req = LOUPE__V1__DELETE_REQUEST__INIT;
	Loupe__V1__DeleteResponse *resp;
	struct loupe_ctl_conn conn;
	struct loupe_rpc_ctl *ctl;
	uint8_t *buf, *out = NULL;
	size_t len, out_len;
	int c, rc = EXIT_FAILURE;

	loupe_ctl_conn_init(&conn);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (loupe_ctl_conn_opt(&conn, c, optarg))
			continue;
		if (c == 'h') {
			loupe_cmd_delete_usage(stdout);
			return EXIT_SUCCESS;
		}
		return loupe_cmd_getopt_error("delete", c, argv);
	}
	if (optind >= argc || (strcmp(argv[optind], "policy") && strcmp(argv[optind], "policies")))
		return loupe_cmd_usage_error("delete", "say what to delete: delete policy NAME...");
	if (optind + 1 >= argc)
		return loupe_cmd_usage_error("delete", "name the policies: delete policy NAME...");
	req.names = argv + optind + 1;
	req.n_names = (size_t)(argc - optind - 1);
	ctl = loupe_ctl_connect("delete", &conn);
	if (!ctl)
		return EXIT_FAILURE;
	len = loupe__v1__delete_request__get_packed_size(&req);
	buf = malloc(len + 1);
	if (buf) {
		loupe__v1__delete_request__pack(&req, buf);
		if (loupe_ctl_call("delete", &conn, ctl, LOUPE_RPC_POLICY_DELETE, buf, len, &out,
				   &out_len)) {
			resp = loupe__v1__delete_response__unpack(NULL, out_len, out);
			if (resp) {
				for (size_t i = 0; i < resp->n_deleted; i++)
					printf("policy/%s deleted\n", resp->deleted[i]);
				printf("revision %llu\n", (unsigned long long)resp->revision);
				loupe__v1__delete_response__free_unpacked(resp, NULL);
				rc = EXIT_SUCCESS;
			}
		}
	}
	free(buf);
	free(out);
	loupe_rpc_ctl_close(ctl);
	return rc;
}
