// SPDX-License-Identifier: Apache-2.0
/*
 * loupe_config_parse(): defaults, every flag and its variable, flag over variable, each
 * rule's rejection with a sentence naming the flag or variable, --help and --version, and
 * the usage text documenting every flag. Not for acting on the settings.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct loupe_agent_config cfg;
static char err[512];

/* Runs the parser on a NULL-terminated list of arguments after argv[0] and @env. */
static int parse_env(char *const *env, ...)
{
	char *argv[32] = { "loupe-agent" };
	int argc = 1;
	va_list ap;
	char *a;

	va_start(ap, env);
	while ((a = va_arg(ap, char *)) && argc < (int)ARRAY_SIZE(argv) - 1)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return loupe_config_parse(argc, argv, env, &cfg, err, sizeof(err));
}

static char *const no_env[] = { NULL };

#define parse(...) parse_env(no_env, __VA_ARGS__, NULL)

/* The parse fails with -EINVAL and the message contains each of the given strings. */
static void expect_error(int r, const char *must1, const char *must2)
{
	cr_expect_eq(r, -EINVAL, "accepted; expected an error mentioning %s", must1);
	cr_expect_neq(err[0], '\0', "no message");
	cr_expect_not_null(strstr(err, must1), "message \"%s\" lacks \"%s\"", err, must1);
	if (must2)
		cr_expect_not_null(strstr(err, must2), "message \"%s\" lacks \"%s\"", err, must2);
	/* one sentence, no newline: main prints it as is */
	cr_expect_null(strchr(err, '\n'), "message has a newline: %s", err);
}

Test(config, defaults)
{
	char host[256];

	cr_assert_eq(parse(NULL), 0, "%s", err);
	cr_expect_str_eq(err, "");
	gethostname(host, sizeof(host));
	for (char *p = host; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	cr_expect_str_eq(cfg.node_name, host);
	cr_expect_str_eq(cfg.bpffs_dir, "/sys/fs/bpf/loupe");
	cr_expect_eq(cfg.iface_globs_count, 9);
	cr_expect_str_eq(cfg.iface_globs[0], "veth*");
	cr_expect_str_eq(cfg.iface_globs[1], "cali*");
	cr_expect_str_eq(cfg.iface_globs[2], "lxc*");
	cr_expect_str_eq(cfg.iface_globs[8], "pod*");
	cr_expect_eq(cfg.tc_priority, 1);
	cr_expect_not(cfg.standalone);
	cr_expect_str_eq(cfg.output, "-");
	cr_expect_eq(cfg.output_max_size, 100ULL << 20);
	cr_expect_eq(cfg.output_backups, 5);
	cr_expect(cfg.metrics_enabled);
	cr_expect_str_eq(cfg.metrics_addr, "127.0.0.1:9750");
	cr_expect_eq(cfg.flow_idle_timeout_ms, 30000);
	cr_expect_eq(cfg.flow_active_timeout_ms, 300000);
	cr_expect_eq(cfg.ringbuf_size, 4u << 20);
	cr_expect_eq(cfg.flows_max, 65536);
	cr_expect_eq(cfg.log_level, LOUPE_LOG_INFO);
	cr_expect_not(cfg.uninstall);
	cr_expect_not(cfg.help);
	cr_expect_not(cfg.version);
}

Test(config, every_flag)
{
	int r;

	r = parse("--node-name=node-a", "--bpffs-dir", "/sys/fs/bpf/x", "--iface-globs",
		  "veth*, tap?,eth[0-9]", "--tc-priority=65535", "--standalone", "--output",
		  "/var/log/loupe.json", "--output-max-size=512K", "--output-backups=0",
		  "--metrics-addr=[::1]:9751", "--flow-idle-timeout=1m30s",
		  "--flow-active-timeout=2h", "--ringbuf-size=64Ki", "--flows-max=1024",
		  "--log-level=debug", "--uninstall");
	cr_assert_eq(r, 0, "%s", err);
	cr_expect_str_eq(cfg.node_name, "node-a");
	cr_expect_str_eq(cfg.bpffs_dir, "/sys/fs/bpf/x");
	cr_expect_eq(cfg.iface_globs_count, 3);
	cr_expect_str_eq(cfg.iface_globs[0], "veth*");
	cr_expect_str_eq(cfg.iface_globs[1], "tap?");
	cr_expect_str_eq(cfg.iface_globs[2], "eth[0-9]");
	cr_expect_eq(cfg.tc_priority, 65535);
	cr_expect(cfg.standalone);
	cr_expect_str_eq(cfg.output, "/var/log/loupe.json");
	cr_expect_eq(cfg.output_max_size, 512 << 10);
	cr_expect_eq(cfg.output_backups, 0);
	cr_expect(cfg.metrics_enabled);
	cr_expect_str_eq(cfg.metrics_addr, "[::1]:9751");
	cr_expect_eq(cfg.flow_idle_timeout_ms, 90000);
	cr_expect_eq(cfg.flow_active_timeout_ms, 7200000);
	cr_expect_eq(cfg.ringbuf_size, 64 << 10);
	cr_expect_eq(cfg.flows_max, 1024);
	cr_expect_eq(cfg.log_level, LOUPE_LOG_DEBUG);
	cr_expect(cfg.uninstall);
}

Test(config, every_variable)
{
	char *const env[] = { "NODE_NAME=node-env",
			      "LOUPE_BPFFS_DIR=/sys/fs/bpf/env",
			      "LOUPE_IFACE_GLOBS=cali*",
			      "LOUPE_TC_PRIORITY=7",
			      "LOUPE_STANDALONE=true",
			      "LOUPE_OUTPUT=/tmp/out.json",
			      "LOUPE_OUTPUT_MAX_SIZE=1G",
			      "LOUPE_OUTPUT_BACKUPS=100",
			      "LOUPE_METRICS_ADDR=0.0.0.0:9000",
			      "LOUPE_FLOW_IDLE_TIMEOUT=250ms",
			      "LOUPE_FLOW_ACTIVE_TIMEOUT=1s",
			      "LOUPE_RINGBUF_SIZE=1G",
			      "LOUPE_FLOWS_MAX=16777216",
			      "LOUPE_LOG_LEVEL=warn",
			      NULL };

	cr_assert_eq(parse_env(env, NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.node_name, "node-env");
	cr_expect_str_eq(cfg.bpffs_dir, "/sys/fs/bpf/env");
	cr_expect_eq(cfg.iface_globs_count, 1);
	cr_expect_str_eq(cfg.iface_globs[0], "cali*");
	cr_expect_eq(cfg.tc_priority, 7);
	cr_expect(cfg.standalone);
	cr_expect_str_eq(cfg.output, "/tmp/out.json");
	cr_expect_eq(cfg.output_max_size, 1ULL << 30);
	cr_expect_eq(cfg.output_backups, 100);
	cr_expect_str_eq(cfg.metrics_addr, "0.0.0.0:9000");
	cr_expect_eq(cfg.flow_idle_timeout_ms, 250);
	cr_expect_eq(cfg.flow_active_timeout_ms, 1000);
	cr_expect_eq(cfg.ringbuf_size, 1u << 30);
	cr_expect_eq(cfg.flows_max, 16777216);
	cr_expect_eq(cfg.log_level, LOUPE_LOG_WARN);
}

Test(config, flag_wins_over_variable)
{
	char *const env[] = { "LOUPE_TC_PRIORITY=7", "LOUPE_OUTPUT=/tmp/env.json",
			      "LOUPE_STANDALONE=true", "LOUPE_LOG_LEVEL=bogus", NULL };

	/* the flag wins even over a variable that would not parse */
	cr_assert_eq(parse_env(env, "--tc-priority", "9", "--output=-", "--standalone=false",
			       "--log-level=error", NULL),
		     0, "%s", err);
	cr_expect_eq(cfg.tc_priority, 9);
	cr_expect_str_eq(cfg.output, "-");
	cr_expect_not(cfg.standalone);
	cr_expect_eq(cfg.log_level, LOUPE_LOG_ERROR);
}

Test(config, last_flag_wins)
{
	cr_assert_eq(parse("--tc-priority=3", "--tc-priority=4"), 0, "%s", err);
	cr_expect_eq(cfg.tc_priority, 4);
}

Test(config, node_name_precedence)
{
	char *const both[] = { "NODE_NAME=generic", "LOUPE_NODE_NAME=specific", NULL };
	char *const generic[] = { "NODE_NAME=generic", NULL };

	cr_assert_eq(parse_env(both, NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.node_name, "specific");
	cr_assert_eq(parse_env(generic, NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.node_name, "generic");
	cr_assert_eq(parse_env(both, "--node-name=flag", NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.node_name, "flag");
}

Test(config, empty_variable_is_unset)
{
	char *const env[] = { "LOUPE_TC_PRIORITY=", "LOUPE_METRICS_ADDR=", NULL };

	cr_assert_eq(parse_env(env, NULL), 0, "%s", err);
	cr_expect_eq(cfg.tc_priority, 1);
	cr_expect(cfg.metrics_enabled);
}

Test(config, environ_when_envp_null)
{
	char *argv[] = { "loupe-agent", NULL };

	setenv("LOUPE_FLOWS_MAX", "2048", 1);
	cr_assert_eq(loupe_config_parse(1, argv, NULL, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(cfg.flows_max, 2048);
	unsetenv("LOUPE_FLOWS_MAX");
}

Test(config, variable_error_names_the_variable)
{
	char *const env[] = { "LOUPE_TC_PRIORITY=0", NULL };

	expect_error(parse_env(env, NULL), "LOUPE_TC_PRIORITY", "\"0\"");
	cr_expect_not_null(strstr(err, "Environment variable"), "%s", err);
}

Test(config, help_and_version)
{
	char *const bad_env[] = { "LOUPE_TC_PRIORITY=0", NULL };

	cr_assert_eq(parse("--help"), 0, "%s", err);
	cr_expect(cfg.help);
	cr_assert_eq(parse("-h"), 0, "%s", err);
	cr_expect(cfg.help);
	cr_assert_eq(parse("--version"), 0, "%s", err);
	cr_expect(cfg.version);
	cr_expect_not(cfg.help);
	cr_assert_eq(parse("-V"), 0, "%s", err);
	cr_expect(cfg.version);
	/* --help works whatever else is wrong after it or in the environment */
	cr_assert_eq(parse_env(bad_env, "--help", "--tc-priority=0", NULL), 0, "%s", err);
	cr_expect(cfg.help);
}

Test(config, command_line_errors)
{
	expect_error(parse("--bogus"), "\"--bogus\"", "Unknown");
	expect_error(parse("-x"), "-x", "Unknown");
	expect_error(parse("--tc-priority"), "--tc-priority", "needs a value");
	expect_error(parse("--output"), "--output", "needs a value");
	expect_error(parse("--uninstall=yes"), "--uninstall", "takes no value");
	expect_error(parse("extra"), "\"extra\"", "Unexpected argument");
	expect_error(parse("--standalone", "extra"), "\"extra\"", NULL);
	expect_error(parse("--", "extra"), "\"extra\"", NULL);
	/* ambiguous abbreviation */
	expect_error(parse("--flow=1s"), "\"--flow=1s\"", NULL);
	/* an unambiguous abbreviation is getopt_long's usual service */
	cr_expect_eq(parse("--tc-prio=5"), 0, "%s", err);
	cr_expect_eq(cfg.tc_priority, 5);
}

Test(config, may_be_called_again)
{
	expect_error(parse("--bogus"), "--bogus", NULL);
	cr_assert_eq(parse("--tc-priority=2"), 0, "%s", err);
	cr_expect_eq(cfg.tc_priority, 2);
	cr_assert_eq(parse("--tc-priority=3"), 0, "%s", err);
	cr_expect_eq(cfg.tc_priority, 3);
}

Test(config, node_name)
{
	char long_name[300];

	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	expect_error(parse("--node-name="), "--node-name", "empty");
	expect_error(parse("--node-name=a b"), "--node-name", "blanks");
	expect_error(parse("--node-name", long_name), "--node-name", "299 characters");
	cr_expect_lt(strlen(err), 200, "the value is cut in the message: %s", err);
	long_name[253] = '\0';
	cr_expect_eq(parse("--node-name", long_name), 0, "%s", err);
}

Test(config, bpffs_dir)
{
	expect_error(parse("--bpffs-dir=relative/dir"), "--bpffs-dir", "absolute");
	expect_error(parse("--bpffs-dir="), "--bpffs-dir", "absolute");
}

Test(config, iface_globs)
{
	char many[512] = "";

	expect_error(parse("--iface-globs="), "--iface-globs", "empty glob");
	expect_error(parse("--iface-globs=veth*,,cali*"), "--iface-globs", "empty glob");
	expect_error(parse("--iface-globs=veth*,"), "--iface-globs", "empty glob");
	expect_error(parse("--iface-globs=veth*, ,cali*"), "--iface-globs", "empty glob");
	for (int i = 0; i < LOUPE_CONFIG_GLOBS_MAX + 1; i++)
		strcat(many, i ? ",g*" : "g*");
	expect_error(parse("--iface-globs", many), "--iface-globs", "more than 32");
	expect_error(parse("--iface-globs=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			   "aaaaaaaaaaaaaaaaaaaaaaa*"),
		     "--iface-globs", "longer than 63");

	cr_assert_eq(parse("--iface-globs=veth*,lxc*"), 0, "%s", err);
	cr_expect(loupe_config_iface_match(&cfg, "veth1234abcd"));
	cr_expect(loupe_config_iface_match(&cfg, "lxc_health"));
	cr_expect_not(loupe_config_iface_match(&cfg, "eth0"));
	cr_expect_not(loupe_config_iface_match(&cfg, "cali123"));
}

Test(config, tc_priority)
{
	expect_error(parse("--tc-priority=0"), "--tc-priority", "1 to 65535");
	expect_error(parse("--tc-priority=65536"), "--tc-priority", "1 to 65535");
	expect_error(parse("--tc-priority=-1"), "--tc-priority", "\"-1\"");
	expect_error(parse("--tc-priority=1x"), "--tc-priority", "\"1x\"");
	expect_error(parse("--tc-priority= 1"), "--tc-priority", NULL);
	expect_error(parse("--tc-priority=99999999999999999999999"), "--tc-priority", NULL);
	cr_expect_eq(parse("--tc-priority=1"), 0, "%s", err);
}

Test(config, standalone_bool)
{
	static const char *const yes[] = { "--standalone=1", "--standalone=true",
					   "--standalone=YES", "--standalone=on" };
	static const char *const no[] = { "--standalone=0", "--standalone=False", "--standalone=no",
					  "--standalone=off" };
	char *const env_bad[] = { "LOUPE_STANDALONE=maybe", NULL };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		cr_assert_eq(parse(yes[i]), 0, "%s", err);
		cr_expect(cfg.standalone, "%s", yes[i]);
		cr_assert_eq(parse(no[i]), 0, "%s", err);
		cr_expect_not(cfg.standalone, "%s", no[i]);
	}
	expect_error(parse("--standalone=maybe"), "--standalone", "true or false");
	expect_error(parse_env(env_bad, NULL), "LOUPE_STANDALONE", "true or false");
}

Test(config, policy)
{
	char *const env[] = { "LOUPE_POLICY=/etc/loupe/policies", "LOUPE_STANDALONE=true", NULL };
	char *const env_no_standalone[] = { "LOUPE_POLICY=/etc/loupe/policies", NULL };
	char *const env_empty[] = { "LOUPE_POLICY=", NULL };

	cr_assert_eq(parse(NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.policy_path, "", "no policy by default");
	cr_assert_eq(parse("--standalone", "--policy=/etc/loupe/p.json"), 0, "%s", err);
	cr_expect_str_eq(cfg.policy_path, "/etc/loupe/p.json");
	cr_assert_eq(parse("--policy", "rel/dir", "--standalone"), 0, "%s", err);
	cr_expect_str_eq(cfg.policy_path, "rel/dir");
	cr_assert_eq(parse_env(env, NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.policy_path, "/etc/loupe/policies");
	cr_expect(cfg.standalone);
	cr_assert_eq(parse_env(env, "--policy=/x.json", NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.policy_path, "/x.json", "the flag wins");
	cr_assert_eq(parse_env(env_empty, NULL), 0, "%s", err);
	cr_expect_str_eq(cfg.policy_path, "", "an empty variable is unset");

	/* with a controller the policies are the controller's: a usage error naming both */
	expect_error(parse("--policy=/etc/loupe/p.json"), "Option --policy", "--standalone");
	expect_error(parse("--policy=/p.json", "--standalone=false"), "--policy", "controller");
	expect_error(parse_env(env_no_standalone, NULL), "Environment variable LOUPE_POLICY",
		     "--standalone");
	expect_error(parse("--standalone", "--policy="), "--policy", "policy file or directory");
	expect_error(parse("--standalone", "--policy"), "--policy", "needs a value");
	/* --uninstall takes every leftover away whatever the policy says */
	cr_expect_eq(parse("--uninstall", "--policy=/p.json"), 0, "%s", err);
}

Test(config, output)
{
	expect_error(parse("--output="), "--output", "file path");
	cr_expect_eq(parse("--output=/x/y.json"), 0, "%s", err);
	cr_expect_str_eq(cfg.output, "/x/y.json");
}

Test(config, output_max_size)
{
	static const struct {
		const char *arg;
		uint64_t want;
	} ok[] = {
		{ "--output-max-size=0", 0 },
		{ "--output-max-size=4096", 4096 },
		{ "--output-max-size=4K", 4096 },
		{ "--output-max-size=4k", 4096 },
		{ "--output-max-size=10M", 10ULL << 20 },
		{ "--output-max-size=10Mi", 10ULL << 20 },
		{ "--output-max-size=3G", 3ULL << 30 },
		{ "--output-max-size=1024G", 1ULL << 40 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		cr_assert_eq(parse(ok[i].arg), 0, "%s: %s", ok[i].arg, err);
		cr_expect_eq(cfg.output_max_size, ok[i].want, "%s", ok[i].arg);
	}
	expect_error(parse("--output-max-size=4095"), "--output-max-size", "at least 4K");
	expect_error(parse("--output-max-size=1025G"), "--output-max-size", "largest");
	expect_error(parse("--output-max-size=99999999999999999G"), "--output-max-size", "largest");
	expect_error(parse("--output-max-size=10T"), "--output-max-size", "suffix");
	expect_error(parse("--output-max-size=10MB"), "--output-max-size", "suffix");
	expect_error(parse("--output-max-size=M"), "--output-max-size", "suffix");
	expect_error(parse("--output-max-size=1.5M"), "--output-max-size", "suffix");
}

Test(config, output_backups)
{
	expect_error(parse("--output-backups=101"), "--output-backups", "0 to 100");
	expect_error(parse("--output-backups=-1"), "--output-backups", "0 to 100");
	expect_error(parse("--output-backups=five"), "--output-backups", "0 to 100");
	cr_expect_eq(parse("--output-backups=100"), 0, "%s", err);
}

Test(config, output_format)
{
	cr_expect_eq(parse(NULL), 0, "%s", err);
	cr_expect_not(cfg.output_text, "json is the default");
	cr_expect_eq(parse("--output-format=text"), 0, "%s", err);
	cr_expect(cfg.output_text);
	cr_expect_eq(parse("--output-format=json"), 0, "%s", err);
	cr_expect_not(cfg.output_text);
	expect_error(parse("--output-format=yaml"), "--output-format", "json or text");
}

Test(config, metrics_addr)
{
	static const char *const good[] = { "--metrics-addr=0.0.0.0:1",
					    "--metrics-addr=10.1.2.3:65535",
					    "--metrics-addr=[::]:9750", "--metrics-addr=[::1]:9750",
					    "--metrics-addr=[fe80::1%1]:9750" };
	static const char *const bad[] = {
		"--metrics-addr=256.1.1.1:1",
		"--metrics-addr=nohost",
		"--metrics-addr=localhost:9750",
		"--metrics-addr=127.0.0.1",
		"--metrics-addr=127.0.0.1:",
		"--metrics-addr=127.0.0.1:65536",
		"--metrics-addr=127.0.0.1:x",
		"--metrics-addr=::1:9750",
		"--metrics-addr=[::1]9750",
		"--metrics-addr=[::1]",
		"--metrics-addr=[]:1",
		"--metrics-addr=:9750",
		"--metrics-addr=[fe80::1%nosuchif0]:1",
	};
	char *const env_off[] = { "LOUPE_METRICS_ADDR=off", NULL };

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		cr_assert_eq(parse(good[i]), 0, "%s: %s", good[i], err);
		cr_expect(cfg.metrics_enabled);
		cr_expect_str_eq(cfg.metrics_addr, good[i] + strlen("--metrics-addr="));
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		expect_error(parse(bad[i]), "--metrics-addr", "numeric IPv4");
	expect_error(parse("--metrics-addr=127.0.0.1:0"), "--metrics-addr", "port from 1");

	cr_assert_eq(parse("--metrics-addr="), 0, "%s", err);
	cr_expect_not(cfg.metrics_enabled);
	cr_expect_str_eq(cfg.metrics_addr, "");
	cr_assert_eq(parse("--metrics-addr=off"), 0, "%s", err);
	cr_expect_not(cfg.metrics_enabled);
	cr_assert_eq(parse_env(env_off, NULL), 0, "%s", err);
	cr_expect_not(cfg.metrics_enabled);
	cr_assert_eq(parse_env(env_off, "--metrics-addr=127.0.0.1:1", NULL), 0, "%s", err);
	cr_expect(cfg.metrics_enabled);
}

Test(config, durations)
{
	static const struct {
		const char *arg;
		uint64_t ms;
	} ok[] = {
		{ "--flow-idle-timeout=1ms", 1 },
		{ "--flow-idle-timeout=250ms", 250 },
		{ "--flow-idle-timeout=2s", 2000 },
		{ "--flow-idle-timeout=3m", 180000 },
		{ "--flow-idle-timeout=1h", 3600000 },
		{ "--flow-idle-timeout=1m30s", 90000 },
		{ "--flow-idle-timeout=1h0m1s5ms", 3601005 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		cr_assert_eq(parse(ok[i].arg, "--flow-active-timeout=24h"), 0, "%s: %s", ok[i].arg,
			     err);
		cr_expect_eq(cfg.flow_idle_timeout_ms, ok[i].ms, "%s", ok[i].arg);
	}
	expect_error(parse("--flow-idle-timeout=30"), "--flow-idle-timeout", "units");
	expect_error(parse("--flow-idle-timeout=30x"), "--flow-idle-timeout", "units");
	expect_error(parse("--flow-idle-timeout=s"), "--flow-idle-timeout", "units");
	expect_error(parse("--flow-idle-timeout=1.5s"), "--flow-idle-timeout", "units");
	expect_error(parse("--flow-idle-timeout=-1s"), "--flow-idle-timeout", "units");
	expect_error(parse("--flow-idle-timeout=0s"), "--flow-idle-timeout", "more than 0");
	expect_error(parse("--flow-active-timeout=0ms"), "--flow-active-timeout", "more than 0");
	expect_error(parse("--flow-active-timeout=25h"), "--flow-active-timeout", "24h");
	expect_error(parse("--flow-active-timeout=99999999999999999999h"), "--flow-active-timeout",
		     "24h");
	expect_error(parse("--flow-active-timeout=9999999999999999h"), "--flow-active-timeout",
		     "24h");
}

Test(config, idle_not_above_active)
{
	char *const env[] = { "LOUPE_FLOW_ACTIVE_TIMEOUT=10s", NULL };

	expect_error(parse("--flow-idle-timeout=10m"), "--flow-idle-timeout",
		     "--flow-active-timeout");
	expect_error(parse_env(env, "--flow-idle-timeout=11s", NULL), "--flow-idle-timeout",
		     "LOUPE_FLOW_ACTIVE_TIMEOUT");
	cr_expect_eq(parse_env(env, "--flow-idle-timeout=10s", NULL), 0, "equal is fine: %s", err);
}

Test(config, ringbuf_size)
{
	long page = sysconf(_SC_PAGESIZE);
	char arg[64];

	snprintf(arg, sizeof(arg), "--ringbuf-size=%ld", page);
	cr_expect_eq(parse(arg), 0, "%s", err);
	cr_expect_eq(cfg.ringbuf_size, (uint32_t)page);
	snprintf(arg, sizeof(arg), "--ringbuf-size=%ld", page / 2);
	expect_error(parse(arg), "--ringbuf-size", "power of two");
	expect_error(parse("--ringbuf-size=3M"), "--ringbuf-size", "power of two");
	expect_error(parse("--ringbuf-size=2G"), "--ringbuf-size", "1G");
	expect_error(parse("--ringbuf-size=0"), "--ringbuf-size", "power of two");
	expect_error(parse("--ringbuf-size=big"), "--ringbuf-size", "suffix");
	cr_expect_eq(parse("--ringbuf-size=1G"), 0, "%s", err);
}

Test(config, flows_max)
{
	expect_error(parse("--flows-max=1023"), "--flows-max", "1024 to 16777216");
	expect_error(parse("--flows-max=16777217"), "--flows-max", "1024 to 16777216");
	expect_error(parse("--flows-max=64K"), "--flows-max", "1024 to 16777216");
}

Test(config, log_level)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	char arg[64];

	for (int i = 0; i < 4; i++) {
		snprintf(arg, sizeof(arg), "--log-level=%s", names[i]);
		cr_assert_eq(parse(arg), 0, "%s", err);
		cr_expect_eq((int)cfg.log_level, i);
	}
	expect_error(parse("--log-level=verbose"), "--log-level", "error, warn, info or debug");
	expect_error(parse("--log-level=INFO"), "--log-level", NULL);
}

Test(config, usage_documents_every_flag)
{
	static const char *const must[] = {
		"--node-name",
		"NODE_NAME",
		"LOUPE_NODE_NAME",
		"--bpffs-dir",
		"LOUPE_BPFFS_DIR",
		"/sys/fs/bpf/loupe",
		"--iface-globs",
		"LOUPE_IFACE_GLOBS",
		LOUPE_CONFIG_DEFAULT_IFACE_GLOBS,
		"--tc-priority",
		"LOUPE_TC_PRIORITY",
		"--standalone",
		"LOUPE_STANDALONE",
		"--policy",
		"LOUPE_POLICY",
		"--output=",
		"LOUPE_OUTPUT",
		"--output-max-size",
		"LOUPE_OUTPUT_MAX_SIZE",
		"100M",
		"--output-backups",
		"LOUPE_OUTPUT_BACKUPS",
		"--output-format",
		"LOUPE_OUTPUT_FORMAT",
		"--metrics-addr",
		"LOUPE_METRICS_ADDR",
		"127.0.0.1:9750",
		"--flow-idle-timeout",
		"LOUPE_FLOW_IDLE_TIMEOUT",
		"30s",
		"--flow-active-timeout",
		"LOUPE_FLOW_ACTIVE_TIMEOUT",
		"5m",
		"--ringbuf-size",
		"LOUPE_RINGBUF_SIZE",
		"4M",
		"--flows-max",
		"LOUPE_FLOWS_MAX",
		"65536",
		"--log-level",
		"LOUPE_LOG_LEVEL",
		"--uninstall",
		"--help",
		"--version",
	};
	const char *u = loupe_config_usage();

	cr_assert_not_null(u);
	for (size_t i = 0; i < ARRAY_SIZE(must); i++)
		cr_expect_not_null(strstr(u, must[i]), "usage lacks %s", must[i]);
	/* 80 columns, for terminals */
	for (const char *line = u; *line;) {
		const char *nl = strchrnul(line, '\n');

		cr_expect_leq(nl - line, 90, "usage line too long: %.*s", (int)(nl - line), line);
		line = *nl ? nl + 1 : nl;
	}
}
