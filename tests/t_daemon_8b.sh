#!/bin/sh
# t_daemon_8b - guardd with a Llama Guard 3 8B-format model: a tiny random
# model whose tokenizer_config.json carries the 8B's chat template
# (guardctl fixture --preset tiny-8b), against a mock Kafka cluster.
#
#   1. guardd detects the 8B format from the model directory (logged), and
#      classifies mixed events end to end: every input gets one output,
#      category_scores list S1..S14, and a verdict's prompt_tokens equal the
#      8B render's token count (guardctl prompt --format llama-guard-3-8b
#      --tokens) + the forced "\n\n" (the 1B render would differ).
#   2. A modified chat template is refused at start-up with an error naming
#      tokenizer_config.json; model.prompt_format = "llama-guard-3-8b"
#      overrides it.
#   3. policy.exclude = ["S14"] starts with the 8B; with the 1B tiny model
#      (auto-detected) it is refused at start-up, and explicitly configured
#      as llama-guard-3-1b it is refused by --check-config, as is an unknown
#      model.prompt_format.
set -eu
cd "$(dirname "$0")/.."
TOK=${GUARDD_TOKENIZER:-}
[ -f "$TOK" ] || { echo "skip: no tokenizer (\$GUARDD_TOKENIZER)"; exit 77; }
. tests/e2e/lib.sh
e2e_init t_daemon_8b
TINY1=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}

M8=$tmp/tiny8b
"$C" fixture --preset tiny-8b --seed 1 --out "$M8" --tokenizer "$TOK" >/dev/null || fail "tiny-8b fixture"

step "broker"
start_broker conversations,verdicts.allow,verdicts.deny,conversations.dlq 1 2

write_conf() { # file model-dir extra-model-settings policy-settings
    cat >"$1" <<EOF
kafka = {
  brokers = "$B";
  group_id = "e2e-8b";
  input_topics = [ "conversations" ];
  properties = ( ("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500") );
};
model = { path = "$2"; threads = 1; $3 };
policy = { category_scores = true; $4 };
batch = { max_events = 8; max_wait_ms = 10; queue_capacity = 32; };
limits = { max_event_bytes = 65536; max_message_bytes = 4096; };
log = { level = "info"; };
shutdown_timeout_ms = 10000;
EOF
}

# ---- 1. auto-detected 8B, end to end ---------------------------------------------
step "1: 8B format detected, events classified"
write_conf "$tmp/g.conf" "$M8" "" ""
"$G" --config "$tmp/g.conf" >"$logs/g1.log" 2>&1 &
G1=$!
pids="$pids $G1"
wait_log "$logs/g1.log" "event=ready" 30
grep -q "prompt_format=llama-guard-3-8b prompt_format_source=.*tokenizer_config.json: chat_template is llama-guard-3-8b's" \
    "$logs/g1.log" || fail "8B format not detected/logged: $(grep model_loaded "$logs/g1.log")"
"$PY" tests/e2e/gen_events.py "$tmp/a" a 2 30 >/dev/null
for f in "$tmp"/a/a-k*.jsonl; do
    "$C" send --brokers "$B" --topic conversations --key "$(basename "$f" .jsonl)" <"$f" >/dev/null \
        2>>"$logs/send.log" || fail "guardctl send"
done
printf '{"id": "ok-bread", "messages": [{"role": "user", "content": "How do I bake bread?"}]}\n' \
    | "$C" send --brokers "$B" --topic conversations --key bread >/dev/null 2>>"$logs/send.log" \
    || fail "guardctl send bread"
"$PY" tests/e2e/check_outputs.py --guardctl "$C" --brokers "$B" --expect-inputs 61 --timeout 90 --full \
    --category-scores --default-codes 14 || fail "1: outputs"
# the verdict of "How do I bake bread?" was computed on the 8B prompt
want=$(printf '{"messages": [{"role": "user", "content": "How do I bake bread?"}]}' \
    | "$C" prompt --format llama-guard-3-8b --tokens --tokenizer "$TOK" | tr -d '|' | wc -w)
[ "$want" -eq 206 ] || fail "8B render of (a) is $want tokens, reference 206"
got=$( ("$C" tail --brokers "$B" --topic verdicts.allow --from-beginning --timeout-ms 3000 2>/dev/null
        "$C" tail --brokers "$B" --topic verdicts.deny --from-beginning --timeout-ms 3000 2>/dev/null) | "$PY" -c '
import json, sys
for line in sys.stdin:
    v = json.loads(line)["value"]
    if v.get("id") == "ok-bread":
        print(v["timing"]["prompt_tokens"]); break')
[ "$got" = "$((want + 1))" ] || fail "ok-bread: prompt_tokens $got, want $((want + 1)) (8B render + \\n\\n)"
echo "1: ok-bread prompt_tokens $got = 8B render ($want) + 1"
kill -TERM "$G1"
rc=0; wait "$G1" || rc=$?
[ $rc -eq 0 ] || fail "guardd exited $rc after SIGTERM"

# ---- 2. a modified template is refused; prompt_format overrides ----------------------
step "2: modified template refused, override"
MX=$tmp/modified
mkdir "$MX"
cp "$M8"/config.json "$M8"/model.safetensors "$M8"/tokenizer.json "$MX"/
"$PY" - "$M8/tokenizer_config.json" "$MX/tokenizer_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = c["chat_template"].replace("S14: Code Interpreter Abuse.", "S14: Code Abuse.")
json.dump(c, open(sys.argv[2], "w"))
PY
write_conf "$tmp/x.conf" "$MX" "" ""
rc=0; timeout 60 "$G" --config "$tmp/x.conf" >"$logs/x.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "guardd started with an unknown chat template"
grep -q "$MX/tokenizer_config.json: chat_template is not a Llama Guard 3 template" "$logs/x.log" \
    || fail "unclear refusal: $(tail -n 3 "$logs/x.log")"
grep -q "model.prompt_format" "$logs/x.log" || fail "refusal does not say how to override"
write_conf "$tmp/o.conf" "$MX" 'prompt_format = "llama-guard-3-8b";' ""
"$G" --config "$tmp/o.conf" >"$logs/o.log" 2>&1 &
GO=$!
pids="$pids $GO"
wait_log "$logs/o.log" "event=ready" 30
grep -q "prompt_format=llama-guard-3-8b prompt_format_source=configured" "$logs/o.log" || fail "override not applied"
kill -TERM "$GO"
rc=0; wait "$GO" || rc=$?
[ $rc -eq 0 ] || fail "guardd (override) exited $rc"

# ---- 3. policy.exclude = S14 --------------------------------------------------------
step "3: excluding S14"
write_conf "$tmp/e8.conf" "$M8" "" 'exclude = [ "S14" ];'
"$G" --check-config "$tmp/e8.conf" >/dev/null || fail "exclude S14 refused by --check-config with auto"
write_conf "$tmp/e1.conf" "$M8" 'prompt_format = "llama-guard-3-1b";' 'exclude = [ "S14" ];'
rc=0; "$G" --check-config "$tmp/e1.conf" >/dev/null 2>"$logs/e1.err" || rc=$?
[ $rc -ne 0 ] && grep -q "S14" "$logs/e1.err" || fail "exclude S14 with llama-guard-3-1b accepted"
write_conf "$tmp/bad.conf" "$M8" 'prompt_format = "llama-guard-4";' ""
rc=0; "$G" --check-config "$tmp/bad.conf" >/dev/null 2>"$logs/bad.err" || rc=$?
[ $rc -ne 0 ] && grep -q 'bad.conf:[0-9]*.*unknown prompt format "llama-guard-4"' "$logs/bad.err" \
    || fail "unknown prompt_format not refused clearly: $(cat "$logs/bad.err")"
if [ -f "$TINY1/tokenizer_config.json" ]; then
    write_conf "$tmp/t1.conf" "$TINY1" "" 'exclude = [ "S14" ];'
    rc=0; timeout 60 "$G" --config "$tmp/t1.conf" >"$logs/t1.log" 2>&1 || rc=$?
    [ $rc -ne 0 ] || fail "guardd started a 1B model with exclude S14"
    grep -q 'S14.*is not in the llama-guard-3-1b default categories' "$logs/t1.log" \
        || fail "unclear refusal: $(tail -n 3 "$logs/t1.log")"
else
    echo "3: no 1B tiny model with tokenizer_config.json at $TINY1: start-up refusal not checked"
fi
step "PASS"
