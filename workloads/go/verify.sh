#!/usr/bin/env bash
# Hand-check of the Go workloads against `ss -tanp` (ground truth), each case
# in a fresh network namespace so TIME-WAIT/FIN-WAIT leftovers of one case do
# not leak into the next. Needs root (unshare -n) and Go >= 1.19.
#
#   workloads/go/verify.sh            # run all cases a..e
#   workloads/go/verify.sh a c        # run only some
#
# Exits non-zero if any expectation fails.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
if [[ "${1:-}" != "__case" ]]; then
    BIN=$(mktemp -d /tmp/connlife-go.XXXXXX)
    for p in server client; do
        (cd "$HERE/$p" && GOFLAGS=-mod=mod GOPROXY=off CGO_ENABLED=0 go build -o "$BIN/$p" .)
    done
    cases=("$@")
    [[ ${#cases[@]} -eq 0 ]] && cases=(a b c d e)
    rc=0
    for c in "${cases[@]}"; do
        echo "=== case $c"
        BIN=$BIN unshare -n bash "$0" __case "$c" || rc=1
    done
    rm -rf "$BIN"
    [[ $rc -eq 0 ]] && echo "ALL OK" || echo "SOME CASES FAILED"
    exit $rc
fi

# ---- inside a fresh netns: bash verify.sh __case X, $BIN set -------------
case_id=$2
W=$(mktemp -d /tmp/connlife-go-case.XXXXXX)
ip link set lo up
fail=0
check() { # name got want
    if [[ "$2" == "$3" ]]; then echo "  ok   $1 = $2"; else echo "  FAIL $1 = $2 (want $3)"; fail=1; fi
}
start_server() { # mode
    "$BIN/server" -mode "$1" >"$W/srv.out" 2>"$W/srv.err" &
    SRV=$!
    for _ in $(seq 100); do [[ -s "$W/srv.out" ]] && break; sleep 0.05; done
    ADDR=$(awk 'NR==1{print $2}' "$W/srv.out")
    echo "  server pid=$SRV -mode $1: $(head -1 "$W/srv.out")"
}
run_client() { # mode count ; client stays alive (-hold -1s) until killed
    "$BIN/client" -url "http://$ADDR/" -mode "$1" -count "$2" -interval 20ms -hold -1s >"$W/cli.out" 2>"$W/cli.err" &
    CLI=$!
    for _ in $(seq 200); do grep -q '^done' "$W/cli.out" 2>/dev/null && break; sleep 0.05; done
    sleep 0.3   # let FIN/ACK exchanges settle
    echo "  client pid=$CLI: $(tail -1 "$W/cli.out")"
}
owned() { # state pid -> number of sockets in state owned by pid
    ss -tanpH state "$1" | grep -c "pid=$2," || true
}
# every local port the client printed is a socket in state $1 owned by the client
ports_match() {
    local missing=0 p
    for p in $(grep -o 'local=[^ ]*' "$W/cli.out" | sed 's/.*://' | sort -u); do
        ss -tanpH state "$1" "sport = :$p" | grep -q "pid=$CLI," || missing=$((missing + 1))
    done
    echo $missing
}

case $case_id in
a)  echo "  transport-per-request x20 vs keepalive server"
    start_server keepalive
    run_client transport-per-request 20
    check "client-owned ESTABLISHED" "$(owned established $CLI)" 20
    check "printed local ports not found ESTABLISHED in ss" "$(ports_match established)" 0
    check "reused=true lines" "$(grep -c 'reused=true' "$W/cli.out" || true)" 0
    echo "  (client has $(ls /proc/$CLI/fd | wc -l) fds open)"
    ;;
b)  echo "  body-not-closed x10 vs close server"
    start_server close
    run_client body-not-closed 10
    check "client-owned CLOSE-WAIT" "$(owned close-wait $CLI)" 10
    check "client-owned ESTABLISHED" "$(owned established $CLI)" 0
    check "printed local ports not found CLOSE-WAIT in ss" "$(ports_match close-wait)" 0
    echo "  (server side: $(ss -tanH state fin-wait-2 | wc -l) FIN-WAIT-2 sockets)"
    ;;
c)  echo "  shared x20 vs keepalive server"
    start_server keepalive
    run_client shared 20
    check "client-owned sockets (any state)" "$(ss -tanpH | grep -c "pid=$CLI," || true)" 1
    check "client-owned ESTABLISHED" "$(owned established $CLI)" 1
    check "distinct local ports printed" "$(grep -o 'local=[^ ]*' "$W/cli.out" | sort -u | wc -l)" 1
    check "reused=true lines (2nd..20th)" "$(grep -c 'reused=true' "$W/cli.out" || true)" 19
    check "req 1 reused" "$(grep -o '^req 1 .*reused=[a-z]*' "$W/cli.out" | sed 's/.*reused=//')" false
    ;;
d)  echo "  no-keepalive x20 vs keepalive server"
    start_server keepalive
    run_client no-keepalive 20
    check "client-owned ESTABLISHED" "$(owned established $CLI)" 0
    check "client-owned sockets (any state)" "$(ss -tanpH | grep -c "pid=$CLI," || true)" 0
    check "distinct local ports printed" "$(grep -o 'local=[^ ]*' "$W/cli.out" | sort -u | wc -l)" 20
    port=${ADDR##*:}
    tw=$(ss -tanH state time-wait | wc -l)
    tw_srv=$(ss -tanH state time-wait "sport = :$port" | wc -l)
    echo "  TIME-WAIT sockets: $tw (on the server's port $port: $tw_srv, on client ports: $((tw - tw_srv)))"
    # Each connection must have ended in TIME-WAIT on at least one side (a
    # simultaneous close puts both ends in TIME-WAIT, so $tw may exceed 20).
    tw_conns=$(for p in $(grep -o 'local=[^ ]*' "$W/cli.out" | sed 's/.*://' | sort -u); do
        ss -tanH state time-wait "( sport = :$p or dport = :$p )" | grep -q . && echo "$p"; done | wc -l)
    check "connections that ended in TIME-WAIT" "$tw_conns" 20
    ss -tanH state time-wait | awk '{print "    " $0}' | head -40 >"$W/tw"; [[ -n "${VERBOSE:-}" ]] && cat "$W/tw"
    ;;
e)  echo "  transport-per-request, ulimit -n 64, -exit-on-error -interval 10ms"
    start_server keepalive
    start=$(date +%s.%N)
    set +e
    ( ulimit -n 64; exec timeout 20 "$BIN/client" -url "http://$ADDR/" -mode transport-per-request \
        -interval 10ms -exit-on-error >"$W/cli.out" 2>"$W/cli.err" )
    status=$?
    set -e
    end=$(date +%s.%N)
    echo "  exited after $(echo "$end - $start" | bc 2>/dev/null || echo "?")s, $(grep -c '^req .* ok' "$W/cli.out" || true) ok requests"
    echo "  stderr: $(cat "$W/cli.err")"
    check "exit status" "$status" 3
    check "stderr mentions 'too many open files'" "$(grep -c 'too many open files' "$W/cli.err" || true)" 1
    ;;
*)  echo "unknown case $case_id"; exit 2 ;;
esac

kill ${CLI:-} $SRV 2>/dev/null || true
wait 2>/dev/null || true
rm -rf "$W"
exit $fail
