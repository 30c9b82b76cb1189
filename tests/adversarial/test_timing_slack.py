"""Finding 5, "timing slack": the opening window (sized for a 10 Mbit/s uplink) is now
longer than every GPU commit budget. A device that commits in time without having done
the work, and then spends the long window computing the real chain, gains nothing: the
rows it opens are the real ones, but the roots it committed to are not theirs.
"""

from __future__ import annotations

import numpy as np

from gpunet.agent.provers.cpu import CpuProver, run_chain
from gpunet.core.clock import FrozenClock
from gpunet.core.pog import Challenge, Failure, FailureReason, default_catalog
from gpunet.core.pog.derive import Derivation
from gpunet.core.pog.rowtree import StepTree
from gpunet.server.db.engine import Database
from tests.adversarial import world
from tests.adversarial.world import CPU_DEV


class LateWorkProver(CpuProver):
    """Commits at once to trees over random digests (the work not done), then computes
    the honest chain when the openings are asked for and opens its rows."""

    name = "late-work"

    def _run(self, challenge: Challenge) -> list[StepTree]:
        self._challenge_for_later = challenge
        rng = np.random.default_rng(5)
        p = challenge.params
        return [
            StepTree(rng.integers(0, 256, (p.n, 16), dtype=np.uint8)) for _ in range(p.steps + 1)
        ]

    def _row(self, step: int, index: int) -> bytes:
        if not len(self._x):
            self._x, _ = run_chain(Derivation.for_challenge(self._challenge_for_later))
        return bytes(self._x[step][index].tobytes())


def test_every_gpu_window_is_longer_than_its_commit_budget():
    """The premise: a window this long would matter if openings could still change."""
    for m in default_catalog().models:
        if not m.dev_only:
            assert m.budget.open_budget_s > m.budget.budget_s


def test_work_done_during_the_opening_window_does_not_fit_the_committed_roots(
    database: Database, database_url: str, clock: FrozenClock
) -> None:
    with world.coordinator(database, database_url, clock) as net:
        [dev] = net.enroll(net.register(), **CPU_DEV)
        world.rounds(net).run_once()
        challenge = world.fetch(net, dev)
        assert challenge is not None
        prover = LateWorkProver()
        answer = world.commit(net, dev, challenge, prover.commit(challenge))
        assert not isinstance(answer, Failure)  # in time: the roots are only hashes
        clock.advance(challenge.open_budget_s * 0.9)  # the whole window, computing
        verdict = world.finish(net, dev, prover, answer)
    assert isinstance(verdict, Failure)
    assert verdict.reason is FailureReason.COMMITMENT_MISMATCH, verdict
