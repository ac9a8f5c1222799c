#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two nodes and a controller, each a network namespace of its own; each node with its own agent,
# bpffs and CNI pods (scripts/pods), the agents on TCP to the controller. loupectl apply: both
# agents acknowledge the revision within 1 s and enforce it; both nodes' events in observe.
# The controller killed (-9) under traffic and started again after a 5 s outage: enforcement
# holds meanwhile, the agents reconnect, and each agent's seqs reach the controller's output
# exactly once, no gap, no duplicate. An agent restarted while the controller is down enforces
# the node's last revision. Everything is removed on every exit path.
. "$(dirname "$0")/lib.sh"

ID=$$
CNS=lcc$ID
NA=lca$ID
NB=lcb$ID
PODS=$SRC/scripts/pods
TMP=$(mktemp -d /tmp/loupe-ctlnodes-XXXXXX)
CPID= APID= BPID= TA= TB=
export LOUPE_PODS_DEADLINE=20

in_ns() { ip netns exec "$@"; }
pods() { # NODE-NS PREFIX ARGS...
	local ns=$1 prefix=$2
	shift 2
	LOUPE_PODS_NODE=$ns LOUPE_PODS_PREFIX=$prefix "$PODS" "$@"
}

cleanup() {
	set +e
	for p in $TA $TB $APID $BPID $CPID; do kill -KILL "$p" 2>/dev/null; done
	for ns in $NA $NB $CNS; do
		[ -e /var/run/netns/$ns ] && ip netns pids $ns | xargs -r kill -KILL 2>/dev/null
	done
	wait 2>/dev/null
	for n in a b; do
		ns=lc$n$ID
		if [ -e /var/run/netns/$ns ] && mountpoint -q "$TMP/bpffs-$n"; then
			in_ns $ns "$AGENT" --uninstall --bpffs-dir "$TMP/bpffs-$n/loupe" >/dev/null 2>&1
		fi
		pods $ns lc$n$ID- down-all >/dev/null 2>&1
		umount -l "$TMP/bpffs-$n" 2>/dev/null
	done
	for ns in $NA $NB $CNS; do ip netns del $ns 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
cd "$TMP"

# ---- three hosts: the controller's, node a's, node b's
for ns in $CNS $NA $NB; do
	ip netns add $ns
	in_ns $ns ip link set lo up
done
ip link add lka$ID type veth peer name lkca$ID
ip link add lkb$ID type veth peer name lkcb$ID
ip link set lka$ID netns $NA
ip link set lkb$ID netns $NB
ip link set lkca$ID netns $CNS
ip link set lkcb$ID netns $CNS
in_ns $CNS ip addr add 198.18.210.1/30 dev lkca$ID
in_ns $CNS ip addr add 198.18.210.5/30 dev lkcb$ID
in_ns $NA ip addr add 198.18.210.2/30 dev lka$ID
in_ns $NB ip addr add 198.18.210.6/30 dev lkb$ID
for l in lkca$ID lkcb$ID; do in_ns $CNS ip link set $l up; done
in_ns $NA ip link set lka$ID up
in_ns $NB ip link set lkb$ID up
in_ns $CNS sysctl -qw net.ipv4.ip_forward=1

# ---- pods: a client and a server on each node, HTTP on 80 and 8081
for n in a b; do
	(pods lc$n$ID lc$n$ID- up client >/dev/null && pods lc$n$ID lc$n$ID- up server >/dev/null) &
done
wait
for n in a b; do
	pods lc$n$ID lc$n$ID- serve server http 80 >/dev/null
	pods lc$n$ID lc$n$ID- serve server http 8081 >/dev/null
	eval "SRV_$n=$(pods lc$n$ID lc$n$ID- info server | sed -n 's/.* ipv4=\([^ ]*\).*/\1/p')"
done
ok "two nodes, each with a client and a server pod"

# ---- the controller, then an agent per node on its own bpffs
start_controller() {
	# ip netns exec itself (not a shell function): $! is then the controller's pid
	ip netns exec $CNS "$CTL" --listen=0.0.0.0:9760 --insecure --unix-socket="$TMP/ctl.sock" \
		--store-dir="$TMP/store" --output="$TMP/events.json" --metrics-addr=off \
		>/dev/null 2>>ctl.log &
	CPID=$!
	wait_for 10 "the controller is ready" grep -q "msg=\"ready\".*pid=$CPID\|msg=\"ready\"" ctl.log
}
start_agent() { # a|b
	local n=$1 ns=lc$1$ID addr
	addr=198.18.210.1
	[ "$n" = b ] && addr=198.18.210.5
	mkdir -p "$TMP/bpffs-$n"
	mountpoint -q "$TMP/bpffs-$n" || mount -t bpf bpf "$TMP/bpffs-$n"
	ip netns exec $ns "$AGENT" --node-name=node-$n --controller=$addr:9760 --insecure \
		--bpffs-dir="$TMP/bpffs-$n/loupe" --state-dir="$TMP/state-$n" \
		--metrics-addr=127.0.0.1:9751 \
		--flow-idle-timeout=1s --iface-globs='veth*' >/dev/null 2>>agent-$n.log &
	if [ "$n" = a ]; then APID=$!; else BPID=$!; fi
}
lctl() { "$LOUPECTL" --controller "unix:$TMP/ctl.sock" "$@"; }
connected() { [ "$(lctl get agents -o json | grep -o '"connected":true' | wc -l)" -eq "$1" ]; }
acked() { # REVISION: both agents have it in force
	[ "$(lctl get agents -o json | grep -o "\"ackedRevision\":\"$1\"" | wc -l)" -eq 2 ]
}

: >ctl.log
start_controller
start_agent a
start_agent b
wait_for 40 "both agents connected" connected 2 && ok "both agents connected"

# ---- apply: both acknowledge within 1 s, and enforce
cat >deny.json <<'POLICY'
{ "apiVersion": "loupe.dev/v1", "kind": "Policy",
  "metadata": { "name": "no-8081" },
  "spec": { "podSelector": {},
            "rules": [ { "name": "tcp-8081", "direction": "egress",
                         "match": { "ports": [ { "port": 8081 } ] }, "action": "deny" } ] } }
POLICY
t0=$(now_ms)
rev=$(lctl apply -f deny.json | sed -n 's/^revision //p')
until acked "$rev" || [ $(($(now_ms) - t0)) -gt 5000 ]; do :; done
dt=$(($(now_ms) - t0))
check "both agents acknowledge revision $rev within 1 s (took ${dt} ms)" test "$dt" -le 1000
curl_in() { pods lc$1$ID lc$1$ID- exec client curl -s -o /dev/null -m 2 "http://$2/"; }
enforced() { # a|b: 8081 refused, 80 served
	local srv
	eval "srv=\$SRV_$1"
	curl_in "$1" "$srv:80" && ! curl_in "$1" "$srv:8081"
}
agent_metrics() { ip netns exec lc$1$ID curl -s -m 2 http://127.0.0.1:9751/metrics; }
controller_figures() { # a|b REVISION: the agent's /metrics shows the connection and revision
	local m
	m=$(agent_metrics "$1") &&
		grep -qx 'loupe_controller_connected 1' <<<"$m" &&
		grep -qx "loupe_controller_policy_revision $2" <<<"$m" &&
		grep -q '^loupe_controller_events_acked_total ' <<<"$m"
}
# published every tick (1 s): waited for
wait_for 5 "node a's /metrics shows the controller connection and revision $rev" \
	controller_figures a "$rev" && ok "node a's /metrics shows the controller connection and revision $rev"
check "node a enforces it (80 served, 8081 dropped)" enforced a
check "node b enforces it (80 served, 8081 dropped)" enforced b
has_both_nodes() {
	local out
	out=$(lctl observe --kind HTTP_REQUEST --last 200 -o json)
	grep -q '"node":"node-a"' <<<"$out" && grep -q '"node":"node-b"' <<<"$out"
}
wait_for 10 "events of both nodes in observe" has_both_nodes && ok "events of both nodes in loupectl observe"

# ---- the controller killed under traffic, back after 5 s
traffic() { # a|b: requests until killed
	local srv
	eval "srv=\$SRV_$1"
	while :; do curl_in "$1" "$srv:80" || true; done
}
traffic a >/dev/null 2>&1 &
TA=$!
traffic b >/dev/null 2>&1 &
TB=$!
lines_now() { wc -l <"$TMP/events.json"; }
n0=$(lines_now)
grows() { [ "$(lines_now)" -gt "$((n0 + 20))" ]; }
wait_for 10 "events flow under traffic" grows
kill -KILL "$CPID"
wait "$CPID" 2>/dev/null || true
CPID=
sleep 5 # the deliberate outage
check "node a enforces with the controller away" enforced a
check "node b enforces with the controller away" enforced b
start_controller
wait_for 20 "both agents reconnect" connected 2 && ok "both agents reconnect after the outage"
grows_again() { [ "$(lines_now)" -gt "$1" ]; }
n1=$(lines_now)
wait_for 10 "events flow again" grows_again "$((n1 + 20))"
kill "$TA" "$TB" 2>/dev/null
wait "$TA" "$TB" 2>/dev/null || true
TA= TB=
# the agents stop: what they buffered goes out first (their 2 s of grace)
stop_pid "$APID"
stop_pid "$BPID"
APID= BPID=
seqs_exact() { # node: seq 1..max, each once
	awk -v node="\"node\":\"$1\"" 'index($0, node) {
		match($0, /"seq":"[0-9]+"/); s = substr($0, RSTART + 7, RLENGTH - 8) + 0
		if (seen[s]++) dup++; if (s > max) max = s; n++ }
		END { printf "%d events, max seq %d, %d duplicates\n", n, max, dup; exit !(n == max && dup == 0 && n > 0) }' \
		"$TMP/events.json"
}
out=$(seqs_exact node-a) && ok "node a: every seq exactly once ($out)" || fail "node a: seqs ($out)"
out=$(seqs_exact node-b) && ok "node b: every seq exactly once ($out)" || fail "node b: seqs ($out)"

# ---- an agent restarted while the controller is down
kill -KILL "$CPID"
wait "$CPID" 2>/dev/null || true
CPID=
: >agent-a.log
start_agent a
wait_for 30 "agent a restarted" grep -q 'msg="ready"' agent-a.log
check "agent a put the node's last revision in force again" grep -q "policies applied.*trigger=controller revision=$rev" agent-a.log
wait_for 10 "agent a says the controller is away" grep -q 'controller away' agent-a.log &&
	ok "agent a says the controller is away"
check "node a enforces after the agent's restart, controller down" enforced a

summary
