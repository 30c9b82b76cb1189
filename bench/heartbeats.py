"""Heartbeats over the control channel: how many devices one coordinator holds.

    .venv/bin/python bench/heartbeats.py --devices 19000 --per-host 1 --seconds 15
    .venv/bin/python bench/heartbeats.py --devices 150000 --per-host 8 --seconds 15

Three processes on this machine: this orchestrator; one coordinator control server
(the real `ControlServer` on the real `AppState`, uvloop as under uvicorn, SQLite);
one load generator. Devices get their own Ed25519 keys and are inserted straight
into the database as verified (enrollment has its own benchmark), so every heartbeat
also goes through the real uptime recorder. The generator then

1. opens every host session (one auth per device over the session's nonce): handshakes/s;
2. reads the server's RSS before and after: memory per connected device and session;
3. saturates: heartbeat frames as fast as it can write them, for --seconds; the rate
   is what the server counted (its own stats over a control command), not what was sent;
4. paces heartbeats at --rate frames/s, for --seconds, while 100 sampled sessions
   send timestamped pings (answered in order behind the heartbeats before them):
   p50/p99 round trip at that load, and again under saturation.

One frame carries every device of its host (--per-host); "device beats" count devices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

SERVER_ID = "http://bench.gpunet.invalid"


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- setup ------------------------------------------------------------------------------


def populate(url: str, count: int, keys_path: Path) -> None:
    """One owner, `count` verified cpu-dev devices, each with its own key."""
    from sqlalchemy import insert

    from gpunet.core.signing import public_key_text
    from gpunet.server.db import migrate
    from gpunet.server.db.engine import Database
    from gpunet.server.db.tables import Device, Owner

    db = Database(url)
    migrate.upgrade(db.engine)
    now = dt.datetime.now(dt.UTC)
    keys = [Ed25519PrivateKey.generate() for _ in range(count)]
    raw = b"".join(
        k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()) for k in keys
    )
    with db.transaction() as s:
        owner_id = s.execute(
            insert(Owner).values(email="bench@example.com", created_at=now, is_admin=False)
            .returning(Owner.id)
        ).scalar_one()
        rows = [
            {
                "public_id": f"dev_bench{i:09d}", "owner_id": owner_id, "status": "verified",
                "public_key": public_key_text(k.public_key()), "vendor": "cpu",
                "model": "cpu-dev", "vram_mib": 1024, "gpu_uuid": f"GPU-bench-{i:012d}",
                "pci_bus_id": "none", "host_fingerprint": f"host-{i}", "driver_version": "0",
                "created_at": now, "updated_at": now, "status_changed_at": now, "failures": 0,
            }
            for i, k in enumerate(keys)
        ]
        for i in range(0, len(rows), 5000):
            s.execute(insert(Device), rows[i : i + 5000])
    db.dispose()
    keys_path.write_bytes(raw)


# -- the coordinator process --------------------------------------------------------------


async def serve(url: str, port: int) -> None:
    from gpunet.server.app import create_app
    from gpunet.server.control import ControlServer, ControlSettings
    from gpunet.server.settings import Settings

    settings = Settings(database_url=url, background_jobs=False, public_url=SERVER_ID)
    state = create_app(settings).state.gpunet
    server: ControlServer

    async def stats(_session: Any, _args: dict[str, Any]) -> dict[str, Any]:
        st = server.stats
        return {
            "heartbeats": st.heartbeats, "device_beats": st.device_beats,
            "counted": st.counted_beats, "handshakes": st.handshakes,
            "sessions": len(server.sessions), "devices": len(server.by_device),
            "rss_kib": _rss_kib(), "cpu_s": time.process_time(),
            "auth_batches": server.auth.batches,
        }

    server = ControlServer(
        state, ControlSettings(heartbeat_s=60.0, push_interval_s=0.5),
        commands={"bench.stats": stats},
    )
    await server.start("127.0.0.1", port)
    print("READY", server.port, flush=True)
    await asyncio.Event().wait()


# -- the load generator -------------------------------------------------------------------


class Host:
    __slots__ = ("backlog", "decoder", "devices", "hb", "reader", "writer")

    def __init__(self, devices: list[tuple[str, Ed25519PrivateKey]]) -> None:
        self.devices = devices
        self.backlog: list[dict[str, Any]] = []

    async def open(self, port: int) -> None:
        from gpunet.core import control

        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.decoder = control.FrameDecoder()
        hello = control.Hello.parse(await self.next())
        entries = tuple(
            (d, k.sign(control.auth_message(server_id=SERVER_ID, nonce=hello.nonce,
                                            device_id=d)))
            for d, k in self.devices
        )
        self.writer.write(control.encode(control.Auth((1, 1), "0.1.0", entries).wire()))
        welcome = control.Welcome.parse(await self.next())
        assert len(welcome.accepted) == len(self.devices), welcome.refused[:3]
        self.hb = control.encode(control.heartbeat(1))

    async def next(self) -> dict[str, Any]:
        while not self.backlog:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionResetError("server closed")
            self.backlog.extend(self.decoder.feed(data))
        return self.backlog.pop(0)


async def call(host: Host, name: str) -> Any:
    from gpunet.core import control

    host.writer.write(control.encode(control.command(secrets.token_hex(4), name, {})))
    reply = await host.next()
    return reply["result"]


class Sampler:
    """Timestamped pings on a fixed sample of sessions, one outstanding per session."""

    def __init__(self, hosts: list[Host], per_second: float) -> None:
        self.hosts, self.per_second = hosts, per_second
        self.rtts: list[float] = []
        self.running = True

    async def _one(self, host: Host) -> None:
        from gpunet.core import control

        gap = len(self.hosts) / self.per_second
        await asyncio.sleep(random.uniform(0, gap))
        while self.running:
            started = time.perf_counter()
            host.writer.write(control.encode({"t": "ping", "id": 1, "ts": time.time()}))
            msg = await host.next()
            assert msg["t"] == "pong"
            self.rtts.append(time.perf_counter() - started)
            await asyncio.sleep(gap)

    async def run(self) -> None:
        await asyncio.gather(*(self._one(h) for h in self.hosts))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


async def pump(hosts: list[Host], seconds: float, rate: float | None) -> None:
    """Write heartbeat frames round-robin: as fast as possible, or paced at `rate`/s."""
    end = time.perf_counter() + seconds
    started = time.perf_counter()
    sent = 0
    i = 0
    n = len(hosts)
    while time.perf_counter() < end:
        if rate is not None:
            due = int((time.perf_counter() - started) * rate) - sent
            if due <= 0:
                await asyncio.sleep(0.002)
                continue
            burst = min(due, 256)
        else:
            burst = 256
        for _ in range(burst):
            h = hosts[i]
            h.writer.transport.write(h.hb)
            i = (i + 1) % n
        sent += burst
        await asyncio.sleep(0)
        # Never let unsent frames pile up in this process: that would measure our memory.
        while sum(h.writer.transport.get_write_buffer_size() for h in hosts[:64]) > 1 << 20:
            await asyncio.sleep(0.005)


async def load(port: int, keys_path: Path, count: int, per_host: int, seconds: float,
               rate: float, concurrency: int) -> dict[str, Any]:
    raw = keys_path.read_bytes()
    keys = [Ed25519PrivateKey.from_private_bytes(raw[i * 32 : i * 32 + 32]) for i in range(count)]
    ids = [f"dev_bench{i:09d}" for i in range(count)]
    admin = Host([(ids[0], keys[0])])
    await admin.open(port)
    devices = list(zip(ids[1:], keys[1:], strict=True))
    hosts = [Host(devices[i : i + per_host]) for i in range(0, len(devices), per_host)]
    base = await call(admin, "bench.stats")

    sem = asyncio.Semaphore(concurrency)

    async def opened(h: Host) -> None:
        async with sem:
            await h.open(port)

    t0 = time.perf_counter()
    await asyncio.gather(*(opened(h) for h in hosts))
    handshake_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    connected = await call(admin, "bench.stats")
    handshake_cpu = connected["cpu_s"] - base["cpu_s"]
    sample = random.Random(7).sample(hosts, min(100, len(hosts)))
    rest = [h for h in hosts if h not in set(sample)]

    async def phase(pace: float | None) -> dict[str, Any]:
        sampler = Sampler(sample, per_second=200)
        task = asyncio.get_running_loop().create_task(sampler.run())
        before = await call(admin, "bench.stats")
        t = time.perf_counter()
        await pump(rest, seconds, pace)
        after = await call(admin, "bench.stats")
        wall = time.perf_counter() - t
        sampler.running = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        frames = (after["heartbeats"] - before["heartbeats"]) / wall
        beats = (after["device_beats"] - before["device_beats"]) / wall
        return {
            "frames_per_s": round(frames), "device_beats_per_s": round(beats),
            "server_cpu_share": round((after["cpu_s"] - before["cpu_s"]) / wall, 2),
            # Server CPU per frame, all included (read, decode, record): 1 / per-core capacity.
            "server_us_per_frame": round(
                (after["cpu_s"] - before["cpu_s"]) * 1e6
                / max(1, after["heartbeats"] - before["heartbeats"]), 1),
            "rtt_p50_ms": round(pct(sampler.rtts, 0.5), 2),
            "rtt_p99_ms": round(pct(sampler.rtts, 0.99), 2), "pings": len(sampler.rtts),
            "devices_at_60s": round(beats * 60),
        }

    saturated = await phase(None)
    paced = await phase(rate)
    final = await call(admin, "bench.stats")
    grown = (connected["rss_kib"] - base["rss_kib"]) * 1024
    return {
        "devices": count - 1, "per_host": per_host, "sessions": len(hosts),
        "connected_devices": connected["devices"] - 1,
        "handshakes_per_s": round(len(hosts) / handshake_s),
        "device_auths_per_s": round((count - 1) / handshake_s),
        "server_cpu_share_handshakes": round(handshake_cpu / handshake_s, 2),
        "server_us_per_device_auth": round(handshake_cpu * 1e6 / (count - 1)),
        "sessions_per_auth_batch": round(
            len(hosts) / max(1, connected["auth_batches"] - base["auth_batches"]), 1),
        "rss_before_mib": round(base["rss_kib"] / 1024, 1),
        "rss_connected_mib": round(connected["rss_kib"] / 1024, 1),
        "rss_end_mib": round(final["rss_kib"] / 1024, 1),
        "bytes_per_device": round(grown / (count - 1)),
        "bytes_per_session": round(grown / len(hosts)),
        "saturated": saturated, f"paced_{round(rate)}": paced,
        "counted_beats": final["counted"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--per-host", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=10_000.0, help="paced frames per second")
    p.add_argument("--concurrency", type=int, default=256, help="handshakes in flight")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--load", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    _uvloop()
    if a.serve:
        asyncio.run(serve(a.serve, a.port))
        return
    if a.load:
        out = asyncio.run(load(a.port, Path(a.load), a.devices + 1, a.per_host, a.seconds,
                               a.rate, a.concurrency))
        print(json.dumps(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        keys = Path(tmp) / "keys.bin"
        t = time.perf_counter()
        populate(url, a.devices + 1, keys)
        print(f"# {a.devices} devices with their own keys in {time.perf_counter() - t:.1f}s",
              file=sys.stderr)
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", url], stdout=subprocess.PIPE, env=env,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline().split()
            assert line and line[0] == "READY", line
            gen = subprocess.run(
                [sys.executable, __file__, "--load", str(keys), "--port", line[1],
                 "--devices", str(a.devices), "--per-host", str(a.per_host),
                 "--seconds", str(a.seconds), "--rate", str(a.rate),
                 "--concurrency", str(a.concurrency)],
                capture_output=True, text=True, env=env, check=False,
            )
            if gen.returncode != 0:
                sys.exit(gen.stderr[-4000:])
            result = json.loads(gen.stdout.strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait(10)
    result["cores"] = os.cpu_count()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
