"""Proof of GPU through the coordinator: issue, deliver, commit, open, verdict, status.

The CPU prover with the cpu-dev profile runs the real protocol; cheaters are real
provers with one thing wrong, not mocks of the verifier.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from gpunet.agent.client import WorkerClient
from gpunet.agent.provers.cpu import CpuProver
from gpunet.agent.proving import answer_next
from gpunet.core.clock import FrozenClock, unix
from gpunet.core.pog import Commitment, HardwareReport, OpeningResponse, ReportedGpu
from gpunet.core.pog.messages import VerdictMessage
from gpunet.server.app import create_app
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device, DeviceEvent
from gpunet.server.services import proof_schedule, proofs
from gpunet.server.services.attestation import Attested, NotAttested
from tests.integration.conftest import DeviceHandle, Net, make_settings

CPU_DEV = {
    "vendor": "cpu",
    "model": "cpu-dev",
    "vram_mib": 1024,
    "pci_bus_id": "none",
    "driver_version": "0.1.0",
}


class FakeCC:
    """Stands in for NVIDIA's verifier: accepts reports that spell out the nonce."""

    def verify(self, report: bytes, nonce: bytes, *, gpu_uuid: str) -> Any:
        if report == b"cc-report:" + nonce:
            return Attested(ueid=f"ueid-{gpu_uuid}")
        return NotAttested("signature does not cover this nonce")


@pytest.fixture
def pnet(database: Database, database_url: str, clock: FrozenClock) -> Iterator[Net]:
    settings = make_settings(database_url)
    with TestClient(
        create_app(settings, database=database, clock=clock, attestation=FakeCC())
    ) as client:
        yield Net(client, clock, database, settings)


def state(net: Net) -> Any:
    return net.client.app.state.gpunet  # type: ignore[attr-defined]


def schedule(net: Net, *, all_due: bool = False) -> int:
    """Run the scheduler once; `all_due` first makes every device's spot check due now
    (the real times are random and unannounced)."""
    st = state(net)
    if all_due:
        with net.database.transaction() as s:
            s.execute(update(Device).values(next_check_at=net.clock.now()))
    with net.database.transaction() as s:
        return proof_schedule.schedule_due(
            s, now=net.clock.now(), catalog=st.catalog, policy=st.proof_policy
        )


def report_for(dev: DeviceHandle, **changes: Any) -> HardwareReport:
    c = dev.claim
    gpu = {
        "gpu_uuid": c.gpu_uuid,
        "pci_bus_id": c.pci_bus_id,
        "model": c.model,
        "vram_mib": c.vram_mib,
    } | changes
    return HardwareReport(vendor=c.vendor, device_uuid=c.gpu_uuid, devices=(ReportedGpu(**gpu),))


def worker(net: Net, dev: DeviceHandle) -> WorkerClient:
    return WorkerClient(net.client, dev.signer, clock=lambda: unix(net.clock.now()))


def status(net: Net, dev: DeviceHandle) -> str:
    with net.database.read() as s:
        return str(
            s.execute(select(Device.status).where(Device.public_id == dev.device_id)).scalar_one()
        )


def test_honest_cpu_prover_passes_every_time(pnet: Net) -> None:
    # Spot checks of one device are spaced by at least min_challenge_gap_s.
    owner = pnet.register()
    [dev] = pnet.enroll(owner, **CPU_DEV)
    prover, client, report = CpuProver(), worker(pnet, dev), report_for(dev)
    results = []
    for _ in range(200):
        pnet.clock.advance(pnet.settings.min_challenge_gap_s)
        assert schedule(pnet, all_due=True) == 1
        outcome = answer_next(client, prover, report)
        assert outcome is not None
        results.append(outcome.passed)
    assert all(results) and len(results) == 200
    assert status(pnet, dev) == "verified"
    stats = pnet.client.get("/api/v1/explorer/stats").json()
    assert stats["verified_gpus"] == 1


def test_pending_device_is_challenged_and_verified(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    assert pnet.signed(dev, "GET", "/api/v1/worker/challenge").status_code == 204
    assert schedule(pnet) == 1
    assert schedule(pnet) == 0  # one outstanding challenge at a time
    outcome = answer_next(worker(pnet, dev), CpuProver(), report_for(dev))
    assert outcome is not None and outcome.passed and outcome.status == "verified"
    with pnet.database.read() as s:
        row = s.execute(select(ChallengeRow)).scalar_one()
        events = s.execute(select(DeviceEvent.kind, DeviceEvent.to_status)).all()
    assert row.kind == "enrollment" and row.outcome == "passed"
    assert row.verify_cpu_ms is not None
    assert ("status", "verified") in events


def commit_parts(net: Net, dev: DeviceHandle, prover: CpuProver) -> tuple[Any, Commitment]:
    client = worker(net, dev)
    challenge = client.fetch_challenge()
    assert challenge is not None
    return challenge, prover.commit(challenge)


def test_too_slow_for_the_claimed_model_fails(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    schedule(pnet)
    prover = CpuProver()
    challenge, commitment = commit_parts(pnet, dev, prover)
    # The clock runs from issue; the deadline allows the budget plus the delivery allowance.
    pnet.clock.advance(challenge.budget_s + pnet.settings.delivery_allowance_s + 0.5)
    answer = worker(pnet, dev).commit(commitment, report_for(dev))
    assert isinstance(answer, VerdictMessage)
    assert answer.passed is False and answer.reason == "too_slow"
    assert status(pnet, dev) == "pending"


def test_replayed_answer_fails(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    prover, client = CpuProver(), worker(pnet, dev)
    schedule(pnet)
    assert answer_next(client, prover, report_for(dev)).passed  # type: ignore[union-attr]
    old_challenge, old_commitment = None, None
    with pnet.database.read() as s:
        old = s.execute(select(ChallengeRow)).scalar_one()
        old_commitment = Commitment.model_validate_json(old.commitment or "")
    pnet.clock.advance(pnet.settings.min_challenge_gap_s)
    schedule(pnet, all_due=True)
    fresh = client.fetch_challenge()
    assert fresh is not None and fresh.id != old_commitment.challenge_id
    # The old roots, relabelled with the new challenge's id.
    replay = old_commitment.model_copy(update={"challenge_id": fresh.id})
    prover.release()
    answer = client.commit(replay, report_for(dev))
    if isinstance(answer, VerdictMessage):
        assert answer.passed is False
    else:
        rows = prover  # the prover holds nothing for this challenge: answer from the old run
        old_prover = CpuProver()
        old_challenge = json.loads(old.body)
        from gpunet.core.pog import Challenge

        old_prover.commit(Challenge.model_validate(old_challenge))
        opened = old_prover.open(answer.model_copy(update={"challenge_id": old.id}))
        forged = OpeningResponse(challenge_id=fresh.id, rows=opened.rows)
        verdict = client.open(forged)
        assert verdict.passed is False
        assert verdict.reason in ("commitment_mismatch", "wrong_initial", "wrong_result")
        del rows
    assert status(pnet, dev) == "suspect"


def test_garbage_answer_fails_and_a_second_failure_suspends(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    client = worker(pnet, dev)
    schedule(pnet)
    assert answer_next(client, CpuProver(), report_for(dev)).passed  # type: ignore[union-attr]
    for expected in ("suspect", "suspended"):
        pnet.clock.advance(pnet.settings.min_challenge_gap_s)
        schedule(pnet, all_due=True)
        challenge = client.fetch_challenge()
        assert challenge is not None
        garbage = Commitment(
            challenge_id=challenge.id,
            elapsed_s=0.01,
            roots=tuple(bytes([i]) * 32 for i in range(challenge.params.steps + 1)),
        )
        answer = client.commit(garbage, report_for(dev))
        assert not isinstance(answer, VerdictMessage)
        opened = CpuProver()
        opened.commit(challenge.model_copy(update={"seed": b"\x01" * 32}))
        verdict = client.open(opened.open(answer))
        assert verdict.passed is False
        assert status(pnet, dev) == expected
    with pnet.database.read() as s:
        forfeits = (
            s.execute(select(DeviceEvent.forfeit_from).where(DeviceEvent.kind == "proof_failed"))
            .scalars()
            .all()
        )
    assert len(forfeits) == 2 and all(f is not None for f in forfeits)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"vram_mib": 2048}, "vram_changed"),
        ({"gpu_uuid": "CPU-ffffffffffffffffffffffffffffffff"}, "uuid_changed"),
    ],
)
def test_changed_hardware_suspends(pnet: Net, change: dict[str, Any], reason: str) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    client, prover = worker(pnet, dev), CpuProver()
    schedule(pnet)
    assert answer_next(client, prover, report_for(dev)).passed  # type: ignore[union-attr]
    pnet.clock.advance(pnet.settings.min_challenge_gap_s)
    schedule(pnet, all_due=True)
    outcome = answer_next(client, prover, report_for(dev, **change))
    assert outcome is not None and not outcome.passed and outcome.reason == reason
    assert status(pnet, dev) == "suspended"


def test_one_backend_cannot_answer_for_two_devices_at_once(pnet: Net) -> None:
    owner = pnet.register()
    a, b = pnet.enroll(owner, count=2, **CPU_DEV)
    assert schedule(pnet) == 2  # same owner and host: one batch, one moment
    with pnet.database.read() as s:
        assert len(set(s.execute(select(ChallengeRow.batch)).scalars())) == 1
    prover = CpuProver()
    ca, cb = worker(pnet, a), worker(pnet, b)
    first, second = ca.fetch_challenge(), cb.fetch_challenge()
    assert first is not None and second is not None
    # One backend: B's work starts only when A's is done; each takes 60% of the time
    # its deadline allows (both clocks started at issue, whenever B chose to fetch).
    work = (first.budget_s + pnet.settings.delivery_allowance_s) * 0.6
    pnet.clock.advance(work)
    assert not isinstance(ca.commit(prover.commit(first), report_for(a)), VerdictMessage)
    pnet.clock.advance(work)
    answer = cb.commit(prover.commit(second), report_for(b))
    assert isinstance(answer, VerdictMessage) and answer.reason == "too_slow"


def test_a_challenge_never_heard_of_lapses_and_the_device_owes_a_proof(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    client = worker(pnet, dev)
    schedule(pnet)
    assert answer_next(client, CpuProver(), report_for(dev)).passed  # type: ignore[union-attr]
    pnet.clock.advance(pnet.settings.min_challenge_gap_s)
    assert schedule(pnet, all_due=True) == 1
    pnet.clock.advance(60)  # the device was offline past the deadline
    assert pnet.signed(dev, "GET", "/api/v1/worker/challenge").status_code == 204
    with pnet.database.read() as s:
        missed = s.execute(
            select(ChallengeRow).where(ChallengeRow.outcome == "missed")
        ).scalar_one()
    assert missed.reason is None
    assert status(pnet, dev) == "verified"  # offline costs uptime, not status
    beat = pnet.signed(dev, "POST", "/api/v1/worker/heartbeat").json()
    assert beat["counted"] is False  # it owes a proof: nothing counts until it passes
    assert schedule(pnet) == 0  # re-issued once per interval, not at every pass
    pnet.clock.advance(pnet.settings.reissue_interval_s)
    assert schedule(pnet) == 1
    assert answer_next(client, CpuProver(), report_for(dev)).passed  # type: ignore[union-attr]
    assert pnet.signed(dev, "POST", "/api/v1/worker/heartbeat").json()["counted"] is True


def test_a_fetched_challenge_left_unanswered_fails(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    client = worker(pnet, dev)
    schedule(pnet)
    assert answer_next(client, CpuProver(), report_for(dev)).passed  # type: ignore[union-attr]
    pnet.clock.advance(pnet.settings.min_challenge_gap_s)
    schedule(pnet, all_due=True)
    assert client.fetch_challenge() is not None  # received, then the device went quiet
    pnet.clock.advance(3600)
    st = state(pnet)
    with pnet.database.transaction() as s:
        assert proofs.expire(s, now=pnet.clock.now(), policy=st.proof_policy) == 1
    assert status(pnet, dev) == "suspect"


def test_unanswered_challenges_expire_as_failures(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    schedule(pnet)
    worker(pnet, dev).fetch_challenge()
    pnet.clock.advance(3600)
    st = state(pnet)
    with pnet.database.transaction() as s:
        assert proofs.expire(s, now=pnet.clock.now(), policy=st.proof_policy) == 1


def test_cohort_shares_owner_host_or_network(pnet: Net) -> None:
    owner, other, stranger = pnet.register(), pnet.register(), pnet.register()
    mine = pnet.enroll(owner, **CPU_DEV, host="host-one-aaaaaaaaaaaa")
    same_host = pnet.enroll(other, **CPU_DEV, host="host-one-aaaaaaaaaaaa")
    far = pnet.enroll(stranger, **CPU_DEV, host="host-two-bbbbbbbbbbbb")
    with pnet.database.read() as s:
        me = s.execute(select(Device).where(Device.public_id == mine[0].device_id)).scalar_one()
        members = {d.public_id for d in proof_schedule.cohort(s, me)}
    assert mine[0].device_id in members and same_host[0].device_id in members
    # TestClient enrolls everyone from one (non-IP) address: no network grouping here.
    assert far[0].device_id not in members


def test_rollcall_challenges_a_sample_at_one_moment(pnet: Net) -> None:
    devices = []
    for i in range(6):
        devices += pnet.enroll(pnet.register(), **CPU_DEV, host=f"host-{i:02d}-cccccccccccc")
    schedule(pnet)
    prover = CpuProver()
    for d in devices:
        assert answer_next(worker(pnet, d), prover, report_for(d)).passed  # type: ignore[union-attr]
    st = state(pnet)
    with pnet.database.transaction() as s:
        n = proof_schedule.rollcall(
            s, fraction=0.5, now=pnet.clock.now(), catalog=st.catalog, policy=st.proof_policy
        )
    assert n == 3
    with pnet.database.read() as s:
        rows = (
            s.execute(select(ChallengeRow).where(ChallengeRow.kind == "rollcall")).scalars().all()
        )
    assert len(rows) == 3 and len({r.batch for r in rows}) == 1
    assert len({r.issued_at for r in rows}) == 1


def test_cpu_dev_is_never_verified_outside_development(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    settings = make_settings(
        database_url, background_jobs=False, environment="production", argon2_memory_kib=19456
    )
    with TestClient(create_app(settings, database=database, clock=clock)) as client:
        net = Net(client, clock, database, settings)
        [dev] = net.enroll(net.register(), **CPU_DEV)
        schedule(net)
        outcome = answer_next(worker(net, dev), CpuProver(), report_for(dev))
    assert outcome is not None and not outcome.passed and outcome.reason == "not_eligible"
    assert status(net, dev) == "pending"


def test_attestation_is_a_higher_tier_bound_to_the_challenge(pnet: Net) -> None:
    from gpunet.server.services.attestation import attestation_nonce

    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    schedule(pnet)
    client, prover = worker(pnet, dev), CpuProver()
    challenge = client.fetch_challenge()
    assert challenge is not None
    commitment = prover.commit(challenge)
    stale = b"cc-report:" + attestation_nonce(b"\x00" * 32)
    with pytest.raises(Exception, match="attestation refused"):
        client.commit(commitment, report_for(dev), attestation=stale)
    good = b"cc-report:" + attestation_nonce(challenge.seed)
    answer = client.commit(commitment, report_for(dev), attestation=good)
    assert not isinstance(answer, VerdictMessage)
    assert client.open(prover.open(answer)).passed is True
    with pnet.database.read() as s:
        device = s.execute(select(Device)).scalar_one()
    assert device.attestation_ueid == f"ueid-{dev.claim.gpu_uuid}"
    assert device.attested_at is not None


def test_a_device_cannot_answer_another_devices_challenge(pnet: Net) -> None:
    a = pnet.enroll(pnet.register(), **CPU_DEV, host="host-aa-dddddddddddd")[0]
    b = pnet.enroll(pnet.register(), **CPU_DEV, host="host-bb-dddddddddddd")[0]
    schedule(pnet)
    challenge = worker(pnet, a).fetch_challenge()
    assert challenge is not None
    commitment = CpuProver().commit(challenge)
    body = json.dumps(
        {
            "commitment": json.loads(commitment.model_dump_json()),
            "hardware": json.loads(report_for(b).model_dump_json()),
        }
    )
    r = pnet.signed(
        b, "POST", f"/api/v1/worker/challenge/{challenge.id}/commitment", json.loads(body)
    )
    assert r.status_code == 404


def test_scheduler_pass_expires_issues_and_calls_the_roll(pnet: Net) -> None:
    from gpunet.server.background.proofs import ProofRounds

    st = state(pnet)
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    # A seeded draw: its first roll-call is ~9 minutes away, outside the quiet window
    # before it (with a random one, ~1% of runs drew a roll-call within it: nothing issued).
    rounds = ProofRounds(
        pnet.database, pnet.clock, st.catalog, st.proof_policy, rollcall_mean_s=3600,
        rng=random.Random(1),
    )
    assert rounds.run_once() == (0, 1, 0)  # enrollment challenge; the roll-call time drawn
    assert rounds.next_rollcall_at is not None and rounds.next_rollcall_at >= pnet.clock.now()
    assert answer_next(worker(pnet, dev), CpuProver(), report_for(dev)).passed  # type: ignore[union-attr]
    pnet.clock.advance(1)
    rounds.next_rollcall_at = pnet.clock.now()  # its (random) time has come
    settled, issued, called = rounds.run_once()
    assert (settled, issued, called) == (0, 0, 1)  # the roll-call reaches the verified device
    assert worker(pnet, dev).fetch_challenge() is not None
    pnet.clock.advance(60)
    assert rounds.run_once()[0] == 1  # received and never answered: settled as a failure
    assert status(pnet, dev) == "suspect"


def test_a_commitment_without_openings_expires_after_its_own_budget(pnet: Net) -> None:
    [dev] = pnet.enroll(pnet.register(), **CPU_DEV)
    schedule(pnet)
    client = worker(pnet, dev)
    challenge = client.fetch_challenge()
    assert challenge is not None
    answer = client.commit(CpuProver().commit(challenge), report_for(dev))
    assert not isinstance(answer, VerdictMessage)
    st = state(pnet)
    with pnet.database.transaction() as s:
        assert proofs.expire(s, now=pnet.clock.now(), policy=st.proof_policy) == 0
    pnet.clock.advance(challenge.open_budget_s + st.proof_policy.delivery_allowance_s + 1)
    with pnet.database.transaction() as s:
        assert proofs.expire(s, now=pnet.clock.now(), policy=st.proof_policy) == 1
    with pnet.database.read() as s:
        row = s.execute(select(ChallengeRow)).scalar_one()
    assert row.outcome == "failed" and "openings" in (row.detail or "")
