#!/bin/sh
# t_daemon_e2e - the real guardd binary against a mock Kafka cluster running in
# its own process (guardctl broker), so guardd can be kill -9'd and restarted.
# Tiny fixture model ($GUARDD_TINY_MODEL) with the genuine tokenizer.
#
#   A. 1,000 mixed events (valid, schema violations, oversize, raw non-msgpack
#      bytes) over 8 keys and 4 partitions: every input gets exactly one output
#      after dropping repeats by record_id, invalid ones only on the DLQ, verdict
#      fields present (category_scores labelled with the event's active
#      categories), keys and the traceparent header kept, per-key order kept.
#   B. kill -9 of guardd mid-stream, three times, restarting each time: every
#      input offset still gets its output.
#   C. a second guardd joins the group: the partitions are split; SIGTERM to the
#      first (exit 0, left the group): the other takes over, nothing lost.
#   D. (broker faults: tests/check_pipeline_faults.c, in-process.)
#   E. kafkajs (tests/js/roundtrip.js) produces events and reads the verdicts
#      of the running guardd (skipped when kafkajs is not installed).
#   R. SIGHUP with a broken file keeps guardd running on the old settings;
#      SIGHUP with threshold = 0.5 routes the following events to allow, and
#      category_scores = false leaves the scores out of their verdicts.
#   Metrics (after A): /metrics counts the consumed events and DLQ records.
# Output checks: tests/e2e/check_outputs.py. Every background process is
# killed on exit; logs are kept in $BUILD/test-logs/t_daemon_e2e.d/.
set -eu
cd "$(dirname "$0")/.."
DEPS_DIR=${DEPS_DIR:-$PWD/.deps}
. tests/e2e/lib.sh
e2e_init t_daemon_e2e model

# ---- broker -----------------------------------------------------------------
step "broker"
start_broker conversations,verdicts.allow,verdicts.deny,conversations.dlq

cat >"$tmp/guardd.conf" <<EOF
kafka = {
  brokers = "$B";
  group_id = "e2e";
  input_topics = [ "conversations" ];
  keep_headers = [ "traceparent", "trace-id" ];
  properties = ( ("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500") );
};
model = { path = "$MODEL"; threads = 1; };
policy = { category_scores = true; };
batch = { max_events = 8; max_wait_ms = 10; queue_capacity = 32; };
limits = { max_event_bytes = 65536; max_message_bytes = 4096; };
metrics = { listen = "127.0.0.1:0"; };
log = { level = "info"; };
shutdown_timeout_ms = 10000;
EOF
"$G" --check-config "$tmp/guardd.conf" || fail "test config rejected"
"$G" --version | grep -q '^guardd [0-9]' || fail "guardd --version"
echo 'kafka = { brokers = 42; };' >"$tmp/bad.conf"
rc=0; "$G" --check-config "$tmp/bad.conf" 2>"$tmp/bad.err" || rc=$?
[ $rc -ne 0 ] && grep -q "bad.conf:1" "$tmp/bad.err" || fail "a bad config must be refused with FILE:LINE"
rc=0; "$G" --config "$tmp/bad.conf" 2>/dev/null || rc=$?
[ $rc -ne 0 ] || fail "guardd started with a bad config"
rc=0; "$G" --bogus 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "unknown option: exit $rc, want 2"

# ---- A: 1,000 mixed events -------------------------------------------------------
step "A: 1000 mixed events"
start_guardd g1; G1=$LAST_PID
wait_log "$logs/g1.log" "event=ready" 30
grep -q "event=model_loaded .*precision=bf16 kernels=[a-z0-9+-]" "$logs/g1.log" \
    || fail "A: event=model_loaded does not name the default precision (auto = bf16) and kernels"
"$PY" tests/e2e/gen_events.py "$tmp/a" a 8 122 >/dev/null
send_keys "$tmp/a" a
for j in $(seq 1 24); do    # 24 records that are not msgpack at all
    printf '\223\001garbage %s' "$j" | "$C" send --brokers "$B" --topic conversations \
        --key "a-raw" --raw >/dev/null 2>>"$logs/send.log" || fail "raw send"
done
check --expect-inputs 1000 --timeout 120 --full --header traceparent --category-scores \
    || fail "A: outputs"
port=$(metrics_port "$logs/g1.log")
"$PY" tests/e2e/scrape.py "$port" 1000 129 || fail "A: metrics"

# ---- B: kill -9 mid-stream, three times ---------------------------------------------
step "B: kill -9 x3 while input keeps arriving"
"$PY" tests/e2e/gen_events.py "$tmp/b" b 12 50 --valid-only >/dev/null
( for f in "$tmp/b"/b-k*.jsonl; do   # a key file every 2 s: ~24 s of input
      k=$(basename "$f" .jsonl)
      "$C" send --brokers "$B" --topic conversations --key "$k" <"$f" >/dev/null \
          2>>"$logs/send_b.log" || exit 1
      sleep 2
  done ) &
sender=$!
pids="$pids $sender"
victim=$G1
for round in 1 2 3; do
    sleep 1.5
    echo "B: kill -9 (round $round) with $(count_log "$logs/send_b.log" delivered)/12 key files sent"
    kill -9 "$victim"
    wait "$victim" 2>/dev/null || true
    start_guardd "b$round"; victim=$LAST_PID
    wait_log "$logs/b$round.log" "event=partitions_assigned" 40
done
G1=$victim
wait "$sender" || fail "B: sending failed"
check --expect-inputs 1600 --timeout 90 || fail "B: outputs after kill -9"

# ---- C: two members, then SIGTERM one ------------------------------------------------
step "C: second member, SIGTERM the first"
start_guardd g2; G2=$LAST_PID
wait_log "$logs/g2.log" "event=partitions_assigned count=[1-9]" 40
"$PY" tests/e2e/gen_events.py "$tmp/c" c 4 100 --valid-only >/dev/null
send_keys "$tmp/c" c
sleep 1
kill -TERM "$G1"
rc=0; wait "$G1" || rc=$?
[ $rc -eq 0 ] || fail "C: guardd exited $rc after SIGTERM"
grep -q "left_group=yes" "$logs/b3.log" || fail "C: first member did not leave the group cleanly"
wait_log "$logs/g2.log" "event=partitions_assigned count=4" 40
total=2000
check --expect-inputs $total --timeout 90 || fail "C: outputs after hand-over"

# ---- E: kafkajs round trip -----------------------------------------------------------------
step "E: kafkajs"
export NODE_PATH=$DEPS_DIR/node_modules
if node -e 'require("kafkajs"); require("@msgpack/msgpack")' 2>/dev/null; then
    node tests/js/roundtrip.js --brokers "$B" --input conversations --allow verdicts.allow \
        --deny verdicts.deny --dlq conversations.dlq --count 40 --malformed 4 --prefix e2e \
        --timeout-ms 60000 --check-ids --check-headers >"$logs/roundtrip.json" \
        || { cat "$logs/roundtrip.json"; fail "E: kafkajs round trip"; }
    cat "$logs/roundtrip.json"
    total=$((total + 44))
else
    echo "E: kafkajs not installed in $NODE_PATH: skipped"
fi

# ---- R: SIGHUP reload -------------------------------------------------------------------
step "R: SIGHUP with a broken file, then with threshold 0.5 and category_scores off"
cp "$tmp/guardd.conf" "$tmp/good.conf"
echo 'batch = { max_events = "many"; };' >>"$tmp/guardd.conf"
kill -HUP "$G2"
wait_log "$logs/g2.log" "event=reload_failed" 10
kill -0 "$G2" || fail "R: guardd died on a bad reload"
# the random tiny model's P(unsafe) is far below 0.5: from now on all safe
sed 's/^policy = { category_scores = true;/policy = { threshold = 0.5; category_scores = false;/' \
    "$tmp/good.conf" >"$tmp/guardd.conf"
grep -q 'category_scores = false' "$tmp/guardd.conf" || fail "R: could not edit the policy line"
kill -HUP "$G2"
wait_log "$logs/g2.log" "event=reloaded threshold=0.5 category_scores=false" 10
"$PY" tests/e2e/gen_events.py "$tmp/r" r 1 20 --valid-only >/dev/null
send_keys "$tmp/r" r
total=$((total + 20))
check --expect-inputs $total --timeout 60 >/dev/null || fail "R: outputs after reload"
# --count: stop as soon as 20 arrived (a fixed short read could end before the
# mock cluster served them all); a threshold not applied leaves fewer after 30 s
# "n m": ok-r- verdicts on allow, and how many of them still carry scores
res=$("$C" tail --brokers "$B" --topic verdicts.allow --count 20 --timeout-ms 30000 2>/dev/null | "$PY" -c '
import json, sys
vs = [json.loads(l)["value"] for l in sys.stdin]
r = [v for v in vs if str(v.get("id", "")).startswith("ok-r-")]
print(len(r), sum(1 for v in r if "category_scores" in v))')
n=${res% *}; scored=${res#* }
[ "$n" -ge 20 ] || fail "R: $n of 20 events after the reload were allowed (threshold not applied)"
[ "$scored" -eq 0 ] || fail "R: $scored of $n verdicts after the reload carry category_scores (reload not applied)"
echo "R: $n/20 verdicts on allow after the reload, none with category_scores"

kill -TERM "$G2"
rc=0; wait "$G2" || rc=$?
[ $rc -eq 0 ] || fail "guardd exited $rc after SIGTERM"
step "PASS"
