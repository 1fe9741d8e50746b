#!/usr/bin/env python3
"""validate_schema.py - checks that schemas/ is a contract guardd keeps.

Usage: validate_schema.py SCHEMA_DIR SAMPLES_DIR

1. Each schema is a valid JSON Schema 2020-12 document.
2. schemas/examples/valid/KIND.*.json validate against KIND.schema.json.
3. schemas/examples/invalid/REASON.*.json (conversation events guardd must
   reject with REASON) are rejected by the conversation-event schema too,
   except for the rules a JSON Schema cannot express (listed below).
4. Records produced by guardd's own encoder (SAMPLES_DIR/*.msgpack, written
   by check_event's "samples" case) decode with python3-msgpack, an
   independent implementation, and validate against their schema, with the
   msgpack-level types the schemas mark by "x-msgpack" (bin payload, float64
   scores) checked on the real msgpack types.
5. Their JSON renderings (SAMPLES_DIR/*.msgpack.json, record_to_json) parse,
   validate too, and carry the same values as the msgpack record.
6. Tampered copies of the samples fail (so the checks can fail at all).
Prints one line per file; exit 0 only if every check passed.
"""
import base64
import glob
import json
import math
import os
import sys

import jsonschema
import msgpack
from jsonschema import Draft202012Validator, ValidationError, validators

# Rules enforced by guardd's decoder that JSON Schema cannot state (role
# alternation, cross-field references, byte-level text rules, limits that
# come from the configuration, duplicate keys, msgpack framing).
SCHEMA_CANNOT = {"roles_not_alternating", "bad_exclude", "bad_text", "duplicate_field", "too_large",
                 "too_many_messages", "message_too_large", "trailing_bytes", "bad_msgpack", "bad_json"}


class Bin(str):
    """A msgpack bin value, carried as its base64 text so JSON Schema sees a string."""


def x_msgpack(validator, want, instance, schema):
    if want == "bin" and not isinstance(instance, Bin):
        yield ValidationError("%r must be msgpack bin" % (instance,))
    if want == "float64" and not isinstance(instance, float):
        yield ValidationError("%r must be a msgpack float64" % (instance,))


MsgpackValidator = validators.extend(Draft202012Validator, {"x-msgpack": x_msgpack})


def from_msgpack(v):
    """msgpack value -> JSON Schema instance, keeping bin recognisable."""
    if isinstance(v, bytes):
        return Bin(base64.b64encode(v).decode())
    if isinstance(v, dict):
        return {k: from_msgpack(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_msgpack(x) for x in v]
    return v


def canonical(value, data):
    """python3-msgpack reads float32 and float64 alike, so the float64 promise
    is checked on the bytes: re-encoding the value (floats as float64, ints and
    lengths in their shortest form) must give back exactly the sample."""
    return msgpack.packb(value, use_bin_type=True) == data


def same(a, b, path="$"):
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return "%s: %r != %r" % (path, a, b)
        if not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300):
            return "%s: %r != %r" % (path, a, b)
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return "%s: keys %s != %s" % (path, sorted(a), sorted(b))
        for k in a:
            d = same(a[k], b[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: length %d != %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if a == b and type(a) is type(b) or (isinstance(a, str) and a == b) else "%s: %r != %r" % (path, a, b)


class Run:
    def __init__(self, schema_dir):
        self.failed = 0
        self.schemas = {}
        for kind in ("conversation-event", "verdict-event", "dlq-record"):
            path = os.path.join(schema_dir, kind + ".schema.json")
            with open(path) as f:
                schema = json.load(f)
            try:
                Draft202012Validator.check_schema(schema)
                self.ok("schema " + path)
            except jsonschema.SchemaError as e:
                self.bad("schema " + path, e.message)
            self.schemas[kind] = schema

    def ok(self, what):
        print("ok   " + what)

    def bad(self, what, why):
        print("FAIL %s: %s" % (what, why))
        self.failed += 1

    def errors(self, kind, instance, msgpack_types):
        cls = MsgpackValidator if msgpack_types else Draft202012Validator
        v = cls(self.schemas[kind])
        return ["%s: %s" % ("/".join(map(str, e.absolute_path)) or "$", e.message) for e in v.iter_errors(instance)]

    def expect_valid(self, what, kind, instance, msgpack_types=False):
        errs = self.errors(kind, instance, msgpack_types)
        if errs:
            self.bad(what, "; ".join(errs[:3]))
        else:
            self.ok(what)


def kind_of(name):
    for prefix, kind in (("verdict", "verdict-event"), ("dlq", "dlq-record"),
                         ("event", "conversation-event"), ("conversation-event", "conversation-event")):
        if name.startswith(prefix):
            return kind
    return None


def check_examples(run, schema_dir):
    ex = os.path.join(schema_dir, "examples")
    valid = sorted(glob.glob(os.path.join(ex, "valid", "*.json")))
    invalid = sorted(glob.glob(os.path.join(ex, "invalid", "*.json")))
    if len(valid) < 3 or len(invalid) < 3:
        run.bad("examples", "expected examples in %s/valid and %s/invalid" % (ex, ex))
    for path in valid:
        kind = kind_of(os.path.basename(path))
        with open(path) as f:
            run.expect_valid("example " + path, kind, json.load(f))
    for path in invalid:
        reason = os.path.basename(path).split(".")[0]
        with open(path) as f:
            inst = json.load(f)
        errs = run.errors("conversation-event", inst, False)
        if reason in SCHEMA_CANNOT:
            run.ok("example %s (decoder-only rule %s)" % (path, reason))
        elif errs:
            run.ok("example %s rejected: %s" % (path, errs[0]))
        else:
            run.bad("example " + path, "the schema accepts an event guardd rejects (%s)" % reason)


def check_samples(run, samples):
    files = sorted(glob.glob(os.path.join(samples, "*.msgpack")))
    if len(files) < 4:
        run.bad("samples", "encoder samples missing in " + samples)
    for path in files:
        name = os.path.basename(path)
        kind = kind_of(name)
        with open(path, "rb") as f:
            data = f.read()
        try:
            value = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as e:  # any decoding failure is a contract break
            run.bad("sample " + name, "python3-msgpack cannot decode it: %s" % e)
            continue
        if not canonical(value, data):
            run.bad("sample " + name, "not canonical msgpack (float32 or over-long encodings)")
        inst = from_msgpack(value)
        run.expect_valid("sample %s (%s)" % (name, kind), kind, inst, msgpack_types=True)
        jpath = path + ".json"
        if not os.path.exists(jpath):
            continue
        with open(jpath) as f:
            text = f.read()
        if "\n" in text:
            run.bad("rendering " + name, "record_to_json output is not one line")
        rendered = json.loads(text)
        run.expect_valid("rendering %s.json" % name, kind, rendered)
        diff = same(json.loads(json.dumps(inst)), rendered)
        if diff:
            run.bad("rendering %s.json" % name, "differs from the msgpack record: " + diff)


def check_controls(run, samples):
    """Negative controls: tampered copies of real samples must fail, proving
    the checks above can fail at all."""
    tampered = []
    for path in sorted(glob.glob(os.path.join(samples, "*.msgpack"))):
        name = os.path.basename(path)
        with open(path, "rb") as f:
            inst = from_msgpack(msgpack.unpackb(f.read(), raw=False))
        if name.startswith("dlq"):
            tampered.append(("payload as str", "dlq-record", dict(inst, payload=str(inst["payload"]))))
        if name.startswith("verdict"):
            tampered.append(("no timing", "verdict-event", {k: v for k, v in inst.items() if k != "timing"}))
            tampered.append(("integer score", "verdict-event", dict(inst, score=1)))
            tampered.append(("extra field", "verdict-event", dict(inst, surprise=True)))
    if not tampered:
        run.bad("controls", "no samples to tamper with")
    for what, kind, inst in tampered:
        if run.errors(kind, inst, True):
            run.ok("control (%s) rejected" % what)
        else:
            run.bad("control (%s)" % what, "a tampered record passed")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    schema_dir, samples = sys.argv[1], sys.argv[2]
    run = Run(schema_dir)
    check_examples(run, schema_dir)
    check_samples(run, samples)
    check_controls(run, samples)
    print("%s: %d failure(s)" % ("FAIL" if run.failed else "PASS", run.failed))
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
