"""FastAPI dependencies as Annotated aliases: the platform, the caller, role and facility checks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request

from api.platform import Platform
from api.principal import Principal, Role
from api.problems import ApiProblem
from ledger.core.errors import UnknownFacility


async def get_platform(request: Request) -> Platform:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, and that hop
    # (plus the GIL handover back) cost more than the whole of a money request's own work.
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def current_principal(
    platform: PlatformDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return await authenticate(platform, authorization)


async def authenticate(platform: Platform, authorization: str | None) -> Principal:
    """The caller of a bearer token (401 without a valid one)."""
    if not authorization or not authorization.startswith("Bearer ") or len(authorization) > 512:
        raise ApiProblem(401, "unauthenticated", "a bearer token is required (Authorization: Bearer ...)")
    principal = await platform.tokens.authenticate(authorization[7:].strip())
    if principal is None:
        raise ApiProblem(401, "unauthenticated", "the bearer token is unknown or revoked")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def has_role(principal: Principal, *roles: Role) -> Principal:
    if principal.role not in roles:
        raise ApiProblem(403, "forbidden", f"this needs one of the roles: {', '.join(roles)}")
    return principal


def require(*roles: Role) -> Any:
    async def check(principal: CurrentPrincipal) -> Principal:
        return has_role(principal, *roles)

    return Depends(check)


Staff = Annotated[Principal, require("collateral_manager", "admin")]
Admin = Annotated[Principal, require("admin")]

FACILITY_ID_MAX = 64
FACILITY_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
FacilityId = Annotated[str, Path(min_length=1, max_length=FACILITY_ID_MAX, pattern=FACILITY_ID_PATTERN)]


def visible_facility(principal: Principal, facility_id: str) -> str:
    """A borrower asking for another facility gets 404: it must not learn that it exists."""
    if not principal.may_see(facility_id):
        raise UnknownFacility(facility_id)
    return facility_id


async def facility_for(principal: CurrentPrincipal, facility_id: FacilityId) -> str:
    return visible_facility(principal, facility_id)


VisibleFacility = Annotated[str, Depends(facility_for)]
