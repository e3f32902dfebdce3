"""The one settings class. Built by the entry points (api/cli.py) and handed down as arguments;
nothing below the composition root reads the environment."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.mqtt import RECEIVE_MAXIMUM
from ledger.core.pricing import RatePlan

DEFAULT_DB = "sqlite+aiosqlite:///var/pledge.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLEDGE_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DB, description="SQLAlchemy URL (sqlite+aiosqlite or postgresql+asyncpg)"
    )
    database_schema: str | None = Field(None, description="PostgreSQL schema (search_path) to use")
    mqtt_url: str | None = Field(None, description="mqtt://host:port; unset starts an embedded broker")
    mqtt_protocol: int = Field(5, description="5 (default) or 311; the embedded broker forces 311")
    mqtt_client_id: str = "pledge-gateway"
    mqtt_share_group: str | None = Field(None, description="MQTT 5 shared-subscription group")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    batch_max: int = 500
    batch_max_wait_s: float = 0.02
    debounce_s: float = 2.0
    max_clock_skew_s: float = 300.0
    # Gateway (gateway/app.py, docs/gateway.md).
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Prometheus port of `pledge gateway` alone; 0 disables"
    )
    mqtt_sites: str | None = Field(
        None, description="comma-separated site ids: subscribe only to their topics (unset: all)"
    )
    mqtt_receive_maximum: int = Field(
        RECEIVE_MAXIMUM, ge=1, le=65535, description="MQTT 5 Receive Maximum: unacknowledged in flight"
    )
    heartbeat_grace: float = Field(
        1.5, gt=1.0, description="a device is offline when silent for heartbeat_interval_s x this"
    )
    dedup_retention_s: float = Field(
        7 * 86400.0, gt=0, description="how long committed event keys are kept for deduplication"
    )
    gateway_tick_s: float = Field(
        0.25, gt=0, description="how often the gateway closes quiet gate passages and sweeps"
    )
    gateway_pipeline: int = Field(
        2, ge=1, description="gateway batches committing at once (gateway/app.py); SQLite: always 1"
    )
    device_refresh_s: float = Field(30.0, gt=0, description="how often the device cache is reloaded")
    # Cost-plus pricing (annual fractions): funding + operating + risk premium by tier + margin.
    api_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="largest HTTP request body accepted; larger is a 413 problem"
    )
    money_batches: int = Field(
        4, ge=1, description="money batches (drawdowns/repayments) in flight at once (ledger/money_desk.py)"
    )
    money_batch_max: int = Field(64, ge=1, description="requests in one money batch at most")
    money_batch_min_busy: int = Field(
        16, ge=1, description="while a money batch runs, another starts only with this many requests waiting"
    )
    accrual_job: bool = Field(
        True, description="book every facility's interest daily in this API process (ledger/daily_job.py)"
    )
    idempotency_retention_s: float = Field(
        30 * 86400.0, ge=0, description="forget money requests' Idempotency-Keys after this long (0: never)"
    )

    def key_retention(self) -> timedelta | None:
        """How long Idempotency-Keys are kept; None: forever."""
        return timedelta(seconds=self.idempotency_retention_s) if self.idempotency_retention_s else None
    funding_cost: str = "0.030"
    operating_cost: str = "0.010"
    risk_premium_a: str = "0.010"
    risk_premium_b: str = "0.020"
    risk_premium_c: str = "0.035"
    margin: str = "0.013"

    def rate_plan(self) -> RatePlan:
        return RatePlan(
            Decimal(self.funding_cost),
            Decimal(self.operating_cost),
            {
                "A": Decimal(self.risk_premium_a),
                "B": Decimal(self.risk_premium_b),
                "C": Decimal(self.risk_premium_c),
            },
            Decimal(self.margin),
        )

    @field_validator("mqtt_protocol")
    @classmethod
    def _protocol(cls, v: int) -> int:
        if v not in (5, 311):
            raise ValueError("mqtt_protocol must be 5 or 311")
        return v

    def sqlite_path(self) -> Path | None:
        prefix = "sqlite+aiosqlite:///"
        return Path(self.database_url[len(prefix) :]) if self.database_url.startswith(prefix) else None
