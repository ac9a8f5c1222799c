// SPDX-License-Identifier: Apache-2.0
/*
 * The standalone event output in a mkdtemp directory and on pipes: one valid JSON line per
 * event, buffering, size rotation (backups kept, order, no duplicates, backups 0), appending
 * to an existing file, EINTR and partial writes, and errors (ENOSPC, EFBIG) that lose no
 * line. Not for the JSON mapping itself (test_event_pb.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "output.h"

static char dir[64];
static char path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/loupe-test-output-XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/events.json", dir);
}

static void teardown(void)
{
	char p[320];
	struct dirent *de;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

TestSuite(output, .init = setup, .fini = teardown);

static void make_event(struct loupe_event *ev, uint64_t seq)
{
	static const uint8_t src[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 1 };
	static const uint8_t dst[16] = { [10] = 0xff, [11] = 0xff, 198, 18, 0, 2 };

	memset(ev, 0, sizeof(*ev));
	ev->seq = seq;
	ev->time_ns = 1795759975123456789ULL + seq;
	strcpy(ev->node, "node-1");
	strcpy(ev->ifname, "veth1");
	ev->ifindex = 7;
	ev->direction = LOUPE_DIR_POD_EGRESS;
	ev->protocol = 6;
	ev->has_ip = true;
	memcpy(ev->saddr, src, 16);
	memcpy(ev->daddr, dst, 16);
	ev->sport = 40000;
	ev->dport = 80;
	/* alternate kinds so line lengths vary */
	if (seq % 2) {
		ev->kind = LOUPE_EV_HTTP_REQUEST;
		strcpy(ev->http.method, "GET");
		snprintf(ev->http.path, sizeof(ev->http.path), "/item/%llu?q=\"x\"",
			 (unsigned long long)seq);
		strcpy(ev->http.host, "example.com");
	} else {
		ev->kind = LOUPE_EV_DNS_QUERY;
		snprintf(ev->dns.qname, sizeof(ev->dns.qname), "host-%llu.example.com",
			 (unsigned long long)seq);
		ev->dns.qtype = 1;
		ev->dns.qclass = 1;
	}
}

/* A line of exactly 100 bytes with its newline: "line 00042 xxxx...". */
static void write_fixed(struct loupe_output *o, int i)
{
	char line[100];

	memset(line, 'x', sizeof(line));
	snprintf(line, sizeof(line), "line %05d ", i);
	line[11] = 'x'; /* snprintf's NUL */
	cr_assert_eq(loupe_output_write_line(o, line, 99), 0, "line %d", i);
}

static char *read_all(const char *p, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int c;

	f = fopen(p, "r");
	if (!f) {
		*ret_len = 0;
		return NULL;
	}
	{
		FILE *m = open_memstream(&buf, &len);

		while ((c = fgetc(f)) != EOF)
			fputc(c, m);
		fclose(m);
	}
	fclose(f);
	*ret_len = len;
	return buf;
}

static bool exists(const char *p)
{
	return access(p, F_OK) == 0;
}

static void backup_path(char *buf, size_t size, unsigned int i)
{
	if (i)
		snprintf(buf, size, "%s.%u", path, i);
	else
		snprintf(buf, size, "%s", path);
}

/* The fixed line numbers in file @p, in order, into @nums; returns how many. */
static int fixed_lines(const char *p, int *nums, int max)
{
	char line[256];
	int n = 0;
	FILE *f;

	f = fopen(p, "r");
	cr_assert_not_null(f, "%s: %s", p, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		cr_assert_eq(strlen(line), 100, "%s: a line of %zu bytes", p, strlen(line));
		cr_assert_eq(line[99], '\n');
		cr_assert_lt(n, max);
		cr_assert_eq(sscanf(line, "line %d ", &nums[n]), 1);
		n++;
	}
	fclose(f);
	return n;
}

/* Each line of @text is a JSON event; their seq values are @first, @first + 1, ... */
static uint64_t check_json_lines(const char *text, size_t len, uint64_t first)
{
	const char *p = text, *end = text + len;
	uint64_t seq = first;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		struct json_object *obj, *v;
		char *line;

		cr_assert_not_null(nl, "the last line lacks its newline");
		line = strndup(p, (size_t)(nl - p));
		obj = json_tokener_parse(line);
		cr_assert_not_null(obj, "not JSON: %s", line);
		cr_assert(json_object_object_get_ex(obj, "seq", &v), "no seq: %s", line);
		cr_expect_eq(strtoull(json_object_get_string(v), NULL, 10), seq, "%s", line);
		cr_assert(json_object_object_get_ex(obj, "kind", &v));
		cr_expect_str_eq(json_object_get_string(v), seq % 2 ? "HTTP_REQUEST" : "DNS_QUERY");
		json_object_put(obj);
		free(line);
		seq++;
		p = nl + 1;
	}
	return seq - first;
}

Test(output, lines_are_json_one_per_line)
{
	struct loupe_output_stats st;
	struct loupe_event ev;
	struct loupe_output *o;
	size_t len;
	char *text;

	cr_assert_eq(loupe_output_open(path, 0, 5, &o), 0);
	for (uint64_t i = 1; i <= 1000; i++) {
		make_event(&ev, i);
		cr_assert_eq(loupe_output_write(o, &ev), 0);
	}
	cr_assert_eq(loupe_output_flush(o), 0);
	loupe_output_get_stats(o, &st);
	o = loupe_output_close(o);
	cr_expect_null(o);

	text = read_all(path, &len);
	cr_assert_not_null(text);
	cr_expect_eq(check_json_lines(text, len, 1), 1000);
	cr_expect_eq(st.lines, 1000);
	cr_expect_eq(st.bytes, len);
	cr_expect_eq(st.rotations, 0);
	cr_expect_eq(st.errors, 0);
	cr_expect_eq(st.lines_dropped, 0);
	free(text);
}

Test(output, file_mode_0640_and_close_flushes)
{
	struct loupe_event ev;
	struct loupe_output *o;
	struct stat stt;
	size_t len;
	char *text;

	umask(022);
	cr_assert_eq(loupe_output_open(path, 0, 0, &o), 0);
	make_event(&ev, 1);
	cr_assert_eq(loupe_output_write(o, &ev), 0);
	/* buffered: nothing in the file yet */
	cr_assert_eq(stat(path, &stt), 0);
	cr_expect_eq(stt.st_size, 0);
	cr_expect_eq(stt.st_mode & 0777, 0640);
	loupe_output_close(o);
	text = read_all(path, &len);
	cr_expect_eq(check_json_lines(text, len, 1), 1);
	free(text);
}

Test(output, appends_to_an_existing_file)
{
	struct loupe_event ev;
	struct loupe_output *o;
	size_t len;
	char *text;
	FILE *f;

	f = fopen(path, "w");
	fputs("earlier\n", f);
	fclose(f);
	cr_assert_eq(loupe_output_open(path, 0, 0, &o), 0);
	make_event(&ev, 1);
	cr_assert_eq(loupe_output_write(o, &ev), 0);
	loupe_output_close(o);
	text = read_all(path, &len);
	cr_assert(len > 8 && strncmp(text, "earlier\n", 8) == 0, "%s", text);
	cr_expect_eq(check_json_lines(text + 8, len - 8, 1), 1);
	free(text);
}

/* 95 lines of 100 bytes, 1000-byte files: ten lines a file, nine rotations. */
Test(output, rotation_keeps_exactly_n_backups)
{
	struct loupe_output_stats st;
	struct loupe_output *o;
	char p[256];
	int nums[16], next = 61;

	cr_assert_eq(loupe_output_open(path, 1000, 3, &o), 0);
	for (int i = 1; i <= 95; i++)
		write_fixed(o, i);
	cr_assert_eq(loupe_output_flush(o), 0);
	loupe_output_get_stats(o, &st);
	loupe_output_close(o);
	cr_expect_eq(st.rotations, 9);
	cr_expect_eq(st.lines, 95);

	/* oldest first: .3 holds 61..70, .2 71..80, .1 81..90, the file 91..95 */
	for (int b = 3; b >= 0; b--) {
		int n;

		backup_path(p, sizeof(p), (unsigned int)b);
		n = fixed_lines(p, nums, 16);
		cr_expect_eq(n, b ? 10 : 5, "%s has %d lines", p, n);
		for (int i = 0; i < n; i++)
			cr_expect_eq(nums[i], next++, "%s line %d", p, i);
	}
	cr_expect_eq(next, 96);
	backup_path(p, sizeof(p), 4);
	cr_expect_not(exists(p), "%s should not exist", p);
}

/* Real events, enough backups to keep them all: every line once, in order. */
Test(output, rotation_loses_and_duplicates_nothing)
{
	struct loupe_output_stats st;
	struct loupe_event ev;
	struct loupe_output *o;
	uint64_t seq = 1;
	struct stat s;
	char p[256];
	int files = 0;

	cr_assert_eq(loupe_output_open(path, 16384, 100, &o), 0);
	for (uint64_t i = 1; i <= 2000; i++) {
		make_event(&ev, i);
		cr_assert_eq(loupe_output_write(o, &ev), 0);
		if (i % 333 == 0)
			cr_assert_eq(loupe_output_flush(o), 0); /* a timer's flush */
	}
	loupe_output_get_stats(o, &st);
	loupe_output_close(o);
	cr_assert_lt(st.rotations, 100, "the test needs every file kept");
	cr_assert_gt(st.rotations, 10);

	for (int b = 100; b >= 0; b--) {
		size_t len;
		char *text;

		backup_path(p, sizeof(p), (unsigned int)b);
		if (!exists(p))
			continue;
		files++;
		cr_assert_eq(stat(p, &s), 0);
		cr_expect_leq(s.st_size, 16384, "%s is over the limit", p);
		text = read_all(p, &len);
		seq += check_json_lines(text, len, seq);
		free(text);
	}
	cr_expect_eq(seq, 2001);
	cr_expect_eq(files, st.rotations + 1);
}

Test(output, backups_zero_truncates)
{
	struct loupe_output_stats st;
	struct loupe_output *o;
	char p[256];
	int nums[16], n;

	cr_assert_eq(loupe_output_open(path, 1000, 0, &o), 0);
	for (int i = 1; i <= 25; i++)
		write_fixed(o, i);
	loupe_output_get_stats(o, &st);
	loupe_output_close(o);
	cr_expect_eq(st.rotations, 2);
	n = fixed_lines(path, nums, 16);
	cr_assert_eq(n, 5);
	for (int i = 0; i < n; i++)
		cr_expect_eq(nums[i], 21 + i);
	backup_path(p, sizeof(p), 1);
	cr_expect_not(exists(p));
}

Test(output, exactly_at_the_limit_stays)
{
	struct loupe_output *o;
	char p[256];
	int nums[16];

	/* ten 100-byte lines fill 1000 bytes exactly: no rotation until the eleventh */
	cr_assert_eq(loupe_output_open(path, 1000, 1, &o), 0);
	for (int i = 1; i <= 10; i++)
		write_fixed(o, i);
	loupe_output_close(o);
	cr_expect_eq(fixed_lines(path, nums, 16), 10);
	backup_path(p, sizeof(p), 1);
	cr_expect_not(exists(p));
}

Test(output, existing_file_over_the_limit_rotates_first)
{
	struct loupe_output_stats st;
	struct loupe_output *o;
	char p[256];
	int nums[16];
	FILE *f;

	f = fopen(path, "w");
	for (int i = 0; i < 2000; i++)
		fputc(i % 100 == 99 ? '\n' : 'o', f);
	fclose(f);
	cr_assert_eq(loupe_output_open(path, 1000, 2, &o), 0);
	write_fixed(o, 1);
	loupe_output_get_stats(o, &st);
	loupe_output_close(o);
	cr_expect_eq(st.rotations, 1);
	cr_expect_eq(fixed_lines(path, nums, 16), 1);
	backup_path(p, sizeof(p), 1);
	cr_assert_eq(access(p, F_OK), 0);
}

Test(output, line_longer_than_the_limit_goes_alone)
{
	struct loupe_output *o;
	char p[256], big[5000];
	size_t len;
	char *text;

	memset(big, 'b', sizeof(big));
	cr_assert_eq(loupe_output_open(path, 4096, 3, &o), 0);
	cr_assert_eq(loupe_output_write_line(o, "first", 5), 0);
	cr_assert_eq(loupe_output_write_line(o, big, sizeof(big)), 0);
	cr_assert_eq(loupe_output_write_line(o, "last", 4), 0);
	loupe_output_close(o);
	backup_path(p, sizeof(p), 2);
	text = read_all(p, &len);
	cr_expect_eq(len, 6);
	free(text);
	backup_path(p, sizeof(p), 1);
	text = read_all(p, &len);
	cr_expect_eq(len, sizeof(big) + 1);
	free(text);
	text = read_all(path, &len);
	cr_expect_eq(len, 5);
	free(text);
}

Test(output, line_longer_than_the_buffer_refused)
{
	struct loupe_output_stats st;
	struct loupe_output *o;
	char *big;

	big = malloc(LOUPE_OUTPUT_BUF_SIZE);
	memset(big, 'b', LOUPE_OUTPUT_BUF_SIZE);
	cr_assert_eq(loupe_output_open(path, 0, 0, &o), 0);
	cr_expect_eq(loupe_output_write_line(o, big, LOUPE_OUTPUT_BUF_SIZE), -EMSGSIZE);
	loupe_output_get_stats(o, &st);
	cr_expect_eq(st.lines_dropped, 1);
	cr_expect_eq(st.lines, 0);
	loupe_output_close(o);
	free(big);
}

Test(output, open_errors)
{
	struct loupe_output *o = NULL;
	char p[256];

	cr_expect_eq(loupe_output_open("", 0, 0, &o), -EINVAL);
	/* a device with a rotation size: written, never rotated */
	cr_assert_eq(loupe_output_open("/dev/null", 4096, 2, &o), 0);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(loupe_output_write_line(o, "0123456789abcdef0123456789abcdef", 32), 0);
	cr_expect_eq(loupe_output_flush(o), 0);
	{
		struct loupe_output_stats st;

		loupe_output_get_stats(o, &st);
		cr_expect_eq(st.rotations, 0);
		cr_expect_eq(st.lines, 100);
	}
	o = loupe_output_close(o);
	snprintf(p, sizeof(p), "%s/no/such/dir/x.json", dir);
	cr_expect_eq(loupe_output_open(p, 0, 0, &o), -ENOENT);
	cr_expect_eq(loupe_output_open(dir, 0, 0, &o), -EISDIR);
	cr_expect_eq(loupe_output_open_fd(-1, &o), -EBADF);
	cr_expect_null(o);
	cr_expect_null(loupe_output_close(NULL));
}

/* The read side of a pipe, drained by a thread into memory, optionally slowly. */
struct reader {
	int fd;
	bool slow;
	char *buf;
	size_t len;
	pthread_t thread;
};

static void *reader_run(void *arg)
{
	struct reader *r = arg;
	FILE *m = open_memstream(&r->buf, &r->len);
	char chunk[997];
	ssize_t n;

	for (;;) {
		n = read(r->fd, chunk, r->slow ? 97 : sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fwrite(chunk, 1, (size_t)n, m);
		if (r->slow)
			usleep(20);
	}
	fclose(m);
	return NULL;
}

static void reader_start(struct reader *r, int fd, bool slow)
{
	sigset_t all, old;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->slow = slow;
	/* SIGALRM goes to the writer only */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	cr_assert_eq(pthread_create(&r->thread, NULL, reader_run, r), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

Test(output, stdout_mode_through_a_pipe)
{
	struct loupe_output_stats st;
	struct loupe_event ev;
	struct loupe_output *o;
	struct reader r;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(loupe_output_open_fd(p[1], &o), 0);
	make_event(&ev, 1);
	cr_assert_eq(loupe_output_write(o, &ev), 0);
	/* buffered until a flush */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	cr_expect_eq(read(p[0], (char[8]){ 0 }, 8), -1);
	cr_expect_eq(errno, EAGAIN);
	fcntl(p[0], F_SETFL, 0);

	reader_start(&r, p[0], false);
	for (uint64_t i = 2; i <= 5000; i++) {
		make_event(&ev, i);
		cr_assert_eq(loupe_output_write(o, &ev), 0);
	}
	/* a full buffer was written out without a flush */
	loupe_output_get_stats(o, &st);
	cr_expect_gt(st.bytes, 0);
	cr_assert_eq(loupe_output_flush(o), 0);
	loupe_output_get_stats(o, &st);
	loupe_output_close(o);
	/* the descriptor is the caller's: still open */
	cr_expect_neq(fcntl(p[1], F_GETFD), -1);
	close(p[1]);
	pthread_join(r.thread, NULL);
	close(p[0]);
	cr_expect_eq(check_json_lines(r.buf, r.len, 1), 5000);
	cr_expect_eq(st.bytes, r.len);
	free(r.buf);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	alarms++;
}

/* A slow reader and a signal every 50 us without SA_RESTART: EINTR and partial writes. */
Test(output, survives_eintr_and_partial_writes)
{
	struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
	struct itimerval it = { { 0, 50 }, { 0, 50 } };
	struct loupe_event ev;
	struct loupe_output *o;
	struct reader r;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	fcntl(p[1], F_SETPIPE_SZ, 4096);
	sigaction(SIGALRM, &sa, NULL);
	reader_start(&r, p[0], true);
	cr_assert_eq(loupe_output_open_fd(p[1], &o), 0);
	setitimer(ITIMER_REAL, &it, NULL);
	for (uint64_t i = 1; i <= 3000; i++) {
		make_event(&ev, i);
		cr_assert_eq(loupe_output_write(o, &ev), 0, "event %llu", (unsigned long long)i);
	}
	cr_assert_eq(loupe_output_flush(o), 0);
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	loupe_output_close(o);
	close(p[1]);
	pthread_join(r.thread, NULL);
	close(p[0]);
	cr_expect_gt(alarms, 10, "the writer was interrupted only %d times", (int)alarms);
	cr_expect_eq(check_json_lines(r.buf, r.len, 1), 3000);
	free(r.buf);
}

Test(output, enospc_is_returned)
{
	struct loupe_output_stats st;
	struct loupe_event ev;
	struct loupe_output *o;
	int fd, err = 0;

	fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "/dev/full: %s", strerror(errno));
	cr_assert_eq(loupe_output_open_fd(fd, &o), 0);
	make_event(&ev, 1);
	cr_assert_eq(loupe_output_write(o, &ev), 0);
	cr_expect_eq(loupe_output_flush(o), -ENOSPC);
	loupe_output_get_stats(o, &st);
	cr_expect_eq(st.errors, 1);
	cr_expect_eq(st.lines_dropped, 0, "the line stays buffered");
	/* once the buffer is full, lines are refused and counted */
	for (uint64_t i = 2; i <= 5000 && !err; i++) {
		make_event(&ev, i);
		err = loupe_output_write(o, &ev);
	}
	cr_expect_eq(err, -ENOSPC);
	loupe_output_get_stats(o, &st);
	cr_expect_eq(st.lines_dropped, 1);
	cr_expect_eq(st.bytes, 0);
	loupe_output_close(o);
	close(fd);
}

/*
 * A file size limit (RLIMIT_FSIZE) cuts a write mid-line with EFBIG: the file keeps every
 * complete line, and once the limit is lifted the rest follows, nothing lost or repeated.
 */
Test(output, efbig_loses_no_line)
{
	struct rlimit rl, lifted;
	struct loupe_output *o;
	int nums[64], n;

	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &lifted), 0);
	rl = lifted;
	rl.rlim_cur = 1050;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);

	cr_assert_eq(loupe_output_open(path, 0, 0, &o), 0);
	for (int i = 1; i <= 30; i++)
		write_fixed(o, i);
	cr_expect_eq(loupe_output_flush(o), -EFBIG);
	cr_expect_eq(loupe_output_flush(o), -EFBIG, "still at the limit");
	{
		struct stat s;

		stat(path, &s);
		cr_expect_eq(s.st_size, 1050);
	}
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lifted), 0);
	cr_expect_eq(loupe_output_flush(o), 0);
	loupe_output_close(o);
	n = fixed_lines(path, nums, 64);
	cr_assert_eq(n, 30);
	for (int i = 0; i < n; i++)
		cr_expect_eq(nums[i], i + 1);
}

/*
 * A failed rotation keeps writing to the current file: no line lost. (A read-only directory
 * does not stop root; a backup name taken by a non-empty directory does.)
 */
Test(output, failed_rotation_keeps_lines)
{
	struct loupe_output_stats st;
	struct loupe_output *o;
	char p[256], q[320];
	int nums[64], n, err = 0;

	/* rename(path, path.1) fails when path.1 is a non-empty directory */
	backup_path(p, sizeof(p), 1);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(q, sizeof(q), "%s/keep", p);
	close(open(q, O_CREAT | O_WRONLY, 0600));

	cr_assert_eq(loupe_output_open(path, 1000, 1, &o), 0);
	for (int i = 1; i <= 15; i++) {
		char line[100];
		int r;

		memset(line, 'x', sizeof(line));
		snprintf(line, sizeof(line), "line %05d ", i);
		line[11] = 'x';
		r = loupe_output_write_line(o, line, 99);
		if (r && !err)
			err = r;
	}
	cr_expect_neq(err, 0, "the rotation error is returned");
	loupe_output_get_stats(o, &st);
	cr_expect_eq(st.rotations, 0);
	cr_expect_geq(st.errors, 1);
	cr_expect_eq(st.lines_dropped, 0);
	loupe_output_close(o);
	n = fixed_lines(path, nums, 64);
	cr_assert_eq(n, 15);
	for (int i = 0; i < n; i++)
		cr_expect_eq(nums[i], i + 1);
	unlink(q);
	rmdir(p);
}
