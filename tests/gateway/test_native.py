"""The native protocol: signed envelopes in, one observation out; every refusal has a reason."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from gateway.device import DeviceContext
from gateway.errors import DecodeError
from gateway.formats import native
from gateway.formats.native import canonical_bytes, encode_event, sign
from gateway.observation import CameraCount, Heartbeat, TagRead, WeightSample

SECRET = b"gate-01 secret, 32 bytes long..."
NOW = datetime(2024, 3, 1, 10, 0, 5, tzinfo=UTC)
TS = "2024-03-01T10:00:00.120Z"
GATE = DeviceContext("gate-01", "wh-sh-01", "dock-3", "rfid_gate", "native", SECRET)
READ = {"epc": "3034257bf7194e4000001a85", "antenna": 1, "rssi_dbm": -65.5}


def envelope(type_: str = "rfid.read", body: Any = None, **over: Any) -> dict[str, Any]:
    payload = {
        "device_id": "gate-01",
        "seq": 42,
        "ts": TS,
        "type": type_,
        "body": READ if body is None else body,
    }
    payload.update(over)
    return payload


def signed(payload: dict[str, Any], secret: bytes = SECRET) -> bytes:
    return json.dumps(sign(payload, secret)).encode()


def reason(raw: bytes, device: DeviceContext = GATE) -> str:
    with pytest.raises(DecodeError) as caught:
        native.decode(raw, device, NOW)
    return caught.value.reason


# --- the four message types ---------------------------------------------------------------


def test_a_tag_read() -> None:
    [read] = native.decode(signed(envelope(body={**READ, "direction": "in"})), GATE, NOW)
    assert read == TagRead(
        device_id="gate-01",
        at=datetime(2024, 3, 1, 10, 0, 0, 120_000, tzinfo=UTC),
        event_key="gate-01:42",
        epc="3034257BF7194E4000001A85",
        antenna=1,
        rssi_dbm=Decimal("-65.5"),
        direction="in",
        seq=42,
    )


def test_a_weight_sample_keeps_every_digit_of_the_mass() -> None:
    for mass in ("1250.50", 1250.5, 1250):
        [sample] = native.decode(
            signed(envelope("weight.sample", {"mass_kg": mass, "stable": True})), GATE, NOW
        )
        assert isinstance(sample, WeightSample)
        assert sample.mass_kg == Decimal("1250.5") or sample.mass_kg == Decimal(1250)
        assert isinstance(sample.mass_kg, Decimal)
    raw = b'{"device_id":"gate-01","seq":1,"ts":"2024-03-01T10:00:00Z","type":"weight.sample",'
    raw += b'"body":{"mass_kg":0.1000000000000000055511151231257827,"stable":false}}'
    payload = json.loads(raw, parse_float=Decimal)
    [sample] = native.decode(signed_text(payload), GATE, NOW)
    assert isinstance(sample, WeightSample)
    assert sample.mass_kg == Decimal("0.1000000000000000055511151231257827")  # never via float


def signed_text(payload: dict[str, Any]) -> bytes:
    """Serialize with our own canonical writer (Decimals survive), then add the sig."""
    return canonical_bytes(payload)[:-1] + f',"sig":"{native.signature(payload, SECRET)}"}}'.encode()


def test_a_camera_count() -> None:
    body = {"label": "pallet", "count": 12, "confidence": 0.91, "epcs": ["3034257bf7194e4000001a85"]}
    [count] = native.decode(signed(envelope("camera.count", body)), GATE, NOW)
    assert count == CameraCount(
        "gate-01", count.at, "gate-01:42", "pallet", 12, Decimal("0.91"), ("3034257BF7194E4000001A85",), 42
    )


def test_a_heartbeat() -> None:
    [beat] = native.decode(signed(envelope("heartbeat", {"status": "online", "uptime_s": 86400})), GATE, NOW)
    assert beat == Heartbeat(
        "gate-01", datetime(2024, 3, 1, 10, 0, 0, 120_000, tzinfo=UTC), "gate-01:42", 42, "online"
    )


def test_timestamps_with_offsets_become_utc() -> None:
    [read] = native.decode(signed(envelope(ts="2024-03-01T18:00:00.5+08:00")), GATE, NOW)
    assert read.at == datetime(2024, 3, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    assert read.at.utcoffset() == timedelta(0)


def test_unknown_fields_are_ignored_but_still_signed() -> None:
    payload = envelope(fw="2.1.0", body={**READ, "phase": 1.2})
    assert len(native.decode(signed(payload), GATE, NOW)) == 1
    tampered = sign(payload, SECRET) | {"fw": "2.1.1"}
    assert reason(json.dumps(tampered).encode()) == "bad_signature"


# --- signatures ----------------------------------------------------------------------------


def test_canonical_bytes_are_sorted_compact_utf8_without_sig() -> None:
    payload = {"b": 1, "a": "é", "sig": "x", "c": {"z": True, "y": None}}
    assert canonical_bytes(payload) == '{"a":"é","b":1,"c":{"y":null,"z":true}}'.encode()


def test_canonical_bytes_match_stock_json_dumps_without_fractions() -> None:
    payload = envelope("heartbeat", {"status": "online", "uptime_s": 5})
    stock = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_bytes(payload) == stock


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (Decimal("65.50"), "65.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0.0"), "0"),
        (Decimal("0.00001"), "0.00001"),
        (1e-05, "0.00001"),
        (100.0, "100"),
        (-65.5, "-65.5"),
        (7, "7"),
    ],
)
def test_numbers_are_written_as_plain_decimals(number: Any, text: str) -> None:
    assert canonical_bytes({"n": number}) == f'{{"n":{text}}}'.encode()


def test_sign_returns_a_copy() -> None:
    payload = envelope()
    signed_payload = sign(payload, SECRET)
    assert "sig" not in payload
    expected = hmac.new(SECRET, canonical_bytes(payload), hashlib.sha256).hexdigest()
    assert signed_payload["sig"] == expected
    assert sign(signed_payload, SECRET) == signed_payload  # re-signing replaces, not nests


def test_encode_event_builds_a_message_the_decoder_accepts() -> None:
    at = datetime(2024, 3, 1, 18, 0, tzinfo=UTC) + timedelta(hours=0)
    raw = encode_event(
        "gate-01", 7, at, "weight.sample", {"mass_kg": Decimal("12.50"), "stable": True}, SECRET
    )
    [sample] = native.decode(raw, GATE, NOW)
    assert sample == WeightSample("gate-01", at, "gate-01:7", Decimal("12.5"), True, 7)
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_event("gate-01", 7, datetime(2024, 3, 1), "heartbeat", {"status": "online"}, SECRET)


def test_missing_signature() -> None:
    assert reason(json.dumps(envelope()).encode()) == "missing_signature"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p | {"seq": 43},  # replayed body under another seq
        lambda p: p | {"body": {**READ, "antenna": 2}},
        lambda p: p | {"sig": p["sig"].upper()},  # sig is lowercase hex
        lambda p: p | {"sig": p["sig"][:-1]},
        lambda p: p | {"sig": "é" * 64},
        lambda p: p | {"sig": 12},
    ],
)
def test_bad_signature(mutate: Any) -> None:
    assert reason(json.dumps(mutate(sign(envelope(), SECRET))).encode()) == "bad_signature"


def test_a_canonical_message_verifies_over_its_own_bytes() -> None:
    """The fast path: what encode_event writes is checked without re-encoding the payload."""
    raw = encode_event("gate-01", 42, TS, "rfid.read", READ, SECRET)
    assert native._signed_payload(raw, GATE) == {k: v for k, v in json.loads(raw, parse_float=Decimal).items()
                                                 if k != "sig"}
    pretty = json.dumps(json.loads(raw), indent=1).encode()
    assert native._signed_payload(pretty, GATE) is None  # not canonical: the general path
    assert native.decode(pretty, GATE, NOW) == native.decode(raw, GATE, NOW)


@pytest.mark.parametrize("position", range(1, 40))
def test_a_moved_signature_never_yields_content_the_device_did_not_sign(position: int) -> None:
    """Cut the sig member out of a canonical message and splice it in elsewhere: either the
    message is refused, or what comes out is exactly what the device signed."""
    raw = encode_event("gate-01", 42, TS, "rfid.read", READ, SECRET)
    [genuine] = native.decode(raw, GATE, NOW)
    start = raw.index(b',"sig":"')
    member = raw[start : start + 8 + 64 + 1]
    rest = raw[:start] + raw[start + len(member) :]
    spliced = rest[:position] + member + rest[position:]
    try:
        decoded = native.decode(spliced, GATE, NOW)
    except DecodeError:
        return
    assert decoded == [genuine]


def general_read(signed: bytes, device: DeviceContext = GATE) -> Any:
    """What the general path (JSON, schemas) makes of signed bytes: an observation or the
    DecodeError it raises."""
    try:
        return native._observation(native._parsed(signed, device), device)
    except DecodeError as e:
        return e


def test_a_canonical_read_skips_the_json_parser_and_the_schemas() -> None:
    for body in (READ, {**READ, "direction": "out"}, {**READ, "rssi_dbm": -70},
                 {**READ, "rssi_dbm": Decimal("-0.0")}):
        raw = encode_event("gate-01", 42, TS, "rfid.read", body, SECRET)
        signed = native._signed_bytes(raw, GATE)
        assert signed is not None
        fast = native._canonical_read(signed, GATE)
        assert fast is not None, body  # the fast path is taken...
        assert fast == general_read(signed)  # ...and reads what the general path reads
        assert str(fast.rssi_dbm) == str(general_read(signed).rssi_dbm)  # same Decimal digits
        assert native.decode(raw, GATE, NOW) == [fast]


_HEXES = st.integers(1, 64).flatmap(
    lambda n: st.text(alphabet="0123456789abcdefABCDEF", min_size=2 * n, max_size=2 * n))
_UNICODE_GATE = DeviceContext("gäte-01", "wh-sh-01", None, "rfid_zone", "native", SECRET)
# Per field of a canonical rfid.read: (values the fast path must read, values it must leave
# to the general path or read exactly like it: out of range, other JSON forms, not JSON).
_FIELDS = {
    "antenna": (st.integers(0, 65_535).map(str),
                st.sampled_from(["65536", "99999", "-1", "01", "1.0", "1e2", "true", "null",
                                 '"1"'])),
    "direction": (st.sampled_from(["", '"direction":"in",', '"direction":"out",']),
                  st.sampled_from(['"direction":"up",', '"direction":null,',
                                   '"direction":"in","direction":"in",'])),
    "epc": (_HEXES, st.text(alphabet="0123456789abcdefABCDEFxG\\", max_size=131)),
    "rssi": (st.one_of(st.integers(-(10**6), 10**6).map(lambda n: str(Decimal(n).scaleb(-3))),
                       st.integers(-200, 50).map(str), st.sampled_from(["-0", "-0.0", "0.10"])),
             st.one_of(st.decimals(allow_nan=False, allow_infinity=False).map(str),
                       st.integers(-(10**45), 10**45).map(str),
                       st.sampled_from(["1e2", "-.5", "00.1", "1.", "null", '"-65.5"',
                                        "0." + "0" * 29 + "1", "1" + "0" * 31 + ".5"]))),
    "device_id": (st.just(""), st.sampled_from(["gate-02", "", "g" * 257, 'ga\\"te', "gate-01 "])),
    "seq": (st.integers(0, 2**63 - 1).map(str),
            st.sampled_from([str(2**63), str(2**64), "-1", "01", "1.0", "1e3"])),
    "ts": (st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(UTC)).map(
               lambda d: d.isoformat().replace("+00:00", "Z")),
           st.sampled_from(["2024-02-30T10:00:00Z", "2024-03-01T24:00:00Z", "",
                            "2024-03-01T10:00:60Z", "0000-01-01T00:00:00Z",
                            "2024-03-01T10:00:00.1234567Z", "2024-03-01t10:00:00Z",
                            "2024-03-01T10:00:00+00:00", "2024-03-01 10:00:00Z"])),
}


@given(device=st.sampled_from([GATE, _UNICODE_GATE]),
       broken=st.sets(st.sampled_from(sorted(_FIELDS)), max_size=2), data=st.data())
def test_the_fast_read_is_the_general_path_or_steps_aside(
        device: DeviceContext, broken: set[str], data: st.DataObject) -> None:
    """Whatever the signed bytes of an rfid.read hold: the fast path returns exactly what
    the general path returns, or None - and then the general path gives its own verdict
    (with its own reason, in its own order). With no field broken it must be taken."""
    v = {name: data.draw(odd if name in broken else good, name)
         for name, (good, odd) in _FIELDS.items()}
    device_id = v["device_id"] or device.device_id
    signed = (f'{{"body":{{"antenna":{v["antenna"]},{v["direction"]}"epc":"{v["epc"]}",'
              f'"rssi_dbm":{v["rssi"]}}},"device_id":"{device_id}","seq":{v["seq"]},'
              f'"ts":"{v["ts"]}","type":"rfid.read"}}').encode()
    fast = native._canonical_read(signed, device)
    general = general_read(signed, device)
    event("fast" if fast is not None else "general")
    if not broken:
        assert fast is not None
    if fast is not None:
        assert fast == general
        assert str(fast.rssi_dbm) == str(general.rssi_dbm)


def test_a_canonical_message_with_one_byte_changed_is_refused() -> None:
    raw = encode_event("gate-01", 42, TS, "rfid.read", READ, SECRET)
    assert reason(raw.replace(b'"antenna":1', b'"antenna":2')) == "bad_signature"
    assert reason(raw.replace(b'"seq":42', b'"seq":43')) == "bad_signature"


def test_another_devices_secret_does_not_verify() -> None:
    assert reason(signed(envelope(), secret=b"someone else")) == "bad_signature"


def test_a_native_device_without_a_secret_is_refused() -> None:
    no_secret = DeviceContext("gate-01", "wh", None, "rfid_gate", "native", None)
    assert reason(signed(envelope()), no_secret) == "missing_secret"


def test_payload_device_must_be_the_topic_device() -> None:
    assert reason(signed(envelope(device_id="gate-02"))) == "device_mismatch"


def test_secret_is_not_in_the_repr() -> None:
    assert "secret" not in repr(GATE).replace("secret=", "") and SECRET.decode() not in repr(GATE)


# --- bad input, one reason each ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b'{"a": NaN}', "malformed_json"),
        (b'{"a": 1, "a": 2}', "malformed_json"),
        (b'{"a": "\\ud800"}', "malformed_json"),
        (b"[" * 100 + b"]" * 100, "malformed_json"),
        (b"[" * 100_000, "malformed_json"),
        (b"{} {}", "malformed_json"),
        (b"[]", "wrong_type"),
        (b'"gate-01"', "wrong_type"),
        (b"{}", "missing_field"),
        (b'{"device_id": 7}', "wrong_type"),
    ],
)
def test_unparseable_payloads(raw: bytes, expected: str) -> None:
    assert reason(raw) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (envelope(seq="42"), "wrong_type"),
        (envelope(seq=True), "wrong_type"),
        (envelope(seq=42.0), "wrong_type"),
        (envelope(seq=-1), "bad_value"),
        (envelope(seq=2**63), "bad_value"),
        (envelope(ts=1709287200), "wrong_type"),
        (envelope(body=[READ]), "wrong_type"),
        (envelope(type="rfid.write"), "unknown_event_type"),
        ({k: v for k, v in envelope().items() if k != "ts"}, "missing_field"),
        ({k: v for k, v in envelope().items() if k != "body"}, "missing_field"),
        (envelope(ts="2024-03-01T10:00:00"), "bad_timestamp"),
        (envelope(ts="2024-13-01T10:00:00Z"), "bad_timestamp"),
        (envelope(ts="yesterday"), "bad_timestamp"),
        (envelope(body={"antenna": 1, "rssi_dbm": -60}), "missing_field"),
        (envelope(body={**READ, "antenna": "1"}), "wrong_type"),
        (envelope(body={**READ, "rssi_dbm": "-65"}), "wrong_type"),
        (envelope(body={**READ, "epc": "not-hex"}), "bad_value"),
        (envelope(body={**READ, "epc": "ABC"}), "bad_value"),  # half a byte
        (envelope(body={**READ, "direction": "sideways"}), "bad_value"),
        (envelope("weight.sample", {"mass_kg": "12,5", "stable": True}), "bad_value"),
        (envelope("weight.sample", {"mass_kg": True, "stable": True}), "wrong_type"),
        (envelope("weight.sample", {"mass_kg": 12, "stable": "true"}), "wrong_type"),
        (envelope("weight.sample", {"stable": True}), "missing_field"),
        (envelope("camera.count", {"label": "pallet", "count": -1}), "bad_value"),
        (envelope("camera.count", {"label": "pallet", "count": 1, "confidence": 1.5}), "bad_value"),
        (envelope("camera.count", {"label": "pallet", "count": 1.5}), "wrong_type"),
        (envelope("camera.count", {"label": "", "count": 1}), "bad_value"),
        (envelope("camera.count", {"label": "pallet", "count": 1, "epcs": "ABCD"}), "wrong_type"),
        (envelope("camera.count", {"label": "pallet", "count": 1, "epcs": ["has space"]}), "bad_value"),
        (envelope("heartbeat", {}), "missing_field"),
        (envelope("heartbeat", {"status": "online", "uptime_s": -5}), "bad_value"),
        (envelope(body={**READ, "rssi_dbm": 1e99}), "bad_value"),
    ],
)
def test_invalid_envelopes_and_bodies(payload: dict[str, Any], expected: str) -> None:
    assert reason(signed(payload)) == expected


def test_field_errors_name_the_field() -> None:
    with pytest.raises(DecodeError) as caught:
        native.decode(signed(envelope(body={**READ, "antenna": "1"})), GATE, NOW)
    assert caught.value.facts["field"] == "body.antenna"


# --- properties ----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    rssi=st.integers(min_value=-12_000, max_value=0).map(lambda centi: centi / 100),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in READ), json_values, max_size=3
    ),
)
def test_a_float_signing_device_using_stock_json_verifies(
    seq: int, rssi: float, extra: dict[str, Any]
) -> None:
    """A Python device that signs floats and publishes with plain json.dumps interoperates."""
    body = {**READ, "rssi_dbm": rssi, **extra}
    payload = sign(envelope(body=body, seq=seq), SECRET)
    [read] = native.decode(json.dumps(payload, indent=1).encode(), GATE, NOW)
    assert isinstance(read, TagRead)
    assert read.rssi_dbm == Decimal(repr(rssi))
    assert read.event_key == f"gate-01:{seq}"


@given(
    body=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    secret=st.binary(min_size=1, max_size=64),
)
def test_sign_then_verify_round_trips_and_any_change_is_caught(body: dict[str, Any], secret: bytes) -> None:
    device = DeviceContext("gate-01", "wh", None, "rfid_gate", "native", secret)
    payload = envelope("heartbeat", {**body, "status": "online"})
    raw = encode_event("gate-01", 42, TS, "heartbeat", payload["body"], secret)
    [beat] = native.decode(raw, device, NOW)
    assert beat == Heartbeat(
        "gate-01", datetime(2024, 3, 1, 10, 0, 0, 120_000, tzinfo=UTC), "gate-01:42", 42, "online"
    )
    tampered = json.loads(raw) | {"seq": 43}
    with pytest.raises(DecodeError) as caught:
        native.decode(json.dumps(tampered).encode(), device, NOW)
    assert caught.value.reason == "bad_signature"


# --- the protocol document ------------------------------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "device-protocol.md"
DOC_SECRET = b"example-secret"


def doc_blocks(info: str) -> list[str]:
    return re.findall(rf"```{re.escape(info)}\n(.*?)\n```", DOC.read_text(), flags=re.DOTALL)


def test_the_documented_examples_decode_with_the_documented_secret() -> None:
    examples = [json.loads(block) for block in doc_blocks("json example")]
    assert sorted(e["type"] for e in examples) == sorted(native.MESSAGE_TYPES)
    for example in examples:
        device = DeviceContext(example["device_id"], "wh-sh-01", None, "rfid_gate", "native", DOC_SECRET)
        [observation] = native.decode(json.dumps(example).encode(), device, NOW)
        assert observation.event_key == f"{example['device_id']}:{example['seq']}"


def test_the_documented_schemas_fit_the_examples() -> None:
    schemas = {json.loads(b)["properties"]["type"]["const"]: json.loads(b) for b in doc_blocks("json schema")}
    examples = {json.loads(b)["type"]: json.loads(b) for b in doc_blocks("json example")}
    assert set(schemas) == set(native.MESSAGE_TYPES) == set(examples)
    for name, schema in schemas.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        example = examples[name]
        assert set(schema["required"]) <= set(example) <= set(schema["properties"])
        body = schema["properties"]["body"]
        assert set(body["required"]) <= set(example["body"]) <= set(body["properties"])


def test_the_documented_test_vector() -> None:
    [canonical], [sig] = doc_blocks("text canonical"), doc_blocks("text sig")
    rfid = next(json.loads(b) for b in doc_blocks("json example") if '"rfid.read"' in b)
    assert canonical_bytes(rfid).decode() == canonical
    assert native.signature(rfid, DOC_SECRET) == sig == rfid["sig"]
