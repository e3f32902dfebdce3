"""Topic parsing and building, without a broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadTopic
from gateway.topics import (
    Topic,
    device_filter,
    events_filter,
    events_topic,
    parse_topic,
    shared,
    status_filter,
    status_topic,
)

ids = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-",
    min_size=1,
    max_size=64,
)


def test_parses_an_events_topic() -> None:
    assert parse_topic("pledge/v1/wh-sh-01/gate-01/events") == Topic("wh-sh-01", "gate-01", "events")


def test_parses_a_status_topic() -> None:
    topic = parse_topic("pledge/v1/wh_1/scale.7/status")
    assert (topic.site, topic.device, topic.channel) == ("wh_1", "scale.7", "status")


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "pledge/v1/site/gate-01",  # no channel
        "pledge/v1/site/gate-01/events/extra",
        "pledge/v2/site/gate-01/events",
        "other/v1/site/gate-01/events",
        "/pledge/v1/site/gate-01/events",
        "pledge/v1//gate-01/events",  # empty site
        "pledge/v1/site/+/events",  # wildcard
        "pledge/v1/site/#/events",
        "pledge/v1/site/gate 01/events",  # space
        "pledge/v1/site/gate-01/commands",  # unknown channel
        "pledge/v1/site/gate-01/Events",
        "pledge/v1/sité/gate-01/events",  # non-ASCII
        "pledge/v1/site/" + "d" * 65 + "/events",  # id too long
        "pledge/v1/site/gate-01\n/events",
        "$SYS/broker/clients",
    ],
)
def test_refuses_bad_topics(topic: str) -> None:
    with pytest.raises(BadTopic) as caught:
        parse_topic(topic)
    assert caught.value.reason == "bad_topic"


def test_builds_topics_and_filters() -> None:
    assert events_topic("wh1", "gate-01") == "pledge/v1/wh1/gate-01/events"
    assert status_topic("wh1", "gate-01") == "pledge/v1/wh1/gate-01/status"
    assert device_filter("wh1", "gate-01") == "pledge/v1/wh1/gate-01/#"
    assert events_filter() == "pledge/v1/+/+/events"
    assert status_filter() == "pledge/v1/+/+/status"
    assert shared("gateway", events_filter()) == "$share/gateway/pledge/v1/+/+/events"


@pytest.mark.parametrize(("site", "device"), [("wh/1", "gate"), ("wh1", "+"), ("wh1", ""), ("#", "d")])
def test_refuses_to_build_topics_from_bad_ids(site: str, device: str) -> None:
    with pytest.raises(BadTopic):
        events_topic(site, device)
    with pytest.raises(BadTopic):
        device_filter(site, device)


@pytest.mark.parametrize(
    ("group", "topic_filter"), [("", "a/b"), ("g/x", "a/b"), ("g", ""), ("g", "$share/x/y")]
)
def test_refuses_bad_shared_subscriptions(group: str, topic_filter: str) -> None:
    with pytest.raises(BadTopic):
        shared(group, topic_filter)


@given(site=ids, device=ids)
def test_building_then_parsing_round_trips(site: str, device: str) -> None:
    assert parse_topic(events_topic(site, device)) == Topic(site, device, "events")
    assert str(parse_topic(status_topic(site, device))) == status_topic(site, device)


@given(st.text(max_size=120))
def test_any_string_parses_or_raises_bad_topic(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except BadTopic:
        return
    assert str(parsed) == topic
