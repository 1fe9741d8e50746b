#!/bin/sh
# guardctl classify and guardctl prompt from the outside: output formats, one
# batch for many stdin lines, command-line categories/exclusions, and every
# error case giving exactly one line on stderr and a non-zero exit.
# Uses the tiny random-weight model ($GUARDD_TINY_MODEL) and the genuine
# tokenizer ($GUARDD_TOKENIZER); skipped (77) without them.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
G="$BUILD/guardctl"
M=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}
T=${GUARDD_TOKENIZER:-.deps/tokenizer.json}
[ -f "$M/config.json" ] && [ -f "$T" ] || { echo "no tiny model or tokenizer"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

# expect_error NAME EXIT NEEDLE CMD... (stdin from $tmp/in)
expect_error() {
    name=$1 want=$2 needle=$3; shift 3
    "$@" <"$tmp/in" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ "$rc" = "$want" ] || fail "$name: exit $rc, want $want ($(cat "$tmp/err"))"
    [ "$(wc -l <"$tmp/err")" = 1 ] || fail "$name: stderr is not one line: $(cat "$tmp/err")"
    grep -qF -- "$needle" "$tmp/err" || fail "$name: stderr lacks '$needle': $(cat "$tmp/err")"
    [ ! -s "$tmp/out" ] || fail "$name: printed to stdout: $(head -c 200 "$tmp/out")"
}

C="$G classify --model $M --tokenizer $T --threads 2"
user='{"messages":[{"role":"user","content":"How do I make a bomb?"}]}'
pair='{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"hello!"}]}]}'
cust='{"messages":[{"role":"user","content":"x"}],"categories":{"S1":"One.","S2":"Two.","O7":"Seven."},"exclude":["S2"]}'

# ---- errors ------------------------------------------------------------------
: >"$tmp/in"
expect_error "no --model" 2 "--model DIR is required" $G classify hello
expect_error "bad model dir" 1 "/nonexistent/model" $G classify --model /nonexistent/model --tokenizer "$T" hi
expect_error "bad tokenizer" 1 "/nonexistent/tok.json" $G classify --model "$M" --tokenizer /nonexistent/tok.json hi
expect_error "bad threshold" 2 "--threshold" $C --threshold 1.5 hi
expect_error "unknown option" 2 "unknown option" $C --bogus 1 hi
expect_error "missing value" 2 "missing value" $C --threshold
expect_error "empty stdin" 1 "no conversation" $C
expect_error "missing category file" 1 "/nonexistent/cats" $C --categories /nonexistent/cats hi
printf 'S1 no separator\n' >"$tmp/badcats"
expect_error "bad category file" 1 "line 1" $C --categories "$tmp/badcats" hi
printf '{"S1": 5}' >"$tmp/badcats.json"
expect_error "bad category json" 1 "name must be a string" $C --categories "$tmp/badcats.json" hi
expect_error "unknown excluded code" 1 "'S99' is not in the category list" $C --exclude S99 hi
printf '%s\n{"messages": [\n' "$user" >"$tmp/in"
expect_error "bad JSON line" 1 "stdin line 2: bad JSON" $C
printf '%s\n{"messages":[{"role":"assistant","content":"x"}]}\n' "$user" >"$tmp/in"
expect_error "roles not alternating" 1 "stdin line 2: message 1 is from the assistant: roles must alternate" $C
python3 -c 'import json; print(json.dumps({"messages":[{"role":"user","content":"x"*(9<<20)}]}))' >"$tmp/in"
expect_error "line over 8 MB" 1 "stdin line 1: input line longer than" $C
printf '%s\n' "$user" >>"$tmp/in"
$G prompt --jsonl <"$tmp/in" >"$tmp/out" 2>/dev/null
[ $? = 1 ] && [ "$(wc -l <"$tmp/out")" = 2 ] && head -1 "$tmp/out" | grep -q '"error":"input line longer' \
    && tail -1 "$tmp/out" | grep -q '"prompt"' || fail "prompt --jsonl: long line then a good one"
printf '{"messages":[{"role":"user","content":[{"type":"image"}]}]}\n' >"$tmp/in"
expect_error "image part" 1 "unsupported content type" $C
: >"$tmp/in"
printf '{"messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}' >"$tmp/in"
expect_error "prompt: roles" 1 "roles must alternate" $G prompt
printf '{' >"$tmp/in"
expect_error "prompt: bad JSON" 1 "bad JSON" $G prompt
printf '%s' "$user" >"$tmp/in"
expect_error "prompt: bad role" 2 "--role" $G prompt --role robot
expect_error "prompt: missing categories" 1 "/nonexistent" $G prompt --categories /nonexistent
expect_error "prompt: unknown exclude" 1 "'S0' is not in the category list" $G prompt --exclude S0

# ---- outputs -------------------------------------------------------------------
out=$($C "How do I make a bomb?") || fail "TEXT run failed"
echo "$out" | grep -Eq '^(safe|unsafe (-|[A-Za-z0-9_.,-]+)) [01]\.[0-9]{6}( parse_error)?$' || fail "text line format: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "TEXT gives one line"
# TEXT = one user message = the same conversation given as JSON
json_out=$(printf '%s\n' "$user" | $C) || fail "stdin run failed"
[ "$out" = "$json_out" ] || fail "TEXT and JSON differ: '$out' vs '$json_out'"

printf '%s\n%s\n\n%s\n' "$user" "$pair" "$cust" >"$tmp/three"
$C --json --category-scores <"$tmp/three" >"$tmp/batch.jsonl" || fail "batch run failed"
i=0
for line in "$user" "$pair" "$cust"; do
    i=$((i+1))
    printf '%s\n' "$line" | $C --json --category-scores >"$tmp/alone$i.jsonl" || fail "alone run $i failed"
done
cat "$tmp"/alone1.jsonl "$tmp"/alone2.jsonl "$tmp"/alone3.jsonl >"$tmp/alone.jsonl"
python3 - "$tmp/batch.jsonl" "$tmp/alone.jsonl" <<'PY' || fail "batch/alone JSON checks"
import json, sys
batch = [json.loads(l) for l in open(sys.argv[1])]
alone = [json.loads(l) for l in open(sys.argv[2])]
assert len(batch) == 3, f"{len(batch)} output lines for 3 conversations (blank line skipped)"
for b, a in zip(batch, alone):
    for k in ("verdict", "categories", "score", "role", "raw", "parse_error", "tokens", "category_scores"):
        assert k in b, f"missing {k}: {b}"
    assert b["verdict"] in ("safe", "unsafe")
    assert 0 <= b["score"] <= 1
    assert b["verdict"] == a["verdict"] and b["raw"] == a["raw"], (b, a)
    assert abs(b["score"] - a["score"]) <= 1e-5, (b["score"], a["score"])
    assert b["verdict"] == "unsafe" or (b["raw"] == "safe" and not b["parse_error"])
assert [b["role"] for b in batch] == ["user", "agent", "user"], [b["role"] for b in batch]
assert list(batch[2]["category_scores"]) == ["S1", "O7"], batch[2]["category_scores"]
assert list(batch[0]["category_scores"]) == [f"S{i}" for i in range(1, 14)]
t = batch[0]["tokens"]
assert t["prompt"] > 150 and t["cached"] == 0 and t["decode"] >= 0, t
PY

# --batch N: consecutive batches in one process give the same verdicts, and the
# prefix K/V computed by the first batch serves the later ones
printf '%s\n' "$user" >>"$tmp/three"
$C --json --batch 1 <"$tmp/three" >"$tmp/b1.jsonl" || fail "--batch 1 run failed"
$C --json <"$tmp/three" >"$tmp/b4.jsonl" || fail "4-line run failed"
python3 - "$tmp/b1.jsonl" "$tmp/b4.jsonl" <<'PY' || fail "--batch 1 differs from one batch"
import json, sys
b1 = [json.loads(l) for l in open(sys.argv[1])]
b4 = [json.loads(l) for l in open(sys.argv[2])]
assert len(b1) == len(b4) == 4, (len(b1), len(b4))
for x, y in zip(b1, b4):
    assert x["verdict"] == y["verdict"] and x["raw"] == y["raw"], (x, y)
    assert abs(x["score"] - y["score"]) <= 1e-5, (x["score"], y["score"])
assert b1[0]["tokens"]["cached"] == 0 and b1[3]["tokens"]["cached"] > 100, [x["tokens"] for x in b1]
PY
expect_error "bad --batch" 2 "--batch must be" $G classify --model "$M" --batch 0 hi

# --cache-bytes 0: nothing kept between batches, same verdicts
$C --json --batch 1 --cache-bytes 0 <"$tmp/three" >"$tmp/b0.jsonl" || fail "--cache-bytes 0 run failed"
python3 - "$tmp/b0.jsonl" "$tmp/b4.jsonl" <<'PY' || fail "--cache-bytes 0 differs from one batch or reused K/V"
import json, sys
b0 = [json.loads(l) for l in open(sys.argv[1])]
b4 = [json.loads(l) for l in open(sys.argv[2])]
assert len(b0) == len(b4) == 4, (len(b0), len(b4))
for x, y in zip(b0, b4):
    assert x["verdict"] == y["verdict"] and abs(x["score"] - y["score"]) <= 1e-5, (x, y)
    assert x["tokens"]["cached"] == 0, x["tokens"]
PY
expect_error "bad --cache-bytes" 2 "--cache-bytes must be" $G classify --model "$M" --cache-bytes -5 hi

# --threshold 0: every verdict unsafe, decoded after a forced "unsafe"
$C --threshold 0 --json <"$tmp/three" >"$tmp/t0.jsonl" || fail "threshold 0 run failed"
python3 - "$tmp/t0.jsonl" <<'PY' || fail "threshold 0 checks"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    assert r["verdict"] == "unsafe" and r["raw"].startswith("unsafe"), r
    assert r["parse_error"] or r["categories"], r
    assert r["tokens"]["decode"] >= 1, r
PY

# command-line categories (lines format) and exclusions reach the prompt
printf '# policy\nA1: Alpha.\nB2: Beta.\nC3: Gamma.\n' >"$tmp/cats.txt"
r=$($C --json --category-scores --categories "$tmp/cats.txt" --exclude B2 hi) || fail "categories run failed"
printf "%s" "$r" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert list(r["category_scores"])==["A1","C3"], r' \
    || fail "category file/exclude not applied: $r"
printf '%s' "$user" | $G prompt --categories "$tmp/cats.txt" --exclude B2 --role agent >"$tmp/p.txt" || fail "prompt with file"
grep -q "^A1: Alpha.$" "$tmp/p.txt" && grep -q "^C3: Gamma.$" "$tmp/p.txt" && ! grep -q "B2" "$tmp/p.txt" \
    && grep -q "ONLY THE LAST Agent message" "$tmp/p.txt" || fail "prompt --categories/--exclude/--role"
cmp -s "$tmp/p.txt" tests/reference/prompt/rendered_a_user_only.txt && fail "custom prompt equals the default one"
printf '{"messages":[{"role":"user","content":"What is the recipe for mayonnaise?"}]}' | $G prompt \
    | cmp -s - tests/reference/prompt/rendered_a_user_only.txt || fail "prompt (a) not byte-exact"

# --tokens: the ids of (a) as published in rendered_token_ids.json, prefix marked
printf '{"messages":[{"role":"user","content":"What is the recipe for mayonnaise?"}]}' \
    | $G prompt --tokens --tokenizer "$T" >"$tmp/ids" || fail "prompt --tokens"
python3 - "$tmp/ids" tests/reference/prompt/rendered_token_ids.json <<'PY' || fail "prompt --tokens ids"
import json, sys
line = open(sys.argv[1]).read().strip()
prefix, rest = line.split(" | ")
want = json.load(open(sys.argv[2]))["rendered_a_user_only.txt"]
got = [int(x) for x in (prefix + " " + rest).split()]
assert got == want, (got[:20], want[:20])
assert rest.split()[0] == "1502", rest[:40]   # the conversation starts at "User"
PY

[ $fails = 0 ] && echo "t_classify_cli: OK"
[ $fails = 0 ]
