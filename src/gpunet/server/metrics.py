"""Prometheus metrics, one registry per app (so tests and replicas never share one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gpunet_requests_total",
            "HTTP requests by endpoint, method, status and principal kind",
            ["endpoint", "method", "status", "principal"],
            registry=self.registry,
        )
        self.writes = Counter(
            "gpunet_writes_total",
            "Successful changes by endpoint and principal kind",
            ["endpoint", "principal"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "gpunet_auth_failures_total",
            "Refused credentials by endpoint and principal kind",
            ["endpoint", "principal"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gpunet_request_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
