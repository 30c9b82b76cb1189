"""`gpunet worker`: put this machine's GPUs on the network and keep them there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_COORDINATOR = "http://127.0.0.1:8000"
HOME_HELP = (
    "the agent's state: keys, agent.json [default: $GPUNET_HOME, else the config file's "
    "[worker] home, else ~/.config/gpunet]"
)


def _home(home: str | None) -> Path:
    """--home, else $GPUNET_HOME, else the config file's [worker] home, else
    $XDG_CONFIG_HOME/gpunet (cli.config: one story for every command)."""
    from gpunet.agent.config import agent_home
    from gpunet.cli.config import worker_setting

    chosen = worker_setting("home", home)
    return Path(chosen).expanduser() if chosen else agent_home()


def _discover(cpu_dev: int, home: Path) -> Any:
    import hashlib

    from gpunet.agent.discovery import CpuDevDiscovery, auto_discover, local_host_fingerprint

    cpu = None
    if cpu_dev:
        # Several development agents may share one machine: each agent home is its own
        # "host", so their cpu-dev devices get distinct, stable identities.
        seed = f"{local_host_fingerprint()}|{home.resolve()}".encode()
        cpu = CpuDevDiscovery(cpu_dev, host_fingerprint=hashlib.sha256(seed).hexdigest())
    result = auto_discover(allow_cpu_dev=cpu_dev > 0, cpu_dev=cpu)
    if result.is_refused:
        raise click.ClickException(f"discovery refused this host: {result.refusal}")
    if not result.ok:
        hint = "" if cpu_dev else (
            "; for a local development network without a GPU, add `--cpu-dev 1` "
            "(cpu-dev devices are never paid in production)"
        )
        raise click.ClickException(result.explain() + hint)
    return result


@click.group()
def worker() -> None:
    """The worker agent: enroll GPUs, run, and show their state."""


@worker.command()
@click.option("--code", required=True, help="one-time enrollment code from your account")
@click.option(
    "--coordinator",
    help="the coordinator's URL [default: $GPUNET_COORDINATOR, else the config file's "
    f"[worker] coordinator, else the one this home enrolled with, else {DEFAULT_COORDINATOR}]",
)
@click.option(
    "--cpu-dev",
    default=0,
    type=click.IntRange(0, 64),
    help="with no GPU, enroll this many cpu-dev devices (local networks only)",
)
@click.option("--home", type=click.Path(file_okay=False), help=HOME_HELP)
@click.option(
    "--replace",
    "replace",
    multiple=True,
    metavar="[GPU_UUID=]DEVICE_ID",
    help="this host lost its keys: the GPU takes over DEVICE_ID with a new key (the old "
    "device is retired); name the GPU when the host has several",
)
def enroll(
    code: str, coordinator: str | None, cpu_dev: int, home: str | None, replace: tuple[str, ...]
) -> None:
    """Make a key for each GPU found here and enroll them with CODE."""
    import httpx

    from gpunet.agent.client import CoordinatorError
    from gpunet.agent.config import AgentConfig
    from gpunet.agent.enroll import enroll_host
    from gpunet.agent.keystore import Keystore
    from gpunet.cli.config import worker_setting

    root = _home(home)
    # After the flag, variable and file: the coordinator this home enrolled with before
    # (a re-enrollment, or --replace after losing the keys), then the local default.
    previous = AgentConfig.load(root)
    chosen = worker_setting("coordinator", coordinator) or (
        previous.coordinator_url if previous else None
    )
    coordinator = chosen or DEFAULT_COORDINATOR
    found = _discover(cpu_dev, root)
    click.echo(
        f"found {len(found.gpus)} device(s): "
        + ", ".join(f"{g.claim.model} ({g.claim.vram_mib} MiB)" for g in found.gpus)
    )
    replaces = _replacements(replace, [g.gpu_uuid for g in found.gpus])
    try:
        with httpx.Client(base_url=coordinator, timeout=30.0) as http:
            result = enroll_host(
                http,
                Keystore(root / "keys"),
                code=code,
                gpus=found.gpus,
                coordinator_url=coordinator,
                progress=click.echo,
                replaces=replaces,
            )
    except CoordinatorError as exc:
        raise click.ClickException(f"enrollment refused: {exc}") from exc
    except httpx.HTTPError as exc:
        hint = "" if chosen else " (the default: pass --coordinator URL)"
        raise click.ClickException(
            f"cannot reach the coordinator at {coordinator}{hint}: {exc}"
        ) from exc
    control = result.control or (previous.control if previous else None)
    AgentConfig(coordinator_url=coordinator, cpu_dev=cpu_dev, control=control).save(root)
    if control:
        click.echo(f"control channel: {control} (saved in {root / 'agent.json'})")
    for uuid, device_id in result.enrolled:
        click.echo(f"enrolled {uuid} as {device_id} (pending until it passes a proof of GPU)")
    for uuid, device_id in result.already:
        click.echo(f"already enrolled: {uuid} as {device_id}")
    click.echo("next: `gpunet worker run` (or install the systemd unit: `gpunet worker unit`)")


def _replacements(values: tuple[str, ...], uuids: list[str]) -> dict[str, str]:
    """--replace values as {GPU UUID: device id}; a bare device id needs a one-GPU host."""
    out: dict[str, str] = {}
    for value in values:
        uuid, _, device_id = value.rpartition("=")
        if not uuid:
            if len(uuids) != 1:
                raise click.BadParameter(
                    f"this host has {len(uuids)} devices: say which GPU replaces {device_id} "
                    "(GPU_UUID=DEVICE_ID)",
                    param_hint="--replace",
                )
            uuid = uuids[0]
        if uuid not in uuids:
            raise click.BadParameter(f"no GPU {uuid} on this host", param_hint="--replace")
        out[uuid] = device_id
    return out


def _control_endpoints(control: str | None, config: Any) -> list[tuple[str, int]]:
    """--control (or GPUNET_CONTROL, or the config file's [worker] control), else what
    the coordinator said at enrollment."""
    from gpunet.cli.config import worker_setting

    given = worker_setting("control", control) or config.control
    if not given:
        raise click.ClickException(
            "the coordinator did not say where its control channel is (enrolled with an "
            "older coordinator): enroll again, or pass --control HOST:PORT "
            "(the port `gpunet server run` prints as 'control channel for agents')"
        )
    endpoints = []
    for item in given.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"{item!r} is not HOST:PORT", param_hint="--control")
        endpoints.append((host.strip("[]"), int(port)))
    return endpoints


@worker.command()
@click.option("--home", type=click.Path(file_okay=False), help=HOME_HELP)
@click.option(
    "--control",
    envvar="GPUNET_CONTROL",
    help="HOST:PORT of the coordinator's control channel "
    "[default: the address the coordinator gave at enrollment]",
)
@click.option(
    "--ray-cpus", envvar="GPUNET_RAY_CPUS", default=1, show_default=True,
    type=click.IntRange(1, 1024), help="CPUs each of this host's cluster nodes offers Ray",
)
@click.option(
    "--ray-node-ip", envvar="GPUNET_RAY_NODE_IP",
    help="the address other cluster nodes and customers reach this host at "
    "[default: this host's address on the route to the coordinator]",
)
@click.option("-v", "--verbose", is_flag=True)
def run(
    home: str | None, control: str | None, ray_cpus: int, ray_node_ip: str | None, verbose: bool
) -> None:
    """Keep this host's devices on the network: heartbeats, proofs, cluster commands.

    Runs in the foreground until interrupted; reconnects by itself after coordinator
    restarts, network loss or a replica change.
    """
    import asyncio
    import logging
    import signal

    from gpunet.agent.config import AgentConfig
    from gpunet.agent.control import ControlClient
    from gpunet.agent.hardware import hardware_report
    from gpunet.agent.keystore import Keystore
    from gpunet.agent.provers import get_prover
    from gpunet.agent.ray_node import cluster_nodes
    from gpunet.core.clusters import REPORT

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    root = _home(home)
    config = AgentConfig.load(root)
    store = Keystore(root / "keys")
    stored = [d for d in store.devices() if d.enrolled]
    if config is None or not stored:
        raise click.ClickException("no enrolled devices here: run `gpunet worker enroll`")
    found = _discover(config.cpu_dev, root)
    gpus = {g.gpu_uuid: g for g in found.gpus}
    by_device = {str(d.device_id): d.gpu_uuid for d in stored}
    missing = [u for u in by_device.values() if u not in gpus]
    if missing:
        click.echo(
            f"warning: enrolled GPU(s) not found on this host now: {', '.join(missing)}", err=True
        )
    endpoints = _control_endpoints(control, config)

    provers = {d: _ready_prover(gpus.get(u)) for d, u in by_device.items()}

    def prover_for(device_id: str) -> Any:
        return provers.get(device_id) or get_prover("cpu")

    def hardware_for(device_id: str) -> Any:
        return hardware_report(found.gpus, by_device[device_id])

    nodes = cluster_nodes(root, endpoints[0], ray_node_ip, ray_cpus,
                          {d: gpus.get(u) for d, u in by_device.items()})
    client = ControlClient(
        endpoints,
        [store.live_signer(d.gpu_uuid) for d in stored],
        server_id=str(stored[0].coordinator_url or config.coordinator_url),
        provers=prover_for,
        hardware=hardware_for,
        on_upgrade=lambda u: click.echo(f"coordinator says: {u}", err=True),
        commands=nodes.handlers(),
    )
    nodes.report = lambda args: client.command(REPORT, args)
    click.echo(
        f"running {len(stored)} device(s) against "
        + ", ".join(f"{h}:{p}" for h, p in endpoints)
        + "; Ctrl-C to stop"
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(client.stop()))
        try:
            await client.run()
        finally:
            await nodes.stop_all()  # customers' nodes stop with the agent

    asyncio.run(main())
    click.echo("stopped")


@worker.command()
@click.option("--home", type=click.Path(file_okay=False), help=HOME_HELP)
@click.option("--json", "as_json", is_flag=True)
def status(home: str | None, as_json: bool) -> None:
    """What each local device is: status, last heartbeat, last proof, cluster."""
    import json

    import httpx

    from gpunet.agent.client import CoordinatorError, WorkerClient
    from gpunet.agent.config import AgentConfig
    from gpunet.agent.keystore import Keystore

    root = _home(home)
    config = AgentConfig.load(root)
    store = Keystore(root / "keys")
    devices = [d for d in store.devices() if d.enrolled]
    if config is None or not devices:
        raise click.ClickException("no enrolled devices here: run `gpunet worker enroll`")
    rows = []
    with httpx.Client(base_url=config.coordinator_url, timeout=10.0) as http:
        for d in devices:
            # A live signer retries a refused signature with the pending key of an
            # interrupted rotation and finishes the rotation if the coordinator has it.
            client = WorkerClient(http, store.live_signer(d.gpu_uuid))
            note = None
            try:
                info = client.whoami()
            except (CoordinatorError, httpx.HTTPError) as exc:
                info = {"device_id": d.device_id, "status": f"unknown ({exc})"}
                if _keys_refused(exc):
                    note = _refused_note(store.device(d.gpu_uuid).rotation_pending)
            if client.recovered_rotation:
                note = (
                    "a key rotation had been interrupted after the coordinator accepted the "
                    "new key; it is now finished here (nothing to do)"
                )
            elif note is None and store.device(d.gpu_uuid).rotation_pending:
                note = (
                    "a key rotation was interrupted before the coordinator took the new key; "
                    "the current key still works. Run `gpunet worker rotate-key` to finish it"
                )
            rows.append({"gpu_uuid": d.gpu_uuid, **info, **({"note": note} if note else {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['device_id']}  {r['status']:<10} profile={r.get('profile') or '-'}  "
            # The last heartbeat the coordinator received, not the time of this request.
            f"last heartbeat={r.get('last_heartbeat_at') or 'never'}  "
            f"last proof={r.get('last_pass_at') or 'never'}  "
            f"cluster={r.get('cluster') or '-'}"
        )
        if r.get("note"):
            click.echo(f"  note: {r['note']}")


def _keys_refused(exc: Exception) -> bool:
    """A 401 that says no key of this host is accepted; not a clock off by minutes (that
    401 names the offset and NTP itself, and any key would be refused the same)."""
    from gpunet.agent.client import CoordinatorError

    return (
        isinstance(exc, CoordinatorError)
        and exc.status == 401
        and "timestamp outside the allowed window" not in str(exc)
    )


def _refused_note(rotation_pending: bool) -> str:
    """What to do when the coordinator refuses every key this host holds for a device."""
    tried = "neither its current key nor its pending rotation key" if rotation_pending else (
        "its key"
    )
    return (
        f"the coordinator accepts {tried}: the device may have been retired or its key "
        "replaced from another host, or this host is pointed at another coordinator. "
        "Check `gpunet worker status` against the right --home and coordinator; if the key "
        "was lost, re-enroll it with a fresh code (`gpunet worker enroll --code ...`)"
    )


@worker.command("rotate-key")
@click.option("--home", type=click.Path(file_okay=False), help=HOME_HELP)
@click.option("--device", "device_id", help="one device id (default: every device here)")
def rotate_key(home: str | None, device_id: str | None) -> None:
    """Give devices fresh keys; identity, status and uptime stay as they are.

    A running agent picks the new keys up on its next session.
    """
    import httpx

    from gpunet.agent.client import CoordinatorError
    from gpunet.agent.config import AgentConfig
    from gpunet.agent.keystore import Keystore
    from gpunet.agent.rotation import rotate_device_key

    root = _home(home)
    config = AgentConfig.load(root)
    store = Keystore(root / "keys")
    targets = [
        d for d in store.devices() if d.enrolled and (device_id is None or d.device_id == device_id)
    ]
    if config is None or not targets:
        raise click.ClickException("no such enrolled device here")
    with httpx.Client(base_url=config.coordinator_url, timeout=30.0) as http:
        for d in targets:
            try:
                rotate_device_key(http, store, d.gpu_uuid)
            except CoordinatorError as exc:
                raise click.ClickException(
                    f"{d.device_id}: rotation refused: {exc}. " + _rotation_hint(exc)
                ) from exc
            except httpx.HTTPError as exc:
                raise click.ClickException(
                    f"{d.device_id}: cannot reach the coordinator ({exc}). Rerun "
                    "`gpunet worker rotate-key`: the pending key is kept, and a running agent "
                    "finishes the rotation by itself if the coordinator already took it"
                ) from exc
            click.echo(f"{d.device_id}: new key in use")


def _rotation_hint(exc: Exception) -> str:
    """What to do after a refused rotation, by why it was refused."""
    if _keys_refused(exc):
        return _refused_note(rotation_pending=True)
    if getattr(exc, "status", None) == 403:
        return "The coordinator's message says what to do."  # retired, suspended, blocked
    return (
        "The current key stays in use; the new key is kept pending and rerunning "
        "`gpunet worker rotate-key` retries it"
    )


@worker.command()
def unit() -> None:
    """Print a systemd unit that runs the agent.

    Install it as /etc/systemd/system/gpunet-worker.service, then
    `systemctl enable --now gpunet-worker`.
    """
    exe = Path(sys.argv[0]).resolve()
    click.echo(f"""[Unit]
Description=gpunet worker agent
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={exe} worker run
Restart=always
RestartSec=5
# The agent reconnects by itself; systemd only restarts it if the process dies.
User=gpunet
Environment=GPUNET_HOME=/var/lib/gpunet
StateDirectory=gpunet
StateDirectoryMode=0700
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target""")


def _ready_prover(gpu: Any) -> Any:
    """The prover for one enrolled GPU, on its own CUDA device, with its one-time costs
    (the CUDA prover compiles its digest kernel: tens of seconds) paid before the agent
    connects, since a challenge's clock starts when it is issued."""
    from gpunet.agent.provers import get_prover
    from gpunet.core.pog import default_catalog

    if gpu is None:
        return get_prover("cpu")
    options = {"device": f"cuda:{gpu.index}"} if gpu.backend == "cuda" else {}
    prover = get_prover(gpu.backend, **options)
    profile = default_catalog().get(gpu.model_key or "")
    if profile is not None and gpu.backend != "cpu":
        click.echo(f"preparing the {gpu.backend} prover for {profile.key}...", err=True)
        prover.warm_up(profile.params)
    return prover
