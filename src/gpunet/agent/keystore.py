"""Per-GPU Ed25519 device keys on disk (T3: no shared credential, one key per device).

Layout under the root (``$GPUNET_HOME/keys``, else ``$XDG_CONFIG_HOME/gpunet/keys``,
else ``~/.config/gpunet/keys``), one set of files per GPU UUID:

* ``<uuid>.key``      the device key, PKCS8 PEM, unencrypted;
* ``<uuid>.next.key`` the next key while a rotation is pending;
* ``<uuid>.json``     non-secret state: coordinator device id, coordinator URL.

Invariants (POSIX):

* the root is a directory owned by this user with mode 0700; every file is a regular
  file (never followed through a symlink) owned by this user with mode 0600. Loading
  anything looser is refused with an error that says which ``chmod`` fixes it;
* every file is written to a fresh temporary file (``O_CREAT|O_EXCL``, mode 0600), synced,
  then moved into place in one step: a reader sees the old file or the new one, never
  a torn one. Key files are published with ``link()``, which never overwrites, so
  an existing identity cannot be clobbered; state files with ``replace()``;
* a rotation keeps the current key until ``commit_rotation``, which swaps the next key
  in with a single ``replace()``; ``begin_rotation`` is idempotent (a pending next key
  is returned again), so a crash between announcing the new key to the coordinator and
  its confirmation loses nothing;
* private material never reaches a log line, an exception message or a ``repr``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import BaseModel, ConfigDict, ValidationError

from gpunet.core.errors import GpunetError
from gpunet.core.signing import DeviceSigner, public_key_text

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
MAX_FILE_BYTES = 64 * 1024
_UUID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{7,63}$")
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")  # as in the Authorization header
_URL_RE = re.compile(r"^https?://[!-~]{1,2040}$")
_KEY_FILE_RE = re.compile(r"^(?P<uuid>[A-Za-z0-9][A-Za-z0-9-]*)\.key$")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class KeystoreError(GpunetError):
    code = "keystore_error"


class InsecurePermissions(KeystoreError):
    code = "keystore_insecure_permissions"


class KeyNotFound(KeystoreError):
    code = "keystore_key_not_found"


class KeyExists(KeystoreError):
    code = "keystore_key_exists"


class NotEnrolled(KeystoreError):
    code = "keystore_not_enrolled"


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """What the keystore knows about one device; public facts only."""

    gpu_uuid: str
    public_key: str
    device_id: str | None = None
    coordinator_url: str | None = None
    next_public_key: str | None = None

    @property
    def enrolled(self) -> bool:
        return self.device_id is not None

    @property
    def rotation_pending(self) -> bool:
        return self.next_public_key is not None


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    gpu_uuid: str
    device_id: str | None = None
    coordinator_url: str | None = None


def default_root(env: Mapping[str, str] | None = None) -> Path:
    """Where keys live unless told otherwise."""
    env = os.environ if env is None else env
    if env.get("GPUNET_HOME"):
        return Path(env["GPUNET_HOME"]).expanduser() / "keys"
    config = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(config) / "gpunet" / "keys"


def _check_uuid(gpu_uuid: str) -> str:
    if not _UUID_RE.match(gpu_uuid):
        raise KeystoreError("not a valid GPU UUID", gpu_uuid=gpu_uuid[:80])
    return gpu_uuid


def _check_owner_and_mode(st: os.stat_result, path: Path, *, is_dir: bool) -> None:
    want, kind = (DIR_MODE, "directory") if is_dir else (FILE_MODE, "file")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise InsecurePermissions(f"key {kind} {path} is owned by another user")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise InsecurePermissions(
            f"key {kind} {path} is accessible by group or others (mode {mode:o}); "
            f"run: chmod {want:o} {path}",
            path=str(path),
            mode=f"{mode:o}",
        )


def _private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


class Keystore:
    """The device keys of this host; see the module docstring for the invariants."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def __repr__(self) -> str:
        return f"Keystore(root={str(self.root)!r})"

    # --- paths and low-level file handling ---------------------------------------

    def _key_path(self, gpu_uuid: str) -> Path:
        return self.root / f"{_check_uuid(gpu_uuid)}.key"

    def _next_path(self, gpu_uuid: str) -> Path:
        return self.root / f"{_check_uuid(gpu_uuid)}.next.key"

    def _state_path(self, gpu_uuid: str) -> Path:
        return self.root / f"{_check_uuid(gpu_uuid)}.json"

    def _check_root(self) -> None:
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise KeyNotFound(f"no keystore at {self.root}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise KeystoreError(f"keystore path {self.root} is not a directory")
        _check_owner_and_mode(st, self.root, is_dir=True)

    def _ensure_root(self) -> None:
        if not self.root.exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.root, DIR_MODE)
                os.chmod(self.root, DIR_MODE)  # the umask may have dropped owner bits
        self._check_root()

    def _read_private(self, path: Path) -> bytes:
        """Read a file we wrote, refusing anything looser than 0600 or a symlink."""
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            raise KeyNotFound(f"no such key file {path}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot open {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeystoreError(f"{path} is not a regular file")
            _check_owner_and_mode(st, path, is_dir=False)
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise KeystoreError(f"{path} is too large to be a key or state file")
        return data

    def _write(self, path: Path, data: bytes, *, overwrite: bool) -> None:
        """Publish ``data`` at ``path`` atomically with mode 0600.

        ``overwrite=False`` uses link(), which fails if ``path`` exists: a device key is
        never replaced by accident. Raises KeyExists in that case.
        """
        self._ensure_root()
        tmp = self.root / f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, FILE_MODE
        )
        try:
            try:
                os.fchmod(fd, FILE_MODE)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if overwrite:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise KeyExists(f"{path} already exists") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._sync_root()

    def _sync_root(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            dfd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _load_key(self, path: Path) -> Ed25519PrivateKey:
        self._check_root()
        data = self._read_private(path)
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            # The parser's message is not echoed: it is about the file's content.
            raise KeystoreError(f"{path} is not an unencrypted PKCS8 PEM key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeystoreError(f"{path} is not an Ed25519 key")
        return key

    def _read_state(self, gpu_uuid: str) -> _State:
        try:
            data = self._read_private(self._state_path(gpu_uuid))
        except KeyNotFound:
            return _State(gpu_uuid=gpu_uuid)
        try:
            state = _State.model_validate_json(data)
        except ValidationError:
            raise KeystoreError(f"state file for {gpu_uuid} is corrupt") from None
        if state.gpu_uuid != gpu_uuid:
            raise KeystoreError(f"state file for {gpu_uuid} names another GPU")
        return state

    def _write_state(self, state: _State) -> None:
        self._write(
            self._state_path(state.gpu_uuid),
            state.model_dump_json(indent=2).encode() + b"\n",
            overwrite=True,
        )

    # --- public API ----------------------------------------------------------------

    def create(self, gpu_uuid: str) -> Ed25519PrivateKey:
        """Generate and store the key for a new device; KeyExists if it has one."""
        path = self._key_path(gpu_uuid)
        key = Ed25519PrivateKey.generate()
        self._write(path, _private_bytes(key), overwrite=False)
        self._write_state(_State(gpu_uuid=gpu_uuid))
        log.info("created device key for GPU %s in %s", gpu_uuid, self.root)
        return key

    def load(self, gpu_uuid: str) -> Ed25519PrivateKey:
        """The current key of a device; KeyNotFound if there is none."""
        return self._load_key(self._key_path(gpu_uuid))

    def load_next(self, gpu_uuid: str) -> Ed25519PrivateKey | None:
        """The pending next key of a rotation, or None if no rotation is pending."""
        try:
            return self._load_key(self._next_path(gpu_uuid))
        except KeyNotFound:
            return None

    def set_device_id(
        self, gpu_uuid: str, device_id: str, *, coordinator_url: str | None = None
    ) -> StoredDevice:
        """Record the id the coordinator gave this device at enrollment."""
        if not _DEVICE_ID_RE.match(device_id):
            raise KeystoreError("not a valid device id")
        if coordinator_url is not None and not _URL_RE.match(coordinator_url):
            raise KeystoreError("coordinator URL must be an http(s) URL")
        self.load(gpu_uuid)  # the device must have a key
        state = self._read_state(gpu_uuid)
        url = coordinator_url if coordinator_url is not None else state.coordinator_url
        self._write_state(_State(gpu_uuid=gpu_uuid, device_id=device_id, coordinator_url=url))
        log.info("GPU %s enrolled as device %s", gpu_uuid, device_id)
        return self.device(gpu_uuid)

    def device(self, gpu_uuid: str) -> StoredDevice:
        key = self.load(gpu_uuid)
        state = self._read_state(gpu_uuid)
        nxt = self.load_next(gpu_uuid)
        return StoredDevice(
            gpu_uuid=gpu_uuid,
            public_key=public_key_text(key.public_key()),
            device_id=state.device_id,
            coordinator_url=state.coordinator_url,
            next_public_key=public_key_text(nxt.public_key()) if nxt is not None else None,
        )

    def devices(self) -> list[StoredDevice]:
        """Every device with a key in this store, by GPU UUID; [] if there is no store."""
        if not self.root.exists():
            return []
        self._check_root()
        uuids = sorted(
            m["uuid"]
            for name in os.listdir(self.root)
            if (m := _KEY_FILE_RE.match(name)) and _UUID_RE.match(m["uuid"])
        )
        return [self.device(u) for u in uuids]

    def begin_rotation(self, gpu_uuid: str) -> Ed25519PrivateKey:
        """The next key for a device, made now or (if one is pending) the same one again.

        The current key stays in place and keeps signing until ``commit_rotation``.
        """
        self.load(gpu_uuid)
        pending = self.load_next(gpu_uuid)
        if pending is not None:
            return pending
        key = Ed25519PrivateKey.generate()
        try:
            self._write(self._next_path(gpu_uuid), _private_bytes(key), overwrite=False)
        except KeyExists:  # another process began the same rotation first
            return self._load_key(self._next_path(gpu_uuid))
        log.info("began key rotation for GPU %s", gpu_uuid)
        return key

    def commit_rotation(self, gpu_uuid: str) -> Ed25519PrivateKey:
        """Make the pending next key current (one atomic rename); the old key is gone."""
        nxt = self._next_path(gpu_uuid)
        key = self.load_next(gpu_uuid)
        if key is None:
            raise KeystoreError(f"no key rotation is pending for GPU {gpu_uuid}")
        os.replace(nxt, self._key_path(gpu_uuid))
        self._sync_root()
        log.info("committed key rotation for GPU %s", gpu_uuid)
        return key

    def complete_rotation(self, gpu_uuid: str, public_key: str) -> bool:
        """The coordinator accepted a signature by ``public_key``: if that is the pending
        next key, make it current (``commit_rotation``). True if the current key is now
        ``public_key`` (also when another process committed first); False if it is not
        (a stale or different pending key is left alone)."""
        nxt = self.load_next(gpu_uuid)
        if nxt is not None and public_key_text(nxt.public_key()) == public_key:
            # Another process may commit between the read and the rename: then the
            # check below still finds the key current.
            with contextlib.suppress(KeystoreError, FileNotFoundError):
                self.commit_rotation(gpu_uuid)
        return public_key_text(self.load(gpu_uuid).public_key()) == public_key

    def abort_rotation(self, gpu_uuid: str) -> None:
        """Drop a pending next key (the coordinator refused or never saw it)."""
        self._check_root()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._next_path(gpu_uuid))
            self._sync_root()
            log.info("aborted key rotation for GPU %s", gpu_uuid)

    def live_signer(self, gpu_uuid: str) -> LiveSigner:
        """A signer that reads the device's current key each time it signs, so a long-
        running agent follows a key rotation done beside it (`gpunet worker rotate-key`)."""
        signer = self.signer(gpu_uuid)
        return LiveSigner(signer.device_id, self, gpu_uuid)

    def signer(self, gpu_uuid: str) -> DeviceSigner:
        """A signer for an enrolled device's requests; NotEnrolled before enrollment."""
        key = self.load(gpu_uuid)
        state = self._read_state(gpu_uuid)
        if state.device_id is None:
            raise NotEnrolled(f"GPU {gpu_uuid} has no device id yet; enroll it first")
        return DeviceSigner(state.device_id, key)


class LiveSigner(DeviceSigner):
    def __init__(self, device_id: str, keystore: Keystore, gpu_uuid: str) -> None:
        super().__init__(device_id, keystore.load(gpu_uuid))
        self._keystore = keystore
        self._gpu_uuid = gpu_uuid

    def sign(self, message: bytes) -> bytes:
        return self._keystore.load(self._gpu_uuid).sign(message)

    def pending(self) -> DeviceSigner | None:
        """A signer with the pending next key of a rotation, or None if none is pending.

        After a crash between the coordinator accepting a rotation and the keystore
        swapping keys, the coordinator knows only this key: a refused signature is
        retried with it (agent.client, agent.control.client)."""
        nxt = self._keystore.load_next(self._gpu_uuid)
        return None if nxt is None else _PendingSigner(self.device_id, nxt)

    def adopt(self, pending: DeviceSigner) -> bool:
        """The coordinator accepted `pending`'s key: finish the rotation here."""
        if not isinstance(pending, _PendingSigner):
            raise TypeError("adopt takes a signer from pending()")
        done = self._keystore.complete_rotation(self._gpu_uuid, pending.public_key)
        if done:
            log.warning(
                "device %s: the coordinator holds the key of an interrupted rotation; "
                "finished the rotation (the pending key is now current)",
                self.device_id,
            )
        return done

    def __repr__(self) -> str:
        return f"LiveSigner(device_id={self.device_id!r})"


class _PendingSigner(DeviceSigner):
    def __init__(self, device_id: str, key: Ed25519PrivateKey) -> None:
        super().__init__(device_id, key)
        self.public_key = public_key_text(key.public_key())

    def __repr__(self) -> str:
        return f"PendingSigner(device_id={self.device_id!r})"
