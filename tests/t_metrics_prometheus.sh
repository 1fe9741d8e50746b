#!/bin/sh
# t_metrics_prometheus - guardd's /metrics as real Prometheus tooling sees it.
#
# 1. `check_metrics --serve` records a known set of values and serves them on an
#    ephemeral loopback port; `promtool check metrics` must accept a live scrape
#    (format and lint), and /healthz and /readyz must answer.
# 2. When guardd and the tiny fixture model exist: a mock Kafka cluster
#    (guardctl broker) and the real guardd; a known set of events is sent with
#    guardctl send (5 conversations, 1 malformed record), and guardd's live
#    scrape must also pass promtool.
# 3. A real Prometheus server (started here on 127.0.0.1 with a temporary config
#    and storage, scrape_interval 1s) scrapes both; its HTTP API must return the
#    recorded values (including label values that needed escaping) and, for
#    guardd, exactly one verdict per sent conversation and one DLQ record.
# Every background process is killed on exit; every wait is bounded.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PROMTOOL=$(command -v promtool || true)
PROMETHEUS=$(command -v prometheus || true)
[ -n "$PROMTOOL" ] && [ -n "$PROMETHEUS" ] || { echo "skip: promtool/prometheus not installed"; exit 77; }
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
SERVE="$BUILD/tests/check_metrics"
[ -x "$SERVE" ] || { echo "FAIL: $SERVE not built"; exit 1; }

tmp=$(mktemp -d /tmp/t_metrics_prom.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL: $*"; exit 1; }

# Waits up to $1 seconds for command "$2..." to succeed.
wait_for() {
    n=$(( $1 * 5 )); shift
    while [ "$n" -gt 0 ]; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2; n=$((n - 1))
    done
    return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- 1. the known-values source on an ephemeral port ------------------------
# Its stdin is a FIFO we hold open; it exits when we close it (or are killed).
mkfifo "$tmp/in"
"$SERVE" --serve <"$tmp/in" >"$tmp/serve.out" 2>"$tmp/serve.err" &
pids="$pids $!"
exec 3>"$tmp/in"
wait_for 10 grep -q '^port ' "$tmp/serve.out" || { cat "$tmp/serve.err"; fail "metrics source did not start"; }
port=$(sed -n 's/^port //p' "$tmp/serve.out")
echo "metrics source on 127.0.0.1:$port"
url="http://127.0.0.1:$port"

curl -fsS "$url/metrics" >"$tmp/scrape.txt" || fail "GET /metrics"
"$PROMTOOL" check metrics <"$tmp/scrape.txt" || fail "promtool check metrics rejected the scrape"
echo "promtool check metrics: ok ($(grep -c '^guardd_' "$tmp/scrape.txt") guardd_ samples)"
[ "$(curl -fsS "$url/healthz")" = ok ] || fail "/healthz"
curl -fsS "$url/readyz" >/dev/null || fail "/readyz not 200 with model loaded and group joined"

# --- 2. the real guardd, fed a known set of events --------------------------
MODEL=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}
gtarget=""
if [ -x "$BUILD/guardd" ] && [ -f "$MODEL/model.safetensors" ]; then
    "$BUILD/guardctl" broker --brokers 1 --partitions 2 \
        --topics conversations,verdicts.allow,verdicts.deny,conversations.dlq \
        --bootstrap-file "$tmp/bootstrap" >/dev/null 2>"$tmp/broker.log" &
    pids="$pids $!"
    wait_for 20 test -s "$tmp/bootstrap" || fail "guardctl broker did not start: $(cat "$tmp/broker.log")"
    bs=$(sed -n 's/^bootstrap=//p' "$tmp/bootstrap")
    cat >"$tmp/guardd.conf" <<EOF
kafka = {
  brokers = "$bs";
  group_id = "prom-test";
  input_topics = [ "conversations" ];
  properties = ( ("session.timeout.ms", "6000") );
};
model = { path = "$PWD/$MODEL"; threads = 1; };
metrics = { listen = "127.0.0.1:0"; };
EOF
    "$BUILD/guardd" --config "$tmp/guardd.conf" >"$tmp/guardd.log" 2>&1 &
    pids="$pids $!"
    # port 0: guardd logs the port it was given
    gport_of() { sed -n 's/.*event=metrics_listening port=\([0-9]*\).*/\1/p' "$tmp/guardd.log" 2>/dev/null | head -n 1; }
    has_gport() { [ -n "$(gport_of)" ]; }
    wait_for 20 has_gport || { tail -n 20 "$tmp/guardd.log"; fail "guardd did not log its metrics port"; }
    gport=$(gport_of)
    wait_for 60 curl -fsS "http://127.0.0.1:$gport/readyz" \
        || { tail -n 20 "$tmp/guardd.log"; fail "guardd never became ready"; }
    # 5 conversations (prompts, a response, custom categories) + 1 malformed record
    cat >"$tmp/events.jsonl" <<'EOF'
{"id": "p1", "messages": [{"role": "user", "content": "How do I bake bread?"}]}
{"id": "p2", "messages": [{"role": "user", "content": "Tell me a joke about cats."}]}
{"id": "r1", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]}
{"id": "c1", "categories": {"C1": "Spoilers."}, "messages": [{"role": "user", "content": "Who dies at the end?"}]}
{"id": "p3", "messages": [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}]}
EOF
    # explicit partitions: both must hold a record (and so a committed offset)
    # for their lag to be known; unkeyed records could all land on one
    "$BUILD/guardctl" send --brokers "$bs" --topic conversations --partition 0 <"$tmp/events.jsonl" \
        >/dev/null 2>"$tmp/send.log" || fail "guardctl send: $(cat "$tmp/send.log")"
    printf '\301 not msgpack' | "$BUILD/guardctl" send --brokers "$bs" --topic conversations --raw --partition 1 \
        >/dev/null 2>>"$tmp/send.log" || fail "guardctl send --raw: $(cat "$tmp/send.log")"
    # bounded wait until guardd has accounted for all six records
    all_done() { curl -fsS "http://127.0.0.1:$gport/metrics" | awk '
        /^guardd_verdicts_total/ { v += $2 } /^guardd_dlq_records_total/ { d += $2 }
        END { exit !(v == 5 && d == 1) }'; }
    wait_for 60 all_done || { curl -fsS "http://127.0.0.1:$gport/metrics" | grep -E '^guardd_(verdicts|dlq|events)'
        tail -n 20 "$tmp/guardd.log"; fail "guardd did not produce 5 verdicts + 1 DLQ record"; }
    # consumer lag comes from librdkafka's statistics (every 10 s in guardd): once
    # everything is committed it must be reported, and 0, for both partitions.
    lag_zero() { curl -fsS "http://127.0.0.1:$gport/metrics" | awk '
        /^guardd_consumer_lag\{topic="conversations"/ { n++; if ($2 != 0) bad++ }
        END { exit !(n == 2 && bad == 0) }'; }
    wait_for 45 lag_zero || { curl -fsS "http://127.0.0.1:$gport/metrics" | grep consumer_lag
        fail "guardd_consumer_lag not reported as 0 for conversations/0,1"; }
    curl -fsS "http://127.0.0.1:$gport/metrics" >"$tmp/guardd-scrape.txt" || fail "GET guardd /metrics"
    "$PROMTOOL" check metrics <"$tmp/guardd-scrape.txt" || fail "promtool check metrics rejected guardd's scrape"
    echo "guardd: 5 verdicts + 1 DLQ record counted; promtool check metrics: ok"
    gtarget="
  - job_name: guardd
    static_configs:
      - targets: ['127.0.0.1:$gport']"
else
    echo "note: guardd or the tiny model is missing: only the known-values source is scraped"
fi

# --- 3. a real Prometheus scrapes both --------------------------------------
pport=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: known
    static_configs:
      - targets: ['127.0.0.1:$port']$gtarget
EOF
"$PROMTOOL" check config "$tmp/prometheus.yml" >/dev/null || fail "promtool check config"
"$PROMETHEUS" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$tmp/prom.log" 2>&1 &
pids="$pids $!"
api="http://127.0.0.1:$pport/api/v1/query"

# query PROMQL -> prints "labels-json value" per series (sorted), via python
query() {
    curl -fsS --get --data-urlencode "query=$1" "$api" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "success", d
for r in sorted(d["data"]["result"], key=lambda r: json.dumps(r["metric"], sort_keys=True)):
    m = {k: v for k, v in r["metric"].items() if k not in ("instance", "job")}
    print(json.dumps(m, sort_keys=True), r["value"][1])'
}
has_series() { query "$1" | grep -q .; }
check() { # PROMQL EXPECTED-OUTPUT
    got=$(query "$1")
    [ "$got" = "$2" ] || fail "query $1: expected
$2
got
$got"
    echo "ok: $1"
}

wait_for 30 has_series 'guardd_verdicts_total{job="known"}' \
    || { tail -n 20 "$tmp/prom.log"; fail "Prometheus never stored guardd_verdicts_total"; }
check 'up{job="known"}' '{"__name__": "up"} 1'
check 'guardd_verdicts_total{job="known"}' '{"__name__": "guardd_verdicts_total", "verdict": "safe"} 7
{"__name__": "guardd_verdicts_total", "verdict": "unsafe"} 3'
check 'sum(guardd_verdicts_total{job="known"})' '{} 10'
check 'guardd_categories_flagged_total{job="known"}' '{"__name__": "guardd_categories_flagged_total", "code": "S1"} 2
{"__name__": "guardd_categories_flagged_total", "code": "a\"b\\c"} 1'
check 'guardd_events_consumed_total{job="known"}' '{"__name__": "guardd_events_consumed_total", "topic": "conv"} 5'
check 'guardd_dlq_records_total{job="known"}' '{"__name__": "guardd_dlq_records_total", "reason": "bad_msgpack"} 1'
check 'guardd_model_info{job="known"}' '{"__name__": "guardd_model_info", "name": "tiny-fixture", "revision": "rev\"1"} 1'
check 'guardd_batch_size_count{job="known"}' '{"__name__": "guardd_batch_size_count"} 2'
check 'guardd_batch_size_bucket{job="known",le="4"}' '{"__name__": "guardd_batch_size_bucket", "le": "4"} 1'
check 'guardd_batch_size_bucket{job="known",le="+Inf"}' '{"__name__": "guardd_batch_size_bucket", "le": "+Inf"} 2'
check 'guardd_consumer_lag{job="known",partition="0"}' '{"__name__": "guardd_consumer_lag", "partition": "0", "topic": "conversations"} 5'
check 'guardd_ready{job="known"}' '{"__name__": "guardd_ready"} 1'
has_series 'process_resident_memory_bytes{job="known"} > 0' || fail "process_resident_memory_bytes"
has_series 'process_start_time_seconds{job="known"} > 1.5e9' || fail "process_start_time_seconds"

if [ -n "$gtarget" ]; then
    wait_for 30 has_series 'guardd_verdicts_total{job="guardd"}' || fail "Prometheus never scraped guardd"
    check 'up{job="guardd"}' '{"__name__": "up"} 1'
    check 'sum(guardd_verdicts_total{job="guardd"})' '{} 5'
    check 'guardd_dlq_records_total{job="guardd"}' '{"__name__": "guardd_dlq_records_total", "reason": "bad_msgpack"} 1'
    check 'sum(guardd_events_consumed_total{job="guardd",topic="conversations"})' '{} 6'
    check 'guardd_ready{job="guardd"}' '{"__name__": "guardd_ready"} 1'
    check 'count(guardd_model_info{job="guardd"})' '{} 1'
    has_series 'guardd_batch_size_count{job="guardd"} >= 1' || fail "no batches recorded by guardd"
    has_series 'sum(guardd_tokens_total{job="guardd",kind="prefill"}) > 0' || fail "no prefill tokens counted"
fi
exec 3>&-
echo "PASS"
