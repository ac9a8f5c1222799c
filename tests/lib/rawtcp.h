/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A raw TCP client for evasion tests: an AF_PACKET socket in a pod's network namespace that
 * does the handshake itself and sends a payload as segments at chosen offsets, in a chosen
 * order; then behaves as a plain stack would (retransmits from the first byte not
 * acknowledged, on a timer that doubles, and at once on a partial ACK), takes the server's
 * answer in order and acknowledges it. It reports what the server acknowledged and sent.
 * A segment may also go as two IP fragments. IPv4 only; the caller makes sure that the
 * pod's own kernel does not answer (see the evasion test).
 * Not for throughput, nor a TCP implementation: no SACK, no window probing, no congestion
 * control, one connection per object. Like the rest of tests/lib, it never prints.
 */
#ifndef LOUPE_TEST_RAWTCP_H
#define LOUPE_TEST_RAWTCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOUPE_RAWTCP_SEGS_MAX 512

struct loupe_rawtcp;

struct loupe_rawtcp_cfg {
	const char *netns;  /* a name under /var/run/netns: the socket is made there */
	const char *ifname; /* the pod's interface in it ("eth0") */
	uint8_t gw_mac[6];  /* where frames go: the host side of the veth */
	const char *src;    /* dotted quads; both in 198.18.0.0/15 */
	const char *dst;
	uint16_t sport, dport;
	uint8_t ttl;	/* 0: 64 */
	int rto_ms;	/* the first retransmission timeout; 0: 100 ms */
	int rto_max_ms; /* 0: 800 ms */
	/* > 0: a data segment whose IP payload is longer goes as two IPv4 fragments, the first
	 * with this many bytes of it (the TCP header included; a multiple of 8, at least 24) */
	uint32_t frag_at;
};

/* A piece of the payload: bytes [off, off + len). */
struct loupe_rawtcp_seg {
	uint32_t off, len;
};

/* What the connection saw so far. */
struct loupe_rawtcp_stats {
	bool established;
	bool reset;	      /* the server sent a RST */
	uint32_t acked;	      /* payload bytes the server acknowledged */
	uint32_t sent;	      /* data segments sent, first copies */
	uint32_t retransmits; /* data segments sent again */
	uint32_t rx_len;      /* the server's bytes received in order */
	uint32_t isn;	      /* our initial sequence number: payload byte i is isn + 1 + i */
};

/* The MAC address of @ifname in namespace @netns (NULL: this one). Returns 0 or -errno. */
int loupe_rawtcp_if_mac(const char *netns, const char *ifname, uint8_t ret_mac[6]);

/* Opens the socket in cfg->netns. Returns 0 or -errno (-EINVAL: an address outside the range). */
int loupe_rawtcp_open(const struct loupe_rawtcp_cfg *cfg, struct loupe_rawtcp **ret);
/* Sends a RST if the connection is open, closes the socket, frees; NULL-safe; returns NULL. */
struct loupe_rawtcp *loupe_rawtcp_free(struct loupe_rawtcp *c);

/* SYN (sent again on the timer), SYN-ACK, ACK. Returns 0, -ETIMEDOUT, -ECONNREFUSED (RST). */
int loupe_rawtcp_connect(struct loupe_rawtcp *c, int timeout_ms);

/*
 * Sends @plan's segments of @data (@len bytes, kept for retransmissions), in @plan's order,
 * each once, without waiting. The plan's segments must tile [0, @len) without overlap (in
 * any order). Returns 0, -EINVAL (a bad plan), or -errno of the send.
 */
int loupe_rawtcp_send_plan(struct loupe_rawtcp *c, const void *data, uint32_t len,
			   const struct loupe_rawtcp_seg *plan, size_t n);

/* Receives, acknowledges and retransmits until @done(c, @arg) or @timeout_ms: 0 or -ETIMEDOUT. */
int loupe_rawtcp_pump(struct loupe_rawtcp *c, bool (*done)(const struct loupe_rawtcp *, void *),
		      void *arg, int timeout_ms);
/* Until the server acknowledged @upto payload bytes: 0 or -ETIMEDOUT. */
int loupe_rawtcp_wait_acked(struct loupe_rawtcp *c, uint32_t upto, int timeout_ms);
/* Until @n data segments were sent again: 0 or -ETIMEDOUT. */
int loupe_rawtcp_wait_retransmits(struct loupe_rawtcp *c, uint32_t n, int timeout_ms);
/* Until the server's bytes in order hold @needle: 0 or -ETIMEDOUT. */
int loupe_rawtcp_wait_rx(struct loupe_rawtcp *c, const void *needle, size_t needle_len,
			 int timeout_ms);

struct loupe_rawtcp_stats loupe_rawtcp_stats(const struct loupe_rawtcp *c);
/* The server's bytes received in order (*ret_len of them); valid until the next call. */
const uint8_t *loupe_rawtcp_rx(const struct loupe_rawtcp *c, uint32_t *ret_len);

#endif
