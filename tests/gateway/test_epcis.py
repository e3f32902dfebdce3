"""GS1 EPCIS 2.0 JSON-LD documents and events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import epcis
from gateway.observation import QuantityObservation, TagRead, WeightSample

SAMPLES = Path(__file__).parent / "samples"
NOW = datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
WMS = DeviceContext("wms-epcis", "wh-sh-01", None, "rfid_zone", "epcis", None)
UUID = "urn:uuid:6f1c2a3e-8a4b-4f0e-9a51-0c2d7e9b1a0"


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "type": "ObjectEvent",
        "eventTime": "2024-03-01T18:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "OBSERVE",
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


def decode(value: Any) -> list[Any]:
    return epcis.decode(json.dumps(value).encode(), WMS, NOW)


def reason(value: Any) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(value)
    return caught.value.reason


@pytest.fixture(scope="module")
def document() -> list[Any]:
    return epcis.decode((SAMPLES / "epcis_document.jsonld").read_bytes(), WMS, NOW)


def test_observe_events_give_tag_reads_without_direction(document: list[Any]) -> None:
    first, second = document[0], document[1]
    assert first == TagRead(
        "wms-epcis",
        datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        f"wms-epcis:{UUID}1#e0",
        "urn:epc:id:sgtin:0614141.107346.2017",
    )
    assert second.epc == "urn:epc:id:sgtin:0614141.107346.2018"
    assert second.event_key == f"wms-epcis:{UUID}1#e1"


def test_add_receiving_is_in_and_quantities_are_read(document: list[Any]) -> None:
    received = [o for o in document if o.event_key.startswith(f"wms-epcis:{UUID}2")]
    assert received[0] == TagRead(
        "wms-epcis",
        datetime(2024, 3, 1, 10, 1, tzinfo=UTC),
        f"wms-epcis:{UUID}2#e0",
        "3034257BF7194E4000001A85",
        direction="in",
    )
    assert received[1:] == [
        QuantityObservation(
            "wms-epcis",
            received[0].at,
            f"wms-epcis:{UUID}2#q0",
            "urn:epc:class:lgtin:4012345.012345.998877",
            Decimal("200.5"),
            "KGM",
            "in",
        ),
        QuantityObservation(
            "wms-epcis",
            received[0].at,
            f"wms-epcis:{UUID}2#q1",
            "urn:epc:idpat:sgtin:4012345.098765.*",
            Decimal(12),
            None,
            "in",
        ),
    ]


def test_shipping_as_web_uri_is_out_and_has_a_digest_key(document: list[Any]) -> None:
    [shipped] = [o for o in document if o.at == datetime(2024, 3, 1, 10, 3, tzinfo=UTC)]
    assert shipped.direction == "out"
    assert len(shipped.event_key.removeprefix("wms-epcis:").split("#")[0]) == 64


def test_mass_sensor_reports_become_weight_samples_in_kg(document: list[Any]) -> None:
    samples = [o for o in document if isinstance(o, WeightSample)]
    assert samples == [
        WeightSample(
            "wms-epcis",
            datetime(2024, 3, 1, 10, 3, 58, tzinfo=UTC),
            f"wms-epcis:{UUID}4#s0.1",
            Decimal("1250.500"),
            True,
        ),
        WeightSample(
            "wms-epcis",
            datetime(2024, 3, 1, 10, 3, 59, 500000, tzinfo=UTC),
            f"wms-epcis:{UUID}4#s0.2",
            Decimal("1250.25"),
            True,
        ),
    ]


def test_delete_is_out(document: list[Any]) -> None:
    [deleted] = [o for o in document if o.event_key.startswith(f"wms-epcis:{UUID}5")]
    assert deleted.direction == "out"


def test_aggregation_events_and_error_declarations_are_skipped(document: list[Any]) -> None:
    assert len(document) == 2 + 3 + 1 + 2 + 1


def test_a_query_document() -> None:
    [read] = epcis.decode((SAMPLES / "epcis_query.json").read_bytes(), WMS, NOW)
    assert isinstance(read, TagRead)
    assert read.epc == "urn:epc:id:sgtin:0614141.107346.2019"
    assert read.direction == "in"
    assert read.at == datetime(2024, 3, 1, 10, 9, 0, 250000, tzinfo=UTC)
    assert read.event_key.startswith("wms-epcis:ni:///sha-256;")


def test_a_single_event() -> None:
    [read] = decode(event(action="ADD", bizStep="receiving"))
    assert read.direction == "in"


@pytest.mark.parametrize(
    ("action", "step", "direction"),
    [
        ("OBSERVE", None, None),
        ("OBSERVE", "receiving", None),
        ("ADD", "receiving", "in"),
        ("ADD", "urn:epcglobal:cbv:bizstep:receiving", "in"),
        ("ADD", "https://ref.gs1.org/cbv/BizStep-receiving", "in"),
        ("ADD", "commissioning", None),
        ("OBSERVE", "shipping", "out"),
        ("OBSERVE", "urn:epcglobal:cbv:bizstep:departing", "out"),
        ("DELETE", None, "out"),
        ("DELETE", "receiving", "out"),
    ],
)
def test_direction_rules(action: str, step: str | None, direction: str | None) -> None:
    [read] = decode(event(action=action, bizStep=step))
    assert read.direction == direction


def test_event_time_without_offset_uses_the_event_time_zone_offset() -> None:
    [read] = decode(event(eventTime="2024-03-01T18:00:00"))
    assert read.at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def test_event_keys_are_stable_for_a_redelivered_event() -> None:
    assert decode(event())[0].event_key == decode(event())[0].event_key
    assert decode(event())[0].event_key != decode(event(action="ADD"))[0].event_key


@pytest.mark.parametrize(
    ("uom", "kg"),
    [
        ("KGM", Decimal("2.5")),
        ("GRM", Decimal("0.0025")),
        ("TNE", Decimal(2500)),
        ("LBR", Decimal("1.133980925")),
    ],
)
def test_mass_units(uom: str, kg: Decimal) -> None:
    value = event(
        epcList=[], sensorElementList=[{"sensorReport": [{"type": "gs1:MT-Mass", "value": 2.5, "uom": uom}]}]
    )
    [sample] = decode(value)
    assert sample.mass_kg == kg
    assert sample.at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def sensor(report: dict[str, Any]) -> dict[str, Any]:
    return event(sensorElementList=[{"sensorReport": [report]}])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"type": "EPCISDocument"}, "missing_field"),
        ({"type": "EPCISDocument", "epcisBody": {}}, "missing_field"),
        ({"type": "EPCISQueryDocument", "epcisBody": {"queryResults": {}}}, "missing_field"),
        ({"epcisBody": {"eventList": []}}, "missing_field"),
        (event(eventTime=None), "missing_field"),
        (event(action=None), "missing_field"),
        ({"type": "EPCISDocument", "epcisBody": {"eventList": {}}}, "wrong_type"),
        ({"type": "EPCISDocument", "epcisBody": []}, "wrong_type"),
        ([event()], "wrong_type"),
        (event(epcList="urn:epc:id:sgtin:0614141.107346.2017"), "wrong_type"),
        (event(epcList=[7]), "wrong_type"),
        (event(bizStep=["receiving"]), "wrong_type"),
        (event(eventID=42), "wrong_type"),
        (event(quantityList=[{"epcClass": "urn:epc:class:lgtin:1.2.3", "quantity": "5"}]), "wrong_type"),
        (event(action="MOVE"), "bad_value"),
        (event(epcList=["urn epc with spaces"]), "bad_value"),
        (event(epcList=["urn:epc:raw:96.xZZ"]), "bad_value"),
        (event(quantityList=[{"epcClass": "urn:epc:class:lgtin:1.2.3", "quantity": -1}]), "bad_value"),
        (event(quantityList=[{"quantity": 1}]), "missing_field"),
        (sensor({"type": "gs1:MT-Mass", "value": 5, "uom": "CEL"}), "bad_unit"),
        (sensor({"type": "gs1:MT-Mass", "value": 5}), "bad_unit"),
        (sensor({"type": "gs1:MT-Mass", "uom": "KGM"}), "missing_field"),
        (sensor({"type": "gs1:MT-Mass", "value": "5", "uom": "KGM"}), "wrong_type"),
        (sensor({"type": "gs1:MT-Mass", "value": 5, "uom": "KGM", "time": "soon"}), "bad_timestamp"),
        (event(eventTime="2024-03-01T18:00:00", eventTimeZoneOffset=None), "bad_timestamp"),
        (event(eventTimeZoneOffset="+8"), "bad_timestamp"),
        (event(eventTime="2024-03-01"), "bad_timestamp"),
    ],
)
def test_bad_documents(value: Any, expected: str) -> None:
    assert reason(value) == expected


def test_non_mass_sensor_reports_need_no_unit_we_know() -> None:
    assert len(decode(sensor({"type": "gs1:MT-Temperature", "value": 5, "uom": "CEL"}))) == 1  # just the EPC
