"""Proof-of-GPU provers: one interface (`base.Prover`), several backends.

`cpu` (NumPy) always works; `cuda`, `mps` and `torch-cpu` need PyTorch, imported lazily
so that an agent without it still starts (and can still serve the cpu-dev profile).
"""

from __future__ import annotations

from gpunet.agent.provers.base import Prover, ProverError

BACKENDS = ("cpu", "cuda", "mps", "torch-cpu")


def get_prover(backend: str, **options: object) -> Prover:
    """A prover for `backend` (one of BACKENDS)."""
    if backend == "cpu":
        from gpunet.agent.provers.cpu import CpuProver

        return CpuProver()
    from gpunet.agent.provers import torch_prover

    if backend == "cuda":
        return torch_prover.CudaProver(**options)  # type: ignore[arg-type]
    if backend == "mps":
        return torch_prover.MpsProver(**options)  # type: ignore[arg-type]
    if backend == "torch-cpu":
        return torch_prover.TorchProver("cpu", **options)  # type: ignore[arg-type]
    raise ProverError(f"unknown prover backend {backend!r}; known: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Prover", "ProverError", "get_prover"]
