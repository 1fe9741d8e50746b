#!/bin/sh
# tools/bench.sh - the `make bench` driver: runs every benchmark program
# $BUILD/bench/* (built from tests/bench/*.c), then every benchmark script
# tests/bench/*.sh, one after the other, and prints their output. To add a
# benchmark, drop tests/bench/NAME.c (built and run with no arguments) or
# tests/bench/NAME.sh; each reads what it needs from the environment below.
#
#   GUARDD_BENCH_MODEL  full-shape Llama Guard 3 1B random-weight fixture
#                       ($DEPS_DIR/fixtures/lg3-1b-seed1, generated once here
#                       with `guardctl fixture` if missing, ~3 GB)
#   GUARDD_BENCH_SMALL_MODEL  a random checkpoint with the real vocabulary and
#                       4 layers of width 512 ($DEPS_DIR/fixtures/lg3-small-seed1,
#                       ~300 MB, generated once): bench_prefix_cache, whose
#                       multi-turn workload would take ~10 min per pass on the 1B
#   GUARDD_TOKENIZER    the genuine Llama 3 tokenizer.json
#   BENCH=pattern       runs only benchmarks whose name contains pattern
#   BENCH_KERNELS       kernel families bench_precision's table is run with,
#                       one run each (GUARDD_KERNELS): default "auto" (the
#                       best this CPU has); "auto avx2" adds the AVX2 path
#                       (titled "AVX2 kernels forced on <cpu>"), so an
#                       AVX-512 machine also gives the AVX2 ratios to f32;
#                       that run forces BLIS's AVX2 kernel set (zen3) too,
#                       for f32 and bf16's widened products alike, since
#                       BLIS would otherwise keep its AVX-512 kernels (the
#                       title names the set; GUARDD_BENCH_BLIS_ARCH picks
#                       another)
#
# The header names the CPU (model name, family/model, the instruction sets
# the kernels are chosen by); each benchmark names the kernels it ran on.
#
# Numbers depend on what else the machine runs: the load average is printed
# first so a reader can tell a quiet run from a busy one. Exit status is
# non-zero if any benchmark failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DEPS_DIR=${DEPS_DIR:-$PWD/.deps}
export GUARDD_TOKENIZER=${GUARDD_TOKENIZER:-$DEPS_DIR/tokenizer.json}
export GUARDD_BENCH_MODEL=${GUARDD_BENCH_MODEL:-$DEPS_DIR/fixtures/lg3-1b-seed1}
export GUARDD_BENCH_SMALL_MODEL=${GUARDD_BENCH_SMALL_MODEL:-$DEPS_DIR/fixtures/lg3-small-seed1}

# fixture DIR ARGS...: generates a random-weight checkpoint once.
fixture() {
    dir=$1; shift
    [ -f "$dir/model.safetensors" ] && return 0
    echo "bench: generating $dir (once)"
    tmp=$dir.tmp.$$
    tok=""
    [ -f "$GUARDD_TOKENIZER" ] && tok="--tokenizer $GUARDD_TOKENIZER"
    mkdir -p "$(dirname "$dir")"
    # shellcheck disable=SC2086
    if "$BUILD/guardctl" fixture "$@" --seed 1 --out "$tmp" $tok >/dev/null && mv "$tmp" "$dir"; then :
    else
        rm -rf "$tmp"
        echo "bench: cannot generate the benchmark model $dir" >&2
        exit 1
    fi
}
case "${BENCH:-}" in
    *prefix*) ;;   # the prefix cache benchmark runs on the small model only
    *) fixture "$GUARDD_BENCH_MODEL" --preset llama-guard-3-1b ;;
esac
fixture "$GUARDD_BENCH_SMALL_MODEL" --preset tiny --layers 4 --dim 512 --heads 8 --kv-heads 2 --hidden 2048

echo "bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
fam=$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -1)
mod=$(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -1)
isa=$(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -1 | tr ' ' '\n' |
      grep -xE 'avx2|avx512f|avx_vnni|avx512_vnni|avx512_bf16|amx_bf16|amx_int8' | tr '\n' ' ' | sed 's/ $//')
echo "bench: CPU $cpu (family $fam model $mod; ${isa:-no AVX2})"
rc=0
for b in "$BUILD"/bench/*; do
    [ -f "$b" ] && [ -x "$b" ] || continue
    name=$(basename "$b")
    case "$name" in *${BENCH:-}*) ;; *) continue ;; esac
    if [ "$name" = bench_precision ]; then
        for k in ${BENCH_KERNELS:-auto}; do
            echo "== $name (GUARDD_KERNELS=$k)"
            GUARDD_KERNELS=$k "$b" || { echo "bench: $name ($k) failed (exit $?)"; rc=1; }
        done
        continue
    fi
    echo "== $name"
    "$b" || { echo "bench: $name failed (exit $?)"; rc=1; }
done
for b in tests/bench/*.sh; do
    [ -f "$b" ] || continue
    name=$(basename "$b" .sh)
    case "$name" in *${BENCH:-}*) ;; *) continue ;; esac
    echo "== $name"
    BUILD=$BUILD DEPS_DIR=$DEPS_DIR sh "$b" || { echo "bench: $name failed (exit $?)"; rc=1; }
done
exit $rc
