"""The proof-of-GPU exchange, signed by the device being proven (see services.proofs).

Bodies are parsed here from the raw, signed bytes with the core models' own rules: the
commitment as JSON (bytes as base64), the openings in their binary layout
(core.pog.wire), megabytes at the real profiles' sizes. The OpenAPI document carries
the core models' schemas, and both transports answer with the same messages
(core.pog.messages).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel

from gpunet.core.models import parse_json
from gpunet.core.pog import Challenge, Failure
from gpunet.core.pog.messages import CommitmentAnswer, CommitmentEnvelope, VerdictMessage
from gpunet.core.pog.wire import CONTENT_TYPE
from gpunet.server.api.deps import DeviceCtx, State, raw_body
from gpunet.server.context import Ctx
from gpunet.server.services import proofs
from gpunet.server.state import AppState

PREFIX = "/api/v1/worker/challenge"
router = APIRouter(prefix=PREFIX, tags=["proof of GPU"])
ChallengeIdParam = Annotated[str, Path(pattern=r"^pog_[a-z2-7]{24}$")]
Body = Annotated[bytes, Depends(raw_body)]
# The one route whose body may exceed the global limit (server.middleware).
OPENINGS_PATH = re.compile("^" + re.escape(PREFIX) + r"/pog_[a-z2-7]{24}/openings$")


def body_limits(state: AppState) -> dict[re.Pattern[str], int]:
    """Per-route body limits for the middleware: openings up to the catalog's largest."""
    return {OPENINGS_PATH: state.openings_limit}


def _pk(ctx: Ctx) -> int:
    assert ctx.actor.device_id is not None  # DeviceCtx guarantees a device principal
    return ctx.actor.device_id


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(mode="validation")}},
        }
    }


_OPENINGS_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "The opened rows in the binary layout of gpunet.core.pog.wire (magic GPO2, "
            "then each row raw with its chunk of row digests and Merkle path)."
        ),
        "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("", responses={200: {"model": Challenge}, 204: {"description": "nothing to prove"}})
def next_challenge(ctx: DeviceCtx, st: State) -> Response:
    """The device's outstanding challenge. Its clock started when it was issued: fetching
    late only leaves less of the budget."""
    device = proofs.speaking_device(ctx.session, _pk(ctx), ctx.now)
    challenge = proofs.deliver(ctx.session, device, now=ctx.now, policy=st.proof_policy)
    if challenge is None:
        return Response(status_code=204)
    return _json(challenge)


@router.post(
    "/{challenge_id}/commitment",
    response_model=CommitmentAnswer,
    openapi_extra=_body_schema(CommitmentEnvelope),
)
def commit(challenge_id: ChallengeIdParam, body: Body, ctx: DeviceCtx, st: State) -> Response:
    data = parse_json(CommitmentEnvelope, body)
    device = proofs.speaking_device(ctx.session, _pk(ctx), ctx.now)
    result = proofs.accept_commitment(
        ctx.session,
        device,
        challenge_id,
        data.commitment,
        data.hardware,
        now=ctx.now,
        policy=st.proof_policy,
        attestation=data.attestation,
        verifier=st.attestation,
    )
    if isinstance(result, Failure):
        verdict = VerdictMessage.of(challenge_id, result, device.status)
        return _json(CommitmentAnswer(verdict=verdict))
    return _json(CommitmentAnswer(openings=result))


@router.post(
    "/{challenge_id}/openings",
    response_model=VerdictMessage,
    openapi_extra=_OPENINGS_BODY,
)
def open_rows(challenge_id: ChallengeIdParam, body: Body, ctx: DeviceCtx, st: State) -> Response:
    """The opened rows, as bytes. The body may be as large as the catalog's largest
    opening (megabytes); the coordinator times its arrival against the challenge's
    opening budget, sized for a 10 Mbit/s uplink."""
    device = proofs.speaking_device(ctx.session, _pk(ctx), ctx.now)
    response = proofs.read_openings(ctx.session, device, challenge_id, body)
    verdict = proofs.accept_openings(
        ctx.session,
        device,
        challenge_id,
        response,
        now=ctx.now,
        policy=st.proof_policy,
        catalog=st.catalog,
    )
    return _json(VerdictMessage.of(challenge_id, verdict, device.status))
