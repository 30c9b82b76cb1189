"""The admission gate inside the real app: it knows the app's own tokens, signature window
and clock, and the app's 401 for a forged device signature demotes the sender.

How the gate orders requests is tested in tests/unit/server/test_admission.py.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from gpunet.core.clock import unix
from gpunet.core.signing import DeviceSigner
from gpunet.server.admission import AdmissionGate
from tests.integration.conftest import Net


def gate_of(app: FastAPI) -> AdmissionGate:
    node = app.middleware_stack  # built by the first request
    while not isinstance(node, AdmissionGate):
        node = node.app  # type: ignore[union-attr]
    return node


def test_the_gate_checks_credentials_with_the_apps_own_keys_and_clock(net: Net) -> None:
    owner = net.register()
    (device,) = net.enroll(owner, 1)
    app = net.client.app
    assert isinstance(app, FastAPI)
    classify = gate_of(app).classifier.credential
    token = f"Bearer {owner.token}"
    signature = device.signer.authorization("GET", "/x", b"", unix(net.clock.now()))
    owner_credential = classify(token, "203.0.113.1")
    assert owner_credential is not None and owner_credential.principal.startswith("owner:")
    device_credential = classify(signature, "203.0.113.1")
    assert device_credential is not None
    assert device_credential.principal == f"device:{device.device_id}"
    net.clock.advance(3600)  # the app's clock: the token expires, the signature goes stale
    assert classify(token, "203.0.113.1") is None
    assert classify(signature, "203.0.113.1") is None


def test_a_forged_device_signature_refused_by_the_app_demotes_its_address(net: Net) -> None:
    net.client.get("/healthz")
    app = net.client.app
    assert isinstance(app, FastAPI)
    gate = gate_of(app)
    forger = DeviceSigner("dev_aaaaaaaaaaaaaaaa", Ed25519PrivateKey.generate())
    path = "/api/v1/worker/device"
    header = forger.authorization("GET", path, b"", unix(net.clock.now()))
    assert not gate.demotions.is_demoted("address:testclient")
    r = net.client.get(path, headers={"Authorization": header})
    assert r.status_code == 401
    assert gate.demotions.is_demoted("address:testclient")
