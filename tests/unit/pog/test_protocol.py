"""Shapes, binding and cheap rejections of the exchange."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from tests.unit.pog.conftest import exchange, make_challenge, seed_of

from gpunet.agent.provers.cpu import CpuProver
from gpunet.core.pog import (
    Challenge,
    ChallengeParams,
    Commitment,
    Failure,
    FailureReason,
    OpeningResponse,
    plan_openings,
)


@pytest.fixture(scope="module")
def honest(dev_profile):
    return exchange(CpuProver(), make_challenge(dev_profile, "protocol"))


def test_messages_round_trip_through_json(honest):
    for msg in (honest.challenge, honest.commitment, honest.plan.request(), honest.response):
        again = type(msg).model_validate_json(msg.model_dump_json())
        assert again == msg


def test_messages_reject_unknown_fields(honest):
    data = json.loads(honest.commitment.model_dump_json())
    data["extra"] = 1
    with pytest.raises(ValidationError):
        Commitment.model_validate(data)


def test_messages_bound_sizes(honest):
    data = json.loads(honest.challenge.model_dump_json())
    data["params"]["n"] = 1 << 20
    with pytest.raises(ValidationError):
        Challenge.model_validate(data)
    with pytest.raises(ValidationError):
        ChallengeParams(n=100, steps=2, refs=0, read_steps=0, digest_width=32, rows_per_check=2,
                        checked_steps=2)
    with pytest.raises(ValidationError):
        OpeningResponse(challenge_id=honest.challenge.id, rows=honest.response.rows * 2)


def test_wrong_root_count_is_malformed(honest):
    c = honest.commitment.model_copy(update={"roots": honest.commitment.roots[:-1]})
    from gpunet.core.pog import verify

    v = verify(honest.challenge, c, honest.plan, honest.response,
               commit_elapsed_s=0, open_elapsed_s=0)
    assert isinstance(v, Failure) and v.reason is FailureReason.MALFORMED


def test_missing_and_extra_rows(honest):
    from gpunet.core.pog import verify

    fewer = honest.response.model_copy(update={"rows": honest.response.rows[1:]})
    v = verify(honest.challenge, honest.commitment, honest.plan, fewer,
               commit_elapsed_s=0, open_elapsed_s=0)
    assert isinstance(v, Failure) and v.reason is FailureReason.MISSING_ROWS
    other_plan = plan_openings(honest.challenge, seed_of("another secret"), honest.commitment)
    v = verify(honest.challenge, honest.commitment, other_plan, honest.response,
               commit_elapsed_s=0, open_elapsed_s=0)
    assert isinstance(v, Failure)
    assert v.reason in (FailureReason.MISSING_ROWS, FailureReason.MALFORMED)


def test_tampered_row_is_off_its_root(honest):
    from gpunet.core.pog import verify

    rows = list(honest.response.rows)
    bad = bytearray(rows[3].data)
    bad[5] ^= 1
    rows[3] = rows[3].model_copy(update={"data": bytes(bad)})
    r = honest.response.model_copy(update={"rows": tuple(rows)})
    v = verify(honest.challenge, honest.commitment, honest.plan, r,
               commit_elapsed_s=0, open_elapsed_s=0)
    assert isinstance(v, Failure) and v.reason is FailureReason.COMMITMENT_MISMATCH


def test_short_row_is_malformed(honest):
    from gpunet.core.pog import verify

    rows = list(honest.response.rows)
    rows[0] = rows[0].model_copy(update={"data": rows[0].data[:-8]})
    r = honest.response.model_copy(update={"rows": tuple(rows)})
    v = verify(honest.challenge, honest.commitment, honest.plan, r,
               commit_elapsed_s=0, open_elapsed_s=0)
    assert isinstance(v, Failure) and v.reason is FailureReason.MALFORMED


def test_plan_is_reproducible_from_the_secret_and_checks_step_zero(honest):
    ch, c = honest.challenge, honest.commitment
    assert plan_openings(ch, seed_of("x"), c) == plan_openings(ch, seed_of("x"), c)
    assert plan_openings(ch, seed_of("x"), c) != plan_openings(ch, seed_of("y"), c)
    assert plan_openings(ch, seed_of("x"), c).checks[0].step == 0


def test_reference_rows_follow_the_committed_roots(honest):
    """The rows each check reads come from the roots: other roots, other references."""
    ch, c = honest.challenge, honest.commitment
    other = c.model_copy(update={"roots": (c.roots[0], *(bytes(32),) * (len(c.roots) - 1))})
    mine, theirs = plan_openings(ch, seed_of("x"), c), plan_openings(ch, seed_of("x"), other)
    assert [k.outputs for k in mine.checks] == [k.outputs for k in theirs.checks]
    assert [k.refs for k in mine.checks[1:]] != [k.refs for k in theirs.checks[1:]]


def test_prover_refuses_to_open_for_another_challenge(honest, dev_profile):
    from gpunet.agent.provers.base import ProverError

    prover = CpuProver()
    prover.commit(make_challenge(dev_profile, "p1"))
    with pytest.raises(ProverError):
        prover.open(honest.plan.request())


def test_whole_exchange_through_json(dev_profile):
    """Each side sees only the JSON the other sent."""
    from gpunet.core.pog import OpeningRequest, Success, verify

    challenge = make_challenge(dev_profile, "json")
    prover = CpuProver()
    commitment_json = prover.commit(Challenge.model_validate_json(challenge.model_dump_json()))
    commitment = Commitment.model_validate_json(commitment_json.model_dump_json())
    plan = plan_openings(challenge, seed_of("json-secret"), commitment)
    request = OpeningRequest.model_validate_json(plan.request().model_dump_json())
    response = OpeningResponse.model_validate_json(prover.open(request).model_dump_json())
    v = verify(challenge, commitment, plan, response, commit_elapsed_s=0.1, open_elapsed_s=0.1)
    assert isinstance(v, Success)


def test_core_pog_imports_no_torch_web_or_db():
    import subprocess
    import sys

    code = (
        "import sys, gpunet.core.pog, gpunet.core.pog.verify, gpunet.core.pog.security\n"
        "bad = [m for m in ('torch', 'fastapi', 'sqlalchemy', 'httpx', 'gpunet.agent',"
        " 'gpunet.server') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


class TestRollCall:
    """Devices challenged together share B and D (one roll-call seed), never X_0."""

    def challenges(self, profile):
        shared = seed_of("roll-call")
        return [
            make_challenge(profile, f"rc-{i}").model_copy(update={"roll_call_seed": shared})
            for i in range(3)
        ]

    def test_each_device_verifies_with_one_shared_derivation(self, dev_profile):
        from gpunet.core.pog import Success, verify
        from gpunet.core.pog.derive import Derivation

        chs = self.challenges(dev_profile)
        base = Derivation.for_challenge(chs[0])
        for ch in chs:
            ex = exchange(CpuProver(), ch)
            d = base.with_seed(ch.seed)
            assert d.dt is base.dt  # derived once for the roll-call
            v = verify(ch, ex.commitment, ex.plan, ex.response, commit_elapsed_s=0,
                       open_elapsed_s=0, derivation=d)
            assert isinstance(v, Success)

    def test_shared_b_and_d_but_own_x0(self, dev_profile):
        from gpunet.core.pog.derive import ChallengeKeys

        a, b, _ = self.challenges(dev_profile)
        ka = ChallengeKeys.from_seed(a.seed, a.roll_call_seed)
        kb = ChallengeKeys.from_seed(b.seed, b.roll_call_seed)
        assert (ka.b, ka.d) == (kb.b, kb.d) and ka.x0 != kb.x0

    def test_one_computation_still_cannot_serve_two(self, dev_profile):
        from tests.unit.pog.cheaters import ReplayProver

        from gpunet.core.pog import Failure, FailureReason

        a, b, _ = self.challenges(dev_profile)
        backend = CpuProver()
        assert exchange(backend, a).verdict()
        v = exchange(ReplayProver(backend), b).verdict()
        assert isinstance(v, Failure) and v.reason is FailureReason.WRONG_INITIAL

    def test_a_derivation_of_another_challenge_is_refused(self, dev_profile):
        from gpunet.core.pog import verify
        from gpunet.core.pog.derive import Derivation

        a, b, _ = self.challenges(dev_profile)
        ex = exchange(CpuProver(), a)
        with pytest.raises(ValueError):
            verify(a, ex.commitment, ex.plan, ex.response, commit_elapsed_s=0,
                   open_elapsed_s=0, derivation=Derivation.for_challenge(b))
