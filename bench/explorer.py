"""Explorer latency with 600,000 devices and a month of history in PostgreSQL.

Seeds a fresh database by COPY: 600,000 devices (verified, pending, suspect, suspended
over eight models and six regions), a month of hourly network snapshots and closed
epochs (720 of each), a month of proofs and uptime for a sample of devices and the
last two hours of uptime plus one recent proof for every device. Then it times the
overview page, the overview JSON and device pages through the app (in process, no
network), and prints p50/p99 per page. The overview's totals are recounted at most
every 15 s per process (explorer_views.TOTALS_TTL_S); "overview, cold" clears that
cache before every request, so it is the cost of a recount.

    python bench/explorer.py postgresql://user@host:port/db [--devices 600000] [-n 300]

The given database is only used to create (and drop) `gpunet_bench_explorer` next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from collections.abc import Callable, Iterator

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from gpunet.core.clock import FrozenClock
from gpunet.server.api import explorer_views
from gpunet.server.app import create_app
from gpunet.server.db import migrate
from gpunet.server.db.engine import Database, normalise_url
from gpunet.server.settings import Settings

MODELS = [("H100 SXM", "h100-sxm", 81559), ("H200", "h200", 143771),
          ("A100-SXM4-80GB", "a100-80gb", 81920), ("L40S", "l40s", 46068),
          ("NVIDIA GeForce RTX 4090", "rtx-4090", 24564),
          ("NVIDIA GeForce RTX 3090", "rtx-3090", 24576),
          ("H100 PCIe", "h100-pcie", 81559), ("A100-SXM4-40GB", "a100-40gb", 40960)]
REGIONS = ["us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast"]
STATUSES = ["verified"] * 85 + ["pending"] * 10 + ["suspect"] * 3 + ["suspended"] * 2
HOURS = 720
SAMPLE = 2000
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def public_id(i: int) -> str:
    rng = random.Random(i)
    return "dev_" + "".join(rng.choice(ALPHABET) for _ in range(16))


def _copy(raw: object, sql: str, rows: Iterator[tuple[object, ...]]) -> None:
    with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
        for row in rows:
            copy.write_row(row)


def _ts(moment: dt.datetime) -> str:
    return moment.isoformat()


def seed(url: str, devices: int, now: dt.datetime) -> list[str]:
    """Everything by COPY in one transaction; returns the sample's public ids."""
    engine = create_engine(url)
    hour = now.replace(minute=0, second=0, microsecond=0)
    chunk_now = int((hour.timestamp() - dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()) // 3600)
    sample: list[str] = []
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        owners = max(devices // 100, 1)
        _copy(raw, "COPY owners (id, email, is_admin, created_at) FROM STDIN",
              ((i + 1, f"owner{i}@bench.example", False, _ts(now)) for i in range(owners)))

        def device_rows() -> Iterator[tuple[object, ...]]:
            for i in range(devices):
                model, profile, vram = MODELS[i % len(MODELS)]
                status = STATUSES[i % len(STATUSES)]
                created = now - dt.timedelta(days=40)
                yield (i + 1, public_id(i), i % owners + 1, status, f"key{i:040d}", "nvidia",
                       model, vram, f"GPU-{i:032x}", f"0000:{i % 256:02x}:00.0",
                       f"host{i // 8}", "550.54.15", REGIONS[i % len(REGIONS)], _ts(created),
                       _ts(created), _ts(created), _ts(now),
                       profile if status != "pending" else None, 0)

        _copy(raw, "COPY devices (id, public_id, owner_id, status, public_key, vendor, model, "
              "vram_mib, gpu_uuid, pci_bus_id, host_fingerprint, driver_version, region, "
              "created_at, updated_at, status_changed_at, last_seen_at, profile, failures) "
              "FROM STDIN", device_rows())
        sample = [public_id(i) for i in range(0, devices, max(devices // SAMPLE, 1))][:SAMPLE]
        sample_pks = list(range(1, devices + 1, max(devices // SAMPLE, 1)))[:SAMPLE]

        def challenges() -> Iterator[tuple[object, ...]]:
            n = 0
            for pk in range(1, devices + 1):
                hours = range(0, HOURS, 6) if pk in sample_set else (1,)
                for h in hours:
                    at = hour - dt.timedelta(hours=h, minutes=pk % 60)
                    n += 1
                    outcome = "failed" if n % 50 == 0 else "passed"
                    yield (f"c{n:020d}", pk, "spot", f"b{n}", "h100-sxm", "{}", _ts(at), _ts(at),
                           _ts(at + dt.timedelta(seconds=8)), outcome, 6.2, 55.0)

        sample_set = set(sample_pks)
        _copy(raw, "COPY challenges (id, device_id, kind, batch, profile, body, issued_at, "
              "deadline, completed_at, outcome, commit_elapsed_s, verify_cpu_ms) FROM STDIN",
              challenges())

        def uptime() -> Iterator[tuple[object, ...]]:
            full = (1 << 60) - 1
            for chunk in range(chunk_now - HOURS, chunk_now + 1):
                recent = chunk >= chunk_now - 2
                pks = range(1, devices + 1, 1) if recent else sample_pks
                for pk in pks:
                    if STATUSES[(pk - 1) % len(STATUSES)] == "verified":
                        yield (chunk, pk, full)

        _copy(raw, "COPY uptime_slots (chunk, device_id, bits) FROM STDIN", uptime())

        def snapshots() -> Iterator[tuple[object, ...]]:
            for h in range(HOURS, 0, -1):
                at = hour - dt.timedelta(hours=h)
                v = int(devices * 0.85)
                yield (int(at.timestamp()) // 3600, _ts(at), _ts(at), v, devices // 10,
                       devices * 3 // 100, devices // 50, v * 70000, v * 900.0, v, v * 60,
                       v // 6, v // 300, v // 1000)

        _copy(raw, "COPY network_snapshots (period, at, taken_at, verified, pending, suspect, "
              "suspended, verified_vram_mib, verified_int8_tops, online_devices, online_slots, "
              "proofs_passed, proofs_failed, proofs_missed) FROM STDIN", snapshots())

        def epochs() -> Iterator[tuple[object, ...]]:
            for e in range(chunk_now - HOURS, chunk_now - 1):
                start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=e)
                yield (e, _ts(start), _ts(start + dt.timedelta(hours=1)), 10**21, 10**21, 0,
                       "ab" * 32, devices // 100, int(devices * 0.85), int(devices * 0.85) * 60,
                       0, "cd" * 32, _ts(start + dt.timedelta(hours=1, minutes=3)))

        _copy(raw, "COPY reward_epochs (epoch, starts_at, ends_at, emission, paid, unallocated, "
              "root, wallets, devices, counted_slots, incidents, schedule_sha256, closed_at) "
              "FROM STDIN", epochs())
        _copy(raw, "COPY epoch_scores (epoch, total_score, scale) FROM STDIN",
              ((e, int(devices * 0.85) * 60 * 5, 1)
               for e in range(chunk_now - HOURS, chunk_now - 1)))
        conn.execute(text("SELECT setval('owners_id_seq', :n)"), {"n": owners + 1})
        conn.execute(text("SELECT setval('devices_id_seq', :n)"), {"n": devices + 1})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return sample


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--devices", type=int, default=600_000)
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args()
    base = normalise_url(args.url)
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "gpunet_bench_explorer" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "gpunet_bench_explorer"'))
    url = base.rsplit("/", 1)[0] + "/gpunet_bench_explorer"
    database = Database(url)
    migrate.upgrade(database.engine)
    now = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    sample = seed(url, args.devices, now)
    print(f"seeded {args.devices:,} devices and a month of history in "
          f"{time.perf_counter() - t0:.0f} s")
    settings = Settings(database_url=url, background_jobs=False, secret_key="b" * 48)
    app = create_app(settings, database=database, clock=FrozenClock(now))
    rng = random.Random(7)
    with TestClient(app) as client:
        def get(path: str) -> None:
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code)

        def cold() -> None:
            explorer_views.forget_cached()
            get("/")

        cases = {
            "overview page": lambda: get("/"),
            "overview, cold": cold,
            "overview JSON": lambda: get("/api/v1/explorer/overview"),
            "device page": lambda: get(f"/devices/{rng.choice(sample)}"),
            "device proofs JSON": lambda: get(
                f"/api/v1/explorer/devices/{rng.choice(sample)}/proofs"
            ),
        }
        for fn in cases.values():
            timed(fn, 5)  # warm the pool and the caches
        print(f"{'request':<22}{'p50 ms':>10}{'p99 ms':>10}   (n={args.n})")
        for name, fn in cases.items():
            p50, p99 = timed(fn, args.n if name != "overview, cold" else max(args.n // 5, 20))
            print(f"{name:<22}{p50:>10.1f}{p99:>10.1f}")
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "gpunet_bench_explorer" WITH (FORCE)'))


if __name__ == "__main__":
    main()
