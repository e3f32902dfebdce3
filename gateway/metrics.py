"""Prometheus metrics of the gateway, registered on a `CollectorRegistry` passed in.

Never the process-global default registry: tests build one per gateway and read it back, and
`pledge serve` exposes the same registry at `/metrics` on the API app.

    pledge_gateway_messages_received_total              every MQTT message handed to ingest
    pledge_gateway_messages_committed_total             messages whose evidence was committed
    pledge_gateway_duplicates_total                     redeliveries dropped (no second effect)
    pledge_gateway_late_total                           native messages committed out of seq order
    pledge_gateway_dead_letters_total{reason}           refused messages, by reason code
    pledge_gateway_ignored_total{what}                  accepted, nothing in it (e.g. an Impinj antenna event)
    pledge_gateway_passages_total{outcome}              gate passages closed, by outcome
    pledge_gateway_batch_size                           messages per committed batch (histogram)
    pledge_gateway_commit_seconds                       batch transaction time (histogram)
    pledge_gateway_lag_seconds                          now - event time of the latest committed event
    pledge_gateway_devices_online                       devices currently online
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.errors import REASONS

__all__ = ["INGEST_REASONS", "GatewayMetrics"]

INGEST_REASONS = frozenset({"ledger_rejected", "internal_error"})
"""Dead-letter reasons ingest adds to the decoders' `REASONS`: the store or ledger refused a
message on its own (`ledger_rejected`), or a decoder failed in a way it should not
(`internal_error`, a bug: the message is kept for replay once fixed)."""

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    """The gateway's counters, histograms and gauges on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = "pledge_gateway"
        self.received = Counter(f"{p}_messages_received", "MQTT messages handed to ingest",
                                registry=registry)
        self.committed = Counter(f"{p}_messages_committed",
                                 "messages whose evidence was committed", registry=registry)
        self.duplicates = Counter(f"{p}_duplicates", "redelivered messages dropped",
                                  registry=registry)
        self.late = Counter(f"{p}_late", "native messages accepted below their device's last seq",
                            registry=registry)
        self.dead_letters = Counter(f"{p}_dead_letters", "refused messages by reason",
                                    ["reason"], registry=registry)
        self.ignored = Counter(f"{p}_ignored", "accepted, nothing to store", ["what"],
                               registry=registry)
        self.passages = Counter(f"{p}_passages", "gate passages closed by outcome", ["outcome"],
                                registry=registry)
        self.batch_size = Histogram(f"{p}_batch_size", "messages per committed batch",
                                    buckets=_BATCH_BUCKETS, registry=registry)
        self.commit_seconds = Histogram(f"{p}_commit_seconds", "batch transaction time",
                                        buckets=_SECONDS_BUCKETS, registry=registry)
        self.lag_seconds = Gauge(f"{p}_lag_seconds",
                                 "now - event time of the latest committed event",
                                 registry=registry)
        self.devices_online = Gauge(f"{p}_devices_online", "devices currently online",
                                    registry=registry)
        for reason in sorted(REASONS | INGEST_REASONS):
            self.dead_letters.labels(reason)  # every reason exported at 0 from the start

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0.0 when absent): for tests and the bench."""
        found = self.registry.get_sample_value(name, labels or None)
        return 0.0 if found is None else float(found)
