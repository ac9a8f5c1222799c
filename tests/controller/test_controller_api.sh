#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# loupe-controller's API on loopback, real processes and real gRPC: TLS, mutual TLS and the
# bearer token (an agent without a certificate, a CLI without the token: refused); a truncated
# protobuf, an oversized message, a malformed agent stream (INVALID_ARGUMENT; the controller
# keeps serving); Python grpcio calling Apply and GetEvents; loupectl's sentences; the durable
# store (a leftover .tmp recovered, a damaged store refused), a watched ConfigMap directory
# (..data swapped), a slow subscriber told in-band what it missed. Not for agents on pods
# (test_controller_nodes.sh).
. "$(dirname "$0")/lib.sh"

TMP=$(mktemp -d /tmp/loupe-ctlapi-XXXXXX)
CPID=
cleanup() {
	stop_pid "$CPID"
	[ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

cd "$TMP"
# ---- certificates: a CA, the controller (IP 127.0.0.1), an agent, and a stranger's CA
openssl_q() { openssl "$@" >/dev/null 2>&1; }
openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=loupe-test-ca -keyout ca.key -out ca.crt
openssl_q req -newkey rsa:2048 -nodes -subj /CN=controller -keyout srv.key -out srv.csr
printf 'subjectAltName=IP:127.0.0.1,DNS:controller.test\n' >srv.ext
openssl_q x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile srv.ext -out srv.crt
openssl_q req -newkey rsa:2048 -nodes -subj /CN=agent-1 -keyout agent.key -out agent.csr
printf 'subjectAltName=DNS:agent-1\n' >agent.ext
openssl_q x509 -req -in agent.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile agent.ext -out agent.crt
openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=stranger-ca -keyout rogue-ca.key -out rogue-ca.crt
openssl_q req -newkey rsa:2048 -nodes -subj /CN=agent-x -keyout rogue.key -out rogue.csr
openssl_q x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -days 2 -out rogue.crt
printf 's3cret-token\n' >token
mkdir py && make_py_stubs py

start_controller() { # extra flags...
	: >ctl.log
	"$CTL" --listen=127.0.0.1:0 --tls-cert=srv.crt --tls-key=srv.key --tls-client-ca=ca.crt \
		--token-file=token --unix-socket="$TMP/ctl.sock" --store-dir="$TMP/store" \
		--output="$TMP/events.json" --metrics-addr=off "$@" >/dev/null 2>ctl.log &
	CPID=$!
	wait_for 10 "the controller is ready" grep -q 'msg="ready"' ctl.log
	PORT=$(sed -n 's/.*msg="ready".* port=\([0-9]*\).*/\1/p' ctl.log)
}
start_controller
T=127.0.0.1:$PORT
pyc() { "$PY" "$SRC/tests/controller/grpc_client.py" py "$T" --ca ca.crt "$@"; }
has() { grep -q -- "$2" <<<"$1"; }

# ---- loupectl: TLS and the token
out=$("$LOUPECTL" --controller "$T" --tls-ca ca.crt --token-file token get policies 2>&1)
check "loupectl over TLS with the token" has "$out" "No policies"
out=$("$LOUPECTL" --controller "$T" --tls-ca ca.crt get policies 2>&1 || true)
check "loupectl without the token: refused with a sentence" has "$out" "refused us: missing or wrong bearer token"
out=$(LOUPE_TOKEN=wrong "$LOUPECTL" --controller "$T" --tls-ca ca.crt get agents 2>&1 || true)
check "loupectl with a wrong token: refused" has "$out" "refused us"
out=$("$LOUPECTL" --controller "$T" --tls-ca rogue-ca.crt --token-file token get policies 2>&1 || true)
check "loupectl with the wrong CA: cannot reach" has "$out" "cannot reach the controller"
out=$("$LOUPECTL" --controller "$T" --insecure --token-file token get policies 2>&1 || true)
check "plaintext to a TLS port: refused" has "$out" "cannot reach the controller"
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" get agents 2>&1)
check "the unix socket needs no token" has "$out" "No agent has connected"

# ---- agents: mutual TLS
out=$(pyc connect node-nocert 2>&1)
check "an agent without a certificate: UNAUTHENTICATED" has "$out" "UNAUTHENTICATED"
out=$(pyc --cert rogue.crt --key rogue.key connect node-rogue 2>&1)
check "an agent with a stranger's certificate: refused at the handshake" has "$out" "UNAVAILABLE"
out=$(pyc --cert agent.crt --key agent.key connect node-py 2>&1)
check "an agent with a certificate: served (policy bundle first)" has "$out" "OK got=policy"
out=$("$BIN/../bench/bench-controller-load" --controller "$T" --tls-ca ca.crt --tls-cert agent.crt \
	--tls-key agent.key --node node-c --events 5000 --state-dir "$TMP/agent-c" --timeout 20 2>&1)
check "the C agent client over mutual TLS: 5000 events acknowledged" has "$out" "acked=5000 "
out=$("$BIN/../bench/bench-controller-load" --controller "$T" --tls-ca ca.crt --node node-nocert \
	--events 10 --state-dir "$TMP/agent-x" --timeout 3 2>&1 || true)
check "the C agent client without a certificate: nothing taken" has "$out" "acked=0 "

# ---- malformed and oversized messages; the controller keeps serving
out=$(pyc --token s3cret-token truncated-apply 2>&1)
check "a truncated protobuf: INVALID_ARGUMENT" has "$out" "INVALID_ARGUMENT"
out=$(pyc --token s3cret-token big-apply 9 2>&1)
check "a 9 MiB message: INVALID_ARGUMENT with the limit" has "$out" "INVALID_ARGUMENT.*more than the limit"
out=$(pyc --cert agent.crt --key agent.key raw-agent 12ff01 2>&1)
check "a malformed agent message: INVALID_ARGUMENT" has "$out" "INVALID_ARGUMENT"
out=$(pyc --cert agent.crt --key agent.key raw-agent 1203 2>&1)
check "events before a hello: INVALID_ARGUMENT" has "$out" "INVALID_ARGUMENT"
out=$(pyc --token s3cret-token raw /loupe.v1.Nope/Nothing 00 2>&1)
check "an unknown method: UNIMPLEMENTED" has "$out" "UNIMPLEMENTED"
check "the controller is still up" kill -0 "$CPID"

# ---- interop: Python Apply and GetEvents
cp "$SRC/tests/data/policies/deny-cidr-port.json" deny.json
out=$(pyc --token s3cret-token apply deny.json 2>&1)
check "Python Apply" has "$out" "OK revision=1 created=deny-metadata-and-smtp"
out=$(pyc --token s3cret-token get-events 100 2>&1)
check "Python GetEvents: the C agent's last 100 events" has "$out" "OK events=100 nodes=node-c"

# ---- loupectl's sentences and tables
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" apply -f "$SRC/tests/data/bad-policies/http-bad-method.json" 2>&1 || true)
check "a refused policy: file, JSON path and line" has "$out" 'http-bad-method.json: spec.rules\[1\].match.http.methods\[0\]:.*(line 40'
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" delete policy nope 2>&1 || true)
check "delete of an unknown name" has "$out" "there is no policy nope"
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" get agents 2>&1)
check "get agents: node-c, away now, with its event count" has "$out" "node-c  *away .* 5000 "
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" observe --node node-c --last 3 -o json 2>&1)
check "observe -o json: 3 lines" test "$(grep -c '"node":"node-c"' <<<"$out")" -eq 3
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" get policies -o json 2>&1)
check "get policies -o json: a PolicyList with the source" has "$out" '"loupe.dev/source": "deny.json"'

# ---- the store: a leftover write recovered, a damaged file refused
stop_pid "$CPID"
CPID=
echo '{"half' >"$TMP/store/policies.json.tmp"
start_controller
check "a leftover policies.json.tmp is removed at start" test ! -e "$TMP/store/policies.json.tmp"
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" get policies 2>&1)
check "the store came back: revision 1" has "$out" "deny-metadata-and-smtp"
stop_pid "$CPID"
CPID=
cp "$TMP/store/policies.json" good.json
head -c 200 good.json >"$TMP/store/policies.json"
rc=0
"$CTL" --listen= --unix-socket="$TMP/ctl.sock" --store-dir="$TMP/store" --metrics-addr=off \
	--output= 2>bad.log || rc=$?
check "a damaged store: refused (exit 1) with a sentence" grep -q 'policy store .* is damaged.*move it aside' bad.log
check "  ... and exit status 1" test "$rc" -eq 1
cp good.json "$TMP/store/policies.json"

# ---- a watched directory laid out as a mounted ConfigMap
mkdir -p cm/..2026_a
cp "$SRC/tests/data/policies/audit-dns.json" cm/..2026_a/
ln -s ..2026_a cm/..data
ln -s ..data/audit-dns.json cm/audit-dns.json
start_controller --watch-dir="$TMP/cm" --subscriber-queue=1000
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" get policies 2>&1)
check "the watched policy is in the set, read-only" has "$out" "audit-dns .*watched, read-only"
rev0=$(sed -n 's/^revision //p' <<<"$out")
mkdir cm/..2026_b
cp "$SRC/tests/data/policies/audit-dns.json" "$SRC/tests/data/policies/egress-allowlist.json" cm/..2026_b/
ln -s ..2026_b cm/..data_tmp && mv -T cm/..data_tmp cm/..data
ln -s ..data/egress-allowlist.json cm/egress-allowlist.json
revision_above() { [ "$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" get policies | sed -n 's/^revision //p')" -gt "$1" ]; }
wait_for 5 "a ConfigMap update makes a new revision" revision_above "$rev0" && ok "a ConfigMap update makes a new revision"
out=$("$LOUPECTL" --controller "unix:$TMP/ctl.sock" apply -f "$SRC/tests/data/policies/audit-dns.json" 2>&1 || true)
check "apply of a watched name: refused, change it there" has "$out" "comes from the watched directory"

# ---- a slow subscriber: sampled, told in-band
"$PY" "$SRC/tests/controller/grpc_client.py" py "unix:$TMP/ctl.sock" follow-slow 3 "$TMP/subscribed" >slow.out 2>&1 &
SLOW=$!
# one event at a time until the subscriber has seen one: then it is surely subscribed
one_event() {
	"$BIN/../bench/bench-controller-load" --controller "unix:$TMP/ctl.sock" --node node-s \
		--events 1 --state-dir "$TMP/agent-s" --timeout 10 >/dev/null 2>&1
	test -e "$TMP/subscribed"
}
wait_for 15 "the subscriber is in" one_event
"$BIN/../bench/bench-controller-load" --controller "unix:$TMP/ctl.sock" --node node-s --events 200000 \
	--state-dir "$TMP/agent-s" --timeout 30 >load.out 2>&1
check "intake is not stalled by the slow subscriber: 200000 acknowledged" grep -q "acked=200000 " load.out
wait "$SLOW" || true
check "the slow subscriber is told what it missed" grep -q 'OK events=[0-9]* missed=[1-9][0-9]* notice=[0-9]*_events_were_not_sent' slow.out
check "the controller is still up" kill -0 "$CPID"

summary
