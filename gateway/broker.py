"""An embedded MQTT broker (amqtt 0.12) for fresh machines, demos and tests.

It lets `pledge demo` run where no Mosquitto is installed. It is not a production broker, and
the gateway's no-loss guarantee does not hold on it (measured in
tests/gateway/test_mqtt_contract.py, written up in docs/mqtt.md):

- MQTT 3.1.1 only: no Receive Maximum, no session expiry, no shared subscriptions
  (`$share/...` filters are granted but never receive anything).
- Every client of an `allow_anonymous` broker is an *anonymous session*, and amqtt keeps
  nothing for those once they disconnect: no subscriptions, no queued messages
  (amqtt/broker.py `_session_monitor` and `_run_broadcast`).
- Even for named sessions, amqtt forgets a QoS 1 message it sent but that was not
  acknowledged: the PUBLISH's wait for PUBACK is cancelled on disconnect, or gives up after
  5 s, and either way the message leaves the in-flight table
  (amqtt/mqtt/protocol/handler.py `_handle_qos1_message_flow`). So nothing is redelivered
  after a gateway crash, and a gateway that takes longer than 5 s to commit loses messages.
"""

from __future__ import annotations

import errno
import logging
import socket
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.errors import BrokerError

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)

_NOISY_LOGGERS = ("amqtt", "transitions")
_PORT_ATTEMPTS = 5


def _free_port(host: str) -> int:
    """A TCP port that nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _quiet_amqtt() -> None:
    """amqtt logs every connection and state change at INFO; keep its WARNINGs and above.

    A level someone set on purpose (e.g. DEBUG while chasing a bug) is left alone.
    """
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt 0.12 configuration (amqtt/contexts.py `BrokerConfig`, `ListenerConfig`).

    Listing `plugins` replaces amqtt's defaults: we keep only the anonymous-auth plugin and
    drop the packet/event loggers and the $SYS publisher (a task that wakes every 20 s).
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


class EmbeddedBroker:
    """An amqtt broker on `host` (loopback by default) and a free port.

    Use as `async with EmbeddedBroker() as broker: ... broker.url ...`. `stop()` and `start()`
    may be called again to simulate a broker restart: the port stays the same, every session
    is lost (amqtt keeps no state on disk).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else 0
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        """`mqtt://host:port`, valid once started."""
        if not self.port:
            raise RuntimeError("EmbeddedBroker has not been started")
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        if self._broker is not None:
            return
        _quiet_amqtt()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if not self.port:
                self.port = _free_port(self.host)
            broker = Broker(_broker_config(self.host, self.port))
            try:
                await broker.start()
            except BrokerError as e:
                # Between closing the probe socket and amqtt binding, another process may have
                # taken the port. Pick another one, unless the caller asked for this port.
                if self._fixed_port or attempt == _PORT_ATTEMPTS or not _in_use(e):
                    raise
                self.port = 0
                continue
            self._broker = broker
            self._fixed_port = True  # a restart must come back where clients reconnect to
            break
        log.warning(
            "started an embedded MQTT broker (amqtt) on %s:%d. It speaks MQTT 3.1.1 only and "
            "does not redeliver in-flight messages after a crash: point PLEDGE_MQTT_URL at "
            "Mosquitto or EMQX for anything that must not lose data", self.host, self.port)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
            log.info("stopped the embedded MQTT broker on %s:%d", self.host, self.port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def _in_use(error: BaseException) -> bool:
    cause = error.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
