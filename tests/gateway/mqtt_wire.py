"""MQTT packets built by hand, byte by byte, for the tests of the subscriber's reads."""

from __future__ import annotations

PINGRESP = b"\xd0\x00"
SUBACK = b"\x90\x04\x00\x07\x00\x01"  # MQTT 5: packet id 7, no properties, granted QoS 1


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def publish(topic: str, payload: bytes, *, mid: int = 1, qos: int = 1, retain: bool = False,
            dup: bool = False, properties: bytes | None = b"") -> bytes:
    """A PUBLISH packet; `properties` None for MQTT 3.1.1, else the MQTT 5 properties block."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if qos:
        body += mid.to_bytes(2, "big")
    if properties is not None:
        body += varint(len(properties)) + properties
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return packet(first, body + payload)
