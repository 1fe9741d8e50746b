#!/usr/bin/env python3
"""make-tokenizer.py - turns Meta's Llama 3.0 tokenizer.json into the 3.1/3.2 one.

Usage: make-tokenizer.py IN OUT

The 3.0 and 3.1/3.2 files differ only in the `content` names of some added
(special) tokens. This rewrites exactly those strings as a byte-exact textual
edit (no JSON re-serialisation, which would change whitespace and escapes), so
the result matches the genuine file byte for byte; the caller verifies sha256.
Each added token block in the file reads `"id": N,\n      "content": "...",`.
"""
import re
import sys

KEEP = {128000, 128001, 128002, 128003, 128006, 128007, 128009}
FIXED = {128004: "<|finetune_right_pad_id|>", 128005: "<|reserved_special_token_2|>",
         128008: "<|eom_id|>", 128010: "<|python_tag|>"}


def name_31(tok_id):
    """The Llama 3.1 name of an added token, or None to keep the 3.0 name."""
    if tok_id in KEEP:
        return None
    if tok_id in FIXED:
        return FIXED[tok_id]
    if 128011 <= tok_id <= 128255:
        return "<|reserved_special_token_%d|>" % (tok_id - 128008)
    raise SystemExit("make-tokenizer: unexpected added token id %d" % tok_id)


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: make-tokenizer.py IN OUT")
    with open(sys.argv[1], "rb") as f:
        text = f.read().decode("utf-8")
    block = re.compile(r'("id": (\d+),\n\s*"content": ")(<\|[a-z0-9_]+\|>)(")')
    seen = []

    def rename(m):
        tok_id = int(m.group(2))
        seen.append(tok_id)
        new = name_31(tok_id)
        return m.group(1) + (new if new else m.group(3)) + m.group(4)

    out = block.sub(rename, text)
    if sorted(seen) != list(range(128000, 128256)):
        raise SystemExit("make-tokenizer: expected added tokens 128000..128255, found %d" % len(seen))
    with open(sys.argv[2], "wb") as f:
        f.write(out.encode("utf-8"))


if __name__ == "__main__":
    main()
