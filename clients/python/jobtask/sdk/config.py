"""Where the services are and who we are: explicit arguments, else JOBTASK_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_JOBS_ADDR = "127.0.0.1:50051"
DEFAULT_TASKS_ADDR = "127.0.0.1:50052"


@dataclass(frozen=True)
class ClientConfig:
    jobs_addr: str = DEFAULT_JOBS_ADDR
    tasks_addr: str = DEFAULT_TASKS_ADDR
    # Sent as `authorization: Bearer <token>`; a task's process gets its task token here.
    token: str | None = None
    # PEM file of the CA that signed the servers' certificates; None: plaintext channels.
    tls_ca_file: str | None = None

    @classmethod
    def from_env(
        cls,
        jobs_addr: str | None = None,
        tasks_addr: str | None = None,
        token: str | None = None,
        *,
        tls_ca_file: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        env = os.environ if environ is None else environ
        return cls(
            jobs_addr=jobs_addr or env.get("JOBTASK_JOBS_ADDR") or DEFAULT_JOBS_ADDR,
            tasks_addr=tasks_addr or env.get("JOBTASK_TASKS_ADDR") or DEFAULT_TASKS_ADDR,
            token=token or env.get("JOBTASK_TOKEN") or None,
            tls_ca_file=tls_ca_file or env.get("JOBTASK_TLS_CA") or None,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()
