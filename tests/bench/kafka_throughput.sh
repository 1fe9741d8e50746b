#!/bin/sh
# kafka_throughput.sh - events/s through Kafka (guardd, micro-batched) versus
# guardctl classify on the same events in the same run (no Kafka).
#
# The same N conversation events (tests/e2e/gen_events.py, valid only) are
# (1) classified by one `guardctl classify --batch BENCH_BATCH` process (its
# --stats "run" seconds: prompt building, tokenizing and inference, model load
# excluded), then (2) produced to a mock cluster in its own process (guardctl
# broker) and consumed by a guardd started afterwards, timed from its
# partitions_assigned log line to the producer timestamp of the last of the N
# verdicts (model load and group join excluded). Both start with a cold
# prompt-prefix cache. Prints both rates and their ratio, for two cases: the
# model's own verdicts and every verdict "safe" (see the end of this file).
# guardd and the first classify run use the first of BENCH_PRECISIONS; classify
# is also run (and its events/s printed) in each of the others, with the ratio
# to f32 when f32 is among them.
#
# Environment: BUILD, DEPS_DIR; GUARDD_BENCH_MODEL (default: the full-shape
# random fixture tools/bench.sh generates), BENCH_EVENTS (default 64),
# BENCH_THREADS (default 0 = all cores), BENCH_BATCH (guardd batch.max_events,
# default 16), BENCH_PRECISIONS (model.precision values, default "bf16 f32 int8").
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
DEPS_DIR=${DEPS_DIR:-$PWD/.deps}
MODEL=${GUARDD_BENCH_MODEL:-$DEPS_DIR/fixtures/lg3-1b-seed1}
N=${BENCH_EVENTS:-64}
THREADS=${BENCH_THREADS:-0}
BATCH=${BENCH_BATCH:-16}
PRECS=${BENCH_PRECISIONS:-bf16 f32 int8}
PREC0=${PRECS%% *}
PY=/usr/bin/python3
G=$BUILD/guardd
C=$BUILD/guardctl
[ -f "$MODEL/config.json" ] || { echo "kafka_throughput: no model at $MODEL"; exit 1; }
case $MODEL in /*) ;; *) MODEL=$PWD/$MODEL ;; esac

tmp=$(mktemp -d /tmp/kafka_throughput.XXXXXX)
logs=$tmp   # broker.log, guardd.log (its tail printed on failure): removed on exit
. tests/e2e/lib.sh
per_key=$(( (N + 3) / 4 ))
"$PY" tests/e2e/gen_events.py "$tmp/ev" b 4 "$per_key" --valid-only >/dev/null
cat "$tmp/ev"/b-k*.jsonl | head -n "$N" >"$tmp/all.jsonl"
N=$(wc -l <"$tmp/all.jsonl")

count_verdicts() { # pattern: verdicts on allow+deny whose line matches
    for t in verdicts.allow verdicts.deny; do
        "$C" tail --brokers "$B" --topic "$t" --timeout-ms 1500 2>/dev/null
    done >"$tmp/verdicts.jsonl"
    grep -c "$1" "$tmp/verdicts.jsonl" || true
}

# measure LABEL THRESHOLD: classify, then guardd, on the same events
measure() {
    label=$1 threshold=$2
    # (1) guardctl classify, no Kafka, in batches of the same size guardd uses
    # (the --stats "run" seconds: model load excluded)
    thr=""   # classify has no "off" value: leave the option out instead
    [ "$threshold" = -1.0 ] || thr="--threshold $threshold"
    : >"$tmp/precisions"
    for prec in $PRECS; do
        # shellcheck disable=SC2086
        "$C" classify --model "$MODEL" --threads "$THREADS" --batch "$BATCH" $thr --precision "$prec" \
            --stats <"$tmp/all.jsonl" >/dev/null 2>"$tmp/classify.stats"
        s=$(sed -n 's/.*, run \([0-9.]*\) s,.*/\1/p' "$tmp/classify.stats")
        [ -n "$s" ] || { cat "$tmp/classify.stats"; exit 1; }
        k=$(sed -n 's/.*precision [a-z0-9]* (\([^)]*\)).*/\1/p' "$tmp/classify.stats")
        echo "$prec $s $k" >>"$tmp/precisions"
        [ "$prec" = "$PREC0" ] && cls_s=$s
    done

    # (2) guardd through Kafka, a fresh cluster each time
    start_broker conversations,verdicts.allow,verdicts.deny,conversations.dlq 1 4
    bpid=$BROKER_PID
    cat >"$tmp/guardd.conf" <<EOF
kafka = { brokers = "$B"; group_id = "bench"; input_topics = [ "conversations" ];
          properties = ( ("session.timeout.ms", "6000") ); };
model = { path = "$MODEL"; threads = $THREADS; precision = "$PREC0"; };
policy = { threshold = $threshold; };
batch = { max_events = $BATCH; };
metrics = { listen = ""; };
log = { level = "info"; };
shutdown_timeout_ms = 60000;
EOF
    # The events wait in the topic before guardd starts, as a consumer lag
    # would: the clock runs from guardd's partitions_assigned (model loaded,
    # group joined) to the producer timestamp of the last verdict, so it
    # measures consuming, batching, inference and producing, not start-up.
    for f in "$tmp/ev"/b-k*.jsonl; do
        k=$(basename "$f" .jsonl)
        grep -F "\"ok-$k-" "$tmp/all.jsonl" | "$C" send --brokers "$B" --topic conversations \
            --key "$k" >/dev/null 2>&1
    done
    start_guardd guardd; gpid=$LAST_PID
    while :; do
        got=$(count_verdicts '"id": *"ok-b-')
        [ "$got" -ge "$N" ] && break
        kill -0 "$gpid" 2>/dev/null || { tail "$tmp/guardd.log"; exit 1; }
        sleep 2
    done
    t0=$(sed -n 's/^ts=\([^ ]*\) .*event=partitions_assigned.*/\1/p' "$tmp/guardd.log" | head -1)
    [ -n "$t0" ] || { echo "kafka_throughput: no partitions_assigned in the log"; tail "$tmp/guardd.log"; exit 1; }
    t0=$(date -d "$t0" +%s.%N)
    kill -TERM "$gpid"; wait "$gpid" || true
    kill -9 "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
    "$PY" - "$N" "$cls_s" "$t0" "$BATCH" "$tmp/verdicts.jsonl" "$label" "$tmp/precisions" <<'EOF'
import json, sys
n, cls_s, t0, batch = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
label = sys.argv[6]
precs = [l.split(None, 2) for l in open(sys.argv[7]) if l.strip()]
f32 = [float(s) for p, s, _ in precs if p == "f32"]
for p_, s_, k_ in precs:
    ratio = f", x{f32[0] / float(s_):.2f} f32's events/s" if f32 else ""
    print(f"kafka_throughput [{label}]: classify --precision {p_} ({k_.strip()}): "
          f"{n / float(s_):.2f} events/s{ratio}")
# the clock stops at the producer timestamp of the last verdict (when guardd
# produced it), not when this script happened to poll
recs = [json.loads(l) for l in open(sys.argv[5])]
recs = [r for r in recs if str(r["value"].get("id", "")).startswith("ok-b-")]
k_s = max(r["timestamp"] for r in recs) / 1000.0 - t0
unsafe = sum(r["value"].get("verdict") == "unsafe" for r in recs)
p = f"kafka_throughput [{label}]"
print(f"{p}: guardctl classify (batches of <= {batch}, no Kafka): {n} events in {cls_s:.2f} s = {n / cls_s:.2f} events/s")
print(f"{p}: guardd via Kafka (micro-batches of <= {batch}): "
      f"{n} events in {k_s:.2f} s = {n / k_s:.2f} events/s ({unsafe} unsafe)")
print(f"{p}: Kafka path / classify = {cls_s / k_s:.2f}")
EOF
}

# The random-weight model's own verdicts: never "safe", so every batch decodes
# to the token limit (the slowest path); then threshold 0.99, which (P(unsafe)
# is ~1e-5 on this model) makes every
# verdict "safe" with no decode step (the path most real traffic takes).
measure "model verdicts" -1.0
measure "all safe" 0.99
