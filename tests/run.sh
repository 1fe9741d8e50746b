#!/bin/sh
# Runs every test: the Check suites built as $BUILD/tests/check_* and the script
# tests tests/t_*.sh (exit 0 pass, 77 skipped, anything else failed). Prints each
# result and a closing "N passed, N failed" line; exits non-zero on any failure.
# TESTS="pattern" runs only tests whose name contains the pattern.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD DEPS_DIR=${DEPS_DIR:-$PWD/.deps} SANITIZE=${SANITIZE:-0}
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-600}
if [ "$SANITIZE" = 1 ]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
elif [ "$SANITIZE" = thread ]; then
    # a report fails the program (exit 66) at its end, not at the first one
    export TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$PWD/tests/tsan.supp:halt_on_error=0:second_deadlock_stack=1}
fi
pass=0; fail=0; skip=0; failed=""
# Shared fixtures: the genuine tokenizer and a tiny random-weight model that
# carries it (tests read GUARDD_TOKENIZER and GUARDD_TINY_MODEL).
export GUARDD_TOKENIZER=${GUARDD_TOKENIZER:-$DEPS_DIR/tokenizer.json}
export GUARDD_TINY_MODEL=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}
if [ ! -f "$GUARDD_TINY_MODEL/model.safetensors" ] || [ ! -f "$GUARDD_TINY_MODEL/tokenizer_config.json" ]; then
    "$BUILD/guardctl" fixture --preset tiny --seed 1 --out "$GUARDD_TINY_MODEL" \
        --tokenizer "$GUARDD_TOKENIZER" >/dev/null 2>&1 || echo "note: tiny fixture model not available"
fi
logdir=$BUILD/test-logs; mkdir -p "$logdir"
run_one() { # name, command...
    name=$1; shift
    case "$name" in *${TESTS:-}*) ;; *) return ;; esac
    start=$(date +%s)
    "$@" >"$logdir/$name.log" 2>&1; rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS $name (${secs}s)"
    elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP $name: $(tail -n 1 "$logdir/$name.log")"
    else fail=$((fail+1)); failed="$failed $name"; echo "FAIL $name (${secs}s, exit $rc), last lines of $logdir/$name.log:"
         tail -n 30 "$logdir/$name.log" | sed 's/^/    /'
    fi
    grep -h '^[0-9]*%: Checks:' "$logdir/$name.log" | sed 's/^/    /'
}
for t in "$BUILD"/tests/check_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for t in tests/t_*.sh; do
    [ -e "$t" ] || continue
    run_one "$(basename "$t" .sh)" sh "$t"
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
