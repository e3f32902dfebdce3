"""Broker URLs and MQTT settings: pure, no broker needed."""

from __future__ import annotations

import pytest

from gateway.mqtt import BrokerAddress, LastWill, MqttConfig, MqttConfigError, parse_mqtt_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883, False, None, None)),
        ("mqtt://broker.example", BrokerAddress("broker.example", 1883, False, None, None)),
        ("mqtts://broker.example", BrokerAddress("broker.example", 8883, True, None, None)),
        ("mqtts://broker.example:443/", BrokerAddress("broker.example", 443, True, None, None)),
        ("MQTT://Broker.Example:1884", BrokerAddress("broker.example", 1884, False, None, None)),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883, False, None, None)),
        ("mqtt://gw@host", BrokerAddress("host", 1883, False, "gw", None)),
        ("mqtt://gw:@host", BrokerAddress("host", 1883, False, "gw", "")),
        ("mqtt://gw:s3cret@host:1999", BrokerAddress("host", 1999, False, "gw", "s3cret")),
        # Reserved characters in credentials arrive percent-encoded and leave decoded.
        ("mqtt://gw%40site:p%3Aw%2Fd%40@host", BrokerAddress("host", 1883, False, "gw@site", "p:w/d@")),
    ],
)
def test_valid_urls_parse(url: str, expected: BrokerAddress) -> None:
    assert parse_mqtt_url(url) == expected


def test_the_result_unpacks_as_a_tuple() -> None:
    host, port, tls, username, password = parse_mqtt_url("mqtts://u:p@h:1")
    assert (host, port, tls, username, password) == ("h", 1, True, "u", "p")


@pytest.mark.parametrize(
    "url",
    [
        "",
        " mqtt://host",
        "host:1883",
        "127.0.0.1:1883",
        "tcp://host:1883",
        "http://host",
        "ws://host:8080",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://host:0",
        "mqtt://host:65536",
        "mqtt://host:port",
        "mqtt://host:-1",
        "mqtt://[::1",
        "mqtt://host/topic",
        "mqtt://host?x=1",
        "mqtt://host#frag",
        "mqtt://:secret@host",
    ],
)
def test_invalid_urls_raise_a_config_error(url: str) -> None:
    with pytest.raises(MqttConfigError) as caught:
        parse_mqtt_url(url)
    assert caught.value.setting == "url"


def test_a_config_error_never_echoes_the_password() -> None:
    with pytest.raises(MqttConfigError) as caught:
        parse_mqtt_url("mqtt://gw:hunter2@host/path")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.value)


def test_explicit_credentials_override_the_url() -> None:
    config = MqttConfig(url="mqtt://url-user:url-pass@host", client_id="gw", username="u",
                        password="p")
    assert config.address == BrokerAddress("host", 1883, False, "u", "p")
    assert MqttConfig(url="mqtt://a:b@host", client_id="gw").address.password == "b"


def test_config_repr_hides_the_password() -> None:
    config = MqttConfig(url="mqtt://gw:hunter2@host", client_id="gw", password="hunter3")
    assert "hunter2" not in repr(config)
    assert "hunter3" not in repr(config)
    assert "mqtt://gw:***@host" in repr(config)


def test_config_defaults_ask_for_an_mqtt5_persistent_session_with_a_wide_window() -> None:
    config = MqttConfig(url="mqtt://host", client_id="gw")
    assert (config.protocol, config.receive_maximum, config.session_expiry_s) == (5, 5000, 3600)
    assert (config.keepalive_s, config.reconnect_min_s, config.reconnect_max_s) == (30, 0.5, 30.0)


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"url": "http://host"}, "url"),
        ({"client_id": ""}, "client_id"),
        ({"protocol": 4}, "protocol"),
        ({"receive_maximum": 0}, "receive_maximum"),
        ({"receive_maximum": 65536}, "receive_maximum"),
        ({"session_expiry_s": 0}, "session_expiry_s"),
        ({"keepalive_s": 0}, "keepalive_s"),
        ({"reconnect_min_s": 0}, "reconnect_min_s"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_min_s"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"last_will": LastWill("gw/+/status", b"offline")}, "last_will"),
        ({"last_will": LastWill("", b"offline")}, "last_will"),
    ],
)
def test_invalid_settings_are_refused_before_any_io(changes: dict[str, object],
                                                     setting: str) -> None:
    arguments: dict[str, object] = {"url": "mqtt://host", "client_id": "gw", **changes}
    with pytest.raises(MqttConfigError) as caught:
        MqttConfig(**arguments)  # type: ignore[arg-type]
    assert caught.value.setting == setting


def test_config_is_frozen_and_carries_a_last_will() -> None:
    will = LastWill(topic="gw/1/status", payload=b"offline")
    config = MqttConfig(url="mqtt://host", client_id="gw", last_will=will)
    assert config.last_will == LastWill("gw/1/status", b"offline", qos=1, retain=True)
    with pytest.raises(AttributeError):
        config.client_id = "other"  # type: ignore[misc]
