"""Device health: status words, liveness, online/offline transitions and the silence sweep.

Sources of liveness, all on the gateway's clock (devices' clocks are not compared with it):

* any accepted observation or native heartbeat (`.../events` or `.../status`): the device is
  seen now, and online;
* a status word on `.../status` - typically the MQTT last will a device sets when it
  connects (`offline`, retained) and the `online` it publishes after connecting: `offline`
  marks it offline at once; `online` marks it seen. A *retained* `online` is a replay of an old
  state delivered on (re)subscription, not news, and is ignored;
* the sweep: an online device silent for more than `heartbeat_interval_s x grace` goes offline.

Only transitions are recorded as `device_event` rows (online <-> offline, with the source), so
the table grows with incidents, not with heartbeats. Alerting (a later issue) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import InvalidValue, MalformedPayload
from gateway.formats import _fields
from gateway.tables import device, device_event, device_state

__all__ = [
    "DeviceState",
    "StatusWord",
    "lock_states",
    "parse_status",
    "read_states",
    "save_states",
    "sweep",
]

StatusWord = Literal["online", "offline"]
_WORDS: dict[str, StatusWord] = {
    "online": "online", "connected": "online", "alive": "online", "up": "online",
    "offline": "offline", "disconnected": "offline", "lost": "offline", "down": "offline",
    "dead": "offline",
}
_MAX_STATUS_BYTES = 4096


def parse_status(raw: bytes) -> StatusWord | None:
    """A status message: a bare word (`offline`), a JSON string, or a JSON object with a
    `status` (or `state`) member. None for an empty payload (a retained message being cleared).
    Raises MalformedPayload / InvalidValue otherwise."""
    text = raw.strip()
    if not text:
        return None
    if len(text) > _MAX_STATUS_BYTES:
        raise InvalidValue("status message longer than 4096 bytes")
    if text[:1] in (b"{", b'"'):
        value = _fields.load_json(text)
        if isinstance(value, dict):
            value = value.get("status", value.get("state"))
        word = value if isinstance(value, str) else None
    else:
        try:
            word = text.decode("ascii")
        except UnicodeDecodeError as e:
            raise MalformedPayload("status word is not ASCII") from e
    found = _WORDS.get(word.strip().lower()) if word is not None else None
    if found is None:
        raise InvalidValue(f"unknown status {str(word)[:40]!r}; expected online or offline")
    return found


@dataclass
class DeviceState:
    """One device_state row, mutated in memory by a batch and saved with it."""

    site_id: str
    device_id: str
    last_seq: int | None
    last_seen_at: datetime | None
    online: bool
    changed_at: datetime | None
    dirty: bool = False

    def seen(self, now: datetime, source: str, events: list[dict[str, Any]]) -> None:
        self.last_seen_at = now
        self.dirty = True
        if not self.online:
            self._turn(True, now, source, "seen", events)

    def offline(self, now: datetime, source: str, detail: str, events: list[dict[str, Any]]) -> None:
        self.dirty = True
        if self.online:
            self._turn(False, now, source, detail, events)

    def _turn(self, online: bool, now: datetime, source: str, detail: str,
              events: list[dict[str, Any]]) -> None:
        self.online = online
        self.changed_at = now
        events.append({"site_id": self.site_id, "device_id": self.device_id, "at": now,
                       "kind": "online" if online else "offline", "source": source,
                       "detail": detail})


async def read_states(conn: AsyncConnection, keys: list[tuple[str, str]]) -> dict[str, DeviceState]:
    """The states of (site_id, device_id) pairs as last committed, without locking them."""
    return await _select_states(conn, keys, for_update=False)


async def lock_states(
    conn: AsyncConnection, dialect: str, keys: list[tuple[str, str]]
) -> dict[str, DeviceState]:
    """The states of (site_id, device_id) pairs, locked for the transaction on PostgreSQL (two
    writers of one device then serialise on its row; SQLite has a single writer).
    Locked in sorted order, so that two batches can never deadlock on them."""
    return await _select_states(conn, keys, for_update=dialect == "postgresql")


async def _select_states(
    conn: AsyncConnection, keys: list[tuple[str, str]], *, for_update: bool
) -> dict[str, DeviceState]:
    states: dict[str, DeviceState] = {}
    keys = sorted(set(keys))
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        # Device ids are global (ux_device_id), so the id alone selects the row.
        q = (
            select(device_state)
            .where(device_state.c.device_id.in_([d for _, d in chunk]))
            .order_by(device_state.c.site_id, device_state.c.device_id)
        )
        if for_update:
            q = q.with_for_update()
        for r in await conn.execute(q):
            states[r.device_id] = DeviceState(r.site_id, r.device_id, r.last_seq, r.last_seen_at,
                                              r.online, r.changed_at)
    return states


async def save_states(
    conn: AsyncConnection, states: list[DeviceState], events: list[dict[str, Any]]
) -> None:
    """Write back the states a batch changed, and their transition events."""
    dirty = [s for s in states if s.dirty]
    if dirty:
        stmt = (
            update(device_state)
            .where(device_state.c.site_id == bindparam("k_site"),
                   device_state.c.device_id == bindparam("k_device"))
            .values(last_seq=bindparam("v_seq"), last_seen_at=bindparam("v_seen"),
                    online=bindparam("v_online"), changed_at=bindparam("v_changed"))
        )
        await conn.execute(stmt, [
            {"k_site": s.site_id, "k_device": s.device_id, "v_seq": s.last_seq,
             "v_seen": s.last_seen_at, "v_online": s.online, "v_changed": s.changed_at}
            for s in dirty])
    if events:
        await conn.execute(device_event.insert(), events)


async def sweep(conn: AsyncConnection, dialect: str, now: datetime, grace: float) -> tuple[int, int]:
    """Mark offline every online device silent for more than its heartbeat interval x `grace`.
    Returns (devices turned offline, devices still online)."""
    q = (
        select(device_state.c.site_id, device_state.c.device_id, device.c.heartbeat_interval_s)
        .select_from(device_state.join(device, (device.c.site_id == device_state.c.site_id)
                                       & (device.c.device_id == device_state.c.device_id)))
        .where(device_state.c.online.is_(True))
    )
    rows = list(await conn.execute(q))
    candidates = [(r.site_id, r.device_id) for r in rows]
    if not candidates:
        return 0, 0
    limit = {r.device_id: timedelta(seconds=r.heartbeat_interval_s * grace) for r in rows}
    states = await lock_states(conn, dialect, candidates)
    events: list[dict[str, Any]] = []
    silent = []
    for s in states.values():
        if s.online and (s.last_seen_at is None or now - s.last_seen_at > limit[s.device_id]):
            quiet = "never" if s.last_seen_at is None else f"{(now - s.last_seen_at).total_seconds():.0f} s"
            s.offline(now, "sweep", f"silent for {quiet}", events)
            silent.append(s)
    await save_states(conn, silent, events)
    return len(silent), len(rows) - len(silent)
