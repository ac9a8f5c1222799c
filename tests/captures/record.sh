#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Records the real-client test captures (curl, dig, openssl s_client over IPv4 and IPv6) between two
# throwaway network namespaces into OUTDIR (default tests/data), plus VLAN copies and tshark's .tsv reading.
#
# usage: tests/captures/record.sh [OUTDIR]
# Needs root, iproute2, ethtool, tcpdump, tshark, tcprewrite (tcpreplay), curl, dig (dnsutils), openssl,
# /usr/bin/python3. Addresses used: 198.18.10.0/24 and fd00:198:18:10::/64 only; the namespaces have no
# route anywhere else. The committed pcaps are not re-recorded by the tests.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUTDIR=${1:-$HERE/../data}
PY=/usr/bin/python3

NS_C=loupe-rec-cli-$$
NS_S=loupe-rec-srv-$$
DEV_C=lrc0
DEV_S=lrs0
MAC_C=02:00:c6:12:0a:01
MAC_S=02:00:c6:12:0a:02
C4=198.18.10.1
S4=198.18.10.2
C6=fd00:198:18:10::1
S6=fd00:198:18:10::2

PIDS=()
TMP=
CAP_PID=

log() { printf 'record.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wait_gone() { # PID: true once PID has exited, false if it is still there after 5 s
	local i
	for ((i = 0; i < 250; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.02
	done
	return 1
}

cleanup() {
	local rc=$? pid ns
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for ns in "$NS_C" "$NS_S"; do
		[ -e "/run/netns/$ns" ] || continue
		# anything still running in our own namespaces was started by this script
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || log "could not delete netns $ns"
	done
	[ -n "$TMP" ] && rm -rf "$TMP"
	if [ "$rc" -ne 0 ]; then log "failed (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, tcpdump)"
for cmd in ip ss ethtool tcpdump tshark capinfos tcprewrite curl dig openssl "$PY"; do
	command -v "$cmd" >/dev/null || die "missing $cmd"
done
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
TMP=$(mktemp -d /tmp/loupe-rec.XXXXXX)

# Never let an environment proxy redirect curl somewhere else.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

now_us() { local t=$EPOCHREALTIME; echo "${t//[!0-9]/}"; }

# wait_for DESC SECONDS CMD...: poll CMD until it succeeds, fail after SECONDS.
wait_for() {
	local desc=$1 secs=$2 end
	shift 2
	end=$(($(now_us) + secs * 1000000))
	until "$@"; do
		[ "$(now_us)" -lt "$end" ] || die "timed out after ${secs}s waiting for: $desc"
		sleep 0.02
	done
}

in_c() { ip netns exec "$NS_C" "$@"; }
in_s() { ip netns exec "$NS_S" "$@"; }

# ---------------------------------------------------------------- namespaces and veth
ip netns add "$NS_C"
ip netns add "$NS_S"
for ns in "$NS_C" "$NS_S"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_ra=0 \
		net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.default.accept_dad=0
	ip -n "$ns" link set lo up
done
ip link add "$DEV_C" address "$MAC_C" netns "$NS_C" type veth peer name "$DEV_S" address "$MAC_S" netns "$NS_S"
# Checksums computed in software, so captured TCP/UDP checksums are the real ones (not offload partials).
in_c ethtool -K "$DEV_C" tx off >/dev/null
in_s ethtool -K "$DEV_S" tx off >/dev/null
ip -n "$NS_C" addr add "$C4/24" dev "$DEV_C"
ip -n "$NS_C" addr add "$C6/64" dev "$DEV_C" nodad
ip -n "$NS_S" addr add "$S4/24" dev "$DEV_S"
ip -n "$NS_S" addr add "$S6/64" dev "$DEV_S" nodad
ip -n "$NS_C" link set "$DEV_C" up
ip -n "$NS_S" link set "$DEV_S" up
link_up() { ip -n "$1" -o link show "$2" | grep -q 'state UP'; }
wait_for "$DEV_C up" 5 link_up "$NS_C" "$DEV_C"
wait_for "$DEV_S up" 5 link_up "$NS_S" "$DEV_S"

# ---------------------------------------------------------------- servers (server namespace)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=llm.example.test -addext 'subjectAltName=DNS:*.example.test' \
	-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/req.log" || die "openssl req failed"

# Background jobs are started as simple commands (not through in_s/in_c) so that $! is the server's
# own pid: `ip netns exec` execs its command.
ip netns exec "$NS_S" "$PY" "$HERE/httpd.py" "$S4" 8080 >"$TMP/httpd4.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" "$PY" "$HERE/httpd.py" "$S6" 8080 >"$TMP/httpd6.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" "$PY" "$HERE/dnsd.py" "$S4" "$S6" >"$TMP/dnsd.log" 2>&1 &
PIDS+=($!)
# -www: answers an HTTP GET itself and never reads stdin; our clients only do the handshake.
ip netns exec "$NS_S" openssl s_server -quiet -www -4 -accept "$S4:443" -cert "$TMP/cert.pem" -key "$TMP/key.pem" \
	-alpn h2,http/1.1 </dev/null >"$TMP/tls4.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_S" openssl s_server -quiet -www -6 -accept "[$S6]:443" -cert "$TMP/cert.pem" -key "$TMP/key.pem" \
	-alpn h2,http/1.1 </dev/null >"$TMP/tls6.log" 2>&1 &
PIDS+=($!)

listening() { # PROTO(t|u) ADDR:PORT
	ss -N "$NS_S" -Hln"$1" | awk '{print $4}' | grep -qxF "$2"
}
wait_for "http v4" 5 listening t "$S4:8080"
wait_for "http v6" 5 listening t "[$S6]:8080"
wait_for "dns udp v4" 5 listening u "$S4:53"
wait_for "dns udp v6" 5 listening u "[$S6]:53"
wait_for "dns tcp v4" 5 listening t "$S4:53"
wait_for "dns tcp v6" 5 listening t "[$S6]:53"
wait_for "tls v4" 5 listening t "$S4:443"
wait_for "tls v6" 5 listening t "[$S6]:443"

# ---------------------------------------------------------------- capture helpers (client namespace)
start_capture() { # NAME FILTER
	CAP_NAME=$1
	ip netns exec "$NS_C" tcpdump -i "$DEV_C" -nn -p -s 0 -U --immediate-mode -Z root -w "$TMP/$1.pcap" "$2" \
		2>"$TMP/$1.tcpdump.log" &
	CAP_PID=$!
	PIDS+=("$CAP_PID")
	wait_for "tcpdump for $1" 5 grep -qs 'listening on' "$TMP/$1.tcpdump.log"
}

tcp_quiet() { # no TCP connection in either namespace is still open or closing (TIME-WAIT is done)
	local ns
	for ns in "$NS_C" "$NS_S"; do
		[ -z "$(ss -N "$ns" -Htn state connected exclude time-wait)" ] || return 1
	done
}

stop_capture() {
	local l captured received dropped
	wait_for "connections of $CAP_NAME to close" 5 tcp_quiet
	kill -TERM "$CAP_PID" # tcpdump flushes and prints its counters on SIGTERM
	wait "$CAP_PID" || die "tcpdump for $CAP_NAME exited with an error"
	l=$TMP/$CAP_NAME.tcpdump.log
	captured=$(awk '/packets captured/ {print $1}' "$l")
	received=$(awk '/packets received by filter/ {print $1}' "$l")
	dropped=$(awk '/packets dropped by kernel/ {print $1}' "$l")
	if [ -z "$captured" ] || [ "$captured" != "$received" ] || [ "$dropped" != 0 ]; then
		die "tcpdump for $CAP_NAME lost packets: $(tr '\n' ' ' <"$l")"
	fi
	log "$CAP_NAME: $captured packets"
}

CLOG=$TMP/clients.log
run() { # run a client in the client namespace, output to the log
	printf '### %s\n' "$*" >>"$CLOG"
	in_c "$@" >>"$CLOG" 2>&1 || die "client failed: $* (see log below)$(echo; tail -n 20 "$CLOG")"
}
expect_in_log() { # STRING: the last client's output must contain STRING
	awk '/^### /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$CLOG" | grep -qF -- "$1" ||
		die "expected '$1' in client output$(echo; tail -n 20 "$CLOG")"
}

CURL=(curl -sS -g --fail --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code} %{num_connects}\n')

http_clients() { # BASE-URL HOST
	local base=$1 host=$2
	run "${CURL[@]}" -H "Host: $host" -H 'Authorization: Bearer loupe-test-token-not-a-secret' \
		"$base/v1/models?x=1"
	run "${CURL[@]}" -H "Host: $host" -H 'Content-Type: application/json' \
		-H 'X-Api-Key: loupe-test-key-not-a-secret' --data '{"model":"m1","prompt":"hello"}' \
		"$base/v1/completions"
	run "${CURL[@]}" -I -H "Host: static.example.test" "$base/healthz"
	# two requests on one kept-alive connection (second connects 0 times)
	run "${CURL[@]}" -o /dev/null -H "Host: $host" "$base/keepalive/1" "$base/keepalive/2?y=2"
	expect_in_log '200 0'
	# curl's own Host header (the address literal)
	run "${CURL[@]}" "$base/default-host"
}

dns_clients() { # SERVER PREFIX
	local srv=$1 p=$2
	run dig @"$srv" "${p}www.example.test" A +tries=1 +time=2
	expect_in_log "$S4"
	run dig @"$srv" "${p}api.example.test" AAAA +tries=1 +time=2
	expect_in_log "$S6"
	run dig @"$srv" "${p}tcp.example.test" "$3" +tcp +tries=1 +time=2
	expect_in_log 'status: NOERROR'
}

tls_client() { # CONNECT SNI|- EXPECTED-PROTOCOL EXPECTED-ALPN [EXTRA ARGS]
	local connect=$1 sni=$2 proto=$3 alpn=$4 snarg
	shift 4
	if [ "$sni" = - ]; then snarg=(-noservername); else snarg=(-servername "$sni"); fi
	printf '### s_client %s %s %s\n' "$connect" "$sni" "$*" >>"$CLOG"
	in_c openssl s_client -connect "$connect" "${snarg[@]}" "$@" </dev/null >>"$CLOG" 2>&1 ||
		die "s_client $connect $sni failed$(echo; tail -n 20 "$CLOG")"
	expect_in_log "New, $proto, Cipher is"
	expect_in_log "ALPN protocol: $alpn"
}

# ---------------------------------------------------------------- recordings
start_capture http-v4 "ip and host $S4 and tcp port 8080"
http_clients "http://$S4:8080" api.example.test
stop_capture

start_capture http-v6 "ip6 and host $S6 and tcp port 8080"
http_clients "http://[$S6]:8080" api6.example.test
stop_capture

start_capture dns-v4 "ip and host $S4 and port 53"
dns_clients "$S4" "" A
stop_capture

start_capture dns-v6 "ip6 and host $S6 and port 53"
dns_clients "$S6" v6- AAAA
stop_capture

start_capture tls-v4 "ip and host $S4 and tcp port 443"
tls_client "$S4:443" llm.example.test TLSv1.3 h2 -alpn h2,http/1.1
tls_client "$S4:443" tls12.example.test TLSv1.2 h2 -alpn h2,http/1.1 -tls1_2
tls_client "$S4:443" - TLSv1.3 http/1.1 -alpn http/1.1
stop_capture

start_capture tls-v6 "ip6 and host $S6 and tcp port 443"
tls_client "[$S6]:443" chat.example.test TLSv1.3 h2 -alpn h2,http/1.1
tls_client "[$S6]:443" tls12-v6.example.test TLSv1.2 http/1.1 -alpn http/1.1 -tls1_2
stop_capture

# ---------------------------------------------------------------- outputs
NAMES=(http-v4 http-v6 dns-v4 dns-v6 tls-v4 tls-v6)
for n in "${NAMES[@]}"; do
	cp "$TMP/$n.pcap" "$OUTDIR/$n.pcap"
done

for spec in http-v4:100 dns-v6:200 tls-v4:300; do
	n=${spec%:*} tag=${spec#*:}
	# --enet-vlan-cfi is required too: without it tcprewrite 4.4.3 inserts the tag but keeps the old
	# frame length, silently cutting the last 4 bytes (appneta/tcpreplay#990).
	tcprewrite --enet-vlan=add --enet-vlan-tag="$tag" --enet-vlan-pri=0 --enet-vlan-cfi=0 \
		--infile="$OUTDIR/$n.pcap" --outfile="$OUTDIR/$n-vlan$tag.pcap" >/dev/null
	# byte check against the original; puts back the MACs tcprewrite 4.4.3 replaces in IPv6 frames
	"$PY" "$HERE/vlan_check.py" "$OUTDIR/$n.pcap" "$OUTDIR/$n-vlan$tag.pcap" "$tag" >&2
	total=$(tshark -r "$OUTDIR/$n-vlan$tag.pcap" -T fields -e frame.number 2>/dev/null | wc -l)
	tagged=$(tshark -r "$OUTDIR/$n-vlan$tag.pcap" -T fields -e vlan.id 2>/dev/null | grep -cx "$tag" || true)
	if [ "$total" -eq 0 ] || [ "$total" != "$tagged" ]; then
		die "$n-vlan$tag.pcap: $tagged of $total frames carry VLAN $tag"
	fi
	NAMES+=("$n-vlan$tag")
done

# <name>.tsv: the same tshark command as the first one in shared/corpus/gen_expected.sh (TShark 4.0).
COMMON="-n -T fields -E header=y -E separator=/t -E occurrence=a -E aggregator=|"
FILTER='(tcp and http.request) or (tcp and tls.handshake.type==1) or (dns.flags.response==0 and (udp.port==53 or tcp.port==53))'
for n in "${NAMES[@]}"; do
	f=$OUTDIR/$n.pcap
	# shellcheck disable=SC2086 # COMMON is split on purpose, as in gen_expected.sh
	tshark -r "$f" $COMMON -Y "$FILTER" \
		-e frame.number -e ieee8021ad.id -e vlan.id -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst \
		-e tcp.srcport -e tcp.dstport -e udp.srcport -e udp.dstport -e tcp.stream -e tcp.segment.count \
		-e http.request.method -e http.request.uri -e http.host \
		-e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str \
		-e tls.handshake.version -e tls.handshake.extensions.supported_version \
		-e dns.qry.name -e dns.qry.type \
		>"$OUTDIR/$n.tsv" 2>/dev/null
done

# ---------------------------------------------------------------- checks on what was written
declare -A ROWS=([http]=6 [dns]=3 [tls-v4]=3 [tls-v6]=2)
for n in "${NAMES[@]}"; do
	f=$OUTDIR/$n.pcap
	capinfos -t "$f" | grep -q 'Wireshark/tcpdump/... - pcap$' || die "$f is not classic pcap"
	size=$(stat -c %s "$f")
	[ "$size" -lt 61440 ] || die "$f is $size bytes (limit 60 KiB)"
	case $n in http-*) want=${ROWS[http]} ;; dns-*) want=${ROWS[dns]} ;; *) want=${ROWS[${n:0:6}]} ;; esac
	got=$(($(wc -l <"$OUTDIR/$n.tsv") - 1))
	[ "$got" = "$want" ] || die "$n.tsv has $got rows, expected $want"
	malformed=$(tshark -r "$f" -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE -o ip.check_checksum:TRUE \
		-Y '_ws.malformed or _ws.expert.severity >= error or tcp.checksum.status == 0
		    or udp.checksum.status == 0 or ip.checksum.status == 0' 2>/dev/null | wc -l)
	[ "$malformed" = 0 ] || die "$f: tshark reports $malformed malformed/bad-checksum/error frames"
	macs=$(tshark -r "$f" -T fields -e eth.src -e eth.dst 2>/dev/null | tr '\t' '\n' | sort -u | tr '\n' ' ')
	[ "$macs" = "$MAC_C $MAC_S " ] || die "$f: unexpected MAC addresses: $macs"
	# every address in the capture must be one of ours
	tshark -r "$f" -T fields -E separator=, -E occurrence=a -e ip.src -e ip.dst -e ipv6.src -e ipv6.dst \
		2>/dev/null | "$PY" -c '
import ipaddress, sys
ok = [ipaddress.ip_network(n) for n in ("198.18.0.0/15", "fd00:198:18::/48")]
bad = {a for line in sys.stdin for a in line.strip().split(",") if a
       and not any(ipaddress.ip_address(a) in n for n in ok)}
sys.exit("addresses outside the test ranges: %s" % sorted(bad) if bad else 0)' ||
		die "$f has foreign addresses"
	log "$n.pcap: $size bytes, $got rows in $n.tsv"
done
log "done: ${#NAMES[@]} captures in $OUTDIR"
