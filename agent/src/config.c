// SPDX-License-Identifier: Apache-2.0
/*
 * loupe-agent's flags and environment variables: one table row per setting (flag, variables,
 * default, parser), getopt_long for the command line. Reports the first problem as one
 * sentence for main to print. Not for acting on the settings.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "metrics.h"

extern char **environ;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define DURATION_MAX_MS (24ULL * 3600 * 1000)
#define RINGBUF_MAX	(1ULL << 30)
#define FLOWS_MIN	1024
#define FLOWS_MAX	(1U << 24)
#define OUTPUT_MIN_SIZE (4ULL << 10)
#define OUTPUT_MAX_SIZE (1ULL << 40)
#define BACKUPS_MAX	100

/* Where a value came from, for the error message. */
struct source {
	const char *name; /* "--tc-priority", "LOUPE_TC_PRIORITY" */
	const char *kind; /* "Option ", "Environment variable ", "Default of " */
};

typedef int (*setter_fn)(struct loupe_agent_config *c, const char *v, char *err, size_t errsize);

/* Values in the order of the long options below; a flag's getopt val is OPT_BASE + index. */
enum setting_id {
	S_NODE_NAME,
	S_BPFFS_DIR,
	S_IFACE_GLOBS,
	S_TC_PRIORITY,
	S_STANDALONE,
	S_POLICY,
	S_OUTPUT,
	S_OUTPUT_MAX_SIZE,
	S_OUTPUT_BACKUPS,
	S_OUTPUT_FORMAT,
	S_METRICS_ADDR,
	S_FLOW_IDLE,
	S_FLOW_ACTIVE,
	S_RINGBUF_SIZE,
	S_FLOWS_MAX,
	S_LOG_LEVEL,
	S_UNINSTALL,
	S_CONTROLLER,
	S_TLS_CA,
	S_TLS_CERT,
	S_TLS_KEY,
	S_TLS_SERVER_NAME,
	S_INSECURE,
	S_STATE_DIR,
	S_EVENT_BUFFER,
	S_MAX,
};

#define OPT_BASE 256

struct setting {
	const char *flag;
	int has_arg;
	const char *env[2]; /* in order of precedence; NULL: none */
	const char *def;    /* NULL: computed (node name) or false (bool flags) */
	setter_fn set;
};

static int set_node_name(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_bpffs_dir(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_iface_globs(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_tc_priority(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_standalone(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_policy(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_output(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_output_max_size(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_output_backups(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_output_format(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_metrics_addr(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_flow_idle(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_flow_active(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_ringbuf_size(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_flows_max(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_log_level(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_uninstall(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_controller(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_tls_ca(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_tls_cert(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_tls_key(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_tls_server_name(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_insecure(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_state_dir(struct loupe_agent_config *c, const char *v, char *err, size_t n);
static int set_event_buffer(struct loupe_agent_config *c, const char *v, char *err, size_t n);

static const struct setting settings[S_MAX] = {
	[S_NODE_NAME] = { "node-name",
			  required_argument,
			  { "LOUPE_NODE_NAME", "NODE_NAME" },
			  NULL,
			  set_node_name },
	[S_BPFFS_DIR] = { "bpffs-dir",
			  required_argument,
			  { "LOUPE_BPFFS_DIR" },
			  "/sys/fs/bpf/loupe",
			  set_bpffs_dir },
	[S_IFACE_GLOBS] = { "iface-globs",
			    required_argument,
			    { "LOUPE_IFACE_GLOBS" },
			    LOUPE_CONFIG_DEFAULT_IFACE_GLOBS,
			    set_iface_globs },
	[S_TC_PRIORITY] = { "tc-priority",
			    required_argument,
			    { "LOUPE_TC_PRIORITY" },
			    "1",
			    set_tc_priority },
	[S_STANDALONE] = { "standalone",
			   optional_argument,
			   { "LOUPE_STANDALONE" },
			   "false",
			   set_standalone },
	[S_POLICY] = { "policy", required_argument, { "LOUPE_POLICY" }, NULL, set_policy },
	[S_OUTPUT] = { "output", required_argument, { "LOUPE_OUTPUT" }, "-", set_output },
	[S_OUTPUT_MAX_SIZE] = { "output-max-size",
				required_argument,
				{ "LOUPE_OUTPUT_MAX_SIZE" },
				"100M",
				set_output_max_size },
	[S_OUTPUT_BACKUPS] = { "output-backups",
			       required_argument,
			       { "LOUPE_OUTPUT_BACKUPS" },
			       "5",
			       set_output_backups },
	[S_OUTPUT_FORMAT] = { "output-format",
			      required_argument,
			      { "LOUPE_OUTPUT_FORMAT" },
			      "json",
			      set_output_format },
	[S_METRICS_ADDR] = { "metrics-addr",
			     required_argument,
			     { "LOUPE_METRICS_ADDR" },
			     LOUPE_CONFIG_DEFAULT_METRICS,
			     set_metrics_addr },
	[S_FLOW_IDLE] = { "flow-idle-timeout",
			  required_argument,
			  { "LOUPE_FLOW_IDLE_TIMEOUT" },
			  "30s",
			  set_flow_idle },
	[S_FLOW_ACTIVE] = { "flow-active-timeout",
			    required_argument,
			    { "LOUPE_FLOW_ACTIVE_TIMEOUT" },
			    "5m",
			    set_flow_active },
	[S_RINGBUF_SIZE] = { "ringbuf-size",
			     required_argument,
			     { "LOUPE_RINGBUF_SIZE" },
			     "4M",
			     set_ringbuf_size },
	[S_FLOWS_MAX] = { "flows-max",
			  required_argument,
			  { "LOUPE_FLOWS_MAX" },
			  "65536",
			  set_flows_max },
	[S_LOG_LEVEL] = { "log-level",
			  required_argument,
			  { "LOUPE_LOG_LEVEL" },
			  "info",
			  set_log_level },
	[S_UNINSTALL] = { "uninstall", no_argument, { NULL }, "false", set_uninstall },
	[S_CONTROLLER] = { "controller",
			   required_argument,
			   { "LOUPE_CONTROLLER" },
			   NULL,
			   set_controller },
	[S_TLS_CA] = { "tls-ca", required_argument, { "LOUPE_TLS_CA" }, NULL, set_tls_ca },
	[S_TLS_CERT] = { "tls-cert", required_argument, { "LOUPE_TLS_CERT" }, NULL, set_tls_cert },
	[S_TLS_KEY] = { "tls-key", required_argument, { "LOUPE_TLS_KEY" }, NULL, set_tls_key },
	[S_TLS_SERVER_NAME] = { "tls-server-name",
				required_argument,
				{ "LOUPE_TLS_SERVER_NAME" },
				NULL,
				set_tls_server_name },
	[S_INSECURE] = { "insecure",
			 optional_argument,
			 { "LOUPE_INSECURE" },
			 "false",
			 set_insecure },
	[S_STATE_DIR] = { "state-dir",
			  required_argument,
			  { "LOUPE_STATE_DIR" },
			  "/var/lib/loupe/agent",
			  set_state_dir },
	[S_EVENT_BUFFER] = { "event-buffer",
			     required_argument,
			     { "LOUPE_EVENT_BUFFER" },
			     "100000",
			     set_event_buffer },
};

static const char usage[] =
	"Usage: loupe-agent [OPTION]...\n"
	"Watches the pod veths of this node with eBPF and reports their traffic as events.\n"
	"\n"
	"Every option but --uninstall, --help and --version can also be set through the\n"
	"environment variable shown; the option wins over the variable, and an empty variable\n"
	"counts as unset.\n"
	"\n"
	"  --node-name=NAME          node name put in events (LOUPE_NODE_NAME, else NODE_NAME;\n"
	"                            default: the hostname, lower-cased)\n"
	"  --bpffs-dir=DIR           bpffs directory for pinned programs and maps; an agent\n"
	"                            started later takes them over (LOUPE_BPFFS_DIR;\n"
	"                            default: /sys/fs/bpf/loupe)\n"
	"  --iface-globs=GLOB,...    comma-separated fnmatch(3) globs of pod interface names;\n"
	"                            only veths whose peer is in another network namespace are\n"
	"                            taken (LOUPE_IFACE_GLOBS; default:\n"
	"                            " LOUPE_CONFIG_DEFAULT_IFACE_GLOBS ")\n"
	"  --tc-priority=N           tc filter priority of loupe's programs, 1..65535; 1 runs\n"
	"                            before other filters (LOUPE_TC_PRIORITY; default: 1)\n"
	"  --standalone[=BOOL]       write events to --output instead of sending them to a\n"
	"                            controller (LOUPE_STANDALONE=true|false; default: false)\n"
	"  --policy=FILE|DIR         standalone only: enforce the policies of FILE, or of every\n"
	"                            *.json file of DIR (a mounted ConfigMap too); reloaded on\n"
	"                            SIGHUP and when they change, a refused change keeping the\n"
	"                            set in force; one that is refused at start stops the agent\n"
	"                            (LOUPE_POLICY; default: none, no policy)\n"
	"  --output=PATH             standalone event output, JSON lines: - for stdout, else a\n"
	"                            file (LOUPE_OUTPUT; default: -)\n"
	"  --output-max-size=SIZE    rotate the output file before it exceeds SIZE bytes; K, M,\n"
	"                            G suffixes (powers of 1024); 0 never rotates; else at least\n"
	"                            4K (LOUPE_OUTPUT_MAX_SIZE; default: 100M)\n"
	"  --output-backups=N        rotated files kept, PATH.1 (newest) to PATH.N, 0..100; 0\n"
	"                            truncates at rotation (LOUPE_OUTPUT_BACKUPS; default: 5)\n"
	"  --output-format=FORMAT    json: one loupe.v1.Event per line in proto3 JSON, for\n"
	"                            pipelines; text: one readable line per event, for people\n"
	"                            (LOUPE_OUTPUT_FORMAT; default: json)\n"
	"  --metrics-addr=ADDR:PORT  /metrics, /healthz and /readyz listen address: numeric\n"
	"                            IPv4 or [IPv6], e.g. 0.0.0.0:9750 or [::1]:9750; \"\" or off\n"
	"                            disables (LOUPE_METRICS_ADDR; "
	"default: " LOUPE_CONFIG_DEFAULT_METRICS ")\n"
	"  --flow-idle-timeout=DUR   a flow with no packet for DUR ends with a FLOW_END event;\n"
	"                            DUR is integers with units ms, s, m, h (e.g. 30s, 1m30s),\n"
	"                            1ms..24h (LOUPE_FLOW_IDLE_TIMEOUT; default: 30s)\n"
	"  --flow-active-timeout=DUR a long flow is reported (FLOW_END) every DUR; at least the\n"
	"                            idle timeout, at most 24h (LOUPE_FLOW_ACTIVE_TIMEOUT;\n"
	"                            default: 5m)\n"
	"  --ringbuf-size=SIZE       event ring buffer bytes: a power of two from the page size\n"
	"                            to 1G; K, M, G suffixes (LOUPE_RINGBUF_SIZE; default: 4M)\n"
	"  --flows-max=N             flows tracked per address family, 1024..16777216\n"
	"                            (LOUPE_FLOWS_MAX; default: 65536)\n"
	"  --log-level=LEVEL         error, warn, info or debug (LOUPE_LOG_LEVEL; default: info)\n"
	"  --uninstall               remove every filter, qdisc and pin loupe made, then exit\n"
	"  --controller=ADDR         the controller: HOST:PORT (TLS unless --insecure) or\n"
	"                            unix:PATH (LOUPE_CONTROLLER; needed without --standalone)\n"
	"  --tls-ca=FILE             CA of the controller's certificate, PEM (LOUPE_TLS_CA;\n"
	"                            default: the system's roots)\n"
	"  --tls-cert=FILE           this agent's client certificate for mutual TLS, with\n"
	"  --tls-key=FILE            its key (LOUPE_TLS_CERT, LOUPE_TLS_KEY)\n"
	"  --tls-server-name=NAME    the name to check in the controller's certificate\n"
	"                            (LOUPE_TLS_SERVER_NAME; default: the host of --controller)\n"
	"  --insecure[=BOOL]         plaintext TCP to the controller (LOUPE_INSECURE)\n"
	"  --state-dir=DIR           kept across restarts: the last policy revision (enforced\n"
	"                            at start while the controller is away) and the event seqs\n"
	"                            (LOUPE_STATE_DIR; default: /var/lib/loupe/agent)\n"
	"  --event-buffer=N          events kept until the controller acknowledges them, sent\n"
	"                            again after an outage; past N the oldest are dropped and\n"
	"                            counted in LOST events, 1000..100000000\n"
	"                            (LOUPE_EVENT_BUFFER; default: 100000)\n"
	"  -h, --help                print this help and exit\n"
	"  -V, --version             print the version and exit\n"
	"\n"
	"Exit status: 0 on success, 1 on a runtime failure, 2 on a usage error.\n";

const char *loupe_config_usage(void)
{
	return usage;
}

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (err && n) {
		va_start(ap, fmt);
		vsnprintf(err, n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Decimal digits only: no sign, no blanks. -EINVAL, -ERANGE. */
static int parse_u64(const char *s, const char **ret_end, uint64_t *ret)
{
	uint64_t v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*ret_end = p;
	*ret = v;
	return 0;
}

static int parse_uint(const char *s, uint64_t *ret)
{
	const char *end;
	int err;

	err = parse_u64(s, &end, ret);
	if (err)
		return err;
	return *end ? -EINVAL : 0;
}

/* A byte count with an optional K, M or G (or Ki, Mi, Gi) suffix, powers of 1024. */
static int parse_size(const char *s, uint64_t *ret)
{
	const char *end;
	unsigned int shift = 0;
	uint64_t v;
	int err;

	err = parse_u64(s, &end, &v);
	if (err)
		return err;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (*end == 'i')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = v << shift;
	return 0;
}

/* One or more <integer><unit> terms, unit ms, s, m or h: "30s", "1m30s", "250ms". */
static int parse_duration_ms(const char *s, uint64_t *ret)
{
	const char *p = s;
	uint64_t total = 0, v, mult;
	int err;

	do {
		err = parse_u64(p, &p, &v);
		if (err)
			return err;
		if (strncmp(p, "ms", 2) == 0) {
			mult = 1;
			p += 2;
		} else if (*p == 's') {
			mult = 1000;
			p++;
		} else if (*p == 'm') {
			mult = 60 * 1000;
			p++;
		} else if (*p == 'h') {
			mult = 3600 * 1000;
			p++;
		} else {
			return -EINVAL;
		}
		if (v > (UINT64_MAX - total) / mult)
			return -ERANGE;
		total += v * mult;
	} while (*p);
	*ret = total;
	return 0;
}

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * The setters below write the problem without its subject; the caller prefixes the flag or
 * variable and the value: "--tc-priority \"0\": " + "must be 1..65535".
 */

static int set_node_name(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	size_t len = strlen(v);

	if (len == 0)
		return fail(err, n, "must not be empty");
	if (len >= sizeof(c->node_name))
		return fail(err, n,
			    "is %zu characters long, more than the %zu a node name may have", len,
			    sizeof(c->node_name) - 1);
	for (size_t i = 0; i < len; i++)
		if (!isgraph((unsigned char)v[i]))
			return fail(err, n, "must not contain blanks or control characters");
	memcpy(c->node_name, v, len + 1);
	return 0;
}

static int set_bpffs_dir(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (v[0] != '/')
		return fail(err, n, "must be an absolute path");
	if (strlen(v) >= sizeof(c->bpffs_dir))
		return fail(err, n, "is too long");
	strcpy(c->bpffs_dir, v);
	return 0;
}

static int set_iface_globs(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	unsigned int count = 0;
	const char *p = v;

	for (;;) {
		const char *start, *end;
		size_t len;

		while (*p == ' ')
			p++;
		start = p;
		end = strchrnul(p, ',');
		p = end;
		while (end > start && end[-1] == ' ')
			end--;
		len = (size_t)(end - start);
		if (len == 0)
			return fail(err, n, "has an empty glob: give comma-separated globs");
		if (len >= LOUPE_CONFIG_GLOB_LEN)
			return fail(err, n, "has a glob longer than %d characters",
				    LOUPE_CONFIG_GLOB_LEN - 1);
		if (count == LOUPE_CONFIG_GLOBS_MAX)
			return fail(err, n, "has more than %d globs", LOUPE_CONFIG_GLOBS_MAX);
		memcpy(c->iface_globs[count], start, len);
		c->iface_globs[count][len] = '\0';
		count++;
		if (!*p)
			break;
		p++; /* the comma */
	}
	c->iface_globs_count = count;
	return 0;
}

static int set_tc_priority(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	uint64_t x;

	if (parse_uint(v, &x) || x < 1 || x > 65535)
		return fail(err, n, "must be a number from 1 to 65535");
	c->tc_priority = (uint16_t)x;
	return 0;
}

static int set_standalone(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (parse_bool(v, &c->standalone))
		return fail(err, n, "must be true or false");
	return 0;
}

static int set_policy(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (!v[0])
		return fail(err, n, "must be a policy file or directory");
	if (strlen(v) >= sizeof(c->policy_path))
		return fail(err, n, "is too long");
	strcpy(c->policy_path, v);
	return 0;
}

static int set_output(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (!v[0])
		return fail(err, n, "must be - (stdout) or a file path");
	if (strlen(v) >= sizeof(c->output))
		return fail(err, n, "is too long");
	strcpy(c->output, v);
	return 0;
}

static int set_output_max_size(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	uint64_t x;
	int r;

	r = parse_size(v, &x);
	if (r == -ERANGE || (!r && x > OUTPUT_MAX_SIZE))
		return fail(err, n, "is more than the largest size, 1024G");
	if (r)
		return fail(err, n, "must be a byte count with an optional K, M or G suffix");
	if (x && x < OUTPUT_MIN_SIZE)
		return fail(err, n, "must be 0 (never rotate) or at least 4K");
	c->output_max_size = x;
	return 0;
}

static int set_output_backups(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	uint64_t x;

	if (parse_uint(v, &x) || x > BACKUPS_MAX)
		return fail(err, n, "must be a number from 0 to %d", BACKUPS_MAX);
	c->output_backups = (unsigned int)x;
	return 0;
}

static int set_output_format(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (strcmp(v, "json") == 0)
		c->output_text = false;
	else if (strcmp(v, "text") == 0)
		c->output_text = true;
	else
		return fail(err, n, "must be json or text");
	return 0;
}

static int set_metrics_addr(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r;

	if (!v[0] || strcmp(v, "off") == 0) {
		c->metrics_enabled = false;
		c->metrics_addr[0] = '\0';
		return 0;
	}
	if (strlen(v) >= sizeof(c->metrics_addr))
		return fail(err, n, "is too long");
	r = loupe_metrics_parse_addr(v, &ss, &len);
	if (r)
		return fail(err, n,
			    "must be a numeric IPv4 or bracketed IPv6 address and a port, e.g. "
			    "127.0.0.1:9750 or [::1]:9750, or off");
	if ((ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
				     : ((struct sockaddr_in6 *)&ss)->sin6_port) == 0)
		return fail(err, n, "must have a port from 1 to 65535");
	strcpy(c->metrics_addr, v);
	c->metrics_enabled = true;
	return 0;
}

static int set_duration(uint64_t *ret, const char *v, char *err, size_t n)
{
	uint64_t ms = 0;
	int r;

	r = parse_duration_ms(v, &ms);
	if (r == -EINVAL)
		return fail(err, n,
			    "must be a duration: integers with units ms, s, m or h, e.g. 30s or "
			    "1m30s");
	if (r || ms > DURATION_MAX_MS)
		return fail(err, n, "must be at most 24h");
	if (ms == 0)
		return fail(err, n, "must be more than 0");
	*ret = ms;
	return 0;
}

static int set_flow_idle(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return set_duration(&c->flow_idle_timeout_ms, v, err, n);
}

static int set_flow_active(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return set_duration(&c->flow_active_timeout_ms, v, err, n);
}

static int set_ringbuf_size(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t x;
	int r;

	if (page <= 0)
		page = 4096;
	r = parse_size(v, &x);
	if (r)
		return fail(err, n, "must be a byte count with an optional K, M or G suffix");
	if (x < (uint64_t)page || x > RINGBUF_MAX || (x & (x - 1)))
		return fail(err, n, "must be a power of two from the page size (%ld) to 1G", page);
	c->ringbuf_size = (uint32_t)x;
	return 0;
}

static int set_flows_max(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	uint64_t x;

	if (parse_uint(v, &x) || x < FLOWS_MIN || x > FLOWS_MAX)
		return fail(err, n, "must be a number from %d to %u", FLOWS_MIN, FLOWS_MAX);
	c->flows_max = (uint32_t)x;
	return 0;
}

static int set_log_level(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	int level = loupe_log_level_parse(v);

	if (level < 0)
		return fail(err, n, "must be error, warn, info or debug");
	c->log_level = (enum loupe_log_level)level;
	return 0;
}

static int set_uninstall(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return parse_bool(v, &c->uninstall) ? fail(err, n, "must be true or false") : 0;
}

static int set_path(char *dst, size_t size, const char *v, char *err, size_t n)
{
	if (!v[0])
		return fail(err, n, "must be a file path");
	if (strlen(v) >= size)
		return fail(err, n, "is too long");
	strcpy(dst, v);
	return 0;
}

static int set_controller(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (strncmp(v, "unix:", 5) == 0 ? !v[5] : !strrchr(v, ':'))
		return fail(err, n,
			    "must be HOST:PORT, [IPv6]:PORT or unix:PATH, e.g. "
			    "loupe-controller.loupe:9760");
	return set_path(c->controller, sizeof(c->controller), v, err, n);
}

static int set_tls_ca(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return set_path(c->tls_ca, sizeof(c->tls_ca), v, err, n);
}

static int set_tls_cert(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return set_path(c->tls_cert, sizeof(c->tls_cert), v, err, n);
}

static int set_tls_key(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return set_path(c->tls_key, sizeof(c->tls_key), v, err, n);
}

static int set_tls_server_name(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return set_path(c->tls_server_name, sizeof(c->tls_server_name), v, err, n);
}

static int set_insecure(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	return parse_bool(v, &c->insecure) ? fail(err, n, "must be true or false") : 0;
}

static int set_state_dir(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	if (v[0] != '/')
		return fail(err, n, "must be an absolute path");
	return set_path(c->state_dir, sizeof(c->state_dir), v, err, n);
}

static int set_event_buffer(struct loupe_agent_config *c, const char *v, char *err, size_t n)
{
	uint64_t x;

	if (parse_uint(v, &x) || x < 1000 || x > 100000000)
		return fail(err, n, "must be a number from 1000 to 100000000");
	c->event_buffer = x;
	return 0;
}

/* The value of @name in @envp; NULL when unset or empty. */
static const char *env_get(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return (*envp)[len + 1] ? *envp + len + 1 : NULL;
	return NULL;
}

/* The default node name: the hostname, lower-cased as the kubelet does. */
static int default_node_name(char *buf, size_t size)
{
	if (gethostname(buf, size - 1))
		return -errno;
	buf[size - 1] = '\0';
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* Values longer than this are cut in messages. */
#define ECHO_MAX 64

/* Applies @v from @src through row @id; on failure writes "<src> \"<v>\" <problem>." */
static int apply(struct loupe_agent_config *c, enum setting_id id, const char *v,
		 const struct source *src, char *errbuf, size_t errsize)
{
	char problem[256];
	int err;

	err = settings[id].set(c, v, problem, sizeof(problem));
	if (err)
		return fail(errbuf, errsize, "%s%s \"%.*s%s\" %s.", src->kind, src->name, ECHO_MAX,
			    v, strlen(v) > ECHO_MAX ? "..." : "", problem);
	return 0;
}

/* "option --x", "environment variable X", "default of --x": for the middle of a sentence. */
static void source_mid_sentence(const struct source *src, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s", src->kind, src->name);
	buf[0] = (char)tolower((unsigned char)buf[0]);
}

static void build_longopts(struct option *lo)
{
	for (int i = 0; i < S_MAX; i++)
		lo[i] = (struct option){ settings[i].flag, settings[i].has_arg, NULL,
					 OPT_BASE + i };
	lo[S_MAX] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[S_MAX + 1] = (struct option){ "version", no_argument, NULL, 'V' };
	lo[S_MAX + 2] = (struct option){ NULL, 0, NULL, 0 };
}

static int parse_argv(int argc, char **argv, const char **flag_val, struct loupe_agent_config *ret,
		      char *errbuf, size_t errsize)
{
	struct option lo[S_MAX + 3];
	int opt;

	build_longopts(lo);
	optind = 0; /* glibc: full reinitialisation */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:hV", lo, NULL)) != -1) {
		if (opt == 'h' || opt == 'V') {
			ret->help = opt == 'h';
			ret->version = opt == 'V';
			return 0;
		}
		if (opt >= OPT_BASE && opt < OPT_BASE + S_MAX) {
			/* a bool flag given without a value means true */
			flag_val[opt - OPT_BASE] = optarg ? optarg : "true";
			continue;
		}
		if (opt == ':')
			return fail(errbuf, errsize, "Option --%s needs a value.",
				    optopt >= OPT_BASE && optopt < OPT_BASE + S_MAX
					    ? settings[optopt - OPT_BASE].flag
					    : "?");
		if (optopt >= OPT_BASE && optopt < OPT_BASE + S_MAX)
			return fail(errbuf, errsize, "Option --%s takes no value.",
				    settings[optopt - OPT_BASE].flag);
		if (optopt)
			return fail(errbuf, errsize, "Unknown option -%c; see --help.", optopt);
		return fail(errbuf, errsize, "Unknown or ambiguous option \"%s\"; see --help.",
			    argv[optind - 1]);
	}
	if (optind < argc)
		return fail(errbuf, errsize,
			    "Unexpected argument \"%s\": loupe-agent takes options only.",
			    argv[optind]);
	return 0;
}

int loupe_config_parse(int argc, char **argv, char *const *envp, struct loupe_agent_config *ret,
		       char *errbuf, size_t errsize)
{
	const char *flag_val[S_MAX] = { NULL };
	char flag_name[64], hostname[256], idle_from[128] = "", active_from[128] = "";
	char policy_from[128] = "";
	struct source src = { "", "" };
	const char *v;
	int err;

	memset(ret, 0, sizeof(*ret));
	if (errbuf && errsize)
		errbuf[0] = '\0';
	if (!envp)
		envp = environ;

	err = parse_argv(argc, argv, flag_val, ret, errbuf, errsize);
	if (err || ret->help || ret->version)
		goto out;

	for (int i = 0; i < S_MAX; i++) {
		v = NULL;
		if (flag_val[i]) {
			snprintf(flag_name, sizeof(flag_name), "--%s", settings[i].flag);
			src = (struct source){ flag_name, "Option " };
			v = flag_val[i];
		}
		for (size_t e = 0; !v && e < ARRAY_SIZE(settings[i].env) && settings[i].env[e];
		     e++) {
			v = env_get(envp, settings[i].env[e]);
			src = (struct source){ settings[i].env[e], "Environment variable " };
		}
		if (!v && settings[i].def) {
			v = settings[i].def;
			snprintf(flag_name, sizeof(flag_name), "--%s", settings[i].flag);
			src = (struct source){ flag_name, "Default of " };
		}
		if (!v && i == S_NODE_NAME) {
			err = default_node_name(hostname, sizeof(hostname));
			if (err) {
				err = fail(
					errbuf, errsize,
					"Cannot read the hostname for the default of --node-name "
					"(%s); set --node-name or NODE_NAME.",
					strerror(-err));
				goto out;
			}
			v = hostname;
			src = (struct source){ "The hostname (the default of --node-name)", "" };
		}
		if (!v)
			continue; /* no default: left unset (--policy) */
		err = apply(ret, (enum setting_id)i, v, &src, errbuf, errsize);
		if (err)
			goto out;
		if (i == S_FLOW_IDLE)
			source_mid_sentence(&src, idle_from, sizeof(idle_from));
		if (i == S_FLOW_ACTIVE)
			source_mid_sentence(&src, active_from, sizeof(active_from));
		if (i == S_POLICY)
			snprintf(policy_from, sizeof(policy_from), "%s%s", src.kind, src.name);
	}
	/* with a controller the policies are the controller's: two sources would disagree */
	if (ret->policy_path[0] && !ret->standalone && !ret->uninstall) {
		err = fail(errbuf, errsize,
			   "%s needs --standalone: with a controller the policies come from it; "
			   "add --standalone (or LOUPE_STANDALONE=true) to enforce a local file.",
			   policy_from);
		goto out;
	}
	if (ret->flow_idle_timeout_ms > ret->flow_active_timeout_ms)
		err = fail(errbuf, errsize,
			   "The flow idle timeout (%s, %llu ms) must not exceed the flow active "
			   "timeout (%s, %llu ms).",
			   idle_from, (unsigned long long)ret->flow_idle_timeout_ms, active_from,
			   (unsigned long long)ret->flow_active_timeout_ms);
out:
	return err;
}

bool loupe_config_iface_match(const struct loupe_agent_config *cfg, const char *ifname)
{
	for (unsigned int i = 0; i < cfg->iface_globs_count; i++)
		if (fnmatch(cfg->iface_globs[i], ifname, 0) == 0)
			return true;
	return false;
}
