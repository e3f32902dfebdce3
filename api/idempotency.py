"""Idempotency-Key for money-moving requests (IETF httpapi draft; Stripe's semantics).

- missing key -> 400; same key + same body -> the stored response is replayed (header
  `Idempotent-Replayed: true`); same key + different body (or route) -> 422; same key while the
  first request is still running -> 409 (PostgreSQL; SQLite runs one writer at a time, so there
  the duplicate waits for the first and gets its replay).

Keys are scoped per token. The key is claimed inside the transaction that moves the money, and
the answer (a success or a refusal such as insufficient availability) is stored in that same
transaction: either the money, the claim and the answer all commit, or none does, so a crash
leaves no claim behind and a retry can never book twice (ledger/store/money_sql.py; the posting's
unique (facility, key) index stands behind it). A request refused by validation never reaches
the store, so it does not use up its key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response

from api.principal import Principal
from api.problems import ApiProblem, ledger_problem
from ledger.core.errors import LedgerError
from ledger.credit import Answer, KeyedRequest
from ledger.store.port import RequestKey, RequestKeyInFlight, RequestKeyReused, StoredResponse, encode_json

R = TypeVar("R")


def request_hash(method: str, path: str, body: Any) -> str:
    """The request's fingerprint, stored with its key: SHA-256 of the canonical JSON (sorted
    keys, no spaces, non-ASCII escaped) of method, path and body.

    Stored fingerprints must keep matching, so the canonical text is the stdlib's
    `json.dumps(sort_keys=True, separators=(",", ":"))`, byte for byte. orjson writes the same
    bytes, ~15 x faster, while they are printable ASCII (below 0x7f: the stdlib escapes DEL and
    everything above, orjson writes them as UTF-8) and the body holds no float (the routes hash
    bodies of strings, lists and null); otherwise the stdlib writes it."""
    doc = {"m": method, "p": path, "b": body}
    with contextlib.suppress(TypeError):  # what orjson refuses (a 65-bit integer): the stdlib
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        if max(canonical) < 0x7F:
            return hashlib.sha256(canonical).hexdigest()
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def keyed_request(
    principal: Principal,
    key: str | None,
    request: Request,
    body: Any,
    render: Callable[[R], tuple[int, Any]],
) -> KeyedRequest:
    """The keyed request for the credit service: its record, and how to answer or refuse it."""
    if not key:
        raise ApiProblem(400, "idempotency_key_missing", "this request needs an Idempotency-Key header")

    def answer(result: Any) -> StoredResponse:
        status, body = render(result)
        return StoredResponse(status, body, encode_json(body))  # stored and sent as these bytes

    def refuse(error: LedgerError) -> StoredResponse:
        resp = ledger_problem(error)
        return StoredResponse(resp.status_code, json.loads(bytes(resp.body)))

    # scope["path"] is request.url.path for every path that gets this far (a valid facility id
    # has no '?', '#' or '\\'), without building the URL
    fingerprint = request_hash(request.method, request.scope["path"], body)
    return KeyedRequest(RequestKey(principal.token_id, key, fingerprint), answer, refuse)


def key_problem(error: RequestKeyInFlight | RequestKeyReused) -> ApiProblem:
    if isinstance(error, RequestKeyReused):
        return ApiProblem(
            422, "idempotency_key_reused", "this Idempotency-Key was used with a different request"
        )
    return ApiProblem(
        409, "idempotency_key_in_flight", "a request with this Idempotency-Key is still being processed"
    )


def answered(a: Answer) -> Response:
    """The HTTP response of a keyed request's answer, fresh or replayed."""
    r = a.response
    return Response(
        r.json_bytes(),
        status_code=r.status_code,
        media_type="application/problem+json" if r.status_code >= 400 else "application/json",
        headers={"Idempotent-Replayed": "true"} if a.replayed else None,
    )
