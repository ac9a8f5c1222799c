/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loupe-agent's settings: command-line flags, environment variables for the ones a DaemonSet
 * sets, defaults, and the checks on each. Pure: parses into a plain struct and reports the
 * first problem as one sentence; never prints, never exits. Not for applying settings.
 */
#ifndef LOUPE_CONFIG_H
#define LOUPE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define LOUPE_CONFIG_NODE_NAME_MAX 254 /* a DNS subdomain (253) + NUL */
#define LOUPE_CONFIG_GLOBS_MAX	   32
#define LOUPE_CONFIG_GLOB_LEN	   64 /* one glob, NUL included */
#define LOUPE_CONFIG_ADDR_LEN	   64 /* "[v6 address]:port" + NUL */

/*
 * Default pod interface globs, the host side of a pod's veth: veth* (bridge, ptp, flannel,
 * kindnet, weave, kube-router), cali* (Calico), lxc* (Cilium), eni* (AWS VPC CNI), gke* (GKE),
 * azv* (Azure CNI), vxc*, tap*, pod* (other CNIs and VM runtimes). A matching link is only
 * taken when it is a veth whose peer lives in another network namespace.
 */
#define LOUPE_CONFIG_DEFAULT_IFACE_GLOBS "veth*,cali*,lxc*,eni*,gke*,azv*,vxc*,tap*,pod*"
#define LOUPE_CONFIG_DEFAULT_METRICS	 "127.0.0.1:9750"

struct loupe_agent_config {
	char node_name[LOUPE_CONFIG_NODE_NAME_MAX];
	char bpffs_dir[PATH_MAX];
	char iface_globs[LOUPE_CONFIG_GLOBS_MAX][LOUPE_CONFIG_GLOB_LEN];
	unsigned int iface_globs_count; /* >= 1 */
	uint16_t tc_priority;		/* 1..65535 */
	bool standalone;
	/*
	 * --policy: a policy file or directory, loaded at start and reloaded on SIGHUP and when
	 * it changes; "": none. Only with --standalone (a controller brings its own policies).
	 */
	char policy_path[PATH_MAX];
	char output[PATH_MAX];	  /* "-": stdout, else a file path */
	uint64_t output_max_size; /* bytes; 0: never rotate */
	unsigned int output_backups;
	bool output_text;     /* --output-format text: readable lines instead of JSON */
	bool metrics_enabled; /* false: --metrics-addr "" or "off" */
	char metrics_addr[LOUPE_CONFIG_ADDR_LEN]; /* checked by loupe_metrics_parse_addr() */
	uint64_t flow_idle_timeout_ms;		  /* > 0 */
	uint64_t flow_active_timeout_ms;	  /* >= flow_idle_timeout_ms */
	uint32_t ringbuf_size;			  /* power of two, page size .. 1 GiB */
	uint32_t flows_max;			  /* per address family */
	enum loupe_log_level log_level;
	bool uninstall;
	/* the controller connection (not --standalone); see docs/controller.md */
	char controller[512];	 /* "host:port", "[v6]:port", "unix:/path"; "": none */
	char tls_ca[PATH_MAX];	 /* "": the system's roots */
	char tls_cert[PATH_MAX]; /* client certificate for mutual TLS, with tls_key */
	char tls_key[PATH_MAX];
	char tls_server_name[256]; /* the name to check in the controller's certificate */
	bool insecure;		   /* plaintext TCP to the controller */
	char state_dir[PATH_MAX];  /* the last policy revision and the event seqs, kept */
	uint64_t event_buffer;	   /* events kept until the controller acknowledges them */
	bool help;    /* --help: print loupe_config_usage(), exit 0; other fields unset */
	bool version; /* --version: likewise */
};

/*
 * Fills @ret from @argv, then the environment (@envp, or environ when NULL), then defaults:
 * a flag wins over its variable, a variable over the default. An empty variable counts as
 * unset. Stops at the first problem: returns -EINVAL and writes one sentence naming the flag
 * or variable and what is wrong into @errbuf (main prints it and exits 2). With --help or
 * --version returns 0 with ret->help or ret->version set, whatever the other settings are.
 * getopt_long's state (optind) is reset, so it may be called again.
 */
int loupe_config_parse(int argc, char **argv, char *const *envp, struct loupe_agent_config *ret,
		       char *errbuf, size_t errsize);

/* The --help text: every flag, its variable and its default. */
const char *loupe_config_usage(void);

/* Whether @ifname matches one of the configured interface globs (fnmatch). */
bool loupe_config_iface_match(const struct loupe_agent_config *cfg, const char *ifname);

#endif
