"""`gpunet login`: sign in to a coordinator with a built-in account."""

from __future__ import annotations

import click

from gpunet.cli.session import DEFAULT_COORDINATOR, credentials_path
from gpunet.cli.session import login as sign_in


@click.command()
@click.option("--coordinator", default=DEFAULT_COORDINATOR, show_default=True)
@click.option("--email", prompt=True)
@click.option("--password", prompt=True, hide_input=True)
def login(coordinator: str, email: str, password: str) -> None:
    """Sign in; the tokens are kept in a 0600 file for `gpunet devices` and `gpunet codes`."""
    path = credentials_path()
    creds = sign_in(coordinator, email, password, path)
    click.echo(f"logged in to {creds.coordinator} as {creds.email} (tokens in {path})")
