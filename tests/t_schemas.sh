#!/bin/sh
# t_schemas - the wire-format schemas (schemas/*.schema.json) are the contract
# and guardd's encoder provably follows it: check_event's "samples" case
# writes verdict, DLQ and event records made by daemon/event_encode.c (and
# their record_to_json renderings) into a temporary directory, then
# tests/reference/validate_schema.py decodes them with python3-msgpack and
# validates them, plus schemas/examples, against the schemas (python3-jsonschema).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3   # Debian's, where python3-msgpack lives
if ! "$py" -c 'import msgpack, jsonschema' 2>/dev/null; then
    echo "python3-msgpack and python3-jsonschema are needed (tools/deps.sh installs them)"
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi
bin=$BUILD/tests/check_event
if [ ! -x "$bin" ]; then
    echo "$bin is not built (make tests-build)"
    exit 1
fi
# Metric names the schemas mention must be ones guardd exports (registered by
# name in daemon/metrics.c), so an operator can find them.
for m in $(grep -oh 'guardd_[a-z0-9_]*' schemas/*.json | sort -u); do
    if ! grep -q "\"$m\"" daemon/metrics.c; then
        echo "schemas name the metric $m, which daemon/metrics.c does not export"
        exit 1
    fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! GUARDD_SAMPLES_DIR=$tmp CK_RUN_CASE=samples "$bin" >"$tmp/check.log" 2>&1; then
    cat "$tmp/check.log"
    exit 1
fi
"$py" tests/reference/validate_schema.py schemas "$tmp"
