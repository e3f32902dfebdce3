"""Reading dead letters back (filters, keyset pages, counts), and the `pledge` commands that
show them and manage devices."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli import app
from gateway.dead_letter import DeadLetter, DeadLetterBook, describe
from gateway.errors import BadSignature
from gateway.formats import MAX_PAYLOAD_BYTES
from tests.conftest import FakeClock, make_sqlite_store
from tests.gateway.ingest_world import World, bad_inputs, make_world, message, prime


async def fill(world: World) -> dict[str, tuple[str, bytes]]:
    ingest = world.ingest()
    await ingest.start()
    await ingest.process([message(*prime(world))])
    bad = bad_inputs(world)
    for i, (topic, raw) in enumerate(bad.values()):
        world.clock.advance(seconds=1)
        await ingest.process([message(topic, raw, i)])
    return bad


async def test_dead_letters_are_listed_by_reason_and_time_in_keyset_pages(store: Any, clock: Any) -> None:
    world = await make_world(store, clock)
    start = clock()
    bad = await fill(world)
    book = DeadLetterBook(store)

    everything = await book.list(limit=1000)
    assert [d.reason for d in everything] == list(bad)  # oldest first
    assert (await book.counts()) == dict.fromkeys(bad, 1)

    pages, after = [], None
    while True:
        page = await book.list(after=after, limit=5)
        pages.append([d.reason for d in page])
        if len(page) < 5:
            break
        after = page[-1].dead_letter_id
    assert [r for page in pages for r in page] == list(bad) and len(pages) == 3

    [one] = await book.list(reason="bad_signature")
    assert one.raw == bad["bad_signature"][1] and one.device_id == "gate-1" and one.site_id == "SH1"
    later = await book.list(since=start + timedelta(seconds=6))
    assert [d.reason for d in later] == list(bad)[5:]
    assert sum((await book.counts(since=start + timedelta(seconds=6))).values()) == len(bad) - 5

    [big] = await book.list(reason="payload_too_large")
    assert len(big.raw) == MAX_PAYLOAD_BYTES and big.size == len(bad["payload_too_large"][1])


def test_a_dead_letter_keeps_no_nul_in_its_text_and_describes_its_error() -> None:
    letter = DeadLetter.of(FakeClock()(), "malformed_json", "a/\x00/b", b"\x00raw", "bad \x00 byte")
    assert "\x00" not in letter.topic + letter.detail and letter.raw == b"\x00raw"
    assert describe(BadSignature("signature does not verify", device_id="g", key=1)) == (
        'signature does not verify {"key": 1}')


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("PLEDGE_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("COLUMNS", "200")

    async def seed() -> None:
        store = await make_sqlite_store(db)
        try:
            await fill(await make_world(store, FakeClock()))
        finally:
            await store.close()

    asyncio.run(seed())
    return db


def test_pledge_deadletters_lists_them_with_counts(sqlite_env: Path) -> None:
    result = CliRunner().invoke(app, ["deadletters", "--limit", "100"])
    assert result.exit_code == 0, result.output
    assert "bad_signature" in result.output and "payload_too_large" in result.output
    assert "by reason:" in result.output and "unknown_device=1" in result.output
    only = CliRunner().invoke(app, ["deadletters", "--reason", "bad_unit"])
    assert "bad_unit" in only.output and "bad_signature  " not in only.output


def test_pledge_devices_register_and_list(sqlite_env: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["devices", "register", "--id", "dock-9", "--kind", "rfid_gate",
                                 "--site", "SH1", "--zone", "SH1-A", "--format", "native",
                                 "--antenna", "1=outside", "--antenna", "2=inside"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert len(bytes.fromhex(secret)) == 32
    listed = runner.invoke(app, ["devices", "list"])
    assert listed.exit_code == 0 and "dock-9" in listed.output and "1=outside,2=inside" in listed.output
    again = runner.invoke(app, ["devices", "register", "--id", "dock-9", "--kind", "rfid_zone",
                                "--site", "SH1", "--zone", "SH1-A", "--format", "impinj"])
    assert again.exit_code == 2 and "already registered" in again.output
    bad = runner.invoke(app, ["devices", "register", "--id", "x1", "--kind", "rfid_zone",
                              "--site", "SH1", "--zone", "NOPE", "--format", "impinj"])
    assert bad.exit_code == 2 and "zone_id" in bad.output
