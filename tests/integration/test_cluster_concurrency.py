"""Many customers at once: 50 concurrent requests compete for 20 devices. No device is
ever in two clusters, and every request is placed or refused with a reason.

Each request runs the real service in its own thread and transaction, as concurrent
HTTP requests on several replicas would; on PostgreSQL they truly overlap (SKIP LOCKED
reservations), on SQLite they take turns (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from gpunet.core.clusters import ClusterRequest
from gpunet.server.context import Ctx
from gpunet.server.db.cluster_tables import Cluster, ClusterMember
from gpunet.server.security.principal import Principal, PrincipalKind
from gpunet.server.services.clusters import requests
from tests.integration.clusters_world import ready_devices, state_of
from tests.integration.conftest import Net

pytestmark = pytest.mark.db
REQUESTS, DEVICES = 50, 20


def test_fifty_requests_for_twenty_devices(net: Net) -> None:
    st = state_of(net)
    supplier = net.register()
    # Five hosts of four devices: placement has host groups to prefer.
    for h in range(5):
        ready_devices(net, supplier, 4, host=f"host-fingerprint-{h:04d}")
    customers = []
    for i in range(REQUESTS):
        net.register(f"customer{i}@example.com")
    with net.database.read() as s:
        from gpunet.server.db.tables import Owner

        customers = list(
            s.execute(select(Owner.id).where(Owner.email.like("customer%"))).scalars()
        )
    rng = random.Random(9)
    sizes = [rng.choice([1, 1, 2, 2, 3]) for _ in range(REQUESTS)]
    barrier = threading.Barrier(REQUESTS)
    outcomes: list[tuple[str, str]] = [("", "")] * REQUESTS

    def one(i: int) -> None:
        owner_id = customers[i]
        principal = Principal(PrincipalKind.OWNER, str(owner_id), owner_id=owner_id)
        barrier.wait()
        try:
            with net.database.transaction() as session:
                ctx = Ctx(session, net.settings, net.clock.now(), principal)
                cluster = requests.create(
                    ctx, owner_id, ClusterRequest(count=sizes[i]), catalog=st.catalog,
                    settings=st.clusters, tokens=st.cluster_tokens,
                )
                outcomes[i] = ("placed", cluster.public_id)
        except requests.NotPlaceable as exc:
            outcomes[i] = ("refused", exc.message)
        except Exception as exc:  # anything else is a failure of the reservation
            outcomes[i] = ("error", repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    kinds = Counter(k for k, _ in outcomes)
    assert kinds["error"] == 0, [o for o in outcomes if o[0] == "error"]
    assert kinds["placed"] + kinds["refused"] == REQUESTS
    for kind, text in outcomes:
        if kind == "refused":
            assert text.startswith("cannot place: "), text
            assert "wanted" in text or "retry" in text, text
    with net.database.read() as s:
        held = s.execute(
            select(ClusterMember.device_id, Cluster.public_id, Cluster.size)
            .join(Cluster, Cluster.id == ClusterMember.cluster_id)
            .where(ClusterMember.released_at.is_(None))
        ).all()
    devices = [d for d, _, _ in held]
    assert len(devices) == len(set(devices)), "a device is in two clusters"
    placed = {cid for kind, cid in outcomes if kind == "placed"}
    assert {cid for _, cid, _ in held} == placed
    # Each placed cluster holds exactly what it asked for.
    per_cluster = Counter(cid for _, cid, _ in held)
    assert all(per_cluster[cid] == size for _, cid, size in held)
    # The network was used: refusals came only once too few devices were left.
    assert len(devices) > DEVICES - 3, (len(devices), kinds)
