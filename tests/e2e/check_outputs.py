#!/usr/bin/env python3
"""check_outputs.py - reads guardd's input and output topics and checks that
nothing was lost (at-least-once) and that every output is well formed.

  check_outputs.py --guardctl G --brokers B [--input T --allow A --deny D --dlq Q]
                   [--expect-inputs N] [--timeout S] [--full] [--header NAME]
                  [--category-scores [--default-codes N]]

Re-reads all four topics (guardctl tail, from the beginning) until every input
record (partition, offset) has at least one output record whose record_id is
"TOPIC/PARTITION/OFFSET", or no new input gets covered for --timeout seconds
(then exit 1 naming what is missing). The deadline restarts on progress, so a
slow build (sanitizers) that is still producing verdicts is not taken for a
loss; a stalled one fails after --timeout, and 5 x --timeout is the hard cap.
Always checked: every output names a real input; repeats of one record_id
(allowed after crashes) agree on topic and verdict; keys are kept exactly (an
empty key stays empty), except on a DLQ record whose message says the key was
left out to fit message.max.bytes.
--full adds: invalid inputs (raw bytes, ids "bad-*" / "big-*") are on the DLQ
and nowhere else, valid ones ("ok-*") get a verdict on allow (safe) or deny
(unsafe) with every schema field present and sane, metadata echoed, header
NAME copied, and per key the outputs follow the input order.
--category-scores: each verdict has category_scores for exactly the event's
active codes (its own list or S1..SN, N = --default-codes: 13 for Llama Guard 3
1B, 14 for the 8B; minus excluded ones).
Prints a one-line JSON summary on success.
"""
import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

VERDICT_FIELDS = {"schema", "record_id", "id", "verdict", "categories", "score", "role",
                  "parse_error", "model", "source", "timing", "metadata", "raw"}
DLQ_FIELDS = {"schema", "record_id", "error", "source", "payload"}


def tail(a, topic):
    out = subprocess.run([a.guardctl, "tail", "--brokers", a.brokers, "--topic", topic,
                          "--from-beginning", "--timeout-ms", str(a.read_ms)],
                         capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def read_all(a):
    topics = [a.input, a.allow, a.deny, a.dlq]
    with ThreadPoolExecutor(4) as ex:
        return dict(zip(topics, ex.map(lambda t: tail(a, t), topics)))


def rid_of(rec, topic):
    return f"{topic}/{rec['partition']}/{rec['offset']}"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def coverage(a, data):
    inputs = {rid_of(r, a.input): r for r in data[a.input]}
    outs = {}
    for t in (a.allow, a.deny, a.dlq):
        for r in data[t]:
            v = r.get("value")
            if not isinstance(v, dict) or "record_id" not in v:
                fail(f"undecodable output on {t}: {json.dumps(r)[:300]}")
            outs.setdefault(v["record_id"], []).append((t, r))
    missing = sorted(set(inputs) - set(outs))
    return inputs, outs, missing


def key_left_out(rec):
    """A DLQ record that says it left its input's key out (too large)."""
    err = rec["value"].get("error") if isinstance(rec.get("value"), dict) else None
    return isinstance(err, dict) and "left out to fit: key" in str(err.get("message", ""))


def check_common(a, inputs, outs):
    unknown = sorted(set(outs) - set(inputs))
    if unknown:
        fail(f"outputs for inputs that do not exist: {unknown[:5]}")
    dups = 0
    for rid, recs in outs.items():
        first_t, first = recs[0]
        for t, r in recs:
            if r["headers"].get("record_id") != rid:
                fail(f"record_id header {r['headers'].get('record_id')} != payload {rid}")
            if r["key"] != inputs[rid]["key"] and not (r["key"] is None and key_left_out(r)):
                fail(f"key not kept for {rid}: {str(r['key'])[:40]!r} != "
                     f"{str(inputs[rid]['key'])[:40]!r}")
            if t != first_t or r["value"].get("verdict") != first["value"].get("verdict"):
                fail(f"repeats of {rid} disagree: {first_t} vs {t}")
        dups += len(recs) - 1
    return dups


def expect_dlq(inp):
    v = inp.get("value")
    if not isinstance(v, dict):
        return True
    return not str(v.get("id", "")).startswith("ok-")


def check_verdict(rid, inp, v, topic, a):
    missing = VERDICT_FIELDS - set(v)
    if missing:
        fail(f"verdict {rid} lacks {sorted(missing)}")
    want = a.allow if v["verdict"] == "safe" else a.deny
    if v["verdict"] not in ("safe", "unsafe") or topic != want:
        fail(f"verdict {rid} is {v['verdict']!r} on {topic}")
    if not isinstance(v["score"], float) or not 0.0 <= v["score"] <= 1.0:
        fail(f"verdict {rid} score {v['score']!r}")
    if v["role"] not in ("user", "agent") or v["id"] != inp["value"]["id"]:
        fail(f"verdict {rid} role/id wrong: {v['role']!r} {v['id']!r}")
    src = v["source"]
    if f"{src['topic']}/{src['partition']}/{src['offset']}" != rid:
        fail(f"verdict {rid} source {src}")
    if not v["model"].get("name") or v["timing"].get("batch_size", 0) < 1:
        fail(f"verdict {rid} model/timing {v['model']} {v['timing']}")
    for c in v["categories"]:
        if not c.get("code"):
            fail(f"verdict {rid} category without code: {c}")
    if a.category_scores:
        ev = inp["value"]
        codes = list(ev["categories"]) if ev.get("categories") else [f"S{i}" for i in range(1, a.default_codes + 1)]
        want = [c for c in codes if c not in ev.get("exclude", [])]
        got = v.get("category_scores")
        if not isinstance(got, dict) or sorted(got) != sorted(want) or \
                not all(0.0 <= x <= 1.0 for x in got.values()):
            fail(f"verdict {rid} category_scores {got!r}, expected codes {want}")
    if inp["value"].get("metadata") != v["metadata"]:
        fail(f"verdict {rid} metadata {v['metadata']!r} != {inp['value'].get('metadata')!r}")


def check_full(a, inputs, outs):
    counts = {"safe": 0, "unsafe": 0, "dlq": 0}
    reasons = {}
    for rid, inp in inputs.items():
        topic, rec = outs[rid][0]
        v = rec["value"]
        if expect_dlq(inp):
            if topic != a.dlq or DLQ_FIELDS - set(v) or not v["error"].get("code"):
                fail(f"invalid input {rid} ({json.dumps(inp.get('value'))[:120]}) -> {topic}: "
                     f"{json.dumps(v)[:200]}")
            counts["dlq"] += 1
            reasons[v["error"]["code"]] = reasons.get(v["error"]["code"], 0) + 1
            continue
        if topic == a.dlq:
            fail(f"valid input {rid} went to the DLQ: {v.get('error')}")
        check_verdict(rid, inp, v, topic, a)
        counts[v["verdict"]] += 1
        if a.header and inp["headers"].get(a.header) is not None:
            if rec["headers"].get(a.header) != inp["headers"][a.header]:
                fail(f"header {a.header} not copied for {rid}")
    return counts, reasons


def check_order(a, data):
    """Per output partition, key and input partition, first copies of records
    follow input offsets (order holds within a partition; the producer
    spreads empty and null keys over partitions)."""
    for t in (a.allow, a.deny, a.dlq):
        seen, last = set(), {}
        for r in sorted(data[t], key=lambda r: (r["partition"], r["offset"])):
            rid = r["value"]["record_id"]
            if rid in seen:
                continue
            seen.add(rid)
            _, part, off = rid.rsplit("/", 2)
            off = int(off)
            if r["key"] is None:    # a key left out: not the input's key
                continue
            k = (json.dumps(r["key"]), part, r["partition"])
            if k in last and off < last[k]:
                fail(f"order broken on {t} for key {k}: offset {off} after {last[k]}")
            last[k] = off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guardctl", required=True)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--input", default="conversations")
    ap.add_argument("--allow", default="verdicts.allow")
    ap.add_argument("--deny", default="verdicts.deny")
    ap.add_argument("--dlq", default="conversations.dlq")
    ap.add_argument("--expect-inputs", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--read-ms", type=int, default=2500)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--header")
    ap.add_argument("--category-scores", action="store_true")
    ap.add_argument("--default-codes", type=int, default=13)
    a = ap.parse_args()
    start = time.time()
    deadline = start + a.timeout
    best = -1
    while True:
        data = read_all(a)
        inputs, outs, missing = coverage(a, data)
        if not missing and len(inputs) >= a.expect_inputs:
            break
        covered = len(inputs) - len(missing)
        if covered > best:
            best = covered
            deadline = min(time.time() + a.timeout, start + 5 * a.timeout)
        if time.time() > deadline:
            fail(f"{len(inputs)} inputs (expected {a.expect_inputs}), {len(missing)} without "
                 f"output, e.g. {missing[:5]}")
        time.sleep(1)
    dups = check_common(a, inputs, outs)
    summary = {"inputs": len(inputs), "outputs": sum(len(v) for v in outs.values()),
               "duplicates": dups}
    if a.full:
        counts, reasons = check_full(a, inputs, outs)
        check_order(a, data)
        summary.update(counts)
        summary["dlq_reasons"] = reasons
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
