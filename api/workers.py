"""`pledge api --workers N`: N API processes, each with a listening socket of its own.

uvicorn's own `workers=N` shares ONE listening socket among its processes, and whichever
process wakes first accepts the next connection. With long-lived keep-alive connections the
split stays as it fell: measured under `pledge bench drawdown` with 64 connections and two
workers, 58/6, 16/48, 29/35 from run to run, so one process saturated while the other idled
(271 to 1,077 money requests/s for the same code). Here every worker binds its own socket
with SO_REUSEPORT, and the kernel spreads incoming connections across them by a hash of the
connection's addresses. Where SO_REUSEPORT is missing, uvicorn's shared socket is used.

Each worker builds its own platform (store pool, caches, money desk) from the environment at
startup (`api.main:worker_app`). The parent forwards SIGINT/SIGTERM to the workers and waits
for them; if a worker dies, the others are stopped and the parent exits non-zero.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn

from api.http_protocol import CoalescingHttpToolsProtocol

REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Run `workers` API processes on host:port until signalled (or one of them dies)."""
    if not REUSE_PORT:
        uvicorn.run("api.main:worker_app", factory=True, workers=workers, host=host, port=port,
                    log_level=log_level, access_log=log_level in ("debug", "trace"))
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(host, port, log_level), name=f"pledge-api-{i}")
             for i in range(workers)]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.start()
    failed = False
    while any(p.is_alive() for p in procs):
        for p in procs:
            p.join(timeout=0.5)
            if not p.is_alive() and p.exitcode not in (0, None) and not stopping:
                failed = True
                stop(signal.SIGTERM, None)
    if failed:
        raise SystemExit(1)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    from api.cli import run

    sock = _listen(host, port)
    config = uvicorn.Config("api.main:worker_app", factory=True, log_level=log_level,
                            access_log=log_level in ("debug", "trace"), http=CoalescingHttpToolsProtocol)
    server = uvicorn.Server(config)
    run(lambda: server.serve(sockets=[sock]), uvloop=True)


__all__ = ["REUSE_PORT", "serve"]
