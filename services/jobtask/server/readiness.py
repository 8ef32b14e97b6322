"""The services' gRPC health service, plus one name that pings the database.

`Check(service="jobtask.store")` runs one round trip to the store through this process's
pool, reading the schema's revision, and answers SERVING or NOT_SERVING: the gateway's
/readyz asks it of each service. A server whose database another jobtask version migrated
since it started (docs/operations.md: run one version at a time) answers NOT_SERVING, so a
balancer or an orchestrator's check takes it out instead of letting it serve a schema its
code does not know."""

from __future__ import annotations

import logging
from typing import Any

from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2
from jobtask.store import migrate
from jobtask.store.database import Database

__all__ = ["STORE_SERVICE", "StoreHealthServicer"]

log = logging.getLogger(__name__)

STORE_SERVICE = "jobtask.store"


class StoreHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.schema = migrate.head_revision()
        # The foreign revision last logged (once per revision, not once per check).
        self._told: str | None = None

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service != STORE_SERVICE:
            return await super().Check(request, context)
        try:
            async with self.db.read() as conn:  # (one round trip: the database answers)
                revision = await migrate.revision_in(conn)
        except Exception as exc:
            log.warning("health: the database did not answer: %s", type(exc).__name__)
            return _answer(health_pb2.HealthCheckResponse.NOT_SERVING)
        if revision != self.schema:
            if revision != self._told:
                log.error(
                    "health: the database's schema is at revision %s, not this server's %s"
                    " (another jobtask version migrated it): NOT_SERVING",
                    revision,
                    self.schema,
                )
                self._told = revision
            return _answer(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._told = None
        return _answer(health_pb2.HealthCheckResponse.SERVING)


def _answer(status: Any) -> Any:
    return health_pb2.HealthCheckResponse(status=status)
