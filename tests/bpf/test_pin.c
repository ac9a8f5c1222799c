// SPDX-License-Identifier: Apache-2.0
/*
 * Pinning: a datapath opened on a bpffs directory pins its maps and programs there, a
 * second one opened on the same directory takes the maps over (flows and counters go on
 * where the first left them), and unpinning leaves nothing. The bpffs is a private mount
 * in a temporary directory, removed on every exit path. Not for attaching to links.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fixtures.h"

static char mnt[64];
static bool mounted;

static void pin_setup(void)
{
	strcpy(mnt, "/tmp/loupe-bpffs-XXXXXX");
	cr_assert_not_null(mkdtemp(mnt), "mkdtemp: %s", strerror(errno));
	if (mount("bpf", mnt, "bpf", 0, NULL)) {
		int err = errno;

		rmdir(mnt);
		if (err == EPERM)
			cr_skip_test("mounting a bpffs needs root");
		cr_assert_fail("mount -t bpf %s: %s", mnt, strerror(err));
	}
	mounted = true;
}

static void pin_teardown(void)
{
	char dir[128];

	if (!mounted)
		return;
	snprintf(dir, sizeof(dir), "%s/loupe", mnt);
	loupe_datapath_unpin(dir);
	umount(mnt);
	rmdir(mnt);
	mounted = false;
}

static int ignore_record(void *ctx, const void *record, size_t size)
{
	return 0;
}

static bool pinned(const char *dir, const char *name)
{
	char path[192];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

TestSuite(pin, .init = pin_setup, .fini = pin_teardown);

Test(pin, maps_survive_a_second_datapath, .description = "a restart keeps flows and counters")
{
	const struct loupe_pkt_spec spec = { .proto = IPPROTO_TCP, .dport = 80, .payload = "x" };
	static const char *const names[] = { LOUPE_MAP_FLOWS4,	    LOUPE_MAP_FLOWS6,
					     LOUPE_MAP_EVENTS,	    LOUPE_MAP_COUNTERS,
					     LOUPE_MAP_TLS_PENDING, LOUPE_PROG_POD_EGRESS,
					     LOUPE_PROG_POD_INGRESS };
	struct loupe_datapath_opts opts = { 0 };
	struct loupe_datapath *first = NULL, *second = NULL;
	struct loupe_counters cnt;
	struct loupe_flow_key key;
	struct loupe_flow flow;
	struct loupe_pkt pkt;
	char dir[128];
	int rc;

	snprintf(dir, sizeof(dir), "%s/loupe", mnt);
	opts.pin_dir = dir;
	cr_assert_eq(loupe_pkt_build(&spec, &pkt), 0);

	cr_assert_eq(loupe_datapath_open(&opts, ignore_record, NULL, &first), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_expect(pinned(dir, names[i]), "%s/%s is not pinned", dir, names[i]);
	cr_assert_eq(loupe_datapath_run(first, LOUPE_DIR_POD_EGRESS, pkt.buf, pkt.len, 0, &rc), 0);
	first = loupe_datapath_free(first);

	/* the second datapath finds the first one's flow and counters */
	cr_assert_eq(loupe_datapath_open(&opts, ignore_record, NULL, &second), 0);
	cr_assert_eq(loupe_datapath_run(second, LOUPE_DIR_POD_EGRESS, pkt.buf, pkt.len, 0, &rc), 0);
	fx_flow_key(&key, &pkt, LOUPE_DIR_POD_EGRESS, IPPROTO_TCP, -1);
	cr_assert_eq(loupe_datapath_flow_lookup(second, &key, &flow), 0, "the flow is gone");
	cr_expect_eq(flow.packets[LOUPE_DIR_POD_EGRESS], 2, "packets: %llu",
		     (unsigned long long)flow.packets[LOUPE_DIR_POD_EGRESS]);
	cr_assert_eq(loupe_datapath_read_counters(second, &cnt), 0);
	cr_expect_eq(cnt.packets[LOUPE_DIR_POD_EGRESS], 2);
	cr_expect_eq(cnt.flows_created, 1, "the second packet made a new flow");
	second = loupe_datapath_free(second);

	cr_assert_eq(loupe_datapath_unpin(dir), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_expect_not(pinned(dir, names[i]), "%s/%s is still pinned", dir, names[i]);
	cr_expect_neq(access(dir, F_OK), 0, "%s is still there", dir);
}
