"""A small Python SDK for customers: ask for a Ray cluster, wait for it, get its address
and token, end it.

    from gpunet.client import Clusters

    clusters = Clusters.from_login("https://coordinator.example", "me@example.com", "...")
    # or Clusters() to use the session `gpunet login` saved
    cluster = clusters.create(count=2, gpu_model="h100-sxm", duration_s=3600)
    ray_cluster = clusters.wait_ready(cluster["cluster_id"])
    ray_cluster.init()            # ray.init() against it, with its token
    ...
    clusters.terminate(cluster["cluster_id"])

Every failure is a `ClusterError` carrying the coordinator's message (for a refused
request: which constraint could not be met and how many devices fit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

USABLE = ("ready", "degraded")
ENDED = ("terminated", "failed")
Call = Callable[[str, str, Any, int], Any]


class ClusterError(RuntimeError):
    """The coordinator refused, or the cluster did not become what was asked."""


@dataclass(frozen=True)
class RayCluster:
    """What a Ray client needs. The token runs code on the cluster: keep it secret."""

    cluster_id: str
    address: str  # the head's GCS, for ray.init(address=...)
    dashboard: str | None  # the jobs API (http://<dashboard>), token required too
    token: str

    def env(self) -> dict[str, str]:
        """Environment for Ray clients: `ray.init()` and `ray job submit` read these."""
        out = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_ADDRESS": self.address}
        if self.dashboard:
            out["RAY_API_SERVER_ADDRESS"] = f"http://{self.dashboard}"
        return out

    def init(self, **kwargs: Any) -> Any:
        """`ray.init` connected to this cluster (Ray must be installed here)."""
        import ray

        os.environ.update({k: v for k, v in self.env().items() if k != "RAY_ADDRESS"})
        return ray.init(address=self.address, **kwargs)


class Clusters:
    """The customer's clusters on one coordinator."""

    def __init__(self, call: Call | None = None) -> None:
        self._call = call or _saved_session()

    @classmethod
    def from_login(cls, coordinator: str, email: str, password: str) -> Clusters:
        return cls(_TokenSession(coordinator, email, password).call)

    def create(self, count: int, **terms: Any) -> dict[str, Any]:
        """Ask for `count` devices (terms: gpu_model, min_vram_mib, min_int8_tops, region,
        max_latency_ms, min_verified_hours, duration_s, engine, name)."""
        body = {"count": count, **{k: v for k, v in terms.items() if v is not None}}
        return dict(self._call("POST", "/api/v1/clusters", body, 201))

    def get(self, cluster_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/clusters/{cluster_id}", None, 200))

    def list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self._call("GET", "/api/v1/clusters" + cursor, None, 200)
            items += page["items"]
            if not page.get("next_cursor"):
                return items
            cursor = f"?cursor={page['next_cursor']}"

    def credentials(self, cluster_id: str) -> RayCluster:
        c = self._call("GET", f"/api/v1/clusters/{cluster_id}/credentials", None, 200)
        return RayCluster(c["cluster_id"], c["address"], c.get("dashboard"), c["token"])

    def usage(self, cluster_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v1/clusters/{cluster_id}/usage", None, 200))

    def terminate(self, cluster_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/api/v1/clusters/{cluster_id}/terminate", None, 200))

    def watch(
        self, cluster_id: str, *, until: tuple[str, ...], timeout: float = 600.0,
        interval: float = 0.5,
    ) -> Iterator[dict[str, Any]]:
        """The cluster each time it changes (status, detail, members, events), until its
        status is one of `until`; ClusterError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            c = self.get(cluster_id)
            seen = (c["status"], c["detail"], len(c["events"]))
            if seen != last:
                last = seen
                yield c
            if c["status"] in until:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{cluster_id} is still {c['status']} after {timeout:.0f}s")
            time.sleep(interval)

    def wait_ready(self, cluster_id: str, timeout: float = 600.0) -> RayCluster:
        final = list(self.watch(cluster_id, until=USABLE + ENDED, timeout=timeout))[-1]
        if final.get("status") not in USABLE:
            raise ClusterError(f"{cluster_id} {final.get('status')}: {final.get('detail')}")
        return self.credentials(cluster_id)


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return r.text[:200] or r.reason_phrase


class _TokenSession:
    """Signed in with e-mail and password; renews the access token when it expires."""

    def __init__(self, coordinator: str, email: str, password: str) -> None:
        self.http = httpx.Client(base_url=coordinator.rstrip("/"), timeout=30)
        r = self.http.post("/api/v1/auth/token", json={"email": email, "password": password})
        if r.status_code != 200:
            raise ClusterError(f"sign-in refused ({r.status_code}): {_message(r)}")
        self.access, self.refresh = r.json()["access_token"], r.json()["refresh_token"]

    def call(self, method: str, path: str, body: Any, ok: int) -> Any:
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self.access}"}
            r = self.http.request(method, path, json=body, headers=headers)
            if r.status_code == 401 and attempt == 0:
                renewed = self.http.post("/api/v1/auth/refresh",
                                         json={"refresh_token": self.refresh})
                if renewed.status_code == 200:
                    self.access = renewed.json()["access_token"]
                    self.refresh = renewed.json()["refresh_token"]
                    continue
            if r.status_code != ok:
                raise ClusterError(f"{_message(r)} ({r.status_code})")
            return r.json()
        raise ClusterError("the session has expired: sign in again")


def _saved_session(path: Path | None = None) -> Call:
    """The session `gpunet login` saved (renewed and written back as the CLI does)."""
    import click

    from gpunet.cli.session import OwnerClient, credentials_path

    try:
        owner = OwnerClient(path or credentials_path())
    except click.ClickException as exc:
        raise ClusterError(exc.message) from exc

    def call(method: str, url: str, body: Any, ok: int) -> Any:
        try:
            return owner.call(method, url, body, ok=ok)
        except click.ClickException as exc:
            raise ClusterError(exc.message) from exc

    return call


__all__ = ["ClusterError", "Clusters", "RayCluster"]
