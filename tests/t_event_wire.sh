#!/bin/sh
# t_event_wire - how input bytes on the wire are read, end to end: the real
# guardd (tiny fixture model) against a mock cluster (guardctl broker). Each
# input record has its own key; outputs are found by that key on the allow,
# deny and DLQ topics (read with guardctl tail) and must be what the table
# below says: a verdict, or a DLQ record with a given reason.
#   - JSON events (schemas/conversation-event.schema.json): with a
#     content-type: application/json header, without any header (sniffed by
#     the leading '{'), and with a mis-cased header; a msgpack event declared
#     as JSON is a bad_json DLQ record, a msgpack event without header a verdict.
#   - metadata depth (EVENT_MAX_METADATA_DEPTH, 31 levels): 31 gives a verdict
#     that guardctl tail and Python's msgpack decode; 32, and 2000 (beyond
#     Python's 1024), msgpack or JSON, are metadata_too_deep DLQ records.
#   - metadata with NUL bytes in a key and a value: the verdict echoes them
#     and guardctl tail prints them escaped (\u0000), not as an undecodable
#     value.
set -eu
cd "$(dirname "$0")/.."
. tests/e2e/lib.sh
e2e_init t_event_wire model

start_broker conversations,verdicts.allow,verdicts.deny,conversations.dlq 1 2

cat >"$tmp/guardd.conf" <<CONF
kafka = {
  brokers = "$B";
  group_id = "wire";
  input_topics = [ "conversations" ];
  properties = ( ("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500") );
};
model = { path = "$MODEL"; threads = 1; };
batch = { max_events = 8; max_wait_ms = 10; queue_capacity = 32; };
limits = { max_event_bytes = 65536; max_message_bytes = 4096; };
metrics = { listen = "127.0.0.1:0"; };
log = { level = "info"; };
CONF
start_guardd guardd; GP=$LAST_PID

# ---- inputs: key, expected outcome ("verdict" or "dlq:REASON") ----------------------
: >"$tmp/expect"
send() { # key expect [guardctl send options...] < bytes
    k=$1; e=$2; shift 2
    "$C" send --brokers "$B" --topic conversations --key "$k" --raw "$@" >/dev/null \
        2>>"$logs/send.log" || fail "guardctl send $k"
    echo "$k $e" >>"$tmp/expect"
}
json_event() { printf '%s{"id":"%s","messages":[{"role":"user","content":"hello there"}],"metadata":{"n":1}}' "${2:-}" "$1"; }
msgpack_event() { # id [metadata levels | nul]: metadata {"a": [[...[1]...]]} or with NUL bytes
    "$PY" -c 'import msgpack, sys
ev = msgpack.packb({"id": sys.argv[1], "messages": [{"role": "user", "content": "hello there"}]})
meta = sys.argv[2] if len(sys.argv) > 2 else ""
if meta == "nul":
    ev = b"\x83" + ev[1:] + msgpack.packb("metadata") + msgpack.packb({"k\0ey": "v\0al"})
elif meta:   # a map of 3 instead of 2, then "metadata": nested bytes
    ev = b"\x83" + ev[1:] + msgpack.packb("metadata") + b"\x81\xa1a" + b"\x91" * (int(meta) - 1) + b"\x01"
sys.stdout.buffer.write(ev)' "$@"
}
json_deep() { # id levels
    "$PY" -c 'import sys
n = int(sys.argv[2])
sys.stdout.write("{\"id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"metadata\":{\"a\":%s1%s}}"
                 % (sys.argv[1], "[" * (n - 1), "]" * (n - 1)))' "$1" "$2"
}

json_event json-header | send json-header verdict --header content-type=application/json
json_event json-sniffed | send json-sniffed verdict
json_event json-spaces ' 
	' | send json-spaces verdict
json_event json-cased | send json-cased verdict --header "Content-Type=Application/JSON; charset=utf-8"
msgpack_event mp-plain | send mp-plain verdict
msgpack_event mp-as-json | send mp-as-json dlq:bad_json --header content-type=application/json
printf '{"id":"bad","messages":[' | send json-broken dlq:bad_json
msgpack_event meta-31 31 | send meta-31 verdict
msgpack_event meta-32 32 | send meta-32 dlq:metadata_too_deep
msgpack_event meta-2000 2000 | send meta-2000 dlq:metadata_too_deep
json_deep json-meta-32 32 | send json-meta-32 dlq:metadata_too_deep
msgpack_event meta-nul nul | send meta-nul verdict

# ---- outputs -----------------------------------------------------------------------
n=$(wc -l <"$tmp/expect")
"$PY" - "$C" "$B" "$tmp/expect" "$tmp" <<'PYEOF' || fail "outputs"
import json, subprocess, sys, time
ctl, brokers, expect_file, tmp = sys.argv[1:5]
expect = dict(l.split() for l in open(expect_file) if l.strip())
got = {}
deadline = time.time() + 90
while time.time() < deadline:
    got = {}
    for topic in ("verdicts.allow", "verdicts.deny", "conversations.dlq"):
        out = subprocess.run([ctl, "tail", "--brokers", brokers, "--topic", topic,
                              "--timeout-ms", "2500"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            v = r["value"]
            if v is None:
                print("undecodable output record:", line[:300]); sys.exit(1)
            what = "dlq:" + v["error"]["code"] if topic.endswith("dlq") else "verdict"
            got.setdefault(r["key"], []).append((what, v))
    if all(k in got for k in expect):
        break
    time.sleep(1)
bad = 0
for k, e in sorted(expect.items()):
    outs = got.get(k, [])
    kinds = [w for w, _ in outs]
    if kinds != [e]:
        bad += 1
        print(f"{k}: want {e}, got {kinds or 'nothing'}", [v.get("error") for _, v in outs])
    elif k == "meta-nul" and outs[0][1].get("metadata") != {"k\0ey": "v\0al"}:
        bad += 1
        print(f"{k}: metadata with NUL bytes not echoed: {outs[0][1].get('metadata')!r}")
    elif k == "meta-31" and json.dumps(outs[0][1].get("metadata")) != '{"a": ' + "[" * 30 + "1" + "]" * 30 + "}":
        bad += 1
        print(f"{k}: deep metadata not echoed: {outs[0][1].get('metadata')!r}")
    elif e == "verdict" and k.startswith("json-") and (outs[0][1].get("id") != k or outs[0][1].get("metadata") != {"n": 1}):
        bad += 1
        print(f"{k}: id or metadata not echoed: {outs[0][1]}")
    else:
        print(f"{k}: {e} ok")
sys.exit(1 if bad else 0)
PYEOF
kill -TERM "$GP"
rc=0; wait "$GP" || rc=$?
[ $rc -eq 0 ] || fail "guardd exited $rc after SIGTERM"
echo "PASS ($n inputs)"
