#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Helpers for the controller's end-to-end tests: deadline waits (never a fixed sleep),
# processes started and stopped by pid, checks that say what they expected. Sourced.
set -euo pipefail

BIN=${LOUPE_BIN:?LOUPE_BIN: the bin directory of a build}
SRC=${LOUPE_SRC:?LOUPE_SRC: the source tree}
PY=/usr/bin/python3 # Debian's python3-grpcio works with this one only
CTL=$BIN/loupe-controller
AGENT=$BIN/loupe-agent
LOUPECTL=$BIN/loupectl
PASSED=0
FAILED=0

now_ms() { date +%s%3N; }

# wait_for DEADLINE_S DESCRIPTION CMD...: runs CMD until it succeeds; fails the test at the deadline.
wait_for() {
	local deadline=$1 what=$2 end
	shift 2
	end=$(($(now_ms) + deadline * 1000))
	until "$@" >/dev/null 2>&1; do
		if [ "$(now_ms)" -ge "$end" ]; then
			fail "$what: not within ${deadline}s"
			return 1
		fi
		sleep 0.05
	done
}

ok() {
	PASSED=$((PASSED + 1))
	printf 'ok   %s\n' "$*"
}
fail() {
	FAILED=$((FAILED + 1))
	printf 'FAIL %s\n' "$*"
}
check() { # DESCRIPTION CMD...
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

# Stops a pid we started: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || {
			wait "$pid" 2>/dev/null || true
			return 0
		}
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

summary() {
	printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
	[ "$FAILED" -eq 0 ]
}

# Python stubs of the wire contract (protoc --python_out: no grpc_tools needed).
make_py_stubs() { # DIR
	protoc -I"$SRC/proto" -I/usr/include --python_out="$1" "$SRC"/proto/loupe/v1/*.proto
}
