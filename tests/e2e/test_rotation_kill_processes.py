"""A real `gpunet worker rotate-key` process SIGKILLed at every step of a rotation, then
the real agent process restarted: every device is proven again by itself, with the same
identity and its uptime, and nobody reruns anything (issue 12, finding 1).

One host with one cpu-dev device per step (`rotation.STEPS`); the rotation of device i
is killed at step i by `tests.e2e.kill_at_step` (the real command line plus a hook that
SIGKILLs the process at the named step), beside the running agent, as an owner would
rotate. Then the agent is SIGKILLed and started again, and a roll-call proves every
device through the channel. Finally the coordinator restarts, and the agent's log says
it reconnected.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gpunet.agent import rotation
from gpunet.agent.keystore import Keystore, StoredDevice
from gpunet.server.db.tables import Device, UptimeSlots
from tests.e2e.test_network_processes import (
    GPUNET,
    Coordinator,
    Network,
    rollcall_all,
    sqlite_network_of,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
STEPS = rotation.STEPS


class OneSecondSlots(Coordinator):
    """Uptime in one-second slots, so a test sees uptime accrue again in seconds."""

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "GPUNET_REWARDS_SLOT_SECONDS": "1",
            "GPUNET_REWARDS_EPOCH_SECONDS": "3600",
        }


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Network]:
    with sqlite_network_of(tmp_path, OneSecondSlots) as net:
        yield net


def _enroll_and_run(net: Network) -> Path:
    """One agent home with len(STEPS) cpu-dev devices, enrolled and running (no --control:
    the address the coordinator gave at enrollment)."""
    import httpx

    home = net.workdir / "agent"
    code = httpx.post(
        net.first.url + "/api/v1/enrollment-codes",
        json={"max_devices": len(STEPS)},
        headers={"Authorization": f"Bearer {net.token()}"},
    ).json()["code"]
    done = subprocess.run(
        [GPUNET, "worker", "enroll", "--code", code, "--coordinator", net.first.public_url,
         "--cpu-dev", str(len(STEPS))],
        env=_env(net, home), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    net.homes.append(home)
    _start_agent(net, home)
    return home


def _env(net: Network, home: Path) -> dict[str, str]:
    return {**net.first.env(), "GPUNET_HOME": str(home)}


def _start_agent(net: Network, home: Path) -> None:
    log = open(home / "agent.log", "ab")  # noqa: SIM115 - lives as long as the child
    net.agents = [subprocess.Popen([GPUNET, "worker", "run"], env=_env(net, home), stdout=log,
                                   stderr=subprocess.STDOUT)]


def _keys_on_coordinator(net: Network) -> dict[str, str]:
    with net.db().connect() as conn:
        return dict(conn.execute(select(Device.public_id, Device.public_key)).all())


def _uptime(net: Network) -> dict[str, int]:
    """Verified uptime slots per device (public id), all chunks together."""
    with net.db().connect() as conn:
        rows = conn.execute(
            select(Device.public_id, UptimeSlots.bits).join(
                UptimeSlots, UptimeSlots.device_id == Device.id
            )
        ).all()
    out: dict[str, int] = {}
    for device, bits in rows:
        out[device] = out.get(device, 0) + bin(bits).count("1")
    return out


def _stored(home: Path) -> dict[str, StoredDevice]:
    return {str(d.device_id): d for d in Keystore(home / "keys").devices()}


def _rotate_killed_at(net: Network, home: Path, device_id: str, step: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.kill_at_step", "worker", "rotate-key",
         "--device", device_id],
        env={**_env(net, home), "GPUNET_TEST_KILL_AT": step},
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, (step, done.returncode, done.stderr)


def test_rotate_key_sigkilled_at_every_step_heals_after_an_agent_restart(host: Network) -> None:
    net = host
    home = _enroll_and_run(net)
    wait_for("every device verified through the real protocol",
             lambda: sorted(net.devices().values()) == ["verified"] * len(STEPS), 60)
    device_ids = sorted(_stored(home))
    identities = net.devices()
    wait_for("every device earns uptime",
             lambda: len(_uptime(net)) == len(STEPS) and min(_uptime(net).values()) > 0, 30)
    wait_for("no proof in flight", lambda: net.outstanding() == 0, 30)
    before = _stored(home)
    killed_at = dict(zip(device_ids, STEPS, strict=True))

    for device_id, step in killed_at.items():
        _rotate_killed_at(net, home, device_id, step)
    uptime_killed = _uptime(net)

    # The agent dies too (a reboot, the OOM killer) and its supervisor starts it again.
    net.agents[0].send_signal(signal.SIGKILL)
    net.agents[0].wait(timeout=10)
    restarted = dt.datetime.now(dt.UTC)
    _start_agent(net, home)
    rollcall_all(net, net.first, len(STEPS), since=restarted)

    assert net.devices() == identities  # the same devices, every one verified
    held, after = _keys_on_coordinator(net), _stored(home)
    for device_id, step in killed_at.items():
        old, now = before[device_id], after[device_id]
        # The agent signs with exactly the key the coordinator holds ...
        assert now.public_key == held[device_id], step
        # ... which is new where the coordinator had taken it (the agent finished the
        # swap for "answered"); a rotation it never saw stays pending for a rerun.
        assert (now.public_key != old.public_key) == (step in ("answered", "committed")), step
        assert now.rotation_pending == (step in ("pending_written", "request_sent")), step
    log = (home / "agent.log").read_text()
    healed = [d for d in device_ids if f"device {d}: the coordinator holds the key" in log]
    assert healed == [d for d, s in killed_at.items() if s == "answered"]
    # Uptime: nothing lost, and it accrues again for every device after the restart.
    assert all(_uptime(net)[d] >= n for d, n in uptime_killed.items())
    grown = _uptime(net)
    wait_for("every device earns uptime again",
             lambda: all(_uptime(net)[d] > n for d, n in grown.items()), 30)

    # An ordinary rerun finishes the rotations that were left pending.
    done = subprocess.run([GPUNET, "worker", "rotate-key"], env=_env(net, home),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.count("new key in use") == len(STEPS), (
        done.stdout + done.stderr)
    held, after = _keys_on_coordinator(net), _stored(home)
    assert all(after[d].public_key == held[d] and not after[d].rotation_pending
               for d in device_ids)

    # The coordinator restarts: the agent comes back by itself and says so.
    wait_for("no proof in flight", lambda: net.outstanding() == 0, 30)
    said = (home / "agent.log").read_text().count
    back = said("reconnected to the control channel")
    net.first.kill()
    net.first.start()
    wait_for("the agent logs its reconnection",
             lambda: (home / "agent.log").read_text().count(
                 "reconnected to the control channel") > back, 30)
    assert net.agents[0].poll() is None
