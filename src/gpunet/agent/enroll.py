"""Enrolling this host's GPUs: one fresh Ed25519 key per GPU, one call with the owner's
one-time code, and the device ids the coordinator hands back kept beside the keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from gpunet.agent.client import CoordinatorError
from gpunet.agent.discovery import DiscoveredGpu
from gpunet.agent.keystore import KeyExists, Keystore
from gpunet.core import signing


@dataclass(frozen=True, slots=True)
class EnrollResult:
    enrolled: list[tuple[str, str]]  # (gpu uuid, device id)
    already: list[tuple[str, str]]
    control: str | None = None  # the control channel's HOST:PORT, when the coordinator said


def enroll_host(
    http: httpx.Client,
    keystore: Keystore,
    *,
    code: str,
    gpus: Sequence[DiscoveredGpu],
    coordinator_url: str,
    progress: Callable[[str], None] = lambda _: None,
    replaces: Mapping[str, str] | None = None,
) -> EnrollResult:
    """`replaces` maps a GPU UUID to the owner's device it takes over (its keys were
    lost): the coordinator retires that device and moves the GPU to the new key."""
    replaces = replaces or {}
    already = []
    todo = []
    for gpu in gpus:
        try:
            stored = keystore.device(gpu.gpu_uuid)
        except Exception:
            stored = None
        if stored is not None and stored.enrolled:
            already.append((gpu.gpu_uuid, str(stored.device_id)))
        else:
            todo.append(gpu)
    if not todo:
        return EnrollResult([], already)
    digest = hashlib.sha256(code.encode()).digest()
    devices = []
    for gpu in todo:
        try:
            key = keystore.create(gpu.gpu_uuid)
            progress(f"made a new key for {gpu.claim.model} {gpu.gpu_uuid}")
        except KeyExists:
            key = keystore.load(gpu.gpu_uuid)  # an earlier enrollment that did not finish
        public = signing.public_key_text(key.public_key())
        claim_json = gpu.claim.model_dump_json().encode()
        proof = key.sign(
            signing.enrollment_message(code_digest=digest, public_key=public, claim_json=claim_json)
        )
        entry = {
            "public_key": public,
            "hardware": json.loads(claim_json),
            "proof": signing.b64u(proof),
        }
        if gpu.gpu_uuid in replaces:
            entry["replaces"] = replaces[gpu.gpu_uuid]
            progress(f"{gpu.gpu_uuid} replaces {replaces[gpu.gpu_uuid]} (retired on success)")
        devices.append(entry)
    progress(f"enrolling {len(devices)} device(s) with {coordinator_url} ...")
    response = http.post("/api/v1/enroll", json={"code": code, "devices": devices})
    if response.status_code != 201:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise CoordinatorError(response.status_code, message)
    enrolled = []
    body = response.json()
    for item in body["devices"]:
        keystore.set_device_id(item["gpu_uuid"], item["device_id"], coordinator_url=coordinator_url)
        enrolled.append((item["gpu_uuid"], item["device_id"]))
    control = body.get("control")
    return EnrollResult(enrolled, already, control=str(control) if control else None)
