"""Hardware attestation (NVIDIA confidential computing) as an extra, higher tier.

A GPU in CC mode can sign an SPDM report over a nonce we choose; its per-device `ueid`
claim names the physical GPU. gpunet asks for the report over the challenge's own
nonce, so a report cannot be reused, and records the `ueid` so one GPU cannot attest
for two devices. Proof of GPU stays mandatory: attestation adds to it, never replaces it.

Verifying real reports needs NVIDIA's verifier (the `nv-attestation-sdk` package and its
certificate chain); that sits behind `AttestationVerifier` so the coordinator runs, and
is tested, without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Attested:
    ueid: str
    tier: str = "cc-attested"


@dataclass(frozen=True, slots=True)
class NotAttested:
    reason: str

    def __bool__(self) -> bool:
        return False


AttestationResult = Attested | NotAttested


class AttestationVerifier(Protocol):
    def verify(self, report: bytes, nonce: bytes, *, gpu_uuid: str) -> AttestationResult:
        """Check a report is genuine, fresh (signed over `nonce`) and names this GPU."""
        ...


class NoAttestation:
    """The default: this coordinator verifies no attestation reports."""

    def verify(self, report: bytes, nonce: bytes, *, gpu_uuid: str) -> AttestationResult:
        return NotAttested("this coordinator has no attestation verifier configured")


def attestation_nonce(challenge_seed: bytes) -> bytes:
    """The 32-byte nonce a device's report must be signed over, bound to its challenge."""
    return hashlib.sha256(b"gpunet-attestation-v1" + challenge_seed).digest()
