"""Finding 3, "the memory phase does not bind": provers holding less than the working set
(streaming the rest over PCIe, keeping every other or every third matrix, or holding
what a smaller card holds) miss the budget of every catalog model; an honest prover with
the memory passes. Simulated at scaled parameters with real-size costs (see
memory_cheaters), judged by the verifier and, for the pairs of the finding, by the
coordinator's own services on a fake clock, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from gpunet.core.clock import FrozenClock
from gpunet.core.pog import (
    Challenge,
    Failure,
    FailureReason,
    HardwareReport,
    KernelGpu,
    ModelProfile,
    ReportedGpu,
    default_catalog,
    plan_openings,
    verify,
)
from gpunet.server.db.engine import Database
from gpunet.server.services import proofs
from tests.adversarial import world
from tests.adversarial.memory_cheaters import (
    RealCost,
    SimulatedProver,
    holds,
    honest_prover,
    keep_every_prover,
    minimal_offload_prover,
    offload_prover,
    rates_of,
    scaled,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GPUS = [m for m in default_catalog().models if not m.dev_only]
# (actual card, the model it claims): the pairs that passed on time and memory in v1.
PAIRS = [
    ("rtx-4090", "a100-80gb"),
    ("rtx-4090", "a100-40gb"),
    ("rtx-4090", "l40s"),
    ("a100-40gb", "a100-80gb"),
    ("l40s", "a100-80gb"),
    ("h100-sxm", "h200"),
]


def profile(key: str) -> ModelProfile:
    m = default_catalog().get(key)
    assert m is not None
    return m


def challenge_for(claimed: ModelProfile, label: str) -> tuple[Challenge, float]:
    """A scaled challenge for `claimed`, with a budget of 1.2x its honest run in real
    seconds (the catalog's own margin)."""
    sim = scaled(claimed.params)
    honest = RealCost(claimed.params, rates_of(claimed)).honest(sim)
    budget = honest * claimed.budget.budget_s / claimed.budget.expected_s
    ch = Challenge(
        id="pog_" + hashlib.sha256(label.encode()).hexdigest()[:24],
        seed=hashlib.sha256(b"mem/" + label.encode()).digest(),
        profile=claimed.key,
        params=sim,
        issued_at=T0,
        deadline=T0 + dt.timedelta(seconds=budget),
        open_budget_s=claimed.budget.open_budget_s,
    )
    return ch, budget


def judge(prover: SimulatedProver, ch: Challenge):
    commitment = prover.commit(ch)
    plan = plan_openings(ch, hashlib.sha256(b"open" + ch.seed).digest(), commitment)
    response = prover.open(plan.request())
    return verify(
        ch, commitment, plan, response, commit_elapsed_s=prover.elapsed_s, open_elapsed_s=1.0
    )


def assert_too_slow(verdict) -> None:
    assert isinstance(verdict, Failure), verdict
    assert verdict.reason is FailureReason.TOO_SLOW, verdict


@pytest.mark.parametrize("m", GPUS, ids=lambda m: m.key)
def test_honest_prover_with_the_memory_passes(m):
    ch, budget = challenge_for(m, f"honest-{m.key}")
    prover = honest_prover(RealCost(m.params, rates_of(m)))
    assert judge(prover, ch)
    assert prover.missing_rows == 0 and prover.elapsed_s < budget


@pytest.mark.parametrize("m", GPUS, ids=lambda m: m.key)
@pytest.mark.parametrize("cheat", ["minimal-offload", "keep-every-other", "keep-every-third"])
def test_memory_cheats_miss_the_budget_of_every_model(m, cheat):
    cost = RealCost(m.params, rates_of(m))  # the claimed model's own speed and PCIe link
    prover = {
        "minimal-offload": lambda: minimal_offload_prover(cost),
        "keep-every-other": lambda: keep_every_prover(cost, 2),
        "keep-every-third": lambda: keep_every_prover(cost, 3),
    }[cheat]()
    ch, _ = challenge_for(m, f"{cheat}-{m.key}")
    verdict = judge(prover, ch)
    assert prover.missing_rows > 0
    assert_too_slow(verdict)


@pytest.mark.parametrize(("actual", "claimed"), PAIRS)
def test_a_smaller_card_cannot_pass_for_a_larger_one(actual, claimed):
    a, b = profile(actual), profile(claimed)
    share = holds(rates_of(a), b.params)
    assert share < 0.8  # it really cannot hold the claimed working set
    cost = RealCost(b.params, rates_of(a))
    ch, _ = challenge_for(b, f"pair-{actual}-{claimed}")
    # Stream what does not fit, or keep every 1/share-th matrix and recompute the rest:
    # either way the claimed model's budget is missed.
    assert_too_slow(judge(offload_prover(cost, share, ch.params), ch))
    every = max(2, round(1 / max(share, 0.01)))
    assert_too_slow(judge(keep_every_prover(cost, every), ch))


def commit_from_nvidia_host(net, dev, ch: Challenge, commitment):
    """world.commit, with the kernel's GPU list an NVIDIA host reports beside NVML's."""
    c = dev.claim
    report = HardwareReport(
        vendor=c.vendor,
        device_uuid=c.gpu_uuid,
        devices=(
            ReportedGpu(
                gpu_uuid=c.gpu_uuid, pci_bus_id=c.pci_bus_id, model=c.model, vram_mib=c.vram_mib
            ),
        ),
        kernel_gpus=(KernelGpu(pci_bus_id=c.pci_bus_id, model=c.model, gpu_uuid=c.gpu_uuid),),
    )
    st = world.state(net)
    with net.database.transaction() as s:
        now = net.clock.now()
        device = proofs.speaking_device(s, world.pk(net, dev), now)
        return proofs.accept_commitment(
            s, device, ch.id, commitment, report, now=now, policy=st.proof_policy
        )


def scaled_catalog(tmp_path: Path) -> Path:
    """The packaged catalog with every GPU model's parameters scaled and its budget
    the scaled honest run's (x the catalog margin): what the coordinator issues."""
    data = json.loads(json.dumps(default_catalog().model_dump(mode="json")))
    for entry in data["models"]:
        m = default_catalog().get(entry["key"])
        assert m is not None
        if m.dev_only:
            continue
        sim = scaled(m.params)
        honest = RealCost(m.params, rates_of(m)).honest(sim)
        entry["params"] = sim.model_dump()
        entry["budget"].update(expected_s=honest, budget_s=honest * 1.2)
    path = tmp_path / "scaled-catalog.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("actual", "claimed"),
    [
        ("h200", "h200"),
        ("h100-sxm", "h200"),
        ("rtx-4090", "rtx-4090"),
        ("rtx-4090", "l40s"),
    ],
)
def test_through_the_coordinator_only_the_card_that_holds_the_set_passes(
    database: Database, database_url: str, clock: FrozenClock, tmp_path: Path, actual, claimed
):
    a, b = profile(actual), profile(claimed)
    # The scaled challenge is 60 real-size steps, not thousands: the round-trip
    # allowance would be scaled down with it to a few milliseconds, so it is left out.
    with world.coordinator(
        database, database_url, clock, delivery_allowance_s=0,
        catalog_path=scaled_catalog(tmp_path),
    ) as net:
        [dev] = net.enroll(
            net.register(), 1, vendor="nvidia", model=b.match[0], vram_mib=b.vram_mib
        )
        world.rounds(net).run_once()
        ch = world.fetch(net, dev)
        assert ch is not None and ch.profile == b.key
        cost = RealCost(b.params, rates_of(a))
        share = holds(rates_of(a), b.params)
        prover = honest_prover(cost) if share >= 1 else offload_prover(cost, share, ch.params)
        commitment = prover.commit(ch)
        net.clock.advance(prover.elapsed_s)
        answer = commit_from_nvidia_host(net, dev, ch, commitment)
        verdict = answer if isinstance(answer, Failure) else world.finish(net, dev, prover, answer)
        if actual == claimed:
            assert verdict, verdict
        else:
            assert_too_slow(verdict)
