"""GPU discovery for the worker agent.

``auto_discover()`` picks a backend; each backend implements ``Discovery`` and returns a
``DiscoveryResult`` (found, nothing, or refused with a reason). See ``base`` for the
contract and ``nvidia`` for the kernel cross-check against spoofed NVML (T8).
"""

from gpunet.agent.discovery.apple import AppleDiscovery
from gpunet.agent.discovery.auto import auto_discover
from gpunet.agent.discovery.base import Backend, DiscoveredGpu, Discovery, DiscoveryResult
from gpunet.agent.discovery.commands import CommandError, CommandRunner, run_command
from gpunet.agent.discovery.cpu import CpuDevDiscovery
from gpunet.agent.discovery.fake import FakeDiscovery, fake_gpu
from gpunet.agent.discovery.fingerprint import (
    FingerprintUnavailable,
    HostFacts,
    host_fingerprint,
    local_host_fingerprint,
    read_host_facts,
)
from gpunet.agent.discovery.model_keys import guess_model_key
from gpunet.agent.discovery.nvidia import NvidiaDiscovery
from gpunet.agent.discovery.nvml import (
    NvmlDevice,
    NvmlSnapshot,
    NvmlSource,
    NvmlUnavailable,
    PynvmlSource,
)

__all__ = [
    "AppleDiscovery",
    "Backend",
    "CommandError",
    "CommandRunner",
    "CpuDevDiscovery",
    "DiscoveredGpu",
    "Discovery",
    "DiscoveryResult",
    "FakeDiscovery",
    "FingerprintUnavailable",
    "HostFacts",
    "NvidiaDiscovery",
    "NvmlDevice",
    "NvmlSnapshot",
    "NvmlSource",
    "NvmlUnavailable",
    "PynvmlSource",
    "auto_discover",
    "fake_gpu",
    "guess_model_key",
    "host_fingerprint",
    "local_host_fingerprint",
    "read_host_facts",
    "run_command",
]
