#!/usr/bin/env python3
"""Record which functions of a release `qmpkit` run while `qmpkit serve` starts and answers a
typical session, and write them as a symbol ordering file for the linker
(`crates/cli/link-order.txt`, which `crates/cli/build.rs` hands to the linker for release
builds). Placed together, the code a machine runs fills a few hundred KiB of the binary
instead of being spread over most of its 10 MB of text, so a process maps (and faults in)
far fewer pages of it.

usage: tools/link-order/generate.py [path/to/release/qmpkit] [output]

Needs valgrind (callgrind) and nm. Functions are named as the linker sees them (mangled, with
their hashes): rebuild the list when dependencies or the compiler change (names that no longer
exist are ignored by the linker, and the ordering only moves code, never changes it).
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
            if cur and os.path.realpath(cur) == target:
                addrs.add(addr)
    return addrs


def functions(binary, addrs):
    """The functions (mangled names) holding `addrs`, in address order."""
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
    return sorted(hit, key=hit.get), sum(s[1] for s in syms if s[2] in hit)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    qmpkit = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "qmpkit")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "crates/cli/link-order.txt")
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as cg:
        run_session(qmpkit, cg.name)
        names, size = functions(qmpkit, executed_addresses(cg.name, qmpkit))
    with open(out, "w") as f:
        f.write("".join(n + "\n" for n in names))
    print(f"{out}: {len(names)} functions, {size // 1024} KiB of code", file=sys.stderr)


if __name__ == "__main__":
    main()
