"""An owner's signed-in session for the owner commands (`login`, `devices`, `codes`).

Tokens live where other CLIs keep theirs: one file, mode 0600, under the user's config
directory ($XDG_CONFIG_HOME/gpunet/credentials.json, or GPUNET_CREDENTIALS). An expired
access token is renewed once with the refresh token (POST /api/v1/auth/refresh) and the
new pair is written back; every failure is one line that says what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import httpx

DEFAULT_COORDINATOR = "http://127.0.0.1:8000"


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("GPUNET_CREDENTIALS"):
        return Path(env["GPUNET_CREDENTIALS"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpunet" / "credentials.json"


@dataclass
class Credentials:
    coordinator: str
    email: str
    access_token: str
    refresh_token: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 from the start (never world-readable, even for an instant), then
        # swapped in whole so a crash leaves the old file or the new one, not half.
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            data = json.loads(path.read_text())
            return cls(**{k: str(data[k]) for k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise click.ClickException("not logged in: run `gpunet login` first") from None
        except (ValueError, KeyError, TypeError):
            raise click.ClickException(f"{path} is damaged: run `gpunet login` again") from None


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


def _unreachable(url: str, exc: Exception) -> click.ClickException:
    return click.ClickException(
        f"cannot reach the coordinator at {url} ({type(exc).__name__}): "
        "check the URL (--coordinator) and that the server runs"
    )


def login(coordinator: str, email: str, password: str, path: Path) -> Credentials:
    url = coordinator.rstrip("/")
    try:
        r = httpx.post(
            f"{url}/api/v1/auth/token", json={"email": email, "password": password}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise _unreachable(url, exc) from exc
    if r.status_code == 404:
        raise click.ClickException(
            f"{url} is not a gpunet coordinator (no /api/v1/auth/token): check --coordinator"
        )
    if r.status_code != 200:
        raise click.ClickException(f"login refused ({r.status_code}): {_message(r)}")
    body = r.json()
    creds = Credentials(url, email, body["access_token"], body["refresh_token"])
    creds.save(path)
    return creds


class OwnerClient:
    """Bearer calls for the signed-in owner, renewing the access token once on 401."""

    def __init__(self, path: Path, transport: httpx.BaseTransport | None = None) -> None:
        self.path = path
        self.creds = Credentials.load(path)
        self.http = httpx.Client(base_url=self.creds.coordinator, timeout=30, transport=transport)

    def _send(self, method: str, url: str, body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.creds.access_token}"}
        try:
            return self.http.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _unreachable(self.creds.coordinator, exc) from exc

    def _refresh(self) -> bool:
        try:
            r = self.http.post(
                "/api/v1/auth/refresh", json={"refresh_token": self.creds.refresh_token}
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self.creds.coordinator, exc) from exc
        if r.status_code != 200:
            return False
        self.creds.access_token = r.json()["access_token"]
        self.creds.refresh_token = r.json()["refresh_token"]
        self.creds.save(self.path)
        return True

    def call(self, method: str, url: str, body: Any = None, *, ok: int = 200) -> Any:
        r = self._send(method, url, body)
        if r.status_code == 401:
            if not self._refresh():
                raise click.ClickException(
                    "your session has expired or was revoked: run `gpunet login` again"
                )
            r = self._send(method, url, body)
        if r.status_code == 401:
            raise click.ClickException("not logged in: run `gpunet login` again")
        if r.status_code != ok:
            raise click.ClickException(f"{_message(r)} ({r.status_code})")
        return r.json()
