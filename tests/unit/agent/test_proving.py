"""The agent reads a verdict one way, whichever transport brought it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpunet.agent.proving import ProofOutcome, outcome_of
from gpunet.core.pog import Failure, FailureReason, Success
from gpunet.core.pog.messages import VerdictMessage

CID = "pog_" + "a" * 24


def test_http_body_and_control_frame_read_the_same() -> None:
    message = VerdictMessage.of(CID, Failure(FailureReason.TOO_SLOW, "late"), "suspect")
    frame = {"t": "verdict", "device": "dev_a", **message.model_dump()}
    expected = ProofOutcome(CID, False, "too_slow", "suspect")
    assert outcome_of(message) == expected
    assert outcome_of(VerdictMessage.model_validate_json(message.model_dump_json())) == expected
    assert outcome_of(frame) == expected
    assert outcome_of(VerdictMessage.of(CID, Success(), "verified")) == ProofOutcome(
        CID, True, None, "verified"
    )


def test_a_verdict_frame_missing_its_fields_is_refused() -> None:
    with pytest.raises(ValidationError):
        outcome_of({"t": "verdict", "device": "dev_a", "passed": "yes"})
