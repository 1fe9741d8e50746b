#!/bin/sh
# Property test for the Llama Guard 3 8B prompt family: guardctl prompt
# --format llama-guard-3-8b renders byte for byte what jinja2 renders from the
# 8B's real chat template (tests/reference/prompt-8b/chat_template.jinja,
# transformers' sandbox settings) for 600 random conversations, including the
# ones the template refuses (roles out of order: guardd refuses them too).
# Conversations outside the template's contract (text parts, custom or
# reduced category lists: guardd extensions) are checked against the 8B
# template's frame holding the 1B template's category block and conversation
# lines, and the bare 8B template must refuse text parts
# (render_jinja.py render8 explains the construction).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
. tests/reference/jinja_lib.sh
jinja_compare gen8 "11 12 13" "render8 $ref/prompt-8b/chat_template.jinja $ref/prompt/chat_template.jinja" \
    --format llama-guard-3-8b
# The generator must have exercised what it claims to (a test that can fail).
count() { grep -c "$1" "$2" || true; }
n_err=$(count '"error"' "$tmp/expected.jsonl")
n_ext=$(count '"extension"' "$tmp/expected.jsonl")
n_refused=$(count '"template_refused_parts"' "$tmp/expected.jsonl")
n_plain=$((600 - n_err - n_ext))
echo "template alone: $n_plain, extensions: $n_ext (text parts refused by the template: $n_refused), refused: $n_err"
[ "$(count '"template_accepted_parts"' "$tmp/expected.jsonl")" -eq 0 ]
[ "$n_err" -gt 0 ] && [ "$n_err" -lt 100 ]
[ "$n_plain" -gt 250 ] && [ "$n_refused" -gt 20 ]
grep -q '"exclude"' "$tmp/cases.jsonl"
grep -q '"categories"' "$tmp/cases.jsonl"
grep -q 'S14' "$tmp/expected.jsonl"
echo "t_prompt_jinja_8b: OK"
