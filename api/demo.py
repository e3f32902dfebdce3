"""`pledge demo`: the whole platform on embedded defaults, doing real work end to end.

1. An embedded MQTT broker (amqtt, on a free port) unless PLEDGE_MQTT_URL names one; the
   database of PLEDGE_DATABASE_URL (SQLite by default).
2. The gateway and the HTTP API run in this process, exactly as `pledge serve` runs them.
3. A collateral manager sets up a facility over HTTP, registers a gate reader, and announces
   pledged lots; a year of prices gives volatility haircuts.
4. The gate reader publishes SIGNED reads over MQTT; the gateway turns passages into receipts.
5. The ledger computes the borrowing base from what it stored; the SME draws and repays over
   HTTP with its token and an Idempotency-Key, asks for a release, and the released lot leaves
   through the gate (authorised release) while another leaves without one (removal: the line
   freezes and a credit event is recorded). A forged message is dead-lettered.
6. Prices tick until --duration elapses, each tick a real revaluation.
Every figure printed is read back from the API or the ledger, never computed by the demo.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from api.http_protocol import CoalescingHttpToolsProtocol
from api.main import create_app
from api.platform import Platform
from gateway.app import GatewayOptions, run_gateway
from gateway.broker import EmbeddedBroker
from gateway.formats.native import encode_event
from gateway.ingest import IngestConfig
from gateway.metrics import GatewayMetrics
from gateway.mqtt import MqttConfig, MqttPublisher
from gateway.topics import events_topic
from ledger.core.price import PricePoint

D = Decimal
SITE, ZONE = "SH1", "SH1-A"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"demo: timed out waiting for {what}")


class Gate:
    """A gate reader of ours: signed native reads, outside antenna 1, inside antenna 2."""

    def __init__(self, publisher: MqttPublisher, device_id: str, secret: bytes) -> None:
        self.pub, self.device_id, self.secret, self.seq = publisher, device_id, secret, 0

    async def read(self, epc: str, antenna: int) -> None:
        self.seq += 1
        body = {"epc": epc, "antenna": antenna, "rssi_dbm": -52}
        raw = encode_event(self.device_id, self.seq, datetime.now(UTC), "rfid.read", body, self.secret)
        await self.pub.publish(events_topic(SITE, self.device_id), raw)

    async def passage(self, epc: str, inwards: bool) -> None:
        """A pallet through the portal: several reads on the first side, then on the second."""
        first, second = (1, 2) if inwards else (2, 1)
        for antenna in (first, first, first, second, second, second):
            await self.read(epc, antenna)
            await asyncio.sleep(0.02)


async def setup_over_http(http: httpx.AsyncClient, admin: dict[str, str], run: str) -> str:
    """Reference data, a facility and pledged lots, as a collateral manager / admin would."""
    for path, body in (
        ("/v1/sites", {"site_id": SITE, "name": "Shanghai bonded warehouse 1"}),
        ("/v1/sites", {"site_id": "QD2", "name": "Qingdao port yard 2"}),
        ("/v1/zones", {"zone_id": ZONE, "site_id": SITE, "name": "Hall A"}),
        ("/v1/zones", {"zone_id": "QD2-Y", "site_id": "QD2", "name": "Yard"}),
        (
            "/v1/skus",
            {
                "sku_id": "CU-CATH",
                "name": "Copper cathode, LME grade A",
                "uom": "t",
                "unit_mass_kg": "1000",
                "mass_tolerance": "0.01",
                "currency": "EUR",
            },
        ),
        (
            "/v1/skus",
            {
                "sku_id": "AL-INGOT",
                "name": "Aluminium ingot P1020",
                "uom": "t",
                "unit_mass_kg": "1000",
                "mass_tolerance": "0.01",
                "currency": "EUR",
            },
        ),
        ("/v1/borrowers", {"borrower_id": f"ACME-{run}", "name": "Acme Metals Trading", "tier": "B"}),
    ):
        (await http.post(path, json=body, headers=admin)).raise_for_status()
    facility_id = f"FAC-{run}"
    r = await http.post(
        "/v1/facilities",
        headers=admin,
        json={
            "facility_id": facility_id,
            "borrower_id": f"ACME-{run}",
            "currency": "EUR",
            "commitment": "2000000",
            "reserves": "25000",
            "approved_sites": [SITE],
            "tier": "B",
            "terms": {
                "CU-CATH": {"advance_rate": "0.65", "concentration_limit": "0.70"},
                "AL-INGOT": {"advance_rate": "0.60", "concentration_limit": "0.70"},
            },
        },
    )
    r.raise_for_status()
    return facility_id


async def seed_prices(platform: Platform, rng: random.Random) -> None:
    """261 daily prices per SKU (random walk): the haircut's volatility comes from them."""
    now = platform.clock()
    for sku, level, vol in (("CU-CATH", 8200.0, 0.013), ("AL-INGOT", 2300.0, 0.011)):
        for day in range(260, -1, -1):
            level *= 1 + rng.gauss(0, vol)
            await platform.ledger.record_price(
                PricePoint(sku, now - timedelta(days=day, minutes=1), D(f"{level:.2f}"), "EUR", "LME-demo")
            )


def lots(run: str, facility_id: str) -> list[dict[str, Any]]:
    out = []
    for n in range(10):
        out.append(
            {
                "lot_id": f"{run}-L{n:02d}",
                "epc": f"E280{run.upper()}{n:08X}",
                "sku_id": "CU-CATH" if n < 7 else "AL-INGOT",
                "quantity": "25",
                "site_id": SITE,
                "zone_id": ZONE,
                "pledge": n != 8,
            }
        )
    return out


def certificate_table(cert: dict[str, Any]) -> Table:
    t = Table(title=f"Borrowing base certificate of {cert['facility_id']} ({cert['as_of'][:19]}Z)")
    for col in ("SKU", "eligible t", "market value", "haircut", "advance", "counted", "conc. excess"):
        t.add_column(col, justify="right")
    for s in cert["skus"]:
        t.add_row(
            s["sku_id"],
            s["eligible_quantity"],
            f"{D(s['market_value']):,.2f}",
            f"{D(s['haircut']):.2%}",
            f"{D(s['advance_rate']):.0%}",
            f"{D(s['counted']):,.2f}",
            f"{D(s['concentration_excess']):,.2f}",
        )
    return t


def money(x: str | None) -> str:
    return "-" if x is None else f"EUR {D(x):,.2f}"


def facility_line(f: dict[str, Any]) -> str:
    ltv = "-" if f["ltv"] is None else f"{D(f['ltv']):.1%}"
    return (
        f"BB {money(f['borrowing_base'])} | outstanding {money(f['outstanding'])} | "
        f"availability [bold green]{money(f['availability'])}[/] | LTV "
        f"{ltv} | line {f['line_state']}"
        f"{' [bold red]FROZEN[/]' if f['frozen'] else ''}"
    )


async def run_demo(platform: Platform, mqtt_url: str | None, duration_s: float, console: Console) -> None:
    rng = random.Random(7)
    run = uuid.uuid4().hex[:6]
    logging.getLogger("gateway").setLevel(logging.ERROR)
    console.rule("[bold]pledge demo: goods proven by sensors, credit that follows them")
    async with EmbeddedBroker() as broker:
        url: str = mqtt_url or broker.url
        protocol: Literal[5, 311] = 5 if mqtt_url else 311
        console.print(f"MQTT broker: {url} ({'embedded amqtt, MQTT 3.1.1' if not mqtt_url else 'external'})")
        stop = asyncio.Event()
        ready = asyncio.Event()
        metrics = GatewayMetrics(platform.extra["metrics_registry"])
        options = GatewayOptions(
            mqtt_url=url,
            client_id=f"demo-gw-{run}",
            protocol=protocol,
            ingest=IngestConfig(debounce_s=0.8),
            tick_s=0.2,
        )
        gw = asyncio.create_task(
            run_gateway(options, platform.ledger, platform.clock, metrics, stop, ready.set)
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(platform),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                http=CoalescingHttpToolsProtocol,
            )
        )
        api = asyncio.create_task(server.serve())
        try:
            await asyncio.wait_for(ready.wait(), 30)
            await wait_until(lambda: _up(port), 30, "the API")
            console.print(f"gateway subscribed; HTTP API on http://127.0.0.1:{port} (OpenAPI at /docs)")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                await _story(platform, http, url, protocol, run, rng, duration_s, console)
        finally:
            stop.set()
            server.should_exit = True
            await asyncio.gather(gw, api, return_exceptions=True)
    console.rule("demo finished")


async def _up(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            return (await c.get(f"http://127.0.0.1:{port}/v1/health")).status_code == 200
    except httpx.HTTPError:
        return False


async def _story(
    platform: Platform,
    http: httpx.AsyncClient,
    url: str,
    protocol: int,
    run: str,
    rng: random.Random,
    duration_s: float,
    console: Console,
) -> None:
    now = platform.clock()
    admin = {"Authorization": f"Bearer {await platform.tokens.create('admin', None, 'demo admin', now)}"}
    facility_id = await setup_over_http(http, admin, run)
    sme = {"Authorization": "Bearer " + await platform.tokens.create("borrower", facility_id, "Acme", now)}
    console.print(
        f"[bold]1.[/] facility {facility_id} opened over HTTP: commitment EUR 2,000,000, "
        "copper 65 % / aluminium 60 % advance, approved site SH1"
    )
    await seed_prices(platform, rng)
    console.print("[bold]2.[/] 261 days of copper and aluminium prices recorded (haircuts from volatility)")
    r = await http.post(
        "/v1/devices",
        headers=admin,
        json={
            "device_id": f"gate-{run}",
            "site_id": SITE,
            "zone_id": ZONE,
            "kind": "rfid_gate",
            "format": "native",
            "antenna_sides": {"1": "outside", "2": "inside"},
            "heartbeat_interval_s": 60,
        },
    )
    r.raise_for_status()
    secret = bytes.fromhex(r.json()["secret"])
    batch = lots(run, facility_id)
    (
        await http.post(f"/v1/facilities/{facility_id}/lots", headers=admin, json={"lots": batch})
    ).raise_for_status()
    console.print(
        f"[bold]3.[/] gate reader gate-{run} registered (its HMAC secret shown once); "
        f"{len(batch)} lots announced, {sum(1 for x in batch if x['pledge'])} pledged"
    )
    f = (await http.get(f"/v1/facilities/{facility_id}", headers=sme)).json()
    console.print(f"    before any goods arrive: {facility_line(f)}")

    cfg = MqttConfig(url=url, client_id=f"demo-gate-{run}", protocol=5 if protocol == 5 else 311)
    async with MqttPublisher(cfg) as pub:
        gate = Gate(pub, f"gate-{run}", secret)
        arriving = batch[:9]  # the last lot is still on the road
        await asyncio.gather(*(gate.passage(x["epc"], inwards=True) for x in arriving))
        await wait_until(lambda: _count(http, admin, facility_id, "receipt", len(arriving)), 30, "receipts")
        console.print(
            f"[bold]4.[/] {len(arriving)} pallets passed the gate inwards: the gateway verified the "
            "signed reads, debounced them into passages and booked receipts"
        )
        cert = (await http.get(f"/v1/facilities/{facility_id}/certificate", headers=admin)).json()
        console.print(certificate_table(cert))
        console.print(
            "    ineligible by reason: "
            + ", ".join(f"{k} {v} t" for k, v in cert["ineligible_by_reason"].items())
        )
        f = (await http.get(f"/v1/facilities/{facility_id}", headers=sme)).json()
        console.print(f"    {facility_line(f)}")

        draw = (D(f["availability"]) * D("0.95")).quantize(D("1"))
        r = await http.post(
            f"/v1/facilities/{facility_id}/drawdowns",
            json={"amount": str(draw)},
            headers={**sme, "Idempotency-Key": f"demo-{run}-draw-1"},
        )
        r.raise_for_status()
        again = await http.post(
            f"/v1/facilities/{facility_id}/drawdowns",
            json={"amount": str(draw)},
            headers={**sme, "Idempotency-Key": f"demo-{run}-draw-1"},
        )
        console.print(
            f"[bold]5.[/] the SME drew {money(str(draw))} over HTTP; the retried request was "
            f"replayed (Idempotent-Replayed: {again.headers.get('Idempotent-Replayed')}), not paid twice"
        )
        console.print(f"    {facility_line(r.json()['facility'])}")
        r = await http.post(
            f"/v1/facilities/{facility_id}/releases",
            json={"lot_ids": [batch[0]["lot_id"]]},
            headers={**sme, "Idempotency-Key": f"demo-{run}-rel-1"},
        )
        if r.status_code == 409:
            console.print(f"[bold]6.[/] release of {batch[0]['lot_id']} refused: {r.json()['detail']}")
            repay = D(r.json().get("repay_first", "0")) + 1
            (
                await http.post(
                    f"/v1/facilities/{facility_id}/repayments",
                    json={"amount": f"{repay:.2f}"},
                    headers={**sme, "Idempotency-Key": f"demo-{run}-repay-1"},
                )
            ).raise_for_status()
            console.print(f"    the SME repaid {money(f'{repay:.2f}')} (interest first, then principal)")
            r = await http.post(
                f"/v1/facilities/{facility_id}/releases",
                json={"lot_ids": [batch[0]["lot_id"]]},
                headers={**sme, "Idempotency-Key": f"demo-{run}-rel-2"},
            )
        r.raise_for_status()
        console.print(
            f"    release {r.json()['release_id']} approved for {batch[0]['lot_id']}: BB after it "
            f"{money(r.json()['bb_after'])} still covers {money(r.json()['outstanding'])}"
        )
        await gate.passage(batch[0]["epc"], inwards=False)
        await gate.passage(batch[1]["epc"], inwards=False)
        await wait_until(
            lambda: _count(http, admin, facility_id, "removal_without_release", 1), 30, "removal"
        )
        await wait_until(lambda: _count(http, admin, facility_id, "authorised_release", 1), 30, "release")
        console.print(
            f"[bold]7.[/] {batch[0]['lot_id']} left through the gate: authorised release. "
            f"{batch[1]['lot_id']} left WITHOUT a release: recorded as removal without release"
        )
        f = (await http.get(f"/v1/facilities/{facility_id}", headers=sme)).json()
        console.print(f"    {facility_line(f)}")
        events = (await http.get(f"/v1/facilities/{facility_id}/events", headers=admin)).json()["items"]
        for e in events:
            console.print(
                f"    credit event #{e['event_id']} [yellow]{e['kind']}[/] (trigger {e['trigger']})"
            )
        forged = encode_event(
            f"gate-{run}",
            10_000,
            datetime.now(UTC),
            "rfid.read",
            {"epc": batch[9]["epc"], "antenna": 2, "rssi_dbm": -50},
            b"not-the-secret-0123",
        )
        await pub.publish(events_topic(SITE, f"gate-{run}"), forged)
        await wait_until(lambda: _dead(http, admin), 30, "the dead letter")
        dl = (await http.get("/v1/deadletters", headers=admin)).json()
        console.print(
            f"[bold]8.[/] a forged read (wrong HMAC) was dead-lettered, not applied: {dl['counts']}"
        )

    audit = (await http.get(f"/v1/facilities/{facility_id}/audit", headers=admin)).json()
    console.print(
        f"[bold]9.[/] audit: journal hash chain {'OK' if audit['journal']['ok'] else 'BROKEN'}, "
        f"money balances re-derived from postings {'agree' if audit['balances']['ok'] else 'DISAGREE'}"
    )
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        for sku in ("CU-CATH", "AL-INGOT"):
            last = (await platform.ledger.price_history(sku, limit=1))[-1].price
            new = (last * D(str(1 + rng.gauss(0, 0.01)))).quantize(D("0.01"))
            r = await http.post(
                "/v1/prices",
                headers=admin,
                json={"sku_id": sku, "price": str(new), "currency": "EUR", "source": "LME-demo"},
            )
            r.raise_for_status()
        f = (await http.get(f"/v1/facilities/{facility_id}", headers=sme)).json()
        console.print(f"    {datetime.now(UTC):%H:%M:%S} price tick -> {facility_line(f)}")


async def _count(http: httpx.AsyncClient, h: dict[str, str], fid: str, kind: str, n: int) -> bool:
    r = await http.get(f"/v1/facilities/{fid}/movements", params={"kind": kind, "limit": 1000}, headers=h)
    return len(r.json()["items"]) >= n


async def _dead(http: httpx.AsyncClient, h: dict[str, str]) -> bool:
    return bool((await http.get("/v1/deadletters", headers=h)).json()["counts"])
