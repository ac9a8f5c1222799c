/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policies (loupe.dev/v1 Policy): the parser and validator, from JSON text, a file or a
 * directory (a mounted ConfigMap too) to plain C structs, and back to normalised JSON.
 * Refuses a document with the JSON path of the first problem and a sentence. Not for
 * precedence at run time, compiling to maps or enforcing (the compiler and the datapath).
 * The format and its meaning: docs/policy.md; rewrites and rate limits: docs/rewrite.md.
 */
#ifndef LOUPE_POLICY_H
#define LOUPE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOUPE_POLICY_API_VERSION "loupe.dev/v1"

/* Limits; docs/policy.md lists them. */
#define LOUPE_POLICY_SET_MAX	      1024	 /* policies in a set */
#define LOUPE_POLICY_RULES_MAX	      256	 /* rules in a policy */
#define LOUPE_POLICY_SET_RULES_MAX    10000	 /* rules in a set, all policies together */
#define LOUPE_POLICY_LIST_MAX	      64	 /* entries of any list: cidrs, ports, names, ... */
#define LOUPE_POLICY_FILE_MAX	      (4u << 20) /* bytes of one file (one parse) */
#define LOUPE_POLICY_NAME_MAX	      63	 /* metadata.name and rule names (DNS-1123 label) */
#define LOUPE_POLICY_DNS_NAME_MAX     253 /* host, SNI and DNS names, without a trailing dot */
#define LOUPE_POLICY_HTTP_PATH_MAX    255 /* an http.paths prefix, as the datapath keeps */
#define LOUPE_POLICY_GLOB_MAX	      64  /* a podSelector.interfaces glob */
#define LOUPE_POLICY_LABEL_MAX	      63  /* a label value, and a label key's name part */
#define LOUPE_POLICY_PRIORITY_DEFAULT 1000
#define LOUPE_POLICY_REWRITES_MAX     64	   /* rewrites in a policy */
#define LOUPE_POLICY_SET_REWRITES_MAX 256	   /* rewrites in a set (LOUPE_REWRITES_MAX) */
#define LOUPE_POLICY_MASK_HEADERS_MAX 8		   /* http.maskHeaders (LOUPE_MASK_HEADERS_MAX) */
#define LOUPE_POLICY_HEADER_NAME_MAX  64	   /* a maskHeaders name */
#define LOUPE_POLICY_RATE_MAX	      (1ULL << 40) /* rateLimits[].bytesPerSecond */
#define LOUPE_POLICY_BURST_MAX	      (1ULL << 32) /* rateLimits[].burst, bytes */
/* the least default burst: a GSO packet of a pod's TCP flow is up to 64 KiB, and a token
 * bucket never passes a packet larger than its burst */
#define LOUPE_POLICY_BURST_MIN_DEFAULT 65536

enum loupe_policy_action {
	LOUPE_POLICY_ACTION_NONE = 0, /* defaultAction left out: no opinion */
	LOUPE_POLICY_ACTION_ALLOW,
	LOUPE_POLICY_ACTION_DENY,
	LOUPE_POLICY_ACTION_AUDIT,
};

/* From the pod's point of view: who opened the flow. */
enum loupe_policy_direction {
	LOUPE_POLICY_EGRESS = 1,
	LOUPE_POLICY_INGRESS,
};

enum loupe_policy_protocol {
	LOUPE_POLICY_TCP = 1,
	LOUPE_POLICY_UDP,
	LOUPE_POLICY_ICMP, /* ICMP for IPv4, ICMPv6 for IPv6 */
};

/* The one L7 protocol a rule matches on, if any. */
enum loupe_policy_l7 {
	LOUPE_POLICY_L7_NONE = 0,
	LOUPE_POLICY_L7_HTTP,
	LOUPE_POLICY_L7_TLS,
	LOUPE_POLICY_L7_DNS,
};

/* http.methods as bits, in this order (the datapath's list of standard methods). */
enum loupe_policy_http_method {
	LOUPE_POLICY_HTTP_GET,
	LOUPE_POLICY_HTTP_HEAD,
	LOUPE_POLICY_HTTP_POST,
	LOUPE_POLICY_HTTP_PUT,
	LOUPE_POLICY_HTTP_DELETE,
	LOUPE_POLICY_HTTP_CONNECT,
	LOUPE_POLICY_HTTP_OPTIONS,
	LOUPE_POLICY_HTTP_TRACE,
	LOUPE_POLICY_HTTP_PATCH,
	LOUPE_POLICY_HTTP_METHODS_N,
};

struct loupe_policy_label {
	char *key;
	char *value;
};

struct loupe_policy_cidr {
	int family;	    /* AF_INET or AF_INET6 */
	uint8_t prefix_len; /* a bare address is /32 or /128 */
	uint8_t addr[16];   /* network order, host bits zero; IPv4 in the first 4 bytes */
};

struct loupe_policy_port {
	enum loupe_policy_protocol protocol; /* TCP when the policy leaves it out */
	uint16_t port;			     /* 1..65535; 0 for ICMP */
	uint16_t end_port;		     /* >= port; = port without endPort; 0 for ICMP */
};

struct loupe_policy_name {
	char *name;    /* lower case, no trailing dot; a wildcard keeps its "*." */
	bool wildcard; /* "*.suffix": any name with at least one more label under suffix */
	uint16_t port; /* http.hosts only: the ":port" suffix; 0 for any port */
};

struct loupe_policy_names {
	struct loupe_policy_name *v;
	unsigned int n;
};

/* An empty list (n == 0) means the field was left out: it does not restrict. */
struct loupe_policy_match {
	struct loupe_policy_cidr *cidrs; /* the peer's address */
	unsigned int n_cidrs;
	struct loupe_policy_port *ports; /* the server's port: the peer's in egress */
	unsigned int n_ports;
	enum loupe_policy_l7 l7;
	struct {
		uint32_t methods; /* bits of enum loupe_policy_http_method; 0: any */
		char **paths;	  /* byte prefixes of the request target */
		unsigned int n_paths;
		struct loupe_policy_names hosts;
	} http;
	struct loupe_policy_names tls_sni;
	struct loupe_policy_names dns_names;
};

struct loupe_policy_rule {
	char *name;
	enum loupe_policy_direction direction;
	struct loupe_policy_match match;
	enum loupe_policy_action action; /* never NONE */
};

/* What a rewrite does: bits of loupe_policy_rewrite.actions (docs/rewrite.md). */
enum loupe_policy_rewrite_action {
	LOUPE_POLICY_RW_MAP = 1 << 0,	    /* mapTo */
	LOUPE_POLICY_RW_DSCP = 1 << 1,	    /* setDscp */
	LOUPE_POLICY_RW_VLAN_PUSH = 1 << 2, /* vlan.push */
	LOUPE_POLICY_RW_VLAN_POP = 1 << 3,  /* vlan.pop */
	LOUPE_POLICY_RW_MASK = 1 << 4,	    /* http.maskHeaders */
};

/* spec.rewrites[]: decided on a flow's first packet, so its match has no http, tls or dns. */
struct loupe_policy_rewrite {
	char *name; /* unique among the policy's rules and rewrites */
	enum loupe_policy_direction direction;
	struct loupe_policy_match match; /* cidrs and ports only: l7 is NONE */
	uint32_t actions;		 /* bits of enum loupe_policy_rewrite_action, never 0 */
	struct {
		int family;	  /* AF_INET or AF_INET6 */
		uint8_t addr[16]; /* network order; IPv4 in the first 4 bytes */
		uint16_t port;	  /* 0: the flow's port is kept */
	} map_to;		  /* LOUPE_POLICY_RW_MAP; egress only */
	uint8_t dscp;		  /* LOUPE_POLICY_RW_DSCP: 0..63 */
	uint16_t vlan_id;	  /* LOUPE_POLICY_RW_VLAN_PUSH: 1..4094 */
	char **mask_headers;	  /* LOUPE_POLICY_RW_MASK: lower case, unique */
	unsigned int n_mask_headers;
};

/* spec.rateLimits[]: a token bucket per pod interface and direction. */
struct loupe_policy_rate_limit {
	enum loupe_policy_direction direction;
	uint64_t bytes_per_sec; /* 1..LOUPE_POLICY_RATE_MAX */
	uint64_t burst;		/* bytes, 1..LOUPE_POLICY_BURST_MAX; filled in when left out */
};

/* Each field that is given must match (AND); nothing given selects every pod. */
struct loupe_policy_selector {
	char **interfaces; /* fnmatch globs on the host-side interface name */
	unsigned int n_interfaces;
	struct loupe_policy_cidr *cidrs; /* the pod's address */
	unsigned int n_cidrs;
	struct loupe_policy_label *labels; /* not evaluated yet: see docs/policy.md */
	unsigned int n_labels;
};

struct loupe_policy {
	char *name;
	char *source;			   /* the file (or source name) it was read from */
	char *doc_path;			   /* where it sat in its file: "", "[3]" or "items[3]" */
	struct loupe_policy_label *labels; /* metadata.labels, sorted by key */
	unsigned int n_labels;
	uint16_t priority; /* lower first */
	struct loupe_policy_selector selector;
	enum loupe_policy_action default_action;
	struct loupe_policy_rule *rules;
	unsigned int n_rules;
	struct loupe_policy_rewrite *rewrites; /* in the order written */
	unsigned int n_rewrites;
	struct loupe_policy_rate_limit rate_limits[2]; /* at most one per direction */
	unsigned int n_rate_limits;
};

/*
 * A problem with a document. path is the JSON path of the value at fault ("spec.rules[2]
 * .match.ports[0].endPort"), "" for the document as a whole; line and column (1-based,
 * column in characters) say where it is in the text, 0 when unknown. message is one sentence
 * without the path.
 */
struct loupe_policy_error {
	char source[256];
	char path[256];
	unsigned int line;
	unsigned int column;
	char message[512];
};

struct loupe_policy_set {
	struct loupe_policy *policies; /* in the order they were read */
	unsigned int n_policies;
	unsigned int n_rules;	 /* all policies together */
	unsigned int n_rewrites; /* all policies together */
	/* Things that are valid but probably not what was meant; never a reason to refuse. */
	struct loupe_policy_error *warnings;
	unsigned int n_warnings;
	unsigned int cap_policies, cap_warnings; /* private */
};

/* An empty set: what a zeroed struct loupe_policy_set is too. */
#define LOUPE_POLICY_SET_INIT                                                                      \
	{                                                                                          \
		0                                                                                  \
	}

/*
 * Parses and validates @len bytes of JSON (one policy, an array of policies or a PolicyList)
 * and appends its policies to @set. All or nothing: on an error @set is unchanged, the
 * problem is in @ret_err (may be NULL) and the return is -EINVAL (invalid), -EFBIG (larger
 * than LOUPE_POLICY_FILE_MAX) or -ENOMEM. Names must be unique across @set. Warnings go to
 * set->warnings. @source_name names the text in messages (a file name).
 */
int loupe_policy_parse(const char *json, size_t len, const char *source_name,
		       struct loupe_policy_set *set, struct loupe_policy_error *ret_err);

/*
 * Reads a file, or every "*.json" file of a directory (not its subdirectories) in byte order
 * of their names, into a new set. Names beginning with '.' are skipped; when the directory is
 * a mounted ConfigMap (it has a "..data" link), the files are read from the directory that
 * ..data points to, so one load sees one version of the ConfigMap. On success *@ret is the
 * set (free with loupe_policy_set_free()); on an error *@ret is untouched and the error is
 * returned as loupe_policy_parse() does, or -errno when a file cannot be read.
 */
int loupe_policy_load_path(const char *file_or_dir, struct loupe_policy_set **ret,
			   struct loupe_policy_error *ret_err);

/* Frees what @set holds and leaves it empty (reusable); accepts NULL. */
void loupe_policy_set_clear(struct loupe_policy_set *set);

/* Frees a set from loupe_policy_load_path() or one malloc'd by the caller; returns NULL. */
struct loupe_policy_set *loupe_policy_set_free(struct loupe_policy_set *set);

/* Sorts the policies into evaluation order: priority, then name (docs/policy.md). */
void loupe_policy_set_sort(struct loupe_policy_set *set);

/*
 * The set as normalised JSON, a PolicyList that parses back to the same structs: names in
 * lower case, defaults filled in, each policy's source in the annotation loupe.dev/source.
 * A malloc'd string (pretty-printed, no final newline), or NULL with errno set.
 */
char *loupe_policy_set_to_json(const struct loupe_policy_set *set);

/*
 * "<source>: <path>: <message> (line L, column C)", the parts that are unknown left out; one
 * line, no newline. Returns what snprintf() does.
 */
int loupe_policy_error_format(const struct loupe_policy_error *e, char *buf, size_t size);

/*
 * Sets *@e, when @e is not NULL, to a message with no source, path or position: what is
 * refused after parsing (compiling, applying a set).
 */
void loupe_policy_error_setf(struct loupe_policy_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

const char *loupe_policy_action_name(enum loupe_policy_action a);
const char *loupe_policy_direction_name(enum loupe_policy_direction d);
const char *loupe_policy_protocol_name(enum loupe_policy_protocol p);
const char *loupe_policy_http_method_name(enum loupe_policy_http_method m);

#endif
