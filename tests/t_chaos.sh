#!/bin/sh
# t_chaos - what broke guardd under hostile operations, all in one run against
# the real binaries and a mock cluster in its own process (guardctl broker),
# with the tiny fixture model. Every input must get exactly one output
# (repeats of a record_id after crashes and reconnects are allowed and must
# agree: the mock does not de-duplicate producer retries).
#
#   1. guardd g1 falls behind a backlog of padded events and pauses its
#      partitions; g2 joins the group while g1 is paused (rebalance while paused).
#      The backlog is on the broker before g1 starts, so g1 reads it far faster
#      than it classifies whatever the load: sent while g1 ran, a slow sender
#      let g1 keep up and its queue never reached 64 (seen under a loaded
#      make check).
#   2. records whose key or header is ~99.5 kB with message.max.bytes = 100000:
#      a valid event with a huge key, one with a huge traceparent header, raw
#      invalid bytes with a huge key; and events with an empty key.
#   3. every broker down for 8 s (guardctl broker SIGUSR1/SIGUSR2).
#   4. kill -9 of g2 (g1 takes its partitions back after the session timeout),
#      then a second backlog, sent while g1's consumer is held (the test fault
#      "block consumer", daemon/testhook.h) so that it is all there when g1
#      reads again; g3 joins while g1 is paused on it and leaves (SIGTERM).
# Then: tests/e2e/check_outputs.py --full over everything; how many
# rebalances hit g1 while it was paused (usually >= 1; a fast machine may
# drain first, so that is reported, not required); g1 ends unpaused and ready
# (/metrics, /readyz) and stops cleanly with nothing outstanding.
# About 2 minutes on 2 cores. Logs: $BUILD/test-logs/t_chaos.d/.
set -eu
cd "$(dirname "$0")/.."
. tests/e2e/lib.sh
e2e_init t_chaos model      # GUARDD=...: try another build (e.g. an older one)

step "broker"
start_broker conversations,verdicts.allow,verdicts.deny,conversations.dlq
cat >"$tmp/guardd.conf" <<CONF
kafka = {
  brokers = "$B";
  group_id = "chaos";
  input_topics = [ "conversations" ];
  keep_headers = [ "traceparent" ];
  properties = ( ("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500"),
                 ("message.max.bytes", "100000") );
};
model = { path = "$MODEL"; threads = 1; };
# a queue of 64 resumes at 32: g1 stays paused for seconds at a time
batch = { max_events = 8; max_wait_ms = 20; queue_capacity = 64; };
limits = { max_event_bytes = 65536; max_message_bytes = 4096; };
metrics = { listen = "127.0.0.1:0"; };
log = { level = "info"; };
shutdown_timeout_ms = 10000;
CONF

# raw_send KEY: raw bytes from stdin as one record with key KEY
raw_send() {
    "$C" send --brokers "$B" --topic conversations --key "$1" --raw >/dev/null \
        2>>"$logs/send.log" || fail "raw send"
}
# one_event ID [send options...]: a small valid event
one_event() {
    id=$1; shift
    echo "{\"id\": \"$id\", \"messages\": [{\"role\": \"user\", \"content\": \"hello $id\"}]}" |
        "$C" send --brokers "$B" --topic conversations "$@" >/dev/null 2>>"$logs/send.log" \
        || fail "send $id"
}
big() { # N CHAR: N copies of CHAR
    head -c "$1" /dev/zero | tr '\0' "$2"
}

step "1: backlog, g1 pauses, g2 joins"
"$PY" tests/e2e/gen_events.py "$tmp/a" a 8 30 --pad 60 >/dev/null
send_keys "$tmp/a" a
total=240
faults=$tmp/faults      # g1's test fault file (step 4)
GUARDD_TEST_FAULTS=$faults start_guardd g1; G1=$LAST_PID
wait_log "$logs/g1.log" "event=ready" 30
# start the next member right after a fresh pause of g1, so that the
# rebalance finds it paused (a queue of 64 takes seconds to drain to 32)
pauses() { count_log "$logs/g1.log" "event=backpressure_pause"; }
paused_since() { [ "$(pauses)" -gt "$1" ]; }
fresh_pause() { # N: waits for g1's pause number N + 1
    wait_until 60 paused_since "$1" || fail "g1 did not pause again"
}
wait_log "$logs/g1.log" "event=backpressure_pause" 60
fresh_pause "$(pauses)"
start_guardd g2; G2=$LAST_PID
wait_log "$logs/g2.log" "event=partitions_assigned count=[1-9]" 40

step "2: oversized keys and headers, empty keys"
for c in A B C; do one_event "big-key-$c" --key "$c$(big 99500 K)"; done
for c in 1 2; do one_event "big-hdr-$c" --key "hdr-$c" --header "traceparent=$(big 99500 t)"; done
for c in D E; do big 5000 "$(printf '\301')" | raw_send "$c$(big 96000 K)"; done
for c in 1 2 3; do one_event "ok-empty-$c" --key ""; done
total=$((total + 10))

step "3: every broker down for 8 s"
kill -USR1 "$BROKER_PID"
sleep 8
kill -USR2 "$BROKER_PID"

step "4: kill -9 g2, g1 takes all, g3 joins and leaves"
kill -9 "$G2"
wait "$G2" 2>/dev/null || true
# g1 holds every partition once g2's session has expired
owns_all() {
    grep -E "event=partitions_(assigned|revoked) " "$logs/g1.log" | tail -n 1 |
        grep -q "event=partitions_assigned count=4 "
}
wait_until 60 owns_all || fail "g1 did not take g2's partitions"
# the second backlog is sent while g1's consumer is held, so g1 finds all of
# it when it reads again, however slowly it was sent
echo "block consumer" >"$faults"
wait_log "$logs/g1.log" "fault=block_consumer state=blocked" 10
"$PY" tests/e2e/gen_events.py "$tmp/b" b 4 25 --valid-only --pad 60 >/dev/null
send_keys "$tmp/b" b
total=$((total + 100))
n=$(pauses)
rm -f "$faults"
fresh_pause "$n"
start_guardd g3; G3=$LAST_PID
wait_log "$logs/g3.log" "event=partitions_assigned count=[1-9]" 60
sleep 3
kill -TERM "$G3"
rc=0; wait "$G3" || rc=$?
[ $rc -eq 0 ] || fail "g3 exited $rc after SIGTERM"

step "check: $total inputs"
check --expect-inputs $total --timeout 90 --full --header traceparent || fail "outputs"
# a rebalance that revoked g1's partitions while it had them paused
hit=$(awk '/event=backpressure_pause/ {p = 1} /event=backpressure_resume/ {p = 0}
           /event=partitions_revoked/ && p {n++} END {print n + 0}' "$logs/g1.log")
echo "rebalances while g1 was paused: $hit"
# On a fast, quiet machine g1 can drain its queue before the group rebalances,
# so this timing is not guaranteed here; check_pipeline_faults' "rebalance" case
# holds a member paused (leader-less outputs) across a rebalance deterministically.
[ "$hit" -ge 1 ] || echo "note: no rebalance found g1 paused this run (it drained first);" \
    "check_pipeline_faults rebalance covers that case deterministically"
port=$(metrics_port "$logs/g1.log")
i=0
until "$PY" - "$port" <<'PYEOF'
import sys, urllib.request
port = sys.argv[1]
m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
vals = {l.split()[0]: float(l.split()[1]) for l in m.splitlines() if l and not l.startswith("#")}
try:
    ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status
except Exception as e:
    ready = getattr(e, "code", 0)
print("paused", vals.get("guardd_paused_partitions"), "failing",
      vals.get("guardd_output_topics_failing"), "readyz", ready)
sys.exit(0 if vals.get("guardd_paused_partitions") == 0 and ready == 200 else 1)
PYEOF
do
    i=$((i + 1)); [ $i -lt 20 ] || fail "g1 still paused or not ready"; sleep 1
done
kill -TERM "$G1"
rc=0; wait "$G1" || rc=$?
[ $rc -eq 0 ] || fail "g1 exited $rc after SIGTERM"
grep -q "event=pipeline_stopped outstanding=0 .*left_group=yes" "$logs/g1.log" \
    || fail "g1 did not stop cleanly: $(grep pipeline_stopped "$logs/g1.log")"
step "PASS"
