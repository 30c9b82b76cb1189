"""The proof-of-GPU exchange, signed by the device being proven (see services.proofs).

Bodies are parsed here from the raw, signed bytes with the core models' own JSON rules
(bytes travel as base64), and the OpenAPI document carries those models' schemas.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from gpunet.core.models import parse_json
from gpunet.core.pog import (
    Challenge,
    Commitment,
    Failure,
    HardwareReport,
    OpeningRequest,
    OpeningResponse,
    Verdict,
)
from gpunet.server.api.deps import DeviceCtx, State, raw_body
from gpunet.server.context import Ctx
from gpunet.server.db.tables import Device
from gpunet.server.services import proofs

router = APIRouter(prefix="/api/v1/worker/challenge", tags=["proof of GPU"])
ChallengeIdParam = Annotated[str, Path(pattern=r"^pog_[a-z2-7]{24}$")]
Body = Annotated[bytes, Depends(raw_body)]


class CommitmentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, val_json_bytes="base64", ser_json_bytes="base64"
    )

    commitment: Commitment
    hardware: HardwareReport
    # Optional confidential-computing report over the challenge's attestation nonce.
    attestation: bytes | None = None


class VerdictOut(BaseModel):
    passed: bool
    reason: str | None
    detail: str | None
    status: str


class CommitmentOut(BaseModel):
    openings: OpeningRequest | None
    verdict: VerdictOut | None


def _pk(ctx: Ctx) -> int:
    assert ctx.actor.device_id is not None  # DeviceCtx guarantees a device principal
    return ctx.actor.device_id


def _verdict(verdict: Verdict, device: Device) -> VerdictOut:
    if isinstance(verdict, Failure):
        return VerdictOut(
            passed=False, reason=verdict.reason.value, detail=verdict.detail, status=device.status
        )
    return VerdictOut(passed=True, reason=None, detail=None, status=device.status)


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(mode="validation")}},
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
    response_model=CommitmentOut,
    openapi_extra=_body_schema(CommitmentIn),
)
def commit(challenge_id: ChallengeIdParam, body: Body, ctx: DeviceCtx, st: State) -> Response:
    data = parse_json(CommitmentIn, body)
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
        return _json(CommitmentOut(openings=None, verdict=_verdict(result, device)))
    return _json(CommitmentOut(openings=result, verdict=None))


@router.post(
    "/{challenge_id}/openings",
    response_model=VerdictOut,
    openapi_extra=_body_schema(OpeningResponse),
)
def open_rows(
    challenge_id: ChallengeIdParam, body: Body, ctx: DeviceCtx, st: State
) -> JSONResponse | Response:
    response = parse_json(OpeningResponse, body)
    device = proofs.speaking_device(ctx.session, _pk(ctx), ctx.now)
    verdict = proofs.accept_openings(
        ctx.session,
        device,
        challenge_id,
        response,
        now=ctx.now,
        policy=st.proof_policy,
        catalog=st.catalog,
    )
    return _json(_verdict(verdict, device))
