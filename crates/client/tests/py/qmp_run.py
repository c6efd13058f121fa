#!/usr/bin/env python3
"""Drive a QMP server with Python's qemu.qmp and print what happens as JSON lines.

usage: qmp_run.py SOCKET [--bench-seq SECONDS]

Without options: prints {"greeting": ...}, then reads one request per stdin line
({"execute": NAME, "arguments": {...}}) and prints {"return": ...} or
{"error": {"class": ..., "desc": ...}} for each, then {"events": [...]} with the names of
the events received meanwhile.
With --bench-seq S: sequential query-version for S seconds; prints {"seq_per_sec": RATE, "n": N}.
"""
import argparse
import asyncio
import json
import sys
import time

from qemu.qmp import EventListener, ExecuteError, QMPClient


async def run(args: argparse.Namespace) -> None:
    qmp = QMPClient("qmpkit-interop")
    await qmp.connect(args.socket)
    print(json.dumps({"greeting": dict(qmp.greeting._raw)}), flush=True)
    if args.bench_seq:
        # Warm up, then measure.
        for _ in range(50):
            await qmp.execute("query-version")
        n = 0
        start = time.perf_counter()
        deadline = start + args.bench_seq
        while True:
            for _ in range(50):
                await qmp.execute("query-version")
            n += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        print(json.dumps({"seq_per_sec": n / (now - start), "n": n}), flush=True)
        await qmp.disconnect()
        return
    events = []
    listener = EventListener()
    with qmp.listen(listener):
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            try:
                ret = await qmp.execute(req["execute"], req.get("arguments"))
                print(json.dumps({"return": ret}), flush=True)
            except ExecuteError as e:
                print(json.dumps({"error": {"class": e.error_class,
                                            "desc": e.error.error.desc}}),
                      flush=True)
        await asyncio.sleep(0.05)
        while not listener.empty():
            ev = await listener.get()
            events.append(ev["event"])
    print(json.dumps({"events": events}), flush=True)
    try:
        await qmp.disconnect()
    except EOFError:
        pass  # the server hung up first (e.g. after quit)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("--bench-seq", type=float, default=0.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
