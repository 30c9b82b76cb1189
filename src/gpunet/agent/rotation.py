"""Rotating a device key without losing its identity or uptime.

The old key signs the new one (and the new key signs too, proving possession), so the
coordinator moves the device's identity to the new key in one audited change. The
keystore keeps the old key until the coordinator has confirmed: a crash at any point
leaves either the old key valid, or the new one pending and retried.

The one window that the keystore alone cannot close is a crash after the coordinator
accepted the new key and before the keystore swapped: the coordinator then knows only
the pending key. The agent heals that by itself: a signature refused under the current
key is retried with the pending one, and if the coordinator accepts it the keystore
completes the swap (agent.client for HTTP, agent.control.client for the channel).

`STEPS` names every point between two durable effects (a file written, a request
answered); `on_step`, None in production, is called at each, so a test can kill the
process at every one of them in turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from gpunet.agent.client import WorkerClient
from gpunet.agent.keystore import Keystore
from gpunet.core import signing

STEPS = (
    "start",  # nothing written yet
    "pending_written",  # the next key is on disk, the coordinator has not seen it
    "request_sent",  # signed and about to go out: the coordinator has not seen it yet
    "answered",  # the coordinator answered (accepted): the keystore has not swapped
    "committed",  # the keystore swapped: the rotation is done
)
on_step: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if on_step is not None:
        on_step(name)


def rotate_device_key(
    http: httpx.Client, keystore: Keystore, gpu_uuid: str, *, clock: Callable[[], float] = time.time
) -> str:
    """Rotate one device's key; return the device id (unchanged)."""
    stored = keystore.device(gpu_uuid)
    if not stored.enrolled:
        raise ValueError(f"{gpu_uuid} is not enrolled")
    device_id = str(stored.device_id)
    _step("start")
    old = keystore.load(gpu_uuid)
    new = keystore.begin_rotation(gpu_uuid)
    _step("pending_written")
    new_public = signing.public_key_text(new.public_key())
    if new_public == stored.public_key:
        raise ValueError("the pending key equals the current one")
    ts = int(clock())
    msg = signing.rotation_message(device_id=device_id, new_public_key=new_public, timestamp=ts)
    body = {
        "new_public_key": new_public,
        "timestamp": ts,
        "old_key_signature": signing.b64u(old.sign(msg)),
        "new_key_signature": signing.b64u(new.sign(msg)),
    }
    client = WorkerClient(http, signing.DeviceSigner(device_id, old), clock=clock)
    _step("request_sent")
    response = client.request("POST", "/api/v1/worker/device/rotate-key", json.dumps(body).encode())
    if response.status_code == 401:
        # The coordinator may already hold the new key (an earlier attempt whose answer
        # was lost, or an agent that healed it): ask with the new key before giving up.
        probe = WorkerClient(http, signing.DeviceSigner(device_id, new), clock=clock)
        if probe.request("GET", "/api/v1/worker/device").status_code == 200:
            _step("answered")
            keystore.complete_rotation(gpu_uuid, new_public)
            _step("committed")
            return device_id
    client.raise_for_error(response)
    _step("answered")
    keystore.commit_rotation(gpu_uuid)
    _step("committed")
    return device_id
