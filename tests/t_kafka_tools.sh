#!/bin/sh
# guardctl's Kafka toolbox end to end, and the independent kafkajs client:
#  1. `guardctl broker` prints exactly one bootstrap line (same as --bootstrap-file)
#     and exits 0 on SIGTERM;
#  2. `guardctl send --dump` output decoded by python-msgpack (an independent
#     decoder): JSON types map faithfully, ids are generated, --count copies;
#  3. send (TEXT with key and headers, JSON lines, --raw bytes) -> `guardctl tail`
#     shows each record with key, headers, decoded value, and raw bytes as-is;
#     tail exits 1 when fewer than --count records arrive; bad input is refused;
#  4. kafkajs producer -> guardctl tail, and guardctl send -> kafkajs consumer;
#  5. tests/js/roundtrip.js against a fake guardd (tail | python | send --raw):
#     ok when verdicts come back, not ok when one is misrouted.
# Background processes are killed on exit. Needs python3-msgpack, node and the
# npm packages from tools/deps.d/20-npm.sh (skips without them).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DEPS_DIR=${DEPS_DIR:-$PWD/.deps}
G=$BUILD/guardctl
[ -x "$G" ] || { echo "no $G"; exit 77; }
# Debian's python3 carries python3-msgpack; a pyenv/venv python3 first on PATH may not.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
$PY -c 'import msgpack' 2>/dev/null || { echo "python3-msgpack not installed"; exit 77; }
export NODE_PATH=$DEPS_DIR/node_modules
have_js=1
node -e 'require("kafkajs"); require("@msgpack/msgpack")' 2>/dev/null || have_js=0

tmp=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "--- $*"; }
# Quiet librdkafka in the tools: the mock provokes harmless connection noise.
Q="-X log_level=3"

step "broker"
"$G" broker --brokers 3 --topics in,allow,deny,dlq,js.in,js.out,rt.in --partitions 3 \
    --bootstrap-file "$tmp/bs" >"$tmp/broker.out" 2>"$tmp/broker.err" &
broker=$!; pids="$broker"
for _ in $(seq 100); do [ -s "$tmp/bs" ] && break; sleep 0.1; done
[ -s "$tmp/bs" ] || fail "no bootstrap file"
sleep 0.2
[ "$(wc -l <"$tmp/broker.out")" -eq 1 ] || fail "broker stdout is not one line"
cmp -s "$tmp/bs" "$tmp/broker.out" || fail "stdout and bootstrap file differ"
grep -Eq '^bootstrap=127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+){2}$' "$tmp/bs" || fail "bad line: $(cat "$tmp/bs")"
B=$(sed 's/^bootstrap=//' "$tmp/bs")

step "send --dump, decoded by python-msgpack"
cat >"$tmp/conv.jsonl" <<'EOF'
{"id":"c-1","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"hello"}]}],"categories":{"S1":"Violent Crimes.","X9":"Custom."},"exclude":["S2"],"metadata":{"int":-7,"big":9007199254740993,"real":1.5,"t":true,"f":false,"z":null,"nested":{"a":[1,"two",3.25]}},"role":"agent"}

[{"role":"user","content":"bare array"}]
EOF
"$G" send --dump --count 2 <"$tmp/conv.jsonl" >"$tmp/dump.bin"
$PY - "$tmp/dump.bin" <<'EOF'
import sys, msgpack, re
recs = list(msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False))
assert len(recs) == 4, len(recs)
a, b, c, d = recs
assert a['id'] == 'c-1-1' and b['id'] == 'c-1-2', (a['id'], b['id'])
assert list(a.keys()) == ['id', 'messages', 'categories', 'exclude', 'metadata', 'role'], list(a.keys())
assert a['messages'][1] == {'role': 'assistant', 'content': [{'type': 'text', 'text': 'hello'}]}
assert a['categories'] == {'S1': 'Violent Crimes.', 'X9': 'Custom.'} and a['exclude'] == ['S2']
m = a['metadata']
assert m['int'] == -7 and m['big'] == 9007199254740993 and m['real'] == 1.5
assert m['t'] is True and m['f'] is False and m['z'] is None
assert m['nested'] == {'a': [1, 'two', 3.25]} and isinstance(m['nested']['a'][2], float)
assert a['role'] == 'agent'
uuid = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
assert c['messages'] == [{'role': 'user', 'content': 'bare array'}]
assert uuid.match(c['id']) and uuid.match(d['id']) and c['id'] != d['id'], (c['id'], d['id'])
print('dump ok')
EOF

step "send -> tail (key, headers, JSON lines, raw bytes)"
id1=$("$G" send $Q --brokers "$B" --topic in --key k1 --header trace-id=t-1 --header empty= \
      --partition 1 "hello there") || fail "send TEXT"
"$G" send $Q --brokers "$B" --topic in --partition 1 <"$tmp/conv.jsonl" >"$tmp/ids" || fail "send lines"
[ "$(wc -l <"$tmp/ids")" -eq 2 ] || fail "expected 2 ids, got $(cat "$tmp/ids")"
printf 'not msgpack \301\000\377 end' >"$tmp/raw.bin"
"$G" send $Q --brokers "$B" --topic in --partition 1 --key rawkey --raw <"$tmp/raw.bin" || fail "send --raw"
"$G" tail $Q --brokers "$B" --topic in --count 4 --timeout-ms 15000 >"$tmp/tail.jsonl" || fail "tail"
$PY - "$tmp/tail.jsonl" "$id1" "$tmp/raw.bin" <<'EOF'
import sys, json, base64
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 4, lines
lines.sort(key=lambda r: r['offset'])   # all on partition 1, in send order
t, c, bare, raw = lines
for r in lines:
    assert r['topic'] == 'in' and r['partition'] == 1 and isinstance(r['timestamp'], int)
assert [r['offset'] for r in lines] == [0, 1, 2, 3]
assert t['key'] == 'k1' and t['headers'] == {'trace-id': 't-1', 'empty': ''}, t
assert t['value'] == {'messages': [{'role': 'user', 'content': 'hello there'}], 'id': sys.argv[2]}, t
assert c['key'] is None and c['headers'] == {} and c['value']['id'] == 'c-1'
assert c['value']['metadata']['nested'] == {'a': [1, 'two', 3.25]}
assert bare['value']['messages'][0]['content'] == 'bare array'
assert raw['key'] == 'rawkey' and raw['value'] is None
assert base64.b64decode(raw['raw_base64']) == open(sys.argv[3], 'rb').read(), raw
print('tail ok')
EOF
if "$G" tail $Q --brokers "$B" --topic in --count 5 --timeout-ms 1500 >/dev/null 2>"$tmp/short.err"; then
    fail "tail with too few records exited 0"
fi
grep -q '4 of 5' "$tmp/short.err" || fail "tail short message: $(cat "$tmp/short.err")"

step "bad input is refused"
rc=0; printf '{"id":"ok","messages":[]}\n{broken\n' | "$G" send --dump >/dev/null 2>"$tmp/bad.err" || rc=$?
[ $rc -eq 2 ] && grep -q 'line 2' "$tmp/bad.err" || fail "broken JSON: rc=$rc $(cat "$tmp/bad.err")"
rc=0; echo '"just a string"' | "$G" send --dump >/dev/null 2>"$tmp/bad.err" || rc=$?
[ $rc -eq 2 ] || fail "non-object accepted"
rc=0; head -c 17000000 /dev/zero | tr '\0' ' ' | "$G" send --dump >/dev/null 2>"$tmp/bad.err" || rc=$?
[ $rc -eq 2 ] && grep -q 'longer than' "$tmp/bad.err" || fail "oversized line: rc=$rc $(cat "$tmp/bad.err")"
rc=0; "$G" send --brokers "$B" "no topic" 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "missing --topic accepted"
rc=0; "$G" send --brokers "$B" --topic in --header novalue x 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "--header without = accepted"

if [ $have_js -eq 0 ]; then
    echo "kafkajs not installed in $NODE_PATH (tools/deps.d/20-npm.sh): JS part skipped"
    exit 77
fi

step "kafkajs producer -> guardctl tail"
node tests/js/produce.js --brokers "$B" --topic js.in --count 5 --prefix t >"$tmp/js.prod" || fail "produce.js"
"$G" tail $Q --brokers "$B" --topic js.in --count 5 --timeout-ms 15000 >"$tmp/js.tail" || fail "tail js.in"
$PY - "$tmp/js.tail" <<'EOF'
import sys, json
recs = sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda r: r['value']['metadata']['seq'])
assert len(recs) == 5
for i, r in enumerate(recs):
    assert r['key'] == f'js-key-{i}' and r['headers'] == {'trace-id': f'js-{i}'}, r
    assert r['value'] == {'id': f'js-t-{i}', 'messages': [{'role': 'user', 'content': f'js message {i}'}],
                          'metadata': {'seq': i, 'source': 'kafkajs'}}, r
print('js -> tail ok')
EOF

step "guardctl send -> kafkajs consumer"
echo '{"id":"to-js","messages":[{"role":"user","content":"ünïcode ✓"}],"metadata":{"n":3}}' |
    "$G" send $Q --brokers "$B" --topic js.out --key jk --header h1=v1 >/dev/null || fail "send js.out"
"$G" send $Q --brokers "$B" --topic js.out --key rawkey --raw <"$tmp/raw.bin" || fail "send raw js.out"
node tests/js/consume.js --brokers "$B" --topic js.out --count 2 --timeout-ms 30000 >"$tmp/js.cons" || fail "consume.js"
$PY - "$tmp/js.cons" "$tmp/raw.bin" <<'EOF'
import sys, json, base64
recs = {r['key']: r for r in (json.loads(l) for l in open(sys.argv[1]))}
e = recs['jk']
assert e['headers'] == {'h1': 'v1'}, e
assert e['value'] == {'id': 'to-js', 'messages': [{'role': 'user', 'content': 'ünïcode ✓'}], 'metadata': {'n': 3}}, e
r = recs['rawkey']
assert r['value'] is None and base64.b64decode(r['raw_base64']) == open(sys.argv[2], 'rb').read()
print('send -> js ok')
EOF

step "roundtrip.js against a fake guardd"
# The fake: each input event becomes a verdict (even seq safe -> allow, odd
# unsafe -> deny) with the same key and trace-id header; non-msgpack input goes
# to the DLQ. MISROUTE=1 sends the first verdict to the wrong topic.
cat >"$tmp/fake.py" <<'EOF'
import sys, json, os, subprocess, msgpack
g, brokers, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
misroute = os.environ.get('MISROUTE') == '1'
k = 0
for line in sys.stdin:
    r = json.loads(line)
    if not (r['key'] or '').startswith(prefix + '-'):
        continue   # an earlier run's event
    v = r['value']
    hdr = ['--header', 'trace-id=' + r['headers'].get('trace-id', '')]
    if v is None:
        topic, body = 'dlq', msgpack.packb({'error': {'code': 'bad_msgpack', 'message': 'x'}})
    else:
        unsafe = v['metadata']['seq'] % 2 == 1
        topic = 'deny' if unsafe else 'allow'
        if misroute and k == 0:
            topic = 'allow' if unsafe else 'deny'
        body = msgpack.packb({'id': v['id'], 'verdict': 'unsafe' if unsafe else 'safe',
                              'categories': [], 'score': 0.5})
    subprocess.run([g, 'send', '-X', 'log_level=3', '--brokers', brokers, '--topic', topic,
                    '--key', r['key'], '--raw'] + hdr, input=body, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    k += 1
EOF
fake() { # records to read from the beginning of rt.in, key prefix to answer
    mkfifo "$tmp/fifo.$2"   # not a pipeline: both pids are needed for cleanup
    "$G" tail $Q --brokers "$B" --topic rt.in --count "$1" --timeout-ms 40000 >"$tmp/fifo.$2" &
    pids="$pids $!"
    $PY "$tmp/fake.py" "$G" "$B" "$2" <"$tmp/fifo.$2" &
    pids="$pids $!"
}
fake 5 rt1
node tests/js/roundtrip.js --brokers "$B" --input rt.in --allow allow --deny deny --dlq dlq \
    --count 4 --malformed 1 --prefix rt1 --timeout-ms 30000 --check-ids --check-headers \
    >"$tmp/rt1.json" || fail "roundtrip: $(cat "$tmp/rt1.json")"
$PY - "$tmp/rt1.json" <<'EOF'
import sys, json
s = json.load(open(sys.argv[1]))
want = {'ok': True, 'produced': 4, 'malformed': 1, 'distinct': 4, 'missing': 0, 'safe': 2,
        'unsafe': 2, 'allow': 2, 'deny': 2, 'misrouted': 0, 'bad_verdicts': 0,
        'ids_echoed': 4, 'headers_kept': 4, 'dlq': 1, 'dlq_missing': 0}
bad = {k: (s.get(k), v) for k, v in want.items() if s.get(k) != v}
assert not bad, bad
print('roundtrip ok', s['verdicts_ms'], 'ms')
EOF
MISROUTE=1 fake 7 rt2
rc=0
node tests/js/roundtrip.js --brokers "$B" --input rt.in --allow allow --deny deny \
    --count 2 --prefix rt2 --timeout-ms 30000 >"$tmp/rt2.json" || rc=$?
[ $rc -eq 1 ] || fail "misrouted roundtrip exited $rc: $(cat "$tmp/rt2.json")"
grep -q '"misrouted":1' "$tmp/rt2.json" || fail "misroute not reported: $(cat "$tmp/rt2.json")"

step "broker stops cleanly on SIGTERM"
kill -TERM "$broker"
rc=0; wait "$broker" || rc=$?
pids=$(echo "$pids" | sed "s/^$broker//")
[ $rc -eq 0 ] || fail "broker exit $rc"
echo "t_kafka_tools: OK"
