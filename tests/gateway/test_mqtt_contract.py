"""One contract for the MQTT edge, run against every broker we support.

The `target` fixture runs each contract test against the embedded amqtt broker (MQTT 3.1.1)
and a real Mosquitto 2 (MQTT 5 and 3.1.1). Where brokers differ, the difference is a named fact
of the target (`inflight_window`, `redelivers_after_reconnect`, `shared_subscriptions`), so the
same assertions state what each broker does; docs/mqtt.md quotes these facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pytest

from gateway.broker import EmbeddedBroker
from gateway.mqtt import (
    InboundMessage,
    LastWill,
    MqttConfig,
    MqttConnectError,
    MqttPublisher,
    MqttPublishError,
    MqttSubscriber,
    discard_session,
)

# --------------------------------------------------------------------------- the targets


@dataclass(frozen=True)
class BrokerKind:
    name: str
    protocol: Literal[5, 311]
    embedded: bool
    # How many unacknowledged QoS 1 messages the broker sends a subscriber at once with
    # receive_maximum=1000; None: no window below 300 (our largest burst in these tests).
    inflight_window: int | None
    # Does a reconnecting persistent session get its unacknowledged messages again?
    redelivers_after_reconnect: bool
    # Does `$share/<group>/<filter>` split messages between the group's members?
    shared_subscriptions: bool


KINDS = [
    BrokerKind("amqtt-311", 311, embedded=True, inflight_window=None,
               redelivers_after_reconnect=False, shared_subscriptions=False),
    BrokerKind("mosquitto-5", 5, embedded=False, inflight_window=None,
               redelivers_after_reconnect=True, shared_subscriptions=True),
    # Mosquitto's max_inflight_messages (default 20) caps 3.1.1 clients, which have no
    # Receive Maximum to ask for more. Mosquitto accepts $share from 3.1.1 clients too.
    BrokerKind("mosquitto-311", 311, embedded=False, inflight_window=20,
               redelivers_after_reconnect=True, shared_subscriptions=True),
]


@dataclass
class Target:
    """A broker under test, and the clients a test made on it (stopped at teardown)."""

    kind: BrokerKind
    url: str
    embedded: EmbeddedBroker | None
    prefix: str = field(default_factory=lambda: f"test/{uuid.uuid4().hex}")
    _subscribers: list[MqttSubscriber] = field(default_factory=list)
    _publishers: list[MqttPublisher] = field(default_factory=list)
    _sessions: set[str] = field(default_factory=set)

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def config(self, client_id: str | None = None, **changes: Any) -> MqttConfig:
        config = MqttConfig(
            url=self.url, client_id=client_id or f"test-{uuid.uuid4().hex[:12]}",
            protocol=self.kind.protocol, session_expiry_s=60, reconnect_min_s=0.1,
            reconnect_max_s=0.5, connect_timeout_s=3.0)
        return replace(config, **changes)

    async def subscriber(self, filters: list[str], client_id: str | None = None,
                         **changes: Any) -> MqttSubscriber:
        sub = MqttSubscriber(self.config(client_id, **changes))
        self._subscribers.append(sub)
        self._sessions.add(sub.config.client_id)
        await sub.start(filters)
        return sub

    async def publisher(self) -> MqttPublisher:
        pub = MqttPublisher(self.config(), max_inflight=100)
        self._publishers.append(pub)
        await pub.connect()
        return pub

    async def drop_connections_and_sessions(self, client_id: str) -> None:
        """Make the broker drop `client_id`'s connection and forget its session."""
        if self.embedded is not None:
            # A restart: amqtt keeps nothing, and takeover on amqtt does not disconnect the
            # old connection (see test_amqtt_takeover_leaves_a_zombie_connection).
            await self.embedded.stop()
            await self.embedded.start()
        else:
            # Takeover with a clean start: Mosquitto disconnects the old connection
            # ("Session taken over") and deletes the session with its subscriptions.
            await discard_session(self.config(client_id))

    async def close(self) -> None:
        for sub in self._subscribers:
            await sub.stop()
        for pub in self._publishers:
            await pub.close()
        if self.embedded is None:
            # Mosquitto persists 3.1.1 sessions forever: do not leave ours behind.
            for client_id in self._sessions:
                await discard_session(self.config(client_id))


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def broker(request: pytest.FixtureRequest) -> tuple[BrokerKind, str, EmbeddedBroker | None]:
    """The parametrization: which broker, its URL, and the embedded broker if it is one."""
    kind: BrokerKind = request.param
    if kind.embedded:
        embedded: EmbeddedBroker = request.getfixturevalue("embedded_broker")
        return kind, embedded.url, embedded
    # Skips without Mosquitto, or fails when CI=true.
    return kind, request.getfixturevalue("mqtt_url"), None


@pytest.fixture
async def target(broker: tuple[BrokerKind, str, EmbeddedBroker | None]) -> AsyncIterator[Target]:
    target = Target(*broker)
    try:
        yield target
    finally:
        await target.close()  # before the embedded broker stops: clients first


# --------------------------------------------------------------------------- helpers


async def collect(sub: MqttSubscriber, count: int, within: float = 3.0,
                  ack: bool = False) -> list[InboundMessage]:
    """Messages from `sub` until `count` arrived or `within` seconds passed."""
    got: list[InboundMessage] = []
    if count <= 0:
        return got
    stream = sub.messages()
    try:
        async with asyncio.timeout(within):
            async for message in stream:
                got.append(message)
                if ack:
                    assert sub.ack(message)
                if len(got) >= count:
                    break
    except TimeoutError:
        pass
    finally:
        await stream.aclose()
    return got


async def collect_group(group: list[MqttSubscriber], total: int,
                        within: float) -> list[list[InboundMessage]]:
    """Acknowledged messages per member, until `total` arrived across the group."""
    got: list[list[InboundMessage]] = [[] for _ in group]
    done = asyncio.Event()

    async def drain(index: int, sub: MqttSubscriber) -> None:
        async for message in sub.messages():
            assert sub.ack(message)
            got[index].append(message)
            if sum(map(len, got)) >= total:
                done.set()

    tasks = [asyncio.create_task(drain(i, sub)) for i, sub in enumerate(group)]
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await done.wait()
        await asyncio.sleep(0.2)  # a duplicate would arrive now
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return got


def numbered(topic: str, count: int) -> list[tuple[str, bytes]]:
    return [(topic, b"%d" % i) for i in range(count)]


def numbers(messages: list[InboundMessage]) -> list[int]:
    return [int(m.payload) for m in messages]


async def eventually_receive(target: Target, sub: MqttSubscriber, topic: str,
                             within: float = 4.0) -> InboundMessage | None:
    """Publish probes until one reaches `sub` (the subscription may not exist yet)."""
    pub = await target.publisher()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        await pub.publish(topic, b"probe")
        got = await collect(sub, 1, within=0.1, ack=True)
        if got:
            return got[0]
    return None


# --------------------------------------------------------------------------- the contract


async def test_a_qos1_message_arrives_once_with_its_payload_intact(target: Target) -> None:
    topic = target.topic("dev-1/rfid")
    sub = await target.subscriber([target.topic("+/rfid")])
    payload = bytes(range(256)) * 64  # 16 KiB, every byte value, NUL and invalid UTF-8
    pub = await target.publisher()

    await pub.publish(topic, payload, qos=1)
    [message] = await collect(sub, 1)
    assert sub.ack(message)

    assert (message.topic, message.payload, message.qos) == (topic, payload, 1)
    assert (message.retain, message.dup) == (False, False)
    assert await collect(sub, 1, within=0.3) == []  # acknowledged: no second copy


async def test_messages_from_one_publisher_keep_their_order(target: Target) -> None:
    topic = target.topic("dev-1/scale")
    sub = await target.subscriber([topic])
    pub = await target.publisher()

    await pub.publish_many(numbered(topic, 200))
    got = await collect(sub, 200, ack=True)

    assert numbers(got) == list(range(200))


async def test_the_broker_stops_at_its_inflight_window_until_we_acknowledge(
        target: Target) -> None:
    """With receive_maximum=1000, MQTT 5 gets all 300 unacknowledged messages at once;
    Mosquitto gives a 3.1.1 client only its max_inflight_messages (20); amqtt has no window."""
    topic = target.topic("burst")
    sub = await target.subscriber([topic], receive_maximum=1000)
    pub = await target.publisher()
    await pub.publish_many(numbered(topic, 300))

    unacked = await collect(sub, 300, within=1.0 if target.kind.inflight_window else 3.0)
    assert len(unacked) == (target.kind.inflight_window or 300)

    for message in unacked:
        assert sub.ack(message)
    rest = await collect(sub, 300 - len(unacked), ack=True)
    assert numbers(unacked + rest) == list(range(300))


async def test_mqtt5_receive_maximum_sets_the_window(target: Target) -> None:
    """The Receive Maximum we send in CONNECT is what the broker honours (MQTT 5 only)."""
    if target.kind.protocol != 5:
        pytest.skip("Receive Maximum is an MQTT 5 property")
    topic = target.topic("window")
    sub = await target.subscriber([topic], receive_maximum=7)
    pub = await target.publisher()
    await pub.publish_many(numbered(topic, 30))

    unacked = await collect(sub, 30, within=0.5)
    assert numbers(unacked) == list(range(7))
    for message in unacked:
        sub.ack(message)
    assert numbers(await collect(sub, 23, ack=True)) == list(range(7, 30))


async def test_unacknowledged_messages_after_a_reconnect_with_the_same_session(
        target: Target) -> None:
    """The gateway's no-loss guarantee: messages received but never acknowledged (a crash
    before commit) come back when the same client id reconnects to its persistent session.
    Mosquitto: all 500 come back. amqtt: none do (documented limit, docs/mqtt.md)."""
    topic = target.topic("crash")
    client_id = f"gw-{uuid.uuid4().hex[:12]}"
    first = await target.subscriber([topic], client_id=client_id)
    pub = await target.publisher()
    await pub.publish_many(numbered(topic, 500))
    window = target.kind.inflight_window or 500
    assert len(await collect(first, window, within=3.0)) == window  # never acknowledged
    await first.stop()  # "crash": the broker still holds the unacknowledged messages

    second = await target.subscriber([topic], client_id=client_id)
    again = await collect(second, 500, within=3.0 if target.kind.redelivers_after_reconnect
                          else 1.0, ack=True)

    if target.kind.redelivers_after_reconnect:
        assert numbers(again) == list(range(500))
        assert [m.dup for m in again[:window]] == [True] * window  # the ones sent before
    else:
        assert again == []


async def test_subscriptions_come_back_after_the_broker_drops_us(target: Target) -> None:
    """Even when the broker forgot the session (restart, takeover with a clean start), the
    subscriber resubscribes on reconnect and messages flow again."""
    topic = target.topic("resubscribe")
    sub = await target.subscriber([topic])
    assert sub.connection_count == 1

    await target.drop_connections_and_sessions(sub.config.client_id)
    message = await eventually_receive(target, sub, topic)

    assert message is not None and message.payload == b"probe"
    assert sub.connection_count >= 2


async def test_a_shared_subscription_splits_messages_between_the_group(target: Target) -> None:
    """Mosquitto: two members of `$share/g/...` share 200 messages, none lost or duplicated.
    amqtt: the `$share/...` filter is granted but nothing ever arrives (documented limit)."""
    topic = target.topic("shared")
    group = [await target.subscriber([f"$share/g/{topic}"]) for _ in range(2)]
    pub = await target.publisher()

    await pub.publish_many(numbered(topic, 200))
    within = 3.0 if target.kind.shared_subscriptions else 0.5
    a, b = await collect_group(group, 200, within=within)

    if target.kind.shared_subscriptions:
        assert sorted(numbers(a) + numbers(b)) == list(range(200))
        assert a and b
        # Each member still sees its share in publish order.
        assert numbers(a) == sorted(numbers(a)) and numbers(b) == sorted(numbers(b))
    else:
        assert (a, b) == ([], [])


async def test_an_ack_is_sent_once_and_never_after_stop(target: Target) -> None:
    topic = target.topic("ack")
    sub = await target.subscriber([topic])
    pub = await target.publisher()
    await pub.publish(topic, b"x")
    [message] = await collect(sub, 1)

    assert sub.ack(message) is True
    assert sub.ack(message) is False  # already acknowledged: nothing sent
    await pub.publish(topic, b"y")
    [later] = await collect(sub, 1)
    await sub.stop()
    assert sub.ack(later) is False  # that connection is gone; the broker will redeliver


async def test_the_last_will_is_published_when_a_client_vanishes(target: Target) -> None:
    status = target.topic("gw-1/status")
    watcher = await target.subscriber([status])

    doomed = MqttPublisher(target.config(last_will=LastWill(status, b"offline", retain=False)))
    await doomed.connect()
    # Vanish without DISCONNECT: close the socket under paho (a crash or a cut cable).
    client = doomed._client
    assert client is not None
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    await doomed.close()

    [will] = await collect(watcher, 1, ack=True)
    assert (will.topic, will.payload) == (status, b"offline")


# --------------------------------------------------------------------------- adapter edges


async def test_start_fails_with_a_typed_error_when_nobody_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        sub = MqttSubscriber(MqttConfig(url=f"mqtt://127.0.0.1:{port}", client_id="nobody",
                                        connect_timeout_s=0.5, reconnect_min_s=0.1))
        with pytest.raises(MqttConnectError) as caught:
            await sub.start(["a/#"])
    assert caught.value.client_id == "nobody"
    assert "TCP connection failed" in str(caught.value)


async def test_a_broker_that_never_answers_times_out_and_our_socket_is_closed() -> None:
    """TCP connects (the kernel accepts into the backlog) but no CONNACK ever comes: start()
    gives up after connect_timeout_s with a typed error and closes its socket, so a broker that
    wakes up later does not keep a half-open session of ours."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        sub = MqttSubscriber(MqttConfig(url=f"mqtt://127.0.0.1:{port}", client_id="silent",
                                        connect_timeout_s=0.5, reconnect_min_s=0.1))
        with pytest.raises(MqttConnectError) as caught:
            await sub.start(["a/#"])
        assert caught.value.client_id == "silent"
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            received = b""
            while chunk := conn.recv(4096):  # the CONNECT packet, then end of stream
                received += chunk
        assert received[:1] == b"\x10"  # CONNECT was sent; the recv loop ended: socket closed


async def test_publishing_to_a_wildcard_is_a_typed_error(target: Target) -> None:
    pub = await target.publisher()
    with pytest.raises(MqttPublishError) as caught:
        await pub.publish(target.topic("+/bad"), b"x")
    assert caught.value.topic.endswith("/+/bad")


# --------------------------------------------------------------------------- embedded broker


async def test_the_embedded_broker_picks_a_free_port_and_says_what_it_cannot_do(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        async with EmbeddedBroker() as broker:
            assert broker.url.startswith("mqtt://127.0.0.1:")
            assert broker.port != 1883
            url = broker.url
        # Stopped: the port is free again.
        with socket.socket() as again:
            again.bind(("127.0.0.1", broker.port))
    [started] = [r.getMessage() for r in caplog.records if "started an embedded" in r.getMessage()]
    assert str(broker.port) in started
    assert "MQTT 3.1.1 only" in started and "does not redeliver" in started
    assert url == f"mqtt://127.0.0.1:{broker.port}"
    chatter = [r for r in caplog.records if r.name.startswith("amqtt") and r.levelno < logging.WARNING]
    assert chatter == []  # amqtt's INFO lines (one per connection, state change...) are silenced


async def test_two_embedded_brokers_do_not_collide(embedded_broker: EmbeddedBroker) -> None:
    async with EmbeddedBroker() as second:
        assert second.port != embedded_broker.port


async def test_the_embedded_broker_refuses_mqtt5_clients(
        embedded_broker: EmbeddedBroker) -> None:
    """amqtt closes the connection on an MQTT 5 CONNECT; paho then retries until our timeout."""
    sub = MqttSubscriber(MqttConfig(url=embedded_broker.url, client_id="v5", protocol=5,
                                    connect_timeout_s=1.0, reconnect_min_s=0.2))
    with pytest.raises(MqttConnectError) as caught:
        await sub.start(["a/#"])
    assert "disconnected" in str(caught.value)


async def test_amqtt_takeover_leaves_a_zombie_connection(
        embedded_broker: EmbeddedBroker) -> None:
    """Documents an amqtt 0.12 quirk: a second client with the same id and a clean session
    deletes the first one's session but leaves its connection open, so the first client stays
    "connected" and never receives anything again. Mosquitto disconnects it instead."""
    target = Target(KINDS[0], embedded_broker.url, embedded_broker)
    try:
        topic = target.topic("zombie")
        sub = await target.subscriber([topic])
        await discard_session(target.config(sub.config.client_id))

        assert await eventually_receive(target, sub, topic, within=1.0) is None
        assert sub.connected and sub.connection_count == 1
    finally:
        await target.close()


@pytest.mark.slow
async def test_amqtt_drops_a_message_unacknowledged_for_5_seconds(
        embedded_broker: EmbeddedBroker) -> None:
    """Documents an amqtt 0.12 limit: it waits 5 s for a PUBACK, then forgets the message
    (no retry, not even on reconnect). A gateway commit slower than that loses data there."""
    target = Target(KINDS[0], embedded_broker.url, embedded_broker)
    try:
        topic = target.topic("slow-commit")
        sub = await target.subscriber([topic])
        pub = await target.publisher()
        await pub.publish(topic, b"x")
        [message] = await collect(sub, 1)
        await asyncio.sleep(5.5)
        sub.ack(message)  # too late: amqtt logs "Received PUBACK for unknown pending message"
        await sub.stop()
        again = await target.subscriber([topic], client_id=sub.config.client_id)
        assert await collect(again, 1, within=1.0) == []
    finally:
        await target.close()

