"""Clusters: placement time against a large network, and request-to-ready on real Ray.

    python bench/clusters.py placement postgresql://user@host:port/db [--devices 600000] [-n 200]
    python bench/clusters.py ready [--runs 3]

`placement` seeds `gpunet_bench_clusters` (next to the given database; dropped after) by
COPY with N devices: 8 models, 6 regions, 90% verified, 8 devices per host, a third of
the hosts' networks shared, 10% already in a cluster. It then times, in one transaction
each (rolled back, so every request sees the same network):
- `reserve`: what POST /api/v1/clusters does to place (candidates read, placed, locked);
- `place`: the pure placement alone, on the candidates `reserve` read;
for requests of 1, 2, 4 and 8 devices of one model (a model is an eighth of the
network), and prints p50/p99 per kind.

`ready` starts a coordinator and two cpu-dev agents as processes on this machine (as
tests/e2e/test_clusters_ray.py does), asks for a 2-node cluster through the SDK and
prints the seconds from the request to `ready` (Ray reports both nodes and a task ran
on each), per run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

from gpunet.core.clock import FrozenClock
from gpunet.core.clusters import ClusterRequest
from gpunet.core.placement import place
from gpunet.core.pog import load_catalog
from gpunet.server.db import migrate
from gpunet.server.db.engine import Database, normalise_url
from gpunet.server.services.clusters import reservation

MODELS = ["h100-sxm", "h200", "a100-80gb", "l40s", "rtx-4090", "rtx-3090", "h100-pcie",
          "a100-40gb"]
REGIONS = ["us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast"]
NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
PER_HOST = 8


def _copy(raw: object, sql: str, rows: Iterator[tuple[object, ...]]) -> None:
    with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
        for row in rows:
            copy.write_row(row)


def seed(url: str, devices: int) -> None:
    engine = create_engine(url)
    ts = NOW.isoformat()
    old = (NOW - dt.timedelta(days=3)).isoformat()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        _copy(raw, "COPY owners (id, email, is_admin, created_at) FROM STDIN",
              iter([(1, "supplier@bench.example", False, ts),
                    (2, "customer@bench.example", False, ts)]))

        def rows() -> Iterator[tuple[object, ...]]:
            for i in range(devices):
                host = i // PER_HOST
                model = MODELS[host % len(MODELS)]
                status = "verified" if i % 10 else "pending"
                net = f"10.{(host // 3) // 250 % 250}.{(host // 3) % 250}.{host % 3 + 1}"
                yield (i + 1, f"dev_{i:016d}", 1, status, f"key{i:040d}", "nvidia", model,
                       81559, f"GPU-{i:08d}", "none", f"host{host:012d}", "550.0",
                       REGIONS[host % len(REGIONS)], net, ts, ts, old, ts, model, 0)

        _copy(raw, "COPY devices (id, public_id, owner_id, status, public_key, vendor, model, "
              "vram_mib, gpu_uuid, pci_bus_id, host_fingerprint, driver_version, region, "
              "enrolled_from, created_at, updated_at, status_changed_at, last_heartbeat_at, "
              "profile, failures) FROM STDIN", rows())
        # A tenth of the devices already serve a cluster.
        conn.execute(text(
            "INSERT INTO clusters (id, public_id, owner_id, engine, size, request, scope, "
            "status, token_sealed, created_at, status_changed_at, build_deadline, expires_at) "
            "VALUES (1, 'clu_aaaaaaaaaaaaaaaa', 2, 'ray', 0, '{}', 'any', 'ready', 'x', "
            ":t, :t, :t, :t)"), {"t": NOW})
        _copy(raw, "COPY cluster_members (cluster_id, device_id, role, status, placed_at, "
              "status_changed_at) FROM STDIN",
              ((1, i, "worker", "running", ts, ts) for i in range(1, devices + 1, 10)))
        conn.execute(text("SELECT setval('devices_id_seq', :n)"), {"n": devices + 1})
        conn.execute(text("ANALYZE"))
    engine.dispose()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_placement(base_url: str, devices: int, runs: int) -> None:
    base = normalise_url(base_url)
    name = "gpunet_bench_clusters"
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + f"/{name}"
    try:
        db = Database(url)
        migrate.upgrade(db.engine)
        started = time.monotonic()
        seed(url, devices)
        print(f"seeded {devices} devices in {time.monotonic() - started:.0f}s")
        catalog = load_catalog(None)
        clock = FrozenClock(NOW)
        rng = random.Random(1)
        # Every candidate of each model, as the full path reads them (for `place` alone).
        with db.session() as session:
            everyone = {
                m: reservation.candidates(session, ClusterRequest(count=1, gpu_model=m),
                                          catalog, now=clock.now(), online_window_s=150)
                for m in MODELS
            }
        print(f"{'request':<24} {'reserve p50':>11} {'p99':>8} {'place p50':>10} {'p99':>8}")
        for count in (1, 2, 4, 8):
            reserve_ms, place_ms = [], []
            for _ in range(runs):
                model = rng.choice(MODELS)
                request = ClusterRequest(count=count, gpu_model=model)
                with db.session() as session:
                    t0 = time.perf_counter()
                    placed = reservation.reserve(session, request, catalog, now=clock.now(),
                                                 online_window_s=150)
                    reserve_ms.append((time.perf_counter() - t0) * 1000)
                    session.rollback()
                assert placed, placed
                t0 = time.perf_counter()
                place(request, everyone[model], clock.now())
                place_ms.append((time.perf_counter() - t0) * 1000)
            print(f"{count} device(s) of one model {_pct(reserve_ms, .5):>9.1f}ms "
                  f"{_pct(reserve_ms, .99):>6.1f}ms {_pct(place_ms, .5):>8.1f}ms "
                  f"{_pct(place_ms, .99):>6.1f}ms")
        print(f"(`place` alone over every candidate of a model: {len(everyone[MODELS[0]])})")
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_ready(runs: int) -> None:
    # The e2e harness: a coordinator and agents as processes on loopback.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.e2e.test_clusters_ray import CLUSTER_ENV
    from tests.e2e.test_network_processes import GPUNET, Coordinator, Network, free_port

    from gpunet.client import Clusters

    os.environ.update(CLUSTER_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        c = Coordinator(f"sqlite:///{work}/net.db", f"http://127.0.0.1:{port}", port,
                        free_port(), work)
        import subprocess

        subprocess.run([GPUNET, "server", "migrate"], env=c.env(), check=True,
                       capture_output=True)
        net = Network(work, [c])
        c.start()
        try:
            for _ in range(2):
                net.add_agent(f"127.0.0.1:{c.control_port}")
            while sorted(net.devices().values()) != ["verified", "verified"]:
                time.sleep(0.5)
            import httpx

            httpx.post(c.url + "/api/v1/accounts",
                       json={"email": "bench@example.com", "password": "bench password"})
            clusters = Clusters.from_login(c.url, "bench@example.com", "bench password")
            times = []
            for _ in range(runs):
                # Released devices owe their light check first (docs/clusters.md).
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        t0 = time.monotonic()
                        made = clusters.create(2, gpu_model="cpu-dev", duration_s=600)
                        break
                    except Exception:
                        time.sleep(0.5)
                clusters.wait_ready(made["cluster_id"], timeout=300)
                times.append(time.monotonic() - t0)
                print(f"request to ready: {times[-1]:.1f}s")
                clusters.terminate(made["cluster_id"])
                list(clusters.watch(made["cluster_id"], until=("terminated", "failed")))
            print(f"median {statistics.median(times):.1f}s over {len(times)} run(s)")
        finally:
            net.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("placement")
    p.add_argument("url")
    p.add_argument("--devices", type=int, default=600_000)
    p.add_argument("-n", "--runs", type=int, default=200)
    r = sub.add_parser("ready")
    r.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.what == "placement":
        bench_placement(args.url, args.devices, args.runs)
    else:
        bench_ready(args.runs)


if __name__ == "__main__":
    main()
