"""The bytes a subscriber reads from its broker, framed into MQTT control packets. Pure: no IO.

Why this exists. paho's `loop_read()` reads one packet with several tiny `recv` calls (the
command byte, each byte of the remaining length, then the rest) and then spends ~90 us of
Python per PUBLISH (MQTT 5 `Properties` objects, an `MQTTMessage`, a debug log line, the
callback matcher and its locks): profiled under `pledge bench ingest`, ~40 % of the gateway's
CPU. `MqttSubscriber` (gateway/mqtt.py) therefore reads its socket itself, one large `recv`
per turn, into a `PacketBuffer`, and:

* takes the QoS 0 and QoS 1 PUBLISH packets at the head of the buffer with `pop_publish()`
  (a few microseconds each: the fields an `InboundMessage` needs, nothing else);
* leaves every other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT, QoS 2 flows, and any
  PUBLISH it does not take, e.g. a malformed one) to paho, whose reads (`Client._sock_recv`)
  are served from the buffer by `recv()`. paho then sees the same byte stream as before, in
  order, with the same end: EOF or the socket's error, replayed after the last whole packet.

Invariant: `recv()` serves only bytes of a packet that has fully arrived, and raises
`BlockingIOError` (EAGAIN) at packet boundaries only. paho keeps the state of a packet it
read in part; since it never gets part of one, it never holds any between two turns, and a
packet at the head of the buffer is always either untouched (ours to take) or paho's.

Fixed header (MQTT 3.1.1 section 2.2, MQTT 5 section 2.1): one byte of type and flags, then
the remaining length as a variable byte integer of at most 4 bytes. A fifth length byte is a
protocol error: those 6 bytes are handed to paho, which refuses them and drops the connection
as it always did.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PacketBuffer", "Publish"]

_PUBLISH = 0x30
_MAX_LENGTH_BYTES = 4


class Publish(NamedTuple):
    """The fields of a PUBLISH packet the gateway uses (MQTT 5 properties are skipped)."""

    topic: str
    payload: bytes
    mid: int  # packet id; 0 for QoS 0
    qos: int
    retain: bool
    dup: bool


_tuple_new = tuple.__new__


class PacketBuffer:
    """Bytes received from one connection, not yet consumed, framed into packets.

    `properties`: the connection speaks MQTT 5 (a PUBLISH carries a properties block).
    """

    __slots__ = ("_body", "_buf", "_closed", "_end", "_error", "_pos", "_properties", "_start",
                 "consumed")

    def __init__(self, *, properties: bool) -> None:
        self._properties = properties
        self._buf = bytearray()
        self._pos = 0  # first byte not consumed yet
        # The head packet once framed (valid while _pos < _end): where it starts, where its
        # variable header starts (after the fixed header) and where it ends.
        self._start = self._body = self._end = 0
        self._closed = False
        self._error: OSError | None = None
        self.consumed = 0  # bytes consumed in all: lets a caller see that paho read something

    # -- filling

    def feed(self, data: bytes) -> None:
        """Append bytes read from the socket."""
        if self._pos:
            # CPython deletes a bytearray's prefix in O(1) (it moves its start pointer).
            del self._buf[: self._pos]
            self._start -= self._pos
            self._body -= self._pos
            self._end -= self._pos
            self._pos = 0
        self._buf += data

    def close(self, error: OSError | None = None) -> None:
        """The stream ended: EOF (`error` None) or a failed read. Whole packets before the end
        are still served; after them `recv()` returns b"" or raises `error`, as the socket
        did."""
        self._closed = True
        self._error = error

    @property
    def closed(self) -> bool:
        return self._closed

    def buffered(self) -> int:
        """Bytes received and not consumed yet (a packet in part included)."""
        return len(self._buf) - self._pos

    # -- framing

    def _frame(self) -> int:
        """End offset of the packet at the head once all of it is here, else -1."""
        pos = self._pos
        if pos < self._end:
            return self._end
        buf = self._buf
        size = len(buf)
        i = pos + 1
        length = 0
        shift = 0
        for _ in range(_MAX_LENGTH_BYTES):
            if i >= size:
                return -1
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                end = i + length
                if end > size:
                    return -1
                self._start, self._body, self._end = pos, i, end
                return end
            shift += 7
        # A fifth length byte: malformed. paho reads these 6 bytes and refuses them.
        if i >= size:
            return -1
        self._start, self._body, self._end = pos, i + 1, i + 1
        return self._end

    def ready(self) -> bool:
        """A whole packet is at the head (for paho, when `pop_publish()` did not take it)."""
        return self._pos < len(self._buf) and self._frame() >= 0

    def pop_publish(self) -> Publish | None:
        """The PUBLISH at the head, consumed, when it is QoS 0 or 1, whole and well formed;
        None otherwise (nothing consumed: an incomplete packet, or one for paho)."""
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            return None
        first = buf[pos]
        qos = (first >> 1) & 0x03
        if first & 0xF0 != _PUBLISH or qos > 1:
            return None  # not a PUBLISH, or QoS 2 (paho's PUBREC/PUBREL flow), or QoS 3
        end = self._frame()
        if end < 0 or self._start != pos:
            return None  # not all here yet (or paho began reading it: never, see module doc)
        i = self._body
        if i + 2 > end:
            return None
        topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
        if topic_end == i + 2 or topic_end > end:
            return None  # empty topic (an MQTT 5 alias, which we never allow) or malformed
        try:
            topic = buf[i + 2 : topic_end].decode("utf-8")
        except UnicodeDecodeError:
            return None  # paho's own handling of a topic that is not UTF-8
        i = topic_end
        mid = 0
        if qos:
            if i + 2 > end:
                return None
            mid = (buf[i] << 8) | buf[i + 1]
            i += 2
        if self._properties:
            i = _skip_properties(buf, i, end)
            if i < 0:
                return None
        self._pos = end
        self.consumed += end - pos
        # tuple.__new__: what Publish(...) does, minus the Python frame of its generated __new__.
        return _tuple_new(Publish, (topic, bytes(buf[i:end]), mid, qos, bool(first & 0x01),
                                    bool(first & 0x08)))

    # -- paho's side

    def recv(self, size: int) -> bytes:
        """paho's `_sock_recv(size)`: up to `size` bytes of the packet at the head, once all of
        it is here. Otherwise EAGAIN (`BlockingIOError`), or the stream's end after its last
        whole packet: b"" for EOF, the socket's error re-raised."""
        end = self._frame() if self._pos < len(self._buf) else -1
        if end < 0:
            if not self._closed:
                raise BlockingIOError
            if self._error is not None:
                raise self._error
            return b""
        pos = self._pos
        stop = min(end, pos + size)
        self._pos = stop
        self.consumed += stop - pos
        return bytes(self._buf[pos:stop])


def _skip_properties(buf: bytearray, i: int, end: int) -> int:
    """Offset after an MQTT 5 properties block starting at `i` (its length, then the
    properties), or -1 when it does not fit in the packet."""
    length = 0
    shift = 0
    for _ in range(_MAX_LENGTH_BYTES):
        if i >= end:
            return -1
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            i += length
            return i if i <= end else -1
        shift += 7
    return -1
