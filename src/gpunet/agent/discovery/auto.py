"""Choosing a backend: NVIDIA, else Apple MPS, else cpu-dev only when allowed.

A refusal stops the search: a host whose NVML disagrees with its kernel must not fall
through to another backend (least of all cpu-dev) and enroll anyway. A production agent
with no GPU gets a "nothing" result that says what was tried and why it found nothing.
"""

from __future__ import annotations

from gpunet.agent.discovery.apple import AppleDiscovery
from gpunet.agent.discovery.base import Discovery, DiscoveryResult
from gpunet.agent.discovery.cpu import CpuDevDiscovery
from gpunet.agent.discovery.nvidia import NvidiaDiscovery

SOURCE = "auto"


def auto_discover(*, allow_cpu_dev: bool = False, cpu_dev_count: int = 1,
                  host_fingerprint: str | None = None,
                  nvidia: Discovery | None = None, apple: Discovery | None = None,
                  cpu_dev: Discovery | None = None) -> DiscoveryResult:
    """The first backend that finds devices, in order NVIDIA, Apple, cpu-dev (if allowed)."""
    backends: list[Discovery] = [
        nvidia or NvidiaDiscovery(host_fingerprint=host_fingerprint),
        apple or AppleDiscovery(),
    ]
    notes: list[str] = []
    for backend in backends:
        result = backend.discover()
        if result.is_refused or result.ok:
            return result
        notes.append(f"{result.source}: {result.note}")
    if allow_cpu_dev:
        dev = cpu_dev or CpuDevDiscovery(cpu_dev_count, host_fingerprint=host_fingerprint)
        return dev.discover()
    return DiscoveryResult.nothing(
        SOURCE,
        "no GPU found (" + "; ".join(notes) + "); this agent has nothing to supply. "
        "The cpu-dev profile is for local development networks only.",
    )
