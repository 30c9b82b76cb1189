"""The agent's client for the coordinator's worker API: every request signed by the
device's own key (gpunet.core.signing), never a shared token."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from gpunet.core.pog import Challenge, Commitment, HardwareReport, OpeningRequest, OpeningResponse
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

    def request(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        auth = self._signer.authorization(method, path, body, int(self._clock()))
        headers = {"Authorization": auth}
        if body:
            headers["Content-Type"] = "application/json"
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
    ) -> OpeningRequest | dict[str, Any]:
        """The rows to open, or the verdict if the commitment already failed."""
        body: dict[str, Any] = {
            "commitment": json.loads(commitment.model_dump_json()),
            "hardware": json.loads(hardware.model_dump_json()),
        }
        if attestation is not None:
            body["attestation"] = base64.b64encode(attestation).decode()
        data = self._ok(
            self.request(
                "POST",
                f"/api/v1/worker/challenge/{commitment.challenge_id}/commitment",
                json.dumps(body).encode(),
            )
        )
        if data["openings"] is None:
            return dict(data["verdict"])
        return OpeningRequest.model_validate(data["openings"])

    def open(self, response: OpeningResponse) -> dict[str, Any]:
        data = self._ok(
            self.request(
                "POST",
                f"/api/v1/worker/challenge/{response.challenge_id}/openings",
                response.model_dump_json().encode(),
            )
        )
        return dict(data)
