"""The per-GPU key store: modes, refusals, rotation, and no key material anywhere visible."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from gpunet.agent.keystore import (
    InsecurePermissions,
    KeyExists,
    KeyNotFound,
    Keystore,
    KeystoreError,
    NotEnrolled,
    StoredDevice,
    default_root,
)
from gpunet.core.signing import b64u, public_key_text, verify

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

UUID = "GPU-8d1a7c6e-1111-2222-3333-444444444444"
UUID2 = "GPU-00000000-1111-2222-3333-444444444444"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def pub(key: Ed25519PrivateKey) -> str:
    return public_key_text(key.public_key())


def secrets_of(key: Ed25519PrivateKey) -> list[str]:
    """Every text form the private half could leak in."""
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    body = "".join(pem.strip().splitlines()[1:-1])
    return [raw.hex(), b64u(raw), body, "PRIVATE KEY"]


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)  # the store must set its modes itself, not rely on the umask
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "home" / "keys")


def test_create_uses_0700_directory_and_0600_files(store: Keystore, umask_zero: None) -> None:
    key = store.create(UUID)

    assert mode(store.root) == 0o700
    assert mode(store.root / f"{UUID}.key") == 0o600
    assert mode(store.root / f"{UUID}.json") == 0o600
    assert (store.root / f"{UUID}.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub(store.load(UUID)) == pub(key)
    assert not [p for p in os.listdir(store.root) if p.endswith(".tmp")]


def test_state_is_small_public_json(store: Keystore) -> None:
    store.create(UUID)
    state = json.loads((store.root / f"{UUID}.json").read_text())
    assert state == {"version": 1, "gpu_uuid": UUID, "device_id": None,
                     "coordinator_url": None}


def test_create_never_overwrites_an_identity(store: Keystore) -> None:
    key = store.create(UUID)
    with pytest.raises(KeyExists):
        store.create(UUID)
    assert pub(store.load(UUID)) == pub(key)


def test_loose_key_file_is_refused_with_the_fix(store: Keystore) -> None:
    store.create(UUID)
    path = store.root / f"{UUID}.key"
    os.chmod(path, 0o644)
    with pytest.raises(InsecurePermissions) as info:
        store.load(UUID)
    assert f"chmod 600 {path}" in str(info.value)
    assert "mode 644" in str(info.value)
    os.chmod(path, 0o600)
    store.load(UUID)


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660, 0o601])
def test_any_group_or_other_bit_is_refused(store: Keystore, loose: int) -> None:
    store.create(UUID)
    os.chmod(store.root / f"{UUID}.key", loose)
    with pytest.raises(InsecurePermissions):
        store.load(UUID)


def test_loose_directory_is_refused_with_the_fix(store: Keystore) -> None:
    store.create(UUID)
    os.chmod(store.root, 0o755)
    with pytest.raises(InsecurePermissions, match=f"chmod 700 {store.root}"):
        store.load(UUID)
    with pytest.raises(InsecurePermissions):
        store.create(UUID2)


def test_symlinked_key_file_is_refused(store: Keystore, tmp_path: Path) -> None:
    store.create(UUID)
    elsewhere = tmp_path / "elsewhere.key"
    os.replace(store.root / f"{UUID}.key", elsewhere)
    os.symlink(elsewhere, store.root / f"{UUID}.key")
    with pytest.raises(KeystoreError):
        store.load(UUID)


def test_missing_key_and_missing_store(store: Keystore) -> None:
    with pytest.raises(KeyNotFound):
        store.load(UUID)
    assert store.devices() == []
    store.create(UUID)
    with pytest.raises(KeyNotFound):
        store.load(UUID2)


def test_corrupt_or_foreign_key_files_are_refused(store: Keystore) -> None:
    store.create(UUID)
    path = store.root / f"{UUID}.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeystoreError, match="not an unencrypted PKCS8 PEM key") as info:
        store.load(UUID)
    assert "not a key" not in str(info.value)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(KeystoreError, match="not an Ed25519 key"):
        store.load(UUID)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "GPU-1", "a/b-cdefghij", ".hiddenuuid"])
def test_gpu_uuid_cannot_escape_the_store(store: Keystore, bad: str) -> None:
    with pytest.raises(KeystoreError, match="not a valid GPU UUID"):
        store.create(bad)


def test_enrollment_and_signer(store: Keystore) -> None:
    key = store.create(UUID)
    with pytest.raises(NotEnrolled):
        store.signer(UUID)

    dev = store.set_device_id(UUID, "dev_Ab12", coordinator_url="https://coord.example")
    assert dev == StoredDevice(gpu_uuid=UUID, public_key=pub(key), device_id="dev_Ab12",
                               coordinator_url="https://coord.example")
    assert dev.enrolled and not dev.rotation_pending
    # a later update without a URL keeps the one recorded
    assert store.set_device_id(UUID, "dev_Ab12").coordinator_url == "https://coord.example"

    signer = store.signer(UUID)
    header = signer.authorization("POST", "/v1/heartbeat", b"{}", 1_700_000_000)
    assert header.startswith("GPUNet-Device id=dev_Ab12,ts=1700000000,")
    msg = b"hello"
    assert verify(key.public_key(), signer.sign(msg), msg)


@pytest.mark.parametrize(("device_id", "url"), [
    ("dev id", None), ("", None), ("x" * 65, None), ("dev1", "ftp://x"),
    ("dev1", "https://a b"),
])
def test_enrollment_values_are_validated(store: Keystore, device_id: str,
                                         url: str | None) -> None:
    store.create(UUID)
    with pytest.raises(KeystoreError):
        store.set_device_id(UUID, device_id, coordinator_url=url)


def test_enrollment_needs_a_key(store: Keystore) -> None:
    with pytest.raises(KeyNotFound):
        store.set_device_id(UUID, "dev1")


def test_devices_lists_every_key(store: Keystore) -> None:
    a = store.create(UUID)
    b = store.create(UUID2)
    store.set_device_id(UUID, "dev1")
    devices = store.devices()
    assert [d.gpu_uuid for d in devices] == [UUID2, UUID]
    assert [d.public_key for d in devices] == [pub(b), pub(a)]
    assert [d.device_id for d in devices] == [None, "dev1"]


def test_rotation_keeps_the_old_key_until_commit(store: Keystore, umask_zero: None) -> None:
    old = store.create(UUID)
    store.set_device_id(UUID, "dev1")

    new = store.begin_rotation(UUID)
    assert pub(new) != pub(old)
    assert mode(store.root / f"{UUID}.next.key") == 0o600
    assert pub(store.load(UUID)) == pub(old)            # still current
    assert verify(old.public_key(), store.signer(UUID).sign(b"m"), b"m")  # still signing
    assert pub(store.begin_rotation(UUID)) == pub(new)  # idempotent after a crash
    [dev] = store.devices()
    assert dev.rotation_pending and dev.next_public_key == pub(new)
    assert dev.public_key == pub(old)

    committed = store.commit_rotation(UUID)
    assert pub(committed) == pub(new)
    assert pub(store.load(UUID)) == pub(new)
    assert store.load_next(UUID) is None
    assert store.device(UUID).device_id == "dev1"  # identity survives rotation (T6)
    assert mode(store.root / f"{UUID}.key") == 0o600
    with pytest.raises(KeystoreError, match="no key rotation is pending"):
        store.commit_rotation(UUID)


def test_abort_rotation_keeps_the_current_key(store: Keystore) -> None:
    old = store.create(UUID)
    first = store.begin_rotation(UUID)
    store.abort_rotation(UUID)
    assert store.load_next(UUID) is None
    assert pub(store.load(UUID)) == pub(old)
    assert pub(store.begin_rotation(UUID)) != pub(first)
    store.abort_rotation(UUID)
    store.abort_rotation(UUID)  # nothing pending: a no-op


def test_rotation_needs_an_existing_key(store: Keystore) -> None:
    with pytest.raises(KeyNotFound):
        store.begin_rotation(UUID)


def test_loose_next_key_is_refused(store: Keystore) -> None:
    store.create(UUID)
    store.begin_rotation(UUID)
    os.chmod(store.root / f"{UUID}.next.key", 0o644)
    with pytest.raises(InsecurePermissions, match="chmod 600"):
        store.commit_rotation(UUID)


def test_repr_shows_no_key_material(store: Keystore) -> None:
    key = store.create(UUID)
    store.set_device_id(UUID, "dev1")
    nxt = store.begin_rotation(UUID)
    shown = " ".join([repr(store), str(store), repr(store.devices()), repr(store.device(UUID)),
                      repr(store.signer(UUID)), repr(key), repr(nxt)])
    for secret in secrets_of(key) + secrets_of(nxt):
        assert secret not in shown
    assert repr(store) == f"Keystore(root={str(store.root)!r})"


def test_errors_show_no_key_material(store: Keystore) -> None:
    key = store.create(UUID)
    path = store.root / f"{UUID}.key"
    os.chmod(path, 0o644)
    with pytest.raises(InsecurePermissions) as info:
        store.load(UUID)
    for secret in secrets_of(key):
        assert secret not in str(info.value)
        assert secret not in repr(info.value.details)


def test_keys_never_reach_the_logs(store: Keystore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = store.create(UUID)
    store.set_device_id(UUID, "dev1", coordinator_url="https://coord.example")
    store.signer(UUID).authorization("GET", "/v1/x", b"", 1)
    nxt = store.begin_rotation(UUID)
    store.devices()
    store.commit_rotation(UUID)
    store.begin_rotation(UUID)
    store.abort_rotation(UUID)

    assert "created device key" in caplog.text and UUID in caplog.text
    for secret in secrets_of(key) + secrets_of(nxt):
        assert secret not in caplog.text


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_root({"GPUNET_HOME": "/srv/gpunet"}) == Path("/srv/gpunet/keys")
    assert default_root({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/gpunet/keys")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root({}) == tmp_path / ".config/gpunet/keys"
    monkeypatch.setenv("GPUNET_HOME", str(tmp_path / "gh"))
    assert Keystore().root == tmp_path / "gh" / "keys"
