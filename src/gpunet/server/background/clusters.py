"""The cluster driver: every tick, each active cluster takes its next step towards its
wanted state (services.clusters.driver): builds advance, lost nodes are replaced,
expired clusters are terminated, terminations finish.

Every replica may run it: each cluster is taken with SKIP LOCKED on PostgreSQL (a
cluster another replica is moving is left to it this tick), one transaction per
cluster, so one cluster's trouble never holds up another's.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from gpunet.core.clock import Clock
from gpunet.core.clusters import ACTIVE_STATUSES
from gpunet.core.pog import Catalog
from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.db.cluster_tables import Cluster
from gpunet.server.db.engine import Database
from gpunet.server.services.clusters import driver
from gpunet.server.services.clusters.settings import ClusterSettings

log = logging.getLogger("gpunet.background.clusters")


class ClusterDriver:
    def __init__(
        self, database: Database, clock: Clock, catalog: Catalog, settings: ClusterSettings
    ) -> None:
        self.database = database
        self.clock = clock
        self.catalog = catalog
        self.settings = settings

    def run_once(self) -> int:
        """Advance every active cluster once; the number advanced."""
        with self.database.read() as session:
            ids = list(
                session.execute(
                    select(Cluster.id).where(
                        Cluster.status.in_([s.value for s in ACTIVE_STATUSES])
                    )
                ).scalars()
            )
        moved = 0
        for cluster_id in ids:
            try:
                moved += self._advance(cluster_id)
            except Exception:
                log.exception("cluster %d could not advance; retried next tick", cluster_id)
        return moved

    def _advance(self, cluster_id: int) -> int:
        with self.database.transaction() as session:
            cluster = session.execute(
                select(Cluster).where(Cluster.id == cluster_id).with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if cluster is None:
                return 0
            now = self.clock.now()
            driver.advance(driver.Drive(session, now, self.settings, self.catalog), cluster)
            return 1


def cluster_driver(
    database: Database, clock: Clock, catalog: Catalog, settings: ClusterSettings
) -> PeriodicJob:
    job = ClusterDriver(database, clock, catalog, settings)
    return PeriodicJob("clusters", settings.tick_s, job.run_once)
