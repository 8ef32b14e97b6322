"""Who is calling, and how the manager is configured."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from jobtask.domain.rules import DEFAULT_RETRY_LIMIT
from jobtask.domain.uuids import check_cluster_id, system_user_uuid


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request."""

    user_uuid: str
    is_admin: bool = False
    client_uuid: str | None = None
    # Set when the caller holds a claimed task's own token: the task it may report for.
    task_uuid: str | None = None
    # Set for the job manager itself (internal moves) and the system root token.
    is_system: bool = False


@dataclass(frozen=True)
class Settings:
    cluster_id: str = "zzzzz"
    retry_limit: int = DEFAULT_RETRY_LIMIT
    lease_ttl: dt.timedelta = field(default_factory=lambda: dt.timedelta(seconds=30))

    def __post_init__(self) -> None:
        check_cluster_id(self.cluster_id)
        if self.retry_limit < 1:
            raise ValueError("retry_limit must be at least 1")

    @property
    def system_user(self) -> str:
        return system_user_uuid(self.cluster_id)

    def system_caller(self) -> Caller:
        return Caller(user_uuid=self.system_user, is_admin=True, is_system=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
