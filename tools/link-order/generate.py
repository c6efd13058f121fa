#!/usr/bin/env python3
"""Record which functions of a release `qmpkit` run while `qmpkit serve` starts and answers a
typical session, and then while `qmpkit schema check` checks QEMU's schema, and write them as
a linker script (`crates/cli/link-order.ld`, which `crates/cli/build.rs` hands to the linker
for release builds) that gathers their sections into one output section ahead of the rest of
the code: a machine's functions first, then those only the check runs. Placed together, the
code a machine (or a check) runs fills a few hundred KiB of the binary instead of being
spread over most of its 10 MB of text, so a process maps (and faults in) far fewer pages of
it.

usage: tools/link-order/generate.py [path/to/release/qmpkit] [output]

Needs valgrind (callgrind) and nm. Each function is matched by its mangled name without the
parts that change from build to build (the hash of legacy Rust names, the suffix ThinLTO gives
local symbols), so the script stays useful while the code changes; rebuild it when start-up
runs much new code. A pattern that matches nothing is harmless, and the script only moves
code, never changes it.
"""

import bisect
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

# The session: negotiation, then what test suites and management tools commonly ask first.
COMMANDS = [
    "qmp_capabilities",
    "query-version",
    "query-status",
    "query-commands",
    "query-qmp-schema",
    "query-name",
    "query-kvm",
    "query-cpus-fast",
    "query-block",
    "query-chardev",
    "query-pci",
    "stop",
    "cont",
]


def run_session(qmpkit, out):
    d = tempfile.mkdtemp(prefix="qmpkit-link-order-")
    sock = os.path.join(d, "m.sock")
    vg = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--callgrind-out-file=" + out,
         qmpkit, "serve", "--qmp", f"unix:{sock},server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not os.path.exists(sock):
        if time.time() > deadline or vg.poll() is not None:
            sys.exit("qmpkit serve did not come up under valgrind")
        time.sleep(0.1)
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    f = s.makefile("rwb")
    f.readline()
    for c in COMMANDS:
        f.write(b'{"execute": "%s"}\n' % c.encode())
        f.flush()
        while not f.readline().startswith((b'{"return"', b'{"error"')):
            pass
    s.close()
    time.sleep(0.5)
    vg.send_signal(2)
    vg.wait(timeout=60)
    os.rmdir(d) if not os.listdir(d) else None


def run_check(qmpkit, root, out):
    schema = os.path.join(root, "tests/data/qemu-ref/schema-10.0.2/qapi/qapi-schema.json")
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--callgrind-out-file=" + out,
         qmpkit, "schema", "check", schema],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit("qmpkit schema check failed under valgrind")


def executed_addresses(cg, binary):
    """Instruction addresses of `binary` that ran, in the callgrind output `cg`."""
    obnames, cur, addr, addrs = {}, None, 0, set()
    target = os.path.realpath(binary)
    with open(cg) as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(3):
                    obnames[m.group(2)] = m.group(3)
                if m.group(1) == "ob":
                    cur = obnames.get(m.group(2))
                continue
            if not line or line[0] not in "0x+-*":
                continue
            if line.startswith("0x"):
                addr = int(line.split()[0], 16)
            elif line[0] in "+-":
                addr += int(line.split()[0])
            # Code the linker script gathered shows in no known object (callgrind does not
            # attribute the extra section to the binary): the binary has a fixed address, so
            # `functions` tells its addresses apart.
            if cur == "???" or (cur and os.path.realpath(cur) == target):
                addrs.add(addr)
    return addrs


def functions(binary, addrs):
    """The functions (mangled names) holding `addrs`, in address order, and every function
    of the binary as (name, size)."""
    syms = []
    nm = subprocess.run(["nm", "-S", "--defined-only", binary],
                        capture_output=True, text=True, check=True).stdout
    for l in nm.splitlines():
        f = l.split()
        if len(f) == 4 and f[2] in "tT":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    syms.sort()
    starts = [s[0] for s in syms]
    hit = {}
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and syms[i][0] <= a < syms[i][0] + max(syms[i][1], 1):
            hit[syms[i][2]] = syms[i][0]
    return sorted(hit, key=hit.get), [(s[2], s[1]) for s in syms]


def stable(name):
    """A mangled name without the parts that change from build to build."""
    name = re.sub(r"\.llvm\.\d+$", "", name)
    m = re.match(r"^(_ZN.*)17h[0-9a-f]{16}E$", name)
    return m.group(1) if m else name


def patterns(names, syms):
    """Section name patterns for `names`, each once. A pattern without the per-build parts
    matches every instance of a generic function (legacy names tell them apart by the hash
    alone): where the instances together are much larger than those that ran, the ones that
    ran are named in full instead, so that the gathered code stays what a machine runs."""
    ran = {}
    for n in names:
        ran[stable(n)] = ran.get(stable(n), 0) + 1
    family, ran_size = {}, {}
    for n, size in syms:
        p = stable(n)
        family[p] = family.get(p, 0) + size
    names_set = set(names)
    for n, size in syms:
        if n in names_set:
            ran_size[stable(n)] = ran_size.get(stable(n), 0) + size
    out, seen, size = [], set(), 0
    for n in names:
        p = stable(n)
        if p in seen:
            continue
        seen.add(p)
        # Characters a linker script would read as syntax do not occur in mangled names.
        if re.search(r"[\[\]?*(){};,\s\"]", p):
            continue
        if family.get(p, 0) <= max(4 * ran_size.get(p, 0), 4096):
            out.append(p + "*")
            size += family.get(p, 0)
    # The instances of the other generic functions by their full names, hashes included:
    # these match only until the crate that instantiates them changes.
    for n, sz in syms:
        p = stable(n)
        if n in names_set and p + "*" not in out and not re.search(r"[\[\]?*(){};,\s\"]", n):
            out.append(re.sub(r"\.llvm\.\d+$", "", n) + "*")
            size += sz
    return out, size


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    qmpkit = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "qmpkit")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "crates/cli/link-order.ld")
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as cg:
        run_session(qmpkit, cg.name)
        names, syms = functions(qmpkit, executed_addresses(cg.name, qmpkit))
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as cg:
        run_check(qmpkit, root, cg.name)
        check, _ = functions(qmpkit, executed_addresses(cg.name, qmpkit))
    serve = set(names)
    names += [n for n in check if n not in serve]
    pats, size = patterns(names, syms)
    with open(out, "w") as f:
        f.write("/* Written by tools/link-order/generate.py: the functions `qmpkit serve` runs to\n"
                "   start and answer a session, then those `qmpkit schema check` runs, gathered\n"
                "   ahead of the rest of the code. */\n")
        f.write("SECTIONS {\n  .text.serve : {\n")
        f.write("".join(f"    *(.text.{p})\n" for p in pats))
        f.write("  }\n}\nINSERT BEFORE .text;\n")
    print(f"{out}: {len(names)} functions ran; {len(pats)} patterns gather {size // 1024} KiB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
