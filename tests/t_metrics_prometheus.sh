#!/bin/sh
# t_metrics_prometheus - guardd's /metrics as real Prometheus tooling sees it.
#
# 1. `check_metrics --serve` records a known set of values and serves them on an
#    ephemeral loopback port; `promtool check metrics` must accept a live scrape
#    (format and lint), and /healthz and /readyz must answer.
# 2. A real Prometheus server (started here on 127.0.0.1 with a temporary config
#    and storage, scrape_interval 1s) scrapes it; its HTTP API must return the
#    recorded values, including label values that needed escaping.
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

# --- the metrics source: known values on an ephemeral port ----------------
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

# --- a real Prometheus scrapes it -----------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pport=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: guardd
    static_configs:
      - targets: ['127.0.0.1:$port']
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

wait_for 30 has_series 'guardd_verdicts_total' || { tail -n 20 "$tmp/prom.log"; fail "Prometheus never stored guardd_verdicts_total"; }
[ "$(query 'up{job="guardd"}')" = '{"__name__": "up"} 1' ] || fail "up != 1: $(query up)"

check() { # PROMQL EXPECTED-OUTPUT
    got=$(query "$1")
    [ "$got" = "$2" ] || fail "query $1: expected
$2
got
$got"
    echo "ok: $1"
}
check 'guardd_verdicts_total' '{"__name__": "guardd_verdicts_total", "verdict": "safe"} 7
{"__name__": "guardd_verdicts_total", "verdict": "unsafe"} 3'
check 'sum(guardd_verdicts_total)' '{} 10'
check 'guardd_categories_flagged_total' '{"__name__": "guardd_categories_flagged_total", "code": "S1"} 2
{"__name__": "guardd_categories_flagged_total", "code": "a\"b\\c"} 1'
check 'guardd_events_consumed_total' '{"__name__": "guardd_events_consumed_total", "topic": "conv"} 5'
check 'guardd_dlq_records_total' '{"__name__": "guardd_dlq_records_total", "reason": "bad_msgpack"} 1'
check 'guardd_model_info' '{"__name__": "guardd_model_info", "name": "tiny-fixture", "revision": "rev\"1"} 1'
check 'guardd_batch_size_count' '{"__name__": "guardd_batch_size_count"} 2'
check 'guardd_batch_size_bucket{le="4"}' '{"__name__": "guardd_batch_size_bucket", "le": "4"} 1'
check 'guardd_batch_size_bucket{le="+Inf"}' '{"__name__": "guardd_batch_size_bucket", "le": "+Inf"} 2'
check 'guardd_consumer_lag{partition="0"}' '{"__name__": "guardd_consumer_lag", "partition": "0", "topic": "conversations"} 5'
check 'guardd_ready' '{"__name__": "guardd_ready"} 1'
has_series 'process_resident_memory_bytes > 0' || fail "process_resident_memory_bytes"
has_series 'process_start_time_seconds > 1.5e9' || fail "process_start_time_seconds"
exec 3>&-
echo "PASS"
