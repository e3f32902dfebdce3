"""Release of goods: approved only if the BB after it still covers the outstanding."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.borrower_request import borrower_request, borrower_route
from api.routes.money import once
from api.schemas import ReleaseCreate
from api.views import summary_view
from ledger.core.money import decimal_text, money_text
from ledger.credit import Answer, KeyedRequest, ReleaseResult

router = APIRouter(prefix="/facilities/{facility_id}", tags=["releases"])


@borrower_route(router, "/releases", ReleaseCreate)
async def release(request: Request) -> Response:
    """Ask to take lots (or a quantity of a SKU) out; refused with the amount to repay first.

    Send an `Idempotency-Key` header (400 without one). The same key with the same request
    replays the stored answer (header `Idempotent-Replayed: true`), refusals included; with
    another request it is 422; while the first request with the key is still running, 409.
    """
    call, body, idempotency_key = await borrower_request(request, ReleaseCreate)

    async def run(keyed: KeyedRequest) -> Answer:
        return await call.platform.credit.release_keyed(
            call.facility_id, body.lot_ids, body.sku_id, body.quantity, keyed
        )

    return await once(
        call.principal, idempotency_key, request, body.model_dump(mode="json"), run, release_view
    )


def release_view(r: ReleaseResult) -> tuple[int, dict[str, Any]]:
    return 201, {
        "release_id": r.release_id,
        "lot_ids": list(r.lot_ids),
        "quantity": decimal_text(r.quantity),
        "bb_after": money_text(r.bb_after, r.summary.currency),
        "outstanding": money_text(r.outstanding, r.summary.currency),
        "facility": summary_view(r.summary),
    }
