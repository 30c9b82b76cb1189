"""The agent's client for the coordinator's worker API: every request signed by the
device's own key (gpunet.core.signing), never a shared token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from gpunet.agent.keystore import LiveSigner
from gpunet.core.pog import Challenge, Commitment, HardwareReport, OpeningRequest, OpeningResponse
from gpunet.core.pog.messages import CommitmentAnswer, CommitmentEnvelope, VerdictMessage
from gpunet.core.pog.wire import CONTENT_TYPE, encode_openings
from gpunet.core.signing import DeviceSigner


class CoordinatorError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"coordinator answered {status}: {message}")
        self.status = status


class WorkerClient:
    def __init__(
        self, http: httpx.Client, signer: DeviceSigner, clock: Callable[[], float] = time.time
    ) -> None:
        self._http = http
        self._signer = signer
        self._clock = clock

    @property
    def device_id(self) -> str:
        return self._signer.device_id

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        stream: bool = False,
    ) -> httpx.Response:
        """A request signed over its whole body. With `stream`, the body goes out in
        pieces under its declared length (no second copy of megabytes of openings).

        A 401 with a rotation pending in the keystore (a `LiveSigner`) is retried once
        with the pending key: a rotation interrupted after the coordinator accepted the
        new key leaves the coordinator knowing only that key. If the coordinator accepts
        it, the keystore finishes the rotation, so the device heals without its owner.
        """
        response = self._send(self._signer, method, path, body, content_type, stream)
        if response.status_code != 401 or not isinstance(self._signer, LiveSigner):
            return response
        pending = self._signer.pending()
        if pending is None:
            return response
        retried = self._send(pending, method, path, body, content_type, stream)
        # Only a success proves the signature was accepted: a 429 or 5xx says nothing,
        # and the next request simply tries again.
        if retried.status_code < 400 and self._signer.adopt(pending):
            self.recovered_rotation = True
            return retried
        return response if retried.status_code == 401 else retried

    recovered_rotation = False  # set once this client finished an interrupted rotation

    def _send(
        self,
        signer: DeviceSigner,
        method: str,
        path: str,
        body: bytes,
        content_type: str,
        stream: bool,
    ) -> httpx.Response:
        auth = signer.authorization(method, path, body, int(self._clock()))
        headers = {"Authorization": auth}
        if body:
            headers["Content-Type"] = content_type
        if stream:
            headers["Content-Length"] = str(len(body))
            return self._http.request(method, path, content=_pieces(body), headers=headers)
        return self._http.request(method, path, content=body, headers=headers)

    def raise_for_error(self, response: httpx.Response) -> Any:
        """The response's JSON, or CoordinatorError with the coordinator's own message."""
        return self._ok(response)

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise CoordinatorError(response.status_code, message)
        return response.json() if response.content else None

    def whoami(self) -> dict[str, Any]:
        return dict(self._ok(self.request("GET", "/api/v1/worker/device")))

    def fetch_challenge(self) -> Challenge | None:
        r = self.request("GET", "/api/v1/worker/challenge")
        if r.status_code == 204:
            return None
        self._ok(r)
        return Challenge.model_validate_json(r.content)

    def commit(
        self, commitment: Commitment, hardware: HardwareReport, attestation: bytes | None = None
    ) -> OpeningRequest | VerdictMessage:
        """The rows to open, or the verdict if the commitment already failed."""
        envelope = CommitmentEnvelope(
            commitment=commitment, hardware=hardware, attestation=attestation
        )
        path = f"/api/v1/worker/challenge/{commitment.challenge_id}/commitment"
        r = self.request("POST", path, envelope.model_dump_json().encode())
        self._ok(r)
        answer = CommitmentAnswer.model_validate_json(r.content)
        if answer.openings is not None:
            return answer.openings
        if answer.verdict is None:
            raise CoordinatorError(r.status_code, "neither rows to open nor a verdict")
        return answer.verdict

    def open(self, response: OpeningResponse) -> VerdictMessage:
        """Send the opened rows in their binary layout (core.pog.wire) and get the verdict."""
        path = f"/api/v1/worker/challenge/{response.challenge_id}/openings"
        body = encode_openings(response)
        r = self.request("POST", path, body, content_type=CONTENT_TYPE, stream=True)
        self._ok(r)
        return VerdictMessage.model_validate_json(r.content)


def _pieces(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(body), size):
        yield bytes(view[start : start + size])
