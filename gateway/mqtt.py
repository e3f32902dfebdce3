"""The MQTT edge of the gateway: paho-mqtt 2.x behind a small asyncio-facing adapter.

Broker-facing only: this module knows topics, packet ids and sessions, never lots or money.

Threads. `MqttSubscriber`, the gateway's hot path, runs no paho thread: the asyncio loop
drives paho through its external-loop API (paho's examples/loop_asyncio.py): `add_reader` on
the socket reads it in large chunks, takes the PUBLISH packets itself and hands every other
packet to `loop_read()` (gateway/packets.py says why), paho's register/unregister-write
callbacks map to `add_writer`/`remove_writer`, and a task runs `loop_misc()` (keepalive) and
reconnects with backoff. Every callback then runs on the loop's thread: a message becomes a frozen
`InboundMessage` and goes straight into the queue, with no `call_soon_threadsafe` (a
self-pipe write and a wake-up per message) and no GIL hand-offs between two busy threads, which
profiling showed to cost a tenth of the gateway's CPU. `MqttPublisher` (tests, simulators)
keeps paho's own thread (`loop_start()`); its callbacks only hand over to asyncio with
`loop.call_soon_threadsafe` (the pattern aiomqtt uses). See docs/mqtt.md, "paho on the event
loop".

At-least-once, acknowledged after commit. The subscriber runs paho with `manual_ack=True`:
a QoS 1 PUBLISH stays unacknowledged at the broker until `MqttSubscriber.ack()` is called,
which the ingest loop does only after the effect is committed. If the gateway crashes first,
a broker that keeps a persistent session (Mosquitto, EMQX) sends the message again when the
same client id reconnects. Flow control comes from the broker: it stops sending when the
number of unacknowledged messages reaches the in-flight window (MQTT 5 Receive Maximum, or
the broker's own limit for 3.1.1 clients, 20 on a default Mosquitto). That is why the
hand-over queue is unbounded: the broker bounds it.

Broker quirks that shape this module (measured by the contract tests, see docs/mqtt.md):

- Mosquitto gives an MQTT 3.1.1 client at most `max_inflight_messages` (default 20)
  unacknowledged messages, and 3.1.1 has no way to ask for more: an ack-after-commit gateway
  on 3.1.1 never batches more than 20. MQTT 5's Receive Maximum (CONNECT property) lifts it;
  without the property Mosquitto 2.0 again uses 20. Hence protocol=5, receive_maximum=5000.
  https://mosquitto.org/man/mosquitto-conf-5.html
- Mosquitto redelivered 500 of 500 unacknowledged messages to a reconnecting persistent
  session (MQTT 5 and 3.1.1). amqtt 0.12 redelivered 0 of 500, and drops a message that is not
  acknowledged within 5 s: the embedded broker (gateway/broker.py) cannot keep the no-loss
  promise.
- Shared subscriptions (`$share/<group>/<filter>`) are MQTT 5 (spec section 4.8.2); Mosquitto 2
  accepts them from 3.1.1 clients too, amqtt grants the filter but never delivers anything.
  https://docs.oasis-open.org/mqtt/mqtt/v5.0/mqtt-v5.0.html

Errors (the lead will re-root `MqttError` under the gateway's `GatewayError`)::

    MqttError
     +-- MqttConfigError      bad URL or settings, raised before any IO
     +-- MqttConnectError     no CONNACK within the timeout, or the broker refused us
     +-- MqttSubscribeError   the broker refused a topic filter in its SUBACK
     +-- MqttPublishError     no PUBACK within the timeout, or a failure reason code

Broker facts measured by tests/gateway/test_mqtt_contract.py are written up in docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self, TypeVar
from urllib.parse import unquote, urlsplit

from paho.mqtt.client import (
    MQTT_LOG_ERR,
    PUBACK,
    CallbackAPIVersion,
    Client,
    ConnectFlags,
    DisconnectFlags,
    MQTTErrorCode,
    MQTTMessage,
    MQTTProtocolVersion,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.errors import GatewayError
from gateway.packets import PacketBuffer, Publish

__all__ = [
    "RECEIVE_MAXIMUM",
    "BrokerAddress",
    "InboundMessage",
    "LastWill",
    "MqttConfig",
    "MqttConfigError",
    "MqttConnectError",
    "MqttError",
    "MqttPublishError",
    "MqttPublisher",
    "MqttSubscribeError",
    "MqttSubscriber",
    "discard_session",
    "parse_mqtt_url",
]

log = logging.getLogger(__name__)


class _DropDisconnectedNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected ... MQTT_CS_DISCONNECTED" at ERROR each time its
    network thread winds down after a disconnect *we asked for*. Not an error: drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Last known Connection State: MQTT_CS_DISCONNECTED" not in record.getMessage()


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_DropDisconnectedNoise())

# Our default MQTT 5 Receive Maximum. The gateway acknowledges a message only after its batch
# commits, so its in-flight window must hold the batches committing (pipeline x batch_max,
# 2 x 500) and the next ones arriving meanwhile; with 1,000 the broker stopped sending while
# both batches were in the store and the gateway idled (docs/scaling.md: 14,400 against
# 16,500 events/s with 5,000). It costs memory only for messages actually in flight.
RECEIVE_MAXIMUM = 5000

_SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
_MAX_UINT16 = 0xFFFF
_MAX_UINT32 = 0xFFFFFFFF
_MISC_EVERY_S = 1.0  # how often the subscriber runs paho's loop_misc (keepalive), as loop() does
_RECV_BYTES = 65_536  # one recv of the subscriber's socket: ~200 gateway events
_RECVS_PER_WAKEUP = 16  # recv calls per readable event at most, so writes get their turn
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class MqttError(GatewayError):
    """Root of the MQTT adapter's errors."""


class MqttConfigError(MqttError):
    """A broker URL or an MQTT setting is invalid. Raised before any network IO."""

    def __init__(self, message: str, *, setting: str, value: object) -> None:
        super().__init__(message)
        self.setting = setting
        self.value = value


class MqttConnectError(MqttError):
    """The broker did not accept a connection within the timeout."""

    def __init__(self, message: str, *, url: str, client_id: str) -> None:
        super().__init__(message)
        self.url = url
        self.client_id = client_id


class MqttSubscribeError(MqttError):
    """The broker refused one or more topic filters (SUBACK reason code >= 0x80)."""

    def __init__(self, message: str, *, refused: dict[str, str]) -> None:
        super().__init__(message)
        self.refused = refused  # topic filter -> reason code name


class MqttPublishError(MqttError):
    """A publish was not acknowledged, or the broker answered with a failure reason code."""

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


# --------------------------------------------------------------------------- configuration


class BrokerAddress(NamedTuple):
    """Where a broker listens, as read from an `mqtt://` or `mqtts://` URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse `mqtt://[user[:password]@]host[:port]` (or `mqtts://`, TLS, default port 8883).

    User and password are percent-decoded. A path, query or fragment is refused rather than
    silently ignored, because a URL like `mqtt://host/topic` usually hides a mistake.
    Raises `MqttConfigError` for anything else.
    """
    if not isinstance(url, str) or not url or url != url.strip():
        raise MqttConfigError(f"not a broker URL: {url!r}", setting="url", value=url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:  # urllib: bad port, bad IPv6 brackets
        raise MqttConfigError(f"invalid broker URL {_redact(url)!r}: {e}",
                              setting="url", value=_redact(url)) from e
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise MqttConfigError(
            f"broker URL must start with mqtt:// or mqtts://, got {_redact(url)!r}",
            setting="url", value=_redact(url))
    if not parts.hostname:
        raise MqttConfigError(f"broker URL has no host: {_redact(url)!r}",
                              setting="url", value=_redact(url))
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttConfigError(
            f"broker URL must not have a path, query or fragment: {_redact(url)!r}",
            setting="url", value=_redact(url))
    default_port, tls = _SCHEMES[scheme]
    if port == 0:
        raise MqttConfigError(f"broker URL has port 0: {_redact(url)!r}",
                              setting="url", value=_redact(url))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise MqttConfigError("broker URL has a password but no user name",
                              setting="url", value=_redact(url))
    return BrokerAddress(parts.hostname, port or default_port, tls, username, password)


def _redact(url: str) -> str:
    """The URL with any password replaced by `***`, for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        return parts._replace(netloc=f"{user}:***@{hostport}").geturl()
    except ValueError:
        return "<unparseable URL>"


@dataclass(frozen=True, slots=True)
class LastWill:
    """A message the broker publishes for us if we vanish without a DISCONNECT.

    Typical use: a retained status topic (`.../status` = `offline`) that a gateway overwrites
    with `online` after connecting, so dashboards see a dead gateway within keepalive x 1.5.
    """

    topic: str
    payload: bytes
    qos: Literal[0, 1, 2] = 1
    retain: bool = True


@dataclass(frozen=True, slots=True, repr=False)
class MqttConfig:
    """How to reach the broker and which session to keep there.

    Units: seconds. `username`/`password` given here win over the URL's userinfo.
    `receive_maximum` (MQTT 5 only) is how many unacknowledged QoS 1/2 messages the broker may
    send us at once; `session_expiry_s` (MQTT 5 only) how long the broker keeps our session and
    its undelivered messages after we disconnect. For 3.1.1 the session never expires on the
    client's say-so (Mosquitto: until `persistent_client_expiration`, default never).
    """

    url: str
    client_id: str
    protocol: Literal[5, 311] = 5
    receive_maximum: int = RECEIVE_MAXIMUM
    session_expiry_s: int = 3600
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    connect_timeout_s: float = 10.0
    last_will: LastWill | None = None

    def __post_init__(self) -> None:
        parse_mqtt_url(self.url)
        _check(bool(self.client_id) and len(self.client_id.encode()) <= _MAX_UINT16,
               "client_id must be a non-empty string (a persistent session needs one)",
               "client_id", self.client_id)
        _check(self.protocol in (5, 311), "protocol must be 5 or 311", "protocol", self.protocol)
        _check(1 <= self.receive_maximum <= _MAX_UINT16,
               "receive_maximum must be 1..65535", "receive_maximum", self.receive_maximum)
        _check(1 <= self.session_expiry_s <= _MAX_UINT32,
               "session_expiry_s must be 1..4294967295 (0 would drop the session, and with "
               "it every unacknowledged message, on each disconnect)",
               "session_expiry_s", self.session_expiry_s)
        _check(1 <= self.keepalive_s <= _MAX_UINT16,
               "keepalive_s must be 1..65535", "keepalive_s", self.keepalive_s)
        _check(0 < self.reconnect_min_s <= self.reconnect_max_s,
               "need 0 < reconnect_min_s <= reconnect_max_s",
               "reconnect_min_s", (self.reconnect_min_s, self.reconnect_max_s))
        _check(self.connect_timeout_s > 0, "connect_timeout_s must be > 0",
               "connect_timeout_s", self.connect_timeout_s)
        will = self.last_will
        _check(will is None or (bool(will.topic) and not {"+", "#"} & set(will.topic)
                                and will.qos in (0, 1, 2)),
               "last_will needs a topic without wildcards and qos 0, 1 or 2", "last_will", will)

    @property
    def address(self) -> BrokerAddress:
        """The parsed URL, with explicit `username`/`password` taking precedence."""
        parsed = parse_mqtt_url(self.url)
        if self.username is None:
            return parsed
        return parsed._replace(username=self.username, password=self.password)

    @property
    def redacted_url(self) -> str:
        return _redact(self.url)

    def __repr__(self) -> str:
        return (f"MqttConfig(url={self.redacted_url!r}, client_id={self.client_id!r}, "
                f"protocol={self.protocol}, receive_maximum={self.receive_maximum}, "
                f"session_expiry_s={self.session_expiry_s}, keepalive_s={self.keepalive_s})")


def _check(ok: bool, message: str, setting: str, value: object) -> None:
    if not ok:
        raise MqttConfigError(message, setting=setting, value=value)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One PUBLISH as it arrived, detached from paho.

    `mid` is the packet id the broker chose for this delivery; it is only meaningful to
    `MqttSubscriber.ack()` on the connection that delivered it. `dup` is the broker's hint that
    it sent this message before (not a guarantee either way: deduplicate on the payload's own
    device sequence or event id). `received_at_monotonic` is `time.monotonic()` on arrival.
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool
    received_at_monotonic: float


_STOP: Any = object()  # ends messages(); never an InboundMessage


# --------------------------------------------------------------------------- paho plumbing


class _BufferedClient(Client):
    """paho's Client, reading from the subscriber's `PacketBuffer` instead of its socket.

    paho 2.x reads its socket in exactly one place, `Client._sock_recv(bufsize)` (2.1 and 2.2;
    `_packet_read` calls it for the command byte, each remaining-length byte and the rest).
    While `buffer` belongs to paho's current socket, those reads are served from it
    (gateway/packets.py says why and keeps paho's view of the stream intact); for any other
    socket (none registered yet, a reconnect under way) paho reads as it always did. The
    subscriber's tests on Mosquitto would fail at the first CONNACK if a paho release stopped
    reading through `_sock_recv`: the bytes would sit in our buffer, unseen.
    """

    buffer: tuple[Any, PacketBuffer] | None = None  # (the socket it was read from, the buffer)
    acks_coalesced = 0  # sends that carried more than one PUBACK (tests, diagnostics)

    def _sock_recv(self, bufsize: int) -> bytes:
        buffer = self.buffer
        if buffer is not None and buffer[0] is self._sock:
            return buffer[1].recv(bufsize)
        return super()._sock_recv(bufsize)

    def _packet_write(self) -> MQTTErrorCode:
        """Write the queued packets: the PUBACKs at the head of the queue in one `send`, the
        rest the paho way.

        paho sends every queued packet with a `send` of its own, and a committed batch queues
        hundreds of PUBACKs (4 bytes each): hundreds of syscalls and TCP segments, each read
        by the broker on its own. Whole PUBACKs at the head of the queue (none begun) are
        joined, up to 64 KiB, and sent together; what the kernel does not take stays queued
        as paho would keep it (a PUBACK cut in the middle carries its position, and paho's own
        loop finishes it). Anything else in the queue (CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT
        with its closing of the socket) is paho's `_packet_write`, unchanged."""
        out = self._out_packet
        while out and _plain_ack(out[0]):
            batch: list[Any] = []
            size = 0
            while out and _plain_ack(out[0]) and size < _COALESCE_BYTES:
                packet = out.popleft()
                batch.append(packet)
                size += len(packet["packet"])
            try:
                sent = self._sock_send(b"".join(p["packet"] for p in batch))
            except (AttributeError, ValueError):  # no socket (any more): paho keeps them queued
                out.extendleft(reversed(batch))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(batch))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(batch))
                self._easy_log(MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if len(batch) > 1:
                self.acks_coalesced += 1
            rest = []
            for packet in batch:
                length = len(packet["packet"])
                if sent >= length:
                    sent -= length
                    continue
                packet["pos"], packet["to_process"] = sent, length - sent  # 0 < sent: begun
                sent = 0
                rest.append(packet)
            if rest:
                out.extendleft(reversed(rest))
                break
        return super()._packet_write()

    def bytes_received(self) -> None:
        """Tell paho's keepalive that the broker sent something, as its own reads do after each
        packet (`_last_bytes_received` in paho 2.2, `_last_msg_in` in 2.1). Without it, paho
        would only see the packets it reads itself: with PUBLISH packets streaming in, it
        would close the connection whenever a PINGRESP is late by one keepalive interval,
        where it otherwise just pings again."""
        name = "_last_bytes_received" if hasattr(self, "_last_bytes_received") else "_last_msg_in"
        with self._msgtime_mutex:
            setattr(self, name, time.monotonic())


_COALESCE_BYTES = 64 * 1024


def _plain_ack(packet: Any) -> bool:
    """A queued PUBACK not yet begun (paho's `_OutPacket` dict)."""
    return (packet["command"] & 0xF0) == PUBACK and packet["pos"] == 0


_C = TypeVar("_C", bound=Client)


def _new_client(config: MqttConfig, *, persistent: bool, manual_ack: bool,
                kind: type[_C]) -> _C:
    """A configured but unconnected paho client."""
    protocol = MQTTProtocolVersion.MQTTv5 if config.protocol == 5 else MQTTProtocolVersion.MQTTv311
    # paho refuses `clean_session` for MQTT 5 (it uses clean_start on connect instead).
    clean_session = None if config.protocol == 5 else not persistent
    client = kind(CallbackAPIVersion.VERSION2, client_id=config.client_id,
                  clean_session=clean_session, protocol=protocol, manual_ack=manual_ack)
    client.enable_logger(_paho_log)
    address = config.address
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(ssl.create_default_context())
    if config.last_will is not None:
        will = config.last_will
        client.will_set(will.topic, will.payload, will.qos, will.retain)
    # paho annotates these as int, but only does float arithmetic and time.sleep with them.
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)  # type: ignore[arg-type]
    return client


def _connect_async(client: Client, config: MqttConfig, *, persistent: bool) -> None:
    """Tell paho where to connect; the network thread (loop_start) does the rest, and retries."""
    address = config.address
    if config.protocol == 311:
        # 3.1.1: persistence was fixed by `clean_session` when the client was built.
        client.connect_async(address.host, address.port, config.keepalive_s)
        return
    properties = Properties(PacketTypes.CONNECT)
    if persistent:
        # MQTT 5 keeps a session only if clean_start is False AND the Session Expiry Interval is
        # above 0 (it defaults to 0: "end the session when the network connection closes").
        properties.SessionExpiryInterval = config.session_expiry_s
        # Without it the spec's default is 65535, but Mosquitto 2.0 then falls back to its
        # max_inflight_messages (20): measured, see docs/mqtt.md.
        properties.ReceiveMaximum = config.receive_maximum
    # clean_start=False on *every* connect, not paho's default MQTT_CLEAN_START_FIRST_ONLY: a
    # restarted gateway must resume the session its previous process left unacknowledged.
    client.connect_async(address.host, address.port, config.keepalive_s,
                         clean_start=not persistent, properties=properties)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Settle a future unless someone (a timeout) already did."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


async def _stop_client(client: Client) -> None:
    """Disconnect and join paho's thread without blocking the event loop."""
    client.disconnect()
    await asyncio.to_thread(client.loop_stop)


# --------------------------------------------------------------------------- subscriber


class MqttSubscriber:
    """A persistent-session subscriber with manual acknowledgement, driven by the asyncio loop.

    Usage::

        sub = MqttSubscriber(config)
        await sub.start(["site/+/rfid/#"])
        async for msg in sub.messages():
            ...commit...
            sub.ack(msg)
        await sub.stop()

    No paho thread: the event loop that called `start()` drives paho through its external-loop
    API (module doc, "Threads"), so every callback, `ack()` and the consumer of `messages()`
    run on that one thread. Reconnects (with backoff between `reconnect_min_s` and
    `reconnect_max_s`) and keepalive pings are a task of the subscriber's.

    Subscriptions are (re)sent on every CONNACK, so they come back after a reconnect even when
    the broker lost the session (a broker restart without persistence, amqtt dropping anonymous
    sessions on disconnect, an operator kicking the client). `messages()` is meant for a single
    consumer.
    """

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._client: _BufferedClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self._ready: asyncio.Future[None] | None = None
        self._filters: list[tuple[str, int]] = []
        self._stopped = False
        self._network: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()  # set when paho closes the socket: time to reconnect
        self._delay = config.reconnect_min_s
        # Which deliveries of the *current* connection are still unacknowledged. A packet id is
        # only valid on the connection that delivered it: after a reconnect the broker may reuse
        # it for a different message, so an ack for a delivery of an earlier connection must not
        # be sent (the broker redelivers that message on the new connection anyway, if it kept
        # the session).
        self._unacked: dict[int, InboundMessage] = {}  # mid -> the delivery it belongs to
        self._watched_for_write: Any = None  # the socket the loop watches for writing, if any
        self._connection_count = 0
        self._connected = False
        self._last_problem = "none reported"  # for the timeout message of start()

    # -- public API

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next disconnect."""
        return self._connected

    @property
    def connection_count(self) -> int:
        """How many times the broker accepted us (1 after start, +1 per reconnect)."""
        return self._connection_count

    async def start(self, filters: Sequence[str], qos: int = 1) -> None:
        """Connect, subscribe to `filters`, and return once the broker granted all of them.

        Raises `MqttConnectError` if that does not happen within `config.connect_timeout_s`,
        `MqttSubscribeError` if the broker refused a filter.
        """
        if self._client is not None or self._stopped:
            raise MqttError("an MqttSubscriber can be started once")
        if not filters or isinstance(filters, str):
            raise MqttConfigError("start() needs a list of topic filters",
                                  setting="filters", value=filters)
        _check(qos in (0, 1, 2), "qos must be 0, 1 or 2", "qos", qos)
        self._filters = [(f, qos) for f in filters]
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        client = _new_client(self.config, persistent=True, manual_ack=True, kind=_BufferedClient)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        _connect_async(client, self.config, persistent=True)
        self._client = client
        self._network = asyncio.create_task(self._run_network(client), name="mqtt-network")
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                await self._ready
        except TimeoutError as e:
            await self._abort()
            raise MqttConnectError(
                f"no CONNACK and SUBACK from {self.config.redacted_url} within "
                f"{self.config.connect_timeout_s} s (last problem: {self._last_problem})",
                url=self.config.redacted_url, client_id=self.config.client_id) from e
        except BaseException:
            await self._abort()
            raise
        log.info("subscribed to %s at %s as %r (MQTT %s)", [f for f, _ in self._filters],
                 self.config.redacted_url, self.config.client_id, self.config.protocol)

    async def messages(self) -> AsyncGenerator[InboundMessage, None]:
        """Yield messages as they arrive, until `stop()`."""
        while not self._stopped:
            message = await self._queue.get()
            if message is _STOP:
                return
            yield message

    def ack(self, message: InboundMessage) -> bool:
        """Acknowledge a delivery (send its PUBACK). Call after committing, on the event loop.

        Returns False, sending nothing, when the delivery belongs to an earlier connection or
        was already acknowledged: the broker will redeliver it (if it kept our session), and the
        ledger's deduplication absorbs the repeat. QoS 0 messages need no ack (returns True).
        """
        if message.qos == 0:
            return True
        client = self._client
        if client is None:
            return False
        if self._unacked.get(message.mid) is not message:
            log.debug("not acknowledging stale delivery mid=%d on %s", message.mid, message.topic)
            return False
        del self._unacked[message.mid]
        # paho only queues the PUBACK here and asks for the socket to be watched for writing;
        # every PUBACK of a batch goes out in one loop_write when the loop next polls.
        rc = client.ack(message.mid, message.qos)
        return rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    async def stop(self) -> None:
        """Disconnect (keeping the broker-side session) and end `messages()`."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put_nowait(_STOP)
        await self._abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- the network, driven by the event loop

    async def _run_network(self, client: _BufferedClient) -> None:
        """Connect, reconnect with backoff after every loss, and run paho's keepalive."""
        while True:
            if client.socket() is None and not await self._connect(client):
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, self.config.reconnect_max_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), _MISC_EVERY_S)
            if self._lost.is_set():
                self._lost.clear()
                log.info("reconnecting to %s in %.1f s", self.config.redacted_url, self._delay)
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, self.config.reconnect_max_s)
                continue
            client.loop_misc()  # PINGREQ when due; closes the socket if PINGRESP is overdue

    async def _connect(self, client: _BufferedClient) -> bool:
        """One connection attempt; True once the socket is open and CONNECT queued.

        paho's `reconnect()` opens the TCP (and TLS) connection with blocking calls (DNS, connect
        with paho's 5 s timeout), so it runs on a worker thread; the loop is not watching the
        client meanwhile (no socket is registered), and nothing else touches it: `ack()` only
        sends for deliveries of a live connection, and there is none. The new socket is watched
        once the thread returns."""
        self._lost.clear()
        attempt = asyncio.get_running_loop().run_in_executor(None, client.reconnect)
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # stop() during the attempt: the thread cannot be interrupted, so close whatever
            # socket it opens, or the broker would keep a connection (and our session) alive.
            attempt.add_done_callback(lambda _: _close_socket_of(client))
            raise
        except (OSError, ssl.SSLError) as e:
            self._last_problem = "TCP connection failed"
            log.debug("cannot connect to %s: %s", self.config.redacted_url, e)
            return False
        sock = client.socket()
        if sock is None:  # pragma: no cover - reconnect() returned without a socket
            return False
        loop = asyncio.get_running_loop()
        buffer = PacketBuffer(properties=self.config.protocol == 5)
        client.buffer = (sock, buffer)
        loop.add_reader(sock, self._on_readable, client, sock, buffer)
        if client.want_write():  # the CONNECT packet
            loop.add_writer(sock, client.loop_write)
            self._watched_for_write = sock
        return True

    def _on_readable(self, client: _BufferedClient, sock: Any, buffer: PacketBuffer) -> None:
        """The socket has data: read it in large chunks and hand over the packets in them.

        One `recv` of up to 64 KiB brings ~200 events; the QoS 0/1 PUBLISH packets among them
        become `InboundMessage`s here (gateway/packets.py), every other packet goes through
        paho's `loop_read()`, which reads it from the buffer. Reading stops when the socket has
        nothing more (EAGAIN: the selector calls again when it has), or after
        `_RECVS_PER_WAKEUP` reads so that PUBACK writes get their turn; the selector would not
        call again for bytes TLS already decrypted into its own buffer (`pending()`), so those
        are read next, without waiting. What stays in our buffer between two calls is always
        the beginning of a packet whose rest is still in the kernel (or on its way): every
        whole packet is handed over before returning."""
        for _ in range(_RECVS_PER_WAKEUP):
            if not self._fill(client, sock, buffer):
                break
            self._drain(client, sock, buffer)
            if client.socket() is not sock:
                return  # paho closed the connection (EOF, error, protocol violation)
        else:
            if _buffered(sock):  # TLS bytes the selector cannot see: read them next
                asyncio.get_running_loop().call_soon(self._on_readable, client, sock, buffer)
        _ack_segments_now(sock)

    def _fill(self, client: _BufferedClient, sock: Any, buffer: PacketBuffer) -> bool:
        """One `recv` into the buffer; False when the socket had nothing to give (EAGAIN).
        EOF and errors are recorded in the buffer, for paho to meet after the last whole packet
        (its reaction - closing the socket, on_disconnect, a reconnect - stays paho's)."""
        try:
            data = sock.recv(_RECV_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except ssl.SSLWantWriteError:  # TLS must write before it can read: what paho does
            self._on_socket_register_write(client, None, sock)
            return False
        except OSError as e:
            buffer.close(e)
            return True
        if data:
            buffer.feed(data)
            client.bytes_received()
        else:
            buffer.close()  # EOF
        return True

    def _drain(self, client: _BufferedClient, sock: Any, buffer: PacketBuffer) -> None:
        """Hand over every whole packet in the buffer, in order: PUBLISH QoS 0/1 ourselves,
        the rest (and the end of the stream) through paho."""
        arrived = time.monotonic()
        while True:
            publish = buffer.pop_publish()
            if publish is not None:
                self._hand_over(publish, arrived)
                continue
            if not (buffer.ready() or buffer.closed):
                return  # empty, or a packet still arriving
            before = buffer.consumed
            rc = client.loop_read()  # reads the head packet from the buffer (or meets the end)
            if (rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is not sock
                    or buffer.consumed == before):
                return

    def _hand_over(self, publish: Publish, arrived: float) -> None:
        inbound = InboundMessage(publish.topic, publish.payload, publish.mid, publish.qos,
                                 publish.retain, publish.dup, arrived)
        if inbound.qos > 0:
            self._unacked[inbound.mid] = inbound
        self._queue.put_nowait(inbound)

    def _on_socket_close(self, client: Client, userdata: Any, sock: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop_thread(loop):
            self._forget_socket(sock.fileno())
        else:  # reconnect() closing a socket left over, on its worker thread
            loop.call_soon_threadsafe(self._forget_socket, sock.fileno())

    def _forget_socket(self, fd: int) -> None:
        loop = self._loop
        if loop is not None and fd >= 0:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        self._watched_for_write = None
        self._lost.set()

    def _on_socket_register_write(self, client: Client, userdata: Any, sock: Any) -> None:
        # During reconnect() (worker thread) the socket is not watched yet: _connect registers
        # the writer itself when the thread returns with the CONNECT still queued. paho asks
        # for every packet it queues (each PUBACK of a batch): once is enough while watched.
        loop = self._loop
        if loop is not None and _on_loop_thread(loop) and self._watched_for_write is not sock:
            loop.add_writer(sock, client.loop_write)
            self._watched_for_write = sock

    def _on_socket_unregister_write(self, client: Client, userdata: Any, sock: Any) -> None:
        loop = self._loop
        if loop is not None and _on_loop_thread(loop):
            loop.remove_writer(sock)
            self._watched_for_write = None

    async def _abort(self) -> None:
        client, self._client = self._client, None
        network, self._network = self._network, None
        if network is not None:
            network.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await network
        if client is not None and client.socket() is not None:
            client.disconnect()  # queues DISCONNECT; loop_write sends it, then closes the socket
            client.loop_write()
            sock = client.socket()
            if sock is not None:  # the DISCONNECT could not be written: drop the connection
                self._on_socket_close(client, None, sock)
                sock.close()
        self._unacked.clear()
        self._connected = False

    def _settle_ready(self, error: BaseException | None) -> None:
        if self._ready is not None:
            _resolve(self._ready, error)

    # -- paho callbacks (on the event loop's thread, from loop_read/loop_write/loop_misc)

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker %s refused %r: %s", self.config.redacted_url,
                        self.config.client_id, reason_code)
            self._settle_ready(MqttConnectError(
                f"broker refused the connection: {reason_code}",
                url=self.config.redacted_url, client_id=self.config.client_id))
            return
        self._unacked.clear()
        self._connection_count += 1
        self._connected = True
        self._delay = self.config.reconnect_min_s
        log.info("connected to %s as %r (session present: %s)", self.config.redacted_url,
                 self.config.client_id, flags.session_present)
        # Always resubscribe, even with session_present: cheap, idempotent, and the only way to
        # be sure after a broker that forgot us. The SUBACK arrives in _on_subscribe.
        if self.config.protocol == 5:
            client.subscribe([(f, SubscribeOptions(qos=q)) for f, q in self._filters])
        else:
            client.subscribe(self._filters)

    def _on_subscribe(self, client: Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        refused = {f: str(rc) for (f, _), rc in zip(self._filters, reason_codes, strict=False)
                   if rc.is_failure}
        error = None
        if refused:
            log.error("broker refused subscriptions: %s", refused)
            error = MqttSubscribeError(f"broker refused topic filters: {refused}",
                                       refused=refused)
        self._settle_ready(error)

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        # The PUBLISH packets `_drain` leaves to paho: QoS 2, and any it could not take.
        self._hand_over(Publish(message.topic, bytes(message.payload), message.mid, message.qos,
                                bool(message.retain), bool(message.dup)), time.monotonic())

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
        self._unacked.clear()
        self._connected = False
        # A broker that only speaks 3.1.1 (amqtt) answers an MQTT 5 CONNECT by closing the
        # connection, which paho reports here as a "Normal disconnection", not as a refusal.
        self._last_problem = f"disconnected: {reason_code}"
        if not self._stopped:
            log.warning("disconnected from %s (%s); reconnecting within %s s",
                        self.config.redacted_url, reason_code, self.config.reconnect_max_s)


def _buffered(sock: Any) -> int:
    """Bytes a TLS socket decrypted and holds itself (0 for plain TCP)."""
    pending = getattr(sock, "pending", None)
    return int(pending()) if pending is not None else 0


def _close_socket_of(client: Client) -> None:
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def _ack_segments_now(sock: Any) -> None:
    """Have the kernel acknowledge the TCP segments just read at once (Linux TCP_QUICKACK,
    which the kernel clears again by itself, hence once per read burst).

    Mosquitto leaves Nagle's algorithm on unless `set_tcp_nodelay true` is configured: it holds
    its next small PUBLISH until the previous segment is acknowledged. We send nothing between
    our commits (PUBACKs go out after them), so without this the kernel's delayed ACK (up to
    40 ms) paces the broker's deliveries, and every message waits for it on top of the batch
    window. Measured by `pledge bench ingest` (c), see docs/mqtt.md."""
    if sock is None or _TCP_QUICKACK is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no running loop in this thread: paho's reconnect() on a worker
        return False


# --------------------------------------------------------------------------- publisher


class MqttPublisher:
    """A clean-session publisher for tests, benchmarks and simulators.

    `publish()` returns once the broker acknowledged the message (PUBACK for QoS 1), so a
    caller that awaited it knows the broker holds the message. `max_inflight` is paho's own
    window of unacknowledged outgoing messages (paho's default is 20; more are queued inside
    paho and sent as PUBACKs come back).
    """

    def __init__(self, config: MqttConfig, *, max_inflight: int = 20,
                 publish_timeout_s: float = 10.0) -> None:
        _check(max_inflight >= 1, "max_inflight must be >= 1", "max_inflight", max_inflight)
        self.config = config
        self._max_inflight = max_inflight
        self._timeout_s = publish_timeout_s
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._pending: dict[int, tuple[str, asyncio.Future[None]]] = {}

    async def connect(self) -> None:
        """Connect with a clean session; raise `MqttConnectError` after the timeout."""
        if self._client is not None:
            raise MqttError("already connected")
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        client = _new_client(self.config, persistent=False, manual_ack=False, kind=Client)
        client.max_inflight_messages_set(self._max_inflight)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        _connect_async(client, self.config, persistent=False)
        self._client = client
        client.loop_start()
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                await self._connected
        except TimeoutError as e:
            await self.close()
            raise MqttConnectError(
                f"no CONNACK from {self.config.redacted_url} within "
                f"{self.config.connect_timeout_s} s", url=self.config.redacted_url,
                client_id=self.config.client_id) from e
        except BaseException:
            await self.close()
            raise

    async def publish(self, topic: str, payload: bytes, qos: int = 1,
                      retain: bool = False) -> None:
        """Publish and wait for the broker's acknowledgement."""
        await self._wait([self._send(topic, payload, qos, retain)], topic)

    async def publish_many(self, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> None:
        """Publish in order (paho keeps order per connection) and wait for every PUBACK."""
        futures = [self._send(topic, payload, qos, False) for topic, payload in messages]
        await self._wait(futures, "<many>")

    async def close(self) -> None:
        """Disconnect cleanly (the last will is not published) and join paho's thread."""
        client, self._client = self._client, None
        if client is not None:
            await _stop_client(client)
        pending, self._pending = self._pending, {}
        for topic, future in pending.values():
            _resolve(future, MqttPublishError(
                f"publisher closed before the broker acknowledged {topic!r}", topic=topic))

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        if self._client is None or self._loop is None:
            raise MqttError("publisher is not connected")
        try:
            info = self._client.publish(topic, payload, qos, retain)
        except ValueError as e:  # paho: wildcard in topic, payload too large, bad qos
            raise MqttPublishError(f"cannot publish to {topic!r}: {e}", topic=topic) from e
        # MQTT_ERR_NO_CONN with qos > 0: paho keeps the message and sends it after reconnecting.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN) or (
                info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0):
            raise MqttPublishError(f"paho refused to publish to {topic!r}: {info.rc.name}",
                                   topic=topic)
        # on_publish cannot have settled this mid yet: it reaches us via call_soon_threadsafe,
        # which runs only after this synchronous code yields to the loop.
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = (topic, future)
        return future

    async def _wait(self, futures: list[asyncio.Future[None]], topic: str) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await asyncio.gather(*futures)
        except TimeoutError as e:
            raise MqttPublishError(f"no PUBACK within {self._timeout_s} s", topic=topic) from e
        finally:
            for future in futures:
                future.cancel()  # no-op when done; stops a late PUBACK setting a result

    # paho callbacks (paho's thread). on_publish runs while paho holds its _out_message_mutex:
    # taking any lock of ours here could deadlock against a publish() on the asyncio thread.

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:
        error = None
        if reason_code.is_failure:
            error = MqttConnectError(f"broker refused the connection: {reason_code}",
                                     url=self.config.redacted_url,
                                     client_id=self.config.client_id)
        if self._loop is not None and self._connected is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, self._connected, error)

    def _on_publish(self, client: Client, userdata: Any, mid: int,
                    reason_code: ReasonCode, properties: Properties) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._settle_publish, mid, reason_code)

    def _settle_publish(self, mid: int, reason_code: ReasonCode) -> None:
        pending = self._pending.pop(mid, None)
        if pending is None:
            return
        topic, future = pending
        error = None
        if reason_code.is_failure:  # MQTT 5 only; "No matching subscribers" (16) is a success
            error = MqttPublishError(f"broker rejected {topic!r}: {reason_code}", topic=topic)
        _resolve(future, error)


async def discard_session(config: MqttConfig) -> None:
    """Make the broker forget `config.client_id`'s session and its queued messages.

    Connecting once with a clean start / clean session does exactly that in both MQTT 5 and
    3.1.1. Use it when retiring a gateway's client id, and in tests so that Mosquitto's
    persistence file does not collect sessions nobody will resume.
    """
    publisher = MqttPublisher(config)
    await publisher.connect()
    await publisher.close()
