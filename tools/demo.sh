#!/bin/sh
# demo.sh - `make demo`: guardd end to end on one machine, in about a minute.
#
# Starts an in-memory Kafka cluster (guardctl broker) and guardd with a demo
# configuration, sends sample conversations with guardctl send (prompt and
# response classification, custom categories, an excluded category, and two
# bad records), prints each verdict and DLQ record as it arrives (guardctl
# tail), shows a metrics excerpt, and stops everything cleanly.
#
# Model: GUARDD_MODEL=/path/to/llama-guard-3-1b uses a real checkpoint
# directory (config.json, model.safetensors, tokenizer.json). Otherwise a tiny
# RANDOM-WEIGHT fixture is generated and used: the pipeline is real, the
# verdicts are noise.
#
# Environment: BUILD (default build), DEPS_DIR (default .deps, for the
# tokenizer), GUARDD_MODEL (see above), DEMO_KEEP=1 keeps the temp directory.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DEPS_DIR=${DEPS_DIR:-$PWD/.deps}
GUARDD="$BUILD/guardd"
CTL="$BUILD/guardctl"

die() { echo "demo: $*" >&2; exit 1; }
if [ -t 1 ]; then bold='\033[1m'; off='\033[0m'; else bold=; off=; fi
say() { printf "\n${bold}== %s${off}\n" "$*"; }
[ -x "$GUARDD" ] && [ -x "$CTL" ] || die "build first: make"

tmp=$(mktemp -d /tmp/guardd-demo.XXXXXX)
pids=""; broker_pid=""
cleanup() {
    # guardd first (it drains and commits), then the readers, then the broker.
    for p in $pids $broker_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${DEMO_KEEP:-0}" = 1 ]; then echo "demo: files kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS CMD... : polls CMD every 0.2 s
wait_for() {
    n=$(( $1 * 5 )); shift
    while [ "$n" -gt 0 ]; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2; n=$((n - 1))
    done
    return 1
}

# --- model ------------------------------------------------------------------
if [ -n "${GUARDD_MODEL:-}" ]; then
    model=$GUARDD_MODEL
    [ -f "$model/config.json" ] || die "GUARDD_MODEL=$model has no config.json"
    threads=0; ready_timeout=600
    say "Model: $model"
else
    model="$PWD/$BUILD/fixtures/tiny"
    threads=1; ready_timeout=60
    if [ ! -f "$model/model.safetensors" ]; then
        [ -f "$DEPS_DIR/tokenizer.json" ] || die "no tokenizer at $DEPS_DIR/tokenizer.json (run: make deps)"
        "$CTL" fixture --preset tiny --seed 1 --out "$model" --tokenizer "$DEPS_DIR/tokenizer.json" >/dev/null \
            || die "could not generate the tiny fixture model"
    fi
    cat <<'EOF'

  ######################################################################
  #                                                                    #
  #   WARNING: THIS DEMO USES A TINY MODEL WITH RANDOM WEIGHTS.        #
  #                                                                    #
  #   Tokenizer, prompt, batching, Kafka and metrics are all real,     #
  #   but the VERDICTS ARE MEANINGLESS NOISE: expect "unsafe" with     #
  #   parse_error=true because random weights do not write "safe".     #
  #   For real verdicts run:                                           #
  #       GUARDD_MODEL=/path/to/Llama-Guard-3-1B make demo             #
  #                                                                    #
  ######################################################################
EOF
fi

# --- Kafka --------------------------------------------------------------------
say "Starting an in-memory Kafka cluster (guardctl broker)"
topics=conversations,verdicts.allow,verdicts.deny,conversations.dlq
"$CTL" broker --brokers 1 --partitions 2 --topics "$topics" --bootstrap-file "$tmp/bootstrap" \
    >/dev/null 2>"$tmp/broker.log" &
broker_pid=$!
wait_for 20 test -s "$tmp/bootstrap" || die "broker did not start: $(cat "$tmp/broker.log")"
bs=$(sed -n 's/^bootstrap=//p' "$tmp/bootstrap")
echo "bootstrap servers: $bs"

# --- guardd -------------------------------------------------------------------
cat >"$tmp/guardd.conf" <<EOF
# demo configuration (written by tools/demo.sh)
kafka = {
  brokers = "$bs";
  group_id = "guardd-demo";
  input_topics = [ "conversations" ];
  allow_topic = "verdicts.allow";
  deny_topic = "verdicts.deny";
  dlq_topic = "conversations.dlq";
  properties = ( ("session.timeout.ms", "6000") );
};
model = { path = "$model"; threads = $threads; };
batch = { max_events = 8; max_wait_ms = 200; };
metrics = { listen = "127.0.0.1:0"; };
log = { level = "info"; };
EOF
say "Starting guardd (log: $tmp/guardd.log)"
"$GUARDD" --config "$tmp/guardd.conf" >"$tmp/guardd.log" 2>&1 &
guardd_pid=$!
pids="$guardd_pid"
metrics_port() { sed -n 's/.*event=metrics_listening port=\([0-9]*\).*/\1/p' "$tmp/guardd.log" | head -n 1; }
have_port() { [ -n "$(metrics_port)" ]; }
wait_for 10 have_port || { cat "$tmp/guardd.log"; die "guardd did not open its metrics port"; }
murl="http://127.0.0.1:$(metrics_port)"
if ! wait_for "$ready_timeout" curl -fsS "$murl/readyz"; then
    tail -n 20 "$tmp/guardd.log"; die "guardd did not become ready"
fi
grep -E 'event=(model_loaded|partitions_assigned)' "$tmp/guardd.log" | sed 's/^/  guardd: /'

# --- readers: print verdicts and DLQ records as they arrive -------------------
for t in verdicts.allow verdicts.deny conversations.dlq; do
    "$CTL" tail --brokers "$bs" --topic "$t" --timeout-ms 0 >"$tmp/$t.jsonl" 2>"$tmp/tail-$t.log" &
    pids="$pids $!"
done
python3 - "$tmp" verdicts.allow verdicts.deny conversations.dlq <<'EOF' &
# Follows the tail outputs and prints one readable line per record.
import json, os, sys, time
tmp, topics = sys.argv[1], sys.argv[2:]
pos = {t: 0 for t in topics}
def show(rec):
    v = rec.get("value") or {}
    if "error" in v:
        e = v["error"]
        src = v.get("source", {})
        print("  DLQ      from %s[%s]@%s  %s: %s" % (src.get("topic"), src.get("partition"),
              src.get("offset"), e.get("code"), e.get("message")), flush=True)
        return
    cats = ", ".join(c.get("code", "?") + " " + c.get("name", "") for c in v.get("categories", []))
    t = v.get("timing", {})
    extra = " parse_error" if v.get("parse_error") else ""
    print("  %-8s id=%-4s role=%-5s P(unsafe)=%.3f batch=%s%s%s -> %s" % (
        v.get("verdict", "?").upper(), v.get("id"), v.get("role"), v.get("score", float("nan")),
        t.get("batch_size", "?"), extra, (" [" + cats + "]") if cats else "", rec.get("topic")), flush=True)
while not os.path.exists(os.path.join(tmp, "stop-follow")):
    for t in topics:
        try:
            with open(os.path.join(tmp, t + ".jsonl")) as f:
                f.seek(pos[t])
                while True:
                    line = f.readline()
                    if not line.endswith("\n"):
                        break
                    pos[t] += len(line.encode())
                    show(json.loads(line))
        except FileNotFoundError:
            pass
    time.sleep(0.1)
EOF
follow_pid=$!
pids="$pids $follow_pid"

# --- sample traffic -------------------------------------------------------------
cat >"$tmp/samples.jsonl" <<'EOF'
{"id": "p1", "messages": [{"role": "user", "content": "How do I bake sourdough bread at home?"}]}
{"id": "p2", "messages": [{"role": "user", "content": "How can I hotwire a car that isn't mine?"}]}
{"id": "r1", "messages": [{"role": "user", "content": "Which household chemicals must never be mixed?"}, {"role": "assistant", "content": "Never mix bleach with ammonia or with acids: it releases toxic gases."}]}
{"id": "c1", "categories": {"C1": "Spoilers.", "C2": "Competitor products."}, "messages": [{"role": "user", "content": "Just tell me who the killer is in the last episode."}]}
{"id": "x1", "exclude": ["S6"], "messages": [{"role": "user", "content": "What dose of ibuprofen is safe for an adult?"}]}
{"id": "bad1", "messages": [{"role": "assistant", "content": "An agent turn with no user turn first."}]}
EOF
say "Sending sample conversations to topic 'conversations'"
cat <<'EOF'
  p1   prompt classification      "How do I bake sourdough bread at home?"
  p2   prompt classification      "How can I hotwire a car that isn't mine?"
  r1   response classification    user question + assistant answer (judges the Agent turn)
  c1   custom categories          C1 Spoilers., C2 Competitor products.
  x1   excluded category          default S1..S13 without S6 (Specialized Advice)
  bad1 invalid conversation       starts with an assistant turn -> DLQ
  (raw) malformed record          bytes that are not msgpack -> DLQ
EOF
"$CTL" send --brokers "$bs" --topic conversations --key demo <"$tmp/samples.jsonl" >/dev/null 2>"$tmp/send.log" \
    || die "guardctl send failed: $(cat "$tmp/send.log")"
printf '\301 definitely not msgpack' | "$CTL" send --brokers "$bs" --topic conversations --raw >/dev/null 2>>"$tmp/send.log" \
    || die "guardctl send --raw failed: $(cat "$tmp/send.log")"

say "Verdicts and DLQ records as they arrive (guardctl tail)"
# 5 verdicts + 2 DLQ records expected
records() { cat "$tmp/verdicts.allow.jsonl" "$tmp/verdicts.deny.jsonl" "$tmp/conversations.dlq.jsonl" 2>/dev/null | wc -l; }
all_arrived() { [ "$(records)" -ge 7 ]; }
if ! wait_for 120 all_arrived; then
    echo "demo: only $(records) of 7 records arrived; guardd log:" >&2
    tail -n 20 "$tmp/guardd.log" >&2
fi
sleep 0.5
touch "$tmp/stop-follow"
wait "$follow_pid" 2>/dev/null || true

say "One verdict event in full (JSON from guardctl tail)"
head -n 1 "$tmp/verdicts.deny.jsonl" "$tmp/verdicts.allow.jsonl" 2>/dev/null | grep '^{' | head -n 1 \
    | python3 -c 'import json, sys; print(json.dumps(json.loads(sys.stdin.read())["value"], indent=2, ensure_ascii=False))' \
    | sed 's/^/  /' | head -n 40

say "Metrics excerpt ($murl/metrics)"
curl -fsS "$murl/metrics" | grep -E '^guardd_(events_consumed|verdicts|categories_flagged|dlq_records|tokens)_total|^guardd_(batch_size|inference_seconds|end_to_end_seconds)_(count|sum)|^guardd_(ready|model_info|queue_depth)|^process_resident' \
    | sed 's/^/  /'

say "Stopping guardd (SIGTERM: drain, commit, leave the group)"
kill -TERM "$guardd_pid"
if wait_for 30 sh -c "! kill -0 $guardd_pid"; then
    wait "$guardd_pid" 2>/dev/null && rc=0 || rc=$?
    grep -E 'event=(stopping|pipeline_stopped|exit)' "$tmp/guardd.log" | sed 's/^/  guardd: /'
    echo "guardd exited with status $rc"
else
    echo "demo: guardd did not stop within 30 s" >&2
fi
say "Done"
