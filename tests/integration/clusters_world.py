"""Helpers for the cluster tests: devices ready to be placed, and agents that answer
cluster commands the way the real agent does (without starting Ray)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from gpunet.core import clusters as cc
from gpunet.server.api.deps import AppState
from gpunet.server.background.clusters import ClusterDriver
from gpunet.server.control import clusters as relay
from gpunet.server.db.cluster_tables import ClusterCommand
from gpunet.server.db.tables import Device
from gpunet.server.services.clusters import agents, driver, outbox
from gpunet.server.services.clusters.settings import ClusterSettings
from tests.integration.conftest import DeviceHandle, Net, OwnerHandle

CPU_DEV = {
    "vendor": "cpu",
    "model": "cpu-dev",
    "vram_mib": 1024,
    "pci_bus_id": "none",
    "driver_version": "0.1.0",
}
SETTINGS = ClusterSettings(
    build_timeout_s=120, command_timeout_s=30, online_window_s=150, lost_after_s=20
)


def state_of(net: Net) -> AppState:
    st: AppState = net.client.app.state.gpunet  # type: ignore[attr-defined]
    st.clusters = SETTINGS
    return st


def ready_devices(
    net: Net, owner: OwnerHandle, count: int, *, host: str = "host-fingerprint-0001",
    enrolled_from: str | None = None,
) -> list[DeviceHandle]:
    """cpu-dev devices, verified a day ago, heard from now: what placement wants."""
    devs = net.enroll(owner, count, host=host, **CPU_DEV)
    now = net.clock.now()
    with net.database.transaction() as s:
        s.execute(
            update(Device)
            .where(Device.public_id.in_([d.device_id for d in devs]))
            .values(
                status="verified",
                profile="cpu-dev",
                status_changed_at=now - dt.timedelta(days=1),
                last_pass_at=now - dt.timedelta(hours=1),
                last_heartbeat_at=now,
                next_check_at=now + dt.timedelta(days=1),
                **({"enrolled_from": enrolled_from} if enrolled_from else {}),
            )
        )
    return devs


def heard(net: Net, but: Collection[str] = ()) -> None:
    """Every device's heartbeat heard now (the uptime flush writes this), except `but`'s
    (public ids): their agents are gone."""
    with net.database.transaction() as s:
        s.execute(
            update(Device)
            .where(Device.public_id.not_in(list(but)))
            .values(last_heartbeat_at=net.clock.now())
        )


@dataclass
class FakeAgents:
    """Answers the outbox's commands as agents would: the head reports its address, a
    check sees every node that runs. `down` devices never answer."""

    net: Net
    st: AppState
    down: set[str] = field(default_factory=set)
    running: dict[str, set[str]] = field(default_factory=dict)  # cluster -> devices
    seen: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def _public(self) -> dict[int, str]:
        with self.net.database.read() as s:
            return dict(s.execute(select(Device.id, Device.public_id)).all())

    def answer(self, item: outbox.Delivery, public: str) -> tuple[bool, Any]:
        args = item.args
        cluster = str(args.get("cluster"))
        nodes = self.running.setdefault(cluster, set())
        if item.name == cc.START:
            start = cc.StartNode.parse(args)
            nodes.add(public)
            ip = f"10.0.0.{len(nodes)}"
            return True, cc.NodeStarted(
                ip, f"{ip}:6379" if start.is_head else None,
                f"{ip}:8265" if start.is_head else None,
            ).wire()
        if item.name == cc.STOP:
            nodes.discard(public)
            return True, {"stopped": True}
        if item.name == cc.STATUS:
            return True, {"running": public in nodes}
        if item.name == cc.CHECK:
            alive = sorted(n for n in nodes if n not in self.down)
            return True, {"alive": alive, "ran": alive}
        return False, "unknown command"

    def step(self) -> int:
        """Deliver and answer every command due now; the number answered."""
        public = self._public()
        live = [pk for pk, pid in public.items() if pid not in self.down]
        # What the replica holding the hosts' sessions does (token added in memory).
        claimed = relay.claim(self.st, live)
        for item in claimed:
            pid = public[item.device_id]
            self.seen.append((item.name, pid, item.args))
            ok, result = self.answer(item, pid)
            with self.net.database.transaction() as s:
                d = driver.Drive(s, self.net.clock.now(), self.st.clusters, self.st.catalog)
                agents.answered(s, d, item.id, ok=ok, result=result)
        return len(claimed)

    def settle(self, rounds: int = 20) -> None:
        """Answer commands and run the driver until nothing moves."""
        job = ClusterDriver(self.net.database, self.net.clock, self.st.catalog, self.st.clusters)
        heard(self.net, but=self.down)
        for _ in range(rounds):
            job.run_once()
            if not self.step():
                job.run_once()
                if not self.step():
                    return


def outbox_args(net: Net) -> list[dict[str, Any]]:
    with net.database.read() as s:
        return [json.loads(a) for a in s.execute(select(ClusterCommand.args)).scalars()]
