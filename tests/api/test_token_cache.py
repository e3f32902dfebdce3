"""TokenBook's cache: one lookup per token however many callers, re-read ahead of expiry in the
background, a revocation effective within the TTL, unknown tokens cached too. On both stores."""

from __future__ import annotations

import asyncio

from sqlalchemy import update

from api.principal import TokenBook, token_hash
from api.tables import api_token
from tests.ledger.world import build

TTL = 10.0


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _book(store, clock) -> tuple[TokenBook, Ticks, str]:
    from ledger.service import LedgerService

    await build(LedgerService(store, clock), "F0")
    ticks = Ticks()
    book = TokenBook(store, cache_ttl_s=TTL, monotonic=ticks)
    secret = await book.create("collateral_manager", None, "cm", clock())
    return book, ticks, secret


async def _settle(book: TokenBook) -> None:
    await book.close()  # waits for the background re-reads started so far


async def test_many_callers_of_an_uncached_token_share_one_lookup(store, clock):
    book, _ticks, secret = await _book(store, clock)
    principals = await asyncio.gather(*(book.authenticate(secret) for _ in range(50)))
    assert book.lookups == 1 and book.reads == 1
    assert {p.role for p in principals if p is not None} == {"collateral_manager"} and None not in principals


async def test_a_token_in_use_is_re_read_before_it_expires_and_no_caller_waits(store, clock):
    book, ticks, secret = await _book(store, clock)
    first = await book.authenticate(secret)
    ticks.t += TTL * 0.4  # not due yet
    assert await book.authenticate(secret) == first and book.lookups == 1
    ticks.t += TTL * 0.4  # due (50-75 % of its life), not expired: served, re-read behind
    assert await book.authenticate(secret) == first
    await _settle(book)
    assert book.lookups == 2
    ticks.t += TTL * 0.9  # past the first read's expiry, within the re-read's (and due again)
    assert await book.authenticate(secret) == first
    await _settle(book)
    assert book.lookups == 3


async def test_a_revocation_takes_effect_within_the_ttl(store, clock):
    book, ticks, secret = await _book(store, clock)
    assert await book.authenticate(secret) is not None
    async with store.transaction() as tx:
        await tx.conn.execute(
            update(api_token).where(api_token.c.token_hash == token_hash(secret)).values(revoked=True)
        )
    ticks.t += TTL  # expired, whether or not a re-read ran meanwhile
    assert await book.authenticate(secret) is None


async def test_an_unknown_token_is_looked_up_once_per_ttl(store, clock):
    book, ticks, _secret = await _book(store, clock)
    assert await book.authenticate("plg_not-a-token") is None
    assert await book.authenticate("plg_not-a-token") is None
    assert book.lookups == 1
    ticks.t += TTL
    assert await book.authenticate("plg_not-a-token") is None
    assert book.lookups == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_lookup_others_wait_for(store, clock):
    book, _ticks, secret = await _book(store, clock)
    leaving = asyncio.create_task(book.authenticate(secret))
    staying = asyncio.create_task(book.authenticate(secret))
    await asyncio.sleep(0)
    leaving.cancel()
    assert (await staying) is not None
    assert leaving.cancelled() and book.lookups == 1


async def test_the_tokens_wanted_at_one_moment_are_read_in_one_query(store, clock):
    book, _ticks, _secret = await _book(store, clock)
    now = clock()
    secrets = [await book.create("collateral_manager", None, f"cm{i}", now) for i in range(100)]
    unknown = [f"plg_unknown-{i}" for i in range(20)]
    book.reads = book.lookups = 0
    principals = await asyncio.gather(*(book.authenticate(s) for s in secrets + unknown + secrets))
    assert book.reads == 1 and book.lookups == 120
    assert all(p is not None for p in principals[:100] + principals[120:])
    assert principals[100:120] == [None] * 20


async def test_a_failed_lookup_fails_its_callers_and_the_next_call_reads_again(store, clock):
    book, _ticks, secret = await _book(store, clock)
    real = book.store

    class Broken:
        def transaction(self):
            raise ConnectionError("database down")

    book.store = Broken()  # type: ignore[assignment]
    results = await asyncio.gather(*(book.authenticate(secret) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    book.store = real
    assert await book.authenticate(secret) is not None


async def test_a_reader_cancelled_mid_lookup_leaves_no_caller_waiting(store, clock):
    book, _ticks, secret = await _book(store, clock)
    waiting = asyncio.create_task(book.authenticate(secret))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the reader has taken the batch and is querying
    assert book._reader is not None
    book._reader.cancel()
    results = await asyncio.gather(waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and not book._lookups
    assert await book.authenticate(secret) is not None  # the next call reads again
