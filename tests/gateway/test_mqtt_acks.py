"""PUBACKs of a batch leave in one send (`_BufferedClient._packet_write`), byte-exact.

paho writes each queued packet with its own `send`; the subscriber joins the PUBACKs at the
head of the queue. Over a real socket pair: the peer must read exactly the bytes paho queued,
in order, however the kernel cuts the sends (a full send buffer takes part of a write), and
packets that are not PUBACKs still go paho's way.
"""

from __future__ import annotations

import socket

import pytest
from paho.mqtt.client import MQTTErrorCode

from gateway.mqtt import MqttConfig, _BufferedClient, _new_client


def _client(protocol: int) -> tuple[_BufferedClient, socket.socket, socket.socket]:
    client = _new_client(
        MqttConfig("mqtt://127.0.0.1:1", client_id="acks", protocol=protocol),
        persistent=True,
        manual_ack=True,
        kind=_BufferedClient,
    )
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    client._sock = ours  # what connect() would have set
    client.on_socket_register_write = lambda *_: None  # queue; write on loop_write (the loop's writer)
    client.on_socket_unregister_write = lambda *_: None
    return client, ours, peer


def _queued(client: _BufferedClient) -> bytes:
    return b"".join(bytes(p["packet"][p["pos"] :]) for p in client._out_packet)


def _read_all(peer: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest.mark.parametrize("protocol", [5, 311])
def test_a_batch_of_pubacks_goes_out_in_one_send_in_order(protocol: int) -> None:
    client, ours, peer = _client(protocol)
    with ours, peer:
        for mid in range(1, 501):
            assert client.ack(mid, 1) == MQTTErrorCode.MQTT_ERR_SUCCESS
        expected = _queued(client)
        assert len(expected) == 500 * 4 and expected[:4] == bytes([0x40, 2, 0, 1])
        assert client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert _read_all(peer) == expected
        assert client.acks_coalesced == 1 and not client._out_packet


def test_a_full_send_buffer_keeps_the_rest_queued_and_no_byte_is_lost() -> None:
    client, ours, peer = _client(5)
    with ours, peer:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for mid in range(1, 60_001):  # 240,000 bytes: several joined sends, most of them cut
            client.ack(mid % 65_535 + 1, 1)
        expected = _queued(client)
        received = b""
        rounds = 0
        while client._out_packet:
            rounds += 1
            assert rounds < 100_000
            client.loop_write()
            received += _read_all(peer)
        received += _read_all(peer)
        assert received == expected
        assert rounds > 1  # the kernel really took part of a write


def test_other_packets_go_paho_s_way_and_the_order_holds() -> None:
    client, ours, peer = _client(5)
    with ours, peer:
        client.ack(1, 1)
        client.ack(2, 1)
        client._send_pingreq()  # not a PUBACK: paho writes it (and what follows) itself
        client.ack(3, 1)
        expected = _queued(client)
        client.loop_write()
        assert _read_all(peer) == expected
        assert expected[8:10] == bytes([0xC0, 0])  # the PINGREQ between the acks
        assert not client._out_packet
