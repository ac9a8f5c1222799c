// SPDX-License-Identifier: Apache-2.0
/*
 * The agent's key=value logger and the bridge that brings libbpf's messages into it. Not
 * for events: those are output.c's.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>

#include "log.h"

enum loupe_log_level loupe_log_max = LOUPE_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int loupe_log_level_parse(const char *name)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -EINVAL;
}

/* Writes @s as a quoted value: quotes and backslashes escaped, control characters dropped. */
static void log_quoted(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n && s[i]; i++) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\')
			fputc('\\', f);
		if (c >= 0x20)
			fputc(c, f);
	}
	fputc('"', f);
}

void loupe_log_at(enum loupe_log_level level, const char *msg, const char *kv_fmt, ...)
{
	struct timespec now;
	char ts[40], kv[1024] = "";
	struct tm tm;
	va_list ap;

	if (level > loupe_log_max)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	if (kv_fmt) {
		va_start(ap, kv_fmt);
		vsnprintf(kv, sizeof(kv), kv_fmt, ap);
		va_end(ap);
	}
	flockfile(stderr);
	fprintf(stderr, "time=%s.%03ldZ level=%s msg=", ts, now.tv_nsec / 1000000,
		level_names[level <= LOUPE_LOG_DEBUG ? level : LOUPE_LOG_DEBUG]);
	log_quoted(stderr, msg, strlen(msg));
	if (kv[0])
		fprintf(stderr, " %s", kv);
	fputc('\n', stderr);
	funlockfile(stderr);
}

static int log_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* one level lower: libbpf's warnings are our info, its info our debug */
	enum loupe_log_level ours = level == LIBBPF_WARN ? LOUPE_LOG_INFO : LOUPE_LOG_DEBUG;
	char line[1024];
	size_t n;

	if (ours > loupe_log_max)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	for (char *c = line; *c; c++)
		if (*c == '"')
			*c = '\''; /* the value is quoted */
	loupe_log_at(ours, "libbpf", "text=\"%s\"", line);
	return 0;
}

void loupe_log_libbpf(void)
{
	libbpf_set_print(log_libbpf_print);
}
