"""The `gpunet` command. One module per command group."""

from __future__ import annotations

import click

from gpunet import __version__
from gpunet.cli import admin, dev, incidents, rewards, server, worker
from gpunet.cli.calibrate import calibrate


@click.group()
@click.version_option(__version__, prog_name="gpunet")
def cli() -> None:
    """gpunet: a GPU network that proves every GPU before it counts."""


cli.add_command(server.server)
cli.add_command(admin.admin)
cli.add_command(calibrate)
cli.add_command(rewards.rewards)
admin.admin.add_command(incidents.incident)
cli.add_command(worker.worker)
cli.add_command(dev.dev)
