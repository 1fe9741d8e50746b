#!/bin/sh
# run.sh - `make run`: guardd in the foreground on its embedded Kafka cluster.
#
# Model, first found: $GUARDD_MODEL, /var/lib/guardd/model (where the README's
# download command puts Llama Guard 3 1B), else a tiny RANDOM-WEIGHT fixture
# generated with the genuine tokenizer (the plumbing is real, the verdicts are
# noise, and this script says so loudly, with how to get the real weights).
# GUARDD_CONFIG=FILE runs with that configuration file instead of the one
# written here. Prints how to send events and read verdicts, then runs guardd
# until Ctrl-C (SIGINT: guardd drains, commits and exits).
#
# Environment: BUILD (default build), DEPS_DIR (default .deps), GUARDD_MODEL,
# GUARDD_CONFIG, GUARDD_METRICS (default 127.0.0.1:9464), GUARDD_PRECISION (model.precision,
# default auto).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DEPS_DIR=${DEPS_DIR:-$PWD/.deps}
GUARDD=$BUILD/guardd
CTL=$BUILD/guardctl
die() { echo "run: $*" >&2; exit 1; }
[ -x "$GUARDD" ] && [ -x "$CTL" ] || die "build first: make"

real_help() {
    cat <<'EOF'
  To use the real Llama Guard 3 1B (gated by Meta's license: accept the
  Llama 3.2 Community License on huggingface.co/meta-llama/Llama-Guard-3-1B):
      huggingface-cli login
      huggingface-cli download meta-llama/Llama-Guard-3-1B \
          config.json model.safetensors tokenizer.json --local-dir /var/lib/guardd/model
  then run `make run` again (or GUARDD_MODEL=/that/dir make run).
EOF
}

# --- model ---------------------------------------------------------------------
threads=0
if [ -n "${GUARDD_MODEL:-}" ]; then
    model=$GUARDD_MODEL
    [ -f "$model/config.json" ] || die "GUARDD_MODEL=$model has no config.json"
elif [ -f /var/lib/guardd/model/config.json ]; then
    model=/var/lib/guardd/model
else
    model=$PWD/$BUILD/fixtures/run-tiny
    threads=1
    if [ ! -f "$model/model.safetensors" ]; then
        [ -f "$DEPS_DIR/tokenizer.json" ] || die "no tokenizer at $DEPS_DIR/tokenizer.json (run: make deps)"
        "$CTL" fixture --preset tiny --seed 1 --out "$model" --tokenizer "$DEPS_DIR/tokenizer.json" \
            >/dev/null || die "could not generate the fixture model"
    fi
    cat <<'EOF'

  ##########################################################################
  #  NO LLAMA GUARD WEIGHTS FOUND: running a tiny RANDOM-WEIGHT model.     #
  #  Kafka, decoding, prompt, tokenizer, batching and metrics are real;    #
  #  the VERDICTS ARE MEANINGLESS.                                         #
  ##########################################################################
EOF
    real_help
fi
echo "run: model $model"

# --- configuration ------------------------------------------------------------------
conf=${GUARDD_CONFIG:-}
if [ -z "$conf" ]; then
    mkdir -p "$BUILD/run"
    conf=$BUILD/run/guardd.conf
    cat >"$conf" <<EOF
# written by tools/run.sh (make run); etc/guardd.conf documents every setting
kafka = { brokers = "embedded"; group_id = "guardd"; input_topics = [ "conversations" ]; };
model = { path = "$model"; threads = $threads; precision = "${GUARDD_PRECISION:-auto}"; };
metrics = { listen = "${GUARDD_METRICS:-127.0.0.1:9464}"; };
log = { level = "info"; };
EOF
fi
"$GUARDD" --check-config "$conf" || die "configuration $conf rejected"

# --- guardd --------------------------------------------------------------------------
log=$BUILD/run/guardd.log
mkdir -p "$BUILD/run"
: >"$log"
# prints the how-to once guardd has logged the embedded cluster's address
hint() {
    n=0
    while ! grep -q "event=embedded_broker\|event=exit" "$log"; do
        n=$((n + 1)); [ $n -lt 6000 ] || return 0; sleep 0.1
    done
    bs=$(sed -n 's/.*event=embedded_broker bootstrap=\([^ ]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$bs" ] || return 0
    cat >&2 <<EOF

  guardd is starting on an embedded Kafka cluster at $bs
  (it lives inside guardd: it stops, and forgets everything, when guardd stops).
  Send a conversation:   $CTL send --brokers $bs --topic conversations "How do I bake bread?"
  Read the verdicts:     $CTL tail --brokers $bs --topic verdicts.allow --timeout-ms 0
                         $CTL tail --brokers $bs --topic verdicts.deny --timeout-ms 0
  DLQ:                   $CTL tail --brokers $bs --topic conversations.dlq --timeout-ms 0
  Metrics:               curl -s http://${GUARDD_METRICS:-127.0.0.1:9464}/metrics
  Stop:                  Ctrl-C (guardd drains, commits and exits)

EOF
}
hint &
hint_pid=$!
trap 'kill $hint_pid 2>/dev/null || true' EXIT
# foreground, so Ctrl-C reaches guardd; tee -i keeps its shutdown lines
"$GUARDD" --config "$conf" 2>&1 | tee -i "$log"
