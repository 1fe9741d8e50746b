#!/bin/sh
# Property test: guardctl prompt renders byte for byte what jinja2 renders from
# the model's real chat template (tests/reference/prompt/chat_template.jinja,
# transformers' sandbox settings) for 600 random conversations: Unicode, every
# Python whitespace character at the edges (and look-alikes that are not
# whitespace), multi-part messages, string content, custom and excluded
# categories, and a few broken role orders both sides must refuse.
# One guardctl process renders all of them (--jsonl).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
python3 -c 'import jinja2' 2>/dev/null || { echo "python3-jinja2 not installed"; exit 77; }
ref=tests/reference
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for seed in 1 2 3; do
    python3 $ref/render_jinja.py gen 200 $seed >"$tmp/cases$seed.jsonl"
done
cat "$tmp"/cases?.jsonl >"$tmp/cases.jsonl"
python3 $ref/render_jinja.py render $ref/prompt/chat_template.jinja <"$tmp/cases.jsonl" >"$tmp/expected.jsonl"
"$BUILD/guardctl" prompt --jsonl <"$tmp/cases.jsonl" >"$tmp/got.jsonl" || true
python3 $ref/render_jinja.py compare "$tmp/expected.jsonl" "$tmp/got.jsonl"
# The generator must have exercised what it claims to (a test that can fail).
grep -q '"exclude"' "$tmp/cases.jsonl"
grep -q '"categories"' "$tmp/cases.jsonl"
grep -q '"content": "' "$tmp/cases.jsonl"
n_err=$(grep -c '"error"' "$tmp/expected.jsonl" || true)
[ "$n_err" -gt 0 ] && [ "$n_err" -lt 100 ]
echo "t_prompt_jinja: OK"
