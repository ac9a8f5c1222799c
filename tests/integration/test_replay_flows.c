// SPDX-License-Identifier: Apache-2.0
/*
 * Flow accounting of loupectl replay against tshark: runs the real build/bin/loupectl on every
 * capture of tests/data and of the shared corpus (but corpus_skip[]), keeps the FLOW_END
 * events, and checks each against the conversations computed here from tshark's per-frame
 * fields: addresses, ports, protocol, VLAN, per-direction packets, bytes and TCP flags, first
 * and last seen, and that there is exactly one FLOW_END per conversation and none besides.
 * Not for L7 events (test_replay.c) nor for the parser's edge cases (tests/bpf).
 *
 * The reading of a frame, from tshark's fields (what docs/replay.md promises):
 *  - a flow is (addresses, ports, IP protocol) in either direction; its source ("pod") is the
 *    sender of its first frame, egress = frames from it, ingress = frames to it;
 *  - TCP and UDP ports; ICMP/ICMPv6 echo: the echo id as both ports; other ICMP and other
 *    protocols: ports 0;
 *  - bytes are frame.len (on the wire, Ethernet and VLAN headers included);
 *  - non-IP frames and non-first IP fragments belong to no flow; tshark's reassembly is off,
 *    so a first fragment shows its own L4 header;
 *  - the outer headers count: a tunnel's or an ICMP error's inner headers do not;
 *  - the flow's VLAN is the outermost tag of its first frame.
 * A frame this reading cannot place (an L4 header tshark could not read, an unknown protocol
 * behind IPv6 extension headers) fails the test: such a capture does not belong here.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <json-c/json.h>

#include "proc.h"

extern char **environ;

#define LOUPECTL LOUPE_BIN_DIR "/loupectl"

/*
 * Shared-corpus captures left out, and why. Every other capture of the corpus is compared:
 * fragments, snapped frames (zk-tcp-truncated-header), frames above BPF_PROG_TEST_RUN's limit
 * that replay cuts but counts with their wire length (sv-base64, sv-community-id-ipv6,
 * zk-tls-chrome-1250-...), up to 3 VLAN tags and ARP-only captures all have a meaning here.
 */
static const struct {
	const char *capture;
	const char *reason;
} corpus_skip[] = {
	{ "zk-trunc-ipv4-internally-truncated-header.pcap",
	  "its one frame claims a 60-byte IPv4 header and holds 20 bytes of it: tshark cannot read "
	  "the destination, the datapath refuses the frame (IPV4_TRUNCATED); no flow to compare" },
};

/* ------------------------------------------------------------------ temp dir, processes */

static char tmpdir[LOUPE_TMPDIR_MAX];

static void tmp_setup(void)
{
	loupe_tmpdir_create(tmpdir, "/tmp/loupe-test-flows.XXXXXX");
}

static void tmp_teardown(void)
{
	loupe_tmpdir_remove(tmpdir);
}

/* cr_skip_test() does not run .fini: clean up first */
#define SKIP(...)                                                                                  \
	do {                                                                                       \
		tmp_teardown();                                                                    \
		cr_skip_test(__VA_ARGS__);                                                         \
	} while (0)

/*
 * Runs argv (argv[0] looked up in PATH) without a shell, stdin from /dev/null, stdout and
 * stderr to files of the temp dir, which are read back whole.
 */
static bool have_tshark(void)
{
	char *const argv[] = { "tshark", "--version", NULL };
	posix_spawn_file_actions_t fa;
	int status, err;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (err)
		return false;
	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ------------------------------------------------------------------ flows */

enum {
	EGRESS,
	INGRESS
};

struct flow_key {
	int family; /* AF_INET, AF_INET6 */
	uint8_t src[16], dst[16];
	uint16_t sport, dport;
	uint8_t proto;
};

struct flow {
	struct flow_key key;
	uint64_t packets[2], bytes[2];
	unsigned int tcp_flags[2];
	uint64_t first_ns, last_ns;
	bool has_vlan;
	unsigned int vlan;
	unsigned int first_frame, last_frame; /* tshark's numbers, for the messages */
	unsigned int ends;		      /* FLOW_END events for it */
};

struct flows {
	struct flow *v;
	size_t n, cap;
};

static void flows_free(struct flows *fl)
{
	free(fl->v);
	memset(fl, 0, sizeof(*fl));
}

static struct flow *flows_add(struct flows *fl)
{
	if (fl->n == fl->cap) {
		fl->cap = fl->cap ? 2 * fl->cap : 64;
		fl->v = realloc(fl->v, fl->cap * sizeof(*fl->v));
		cr_assert_not_null(fl->v);
	}
	memset(&fl->v[fl->n], 0, sizeof(*fl->v));
	return &fl->v[fl->n++];
}

static bool key_eq(const struct flow_key *a, const struct flow_key *b)
{
	size_t alen = a->family == AF_INET6 ? 16 : 4;

	return a->family == b->family && a->proto == b->proto && a->sport == b->sport &&
	       a->dport == b->dport && !memcmp(a->src, b->src, alen) &&
	       !memcmp(a->dst, b->dst, alen);
}

static void key_reverse(const struct flow_key *k, struct flow_key *ret)
{
	*ret = *k;
	memcpy(ret->src, k->dst, sizeof(ret->src));
	memcpy(ret->dst, k->src, sizeof(ret->dst));
	ret->sport = k->dport;
	ret->dport = k->sport;
}

static struct flow *flows_find(struct flows *fl, const struct flow_key *k)
{
	for (size_t i = 0; i < fl->n; i++)
		if (key_eq(&fl->v[i].key, k))
			return &fl->v[i];
	return NULL;
}

static const char *proto_name(unsigned int p, char *buf, size_t size)
{
	switch (p) {
	case IPPROTO_TCP:
		return "TCP";
	case IPPROTO_UDP:
		return "UDP";
	case IPPROTO_ICMP:
		return "ICMP";
	case IPPROTO_ICMPV6:
		return "ICMPV6";
	default:
		snprintf(buf, size, "proto %u", p);
		return buf;
	}
}

/* "TCP 198.18.10.1:34230 -> 198.18.10.2:443" */
static const char *key_str(const struct flow_key *k, char *buf, size_t size)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], p[32];

	inet_ntop(k->family, k->src, s, sizeof(s));
	inet_ntop(k->family, k->dst, d, sizeof(d));
	snprintf(buf, size, k->family == AF_INET6 ? "%s [%s]:%u -> [%s]:%u" : "%s %s:%u -> %s:%u",
		 proto_name(k->proto, p, sizeof(p)), s, k->sport, d, k->dport);
	return buf;
}

/* ------------------------------------------------------------------ tshark's reading */

static const char *const tshark_fields[] = {
	"frame.number",	   "frame.time_epoch", "frame.len",
	"frame.protocols", "ip.src",	       "ip.dst",
	"ip.proto",	   "ip.frag_offset",   "ipv6.src",
	"ipv6.dst",	   "ipv6.nxt",	       "ipv6.fraghdr.offset",
	"tcp.srcport",	   "tcp.dstport",      "tcp.flags",
	"udp.srcport",	   "udp.dstport",      "icmp.type",
	"icmp.ident",	   "icmpv6.type",      "icmpv6.echo.identifier",
	"vlan.id",	   "ieee8021ad.id",
};

enum {
	F_NUMBER,
	F_TIME,
	F_LEN,
	F_PROTOCOLS,
	F_IP_SRC,
	F_IP_DST,
	F_IP_PROTO,
	F_IP_FRAG,
	F_IP6_SRC,
	F_IP6_DST,
	F_IP6_NXT,
	F_IP6_FRAG,
	F_TCP_SPORT,
	F_TCP_DPORT,
	F_TCP_FLAGS,
	F_UDP_SPORT,
	F_UDP_DPORT,
	F_ICMP_TYPE,
	F_ICMP_ID,
	F_ICMP6_TYPE,
	F_ICMP6_ID,
	F_VLAN,
	F_QINQ,
	F_MAX
};

_Static_assert(sizeof(tshark_fields) / sizeof(tshark_fields[0]) == F_MAX, "one name per F_*");

/* The first occurrence of a field (tshark joins repeated ones with ','): outer headers first. */
static void first_of(const char *field, char *buf, size_t size)
{
	size_t n = strcspn(field, ",");

	snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), field);
}

static bool parse_uint(const char *field, int base, unsigned long max, unsigned long *ret)
{
	char buf[64], *end;

	first_of(field, buf, sizeof(buf));
	if (!buf[0])
		return false;
	errno = 0;
	*ret = strtoul(buf, &end, base);
	return !errno && !*end && *ret <= max;
}

/* "1795760981.417449000" (tshark's frame.time_epoch) in nanoseconds */
static bool parse_epoch(const char *s, uint64_t *ret_ns)
{
	uint64_t sec = 0, frac = 0;
	int digits = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++)
		sec = sec * 10 + (uint64_t)(*s - '0');
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9' && digits < 9; s++, digits++)
			frac = frac * 10 + (uint64_t)(*s - '0');
	for (; digits < 9; digits++)
		frac *= 10;
	*ret_ns = sec * 1000000000ull + frac;
	return *s == '\0';
}

struct capture_counts {
	unsigned int frames, counted, non_ip, later_fragments;
};

/*
 * One tshark line (tab-separated, F_MAX fields) into @ret_key and friends. Returns 1 when the
 * frame belongs to a flow, 0 when it belongs to none (counted in @cnt), and fails the test
 * for a frame the reading above cannot place.
 */
static int frame_read(const char *capture, char **f, struct flow_key *ret_key, unsigned int *len,
		      uint64_t *ts, unsigned int *tcp_flags, bool *has_vlan, unsigned int *vlan,
		      struct capture_counts *cnt)
{
	char protos[4096], *tok, *save = NULL, l3[16] = "", l4[64] = "", addr[64];
	unsigned long frame, v, type;
	bool ext = false, frag_hdr = false;
	int ntok;

	cr_assert(parse_uint(f[F_NUMBER], 10, UINT32_MAX, &frame), "%s: bad frame.number '%s'",
		  capture, f[F_NUMBER]);
	cr_assert(parse_uint(f[F_LEN], 10, UINT32_MAX, &v), "%s frame %lu: bad frame.len '%s'",
		  capture, frame, f[F_LEN]);
	*len = v;
	cr_assert(parse_epoch(f[F_TIME], ts), "%s frame %lu: bad frame.time_epoch '%s'", capture,
		  frame, f[F_TIME]);

	/* eth:ethertype[:vlan:ethertype]...:ip|ipv6[:ipv6.fraghdr...]:tcp|udp|icmp|...:... */
	snprintf(protos, sizeof(protos), "%s", f[F_PROTOCOLS]);
	*has_vlan = false;
	for (tok = strtok_r(protos, ":", &save), ntok = 0; tok;
	     tok = strtok_r(NULL, ":", &save), ntok++) {
		if (!l3[0]) {
			if (!strcmp(tok, "ip") || !strcmp(tok, "ipv6")) {
				snprintf(l3, sizeof(l3), "%s", tok);
				continue;
			}
			if (!strcmp(tok, "vlan") && !*has_vlan) {
				*has_vlan = true;
				cr_assert(parse_uint(f[F_VLAN], 10, 4095, &v),
					  "%s frame %lu: vlan.id '%s'", capture, frame, f[F_VLAN]);
				*vlan = v;
			} else if (!strcmp(tok, "ieee8021ad") && !*has_vlan) {
				*has_vlan = true;
				cr_assert(parse_uint(f[F_QINQ], 10, 4095, &v),
					  "%s frame %lu: ieee8021ad.id '%s'", capture, frame,
					  f[F_QINQ]);
				*vlan = v;
			} else if (strcmp(tok, "eth") && strcmp(tok, "ethertype") &&
				   strcmp(tok, "vlan") && strcmp(tok, "ieee8021ad")) {
				break; /* ARP, LLDP, ...: l3 stays empty */
			}
			continue;
		}
		/* IPv6 extension headers (and AH, which IPv6 treats as one) before the L4 */
		if (!strcmp(l3, "ipv6") && (!strncmp(tok, "ipv6.", 5) || !strcmp(tok, "ah"))) {
			ext = true;
			frag_hdr |= !strcmp(tok, "ipv6.fraghdr");
			continue;
		}
		snprintf(l4, sizeof(l4), "%s", tok);
		break;
	}
	if (!l3[0]) {
		cnt->non_ip++;
		return 0;
	}

	memset(ret_key, 0, sizeof(*ret_key));
	if (!strcmp(l3, "ip")) {
		ret_key->family = AF_INET;
		if (parse_uint(f[F_IP_FRAG], 10, 0xffff, &v) && v) {
			cnt->later_fragments++;
			return 0;
		}
		first_of(f[F_IP_SRC], addr, sizeof(addr));
		cr_assert(inet_pton(AF_INET, addr, ret_key->src) == 1, "%s frame %lu: ip.src '%s'",
			  capture, frame, f[F_IP_SRC]);
		first_of(f[F_IP_DST], addr, sizeof(addr));
		cr_assert(inet_pton(AF_INET, addr, ret_key->dst) == 1, "%s frame %lu: ip.dst '%s'",
			  capture, frame, f[F_IP_DST]);
		cr_assert(parse_uint(f[F_IP_PROTO], 10, 255, &v), "%s frame %lu: ip.proto '%s'",
			  capture, frame, f[F_IP_PROTO]);
		ret_key->proto = v;
	} else {
		ret_key->family = AF_INET6;
		if (frag_hdr && parse_uint(f[F_IP6_FRAG], 10, 0xffff, &v) && v) {
			cnt->later_fragments++;
			return 0;
		}
		first_of(f[F_IP6_SRC], addr, sizeof(addr));
		cr_assert(inet_pton(AF_INET6, addr, ret_key->src) == 1,
			  "%s frame %lu: ipv6.src '%s'", capture, frame, f[F_IP6_SRC]);
		first_of(f[F_IP6_DST], addr, sizeof(addr));
		cr_assert(inet_pton(AF_INET6, addr, ret_key->dst) == 1,
			  "%s frame %lu: ipv6.dst '%s'", capture, frame, f[F_IP6_DST]);
		if (!strcmp(l4, "tcp"))
			ret_key->proto = IPPROTO_TCP;
		else if (!strcmp(l4, "udp"))
			ret_key->proto = IPPROTO_UDP;
		else if (!strcmp(l4, "icmpv6"))
			ret_key->proto = IPPROTO_ICMPV6;
		else if (!ext && parse_uint(f[F_IP6_NXT], 10, 255, &v))
			ret_key->proto = v;
		else
			cr_assert_fail("%s frame %lu: '%s' behind IPv6 extension headers: the test "
				       "cannot tell its protocol number",
				       capture, frame, f[F_PROTOCOLS]);
	}

	*tcp_flags = 0;
	switch (ret_key->proto) {
	case IPPROTO_TCP:
		cr_assert(!strcmp(l4, "tcp") && parse_uint(f[F_TCP_SPORT], 10, 0xffff, &v),
			  "%s frame %lu: no TCP header in tshark's reading ('%s')", capture, frame,
			  f[F_PROTOCOLS]);
		ret_key->sport = v;
		cr_assert(parse_uint(f[F_TCP_DPORT], 10, 0xffff, &v));
		ret_key->dport = v;
		cr_assert(parse_uint(f[F_TCP_FLAGS], 16, 0xfff, &v), "%s frame %lu: tcp.flags '%s'",
			  capture, frame, f[F_TCP_FLAGS]);
		*tcp_flags = v & 0xff; /* the flag byte: CWR..FIN (AE/NS sits in the byte before) */
		break;
	case IPPROTO_UDP:
		cr_assert(!strcmp(l4, "udp") && parse_uint(f[F_UDP_SPORT], 10, 0xffff, &v),
			  "%s frame %lu: no UDP header in tshark's reading ('%s')", capture, frame,
			  f[F_PROTOCOLS]);
		ret_key->sport = v;
		cr_assert(parse_uint(f[F_UDP_DPORT], 10, 0xffff, &v));
		ret_key->dport = v;
		break;
	case IPPROTO_ICMP:
		cr_assert(!strcmp(l4, "icmp") && parse_uint(f[F_ICMP_TYPE], 10, 255, &type),
			  "%s frame %lu: no ICMP header in tshark's reading ('%s')", capture, frame,
			  f[F_PROTOCOLS]);
		/* tshark shows icmp.ident in decimal, icmpv6.echo.identifier in hex: base 0 */
		if (type == 0 || type == 8) { /* echo reply, echo request */
			cr_assert(parse_uint(f[F_ICMP_ID], 0, 0xffff, &v),
				  "%s frame %lu: icmp.ident '%s'", capture, frame, f[F_ICMP_ID]);
			ret_key->sport = ret_key->dport = v;
		}
		break;
	case IPPROTO_ICMPV6:
		cr_assert(!strcmp(l4, "icmpv6") && parse_uint(f[F_ICMP6_TYPE], 10, 255, &type),
			  "%s frame %lu: no ICMPv6 header in tshark's reading ('%s')", capture,
			  frame, f[F_PROTOCOLS]);
		if (type == 128 || type == 129) {
			cr_assert(parse_uint(f[F_ICMP6_ID], 0, 0xffff, &v),
				  "%s frame %lu: icmpv6.echo.identifier '%s'", capture, frame,
				  f[F_ICMP6_ID]);
			ret_key->sport = ret_key->dport = v;
		}
		break;
	default:
		break;
	}
	return 1;
}

/* Splits @line in place at tabs into exactly F_MAX fields (tshark leaves none out). */
static bool split_fields(char *line, char **f)
{
	int i;

	line[strcspn(line, "\r\n")] = '\0';
	for (i = 0; i < F_MAX; i++) {
		f[i] = line;
		line = strchr(line, '\t');
		if (!line)
			return i == F_MAX - 1;
		*line++ = '\0';
	}
	return false;
}

/* tshark's conversations of @path, in the order they began. */
static void tshark_flows(const char *path, const char *capture, struct flows *ret,
			 struct capture_counts *cnt)
{
	char *argv[16 + 2 * F_MAX], *line, *next, *f[F_MAX];
	struct loupe_proc_result r;
	int a = 0;

	argv[a++] = "tshark";
	argv[a++] = "-r";
	argv[a++] = (char *)path;
	argv[a++] = "-n";
	/* a first fragment must show its own L4 header, not the reassembled datagram's */
	argv[a++] = "-o";
	argv[a++] = "ip.defragment:FALSE";
	argv[a++] = "-o";
	argv[a++] = "ipv6.defragment:FALSE";
	argv[a++] = "-T";
	argv[a++] = "fields";
	argv[a++] = "-E";
	argv[a++] = "separator=/t";
	argv[a++] = "-E";
	argv[a++] = "occurrence=a";
	argv[a++] = "-E";
	argv[a++] = "aggregator=,";
	for (int i = 0; i < F_MAX; i++) {
		argv[a++] = "-e";
		argv[a++] = (char *)tshark_fields[i];
	}
	argv[a] = NULL;

	r = loupe_proc_run(tmpdir, argv);
	cr_assert_eq(r.status, 0, "tshark -r %s: exit %d: %s", path, r.status, r.err);

	memset(ret, 0, sizeof(*ret));
	memset(cnt, 0, sizeof(*cnt));
	for (line = r.out; line && *line; line = next) {
		struct flow_key key, rev;
		unsigned int len, flags, vlan = 0;
		struct flow *fl;
		bool has_vlan;
		uint64_t ts;
		int dir;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		cr_assert(split_fields(line, f), "%s: tshark line %u has not %d fields: '%s'",
			  capture, cnt->frames + 1, F_MAX, line);
		cnt->frames++;
		if (!frame_read(capture, f, &key, &len, &ts, &flags, &has_vlan, &vlan, cnt))
			continue;
		cnt->counted++;

		key_reverse(&key, &rev);
		dir = EGRESS;
		fl = flows_find(ret, &key);
		if (!fl) {
			fl = flows_find(ret, &rev);
			dir = INGRESS;
		}
		if (!fl) {
			fl = flows_add(ret);
			dir = EGRESS;
			fl->key = key;
			fl->first_ns = ts;
			fl->first_frame = strtoul(f[F_NUMBER], NULL, 10);
			fl->has_vlan = has_vlan;
			fl->vlan = vlan;
		}
		fl->packets[dir]++;
		fl->bytes[dir] += len;
		fl->tcp_flags[dir] |= flags;
		fl->last_ns = ts;
		fl->last_frame = strtoul(f[F_NUMBER], NULL, 10);
	}
	loupe_proc_result_free(&r);
}

/* ------------------------------------------------------------------ loupectl's FLOW_END */

struct flow_end {
	struct flow_key key;
	uint64_t packets[2], bytes[2];
	unsigned int tcp_flags[2];
	uint64_t first_ns, last_ns, duration_ns;
	bool has_vlan;
	unsigned int vlan;
	char *json; /* the line, for the messages */
};

struct flow_ends {
	struct flow_end *v;
	size_t n, cap;
};

static void flow_ends_free(struct flow_ends *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i].json);
	free(e->v);
	memset(e, 0, sizeof(*e));
}

/* "2026-11-27T06:29:41.417449Z" (proto3 JSON Timestamp, always UTC) in nanoseconds */
static bool parse_time(const char *s, uint64_t *ret_ns)
{
	struct tm tm = { 0 };
	uint64_t frac = 0;
	const char *p;
	int digits = 0;
	time_t t;

	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return false;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
			frac = frac * 10 + (uint64_t)(*p - '0');
	for (; digits < 9; digits++)
		frac *= 10;
	t = timegm(&tm);
	if (t < 0 || strcmp(p, "Z"))
		return false;
	*ret_ns = (uint64_t)t * 1000000000ull + frac;
	return true;
}

/* A proto3 JSON integer: 64-bit ones are strings, 32-bit ones numbers; absent means 0. */
static uint64_t js_u64(json_object *o, const char *name)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, name, &v))
		return 0;
	if (json_object_is_type(v, json_type_string))
		return strtoull(json_object_get_string(v), NULL, 10);
	cr_assert(json_object_is_type(v, json_type_int), "%s is neither a number nor a string",
		  name);
	return json_object_get_uint64(v);
}

static const char *js_str(json_object *o, const char *name)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, name, &v))
		return "";
	return json_object_get_string(v);
}

static json_object *js_obj(json_object *o, const char *name)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, name, &v))
		return NULL;
	return v;
}

static unsigned int protocol_number(json_object *o)
{
	json_object *v = js_obj(o, "protocol");
	const char *s;

	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_int))
		return json_object_get_int(v); /* pbjson: a number the enum does not name */
	s = json_object_get_string(v);
	if (!strcmp(s, "TCP"))
		return IPPROTO_TCP;
	if (!strcmp(s, "UDP"))
		return IPPROTO_UDP;
	if (!strcmp(s, "ICMP"))
		return IPPROTO_ICMP;
	if (!strcmp(s, "ICMPV6"))
		return IPPROTO_ICMPV6;
	cr_assert_fail("unknown protocol '%s'", s);
	return 0;
}

static void flow_end_parse(json_object *o, const char *line, struct flow_end *e)
{
	json_object *flow = js_obj(o, "flow");
	json_object *dir[2] = { js_obj(flow, "egress"), js_obj(flow, "ingress") };
	const char *src = js_str(o, "srcIp"), *dst = js_str(o, "dstIp");

	memset(e, 0, sizeof(*e));
	e->json = strdup(line);
	e->key.family = strchr(src, ':') ? AF_INET6 : AF_INET;
	cr_assert(inet_pton(e->key.family, src, e->key.src) == 1, "bad srcIp in %s", line);
	cr_assert(inet_pton(e->key.family, dst, e->key.dst) == 1, "bad dstIp in %s", line);
	e->key.sport = js_u64(o, "srcPort");
	e->key.dport = js_u64(o, "dstPort");
	e->key.proto = protocol_number(o);
	e->has_vlan = json_object_get_boolean(js_obj(o, "hasVlan"));
	e->vlan = js_u64(o, "vlanId");
	cr_assert_not_null(flow, "FLOW_END without flow: %s", line);
	for (int d = 0; d < 2; d++) {
		e->packets[d] = js_u64(dir[d], "packets");
		e->bytes[d] = js_u64(dir[d], "bytes");
		e->tcp_flags[d] = js_u64(dir[d], "tcpFlags");
	}
	cr_assert(parse_time(js_str(flow, "firstSeen"), &e->first_ns), "bad firstSeen in %s", line);
	cr_assert(parse_time(js_str(flow, "lastSeen"), &e->last_ns), "bad lastSeen in %s", line);
	e->duration_ns = js_u64(flow, "durationNs");
}

static void loupe_flow_ends(const char *path, struct flow_ends *ret)
{
	char *line, *next;
	struct loupe_proc_result r;

	r = loupe_proc_run(tmpdir,
			   (char *const[]){ LOUPECTL, "replay", (char *)path, "-o", "json", NULL });
	cr_assert_eq(r.status, 0, "loupectl replay %s: exit %d: %s", path, r.status, r.err);

	memset(ret, 0, sizeof(*ret));
	for (line = r.out; line && *line; line = next) {
		json_object *o;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		o = json_tokener_parse(line);
		cr_assert_not_null(o, "%s: not JSON: %s", path, line);
		if (!strcmp(js_str(o, "kind"), "FLOW_END")) {
			if (ret->n == ret->cap) {
				ret->cap = ret->cap ? 2 * ret->cap : 64;
				ret->v = realloc(ret->v, ret->cap * sizeof(*ret->v));
				cr_assert_not_null(ret->v);
			}
			flow_end_parse(o, line, &ret->v[ret->n++]);
		}
		json_object_put(o);
	}
	loupe_proc_result_free(&r);
}

/* ------------------------------------------------------------------ comparison */

#define EXPECT_SAME(what, got, want)                                                               \
	do {                                                                                       \
		uint64_t got_ = (got), want_ = (want);                                             \
		if (got_ != want_) {                                                               \
			cr_expect_fail("%s: flow %s (tshark frames %u..%u): %s: loupe %" PRIu64    \
				       ", tshark %" PRIu64,                                        \
				       capture, key_str(&fl->key, kb, sizeof(kb)),                 \
				       fl->first_frame, fl->last_frame, what, got_, want_);        \
			(*mismatches)++;                                                           \
		}                                                                                  \
	} while (0)

static void compare_flow(const char *capture, const struct flow_end *e, const struct flow *fl,
			 unsigned int *mismatches)
{
	static const char *const dir_name[2] = { "egress", "ingress" };
	char kb[160], what[64];

	for (int d = 0; d < 2; d++) {
		snprintf(what, sizeof(what), "%s packets", dir_name[d]);
		EXPECT_SAME(what, e->packets[d], fl->packets[d]);
		snprintf(what, sizeof(what), "%s bytes", dir_name[d]);
		EXPECT_SAME(what, e->bytes[d], fl->bytes[d]);
		snprintf(what, sizeof(what), "%s tcpFlags", dir_name[d]);
		EXPECT_SAME(what, e->tcp_flags[d], fl->tcp_flags[d]);
	}
	EXPECT_SAME("firstSeen (ns)", e->first_ns, fl->first_ns);
	EXPECT_SAME("lastSeen (ns)", e->last_ns, fl->last_ns);
	EXPECT_SAME("durationNs", e->duration_ns, fl->last_ns - fl->first_ns);
	EXPECT_SAME("hasVlan", e->has_vlan, fl->has_vlan);
	EXPECT_SAME("vlanId", e->vlan, fl->vlan);
}

/*
 * Compares one capture; prints its one-line summary. @own: a capture of tests/data, where
 * every frame belongs to a flow (which checks the reading itself).
 */
static unsigned int compare_capture(const char *label, const char *path, bool own)
{
	const char *capture = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	struct capture_counts cnt;
	struct flow_ends ends;
	unsigned int mismatches = 0;
	struct flows flows;
	char kb[160];

	tshark_flows(path, capture, &flows, &cnt);
	loupe_flow_ends(path, &ends);

	cr_expect(cnt.frames > 0, "%s: tshark read no frame", capture);
	if (own && !flows.n) {
		cr_expect_fail("%s: tshark sees no flow: nothing to compare", capture);
		mismatches++;
	}
	if (own && cnt.counted != cnt.frames) {
		cr_expect_fail("%s: %u of %u frames in no flow (%u not IP, %u later fragments)",
			       capture, cnt.frames - cnt.counted, cnt.frames, cnt.non_ip,
			       cnt.later_fragments);
		mismatches++;
	}

	for (size_t i = 0; i < ends.n; i++) {
		struct flow_end *e = &ends.v[i];
		struct flow_key rev;
		struct flow *fl = flows_find(&flows, &e->key);

		if (i > 0 && e->first_ns < ends.v[i - 1].first_ns) {
			cr_expect_fail("%s: FLOW_END %zu begins before the one printed before it: "
				       "%s",
				       capture, i + 1, e->json);
			mismatches++;
		}
		if (!fl) {
			key_reverse(&e->key, &rev);
			fl = flows_find(&flows, &rev);
			cr_expect_fail("%s: FLOW_END of no tshark conversation%s: %s", capture,
				       fl ? " (its source and destination are swapped)" : "",
				       e->json);
			mismatches++;
			continue;
		}
		if (++fl->ends > 1) {
			cr_expect_fail("%s: FLOW_END number %u for flow %s: %s", capture, fl->ends,
				       key_str(&fl->key, kb, sizeof(kb)), e->json);
			mismatches++;
			continue;
		}
		compare_flow(capture, e, fl, &mismatches);
	}
	for (size_t i = 0; i < flows.n; i++) {
		struct flow *fl = &flows.v[i];

		if (fl->ends)
			continue;
		cr_expect_fail("%s: no FLOW_END for flow %s (tshark frames %u..%u: egress %" PRIu64
			       " packets %" PRIu64 " bytes, ingress %" PRIu64 " packets %" PRIu64
			       " bytes)",
			       capture, key_str(&fl->key, kb, sizeof(kb)), fl->first_frame,
			       fl->last_frame, fl->packets[EGRESS], fl->bytes[EGRESS],
			       fl->packets[INGRESS], fl->bytes[INGRESS]);
		mismatches++;
	}

	fprintf(stderr,
		"[%s] %s: %u frames, %u in %zu tshark flows (%u not IP, %u later fragments), "
		"%zu FLOW_END, %u mismatches\n",
		label, capture, cnt.frames, cnt.counted, flows.n, cnt.non_ip, cnt.later_fragments,
		ends.n, mismatches);
	flows_free(&flows);
	flow_ends_free(&ends);
	return mismatches;
}

static int pcap_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && !strcmp(d->d_name + n - 5, ".pcap");
}

/* ------------------------------------------------------------------ tests */

TestSuite(replay_flows, .init = tmp_setup, .fini = tmp_teardown, .timeout = 600);

static void need_tools(void)
{
	if (geteuid() != 0)
		SKIP("replay loads BPF programs: needs root");
	if (!have_tshark())
		SKIP("tshark (package tshark) is not installed: it is the reference");
}

Test(replay_flows, own_captures)
{
	unsigned int mismatches = 0;
	struct dirent **list;
	char path[1024];
	int n, i;

	need_tools();
	n = scandir(LOUPE_TEST_DATA, &list, pcap_filter, alphasort);
	cr_assert(n > 0, "no *.pcap in %s: the recorded captures are part of the repository",
		  LOUPE_TEST_DATA);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", LOUPE_TEST_DATA, list[i]->d_name);
		mismatches += compare_capture("tests/data", path, true);
		free(list[i]);
	}
	free(list);
	fprintf(stderr, "[tests/data] %d captures, %u mismatches\n", n, mismatches);
}

static bool corpus_skipped(const char *capture)
{
	for (size_t i = 0; i < sizeof(corpus_skip) / sizeof(corpus_skip[0]); i++)
		if (!strcmp(corpus_skip[i].capture, capture))
			return true;
	return false;
}

Test(replay_flows, corpus)
{
	unsigned int mismatches = 0, skipped = 0;
	struct dirent **list;
	char path[1024];
	struct stat st;
	int n, i;

	if (stat(LOUPE_SHARED_CORPUS, &st) || !S_ISDIR(st.st_mode))
		SKIP("shared corpus %s is not there: nothing to compare", LOUPE_SHARED_CORPUS);
	need_tools();
	n = scandir(LOUPE_SHARED_CORPUS, &list, pcap_filter, alphasort);
	cr_assert(n > 0, "no *.pcap in %s", LOUPE_SHARED_CORPUS);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", LOUPE_SHARED_CORPUS, list[i]->d_name);
		if (corpus_skipped(list[i]->d_name)) {
			fprintf(stderr, "[corpus] %s: skipped (see corpus_skip[])\n",
				list[i]->d_name);
			skipped++;
		} else {
			mismatches += compare_capture("corpus", path, false);
		}
		free(list[i]);
	}
	free(list);
	fprintf(stderr, "[corpus] %d captures, %u skipped, %u mismatches\n", n, skipped,
		mismatches);
}
