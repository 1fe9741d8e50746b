# lib.sh - shell helpers shared by the end-to-end script tests that run the real
# guardd against `guardctl broker` or under a stand-in service manager
# (t_daemon_e2e.sh, t_chaos.sh, t_event_wire.sh, t_stall.sh, t_guardd_notify.sh,
# t_daemon_8b.sh, bench/kafka_throughput.sh). Source it from the repository root, then either
# call e2e_init (the tests' common opening) or set yourself:
#   G, C   guardd and guardctl binaries      PY   python3 with msgpack
#   tmp    scratch directory (removed on exit) logs  directory for process logs
# It sets the EXIT/INT/TERM traps: every process started here (and any pid added
# to $pids) is killed with -9 on exit, and $tmp is removed.

pids=""
tmp=${tmp:-}
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "== $(date +%T) $*"; }

# e2e_init NAME [model]: BUILD (default build), G (or $GUARDD: another build
# to try), C, PY (Debian's python3, with python3-msgpack: not a pyenv shim),
# logs=$BUILD/test-logs/NAME.d (emptied), tmp; fails unless both binaries
# are built. With "model": MODEL, the tiny fixture model ($GUARDD_TINY_MODEL,
# absolute), skipping (77) without it.
e2e_init() {
    BUILD=${BUILD:-build}
    PY=/usr/bin/python3
    G=${GUARDD:-$BUILD/guardd}
    C=$BUILD/guardctl
    [ -x "$G" ] && [ -x "$C" ] || fail "$G / $C not built"
    if [ "${2:-}" = model ]; then
        MODEL=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}
        [ -f "$MODEL/model.safetensors" ] || { echo "skip: no tiny fixture model at $MODEL"; exit 77; }
        case $MODEL in /*) ;; *) MODEL=$PWD/$MODEL ;; esac
    fi
    logs=$BUILD/test-logs/$1.d
    rm -rf "$logs"
    mkdir -p "$logs"
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
}

# start_broker TOPICS [BROKERS [PARTITIONS]] -> B (bootstrap list), BROKER_PID.
# Default 3 brokers, 4 partitions. Callable again for a fresh cluster once the
# previous one is gone (its bootstrap file is removed first; its log replaced).
start_broker() {
    rm -f "$tmp/bootstrap"
    "$C" broker --brokers "${2:-3}" --partitions "${3:-4}" --topics "$1" \
        --bootstrap-file "$tmp/bootstrap" >"$logs/broker.log" 2>&1 &
    BROKER_PID=$!
    pids="$pids $BROKER_PID"
    wait_until 10 test -s "$tmp/bootstrap" || fail "broker did not start"
    B=$(sed 's/^bootstrap=//' "$tmp/bootstrap")
    echo "bootstrap $B"
}

# start_guardd NAME [CONFIG] -> LAST_PID; log in $logs/NAME.log
LAST_PID=
start_guardd() {
    "$G" --config "${2:-$tmp/guardd.conf}" >"$logs/$1.log" 2>&1 &
    LAST_PID=$!
    pids="$pids $LAST_PID"
}

# wait_until SECONDS COMMAND [ARGS...]: runs COMMAND every 0.1 s until it
# succeeds; returns 1 after SECONDS * 10 tries (the caller says what failed,
# as `wait_until 10 ready || fail "..."`). Its counter is its own, so a
# caller's loop variables are safe.
wait_until() {
    _wait_n=$(($1 * 10)); shift
    until "$@"; do
        _wait_n=$((_wait_n - 1)); [ $_wait_n -gt 0 ] || return 1
        sleep 0.1
    done
}

wait_log() { # file pattern seconds
    wait_until "$3" grep -q "$2" "$1" 2>/dev/null || fail "no '$2' in $1 after $3 s"
}
count_log() { grep -c "$2" "$1" 2>/dev/null || true; }

# send_keys DIR PREFIX: one guardctl send per key file of gen_events.py (in
# order) to topic conversations, with a traceparent header
send_keys() {
    for f in "$1/$2"-k*.jsonl; do
        k=$(basename "$f" .jsonl)
        "$C" send --brokers "$B" --topic conversations --key "$k" \
            --header "traceparent=00-$k-01" <"$f" >/dev/null 2>>"$logs/send.log" \
            || fail "guardctl send $k"
    done
}

check() { # args for check_outputs.py
    "$PY" tests/e2e/check_outputs.py --guardctl "$C" --brokers "$B" "$@"
}

# start_notify_recv [SECONDS]: the service manager's side of the notify
# protocol (tests/e2e/notify_recv.py) on NOTIFY_SOCK=$tmp/notify.sock, every
# datagram appended to NOTIFY_LOG=$tmp/notify.log as "<CLOCK_MONOTONIC
# seconds> <datagram, newlines as |>"; returns once the socket is bound. The
# receiver exits by itself after SECONDS (default 900).
start_notify_recv() {
    NOTIFY_SOCK=$tmp/notify.sock NOTIFY_LOG=$tmp/notify.log
    "$PY" tests/e2e/notify_recv.py "$NOTIFY_SOCK" "$NOTIFY_LOG" "${1:-900}" &
    pids="$pids $!"
    wait_until 10 test -e "$NOTIFY_LOG" || fail "notify receiver did not start"
}

# metrics_port LOG: the port guardd logged for /metrics
metrics_port() { sed -n 's/.*event=metrics_listening port=\([0-9]*\).*/\1/p' "$1"; }
