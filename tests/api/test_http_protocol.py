"""api/http_protocol.py: a response's writes leave in one send, and nothing waits past the turn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from api.http_protocol import CoalescingHttpToolsProtocol, WriteCoalescer


class Recording(asyncio.Transport):
    """A transport that keeps what it was asked to write, and in which calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.calls.append("write")

    def close(self) -> None:
        self.closing = True
        self.calls.append("close")

    def abort(self) -> None:
        self.closing = True
        self.calls.append("abort")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4242)}.get(name, default)


async def turn() -> None:
    """Let the event loop finish its current turn (the coalescer flushes at its end)."""
    await asyncio.sleep(0)


async def test_the_writes_of_one_turn_leave_together_in_order() -> None:
    t = Recording()
    w = WriteCoalescer(t, asyncio.get_running_loop())
    w.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n")
    w.write(memoryview(b"{}"))
    w.write(b"")  # nothing to send: no write of its own
    assert t.writes == []  # held until the turn ends
    await turn()
    assert t.writes == [b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"]
    w.writelines([b"a", b"b"])
    await turn()
    w.write(b"c")
    await turn()
    assert t.writes[1:] == [b"ab", b"c"]  # a later turn is a later write


async def test_close_sends_what_is_held_before_closing() -> None:
    t = Recording()
    w = WriteCoalescer(t, asyncio.get_running_loop())
    w.write(b"head")
    w.write(b"body")
    w.close()
    assert t.calls == ["write", "close"] and t.writes == [b"headbody"]
    await turn()  # the scheduled flush finds nothing left
    assert t.calls == ["write", "close"]


async def test_abort_drops_what_is_held_and_a_closed_connection_is_not_written() -> None:
    t = Recording()
    w = WriteCoalescer(t, asyncio.get_running_loop())
    w.write(b"lost")
    w.abort()
    await turn()
    assert t.calls == ["abort"]
    t2 = Recording()
    w2 = WriteCoalescer(t2, asyncio.get_running_loop())
    w2.write(b"too late")
    t2.closing = True  # the client went away within the turn
    await turn()
    assert t2.writes == []


async def test_everything_else_is_the_wrapped_transport() -> None:
    t = Recording()
    w = WriteCoalescer(t, asyncio.get_running_loop())
    assert w.get_extra_info("peername") == ("127.0.0.1", 4242)
    assert not w.is_closing()
    t.closing = True
    assert w.is_closing()


# End to end: uvicorn with the protocol, a raw socket for a client.


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/stream":  # the head now, the body a while later (an SSE feed's shape)
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        await send(start)
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free, log_level="warning", http=CoalescingHttpToolsProtocol
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield free
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def conn(port: int) -> AsyncIterator[Conn]:
    """A keep-alive connection to the server, closed after the test."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield r, w
    finally:
        w.close()


async def read_response(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    return head, await r.readexactly(length)


async def test_keep_alive_requests_and_a_head_request_get_whole_answers(conn: Conn) -> None:
    r, w = conn
    for _ in range(3):
        w.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        head, body = await asyncio.wait_for(read_response(r), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b'{"ok": true}'
    w.write(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n")  # a head and no body write at all
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    assert b"content-length: 12" in head.lower()
    w.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")  # and the connection still serves
    _, body = await asyncio.wait_for(read_response(r), 5)
    assert body == b'{"ok": true}'


async def test_a_streamed_head_is_not_held_for_its_body(conn: Conn) -> None:
    r, w = conn
    w.write(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 0.4)  # before the body's 0.5 s
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
    chunks = await asyncio.wait_for(r.readuntil(b"0\r\n\r\n"), 5)
    assert chunks == b"4\r\nlate\r\n0\r\n\r\n"


async def test_a_closing_answer_arrives_whole_before_the_close(conn: Conn) -> None:
    r, w = conn
    w.write(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
    everything = await asyncio.wait_for(r.read(), 5)  # to EOF
    assert everything.startswith(b"HTTP/1.1 200 OK\r\n")
    assert everything.endswith(b'\r\n\r\n{"ok": true}')
