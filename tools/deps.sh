#!/bin/sh
# Installs everything guardd's build, tests and demo need on Debian 12, as root:
# the Debian packages, then the pinned npm test tools and the genuine Llama 3.2
# tokenizer.json (checksum-verified) into DEPS_DIR (default ./.deps).
# Idempotent: a second run checks and returns quickly.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
deps_dir=${1:-$here/../.deps}
mkdir -p "$deps_dir"

PKGS="build-essential pkg-config git ca-certificates curl
librdkafka-dev libmsgpack-dev libconfig-dev libblis-dev libblis-openmp-dev libdnnl-dev libsystemd-dev
check libpcre2-dev libjansson-dev libmicrohttpd-dev
python3 python3-numpy python3-jinja2 python3-msgpack python3-jsonschema
prometheus systemd procps
clang libclang-rt-14-dev llvm"

# clang builds the libFuzzer harnesses (tests/fuzz/); libFuzzer and the
# ASan/UBSan runtimes are in libclang-rt-14-dev, which clang only recommends
# (and recommends are not installed here); llvm brings llvm-symbolizer for
# readable sanitizer stack traces.

# Node.js and npm drive the independent-client Kafka tests. Debian's packages
# are used only when the machine has no node/npm yet: a Node.js installed from
# another source (e.g. one that bundles its own npm) conflicts with Debian's
# npm package and apt would refuse the whole install.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
fi

for step in "$here"/deps.d/*.sh; do
    [ -e "$step" ] || continue
    sh "$step" "$deps_dir"
done
