"""The `gpunet` command. One module per command group."""

from __future__ import annotations

import click

from gpunet import __version__
from gpunet.cli import admin, clusters, codes, dev, devices, incidents, rewards, server, worker
from gpunet.cli.calibrate import calibrate
from gpunet.cli.login import login


@click.group()
@click.version_option(__version__, prog_name="gpunet")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="settings file (TOML) [default: $GPUNET_CONFIG, else the file `gpunet server "
    "init` writes, ~/.config/gpunet/coordinator.toml]; flags and GPUNET_* win over it",
)
def cli(config: str | None) -> None:
    """gpunet: a GPU network that proves every GPU before it counts."""
    # Read back by cli.config from the root context; nothing else to do here.


cli.add_command(server.server)
cli.add_command(admin.admin)
cli.add_command(calibrate)
cli.add_command(rewards.rewards)
admin.admin.add_command(incidents.incident)
cli.add_command(worker.worker)
cli.add_command(dev.dev)
# Owner commands: they talk to a coordinator over HTTP with the owner's own tokens.
cli.add_command(login)
cli.add_command(devices.devices)
cli.add_command(codes.codes)
cli.add_command(clusters.cluster)
