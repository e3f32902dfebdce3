"""Fixtures for the MQTT tests: a real Mosquitto (CI rule) and the embedded broker.

Self-contained on purpose: the generic parts (`mqtt_url`, `embedded_broker`,
`no_leaked_paho_threads`) are meant to move to tests/conftest.py unchanged.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.broker import EmbeddedBroker
from gateway.mqtt import MqttConfigError, parse_mqtt_url

MQTT_URL_ENV = "PLEDGE_TEST_MQTT_URL"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"


def _unavailable(reason: str) -> None:
    """Fail in CI (a missing service must never turn into a green build), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: Mosquitto is required)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    """URL of a real Mosquitto 2 (env PLEDGE_TEST_MQTT_URL, default mqtt://127.0.0.1:1883)."""
    url = os.environ.get(MQTT_URL_ENV, DEFAULT_MQTT_URL)
    try:
        address = parse_mqtt_url(url)
    except MqttConfigError as e:
        pytest.fail(f"{MQTT_URL_ENV}={url!r} is not a broker URL: {e}", pytrace=False)
    try:
        with socket.create_connection((address.host, address.port), timeout=1.0):
            pass
    except OSError as e:
        _unavailable(f"no MQTT broker at {address.host}:{address.port} ({e})")
    return url


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """A fresh amqtt broker on a free loopback port, stopped after the test."""
    async with EmbeddedBroker() as broker:
        yield broker


def _paho_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("paho-mqtt-client-")}


@pytest.fixture(autouse=True)
def no_leaked_paho_threads() -> Iterator[None]:
    """Every test must stop the paho network threads it started."""
    before = _paho_threads()
    yield
    leaked = _paho_threads() - before
    assert not leaked, f"paho threads still running after the test: {sorted(t.name for t in leaked)}"
