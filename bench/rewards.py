"""Close one epoch on the coordinator for a million devices, from the database.

    .venv/bin/python bench/rewards.py                          # SQLite file under var/
    .venv/bin/python bench/rewards.py --database-url postgresql://gpunet@127.0.0.1:54329/bench
    .venv/bin/python bench/rewards.py --ingest --devices 100000   # heartbeat ingestion

Set-up (not timed) bulk-inserts straight into a fresh schema: owners (4 devices each by
default, 2% without a wallet, so those devices are paid to `unset.<device>`), devices
over five catalog models, one `uptime_slots` row per device for the epoch (random
bits, most devices online most of the hour), and the awkward cases that leave the fast
path: 1% of devices verified during the epoch (status events), 0.1% with a failed spot
check in the epoch (forfeits), 2% suspended. Then a fresh child process runs exactly
what `gpunet rewards close --epoch N` runs (`services.rewards.close_epoch`: read,
allocate, build the Merkle snapshot, write epoch row and payouts) and reports its wall
time and peak RSS. `--incident` also declares a window over the last 10 minutes of the
epoch, which sends every device through the exact per-device rules.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from gpunet.server.db import migrate
from gpunet.server.db.engine import Database, normalise_url

EPOCH_START = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
MODELS = [("h100-sxm", "H100 SXM"), ("a100-80gb", "A100 80GB"), ("rtx-4090", "RTX 4090"),
          ("l40s", "L40S"), ("h200", "H200")]
FULL = (1 << 60) - 1


def fresh_database(url: str) -> None:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        base, name = url.rsplit("/", 1)
        admin = create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    db = Database(url)
    migrate.upgrade(db.engine)
    db.dispose()


def _ts(moment: dt.datetime, sqlite: bool) -> str:
    if sqlite:  # SQLAlchemy's SQLite storage format for naive UTC
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment.isoformat()


def generate(args: argparse.Namespace, chunk: int) -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(args.seed)
    sqlite = args.database_url.startswith("sqlite")
    old = _ts(EPOCH_START - dt.timedelta(days=30), sqlite)
    owners, devices, slots, events = [], [], [], []
    n_owners = (args.devices + args.per_owner - 1) // args.per_owner
    for o in range(1, n_owners + 1):
        wallet = None if rng.random() < 0.02 else f"wallet-{o:09d}"
        owners.append((o, wallet, False, old))
    ev_id = 0
    for d in range(1, args.devices + 1):
        profile, model = MODELS[d % len(MODELS)]
        r = rng.random()
        status, changed = "verified", old
        if r < 0.02:
            status = "suspended"
        elif r < 0.03:  # verified during the epoch: exact rules
            at = EPOCH_START + dt.timedelta(seconds=rng.randrange(3600))
            changed = _ts(at, sqlite)
            ev_id += 1
            events.append((ev_id, d, old, "status", "suspect", "verified", None))
            ev_id += 1
            events.append((ev_id, d, changed, "status", "pending", "verified", None))
        elif r < 0.031:  # a failed spot check in the epoch: forfeit
            at = EPOCH_START + dt.timedelta(seconds=rng.randrange(600, 3600))
            ev_id += 1
            events.append((ev_id, d, _ts(at, sqlite), "proof_failed", None, None,
                           _ts(at - dt.timedelta(minutes=10), sqlite)))
        public_id = f"dev_{d:016d}"
        devices.append((d, public_id, (d - 1) // args.per_owner + 1, status, f"k{d:040d}",
                        "nvidia", model, 81559, f"GPU-{d:032d}", f"00000000:{d % 256:02x}:00.0",
                        f"host-{(d - 1) // 8}", "550.54.15", old, old, changed, profile, 0))
        bits = FULL if rng.random() < 0.8 else rng.getrandbits(60)
        slots.append((chunk, d, bits))
    return {"owners": owners, "devices": devices, "slots": slots, "events": events}


COLUMNS = {
    "owners": "id, wallet_address, is_admin, created_at",
    "devices": "id, public_id, owner_id, status, public_key, vendor, model, vram_mib, gpu_uuid, "
    "pci_bus_id, host_fingerprint, driver_version, created_at, updated_at, status_changed_at, "
    "profile, failures",
    "device_events": "id, device_id, at, kind, from_status, to_status, forfeit_from",
    "uptime_slots": "chunk, device_id, bits",
}


def load(url: str, data: dict[str, list[tuple[Any, ...]]]) -> None:
    url = normalise_url(url)
    engine = create_engine(url)
    tables = [("owners", data["owners"]), ("devices", data["devices"]),
              ("device_events", data["events"]), ("uptime_slots", data["slots"])]
    with engine.begin() as conn:
        raw: Any = conn.connection.driver_connection
        for table, rows in tables:
            cols = COLUMNS[table]
            if url.startswith("sqlite"):
                marks = ", ".join("?" * len(cols.split(",")))
                raw.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
            else:
                with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row)
        if not url.startswith("sqlite"):
            conn.execute(text("ANALYZE"))
    engine.dispose()


def declare_incident(url: str) -> None:
    from gpunet.server.security.principal import Principal
    from gpunet.server.services import incidents

    db = Database(url)
    with db.transaction() as s:
        incidents.declare(s, starts_at=EPOCH_START + dt.timedelta(minutes=50),
                          ends_at=EPOCH_START + dt.timedelta(hours=1),
                          reason="bench incident", actor=Principal.admin("bench"),
                          now=EPOCH_START)
    db.dispose()


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_kib() -> int:
    """VmHWM (peak resident set) in KiB; ru_maxrss where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def close_child(url: str, epoch: int) -> None:
    """Runs in a fresh process: exactly the CLI's close, timed, with peak RSS."""
    from gpunet.core.pog import default_catalog
    from gpunet.server.services import rewards
    from gpunet.server.services.reward_config import load_config
    from gpunet.server.settings import Settings

    settings = Settings(database_url=url)
    config = load_config(settings, default_catalog())
    db = Database(url)
    reset_peak()  # a forked child starts with its parent's high-water mark
    before = peak_rss_kib()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    done = rewards.close_epoch(db, config, epoch, now=EPOCH_START + dt.timedelta(days=1))
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0  # this process only (not the PostgreSQL server's)
    peak = peak_rss_kib()
    row = done.row
    print(json.dumps({
        "seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak / 1024),
        "rss_before_mib": round(before / 1024), "created": done.created,
        "wallets": row.wallets, "scored_devices": row.devices, "counted_slots": row.counted_slots,
        "emission": str(row.emission), "paid": str(row.paid), "root": row.root,
    }))
    db.dispose()


def ingest(url: str, devices: int) -> dict[str, Any]:
    """Heartbeats into one replica's recorder (3 per device per slot for an hour), then
    the flush of everything buffered (one row per device), twice: the second flush of
    the same bits is what a replica that crashed mid-flush would send again."""
    from gpunet.core.rewards import EpochClock
    from gpunet.server.services.uptime import UptimeRecorder

    fresh_database(url)
    db = Database(url)
    rec = UptimeRecorder(EpochClock(genesis=1_767_225_600))
    beats = [EPOCH_START + dt.timedelta(seconds=20 * i) for i in range(180)]
    t0 = time.perf_counter()
    for at in beats:
        for d in range(1, devices + 1):
            rec.record(d, at)
    record_s = time.perf_counter() - t0
    saved = dict(rec._buffer)
    t0 = time.perf_counter()
    rows = rec.flush(db)
    flush_s = time.perf_counter() - t0
    rec._buffer = saved
    t0 = time.perf_counter()
    rec.flush(db)
    reflush_s = time.perf_counter() - t0
    db.dispose()
    n = devices * len(beats)
    return {"heartbeats": n, "record_s": round(record_s, 2),
            "record_per_s": round(n / record_s), "rows_flushed": rows,
            "flush_s": round(flush_s, 2), "reflush_s": round(reflush_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default="sqlite:///var/bench-rewards.db")
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--per-owner", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--incident", action="store_true")
    ap.add_argument("--ingest", action="store_true", help="time heartbeat ingestion instead")
    ap.add_argument("--close-only", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ingest:
        print(json.dumps(ingest(args.database_url, args.devices), indent=2))
        return
    if args.close_only is not None:
        close_child(args.database_url, args.close_only)
        return
    from gpunet.core.pog import default_catalog
    from gpunet.server.services.reward_config import load_config
    from gpunet.server.services.uptime import CHUNK_SLOTS
    from gpunet.server.settings import Settings

    clock = load_config(Settings(), default_catalog()).schedule.clock
    epoch = clock.epoch_index(EPOCH_START.timestamp())
    chunk = clock.first_slot(epoch) // CHUNK_SLOTS
    t0 = time.perf_counter()
    fresh_database(args.database_url)
    data = generate(args, chunk)
    load(args.database_url, data)
    if args.incident:
        declare_incident(args.database_url)
    setup = time.perf_counter() - t0
    del data
    out = subprocess.run(
        [sys.executable, __file__, "--database-url", args.database_url,
         "--close-only", str(epoch)],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    backend = "sqlite" if args.database_url.startswith("sqlite") else "postgresql"
    print(json.dumps({"backend": backend, "devices": args.devices, "incident": args.incident,
                      "setup_s": round(setup, 1), **result}, indent=2))


if __name__ == "__main__":
    main()
