"""Descriptors passed with qemu.qmp's send_fd_scm, taken by getfd and add-fd, and used by
migrate (fd:NAME). Prints one JSON line per step: {"cmd", "ret"} or {"cmd", "error"}."""
import asyncio, json, os, sys

from qemu.qmp import QMPClient
from qemu.qmp.qmp_client import ExecuteError


def out(o):
    print(json.dumps(o), flush=True)


async def main(path):
    qmp = QMPClient("fdpass")
    await qmp.connect(path)

    async def ex(name, args=None):
        try:
            ret = await asyncio.wait_for(qmp.execute(name, args), 10)
            out({"cmd": name, "ret": ret})
            return ret
        except ExecuteError as e:
            out({"cmd": name, "error": {"class": e.error_class, "desc": str(e)}})

    r, w = os.pipe()
    await ex("getfd", {"fdname": "none"})
    # A descriptor waits for the command that takes it.
    qmp.send_fd_scm(r)
    await ex("query-fdsets")
    await ex("getfd", {"fdname": "f1"})
    await ex("getfd", {"fdname": "f2"})
    # A later message's descriptor replaces one nothing took.
    qmp.send_fd_scm(r)
    qmp.send_fd_scm(w)
    await ex("getfd", {"fdname": "f3"})
    await ex("getfd", {"fdname": "f4"})
    await ex("closefd", {"fdname": "f1"})
    await ex("closefd", {"fdname": "f1"})
    # A refused name still uses up the descriptor.
    qmp.send_fd_scm(r)
    await ex("getfd", {"fdname": "1x"})
    await ex("getfd", {"fdname": "f5"})
    await ex("add-fd")
    qmp.send_fd_scm(w)
    await ex("add-fd", {"fdset-id": 3, "opaque": "x"})
    qmp.send_fd_scm(w)
    await ex("add-fd", {"fdset-id": 3})
    qmp.send_fd_scm(r)
    await ex("add-fd")
    await ex("query-fdsets")
    await ex("remove-fd", {"fdset-id": 3, "fd": 9999})
    await ex("remove-fd", {"fdset-id": 0})
    await ex("query-fdsets")
    # The machine writes its migration stream into a passed pipe.
    mr, mw = os.pipe()
    os.set_blocking(mr, False)
    qmp.send_fd_scm(mw)
    os.close(mw)
    await ex("getfd", {"fdname": "mig"})
    await ex("migrate", {"uri": "fd:mig"})
    stream = b""

    def drain():
        nonlocal stream
        try:
            while chunk := os.read(mr, 65536):
                stream += chunk
        except BlockingIOError:
            pass

    status = None
    for _ in range(200):
        drain()
        status = (await qmp.execute("query-migrate")).get("status")
        if status in ("completed", "failed"):
            break
        await asyncio.sleep(0.05)
    drain()
    # The stream's format is each machine's own: its first bytes (qmpkit) or
    # QEMU's magic and version.
    out({"migration": status, "head": stream[:8].hex()})
    await qmp.disconnect()


asyncio.run(main(sys.argv[1]))
