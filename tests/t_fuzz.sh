#!/bin/sh
# t_fuzz.sh - a bounded run of every libFuzzer harness (tests/fuzz/): each for
# FUZZ_CHECK_SECONDS (default 5) from its checked-in seed corpus, two at a
# time, new inputs kept in a temporary directory (so runs do not drift).
# Fails if any fuzzer finds a crash, leak, sanitizer report, timeout or broken
# property; the input is left in build-fuzz/artifacts/, the logs in
# build-fuzz/check-logs/ (apart from a `make fuzz` running meanwhile).
# Longer runs: `make fuzz`.
# Skips (77) only when clang is not installed; tools/deps.sh installs it.
set -eu
cd "$(dirname "$0")/.."
command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1 || { echo "clang not installed"; exit 77; }
# build-fuzz/ is always ASan+UBSan, whatever SANITIZE says; `make check` has built it.
make -s fuzz-build >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
FUZZ_CORPUS_DIR=$tmp FUZZ_LOG_DIR=build-fuzz/check-logs FUZZ_JOBS=${FUZZ_JOBS:-2} GUARDD_TOKENIZER=${GUARDD_TOKENIZER:-${DEPS_DIR:-.deps}/tokenizer.json} \
    tests/fuzz/run.sh "${FUZZ_CHECK_SECONDS:-5}"
