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
. tests/reference/jinja_lib.sh
jinja_compare gen "1 2 3" "render $ref/prompt/chat_template.jinja"
# The generator must have exercised what it claims to (a test that can fail).
grep -q '"exclude"' "$tmp/cases.jsonl"
grep -q '"categories"' "$tmp/cases.jsonl"
grep -q '"content": "' "$tmp/cases.jsonl"
n_err=$(grep -c '"error"' "$tmp/expected.jsonl" || true)
[ "$n_err" -gt 0 ] && [ "$n_err" -lt 100 ]
echo "t_prompt_jinja: OK"
