"""GS1 EPCIS 2.0 JSON / JSON-LD: ObjectEvents to tag reads, quantities and masses.

Accepted payloads: an `EPCISDocument` (`epcisBody.eventList`), an `EPCISQueryDocument`
(`epcisBody.queryResults.resultsBody.eventList`), or a single event object. Only
`ObjectEvent`s are decoded; other event types are skipped, and so are events carrying an
`errorDeclaration` (they retract an earlier event rather than observe anything).

Per ObjectEvent:

* `eventTime` -> at (its own offset, else `eventTimeZoneOffset`).
* `action` ADD / OBSERVE / DELETE and `bizStep` (bare "receiving", "urn:epcglobal:cbv:
  bizstep:receiving" or "https://ref.gs1.org/cbv/BizStep-receiving") -> direction:
  DELETE, or bizStep shipping / departing -> "out"; ADD with bizStep receiving -> "in";
  otherwise (OBSERVE included) None.
* each `epcList` entry -> TagRead. Hex and raw-hex URIs (`urn:epc:raw:96.x3034...`) become
  uppercase hex; any other URI - a pure identity such as `urn:epc:id:sgtin:0614141.107346.2017`
  or a GS1 Digital Link - is kept verbatim as the epc. A pure identity cannot be turned back
  into the tag's hex EPC (it omits the filter value), so lots tracked through EPCIS must be
  registered under the same URI.
* each `quantityList` entry -> QuantityObservation(epc_class, quantity, uom).
* each `sensorElementList[].sensorReport[]` whose `type` ends in "Mass" (e.g. "gs1:MT-Mass")
  -> WeightSample (stable=True: EPCIS records settled measurements), `value` in `uom`
  KGM / GRM / TNE / LBR converted to kg; any other or missing mass uom -> bad_unit. Time: the
  report's `time`, else its sensorMetadata `time`, else eventTime. Other sensor types skipped.

`readPoint.id` and `bizLocation.id` are accepted but not carried: the device's zone comes from
its registration (`DeviceContext.zone_id`). event_key base: "{device_id}:{eventID}" when the
event has an eventID (prefixed so one device cannot shadow another's ids), else
"{device_id}:" + sha256 of the event; then "#e{i}", "#q{i}", "#s{i}.{j}" per observation.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from gateway.device import DeviceContext
from gateway.errors import BadUnit, InvalidValue
from gateway.formats import _fields as f
from gateway.observation import (
    Direction,
    Observation,
    QuantityObservation,
    TagRead,
    WeightSample,
)

__all__ = ["MASS_UOM_KG", "decode"]

MASS_UOM_KG = {
    "KGM": Decimal(1),
    "GRM": Decimal("0.001"),
    "TNE": Decimal(1000),
    "LBR": Decimal("0.45359237"),
}
"""Kilograms per UN/CEFACT Rec. 20 mass unit code."""

_BIZSTEP_PREFIXES = ("urn:epcglobal:cbv:bizstep:", "https://ref.gs1.org/cbv/BizStep-", "cbv:BizStep-")
_ACTIONS = ("ADD", "OBSERVE", "DELETE")


def decode(raw: bytes, device: DeviceContext, now: datetime) -> list[Observation]:
    """An EPCIS document or event -> observations. `now` is unused (events carry time)."""
    out: list[Observation] = []
    for index, event in enumerate(_event_list(f.as_object(f.load_json(raw), ""))):
        out.extend(_object_event(event, f"eventList[{index}]", device))
    return out


def _event_list(doc: dict[str, Any]) -> list[Any]:
    kind = f.as_str(f.require(doc, "type", ""), "type")
    if kind == "EPCISDocument":
        return _dig(doc, ("epcisBody", "eventList"))
    if kind == "EPCISQueryDocument":
        return _dig(doc, ("epcisBody", "queryResults", "resultsBody", "eventList"))
    return [doc]  # a single event


def _dig(doc: dict[str, Any], keys: tuple[str, ...]) -> list[Any]:
    node: Any = doc
    path = ""
    for key in keys:
        node = f.require(f.as_object(node, path), key, path)
        path = f.join(path, key)
    return f.as_list(node, path)


def _object_event(value: Any, path: str, device: DeviceContext) -> list[Observation]:
    event = f.as_object(value, path)
    if f.as_str(f.require(event, "type", path), f.join(path, "type")) != "ObjectEvent":
        return []
    if event.get("errorDeclaration") is not None:
        return []
    at = _event_time(event, path)
    direction = _direction(event, path)
    base = _key_base(event, path, device)
    out: list[Observation] = []
    for i, epc in enumerate(f.as_list(event.get("epcList") or [], f.join(path, "epcList"))):
        where = f.join(f.join(path, "epcList"), i)
        out.append(TagRead(device.device_id, at, f"{base}#e{i}", _epc(epc, where), direction=direction))
    for i, entry in enumerate(f.as_list(event.get("quantityList") or [], f.join(path, "quantityList"))):
        where = f.join(f.join(path, "quantityList"), i)
        out.append(_quantity(entry, where, device, at, f"{base}#q{i}", direction))
    out.extend(_masses(event, path, device, at, base))
    return out


def _event_time(event: dict[str, Any], path: str) -> datetime:
    offset_text = event.get("eventTimeZoneOffset")
    offset: timezone | None = None
    if offset_text is not None:
        where = f.join(path, "eventTimeZoneOffset")
        offset = f.parse_offset(f.as_str(offset_text, where, max_len=8), where)
    when = f.require(event, "eventTime", path)
    return f.parse_timestamp(when, f.join(path, "eventTime"), default_offset=offset)


def _bizstep(event: dict[str, Any], path: str) -> str | None:
    step = event.get("bizStep")
    if step is None:
        return None
    step = f.as_str(step, f.join(path, "bizStep"))
    for prefix in _BIZSTEP_PREFIXES:
        if step.startswith(prefix):
            return step[len(prefix) :]
    return step


def _direction(event: dict[str, Any], path: str) -> Direction | None:
    action = f.as_str(f.require(event, "action", path), f.join(path, "action"))
    if action not in _ACTIONS:
        raise InvalidValue(f"{path}.action must be one of {_ACTIONS}, got {action[:20]!r}")
    step = _bizstep(event, path)
    if action == "DELETE" or step in ("shipping", "departing"):
        return "out"
    if action == "ADD" and step == "receiving":
        return "in"
    return None


def _key_base(event: dict[str, Any], path: str, device: DeviceContext) -> str:
    event_id = event.get("eventID")
    if event_id is None:
        return f"{device.device_id}:{f.digest(event)}"
    return f"{device.device_id}:{f.as_str(event_id, f.join(path, 'eventID'))}"


def _epc(value: Any, path: str) -> str:
    text = f.as_str(value, path)
    if text.lower().startswith("urn:epc:raw:") and ".x" in text:
        return f.epc_hex(text.split(".x", 1)[1], path)
    return f.tag_code(text, path)


def _quantity(
    value: Any, path: str, device: DeviceContext, at: datetime, key: str, direction: Direction | None
) -> QuantityObservation:
    entry = f.as_object(value, path)
    epc_class = f.tag_code(f.require(entry, "epcClass", path), f.join(path, "epcClass"))
    quantity = f.as_number(f.require(entry, "quantity", path), f.join(path, "quantity"))
    if quantity < 0:
        raise InvalidValue(f"{path}.quantity must not be negative", field=f.join(path, "quantity"))
    uom = entry.get("uom")
    uom = None if uom is None else f.as_str(uom, f.join(path, "uom"), max_len=8)
    return QuantityObservation(device.device_id, at, key, epc_class, quantity, uom, direction)


def _masses(
    event: dict[str, Any], path: str, device: DeviceContext, at: datetime, base: str
) -> list[Observation]:
    out: list[Observation] = []
    elements_path = f.join(path, "sensorElementList")
    for i, element in enumerate(f.as_list(event.get("sensorElementList") or [], elements_path)):
        where = f.join(elements_path, i)
        element = f.as_object(element, where)
        meta = f.as_object(element.get("sensorMetadata") or {}, f.join(where, "sensorMetadata"))
        element_at = _optional_time(meta, f.join(where, "sensorMetadata"), at)
        reports_path = f.join(where, "sensorReport")
        for j, report in enumerate(f.as_list(element.get("sensorReport") or [], reports_path)):
            report_path = f.join(reports_path, j)
            report = f.as_object(report, report_path)
            kind = report.get("type")
            if kind is None or not f.as_str(kind, f.join(report_path, "type")).endswith("Mass"):
                continue
            mass = _mass_kg(report, report_path)
            report_at = _optional_time(report, report_path, element_at)
            key = f"{base}#s{i}.{j}"
            out.append(WeightSample(device.device_id, report_at, key, mass, stable=True))
    return out


def _optional_time(obj: dict[str, Any], path: str, default: datetime) -> datetime:
    value = obj.get("time")
    return default if value is None else f.parse_timestamp(value, f.join(path, "time"))


def _mass_kg(report: dict[str, Any], path: str) -> Decimal:
    value = f.as_number(f.require(report, "value", path), f.join(path, "value"))
    uom = report.get("uom")
    factor = MASS_UOM_KG.get(uom.upper()) if isinstance(uom, str) else None
    if factor is None:
        raise BadUnit(f"{path}.uom {uom!r} is not a mass unit (KGM, GRM, TNE, LBR)", unit=str(uom)[:16])
    return value * factor
