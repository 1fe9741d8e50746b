#!/bin/bash
# run.sh SECONDS [TARGET...] - runs the libFuzzer harnesses build-fuzz/fuzz_TARGET
# (all of tests/fuzz/fuzz_*.c if none are named) for SECONDS each, FUZZ_JOBS at
# a time (default 1), and prints one summary line per target:
#   TARGET: ok|FAILED (exit N), WALL s, EXECS execs, cov C, ft F, corpus N
# Each run starts from the checked-in seeds tests/fuzz/corpus/TARGET/ plus the
# inputs kept so far in $FUZZ_CORPUS_DIR/TARGET/ (default build-fuzz/corpus),
# where new interesting inputs go; the seeds directory is never written.
# A crash, leak, sanitizer report, timeout or failed property leaves the input
# in build-fuzz/artifacts/TARGET/ and the log in $FUZZ_LOG_DIR/TARGET.log
# (default build-fuzz/logs; make check uses its own, so it can run beside a
# long `make fuzz`).
# Exit status: 0 if every target ran clean, 1 otherwise.
set -u
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 SECONDS [TARGET...]" >&2; exit 2; }
secs=$1; shift
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
corpus_root=${FUZZ_CORPUS_DIR:-$FUZZ_BUILD/corpus}
jobs=${FUZZ_JOBS:-1}
log_dir=${FUZZ_LOG_DIR:-$FUZZ_BUILD/logs}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do t=${f##*/fuzz_}; targets+=("${t%.c}"); done
fi
export GUARDD_TOKENIZER=${GUARDD_TOKENIZER:-${DEPS_DIR:-.deps}/tokenizer.json}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Always this file's suppressions: under `make check SANITIZE=1` tests/run.sh
# exports LSAN_OPTIONS with tests/lsan.supp (oneDNN's), which would drop
# libconfig's scanner leaks below and fail the settings target at random.
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0
mkdir -p "$log_dir"

# Per-target options. tokenizer.json seeds are a few KB, so inputs may be up
# to 16 KB there; elsewhere libFuzzer's default (4 KB or the largest seed).
# settings and http check leaks once, at exit, instead of after every input
# whose mallocs and frees do not balance: for settings that is every input
# hitting libconfig's suppressed token leak (lsan.supp), for http every input,
# since the server frees on its own thread, and the scans cut the rate 5-20x.
# A leak still fails the run (exit 1, LeakSanitizer's report in the log), only
# without naming the input.
options() {
    case $1 in
    tokenizer) echo "-max_len=16384" ;;
    settings) echo "-max_len=8192 -detect_leaks=0" ;;
    http) echo "-detect_leaks=0" ;;
    esac
}

run_one() {
    local t=$1 bin=$FUZZ_BUILD/fuzz_$1 log=$log_dir/$1.log
    local art=$FUZZ_BUILD/artifacts/$t/ corpus=$corpus_root/$t
    if [ ! -x "$bin" ]; then echo "$t: FAILED (no $bin; run make fuzz-build)"; return 1; fi
    mkdir -p "$art" "$corpus"
    local start=$SECONDS rc
    # shellcheck disable=SC2046
    "$bin" -max_total_time="$secs" -timeout=60 -print_final_stats=1 -artifact_prefix="$art" \
        $(options "$t") "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    local wall=$((SECONDS - start))
    local execs cov
    execs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log")
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | awk '{for (i = 1; i <= NF; i++) { if ($i == "cov:") c = $(i+1); if ($i == "ft:") f = $(i+1); if ($i == "corp:") n = $(i+1) } print "cov " c ", ft " f ", corpus " n}')
    if [ $rc -eq 0 ]; then
        echo "$t: ok, ${wall} s, ${execs:-?} execs, $cov"
    else
        echo "$t: FAILED (exit $rc), ${wall} s, ${execs:-?} execs, $cov; log $log, input(s):" $(ls "$art" 2>/dev/null)
        grep -E 'ERROR: |SUMMARY: |fuzz property failed|leaked a file descriptor|runtime error' "$log" | head -n 5 | sed 's/^/    /'
    fi
    return $rc
}

failed=0
running=0
for t in "${targets[@]}"; do
    if [ "$jobs" -le 1 ]; then
        run_one "$t" || failed=1
        continue
    fi
    if [ $running -ge "$jobs" ]; then wait -n || failed=1; running=$((running - 1)); fi
    run_one "$t" &
    running=$((running + 1))
done
while [ $running -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
exit $failed
