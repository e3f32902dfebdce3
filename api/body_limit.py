"""Request bodies above the configured size are refused with a 413 problem+json.

A request that declares a larger Content-Length is answered at once, its body never read. A body
sent without a length (chunked) is counted as it arrives, and stopped when it passes the limit:
reading it raises `BodyTooLarge` (an HTTPException), which api/problems.py answers.

Ours rather than FastAPI's `max_body_size`: that one answers a declared oversize body with
Starlette's plain-text 413 whatever the app says, and it wraps every request's receive and send
(~25 us per request here, a tenth of a drawdown's web-stack cost); this one only looks at the
headers unless a body comes without a length.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem


def _detail(limit: int) -> str:
    return f"the request body may be at most {limit} bytes"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                refusal = problem(413, "payload_too_large", "Content Too Large", _detail(limit))
                await refusal(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server delivers no more than declared
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)
