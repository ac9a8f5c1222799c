/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scaffolding of the live integration tests (agent on CNI pods): a node network namespace
 * of the test's own with a private bpffs, pods through scripts/pods (LOUPE_PODS_NODE,
 * LOUPE_PODS_PREFIX), commands run with deadlines and their output read back, loupe-agent
 * started with its event output, waits for a file to hold something, and the sweep that
 * undoes all of it on every exit path (the test's .fini, the runner after the run, runs that
 * died). Names carry the Criterion runner's pid. It asserts through Criterion, so it is for
 * Criterion tests only; one live environment per test process. Not for what a test checks:
 * the clients, the policies, the captures and their comparison stay in the tests.
 */
#ifndef LOUPE_TEST_LIVE_H
#define LOUPE_TEST_LIVE_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#define LOUPE_LIVE_AGENT_BIN LOUPE_BIN_DIR "/loupe-agent"
#define LOUPE_LIVE_PODS	     LOUPE_SOURCE_DIR "/scripts/pods"

/* Deadlines, seconds. */
#define LOUPE_LIVE_UP_S	   40.0 /* two CNI ADDs with IPv6 DAD, in parallel */
#define LOUPE_LIVE_SERVE_S 20.0
#define LOUPE_LIVE_READY_S 30.0 /* loading and verifying the programs on a slow machine */

#define LOUPE_LIVE_PODS_MAX  4
#define LOUPE_LIVE_KEEP_MAX  8
#define LOUPE_LIVE_ARGV_MAX  32
#define LOUPE_LIVE_PATH_SIZE 112

/* What a test's names are made of, <id> being the runner's pid. */
struct loupe_live_names {
	const char *id_env; /* where the runner's pid is handed to the test processes */
	const char *node;   /* the node namespace: <node><id> */
	const char *pods;   /* the pods' prefix: <pods><id>- */
	const char *tmp;    /* the temp dir: /tmp/<tmp>-<id>-XXXXXX */
	/* the test's .fini: run before a setup fails or skips, since Criterion runs none then */
	void (*teardown)(void);
	/* optional: more to undo in the node once its processes are gone, before the uninstall */
	void (*sweep_node)(const char *node);
};

struct loupe_live {
	const struct loupe_live_names *names;
	int id;
	char node[32];
	char prefix[32];
	char env[4][160];
	char *envp[5];
	char tmp[64];
	char bpffs[96];
	char pin_dir[LOUPE_LIVE_PATH_SIZE];
	char agent_log[LOUPE_LIVE_PATH_SIZE]; /* <tmp>/agent.err unless the test names another */
	pid_t agent;
	pid_t keep[LOUPE_LIVE_KEEP_MAX]; /* servers and captures, stopped at teardown */
	int n_keep;
};

/* A pod as `scripts/pods up` reports it. */
struct loupe_live_pod {
	const char *name;
	char ns[64];
	char host_if[IF_NAMESIZE];
	char v4[INET_ADDRSTRLEN];
	char v6[INET6_ADDRSTRLEN];
};

/* How the agent runs: ip netns exec <node> loupe-agent --standalone ... */
struct loupe_live_agent {
	const char *policy;	  /* --policy DIR, or NULL */
	const char *events;	  /* --output */
	const char *metrics;	  /* --metrics-addr */
	const char *idle_timeout; /* --flow-idle-timeout, or NULL for the agent's default */
	const char *out;	  /* its stdout; NULL: <tmp>/agent.out (stderr: agent_log) */
};

extern struct loupe_live loupe_live;

/* Fails (or skips) a setup after undoing it through the test's teardown. */
#define LOUPE_LIVE_CHECK(cond, ...)                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			loupe_live_undo();                                                         \
			cr_assert_fail(__VA_ARGS__);                                               \
		}                                                                                  \
	} while (0)

#define LOUPE_LIVE_SKIP(...)                                                                       \
	do {                                                                                       \
		loupe_live_undo();                                                                 \
		cr_skip_test(__VA_ARGS__);                                                         \
	} while (0)

/*
 * The runner's report hooks for a test binary, each on a line of its own (Criterion names a
 * hook by its line): PRE_ALL hands the runner's pid on to the test processes, POST_ALL sweeps
 * after the run (a test process killed at its timeout runs no .fini).
 */
#define LOUPE_LIVE_PRE_ALL(names)                                                                  \
	ReportHook(PRE_ALL)(struct criterion_test_set * set)                                       \
	{                                                                                          \
		(void)set;                                                                         \
		loupe_live_pre_all((names)->id_env);                                               \
	}
#define LOUPE_LIVE_POST_ALL(names)                                                                 \
	ReportHook(POST_ALL)(struct criterion_global_stats * stats)                                \
	{                                                                                          \
		(void)stats;                                                                       \
		loupe_live_post_all(names);                                                        \
	}

/* small things */
double loupe_live_now_s(void);
void loupe_live_pause_ms(int ms);
/* A shell command for cleanup, where a failure is not news; its exit status. */
int loupe_live_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The whole of @path, to free(); "" when it cannot be read. */
char *loupe_live_slurp(const char *path);
size_t loupe_live_count(const char *s, const char *needle);
void loupe_live_tmp_path(char *buf, size_t size, const char *name);
/* Writes @text to @path whole, through a temp file renamed over it (as editors save). */
void loupe_live_write_file(const char *path, const char *text);
/* A zombie is dead too: a killed runner may wait a while for its reaper. */
bool loupe_live_pid_alive(int pid);

/* processes: stdin from /dev/null, the test's environment (PATH, HOME, LOUPE_PODS_*) */
pid_t loupe_live_proc_start(char *const argv[], const char *out, const char *err);

/*
 * Starts tcpdump (@argv: its whole command line, "ip netns exec ..." included; stderr to
 * @err) and waits until it says it is listening, for @deadline_s. Returns its pid; fails the
 * test when it dies or does not start in time.
 */
pid_t loupe_live_tcpdump_start(char *const argv[], const char *out, const char *err,
			       double deadline_s);

/* The agent's /metrics at @addr ("127.0.0.1:9750"), fetched with curl inside the node. */
char *loupe_live_metrics(const char *addr, double deadline_s);

/* The value of the sample @series ("name{labels}") in /metrics @text, or -1 when absent. */
long long loupe_live_sample(const char *text, const char *series);

/* Whether the pcap file @path holds an untagged IPv4 TCP packet from port @sport (tcpdump -U
 * writes whole packets). */
bool loupe_live_capture_has(const char *path, uint16_t sport);
/* Waits up to @timeout_s for child @pid and reaps it: its wait status, -1 (still running). */
int loupe_live_proc_wait(pid_t pid, double timeout_s);
/* Signals @pid, waits for it, SIGKILL after @timeout_s; its wait status. */
int loupe_live_proc_stop(pid_t pid, int sig, double timeout_s);
int loupe_live_exit_code(int status);
/*
 * Runs @argv to its end, at most @timeout_s (then kills it): its exit code, -1 on timeout.
 * Its stdout and stderr stay in <tmp>/<name>.out and .err; *ret_out gets stdout when asked.
 */
int loupe_live_proc_run(char *const argv[], const char *name, double timeout_s, char **ret_out);
char *loupe_live_run_err(const char *name);
/* Runs @argv, which must exit 0 within @timeout_s; its stdout. */
char *loupe_live_must_run(char *const argv[], const char *name, double timeout_s);
/* A process that runs until teardown (a server, a capture), stopped there with SIGTERM. */
pid_t loupe_live_proc_keep(char *const argv[], const char *out, const char *err);
void loupe_live_proc_forget(pid_t pid);
/*
 * Waits until @path holds @count occurrences of @needle; fails at the deadline, or when
 * process *@pid (whose log @log is) exits first, after setting *@pid to 0: it is reaped.
 */
void loupe_live_wait_file(const char *path, const char *needle, size_t count, double timeout_s,
			  pid_t *pid, const char *who, const char *log);

/* setup and cleanup */
/* What LOUPE_LIVE_PRE_ALL() and LOUPE_LIVE_POST_ALL() run. */
void loupe_live_pre_all(const char *id_env);
void loupe_live_post_all(const struct loupe_live_names *names);
/*
 * After the test's own checks (root, tools): sweeps runs that died and this run's leftovers,
 * makes the temp dir, the environment, the node namespace with lo up, the bpffs; skips when
 * a namespace cannot be made or the kernel has no bpffs.
 */
void loupe_live_setup(const struct loupe_live_names *names);
/* Stops the kept processes, then the agent, then sweeps this run; empties loupe_live. */
void loupe_live_teardown(void);
/* The test's teardown, or loupe_live_teardown() when it has none. */
void loupe_live_undo(void);

/* pods */
/* `scripts/pods up NAME --net ptp` of all @pods at once; fills them from the summary lines. */
void loupe_live_pods_up(struct loupe_live_pod *const pods[], int n);
/* `scripts/pods serve POD KIND PORT`, which must succeed; its output in <tmp>/@name.*. */
void loupe_live_pods_serve(const char *pod, const char *kind, const char *port, const char *name);
/* @argv: `scripts/pods exec POD -- CMD...` (CMD at most 27 words), to run. */
void loupe_live_pods_exec_argv(char *argv[LOUPE_LIVE_ARGV_MAX], const char *pod, char *const cmd[]);

/* the agent */
/* Starts the agent in the node (loupe_live.agent) and waits until it is ready. */
void loupe_live_agent_start(const struct loupe_live_agent *a);
/* Waits until the agent's log holds @needle @count times; fails at the deadline or its exit. */
void loupe_live_agent_wait(const char *needle, size_t count, double timeout_s);
size_t loupe_live_agent_log_count(const char *needle);

#endif
