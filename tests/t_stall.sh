#!/bin/sh
# t_stall - the stall watch of the real guardd binary, seen over HTTP (curl)
# the way a load balancer or Prometheus sees it, with stalls made for real
# through guardd's test fault file (GUARDD_TEST_FAULTS, daemon/testhook.h)
# and health.stall_seconds = 10 (the least allowed).
#   P. Partition: "hold conversations/0" keeps that partition paused in the
#      client behind guardd's back (what a lost resume after a rebalance did);
#      records sent to it wait on the broker. /readyz must go 503 naming
#      conversations/0 (not before ~10 s), /metrics guardd_stalled_partitions
#      >= 1 and guardd_ready 0; released, it must recover (200, gauge 0) and
#      answer every record.
#   C. Consumer: "block consumer" hangs guardd's consumer thread (a deadlock
#      or a callback that never returns). /readyz must go 503 naming the
#      consumer, guardd_consumer_stalled 1, one event=consumer_stall warning;
#      released, 200 and 0 again, and the records sent while it hung are
#      answered. (Before, the watch ran on the consumer thread and said
#      ready throughout.)
#      Watchdog: guardd runs under a stand-in service manager
#      (tests/e2e/notify_recv.py on NOTIFY_SOCKET, WATCHDOG_USEC = 2 s, so a
#      WATCHDOG=1 keep-alive about every 1 s). Keep-alives must arrive while
#      healthy and go on for most of stall_seconds after the block (the
#      cut-off is the stall, not the block itself); once the stall is
#      reported none may arrive for a quiet stretch of 5 s (5 keep-alive
#      intervals: systemd would restart guardd); released, they resume.
# Then SIGTERM: exit 0, nothing outstanding. About 45 s.
set -eu
cd "$(dirname "$0")/.."
. tests/e2e/lib.sh
e2e_init t_stall model
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }

step "broker and guardd"
start_broker conversations,verdicts.allow,verdicts.deny,conversations.dlq 1 2
cat >"$tmp/guardd.conf" <<EOF2
kafka = {
  brokers = "$B";
  group_id = "stall";
  input_topics = [ "conversations" ];
  properties = ( ("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500"),
                 ("statistics.interval.ms", "1000") );
};
model = { path = "$MODEL"; threads = 1; };
batch = { max_events = 4; max_wait_ms = 10; };
health = { stall_seconds = 10; };
metrics = { listen = "127.0.0.1:0"; };
log = { level = "info"; };
shutdown_timeout_ms = 10000;
EOF2
faults=$tmp/faults
start_notify_recv   # every datagram, timed on arrival (CLOCK_MONOTONIC)
unset WATCHDOG_PID
NOTIFY_SOCKET=$NOTIFY_SOCK WATCHDOG_USEC=2000000 GUARDD_TEST_FAULTS=$faults start_guardd g1; G1=$LAST_PID
wait_log "$logs/g1.log" "event=ready" 60
port=$(metrics_port "$logs/g1.log")
[ -n "$port" ] || fail "no metrics port in the log"
url=http://127.0.0.1:$port

# readyz: "CODE BODY" of GET /readyz
readyz() { curl -sS -o "$tmp/readyz.body" -w '%{http_code}' "$url/readyz" 2>/dev/null || echo 000; }
gauge() { # name -> value ("" when absent)
    curl -fsS "$url/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
ready_is() { [ "$(readyz)" = "$1" ]; }
# wait_ready CODE SECONDS WHAT: polls /readyz until CODE
wait_ready() {
    wait_until "$2" ready_is "$1" || fail "$3: /readyz not $1 within $2 s (body: $(cat "$tmp/readyz.body"))"
}
send() { # partition count tag
    for j in $(seq 1 "$2"); do
        "$C" send --brokers "$B" --topic conversations --partition "$1" --key "$3-$j" \
            "message $3 $j: how do I bake bread?" >/dev/null 2>>"$logs/send.log" || fail "guardctl send"
    done
}
# mono: now on the receiver's clock; pings A [B]: keep-alives that arrived
# after A (and up to B); last_ping_before B: arrival of the last one up to B
mono() { "$PY" -c 'import time; print("%.3f" % time.monotonic())'; }
calc() { awk "BEGIN { print ($1) }"; }  # arithmetic on those times (1/0 for comparisons)
pings() {
    awk -v a="$1" -v b="${2:-1e18}" '$2 == "WATCHDOG=1" && $1 > a && $1 <= b { n++ } END { print n + 0 }' \
        "$NOTIFY_LOG"
}
last_ping_before() {
    awk -v b="$1" '$2 == "WATCHDOG=1" && $1 <= b { t = $1 } END { print t + 0 }' "$NOTIFY_LOG"
}
pings_since() { [ "$(pings "$1")" -ge "$2" ]; }   # AFTER N: N keep-alives since AFTER
# wait_pings AFTER N SECONDS WHAT: polls until N keep-alives arrived after AFTER
wait_pings() {
    wait_until "$3" pings_since "$1" "$2" || fail "$4: $(pings "$1") WATCHDOG=1 within $3 s, want $2"
}
wait_ready 200 30 "start"
grep -q "^[0-9.]* READY=1" "$NOTIFY_LOG" || fail "no READY=1 on NOTIFY_SOCKET"
wait_pings 0 3 15 "start: keep-alives while healthy"

step "P: a partition held paused behind guardd's back"
echo "hold conversations/0" >"$faults"
wait_log "$logs/g1.log" "fault=hold partition=conversations/0 state=held" 10
t0=$(date +%s)
send 0 3 p
wait_ready 503 45 "P: held partition"
t1=$(date +%s)
echo "503 after $((t1 - t0)) s: $(cat "$tmp/readyz.body")"
[ $((t1 - t0)) -ge 9 ] || fail "P: flagged after $((t1 - t0)) s, before health.stall_seconds"
grep -q "stalled: .*conversations/0" "$tmp/readyz.body" || fail "P: /readyz does not name conversations/0"
! grep -q "conversations/1" "$tmp/readyz.body" || fail "P: the idle partition named too"
v=$(gauge guardd_stalled_partitions)
[ -n "$v" ] && [ "$v" -ge 1 ] || fail "P: guardd_stalled_partitions = '$v'"
[ "$(gauge guardd_ready)" = 0 ] || fail "P: guardd_ready not 0"
grep -q "event=stall partitions=conversations/0" "$logs/g1.log" || fail "P: no event=stall warning"
rm -f "$faults"
wait_ready 200 30 "P: released"
[ "$(gauge guardd_stalled_partitions)" = 0 ] || fail "P: gauge still set after the release"
check --expect-inputs 3 --timeout 60 || fail "P: outputs"

step "C: the consumer thread hung"
echo "block consumer" >"$faults"
wait_log "$logs/g1.log" "fault=block_consumer state=blocked" 10
t_block=$(mono)
send 1 2 c
wait_ready 503 45 "C: blocked consumer"
# The partition with c's records and the consumer both pass stall_seconds
# about then: the first 503 may name only the partition (seen under ASan),
# so wait for the consumer to be named too.
consumer_named() { ready_is 503 && grep -q "stalled: consumer: its poll loop has not come round" "$tmp/readyz.body"; }
wait_until 15 consumer_named || fail "C: /readyz does not name the consumer (body: $(cat "$tmp/readyz.body"))"
t_503=$(mono)
echo "503: $(cat "$tmp/readyz.body")"
[ "$(gauge guardd_consumer_stalled)" = 1 ] || fail "C: guardd_consumer_stalled not 1"
[ "$(count_log "$logs/g1.log" "event=consumer_stall ")" = 1 ] || fail "C: want one event=consumer_stall warning"
# The quiet stretch: the stall is reported, so the keep-alives stop. A
# keep-alive sent just before the cut-off may be received a little after
# /readyz said 503 on a loaded machine: the stretch starts 2 s later.
sleep 7
t_rel=$(mono)
late=$(pings "$(calc "$t_503 + 2")" "$t_rel")
last=$(last_ping_before "$t_rel")
echo "watchdog: blocked at $t_block, 503 at $t_503, last keep-alive at $last, released at $t_rel"
[ "$late" = 0 ] || fail "C: $late WATCHDOG=1 in the 5 s after the stall was reported"
# ... and stopped because of the stall, not at the block: they went on for
# most of stall_seconds (10 s) with the consumer already hung
[ "$(calc "$last >= $t_block + 5")" = 1 ] \
    || fail "C: keep-alives stopped $(calc "$last - $t_block") s after the block, before the stall"
rm -f "$faults"
wait_pings "$t_rel" 2 15 "C: keep-alives after the release"
wait_ready 200 30 "C: released"
[ "$(gauge guardd_consumer_stalled)" = 0 ] || fail "C: gauge still set after the release"
wait_log "$logs/g1.log" "event=consumer_stall_cleared" 5
check --expect-inputs 5 --timeout 60 || fail "C: outputs"

step "stop"
kill -TERM "$G1"
rc=0; wait "$G1" || rc=$?
[ $rc -eq 0 ] || fail "guardd exited $rc after SIGTERM"
grep -q "event=pipeline_stopped outstanding=0 " "$logs/g1.log" || fail "stop left work outstanding"
echo "PASS"
