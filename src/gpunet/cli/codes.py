"""`gpunet codes`: one-time enrollment codes for your agents."""

from __future__ import annotations

import click

from gpunet.cli.session import OwnerClient, credentials_path


@click.group()
def codes() -> None:
    """Enrollment codes."""


@codes.command()
@click.option("--max-devices", type=click.IntRange(1, 64), default=8, show_default=True)
def create(max_devices: int) -> None:
    """Make a one-time code; give it to `gpunet worker enroll --code`."""
    client = OwnerClient(credentials_path())
    out = client.call("POST", "/api/v1/enrollment-codes", {"max_devices": max_devices}, ok=201)
    click.echo(out["code"])
    click.echo(
        f"valid until {out['expires_at']} for up to {out['max_devices']} device(s): "
        f"gpunet worker enroll --code {out['code']} --coordinator {client.creds.coordinator}",
        err=True,
    )
