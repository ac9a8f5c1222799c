/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controller's policy set: a durable store (one file in --store-dir, replaced whole by
 * write, fsync and rename, so a crash leaves the old set or the new one) merged with an
 * optional read-only watched directory (a mounted ConfigMap). Every change of the merged set
 * is a new revision, and the revision is stored too, so it never goes back. Policies are
 * validated by the agent's own parser (agent/src/policy.c) and kept as normalised JSON. Not
 * for pushing to agents or for watching the directory (main.c does both).
 */
#ifndef LOUPE_CONTROLLER_STORE_H
#define LOUPE_CONTROLLER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOUPE_STORE_FILE "policies.json"

struct loupe_store;

struct loupe_store_policy {
	char *name;
	char *json;   /* one Policy object, normalised, on one line */
	char *source; /* the file it was applied from, or the watched file */
	uint64_t revision;
	uint64_t updated_ns; /* CLOCK_REALTIME */
	unsigned int priority;
	bool read_only; /* from the watched directory */
};

/* What an apply did, by name. */
struct loupe_store_result {
	char **created, **configured, **unchanged, **warnings;
	size_t n_created, n_configured, n_unchanged, n_warnings;
	uint64_t revision;
};

/*
 * Loads @dir/policies.json (creating @dir and an empty store when there is none; a leftover
 * policies.json.tmp of an interrupted write is removed) and @watch_dir when given. A store
 * file that does not read back whole and valid is refused: -EINVAL and a sentence in @err
 * naming the file and what to do; nothing is half-loaded. A watched directory that does not
 * load is not fatal: its problem is in loupe_store_watch_error() and it counts as empty.
 */
int loupe_store_open(const char *dir, const char *watch_dir, struct loupe_store **ret, char *err,
		     size_t errsize);
struct loupe_store *loupe_store_close(struct loupe_store *s);

/*
 * Reads the watched directory again. When it loads, its policies replace the watched ones
 * and, if the merged set changed, the revision goes up (*@ret_changed). When it does not, the
 * last good version stays and the problem is returned (-EINVAL, sentence in @err).
 */
int loupe_store_reload_watched(struct loupe_store *s, bool *ret_changed, char *err, size_t errsize);
const char *loupe_store_watch_error(const struct loupe_store *s);

/*
 * Applies a document (one policy, an array or a PolicyList) all or nothing. Returns 0 with
 * @ret filled (free with loupe_store_result_free()), -EINVAL for a policy the parser refuses
 * or a merged set over the limits, -EPERM for a name of the watched directory, -errno when
 * the store cannot be written (the set in memory stays the old one); a sentence in @err.
 */
int loupe_store_apply(struct loupe_store *s, const char *json, size_t len, const char *source,
		      bool dry_run, struct loupe_store_result *ret, char *err, size_t errsize);
void loupe_store_result_free(struct loupe_store_result *r);

/* Deletes @names all or nothing: -ENOENT for an unknown one, -EPERM for a watched one. */
int loupe_store_delete(struct loupe_store *s, char *const *names, size_t n, char *err,
		       size_t errsize);

uint64_t loupe_store_revision(const struct loupe_store *s);
const char *loupe_store_id(const struct loupe_store *s);

/* The merged set as a loupe.dev/v1 PolicyList (what agents get) and its policy count. */
const char *loupe_store_bundle(const struct loupe_store *s, size_t *ret_len,
			       unsigned int *ret_count);

/* The merged set in evaluation order (priority, then name); valid until the next change. */
size_t loupe_store_list(const struct loupe_store *s, const struct loupe_store_policy *const **ret);

#endif
