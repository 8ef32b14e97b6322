"""The services' gRPC health service, plus one name that pings the database.

`Check(service="jobtask.store")` runs one round trip to the store through this process's
pool and answers SERVING or NOT_SERVING: the gateway's /readyz asks it of each service."""

from __future__ import annotations

import logging
from typing import Any

from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2
from jobtask.store import stats
from jobtask.store.database import Database

__all__ = ["STORE_SERVICE", "StoreHealthServicer"]

log = logging.getLogger(__name__)

STORE_SERVICE = "jobtask.store"


class StoreHealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service != STORE_SERVICE:
            return await super().Check(request, context)
        try:
            async with self.db.read() as conn:
                await stats.ping(conn)
        except Exception as exc:
            log.warning("health: the database did not answer: %s", type(exc).__name__)
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
