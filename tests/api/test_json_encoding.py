"""The fast JSON paths write exactly what the stdlib wrote before them.

A request's fingerprint is stored with its Idempotency-Key: if the canonical text changed, a
retry after an upgrade would no longer match its own first request (a 422 instead of the
replay). An answer's bytes are stored and replayed: they must be the JSON the views made.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.idempotency import request_hash
from ledger.store.port import encode_json

# What the routes hash and what the views answer: strings (any Unicode, controls included),
# lists, objects with string keys, null, booleans, integers.
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _old_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@given(st.sampled_from(["POST", "PUT"]), st.text(), values)
def test_the_fingerprint_is_the_stdlib_canonical_text(method: str, path: str, body: Any) -> None:
    assert request_hash(method, path, body) == _old_hash(method, path, body)


def test_the_fingerprint_of_a_drawdown_and_of_odd_text() -> None:
    for body in (
        {"amount": "100.00"},
        {"lot_ids": ["L1", "L2"], "sku_id": None, "quantity": None},
        {"memo": "café \x7f \u2028 \U0001f600 \x00"},
        {"big": 2**70},  # beyond orjson's integers: the stdlib writes it
        {"b": 1, "a": {"d": 2, "c": [3]}},
    ):
        assert request_hash("POST", "/v1/facilities/F1/drawdowns", body) == _old_hash(
            "POST", "/v1/facilities/F1/drawdowns", body
        )


@given(values)
def test_an_answer_is_the_stdlib_compact_utf8_json(body: Any) -> None:
    assert (
        encode_json(body)
        == json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    )


def test_an_answer_with_what_orjson_refuses() -> None:
    body = {"n": 2**70, 1: "int key"}
    assert encode_json(body) == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
