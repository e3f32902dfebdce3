"""MQTT topic names, parsed and built without a broker.

    pledge/v1/{site}/{device}/events    observations (QoS 1)
    pledge/v1/{site}/{device}/status    heartbeats, birth and last-will messages

Site and device ids match `[A-Za-z0-9_.-]{1,64}`: no `/`, no wildcards, no `$`, so an id can
never widen a subscription or an ACL pattern. The device id in the topic is the identity the
broker authenticated (see docs/device-protocol.md); payloads are checked against it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from gateway.errors import BadTopic

__all__ = [
    "PREFIX",
    "Channel",
    "Topic",
    "device_filter",
    "events_filter",
    "events_topic",
    "parse_topic",
    "shared",
    "status_filter",
    "status_topic",
]

PREFIX = "pledge/v1"
Channel: TypeAlias = Literal["events", "status"]
_CHANNELS: frozenset[str] = frozenset(get_args(Channel))
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: which site, which device, which channel."""

    site: str
    device: str
    channel: Channel

    def __str__(self) -> str:
        return f"{PREFIX}/{self.site}/{self.device}/{self.channel}"


@functools.lru_cache(maxsize=4096)
def parse_topic(topic: str) -> Topic:
    """Parse `pledge/v1/{site}/{device}/{events|status}`; raise `BadTopic` otherwise.

    Cached: a gateway sees the same few thousand topics over and over (a `Topic` is frozen, so
    sharing one is safe; a refusal raises and is never cached)."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != PREFIX:
        raise BadTopic(f"not a {PREFIX}/{{site}}/{{device}}/{{channel}} topic", topic=topic)
    _, _, site, device, channel = parts
    _check_id("site", site)
    _check_id("device", device)
    if channel not in _CHANNELS:
        raise BadTopic(f"unknown channel {channel!r}", topic=topic)
    return Topic(site, device, channel)  # type: ignore[arg-type]  # checked just above


def events_topic(site: str, device: str) -> str:
    """The topic a device publishes its observations to."""
    return str(Topic(_check_id("site", site), _check_id("device", device), "events"))


def status_topic(site: str, device: str) -> str:
    """The topic a device publishes heartbeats and its last will to."""
    return str(Topic(_check_id("site", site), _check_id("device", device), "status"))


def device_filter(site: str, device: str) -> str:
    """Everything one device may publish to: `pledge/v1/{site}/{device}/#` (for ACLs)."""
    return f"{PREFIX}/{_check_id('site', site)}/{_check_id('device', device)}/#"


def events_filter() -> str:
    """Subscription filter for every device's observations."""
    return f"{PREFIX}/+/+/events"


def status_filter() -> str:
    """Subscription filter for every device's status messages."""
    return f"{PREFIX}/+/+/status"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: `$share/{group}/{filter}` (load-balanced across the
    group's members; Mosquitto 2.x and EMQX, not amqtt)."""
    if not _GROUP.fullmatch(group):
        raise BadTopic(f"bad share group name {group!r}", group=group)
    if not topic_filter or topic_filter.startswith(("$", "/")):
        raise BadTopic(f"bad filter for a shared subscription {topic_filter!r}")
    return f"$share/{group}/{topic_filter}"


def _check_id(kind: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise BadTopic(f"bad {kind} id {value!r}: expected [A-Za-z0-9_.-]{{1,64}}", **{kind: value})
    return value
