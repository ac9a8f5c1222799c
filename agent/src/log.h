/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's logger: levels checked before formatting, one line per message in key=value
 * form on stderr ("level=info msg=\"attached\" iface=veth1 ifindex=7"). Only top-level code
 * logs; modules return errors. libbpf's own messages come through here one level lower.
 */
#ifndef LOUPE_LOG_H
#define LOUPE_LOG_H

#include <stdbool.h>

enum loupe_log_level {
	LOUPE_LOG_ERROR = 0,
	LOUPE_LOG_WARN = 1,
	LOUPE_LOG_INFO = 2,
	LOUPE_LOG_DEBUG = 3,
};

extern enum loupe_log_level loupe_log_max;

/* "error", "warn", "info", "debug" -> level; -EINVAL for anything else. */
int loupe_log_level_parse(const char *name);

/*
 * Logs @msg with key=value pairs given as a printf format (may be NULL):
 * loupe_log(LOUPE_LOG_INFO, "attached", "iface=%s ifindex=%d", name, ifindex).
 */
void loupe_log_at(enum loupe_log_level level, const char *msg, const char *kv_fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define loupe_log(level, msg, ...)                                                                 \
	do {                                                                                       \
		if ((level) <= loupe_log_max)                                                      \
			loupe_log_at((level), (msg), __VA_ARGS__);                                 \
	} while (0)

/* Routes libbpf's messages through loupe_log, one level lower than libbpf says. */
void loupe_log_libbpf(void);

#endif
