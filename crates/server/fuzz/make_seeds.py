#!/usr/bin/env python3
"""Seeds for the `session` and `validate` targets from the raw QMP
transcripts under tests/data/qemu-ref/transcripts (`>>> b'...'` lines are
the bytes a client sent, as Python byte literals; `>>> [N bytes] b'HEAD'
... b'TAIL'` lines are long nested requests, rebuilt to N bytes).

Usage: python3 make_seeds.py [TRANSCRIPT_DIR]   (writes seeds/session, seeds/validate)
"""
import ast
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "../../../tests/data/qemu-ref/transcripts")

# session: first byte = mode (bits 0-1 negotiation, 2-4 write size, 5-7 buffer).
WHOLE, BIG = 7 << 2, 6 << 5
RAW, NEG, NEG_OOB = 0, 1, 2


def sent(line):
    rest = line[4:]
    m = re.match(r"\[(\d+) bytes\] (b'.*') \.\.\. (b'.*')$", rest)
    if m:
        total = int(m.group(1))
        head, tail = ast.literal_eval(m.group(2)), ast.literal_eval(m.group(3))
        opening, closing = head[-1:], tail[:1]
        h, t = head.rstrip(opening), tail.lstrip(closing)
        depth = (total - len(h) - len(t)) // 2
        return h + opening * depth + closing * depth + t
    return ast.literal_eval(rest)


def write(kind, data):
    d = os.path.join(HERE, "seeds", kind)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    if not os.path.isdir(src):
        print(f"skipped: {src} not found")
        return
    for fn in sorted(os.listdir(src)):
        if not fn.endswith(".txt"):
            continue
        whole = b""
        for line in open(os.path.join(src, fn), encoding="utf-8"):
            line = line.rstrip("\n")
            if not line.startswith(">>> "):
                continue
            try:
                b = sent(line)
            except (ValueError, SyntaxError):
                continue
            whole += b
            mode = NEG_OOB if b"exec-oob" in b or b"oob" in b else NEG
            write("session", bytes([mode | WHOLE | BIG]) + b)
            if b.startswith(b"{") and b"execute" in b:
                write("validate", b"\n" + b)
        write("session", bytes([RAW | WHOLE | BIG]) + whole)


main()
