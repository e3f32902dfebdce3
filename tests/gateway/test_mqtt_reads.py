"""MqttSubscriber's reads, against a scripted broker that cuts its bytes where it likes.

A real broker decides itself how its packets fall into TCP segments; this one writes them in
pieces of 1, 2, 3, 7, ... bytes with pauses in between, several packets in one write, a
PINGRESP between two PUBLISHes, and hangs up in the middle of a packet. What must hold: every
message arrives once, whole, in order; paho still gets its own packets (CONNACK, SUBACK,
PINGRESP) and the end of the connection, and the subscriber reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import pytest

from gateway.mqtt import InboundMessage, MqttConfig, MqttSubscriber
from tests.gateway.mqtt_wire import PINGRESP, packet, publish

PIECES = [1, 2, 3, 7, 50, 333, 1, 1000, 4, 64_000]

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ScriptedBroker:
    """Accepts connections; answers CONNECT and SUBSCRIBE; then runs `script(conn)`."""

    protocol: Literal[5, 311]
    acks: list[int] = field(default_factory=list)  # packet ids of the PUBACKs received
    connections: int = 0
    server: asyncio.Server | None = None
    scripts: list[Script] = field(default_factory=list)  # one per connection, in turn

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"mqtt://{host}:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        script = self.scripts[self.connections - 1]
        v5 = self.protocol == 5
        try:
            first, _ = await read_packet(reader)
            assert first == 0x10  # CONNECT
            writer.write(packet(0x20, b"\x01\x00" + (b"\x00" if v5 else b"")))  # session present
            first, body = await read_packet(reader)
            assert first == 0x82  # SUBSCRIBE
            writer.write(packet(0x90, body[:2] + (b"\x00" if v5 else b"") + b"\x01"))
            await writer.drain()
            reading = asyncio.create_task(self.read_acks(reader))
            try:
                await script(writer)
            finally:
                reading.cancel()
        finally:
            writer.close()

    async def read_acks(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                first, body = await read_packet(reader)
                if first == 0x40:
                    self.acks.append(int.from_bytes(body[:2], "big"))


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


async def write_in_pieces(writer: asyncio.StreamWriter, stream: bytes) -> None:
    """`stream` in pieces of PIECES' sizes (cycling), each flushed, with a pause: most arrive
    as reads of their own."""
    start, i = 0, 0
    while start < len(stream):
        size = PIECES[i % len(PIECES)]
        writer.write(stream[start : start + size])
        await writer.drain()
        await asyncio.sleep(0.002)
        start += size
        i += 1


@pytest.fixture(params=[5, 311], ids=["mqtt5", "mqtt311"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedBroker]:
    broker = ScriptedBroker(request.param)
    broker.server = await asyncio.start_server(broker.handle, "127.0.0.1", 0)
    async with broker.server:
        yield broker


def subscriber(broker: ScriptedBroker) -> MqttSubscriber:
    return MqttSubscriber(MqttConfig(url=broker.url, client_id="scripted", protocol=broker.protocol,
                                     reconnect_min_s=0.05, reconnect_max_s=0.1,
                                     connect_timeout_s=3.0))


def events(first: int, count: int, v5: bool) -> list[bytes]:
    return [publish(f"pledge/v1/SH1/r-{n % 3}/events", b'{"n":%d}' % n + b"." * (n % 400),
                    mid=n, properties=b"" if v5 else None)
            for n in range(first, first + count)]


async def take(sub: MqttSubscriber, count: int, within: float = 5.0) -> list[InboundMessage]:
    got: list[InboundMessage] = []
    stream = sub.messages()
    try:
        async with asyncio.timeout(within):
            async for message in stream:
                got.append(message)
                assert sub.ack(message)
                if len(got) == count:
                    break
    finally:
        await stream.aclose()
    return got


async def test_messages_cut_into_odd_pieces_arrive_whole_in_order_and_are_acknowledged(
        broker: ScriptedBroker) -> None:
    v5 = broker.protocol == 5
    sent = events(1, 300, v5)
    stream = b"".join([*sent[:150], PINGRESP, *sent[150:]])  # paho's packet in the middle
    done = asyncio.Event()

    async def script(writer: asyncio.StreamWriter) -> None:
        await write_in_pieces(writer, stream)
        await done.wait()

    broker.scripts = [script]
    sub = subscriber(broker)
    await sub.start(["pledge/v1/+/+/events"])
    try:
        got = await take(sub, 300)
        await asyncio.sleep(0.1)  # the PUBACKs reach the broker
    finally:
        done.set()
        await sub.stop()
    assert [m.payload for m in got] == [b'{"n":%d}' % n + b"." * (n % 400) for n in range(1, 301)]
    assert [m.topic for m in got[:3]] == [f"pledge/v1/SH1/r-{n}/events" for n in (1, 2, 0)]
    assert [m.mid for m in got] == list(range(1, 301))
    assert sorted(broker.acks) == list(range(1, 301))
    assert sub.connection_count == 1


async def test_a_connection_cut_mid_packet_is_noticed_and_the_subscriber_reconnects(
        broker: ScriptedBroker) -> None:
    v5 = broker.protocol == 5
    before, after = events(1, 20, v5), events(21, 20, v5)
    done = asyncio.Event()

    async def first(writer: asyncio.StreamWriter) -> None:
        # Everything of the first 20, then half of a 21st: the hang-up leaves it in our buffer.
        await write_in_pieces(writer, b"".join(before) + after[0][:7])

    async def second(writer: asyncio.StreamWriter) -> None:
        await write_in_pieces(writer, b"".join(after))
        await done.wait()

    broker.scripts = [first, second]
    sub = subscriber(broker)
    await sub.start(["pledge/v1/+/+/events"])
    try:
        got = await take(sub, 40)
    finally:
        done.set()
        await sub.stop()
    assert [m.mid for m in got] == list(range(1, 41))
    assert all(m.payload.startswith(b'{"n":%d}' % m.mid) for m in got)
    assert sub.connection_count == 2


async def test_a_packet_larger_than_one_read_arrives_whole(broker: ScriptedBroker) -> None:
    v5 = broker.protocol == 5
    payload = bytes(range(256)) * 1000  # 256,000 bytes: several reads of 64 KiB
    big = publish("pledge/v1/SH1/cam-1/events", payload, mid=5, properties=b"" if v5 else None)
    done = asyncio.Event()

    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(big + PINGRESP + publish("t/after", b"!", mid=6,
                                              properties=b"" if v5 else None))
        await writer.drain()
        await done.wait()

    broker.scripts = [script]
    sub = subscriber(broker)
    await sub.start(["pledge/v1/+/+/events"])
    try:
        got = await take(sub, 2)
    finally:
        done.set()
        await sub.stop()
    assert [(m.mid, m.payload) for m in got] == [(5, payload), (6, b"!")]



async def test_a_steady_stream_of_messages_keeps_the_connection_alive(
        broker: ScriptedBroker) -> None:
    """paho's keepalive must still learn that bytes arrive, though it no longer reads the
    PUBLISH packets itself: this broker never answers PINGREQ, yet streams messages, and a
    paho reading them itself would keep such a connection open (it pings again rather than
    give up while bytes flow)."""
    v5 = broker.protocol == 5
    sent = events(1, 300, v5)
    done = asyncio.Event()

    async def script(writer: asyncio.StreamWriter) -> None:
        for raw in sent:  # 300 messages over ~3 s: three keepalive intervals
            writer.write(raw)
            await writer.drain()
            await asyncio.sleep(0.01)
        await done.wait()

    broker.scripts = [script, script]
    sub = MqttSubscriber(MqttConfig(url=broker.url, client_id="scripted", protocol=broker.protocol,
                                    keepalive_s=1, reconnect_min_s=0.05, reconnect_max_s=0.1,
                                    connect_timeout_s=3.0))
    await sub.start(["pledge/v1/+/+/events"])
    try:
        got = await take(sub, 300, within=10.0)
    finally:
        done.set()
        await sub.stop()
    assert [m.mid for m in got] == list(range(1, 301))
    assert sub.connection_count == 1
