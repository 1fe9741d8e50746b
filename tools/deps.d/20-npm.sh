#!/bin/sh
# 20-npm.sh DEPS_DIR - installs the independent Kafka client used by the interop
# and end-to-end tests (kafkajs 2.2.4 + @msgpack/msgpack, exact versions and
# integrity hashes from tests/js/package-lock.json) into DEPS_DIR/node_modules,
# outside the tracked tree. Tests run node with NODE_PATH=DEPS_DIR/node_modules.
#
# `npm ci` installs exactly the lock file. Idempotent: when DEPS_DIR already
# holds the same lock file and both packages are present at the pinned
# versions, nothing is done.
set -eu
deps_dir=${1:?usage: 20-npm.sh DEPS_DIR}
mkdir -p "$deps_dir"
deps_dir=$(cd "$deps_dir" && pwd)   # absolute: node's require() needs it
here=$(cd "$(dirname "$0")/../.." && pwd)
src=$here/tests/js

installed_version() { # package name -> version or nothing
    f=$deps_dir/node_modules/$1/package.json
    [ -f "$f" ] && node -e 'process.stdout.write(require(process.argv[1]).version)' "$f" 2>/dev/null || true
}

if cmp -s "$src/package-lock.json" "$deps_dir/package-lock.json" &&
   [ "$(installed_version kafkajs)" = 2.2.4 ] &&
   [ -n "$(installed_version @msgpack/msgpack)" ]; then
    exit 0
fi

command -v npm >/dev/null || { echo "20-npm: FATAL: npm not found (Debian package npm)" >&2; exit 1; }
echo "20-npm: installing kafkajs and @msgpack/msgpack into $deps_dir/node_modules"
cp "$src/package.json" "$src/package-lock.json" "$deps_dir/"
(cd "$deps_dir" && npm ci --no-audit --no-fund --loglevel=error)
v=$(installed_version kafkajs)
if [ "$v" != 2.2.4 ]; then
    echo "20-npm: FATAL: kafkajs $v installed, want 2.2.4" >&2
    exit 1
fi
