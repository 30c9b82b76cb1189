"""`gpunet cluster`: a customer's Ray clusters (create with live progress, list, show,
env, usage, terminate), on the coordinator `gpunet login` signed in to."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from typing import Any

import click

from gpunet.client import ENDED, USABLE, ClusterError, Clusters

CLUSTER_ID = r"^clu_[a-z2-7]{16}$"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _check(cluster_id: str) -> str:
    if not re.match(CLUSTER_ID, cluster_id):
        raise click.BadParameter(f"{cluster_id!r} is not a cluster id (clu_ and 16 letters)")
    return cluster_id


def _duration(_ctx: Any, _param: Any, value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)([smhd]?)", value.strip())
    if m is None:
        raise click.BadParameter("a duration is a number with s, m, h or d (90m, 2h)")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def _clusters() -> Clusters:
    try:
        return Clusters()
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc


class Progress:
    """One line per change while a cluster builds: elapsed time, the cluster's status
    and each member's, then the events as they happen."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = 0

    def __call__(self, c: dict[str, Any]) -> None:
        t = time.monotonic() - self.started
        for e in c["events"][self.shown :]:
            who = e["device_id"] or c["cluster_id"]
            click.echo(f"[{t:6.1f}s] {who}: {e['from_status'] or 'new'} -> {e['to_status']}"
                       + (f"  ({e['detail']})" if e["detail"] else ""))
        self.shown = len(c["events"])
        nodes = " ".join(f"{m['role']}:{m['status']}" for m in c["members"])
        click.echo(f"[{t:6.1f}s] {c['status']:<11} {nodes}")


@click.group()
def cluster() -> None:
    """Your Ray clusters, built from verified GPUs (docs/clusters.md)."""


@cluster.command()
@click.option("--count", required=True, type=click.IntRange(1, 64), help="devices (Ray nodes)")
@click.option("--gpu-model", help="a catalog profile, e.g. h100-sxm (cpu-dev locally)")
@click.option("--min-vram-mib", type=click.IntRange(1))
@click.option("--min-int8-tops", type=click.FloatRange(0))
@click.option("--region")
@click.option("--max-latency-ms", type=click.FloatRange(0, min_open=True))
@click.option("--min-verified-hours", type=click.FloatRange(0))
@click.option("--duration", callback=_duration, default="1h", show_default=True)
@click.option("--name")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="follow the build until the cluster is ready")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait for ready")
def create(count: int, gpu_model: str | None, min_vram_mib: int | None,
           min_int8_tops: float | None, region: str | None, max_latency_ms: float | None,
           min_verified_hours: float | None, duration: int, name: str | None, wait: bool,
           timeout: float) -> None:
    """Ask for a cluster; by default, follow it until it is ready."""
    clusters = _clusters()
    c = _guard(lambda: clusters.create(
        count, gpu_model=gpu_model, min_vram_mib=min_vram_mib, min_int8_tops=min_int8_tops,
        region=region, max_latency_ms=max_latency_ms, min_verified_hours=min_verified_hours,
        duration_s=duration, name=name,
    ))
    cid = c["cluster_id"]
    click.echo(f"cluster {cid}: {count} device(s) reserved ({c['scope']}), building")
    if not wait:
        click.echo(f"follow it with `gpunet cluster show {cid}`")
        return
    progress = Progress()
    final: dict[str, Any] = c
    try:
        for final in clusters.watch(cid, until=USABLE + ENDED, timeout=timeout):
            progress(final)
    except ClusterError as exc:
        raise click.ClickException(f"{exc}; it keeps building: `gpunet cluster show {cid}`")\
            from exc
    if final["status"] not in USABLE:
        raise click.ClickException(f"cluster {cid} {final['status']}: {final['detail']}")
    click.echo(f"ready: Ray at {final['address']}" +
               (f", jobs at http://{final['dashboard']}" if final.get("dashboard") else ""))
    click.echo(f"use it:  eval \"$(gpunet cluster env {cid})\"  then ray.init() or "
               "`ray job submit -- python job.py`")


@cluster.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_clusters(as_json: bool) -> None:
    """Your clusters, ended ones included."""
    items = _guard(_clusters().list)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no clusters yet: `gpunet cluster create --count 2`")
    for c in items:
        click.echo(f"{c['cluster_id']}  {c['status']:<11}  {c['size']} node(s)  "
                   f"until {c['expires_at']}  {c.get('name') or ''}".rstrip())


@cluster.command()
@click.argument("cluster_id")
def show(cluster_id: str) -> None:
    """One cluster, its nodes and what happened to it, as JSON."""
    c = _guard(lambda: _clusters().get(_check(cluster_id)))
    click.echo(json.dumps(c, indent=2))


@cluster.command()
@click.argument("cluster_id")
def env(cluster_id: str) -> None:
    """Shell exports for Ray clients (the token included): eval "$(gpunet cluster env ID)"."""
    ray = _guard(lambda: _clusters().credentials(_check(cluster_id)))
    for key, value in ray.env().items():
        click.echo(f"export {key}={shlex.quote(value)}")


@cluster.command()
@click.argument("cluster_id")
def usage(cluster_id: str) -> None:
    """Time each device served, and of it the time billed (seen alive)."""
    u = _guard(lambda: _clusters().usage(_check(cluster_id)))
    for m in u["members"]:
        click.echo(f"{m['device_id']}  {m['role']:<6}  served {m['serving_s']:.0f}s  "
                   f"billed {m['credited_s']}s")
    click.echo(f"total billed: {u['credited_s']}s (slots of {u['slot_seconds']}s seen alive)")


@cluster.command()
@click.argument("cluster_id")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait until every node has stopped")
@click.option("--timeout", default=300.0, show_default=True)
def terminate(cluster_id: str, wait: bool, timeout: float) -> None:
    """Stop Ray on every node and free the devices."""
    clusters = _clusters()
    c = _guard(lambda: clusters.terminate(_check(cluster_id)))
    if wait and c["status"] not in ENDED:
        seen = _guard(lambda: list(clusters.watch(cluster_id, until=ENDED, timeout=timeout)))
        c = seen[-1]
    click.echo(f"cluster {cluster_id}: {c['status']}")
