"""The subscriber's read buffer: bytes in, whole MQTT packets out, however the reads split them.

Packets are built by hand (`packet`, `publish`) and, for PUBLISH, checked against paho's own
decoder, so these tests do not merely agree with themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet as paho_packet
from paho.mqtt.enums import MQTTProtocolVersion

from gateway.packets import PacketBuffer, Publish
from tests.gateway.mqtt_wire import PINGRESP, SUBACK, packet, publish, varint


def drain(buffer: PacketBuffer) -> list[Any]:
    """What a subscriber does with a buffer: take publishes, let "paho" read whole packets
    (as paho does: the command byte, each remaining-length byte, then the rest)."""
    out: list[Any] = []
    while True:
        message = buffer.pop_publish()
        if message is not None:
            out.append(message)
            continue
        if not buffer.ready():
            return out
        out.append(paho_read(buffer))


def paho_read(buffer: PacketBuffer) -> bytes:
    data = buffer.recv(1)
    while True:
        byte = buffer.recv(1)
        data += byte
        if not byte[0] & 0x80:
            break
    length, shift = 0, 0
    for b in data[1:]:
        length |= (b & 0x7F) << shift
        shift += 7
    return data + (buffer.recv(length) if length else b"")


def feed_in(buffer: PacketBuffer, stream: bytes, cuts: list[int]) -> list[Any]:
    """Feed `stream` cut at `cuts`, draining after each piece, like one recv per turn."""
    out: list[Any] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        buffer.feed(stream[start:cut])
        start = cut
        out.extend(drain(buffer))
    return out


STREAM = [
    publish("pledge/v1/SH1/gate-01/events", b'{"seq":1}', mid=1),
    PINGRESP,
    publish("pledge/v1/SH1/gate-01/events", b'{"seq":2}', mid=2, retain=True, dup=True),
    SUBACK,
    publish("pledge/v1/SH1/gate-02/status", b"online", qos=0),
    publish("pledge/v1/SH1/gate-01/events", b"x" * 300, mid=65535,
            properties=b"\x02\x00\x00\x00\x3c"),  # Message Expiry Interval 60
]
EXPECTED = [
    Publish("pledge/v1/SH1/gate-01/events", b'{"seq":1}', 1, 1, False, False),
    PINGRESP,
    Publish("pledge/v1/SH1/gate-01/events", b'{"seq":2}', 2, 1, True, True),
    SUBACK,
    Publish("pledge/v1/SH1/gate-02/status", b"online", 0, 0, False, False),
    Publish("pledge/v1/SH1/gate-01/events", b"x" * 300, 65535, 1, False, False),
]


def test_several_packets_in_one_read_come_out_in_order() -> None:
    buffer = PacketBuffer(properties=True)
    buffer.feed(b"".join(STREAM))
    assert drain(buffer) == EXPECTED
    assert buffer.buffered() == 0
    assert buffer.consumed == sum(map(len, STREAM))


def test_packets_split_at_every_byte_boundary_come_out_the_same() -> None:
    stream = b"".join(STREAM)
    for cut in range(1, len(stream)):
        assert feed_in(PacketBuffer(properties=True), stream, [cut]) == EXPECTED, cut


def test_packets_fed_one_byte_at_a_time_come_out_the_same() -> None:
    stream = b"".join(STREAM)
    assert feed_in(PacketBuffer(properties=True), stream, list(range(1, len(stream)))) == EXPECTED


def test_paho_is_never_served_part_of_a_packet_still_arriving() -> None:
    buffer = PacketBuffer(properties=True)
    buffer.feed(SUBACK[:3])
    with pytest.raises(BlockingIOError):
        buffer.recv(1)
    assert buffer.buffered() == 3 and buffer.consumed == 0  # nothing taken
    buffer.feed(SUBACK[3:])
    assert paho_read(buffer) == SUBACK


def test_a_publish_still_arriving_is_not_taken() -> None:
    whole = publish("t/1", b"payload")
    buffer = PacketBuffer(properties=True)
    buffer.feed(whole[:-1])
    assert buffer.pop_publish() is None and not buffer.ready()
    buffer.feed(whole[-1:])
    assert buffer.pop_publish() == Publish("t/1", b"payload", 1, 1, False, False)


def test_mqtt_311_publishes_have_no_properties_block() -> None:
    buffer = PacketBuffer(properties=False)
    buffer.feed(publish("t/1", b"\x00\x01", mid=9, properties=None))
    assert buffer.pop_publish() == Publish("t/1", b"\x00\x01", 9, 1, False, False)


def test_an_empty_payload_is_a_message() -> None:
    buffer = PacketBuffer(properties=True)
    buffer.feed(publish("t/1", b""))
    assert buffer.pop_publish() == Publish("t/1", b"", 1, 1, False, False)


def test_the_end_of_the_stream_comes_after_the_last_whole_packet() -> None:
    buffer = PacketBuffer(properties=True)
    buffer.feed(PINGRESP + SUBACK[:2])
    buffer.close()
    assert buffer.closed
    assert paho_read(buffer) == PINGRESP
    assert buffer.recv(1) == b""  # EOF, as the socket said; the half SUBACK is never served


def test_a_read_error_is_raised_to_paho_after_the_last_whole_packet() -> None:
    buffer = PacketBuffer(properties=True)
    buffer.feed(PINGRESP)
    error = ConnectionResetError(104, "Connection reset by peer")
    buffer.close(error)
    assert paho_read(buffer) == PINGRESP
    with pytest.raises(ConnectionResetError) as caught:
        buffer.recv(1)
    assert caught.value is error


def test_a_fifth_remaining_length_byte_goes_to_paho_which_refuses_it() -> None:
    bad = b"\x30\xff\xff\xff\xff\x01"  # paho: "more than 4 bytes" -> MQTT_ERR_PROTOCOL
    buffer = PacketBuffer(properties=True)
    buffer.feed(bad[:5])
    assert buffer.pop_publish() is None and not buffer.ready()  # waits for the 5th byte
    buffer.feed(bad[5:] + PINGRESP)
    assert buffer.pop_publish() is None and buffer.ready()
    assert b"".join(buffer.recv(1) for _ in range(6)) == bad


@pytest.mark.parametrize("raw", [
    publish("t/1", b"x", qos=2),  # QoS 2: paho's PUBREC/PUBREL flow
    packet(0x36, b"\x00\x03t/1\x00\x01\x00x"),  # QoS 3 does not exist
    packet(0x32, b"\x00\x09t/1"),  # topic longer than the packet
    packet(0x32, b"\x00"),  # no room for the topic length
    packet(0x32, b"\x00\x00\x00\x01\x00x"),  # empty topic (a topic alias)
    packet(0x32, b"\x00\x02\xff\xfe\x00\x01\x00x"),  # topic not UTF-8
    packet(0x32, b"\x00\x03t/1\x00"),  # no room for the packet id
    packet(0x32, b"\x00\x03t/1\x00\x01\x05\x02"),  # properties longer than the packet
    packet(0x32, b"\x00\x03t/1\x00\x01\xff\xff\xff\xff\x01"),  # properties length of 5 bytes
])
def test_publishes_we_do_not_take_are_left_whole_for_paho(raw: bytes) -> None:
    buffer = PacketBuffer(properties=True)
    buffer.feed(raw + PINGRESP)
    assert buffer.pop_publish() is None
    assert buffer.consumed == 0
    assert paho_read(buffer) == raw
    assert paho_read(buffer) == PINGRESP


def test_a_large_packet_arriving_in_many_reads_is_taken_once_whole() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB: a three-byte remaining length
    whole = publish("t/big", payload)
    buffer = PacketBuffer(properties=True)
    for start in range(0, len(whole), 4096):
        assert buffer.pop_publish() is None
        buffer.feed(whole[start : start + 4096])
    assert buffer.pop_publish() == Publish("t/big", payload, 1, 1, False, False)


_topics = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                  max_size=40)
_publishes = st.tuples(_topics, st.binary(max_size=300), st.integers(1, 65535),
                       st.integers(0, 1), st.booleans(), st.booleans(),
                       st.sampled_from([b"", b"\x01\x01", b"\x02\x00\x00\x00\x3c",
                                        b"\x26\x00\x01k\x00\x01v"]))


@given(messages=st.lists(_publishes, min_size=1, max_size=8), mqtt5=st.booleans(),
       cuts=st.lists(st.integers(1, 4000), max_size=12))
def test_any_publishes_cut_anywhere_come_out_as_paho_decodes_them(
        messages: list[tuple[str, bytes, int, int, bool, bool, bytes]], mqtt5: bool,
        cuts: list[int]) -> None:
    raws = [publish(topic, payload, mid=mid, qos=qos, retain=retain, dup=dup,
                    properties=props if mqtt5 else None)
            for topic, payload, mid, qos, retain, dup, props in messages]
    stream = b"".join(raws)
    got = feed_in(PacketBuffer(properties=mqtt5), stream, [c for c in cuts if c < len(stream)])
    protocol = MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311
    expected = []
    for raw in raws:  # paho's decoder on the same packet: the oracle
        body = raw[len(raw) - _length_of(raw):]
        p = paho_packet.decode_publish(raw[0], bytearray(body), protocol)
        expected.append(Publish(p.topic.decode(), bytes(p.payload), p.mid, p.qos, p.retain,
                                p.dup))
    assert got == expected


def _length_of(raw: bytes) -> int:
    length, shift, i = 0, 0, 1
    while True:
        length |= (raw[i] & 0x7F) << shift
        if not raw[i] & 0x80:
            return length
        shift += 7
        i += 1


def test_the_varint_helper_of_these_tests_matches_the_spec_examples() -> None:
    # MQTT 5 section 1.5.5: 127 -> 0x7F, 128 -> 0x80 0x01, 16384 -> 0x80 0x80 0x01
    assert (varint(127), varint(128), varint(16_384)) == (b"\x7f", b"\x80\x01", b"\x80\x80\x01")
