# jinja_lib.sh - what the jinja2 property tests (t_prompt_jinja.sh for the 1B
# prompt family, t_prompt_jinja_8b.sh for the 8B's) share: random
# conversations rendered by jinja2 from the real chat template and by
# `guardctl prompt`, compared byte for byte (render_jinja.py does all three).
# Source it from the repository root with BUILD set; it skips (77) without
# python3-jinja2 and sets ref (this folder) and tmp (removed on exit).
python3 -c 'import jinja2' 2>/dev/null || { echo "python3-jinja2 not installed"; exit 77; }
ref=tests/reference
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# jinja_compare GEN "SEEDS" "RENDER ARGS" [guardctl prompt options...]:
# 200 conversations per seed from `render_jinja.py GEN` ($tmp/cases.jsonl),
# jinja2's renders from `render_jinja.py RENDER ARGS` ($tmp/expected.jsonl)
# and guardctl's, one process for all (--jsonl, $tmp/got.jsonl); fails
# (set -e) unless every render matches.
jinja_compare() {
    gen=$1; seeds=$2; render=$3; shift 3
    : >"$tmp/cases.jsonl"
    for seed in $seeds; do
        python3 $ref/render_jinja.py "$gen" 200 "$seed" >>"$tmp/cases.jsonl"
    done
    python3 $ref/render_jinja.py $render <"$tmp/cases.jsonl" >"$tmp/expected.jsonl"
    "$BUILD/guardctl" prompt "$@" --jsonl <"$tmp/cases.jsonl" >"$tmp/got.jsonl" || true
    python3 $ref/render_jinja.py compare "$tmp/expected.jsonl" "$tmp/got.jsonl"
}
