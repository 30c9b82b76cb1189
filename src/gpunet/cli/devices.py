"""`gpunet devices`: an owner's devices (list, show, retire)."""

from __future__ import annotations

import json
from typing import Any

import click

from gpunet.cli.session import OwnerClient, credentials_path

DEVICE_ID = r"^dev_[a-z2-7]{16}$"


def _check(device_id: str) -> str:
    import re

    # Checked here so a typo is named before any request (the server refuses it too).
    if not re.match(DEVICE_ID, device_id):
        raise click.BadParameter(f"{device_id!r} is not a device id (dev_ and 16 letters)")
    return device_id


def _line(d: dict[str, Any]) -> str:
    return (
        f"{d['device_id']}  {d['status']:<9}  {d['model']:<20}  {d['gpu_uuid']}"
        f"  {d.get('label') or ''}"
    ).rstrip()


@click.group()
def devices() -> None:
    """Your devices on the coordinator you logged in to."""


@devices.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_devices(as_json: bool) -> None:
    """Every device you own, retired ones included."""
    client = OwnerClient(credentials_path())
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.call("GET", "/api/v1/devices" + (f"?cursor={cursor}" if cursor else ""))
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    if not items:
        click.echo("no devices yet: `gpunet codes create`, then `gpunet worker enroll --code`")
    for d in items:
        click.echo(_line(d))


@devices.command()
@click.argument("device_id")
def show(device_id: str) -> None:
    """One device, as JSON."""
    client = OwnerClient(credentials_path())
    click.echo(json.dumps(client.call("GET", f"/api/v1/devices/{_check(device_id)}"), indent=2))


@devices.command()
@click.argument("device_id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def retire(device_id: str, yes: bool) -> None:
    """Take DEVICE_ID out of service for good (its history stays public)."""
    _check(device_id)
    if not yes:
        click.confirm(
            f"retire {device_id}? It stops counting and its key stops working", abort=True
        )
    client = OwnerClient(credentials_path())
    d = client.call("POST", f"/api/v1/devices/{device_id}/retire")
    click.echo(f"retired {d['device_id']} (GPU {d['gpu_uuid']} may be enrolled again)")
