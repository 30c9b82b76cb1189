"""A coordinator on each backend, driven through its own services by honest devices and
by cheaters, on a fake clock.

Proofs go through `services.proofs` (deliver, accept_commitment, accept_openings) with
core model objects, answered by the real CPU prover: the wire format of openings may
change without these tests noticing. Heartbeats go through the HTTP route (the one
place an HTTP device earns uptime), and the scheduler is the real `ProofRounds`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.clock import FrozenClock
from gpunet.core.pog import (
    Challenge,
    Commitment,
    Failure,
    HardwareReport,
    OpeningRequest,
    ReportedGpu,
    Verdict,
)
from gpunet.server.api.deps import AppState
from gpunet.server.app import create_app
from gpunet.server.background.proofs import ProofRounds
from gpunet.server.db.engine import Database
from gpunet.server.db.tables import Challenge as ChallengeRow
from gpunet.server.db.tables import Device
from gpunet.server.services import proofs
from tests.integration.conftest import DeviceHandle, Net, make_settings

CPU_DEV = {
    "vendor": "cpu",
    "model": "cpu-dev",
    "vram_mib": 1024,
    "pci_bus_id": "none",
    "driver_version": "0.1.0",
}


@contextmanager
def coordinator(
    database: Database, database_url: str, clock: FrozenClock, **overrides: Any
) -> Iterator[Net]:
    settings = make_settings(database_url, **overrides)
    with TestClient(create_app(settings, database=database, clock=clock)) as client:
        yield Net(client, clock, database, settings)


def state(net: Net) -> AppState:
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    return st


class FixedGaps:
    """Stands in for the scheduler's random source: roll-calls come after these gaps
    (seconds), then never again."""

    def __init__(self, gaps: Sequence[float]) -> None:
        self._gaps = list(gaps)

    def expovariate(self, _rate: float) -> float:
        return self._gaps.pop(0) if self._gaps else 1e8


def rounds(net: Net, rollcall_gaps: Sequence[float] = ()) -> ProofRounds:
    st = state(net)
    return ProofRounds(
        net.database,
        net.clock,
        st.catalog,
        st.proof_policy,
        rollcall_mean_s=3600,
        rng=FixedGaps(rollcall_gaps),  # type: ignore[arg-type]
    )


def pk(net: Net, dev: DeviceHandle) -> int:
    with net.database.read() as s:
        q = select(Device.id).where(Device.public_id == dev.device_id)
        return int(s.execute(q).scalar_one())


def device_row(net: Net, dev: DeviceHandle) -> Device:
    with net.database.read() as s:
        row = s.execute(select(Device).where(Device.public_id == dev.device_id)).scalar_one()
        s.expunge(row)
        return row


def report_for(dev: DeviceHandle) -> HardwareReport:
    c = dev.claim
    gpu = ReportedGpu(
        gpu_uuid=c.gpu_uuid, pci_bus_id=c.pci_bus_id, model=c.model, vram_mib=c.vram_mib
    )
    return HardwareReport(vendor=c.vendor, device_uuid=c.gpu_uuid, devices=(gpu,))


def fetch(net: Net, dev: DeviceHandle) -> Challenge | None:
    """The device asks for its challenge (services.proofs.deliver), now."""
    st = state(net)
    with net.database.transaction() as s:
        now = net.clock.now()
        device = proofs.speaking_device(s, pk(net, dev), now)
        return proofs.deliver(s, device, now=now, policy=st.proof_policy)


def commit(
    net: Net, dev: DeviceHandle, challenge: Challenge, commitment: Commitment
) -> OpeningRequest | Failure:
    st = state(net)
    with net.database.transaction() as s:
        now = net.clock.now()
        device = proofs.speaking_device(s, pk(net, dev), now)
        return proofs.accept_commitment(
            s, device, challenge.id, commitment, report_for(dev), now=now, policy=st.proof_policy
        )


def finish(net: Net, dev: DeviceHandle, prover: CpuProver, request: OpeningRequest) -> Verdict:
    st = state(net)
    response = prover.open(request)
    with net.database.transaction() as s:
        now = net.clock.now()
        device = proofs.speaking_device(s, pk(net, dev), now)
        return proofs.accept_openings(
            s,
            device,
            request.challenge_id,
            response,
            now=now,
            policy=st.proof_policy,
            catalog=st.catalog,
        )


def prove(net: Net, dev: DeviceHandle, challenge: Challenge, *, work_s: float = 0.0) -> Verdict:
    """Run the real prover on `challenge`, taking `work_s` of (fake) time, and answer."""
    prover = CpuProver()
    commitment = prover.commit(challenge)
    net.clock.advance(work_s)
    answer = commit(net, dev, challenge, commitment)
    if isinstance(answer, Failure):
        return answer
    return finish(net, dev, prover, answer)


def answer_if_asked(net: Net, dev: DeviceHandle) -> Verdict | None:
    """An honest device: fetch, prove at once, answer."""
    challenge = fetch(net, dev)
    return None if challenge is None else prove(net, dev, challenge)


def heartbeat(net: Net, dev: DeviceHandle) -> dict[str, Any]:
    r = net.signed(dev, "POST", "/api/v1/worker/heartbeat", {})
    assert r.status_code in (200, 403), r.text
    return dict(r.json()) if r.status_code == 200 else {"counted": False, "refused": True}


def challenges(net: Net, dev: DeviceHandle | None = None) -> list[ChallengeRow]:
    with net.database.read() as s:
        q = select(ChallengeRow).order_by(ChallengeRow.issued_at, ChallengeRow.id)
        if dev is not None:
            q = q.join(Device, Device.id == ChallengeRow.device_id).where(
                Device.public_id == dev.device_id
            )
        rows = list(s.execute(q).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def challenge_count(net: Net) -> int:
    with net.database.read() as s:
        return int(s.execute(select(func.count()).select_from(ChallengeRow)).scalar_one())


def at_least(base: dt.datetime, seconds: float) -> dt.datetime:
    return base + dt.timedelta(seconds=seconds)


def answer_waiting(net: Net, devices: Sequence[DeviceHandle]) -> list[Verdict]:
    """Every honest device in `devices` with an open challenge answers it now (one read
    to find them, so a long simulation stays quick)."""
    with net.database.read() as s:
        waiting = set(
            s.execute(
                select(Device.public_id)
                .join(ChallengeRow, ChallengeRow.device_id == Device.id)
                .where(ChallengeRow.outcome == proofs.ChallengeOutcome.OPEN.value)
            ).scalars()
        )
    verdicts = []
    for d in devices:
        if d.device_id in waiting:
            verdict = answer_if_asked(net, d)
            if verdict is not None:
                verdicts.append(verdict)
    return verdicts
