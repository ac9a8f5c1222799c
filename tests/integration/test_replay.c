// SPDX-License-Identifier: Apache-2.0
/*
 * loupectl replay against tshark: runs the real build/bin/loupectl on every capture of the
 * shared corpus and of tests/data and checks its JSON events against <name>.tsv beside each
 * pcap (tshark's reading), plus the command line's error paths and pcapng input.
 * Not for the datapath's parsing details (tests/bpf) nor for live traffic (e2e).
 *
 * How a capture is compared (docs/replay.md says the same for users):
 *  - every tsv row must match one HTTP_REQUEST / TLS_CLIENT_HELLO / DNS_QUERY event by
 *    content, as a multiset: tshark reports a reassembled message on its last segment, the
 *    datapath on its first, so frame numbers are not compared;
 *  - an L7 event no row matched is allowed only when it repeats, field for field, an event
 *    that matched: the datapath keeps no TCP sequence state and reports a retransmitted
 *    request again (sv-bug-28), tshark does not;
 *  - whatever else differs must be listed in known_diffs[] with its reason, and a listed
 *    difference that no longer occurs fails too, so the table stays true.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
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
#include <pcap/pcap.h>

#include "jsonget.h"
#include "loupe/datapath.h"
#include "proc.h"
#include "tsv.h"

extern char **environ;

#define LOUPECTL LOUPE_BIN_DIR "/loupectl"

/*
 * Where the datapath cannot see what tshark sees, or sees it differently on purpose:
 * {capture (file name without .pcap), tshark frame (for "extra": the frame the event came
 * from), field, reason}. field is "event" for a row no event matched at all, "extra" for an
 * event no row matched, else the name of the field that differs (see diff_names[]).
 */
static struct known_diff {
	const char *capture;
	unsigned int frame;
	const char *field;
	const char *reason;
	bool seen;
} known_diffs[] = {
	{ NULL, 0, NULL, NULL, false },
};

/* ------------------------------------------------------------------ temp dir, processes */

static char tmpdir[LOUPE_TMPDIR_MAX];

static void tmp_setup(void)
{
	/* a closed output pipe (| head) must fail a write, not kill us before .fini cleans up */
	signal(SIGPIPE, SIG_IGN);
	loupe_tmpdir_create(tmpdir, "/tmp/loupe-test-replay.XXXXXX");
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

static char *tmp_path(const char *name)
{
	return loupe_tmpdir_path(tmpdir, "%s", name);
}

#define RUN(...) loupe_proc_run(tmpdir, (char *const[]){ __VA_ARGS__, NULL })

static bool have_root(void)
{
	return geteuid() == 0;
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------------ strings */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ what we compare */

enum diff_field {
	DF_SRC,
	DF_DST,
	DF_SPORT,
	DF_DPORT,
	DF_VLAN,
	DF_INNER_VLAN,
	DF_METHOD,
	DF_PATH,
	DF_HOST,
	DF_SNI,
	DF_ALPN,
	DF_VERSION,
	DF_QNAME,
	DF_QTYPE,
	DF_NAME_INVALID,
	DF_DNS_TCP,
	DF_MAX,
};

static const char *const diff_names[DF_MAX] = {
	[DF_SRC] = "src",	  [DF_DST] = "dst",	[DF_SPORT] = "sport",
	[DF_DPORT] = "dport",	  [DF_VLAN] = "vlan",	[DF_INNER_VLAN] = "inner_vlan",
	[DF_METHOD] = "method",	  [DF_PATH] = "path",	[DF_HOST] = "host",
	[DF_SNI] = "sni",	  [DF_ALPN] = "alpn",	[DF_VERSION] = "version",
	[DF_QNAME] = "qname",	  [DF_QTYPE] = "qtype", [DF_NAME_INVALID] = "name_invalid",
	[DF_DNS_TCP] = "dns_tcp",
};

/* One L7 message: a tsv row's expectation or an event's content. */
struct msg {
	int kind;		  /* LOUPE_EV_HTTP_REQUEST, _TLS_CLIENT_HELLO, _DNS_QUERY */
	unsigned int frame;	  /* tshark's frame; for events: the frame with the event's time */
	uint8_t src[16], dst[16]; /* IPv6 or IPv4-mapped */
	char src_s[64], dst_s[64];
	unsigned int sport, dport;
	bool has_vlan, has_inner_vlan;
	unsigned int vlan, inner_vlan;
	char method[64];
	char path[2048];
	char host[1024];
	bool path_truncated, host_truncated;
	char sni[1024];
	char alpn[1024]; /* joined with '|' as tshark does */
	unsigned int version;
	char qname[1024];
	unsigned int qtype; /* 0: not known (tshark could not read it) */
	bool name_invalid;
	bool dns_tcp;
	/* events only */
	uint64_t seq;
	uint64_t time_ns;
	bool used, repeat;
};

struct msgs {
	struct msg *v;
	size_t n;
};

static struct msg *msgs_add(struct msgs *m)
{
	m->v = realloc(m->v, (m->n + 1) * sizeof(*m->v));
	cr_assert_not_null(m->v);
	memset(&m->v[m->n], 0, sizeof(m->v[0]));
	return &m->v[m->n++];
}

static const char *kind_label(int kind)
{
	switch (kind) {
	case LOUPE_EV_HTTP_REQUEST:
		return "HTTP_REQUEST";
	case LOUPE_EV_TLS_CLIENT_HELLO:
		return "TLS_CLIENT_HELLO";
	case LOUPE_EV_DNS_QUERY:
		return "DNS_QUERY";
	default:
		return "?";
	}
}

/* Bit DF_x set for each field that differs between an expectation and an event. */
static unsigned int msg_diff(const struct msg *w, const struct msg *e)
{
	unsigned int d = 0;

	if (memcmp(w->src, e->src, 16))
		d |= 1u << DF_SRC;
	if (memcmp(w->dst, e->dst, 16))
		d |= 1u << DF_DST;
	if (w->sport != e->sport)
		d |= 1u << DF_SPORT;
	if (w->dport != e->dport)
		d |= 1u << DF_DPORT;
	if (w->has_vlan != e->has_vlan || (w->has_vlan && w->vlan != e->vlan))
		d |= 1u << DF_VLAN;
	/* the second tag is checked when the event reports one */
	if (e->has_inner_vlan && (!w->has_inner_vlan || w->inner_vlan != e->inner_vlan))
		d |= 1u << DF_INNER_VLAN;

	switch (w->kind) {
	case LOUPE_EV_HTTP_REQUEST:
		if (strcmp(w->method, e->method))
			d |= 1u << DF_METHOD;
		/* a value cut at the datapath's limit must be the start of tshark's */
		if (e->path_truncated ? !starts_with(w->path, e->path) || !e->path[0]
				      : strcmp(w->path, e->path))
			d |= 1u << DF_PATH;
		if (e->host_truncated ? !starts_with(w->host, e->host) || !e->host[0]
				      : strcmp(w->host, e->host))
			d |= 1u << DF_HOST;
		break;
	case LOUPE_EV_TLS_CLIENT_HELLO:
		if (strcmp(w->sni, e->sni))
			d |= 1u << DF_SNI;
		if (strcmp(w->alpn, e->alpn))
			d |= 1u << DF_ALPN;
		if (w->version != e->version)
			d |= 1u << DF_VERSION;
		break;
	case LOUPE_EV_DNS_QUERY:
		if (w->name_invalid != e->name_invalid)
			d |= 1u << DF_NAME_INVALID;
		/* tshark shows a placeholder for an invalid name: nothing to compare the name to */
		if (!w->name_invalid && strcmp(w->qname, e->qname))
			d |= 1u << DF_QNAME;
		if (w->qtype && w->qtype != e->qtype)
			d |= 1u << DF_QTYPE;
		if (w->dns_tcp != e->dns_tcp)
			d |= 1u << DF_DNS_TCP;
		break;
	}
	return d;
}

/* Two events with the same content: a repeat (retransmission) of the first. */
static bool msg_same_event(const struct msg *a, const struct msg *b)
{
	return a->kind == b->kind && !memcmp(a->src, b->src, 16) && !memcmp(a->dst, b->dst, 16) &&
	       a->sport == b->sport && a->dport == b->dport && a->has_vlan == b->has_vlan &&
	       a->vlan == b->vlan && a->has_inner_vlan == b->has_inner_vlan &&
	       a->inner_vlan == b->inner_vlan && !strcmp(a->method, b->method) &&
	       !strcmp(a->path, b->path) && !strcmp(a->host, b->host) && !strcmp(a->sni, b->sni) &&
	       !strcmp(a->alpn, b->alpn) && a->version == b->version &&
	       !strcmp(a->qname, b->qname) && a->qtype == b->qtype &&
	       a->name_invalid == b->name_invalid && a->dns_tcp == b->dns_tcp;
}

/* The value of field @f in @m, for messages. */
static void msg_field(const struct msg *m, enum diff_field f, char *buf, size_t size)
{
	switch (f) {
	case DF_SRC:
		snprintf(buf, size, "%s", m->src_s);
		break;
	case DF_DST:
		snprintf(buf, size, "%s", m->dst_s);
		break;
	case DF_SPORT:
		snprintf(buf, size, "%u", m->sport);
		break;
	case DF_DPORT:
		snprintf(buf, size, "%u", m->dport);
		break;
	case DF_VLAN:
		if (m->has_vlan)
			snprintf(buf, size, "%u", m->vlan);
		else
			snprintf(buf, size, "none");
		break;
	case DF_INNER_VLAN:
		if (m->has_inner_vlan)
			snprintf(buf, size, "%u", m->inner_vlan);
		else
			snprintf(buf, size, "none");
		break;
	case DF_METHOD:
		snprintf(buf, size, "'%s'", m->method);
		break;
	case DF_PATH:
		snprintf(buf, size, "'%s'%s", m->path, m->path_truncated ? " (truncated)" : "");
		break;
	case DF_HOST:
		snprintf(buf, size, "'%s'%s", m->host, m->host_truncated ? " (truncated)" : "");
		break;
	case DF_SNI:
		snprintf(buf, size, "'%s'", m->sni);
		break;
	case DF_ALPN:
		snprintf(buf, size, "'%s'", m->alpn);
		break;
	case DF_VERSION:
		snprintf(buf, size, "0x%04x", m->version);
		break;
	case DF_QNAME:
		snprintf(buf, size, "'%s'", m->qname);
		break;
	case DF_QTYPE:
		snprintf(buf, size, "%u", m->qtype);
		break;
	case DF_NAME_INVALID:
		snprintf(buf, size, "%s", m->name_invalid ? "true" : "false");
		break;
	case DF_DNS_TCP:
		snprintf(buf, size, "%s", m->dns_tcp ? "true" : "false");
		break;
	default:
		snprintf(buf, size, "?");
	}
}

static void msg_describe(const struct msg *m, char *buf, size_t size)
{
	int n;

	n = snprintf(buf, size, "%s %s:%u -> %s:%u", kind_label(m->kind), m->src_s, m->sport,
		     m->dst_s, m->dport);
	if (m->has_vlan)
		n += snprintf(buf + n, size - n, " vlan=%u", m->vlan);
	switch (m->kind) {
	case LOUPE_EV_HTTP_REQUEST:
		snprintf(buf + n, size - n, " %s host='%s' path='%.120s'", m->method, m->host,
			 m->path);
		break;
	case LOUPE_EV_TLS_CLIENT_HELLO:
		snprintf(buf + n, size - n, " sni='%s' alpn='%s' version=0x%04x", m->sni, m->alpn,
			 m->version);
		break;
	case LOUPE_EV_DNS_QUERY:
		snprintf(buf + n, size - n, " qname='%s' qtype=%u%s%s", m->qname, m->qtype,
			 m->name_invalid ? " name_invalid" : "", m->dns_tcp ? " tcp" : "");
		break;
	}
}

/* ------------------------------------------------------------------ tshark's tsv */

static bool tsv_load(const char *path, struct loupe_tsv *t)
{
	if (loupe_tsv_parse(loupe_proc_read_all(path, NULL), t))
		return true;
	loupe_tsv_free(t);
	return false;
}

static const char *tsv_get(const struct loupe_tsv *t, int row, const char *col)
{
	const char *v = loupe_tsv_field(t, row, col);

	if (!v)
		cr_assert_fail("tsv has no column %s", col);
	return v ? v : "";
}

static bool is_grease(unsigned int v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* The common part of a row: addresses, ports, VLAN tags. */
static void want_common(const struct loupe_tsv *t, int r, struct msg *w)
{
	const char *ad = tsv_get(t, r, "ieee8021ad.id"), *q = tsv_get(t, r, "vlan.id");
	char buf[64];
	int qi = 0;

	w->frame = strtoul(tsv_get(t, r, "frame.number"), NULL, 10);
	loupe_tsv_part(tsv_get(t, r, "ip.src"), 0, w->src_s, sizeof(w->src_s));
	if (!w->src_s[0])
		loupe_tsv_part(tsv_get(t, r, "ipv6.src"), 0, w->src_s, sizeof(w->src_s));
	loupe_tsv_part(tsv_get(t, r, "ip.dst"), 0, w->dst_s, sizeof(w->dst_s));
	if (!w->dst_s[0])
		loupe_tsv_part(tsv_get(t, r, "ipv6.dst"), 0, w->dst_s, sizeof(w->dst_s));
	cr_expect(loupe_tsv_addr(w->src_s, w->src), "frame %u: bad source '%s'", w->frame,
		  w->src_s);
	cr_expect(loupe_tsv_addr(w->dst_s, w->dst), "frame %u: bad destination '%s'", w->frame,
		  w->dst_s);

	loupe_tsv_part(tsv_get(t, r, "tcp.srcport"), 0, buf, sizeof(buf));
	w->dns_tcp = buf[0] != '\0';
	if (!buf[0])
		loupe_tsv_part(tsv_get(t, r, "udp.srcport"), 0, buf, sizeof(buf));
	w->sport = strtoul(buf, NULL, 10);
	loupe_tsv_part(tsv_get(t, r, w->dns_tcp ? "tcp.dstport" : "udp.dstport"), 0, buf,
		       sizeof(buf));
	w->dport = strtoul(buf, NULL, 10);

	/* outermost tag first: an 802.1ad S-tag, else the first 802.1Q tag */
	if (*ad) {
		w->has_vlan = true;
		loupe_tsv_part(ad, 0, buf, sizeof(buf));
		w->vlan = strtoul(buf, NULL, 10);
	} else if (*q) {
		w->has_vlan = true;
		loupe_tsv_part(q, qi++, buf, sizeof(buf));
		w->vlan = strtoul(buf, NULL, 10);
	}
	if (loupe_tsv_parts(ad) > 1) {
		w->has_inner_vlan = true;
		loupe_tsv_part(ad, 1, buf, sizeof(buf));
		w->inner_vlan = strtoul(buf, NULL, 10);
	} else if (w->has_vlan && loupe_tsv_parts(q) > qi) {
		w->has_inner_vlan = true;
		loupe_tsv_part(q, qi, buf, sizeof(buf));
		w->inner_vlan = strtoul(buf, NULL, 10);
	}
}

/*
 * The rows of @t as expected messages. A frame with n pipelined HTTP requests gives n;
 * tshark's DNS placeholders (<Root>, <Name contains a pointer that loops>) and a query whose
 * name tshark could not read at all (malformed) map to name_invalid / the empty name.
 */
static void tsv_wants(const struct loupe_tsv *t, const char *capture, struct msgs *wants)
{
	char buf[2048];
	int r, i, n;

	for (r = 0; r < t->nrows; r++) {
		const char *method = tsv_get(t, r, "http.request.method");
		const char *sni = tsv_get(t, r, "tls.handshake.extensions_server_name");
		const char *legacy = tsv_get(t, r, "tls.handshake.version");
		struct msg common = { 0 }, *w;

		want_common(t, r, &common);
		if (*method) {
			const char *uri = tsv_get(t, r, "http.request.uri");
			const char *host = tsv_get(t, r, "http.host");

			n = loupe_tsv_parts(method);
			cr_expect(loupe_tsv_parts(uri) == n,
				  "%s frame %u: %d methods but %d URIs: cannot pair them", capture,
				  common.frame, n, loupe_tsv_parts(uri));
			cr_expect(loupe_tsv_parts(host) == n || loupe_tsv_parts(host) == 0 ||
					  n == 1,
				  "%s frame %u: %d requests but %d hosts: cannot pair them",
				  capture, common.frame, n, loupe_tsv_parts(host));
			for (i = 0; i < n; i++) {
				w = msgs_add(wants);
				*w = common;
				w->kind = LOUPE_EV_HTTP_REQUEST;
				loupe_tsv_part(method, i, w->method, sizeof(w->method));
				if (n == 1) {
					snprintf(w->path, sizeof(w->path), "%s", uri);
					snprintf(w->host, sizeof(w->host), "%s", host);
				} else {
					loupe_tsv_part(uri, i, w->path, sizeof(w->path));
					loupe_tsv_part(host, i, w->host, sizeof(w->host));
				}
			}
		} else if (*sni || *legacy) {
			const char *sv =
				tsv_get(t, r, "tls.handshake.extensions.supported_version");
			unsigned int v, max = 0;

			cr_expect(loupe_tsv_parts(legacy) <= 1,
				  "%s frame %u: %d ClientHellos in one frame: cannot pair them",
				  capture, common.frame, loupe_tsv_parts(legacy));
			w = msgs_add(wants);
			*w = common;
			w->kind = LOUPE_EV_TLS_CLIENT_HELLO;
			snprintf(w->sni, sizeof(w->sni), "%s", sni);
			snprintf(w->alpn, sizeof(w->alpn), "%s",
				 tsv_get(t, r, "tls.handshake.extensions_alpn_str"));
			for (i = 0; i < loupe_tsv_parts(sv); i++) {
				loupe_tsv_part(sv, i, buf, sizeof(buf));
				v = strtoul(buf, NULL, 16);
				if (!is_grease(v) && v > max)
					max = v;
			}
			if (!max) {
				loupe_tsv_part(legacy, 0, buf, sizeof(buf));
				max = strtoul(buf, NULL, 16);
			}
			w->version = max;
		} else {
			const char *qname = tsv_get(t, r, "dns.qry.name");
			const char *qtype = tsv_get(t, r, "dns.qry.type");

			w = msgs_add(wants);
			*w = common;
			w->kind = LOUPE_EV_DNS_QUERY;
			/* several questions: the datapath reports the first */
			loupe_tsv_part(qname, 0, w->qname, sizeof(w->qname));
			loupe_tsv_part(qtype, 0, buf, sizeof(buf));
			w->qtype = strtoul(buf, NULL, 10);
			if (strcmp(w->qname, "<Root>") == 0) {
				w->qname[0] = '\0';
			} else if (w->qname[0] == '<' || (!*qname && !*qtype)) {
				/* a placeholder, or a question tshark could not read */
				w->name_invalid = true;
				w->qname[0] = '\0';
			}
		}
	}
}

/* ------------------------------------------------------------------ loupectl's events */

struct frames {
	uint64_t *ts;
	size_t n;
};

/* The capture's frame times, to name the frame an event came from. */
static bool frames_load(const char *pcap_path, struct frames *f)
{
	char err[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *d;
	pcap_t *p;

	memset(f, 0, sizeof(*f));
	p = pcap_open_offline_with_tstamp_precision(pcap_path, PCAP_TSTAMP_PRECISION_NANO, err);
	if (!p)
		return false;
	while (pcap_next_ex(p, &h, &d) == 1) {
		f->ts = realloc(f->ts, (f->n + 1) * sizeof(*f->ts));
		f->ts[f->n++] = (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec;
	}
	pcap_close(p);
	return true;
}

static unsigned int frames_find(const struct frames *f, uint64_t ts)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (f->ts[i] == ts)
			return (unsigned int)i + 1;
	return 0;
}

/*
 * Parses loupectl's -o json output: every line must be a JSON object with a kind and a seq
 * one more than the line before. L7 events go to @events; returns the number of lines.
 */
static size_t parse_events(const char *name, const char *out, const struct frames *fr,
			   struct msgs *events)
{
	const char *line = out, *nl;
	size_t lines = 0;
	char *copy;

	while (*line) {
		struct json_object *o, *http, *tls, *dns, *alpn;
		const char *kind;
		struct msg *e;
		size_t i;

		nl = strchr(line, '\n');
		cr_assert_not_null(nl, "%s: output does not end with a newline", name);
		copy = strndup(line, nl - line);
		line = nl + 1;
		lines++;
		o = json_tokener_parse(copy);
		cr_assert(o && json_object_is_type(o, json_type_object),
			  "%s: output line %zu is not a JSON object: %s", name, lines, copy);
		kind = loupe_json_str(o, "kind");
		cr_assert(*kind, "%s: output line %zu has no kind: %s", name, lines, copy);
		cr_assert_eq(loupe_json_u64(o, "seq"), lines,
			     "%s: output line %zu has seq %llu: %s", name, lines,
			     (unsigned long long)loupe_json_u64(o, "seq"), copy);
		free(copy);

		e = NULL;
		if (strcmp(kind, "HTTP_REQUEST") == 0) {
			e = msgs_add(events);
			e->kind = LOUPE_EV_HTTP_REQUEST;
		} else if (strcmp(kind, "TLS_CLIENT_HELLO") == 0) {
			e = msgs_add(events);
			e->kind = LOUPE_EV_TLS_CLIENT_HELLO;
		} else if (strcmp(kind, "DNS_QUERY") == 0) {
			e = msgs_add(events);
			e->kind = LOUPE_EV_DNS_QUERY;
		}
		if (!e) {
			json_object_put(o);
			continue;
		}
		e->seq = lines;
		cr_expect(loupe_json_time(loupe_json_str(o, "time"), &e->time_ns),
			  "%s: seq %zu: bad time '%s'", name, lines, loupe_json_str(o, "time"));
		e->frame = frames_find(fr, e->time_ns);
		snprintf(e->src_s, sizeof(e->src_s), "%s", loupe_json_str(o, "srcIp"));
		snprintf(e->dst_s, sizeof(e->dst_s), "%s", loupe_json_str(o, "dstIp"));
		cr_expect(loupe_tsv_addr(e->src_s, e->src), "%s: seq %zu: bad srcIp", name, lines);
		cr_expect(loupe_tsv_addr(e->dst_s, e->dst), "%s: seq %zu: bad dstIp", name, lines);
		e->sport = loupe_json_u64(o, "srcPort");
		e->dport = loupe_json_u64(o, "dstPort");
		e->has_vlan = loupe_json_bool(o, "hasVlan");
		e->vlan = loupe_json_u64(o, "vlanId");
		e->has_inner_vlan = loupe_json_bool(o, "hasInnerVlan");
		e->inner_vlan = loupe_json_u64(o, "innerVlanId");

		http = loupe_json_obj(o, "http");
		snprintf(e->method, sizeof(e->method), "%s", loupe_json_str(http, "method"));
		snprintf(e->path, sizeof(e->path), "%s", loupe_json_str(http, "path"));
		snprintf(e->host, sizeof(e->host), "%s", loupe_json_str(http, "host"));
		e->path_truncated = loupe_json_bool(http, "pathTruncated");
		e->host_truncated = loupe_json_bool(http, "hostTruncated");

		tls = loupe_json_obj(o, "tls");
		snprintf(e->sni, sizeof(e->sni), "%s", loupe_json_str(tls, "sni"));
		e->version = loupe_json_u64(tls, "version");
		alpn = loupe_json_obj(tls, "alpn");
		for (i = 0; alpn && i < json_object_array_length(alpn); i++) {
			size_t len = strlen(e->alpn);

			snprintf(e->alpn + len, sizeof(e->alpn) - len, "%s%s", i ? "|" : "",
				 json_object_get_string(json_object_array_get_idx(alpn, i)));
		}

		dns = loupe_json_obj(o, "dns");
		snprintf(e->qname, sizeof(e->qname), "%s", loupe_json_str(dns, "qname"));
		e->qtype = loupe_json_u64(dns, "qtype");
		e->name_invalid = loupe_json_bool(dns, "nameInvalid");
		e->dns_tcp = loupe_json_bool(dns, "tcp");
		json_object_put(o);
	}
	return lines;
}

/* ------------------------------------------------------------------ the comparison */

struct result {
	size_t rows, events, matched, repeats, known, failures;
};

/* A difference: known (reported, fine) or not (a failure). */
static void difference(const char *capture, unsigned int frame, const char *field,
		       struct result *res, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void difference(const char *capture, unsigned int frame, const char *field,
		       struct result *res, const char *fmt, ...)
{
	char msg[4096];
	struct known_diff *k;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (k = known_diffs; k->capture; k++) {
		if (strcmp(k->capture, capture) || k->frame != frame || strcmp(k->field, field))
			continue;
		k->seen = true;
		res->known++;
		fprintf(stderr, "  known difference %s frame %u %s: %s\n    reason: %s\n", capture,
			frame, field, msg, k->reason);
		return;
	}
	res->failures++;
	fprintf(stderr, "  DIFFERENCE %s frame %u %s: %s\n", capture, frame, field, msg);
	fprintf(stderr,
		"    (if the datapath cannot do better, list it in known_diffs[]: "
		"{ \"%s\", %u, \"%s\", \"<reason>\" })\n",
		capture, frame, field);
}

static void compare(const char *capture, struct msgs *wants, struct msgs *events,
		    struct result *res)
{
	char a[4096], b[4096], va[4096], vb[4096];
	size_t i, j;

	/* 1. exact matches, in tshark's order */
	for (i = 0; i < wants->n; i++) {
		struct msg *w = &wants->v[i];

		for (j = 0; j < events->n; j++) {
			struct msg *e = &events->v[j];

			if (!e->used && e->kind == w->kind && !msg_diff(w, e)) {
				e->used = w->used = true;
				res->matched++;
				break;
			}
		}
	}
	/* 2. a row without a match: the event of its flow with the fewest differences */
	for (i = 0; i < wants->n; i++) {
		struct msg *w = &wants->v[i], *best = NULL;
		unsigned int d, best_d = 0;
		int f;

		if (w->used)
			continue;
		for (j = 0; j < events->n; j++) {
			struct msg *e = &events->v[j];

			if (e->used || e->kind != w->kind)
				continue;
			d = msg_diff(w, e);
			if (d &
			    ((1u << DF_SRC) | (1u << DF_DST) | (1u << DF_SPORT) | (1u << DF_DPORT)))
				continue;
			if (!best || __builtin_popcount(d) < __builtin_popcount(best_d)) {
				best = e;
				best_d = d;
			}
		}
		msg_describe(w, a, sizeof(a));
		if (!best) {
			difference(capture, w->frame, "event", res, "no event for tshark's %s", a);
			continue;
		}
		best->used = w->used = true;
		for (f = 0; f < DF_MAX; f++) {
			if (!(best_d & (1u << f)))
				continue;
			msg_field(w, f, va, sizeof(va));
			msg_field(best, f, vb, sizeof(vb));
			difference(capture, w->frame, diff_names[f], res,
				   "%s: tshark %s, loupe %s (event seq %llu)", a, va, vb,
				   (unsigned long long)best->seq);
		}
	}
	/* 3. events no row took: fine if they repeat one that did (retransmission) */
	for (j = 0; j < events->n; j++) {
		struct msg *e = &events->v[j];

		if (e->used)
			continue;
		for (i = 0; i < events->n; i++) {
			if (events->v[i].used && msg_same_event(&events->v[i], e)) {
				e->repeat = true;
				res->repeats++;
				break;
			}
		}
		if (e->repeat)
			continue;
		msg_describe(e, b, sizeof(b));
		difference(capture, e->frame, "extra", res,
			   "loupe's event seq %llu has no tshark row: %s",
			   (unsigned long long)e->seq, b);
	}
}

static int pcap_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".pcap") == 0;
}

struct totals {
	size_t captures, rows, failures;
	size_t kinds[LOUPE_EV_KIND_MAX];
	size_t vlan_rows;
};

/* Replays one capture and compares it with its tsv; prints one line (and its differences). */
static void compare_capture(const char *label, const char *dir, const char *file,
			    struct totals *tot)
{
	char name[256], pcap_path[1024], tsv_path[1024];
	struct msgs wants = { 0 }, events = { 0 };
	struct result res = { 0 };
	struct frames fr;
	struct loupe_tsv t;
	struct loupe_proc_result r;
	size_t i;

	snprintf(name, sizeof(name), "%.*s", (int)(strlen(file) - 5), file);
	snprintf(pcap_path, sizeof(pcap_path), "%s/%s", dir, file);
	snprintf(tsv_path, sizeof(tsv_path), "%s/%s.tsv", dir, name);
	tot->captures++;

	if (!tsv_load(tsv_path, &t)) {
		fprintf(stderr, "[%s] %s: FAIL: no tshark reading %s\n", label, name, tsv_path);
		cr_expect_fail("%s: %s missing", name, tsv_path);
		tot->failures++;
		return;
	}
	cr_assert(frames_load(pcap_path, &fr), "%s: libpcap cannot read it", pcap_path);
	tsv_wants(&t, name, &wants);
	for (i = 0; i < wants.n; i++) {
		tot->kinds[wants.v[i].kind]++;
		tot->vlan_rows += wants.v[i].has_vlan;
	}
	tot->rows += wants.n;

	r = RUN(LOUPECTL, "replay", "-o", "json", pcap_path);
	/* a datapath that does not load fails every capture alike: say it once */
	cr_assert(!strstr(r.err, "cannot load the datapath"), "%s", r.err);
	if (r.status != 0) {
		fprintf(stderr, "[%s] %s: FAIL: loupectl exited %d: %s\n", label, name, r.status,
			r.err);
		cr_expect_fail("%s: loupectl replay exited %d", name, r.status);
		tot->failures++;
		goto out;
	}
	parse_events(name, r.out, &fr, &events);
	res.rows = wants.n;
	res.events = events.n;
	compare(name, &wants, &events, &res);
	fprintf(stderr,
		"[%s] %s: %zu tshark rows, %zu L7 events: %zu matched, %zu repeats, %zu known "
		"differences, %zu unexplained -> %s\n",
		label, name, res.rows, res.events, res.matched, res.repeats, res.known,
		res.failures, res.failures ? "FAIL" : "ok");
	if (res.failures) {
		cr_expect_fail("%s: %zu unexplained differences from tshark (listed above)", name,
			       res.failures);
		tot->failures++;
	}
out:
	loupe_proc_result_free(&r);
	free(wants.v);
	free(events.v);
	free(fr.ts);
	loupe_tsv_free(&t);
}

/* Compares every pcap of @dir; returns how many there were. */
static size_t compare_dir(const char *label, const char *dir, struct totals *tot)
{
	struct dirent **list;
	struct known_diff *k;
	char path[1024];
	int n, i;

	n = scandir(dir, &list, pcap_filter, alphasort);
	cr_assert(n >= 0, "%s: %s", dir, strerror(errno));
	for (i = 0; i < n; i++) {
		compare_capture(label, dir, list[i]->d_name, tot);
		free(list[i]);
	}
	free(list);

	/* a known difference of a capture of this directory that did not occur is stale */
	for (k = known_diffs; k->capture; k++) {
		snprintf(path, sizeof(path), "%s/%s.pcap", dir, k->capture);
		if (k->seen || !file_exists(path))
			continue;
		fprintf(stderr,
			"[%s] STALE known difference %s frame %u %s: it no longer occurs, "
			"remove it from known_diffs[]\n",
			label, k->capture, k->frame, k->field);
		cr_expect_fail("known difference %s frame %u %s no longer occurs", k->capture,
			       k->frame, k->field);
		tot->failures++;
	}
	fprintf(stderr,
		"[%s] %zu captures, %zu tshark rows (HTTP %zu, TLS %zu, DNS %zu), %zu failed\n",
		label, tot->captures, tot->rows, tot->kinds[LOUPE_EV_HTTP_REQUEST],
		tot->kinds[LOUPE_EV_TLS_CLIENT_HELLO], tot->kinds[LOUPE_EV_DNS_QUERY],
		tot->failures);
	return (size_t)n;
}

/* ------------------------------------------------------------------ tests */

TestSuite(replay, .init = tmp_setup, .fini = tmp_teardown, .timeout = 600);

Test(replay, corpus)
{
	struct totals tot = { 0 };
	struct stat st;

	if (stat(LOUPE_SHARED_CORPUS, &st) || !S_ISDIR(st.st_mode))
		SKIP("shared corpus %s is not there: nothing to compare", LOUPE_SHARED_CORPUS);
	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	cr_assert(compare_dir("corpus", LOUPE_SHARED_CORPUS, &tot) > 0, "no *.pcap in %s",
		  LOUPE_SHARED_CORPUS);
}

Test(replay, own_captures)
{
	struct totals tot = { 0 };

	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	cr_assert(compare_dir("tests/data", LOUPE_TEST_DATA, &tot) > 0,
		  "no *.pcap in %s: the recorded captures are part of the repository "
		  "(tests/captures/record.sh)",
		  LOUPE_TEST_DATA);
	cr_expect(tot.kinds[LOUPE_EV_HTTP_REQUEST] > 0, "tests/data has no HTTP request");
	cr_expect(tot.kinds[LOUPE_EV_TLS_CLIENT_HELLO] > 0, "tests/data has no TLS ClientHello");
	cr_expect(tot.kinds[LOUPE_EV_DNS_QUERY] > 0, "tests/data has no DNS query");
	cr_expect(tot.vlan_rows > 0, "tests/data has no VLAN-tagged capture");
}

/* tests/data/@prefer, else the first tests/data capture by name. */
static void own_capture(const char *prefer, char *buf, size_t size)
{
	struct dirent **list;
	int n, i;

	snprintf(buf, size, "%s/%s", LOUPE_TEST_DATA, prefer);
	if (file_exists(buf))
		return;
	n = scandir(LOUPE_TEST_DATA, &list, pcap_filter, alphasort);
	if (n <= 0)
		SKIP("no *.pcap in %s (the own_captures test fails for that)", LOUPE_TEST_DATA);
	snprintf(buf, size, "%s/%s", LOUPE_TEST_DATA, list[0]->d_name);
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void copy_file(const char *from, const char *to, long cut)
{
	size_t len;
	char *data;
	FILE *f;

	/* read_all stops at a NUL: read binary files with stdio instead */
	f = fopen(from, "rb");
	cr_assert_not_null(f, "%s: %s", from, strerror(errno));
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	rewind(f);
	data = malloc(len);
	cr_assert_eq(fread(data, 1, len, f), len);
	fclose(f);
	cr_assert((long)len > cut);
	f = fopen(to, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len - cut, f), len - cut);
	fclose(f);
	free(data);
}

static size_t count_frames(const char *path)
{
	struct frames fr;
	size_t n;

	cr_assert(frames_load(path, &fr), "%s: libpcap cannot read it", path);
	n = fr.n;
	free(fr.ts);
	return n;
}

Test(replay, missing_file)
{
	char *path = tmp_path("no-such-capture.pcap");
	struct loupe_proc_result r = RUN(LOUPECTL, "replay", path);

	cr_expect_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
	cr_expect(strstr(r.err, path), "stderr does not name the file: %s", r.err);
	cr_expect(strstr(r.err, "No such file"), "stderr does not say why: %s", r.err);
	cr_expect_str_empty(r.out);
	loupe_proc_result_free(&r);
	free(path);
}

Test(replay, not_a_capture)
{
	char *path = tmp_path("notes.txt");
	struct loupe_proc_result r;
	FILE *f;

	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("GET / HTTP/1.1\r\nHost: example.test\r\n\r\nthis is a text file\n", f);
	fclose(f);
	r = RUN(LOUPECTL, "replay", path);
	cr_expect_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
	cr_expect(strstr(r.err, path), "stderr does not name the file: %s", r.err);
	cr_expect(strstr(r.err, "not a capture"), "stderr does not say 'not a capture': %s", r.err);
	loupe_proc_result_free(&r);
	free(path);
}

Test(replay, empty_file)
{
	char *path = tmp_path("empty.pcap");
	struct loupe_proc_result r;

	fclose(fopen(path, "w"));
	r = RUN(LOUPECTL, "replay", path);
	cr_expect_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
	cr_expect(strstr(r.err, path) && strstr(r.err, "not a capture"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);
	free(path);
}

Test(replay, directory)
{
	struct loupe_proc_result r = RUN(LOUPECTL, "replay", tmpdir);

	cr_expect_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
	cr_expect(strstr(r.err, tmpdir) && strstr(r.err, "directory"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);
}

/* A one-packet capture of link type @dlt, written with libpcap. */
static char *write_capture(const char *name, int dlt, const u_char *pkt, size_t len)
{
	struct pcap_pkthdr h = { .caplen = (bpf_u_int32)len, .len = (bpf_u_int32)len };
	char *path = tmp_path(name);
	pcap_dumper_t *d;
	pcap_t *p;

	p = pcap_open_dead(dlt, 65535);
	cr_assert_not_null(p);
	d = pcap_dump_open(p, path);
	cr_assert_not_null(d, "pcap_dump_open %s: %s", path, pcap_geterr(p));
	h.ts.tv_sec = 1700000000;
	pcap_dump((u_char *)d, &h, pkt);
	pcap_dump_close(d);
	pcap_close(p);
	return path;
}

static void expect_linktype_error(int dlt, const char *dlt_name)
{
	static const u_char ip[28] = { 0x45, 0, 0,   28, 0,  1, 0,    0,    64, 17, 0, 0, 198, 18,
				       10,   1, 198, 18, 10, 2, 0x9c, 0x40, 0,	53, 0, 8, 0,   0 };
	u_char sll[16 + sizeof(ip)] = {
		0, 4, 0, 1, 0, 6, 2, 0, 0xc6, 0x12, 0x0a, 0x01, 0, 0, 8, 0
	};
	char name[64];
	char *path;
	struct loupe_proc_result r;

	memcpy(sll + 16, ip, sizeof(ip));
	snprintf(name, sizeof(name), "linktype-%s.pcap", dlt_name);
	if (dlt == DLT_RAW)
		path = write_capture(name, dlt, ip, sizeof(ip));
	else
		path = write_capture(name, dlt, sll, sizeof(sll));
	r = RUN(LOUPECTL, "replay", path);
	cr_expect_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
	cr_expect(strstr(r.err, path), "stderr does not name the file: %s", r.err);
	cr_expect(strstr(r.err, dlt_name), "stderr does not name link type %s: %s", dlt_name,
		  r.err);
	cr_expect(strstr(r.err, "not Ethernet"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);
	free(path);
}

Test(replay, linktype_raw)
{
	expect_linktype_error(DLT_RAW, "RAW");
}

Test(replay, linktype_linux_sll)
{
	expect_linktype_error(DLT_LINUX_SLL, "LINUX_SLL");
}

Test(replay, truncated_record)
{
	char src[1024], want[64];
	char *path = tmp_path("cut.pcap");
	size_t frames, lines = 0;
	struct loupe_proc_result r;
	const char *p;

	own_capture("http-v4.pcap", src, sizeof(src));
	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	frames = count_frames(src);
	copy_file(src, path, 3); /* the last record loses its last 3 bytes */
	r = RUN(LOUPECTL, "replay", "-o", "json", path);
	cr_expect_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
	snprintf(want, sizeof(want), "frame %zu", frames);
	cr_expect(strstr(r.err, path) && strstr(r.err, want) && strstr(r.err, "truncated"),
		  "stderr should name the file, '%s' and 'truncated': %s", want, r.err);
	for (p = r.out; (p = strchr(p, '\n')); p++)
		lines++;
	cr_expect_gt(lines, 0, "the events before the cut record were not printed");
	loupe_proc_result_free(&r);
	free(path);
}

Test(replay, short_frame_skipped)
{
	static const u_char runt[10] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0 };
	char src[1024];
	char *path = tmp_path("runt.pcap");
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h, rh = { .caplen = sizeof(runt), .len = sizeof(runt) };
	pcap_dumper_t *d;
	const u_char *data;
	pcap_t *in, *dead;
	struct loupe_proc_result r;

	own_capture("dns-v4.pcap", src, sizeof(src));
	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	/* a 10-byte frame first, then the frames of a real capture */
	in = pcap_open_offline(src, errbuf);
	cr_assert_not_null(in, "%s", errbuf);
	dead = pcap_open_dead(DLT_EN10MB, 65535);
	d = pcap_dump_open(dead, path);
	cr_assert_not_null(d);
	rh.ts.tv_sec = 1700000000;
	pcap_dump((u_char *)d, &rh, runt);
	while (pcap_next_ex(in, &h, &data) == 1)
		pcap_dump((u_char *)d, h, data);
	pcap_dump_close(d);
	pcap_close(dead);
	pcap_close(in);

	r = RUN(LOUPECTL, "replay", "-o", "json", path);
	cr_expect_eq(r.status, 0, "a short frame must not abort the replay: exit %d, %s", r.status,
		     r.err);
	cr_expect(strstr(r.err, "shorter than 14 bytes") && strstr(r.err, "frame 1"),
		  "no warning about the skipped frame: %s", r.err);
	cr_expect(strchr(r.out, '\n'), "no events from the frames after the short one");
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "text", path);
	cr_expect_eq(r.status, 0, "exit %d, %s", r.status, r.err);
	cr_expect(strstr(r.err, "1 skipped (shorter than 14 bytes)"), "summary: %s", r.err);
	loupe_proc_result_free(&r);
	free(path);
}

Test(replay, command_line)
{
	struct loupe_proc_result r;

	r = RUN(LOUPECTL, "replay", "--bogus", "x.pcap");
	cr_expect_eq(r.status, 2, "unknown flag: exit %d", r.status);
	cr_expect(strstr(r.err, "--bogus"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "--bogus");
	cr_expect_eq(r.status, 2, "unknown global flag: exit %d", r.status);
	cr_expect(strstr(r.err, "--bogus"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "frobnicate");
	cr_expect_eq(r.status, 2, "unknown command: exit %d", r.status);
	cr_expect(strstr(r.err, "frobnicate"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL);
	cr_expect_eq(r.status, 2, "no command: exit %d", r.status);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "yaml", "x.pcap");
	cr_expect_eq(r.status, 2, "bad -o: exit %d", r.status);
	cr_expect(strstr(r.err, "yaml"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--direction", "sideways", "x.pcap");
	cr_expect_eq(r.status, 2, "bad --direction: exit %d", r.status);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o");
	cr_expect_eq(r.status, 2, "-o without a value: exit %d", r.status);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay");
	cr_expect_eq(r.status, 2, "no FILE: exit %d", r.status);
	cr_expect(strstr(r.err, "FILE"), "stderr: %s", r.err);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "a.pcap", "b.pcap");
	cr_expect_eq(r.status, 2, "two FILEs: exit %d", r.status);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "--help");
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "replay") && strstr(r.out, "version"), "--help: %s", r.out);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "help");
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "replay"), "help: %s", r.out);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "help", "replay");
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "--direction"), "help replay: %s", r.out);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "--help");
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "--output"), "replay --help: %s", r.out);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "version");
	cr_expect_eq(r.status, 0);
	cr_expect(starts_with(r.out, "loupectl "), "version: %s", r.out);
	loupe_proc_result_free(&r);
}

/* -o json: each line an object with kind and seq 1, 2, 3...; -o text: one line per event */
Test(replay, json_and_text_output)
{
	struct msgs events = { 0 };
	struct loupe_proc_result rj, rt;
	char src[1024], want[4096];
	const char *line;
	struct frames fr;
	size_t lines, tlines = 0, i;

	own_capture("http-v4.pcap", src, sizeof(src));
	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	cr_assert(frames_load(src, &fr));
	rj = RUN(LOUPECTL, "replay", "-o", "json", src);
	cr_assert_eq(rj.status, 0, "exit %d: %s", rj.status, rj.err);
	cr_expect_str_empty(rj.err, "json mode without --stats keeps stderr quiet: %s", rj.err);
	lines = parse_events(src, rj.out, &fr, &events);
	cr_expect_gt(lines, 0, "%s gave no events", src);

	rt = RUN(LOUPECTL, "replay", src);
	cr_assert_eq(rt.status, 0, "exit %d: %s", rt.status, rt.err);
	for (line = rt.out; (line = strchr(line, '\n')); line++)
		tlines++;
	cr_expect_eq(tlines, lines, "text: %zu lines, json: %zu events", tlines, lines);
	cr_expect(strstr(rt.err, "frames") && strstr(rt.err, "events:"),
		  "text mode prints the summary on stderr: %s", rt.err);
	for (i = 0; i < events.n; i++) {
		struct msg *e = &events.v[i];

		if (e->kind != LOUPE_EV_HTTP_REQUEST)
			continue;
		snprintf(want, sizeof(want), "HTTP %s %s %s", e->method, e->host[0] ? e->host : "-",
			 e->path);
		cr_expect(strstr(rt.out, want), "text output lacks '%s'", want);
	}
	loupe_proc_result_free(&rj);

	rj = RUN(LOUPECTL, "replay", "-o", "json", "--stats", src);
	cr_expect(strstr(rj.err, "events:"), "--stats: %s", rj.err);
	loupe_proc_result_free(&rj);
	loupe_proc_result_free(&rt);
	free(events.v);
	free(fr.ts);
}

Test(replay, pcapng_same_events)
{
	struct dirent **list;
	char src[1024];
	char *ng;
	struct loupe_proc_result ra, rb, re;
	int n, i;

	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	if (!file_exists("/usr/bin/editcap"))
		SKIP("editcap (package wireshark-common, with tshark) is not installed");
	n = scandir(LOUPE_TEST_DATA, &list, pcap_filter, alphasort);
	if (n <= 0)
		SKIP("no *.pcap in %s (the own_captures test fails for that)", LOUPE_TEST_DATA);
	for (i = 0; i < n; i++) {
		snprintf(src, sizeof(src), "%s/%s", LOUPE_TEST_DATA, list[i]->d_name);
		ng = tmp_path("converted.pcapng");
		re = RUN("/usr/bin/editcap", "-F", "pcapng", src, ng);
		cr_assert_eq(re.status, 0, "editcap -F pcapng %s: %s", src, re.err);
		ra = RUN(LOUPECTL, "replay", "-o", "json", src);
		rb = RUN(LOUPECTL, "replay", "-o", "json", ng);
		cr_expect_eq(ra.status, 0, "%s: %s", src, ra.err);
		cr_expect_eq(rb.status, 0, "%s as pcapng: %s", src, rb.err);
		cr_expect_str_eq(rb.out, ra.out, "%s: the pcapng copy gives other events", src);
		cr_expect(ra.out[0], "%s gave no events", src);
		fprintf(stderr, "[pcapng] %s: %s\n", list[i]->d_name,
			strcmp(ra.out, rb.out) ? "DIFFERENT" : "same events");
		loupe_proc_result_free(&ra);
		loupe_proc_result_free(&rb);
		loupe_proc_result_free(&re);
		free(ng);
		free(list[i]);
	}
	free(list);
}

/* The count of output lines whose "kind" is @kind and "direction" is @dir. */
static size_t count_kind_dir(const char *out, const char *kind, const char *dir, size_t *ret_all)
{
	const char *line = out, *nl;
	size_t n = 0, all = 0;

	for (; (nl = strchr(line, '\n')); line = nl + 1) {
		char *copy = strndup(line, nl - line);
		struct json_object *o = json_tokener_parse(copy);

		if (o && strcmp(loupe_json_str(o, "kind"), kind) == 0) {
			all++;
			n += strcmp(loupe_json_str(o, "direction"), dir) == 0;
		}
		json_object_put(o);
		free(copy);
	}
	*ret_all = all;
	return n;
}

/*
 * --direction: the sender of a flow's first frame is the pod (egress, the default) or its
 * peer (ingress); later frames of the flow follow. A client-side capture's requests are then
 * all POD_EGRESS, or all POD_INGRESS.
 */
Test(replay, direction)
{
	char src[1024];
	size_t all, n;
	struct loupe_proc_result r;

	own_capture("http-v4.pcap", src, sizeof(src));
	if (!have_root())
		SKIP("replay loads BPF programs: needs root");
	r = RUN(LOUPECTL, "replay", "-o", "json", src);
	cr_assert_eq(r.status, 0, "%s", r.err);
	n = count_kind_dir(r.out, "HTTP_REQUEST", "POD_EGRESS", &all);
	cr_expect(all > 0 && n == all, "default: %zu of %zu HTTP requests POD_EGRESS", n, all);
	loupe_proc_result_free(&r);

	r = RUN(LOUPECTL, "replay", "-o", "json", "--direction", "ingress", src);
	cr_assert_eq(r.status, 0, "%s", r.err);
	n = count_kind_dir(r.out, "HTTP_REQUEST", "POD_INGRESS", &all);
	cr_expect(all > 0 && n == all, "--direction ingress: %zu of %zu HTTP requests POD_INGRESS",
		  n, all);
	loupe_proc_result_free(&r);
}
