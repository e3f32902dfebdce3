"""uvicorn's HTTP protocol (httptools) with a response's writes leaving in one send.

uvicorn writes a response's status line and headers with one `transport.write` and its body
with another; on uvloop each write to an idle socket is a `send` syscall of its own, and on
loopback each segment may wake the client once more. `WriteCoalescer` holds what is written to a
connection during one turn of the event loop and writes it at the end of that turn, joined: a
head and a body written together (Starlette writes both in one task step) leave as one segment.
Nothing waits longer than the current turn, so a streamed response (the SSE feed) still sends its
head at once, and every chunk in the turn it was written.

Measured side by side (two API servers, the same requests alternating in slices; the first
pair with a scratch patch that joined head and body inside uvicorn's `send`, the others with
this module): health checks 9,977 -> 10,869 and 10,791 -> 13,682 req/s (99 -> 91 and 92 -> 72
us of API CPU per request); drawdowns and repayments 2,506 -> 2,667, 2,282 -> 2,460 and
2,282 -> 2,324 req/s, p99 51.4 -> 42.8, 61.9 -> 52.9 and 55.3 -> 50.8 ms (docs/scaling.md). A
trivial answer gains most, so `pledge bench drawdown`'s ratio falls with it. aiohttp coalesces
small responses the same way (aio-libs/aiohttp#10991).

`CoalescingHttpToolsProtocol` is uvicorn's own protocol with its transport wrapped; pass it as
`uvicorn.Config(http=...)` (`pledge api`, its workers, `pledge serve`, the demo).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "WriteCoalescer"]


class WriteCoalescer:
    """A transport whose writes in one turn of the event loop leave in one write.

    Everything else is the wrapped transport's: reading, flow control, extra info. `close()`
    sends what is held first, then closes; `abort()` drops it with the connection.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._held is None:
            self._held = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            self._held.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a `WriteCoalescer`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(WriteCoalescer(transport, self.loop))  # type: ignore[arg-type]
