// SPDX-License-Identifier: Apache-2.0
/*
 * The policy store (see store.h). The file: {"kind":"LoupePolicyStore","storeId","revision",
 * "bundleDigest","policies":[{"name","source","revision","updated","policy":{...}}]}. The
 * digest of the merged set is kept so that a watched directory changed while the controller
 * was down still gets a new revision. Not for the wire or for inotify.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "policy.h"
#include "rpc.h"
#include "store.h"

struct plist {
	struct loupe_store_policy *v;
	size_t n;
};

struct loupe_store {
	char *dir, *path, *watch_dir;
	char store_id[33];
	uint64_t revision;
	uint64_t digest;
	struct plist durable, watched;
	const struct loupe_store_policy **merged;
	size_t n_merged;
	char *bundle;
	size_t bundle_len;
	char watch_error[1024];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t fnv1a(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void policy_clear(struct loupe_store_policy *p)
{
	free(p->name);
	free(p->json);
	free(p->source);
	memset(p, 0, sizeof(*p));
}

static void plist_clear(struct plist *l)
{
	for (size_t i = 0; i < l->n; i++)
		policy_clear(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int plist_copy(const struct plist *from, struct plist *to)
{
	to->n = 0;
	to->v = calloc(from->n + 1, sizeof(*to->v));
	if (!to->v)
		return -ENOMEM;
	for (size_t i = 0; i < from->n; i++) {
		struct loupe_store_policy *d = &to->v[i];

		*d = from->v[i];
		d->name = strdup(from->v[i].name);
		d->json = strdup(from->v[i].json);
		d->source = strdup(from->v[i].source ? from->v[i].source : "");
		to->n++;
		if (!d->name || !d->json || !d->source) {
			plist_clear(to);
			return -ENOMEM;
		}
	}
	return 0;
}

static struct loupe_store_policy *plist_find(const struct plist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return &l->v[i];
	return NULL;
}

static void fmt_perr(const struct loupe_policy_error *e, char *err, size_t n)
{
	loupe_policy_error_format(e, err, n);
}

/*
 * A parsed set as normalised policies: the parser's own JSON form, one object each, without
 * the loupe.dev/source annotation (the source is kept beside it).
 */
static int normalise(const struct loupe_policy_set *set, bool read_only, struct plist *ret)
{
	struct json_object *root, *items;
	char *text = loupe_policy_set_to_json(set);
	size_t n;
	int err = 0;

	memset(ret, 0, sizeof(*ret));
	if (!text)
		return -ENOMEM;
	root = json_tokener_parse(text);
	free(text);
	if (!root || !json_object_object_get_ex(root, "items", &items) ||
	    !json_object_is_type(items, json_type_array)) {
		json_object_put(root);
		return -EINVAL;
	}
	n = json_object_array_length(items);
	ret->v = calloc(n + 1, sizeof(*ret->v));
	if (!ret->v) {
		json_object_put(root);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *item = json_object_array_get_idx(items, i), *md, *name, *ann,
				   *spec, *prio;
		struct loupe_store_policy *p = &ret->v[ret->n];
		const char *nm;

		if (!json_object_object_get_ex(item, "metadata", &md) ||
		    !json_object_object_get_ex(md, "name", &name)) {
			err = -EINVAL;
			break;
		}
		nm = json_object_get_string(name);
		if (json_object_object_get_ex(md, "annotations", &ann)) {
			json_object_object_del(ann, "loupe.dev/source");
			if (json_object_object_length(ann) == 0)
				json_object_object_del(md, "annotations");
		}
		p->priority = 1000;
		if (json_object_object_get_ex(item, "spec", &spec) &&
		    json_object_object_get_ex(spec, "priority", &prio))
			p->priority = (unsigned int)json_object_get_int(prio);
		p->name = strdup(nm);
		p->json = strdup(json_object_to_json_string_ext(
			item, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		p->source = strdup("");
		for (unsigned int k = 0; k < set->n_policies; k++)
			if (!strcmp(set->policies[k].name, nm) && set->policies[k].source) {
				free(p->source);
				p->source = strdup(set->policies[k].source);
			}
		p->read_only = read_only;
		ret->n++;
		if (!p->name || !p->json || !p->source) {
			err = -ENOMEM;
			break;
		}
	}
	json_object_put(root);
	if (err)
		plist_clear(ret);
	return err;
}

static int cmp_policy(const void *a, const void *b)
{
	const struct loupe_store_policy *x = *(const struct loupe_store_policy *const *)a;
	const struct loupe_store_policy *y = *(const struct loupe_store_policy *const *)b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The merged set of @durable and @watched (a watched name hides a durable one). */
static int merge(const struct plist *durable, const struct plist *watched,
		 const struct loupe_store_policy ***ret, size_t *ret_n, char **ret_bundle,
		 size_t *ret_len)
{
	const struct loupe_store_policy **m;
	size_t n = 0, len, off;
	char *b;
	static const char head[] = "{\"apiVersion\":\"" LOUPE_POLICY_API_VERSION
				   "\",\"kind\":\"PolicyList\",\"items\":[";

	m = calloc(durable->n + watched->n + 1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (size_t i = 0; i < watched->n; i++)
		m[n++] = &watched->v[i];
	for (size_t i = 0; i < durable->n; i++)
		if (!plist_find(watched, durable->v[i].name))
			m[n++] = &durable->v[i];
	qsort(m, n, sizeof(*m), cmp_policy);
	len = sizeof(head) + 3;
	for (size_t i = 0; i < n; i++)
		len += strlen(m[i]->json) + 1;
	b = malloc(len);
	if (!b) {
		free(m);
		return -ENOMEM;
	}
	off = (size_t)sprintf(b, "%s", head);
	for (size_t i = 0; i < n; i++)
		off += (size_t)sprintf(b + off, "%s%s", i ? "," : "", m[i]->json);
	off += (size_t)sprintf(b + off, "]}");
	*ret = m;
	*ret_n = n;
	*ret_bundle = b;
	*ret_len = off;
	return 0;
}

/* Validates the merged set of @durable and @watched as one set (names, limits). */
static int check_merged(const struct plist *durable, const struct plist *watched, char *err,
			size_t errsize)
{
	const struct loupe_store_policy **m;
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error perr;
	char *b;
	size_t n, len;
	int r;

	r = merge(durable, watched, &m, &n, &b, &len);
	if (r)
		return r;
	r = loupe_policy_parse(b, len, "the merged policy set", &set, &perr);
	if (r == -EINVAL || r == -EFBIG)
		fmt_perr(&perr, err, errsize);
	loupe_policy_set_clear(&set);
	free(m);
	free(b);
	return r;
}

static int rebuild(struct loupe_store *s)
{
	const struct loupe_store_policy **m;
	char *b;
	size_t n, len;
	int r;

	r = merge(&s->durable, &s->watched, &m, &n, &b, &len);
	if (r)
		return r;
	free(s->merged);
	free(s->bundle);
	s->merged = m;
	s->n_merged = n;
	s->bundle = b;
	s->bundle_len = len;
	return 0;
}

static int save(const struct loupe_store *s, const struct plist *durable, uint64_t revision,
		uint64_t digest)
{
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array();
	char dig[17];
	const char *text;
	int r;

	snprintf(dig, sizeof(dig), "%016" PRIx64, digest);
	json_object_object_add(root, "apiVersion",
			       json_object_new_string(LOUPE_POLICY_API_VERSION));
	json_object_object_add(root, "kind", json_object_new_string("LoupePolicyStore"));
	json_object_object_add(root, "storeId", json_object_new_string(s->store_id));
	json_object_object_add(root, "revision", json_object_new_int64((int64_t)revision));
	json_object_object_add(root, "bundleDigest", json_object_new_string(dig));
	for (size_t i = 0; i < durable->n; i++) {
		const struct loupe_store_policy *p = &durable->v[i];
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(p->name));
		json_object_object_add(o, "source", json_object_new_string(p->source));
		json_object_object_add(o, "revision", json_object_new_int64((int64_t)p->revision));
		json_object_object_add(o, "updated", json_object_new_int64((int64_t)p->updated_ns));
		json_object_object_add(o, "policy", json_tokener_parse(p->json));
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "policies", arr);
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
							    JSON_C_TO_STRING_NOSLASHESCAPE);
	r = loupe_rpc_write_atomic(s->path, text, strlen(text));
	json_object_put(root);
	return r;
}

/* The store file, whole and valid, into s->durable; -EINVAL with a sentence otherwise. */
static int load(struct loupe_store *s, char *err, size_t errsize)
{
	struct json_object *root = NULL, *v, *arr;
	struct loupe_policy_set set = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error perr;
	char *text, *list = NULL, why[1200] = "";
	size_t len = 0;
	int r = -EINVAL;

	text = loupe_rpc_read_file(s->path, 256u << 20);
	if (!text) {
		snprintf(err, errsize, "cannot read the policy store %s: %s", s->path,
			 strerror(errno));
		return -errno;
	}
	root = json_tokener_parse(text);
	if (!root || !json_object_is_type(root, json_type_object)) {
		snprintf(why, sizeof(why), "it is not whole JSON");
		goto out;
	}
	if (!json_object_object_get_ex(root, "kind", &v) ||
	    strcmp(json_object_get_string(v), "LoupePolicyStore") ||
	    !json_object_object_get_ex(root, "storeId", &v) ||
	    strlen(json_object_get_string(v)) != 32) {
		snprintf(why, sizeof(why), "it is not a loupe policy store (kind, storeId)");
		goto out;
	}
	snprintf(s->store_id, sizeof(s->store_id), "%s", json_object_get_string(v));
	if (!json_object_object_get_ex(root, "revision", &v) ||
	    !json_object_is_type(v, json_type_int)) {
		snprintf(why, sizeof(why), "it has no revision");
		goto out;
	}
	s->revision = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(root, "bundleDigest", &v))
		s->digest = strtoull(json_object_get_string(v), NULL, 16);
	if (!json_object_object_get_ex(root, "policies", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		snprintf(why, sizeof(why), "it has no policies array");
		goto out;
	}
	/* every policy through the parser, as one set: all of it is valid or none is taken */
	{
		size_t n = json_object_array_length(arr), off;

		len = 64;
		for (size_t i = 0; i < n; i++) {
			struct json_object *pol;

			if (!json_object_object_get_ex(json_object_array_get_idx(arr, i), "policy",
						       &pol)) {
				snprintf(why, sizeof(why), "policies[%zu] has no policy", i);
				goto out;
			}
			len += strlen(json_object_to_json_string(pol)) + 1;
		}
		list = malloc(len);
		if (!list) {
			r = -ENOMEM;
			goto out;
		}
		off = (size_t)sprintf(list, "[");
		for (size_t i = 0; i < n; i++) {
			struct json_object *pol;

			json_object_object_get_ex(json_object_array_get_idx(arr, i), "policy",
						  &pol);
			off += (size_t)sprintf(list + off, "%s%s", i ? "," : "",
					       json_object_to_json_string(pol));
		}
		off += (size_t)sprintf(list + off, "]");
		if (loupe_policy_parse(list, off, s->path, &set, &perr)) {
			char pe[1024];

			fmt_perr(&perr, pe, sizeof(pe));
			snprintf(why, sizeof(why), "a stored policy is invalid: %s", pe);
			goto out;
		}
		r = normalise(&set, false, &s->durable);
		if (r)
			goto out;
		for (size_t i = 0; i < n && i < s->durable.n; i++) {
			struct json_object *o = json_object_array_get_idx(arr, i), *x;
			struct loupe_store_policy *p;

			if (!json_object_object_get_ex(o, "name", &x))
				continue;
			p = plist_find(&s->durable, json_object_get_string(x));
			if (!p)
				continue;
			if (json_object_object_get_ex(o, "source", &x)) {
				free(p->source);
				p->source = strdup(json_object_get_string(x));
			}
			if (json_object_object_get_ex(o, "revision", &x))
				p->revision = (uint64_t)json_object_get_int64(x);
			if (json_object_object_get_ex(o, "updated", &x))
				p->updated_ns = (uint64_t)json_object_get_int64(x);
		}
	}
	r = 0;
out:
	if (r == -EINVAL)
		snprintf(
			err, errsize,
			"the policy store %s is damaged: %s. The controller does not start with "
			"part of a policy set: restore the file from a backup, or move it aside to "
			"start with an empty store (agents keep enforcing until then)",
			s->path, why);
	loupe_policy_set_clear(&set);
	json_object_put(root);
	free(list);
	free(text);
	return r;
}

static int load_watched(struct loupe_store *s, struct plist *ret, char *err, size_t errsize)
{
	struct loupe_policy_set *set = NULL;
	struct loupe_policy_error perr;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = loupe_policy_load_path(s->watch_dir, &set, &perr);
	if (r) {
		fmt_perr(&perr, err, errsize);
		if (!err[0])
			snprintf(err, errsize, "%s: %s", s->watch_dir, strerror(-r));
		return r;
	}
	r = normalise(set, true, ret);
	loupe_policy_set_free(set);
	for (size_t i = 0; i < ret->n; i++)
		ret->v[i].updated_ns = now_ns();
	return r;
}

int loupe_store_open(const char *dir, const char *watch_dir, struct loupe_store **ret, char *err,
		     size_t errsize)
{
	struct loupe_store *s = calloc(1, sizeof(*s));
	struct stat st;
	char *tmp = NULL;
	int r;

	if (!s)
		return -ENOMEM;
	s->dir = strdup(dir);
	s->watch_dir = watch_dir && watch_dir[0] ? strdup(watch_dir) : NULL;
	if (asprintf(&s->path, "%s/%s", dir, LOUPE_STORE_FILE) < 0 ||
	    asprintf(&tmp, "%s.tmp", s->path) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	r = loupe_rpc_mkdirs(dir, 0700);
	if (r) {
		snprintf(err, errsize, "cannot create the store directory %s: %s", dir,
			 strerror(-r));
		goto fail;
	}
	unlink(tmp); /* a write a crash interrupted: the file it was to replace is intact */
	if (stat(s->path, &st) == 0) {
		r = load(s, err, errsize);
		if (r)
			goto fail;
	} else {
		uint8_t id[16];

		if (getrandom(id, sizeof(id), 0) != sizeof(id)) {
			r = -EIO;
			snprintf(err, errsize, "no randomness for a store id");
			goto fail;
		}
		for (int i = 0; i < 16; i++)
			sprintf(s->store_id + 2 * i, "%02x", id[i]);
	}
	if (s->watch_dir) {
		char werr[1024] = "";

		if (load_watched(s, &s->watched, werr, sizeof(werr)))
			snprintf(s->watch_error, sizeof(s->watch_error), "%s", werr);
		else if (check_merged(&s->durable, &s->watched, werr, sizeof(werr))) {
			snprintf(s->watch_error, sizeof(s->watch_error), "%s", werr);
			plist_clear(&s->watched);
		}
	}
	r = rebuild(s);
	if (r)
		goto fail;
	if (fnv1a(s->bundle, s->bundle_len) != s->digest || stat(s->path, &st) != 0) {
		/* a new store, or the watched directory changed while we were away */
		uint64_t d = fnv1a(s->bundle, s->bundle_len);
		uint64_t rev = s->revision + (s->n_merged || s->revision ? 1 : 0);

		r = save(s, &s->durable, rev, d);
		if (r) {
			snprintf(err, errsize, "cannot write the policy store %s: %s", s->path,
				 strerror(-r));
			goto fail;
		}
		s->revision = rev;
		s->digest = d;
	}
	free(tmp);
	*ret = s;
	return 0;
fail:
	free(tmp);
	loupe_store_close(s);
	return r;
}

struct loupe_store *loupe_store_close(struct loupe_store *s)
{
	if (!s)
		return NULL;
	plist_clear(&s->durable);
	plist_clear(&s->watched);
	free(s->merged);
	free(s->bundle);
	free(s->dir);
	free(s->path);
	free(s->watch_dir);
	free(s);
	return NULL;
}

/* Makes @durable and @watched the set, as revision+1, stored first. */
static int commit(struct loupe_store *s, struct plist *durable, struct plist *watched)
{
	const struct loupe_store_policy **m;
	char *b;
	size_t n, len;
	uint64_t d;
	int r;

	r = merge(durable, watched, &m, &n, &b, &len);
	if (r)
		return r;
	d = fnv1a(b, len);
	r = save(s, durable, s->revision + 1, d);
	free(m);
	free(b);
	if (r)
		return r;
	plist_clear(&s->durable);
	s->durable = *durable;
	if (watched != &s->watched) {
		plist_clear(&s->watched);
		s->watched = *watched;
	}
	s->revision++;
	s->digest = d;
	return rebuild(s);
}

int loupe_store_reload_watched(struct loupe_store *s, bool *ret_changed, char *err, size_t errsize)
{
	struct plist w, dcopy;
	const struct loupe_store_policy **m;
	char *b;
	size_t n, len;
	int r;

	*ret_changed = false;
	if (!s->watch_dir)
		return 0;
	r = load_watched(s, &w, err, errsize);
	if (!r)
		r = check_merged(&s->durable, &w, err, errsize);
	if (r) {
		snprintf(s->watch_error, sizeof(s->watch_error), "%s", err);
		plist_clear(&w);
		return r;
	}
	s->watch_error[0] = '\0';
	/* same set: same revision (a ConfigMap re-sync is not news) */
	for (size_t i = 0; i < w.n; i++) {
		struct loupe_store_policy *old = plist_find(&s->watched, w.v[i].name);

		if (old && !strcmp(old->json, w.v[i].json)) {
			w.v[i].updated_ns = old->updated_ns;
			w.v[i].revision = old->revision;
		} else {
			w.v[i].revision = s->revision + 1;
		}
	}
	r = merge(&s->durable, &w, &m, &n, &b, &len);
	if (r) {
		plist_clear(&w);
		return r;
	}
	free(m);
	if (!strcmp(b, s->bundle) && w.n == s->watched.n) {
		free(b);
		plist_clear(&s->watched);
		s->watched = w;
		return rebuild(s);
	}
	free(b);
	r = plist_copy(&s->durable, &dcopy);
	if (!r)
		r = commit(s, &dcopy, &w);
	if (r) {
		plist_clear(&w);
		snprintf(err, errsize, "cannot write the policy store %s: %s", s->path,
			 strerror(-r));
		return r;
	}
	*ret_changed = true;
	return 0;
}

const char *loupe_store_watch_error(const struct loupe_store *s)
{
	return s->watch_error[0] ? s->watch_error : NULL;
}

static int strv_add(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = strdup(s);
	if (!nv[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void loupe_store_result_free(struct loupe_store_result *r)
{
	strv_free(r->created, r->n_created);
	strv_free(r->configured, r->n_configured);
	strv_free(r->unchanged, r->n_unchanged);
	strv_free(r->warnings, r->n_warnings);
	memset(r, 0, sizeof(*r));
}

int loupe_store_apply(struct loupe_store *s, const char *json, size_t len, const char *source,
		      bool dry_run, struct loupe_store_result *res, char *err, size_t errsize)
{
	struct loupe_policy_set in = LOUPE_POLICY_SET_INIT;
	struct loupe_policy_error perr;
	struct plist items = { 0 }, cand = { 0 };
	bool changed = false;
	uint64_t now = now_ns();
	int r;

	memset(res, 0, sizeof(*res));
	r = loupe_policy_parse(json, len, source && source[0] ? source : "request", &in, &perr);
	if (r == -EINVAL || r == -EFBIG) {
		fmt_perr(&perr, err, errsize);
		goto out;
	}
	if (r)
		goto out;
	for (unsigned int i = 0; i < in.n_warnings; i++) {
		char w[1280];

		fmt_perr(&in.warnings[i], w, sizeof(w));
		strv_add(&res->warnings, &res->n_warnings, w);
	}
	r = normalise(&in, false, &items);
	if (r)
		goto out;
	r = plist_copy(&s->durable, &cand);
	if (r)
		goto out;
	for (size_t i = 0; i < items.n; i++) {
		struct loupe_store_policy *it = &items.v[i], *old;
		const struct loupe_store_policy *w = plist_find(&s->watched, it->name);

		if (w) {
			snprintf(err, errsize,
				 "policy %s comes from the watched directory (%s): change it there",
				 it->name, w->source);
			r = -EPERM;
			goto out;
		}
		free(it->source);
		it->source = strdup(source && source[0] ? source : "");
		it->updated_ns = now;
		it->revision = s->revision + 1;
		old = plist_find(&cand, it->name);
		if (old && !strcmp(old->json, it->json)) {
			strv_add(&res->unchanged, &res->n_unchanged, it->name);
			continue;
		}
		changed = true;
		if (old) {
			strv_add(&res->configured, &res->n_configured, it->name);
			policy_clear(old);
			*old = *it;
		} else {
			struct loupe_store_policy *nv =
				realloc(cand.v, (cand.n + 1) * sizeof(*cand.v));

			if (!nv) {
				r = -ENOMEM;
				goto out;
			}
			cand.v = nv;
			cand.v[cand.n++] = *it;
			strv_add(&res->created, &res->n_created, it->name);
		}
		memset(it, 0, sizeof(*it));
	}
	r = check_merged(&cand, &s->watched, err, errsize);
	if (r)
		goto out;
	res->revision = s->revision;
	if (!changed || dry_run)
		goto out;
	r = commit(s, &cand, &s->watched);
	if (r) {
		snprintf(err, errsize, "cannot write the policy store %s: %s", s->path,
			 strerror(-r));
		goto out;
	}
	memset(&cand, 0, sizeof(cand)); /* the store's now */
	res->revision = s->revision;
out:
	plist_clear(&items);
	plist_clear(&cand);
	loupe_policy_set_clear(&in);
	if (r)
		loupe_store_result_free(res);
	return r;
}

int loupe_store_delete(struct loupe_store *s, char *const *names, size_t n, char *err,
		       size_t errsize)
{
	struct plist cand;
	int r;

	for (size_t i = 0; i < n; i++) {
		const struct loupe_store_policy *w = plist_find(&s->watched, names[i]);

		if (w) {
			snprintf(err, errsize,
				 "policy %s comes from the watched directory (%s): remove it there",
				 names[i], w->source);
			return -EPERM;
		}
		if (!plist_find(&s->durable, names[i])) {
			snprintf(err, errsize, "there is no policy %s", names[i]);
			return -ENOENT;
		}
	}
	r = plist_copy(&s->durable, &cand);
	if (r)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct loupe_store_policy *p = plist_find(&cand, names[i]);

		if (!p)
			continue; /* named twice */
		policy_clear(p);
		*p = cand.v[--cand.n];
		memset(&cand.v[cand.n], 0, sizeof(cand.v[0]));
	}
	r = commit(s, &cand, &s->watched);
	if (r) {
		plist_clear(&cand);
		snprintf(err, errsize, "cannot write the policy store %s: %s", s->path,
			 strerror(-r));
	}
	return r;
}

uint64_t loupe_store_revision(const struct loupe_store *s)
{
	return s->revision;
}

const char *loupe_store_id(const struct loupe_store *s)
{
	return s->store_id;
}

const char *loupe_store_bundle(const struct loupe_store *s, size_t *ret_len,
			       unsigned int *ret_count)
{
	if (ret_len)
		*ret_len = s->bundle_len;
	if (ret_count)
		*ret_count = (unsigned int)s->n_merged;
	return s->bundle;
}

size_t loupe_store_list(const struct loupe_store *s, const struct loupe_store_policy *const **ret)
{
	*ret = s->merged;
	return s->n_merged;
}
