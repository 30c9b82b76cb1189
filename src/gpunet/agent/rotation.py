"""Rotating a device key without losing its identity or uptime.

The old key signs the new one (and the new key signs too, proving possession), so the
coordinator moves the device's identity to the new key in one audited change. The
keystore keeps the old key until the coordinator has confirmed: a crash at any point
leaves either the old key valid, or the new one pending and retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from gpunet.agent.client import WorkerClient
from gpunet.agent.keystore import Keystore
from gpunet.core import signing


def rotate_device_key(
    http: httpx.Client, keystore: Keystore, gpu_uuid: str, *, clock: Callable[[], float] = time.time
) -> str:
    """Rotate one device's key; return the device id (unchanged)."""
    stored = keystore.device(gpu_uuid)
    if not stored.enrolled:
        raise ValueError(f"{gpu_uuid} is not enrolled")
    device_id = str(stored.device_id)
    old = keystore.load(gpu_uuid)
    new = keystore.begin_rotation(gpu_uuid)
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
    response = client.request("POST", "/api/v1/worker/device/rotate-key", json.dumps(body).encode())
    if response.status_code == 401:
        # The coordinator may already hold the new key (an earlier attempt whose answer
        # was lost): ask with the new key before giving up.
        probe = WorkerClient(http, signing.DeviceSigner(device_id, new), clock=clock)
        if probe.request("GET", "/api/v1/worker/device").status_code == 200:
            keystore.commit_rotation(gpu_uuid)
            return device_id
    client.raise_for_error(response)
    keystore.commit_rotation(gpu_uuid)
    return device_id
