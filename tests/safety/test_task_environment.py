"""A task's environment is built from an allow-list: the worker's secrets (its token, the
root token, the database URL) never reach the script, whatever the operator passes."""

from __future__ import annotations

import json

from jobtask.sdk import AsyncClient
from jobtask.v1 import job_pb2

from tests.clients.conftest import ROOT_TOKEN, Workers
from tests.clients.test_worker import finished
from tests.conftest import Cluster

JS = job_pb2.JobStatus


async def test_worker_secrets_never_reach_the_task(
    live: Cluster, client: AsyncClient, workers: Workers
) -> None:
    job = await client.submit("env_all.py")
    await workers.start(
        "env",
        JOBTASK_SYSTEM_ROOT_TOKEN="XROOTX",
        JOBTASK_DATABASE_URL="postgresql://user:XDBPWX@db/jobtask",
        ARVADOS_API_TOKEN="XWORKERX",
        SOME_CLOUD_SECRET="XCLOUDX",
        SITE_SETTING="passed-by-the-operator",
        LC_ALL="C.UTF-8",
        TZ="UTC",
        # The operator may pass names; secrets stay withheld even when named.
        JOBTASK_WORKER_PASS_ENV="SITE_SETTING,JOBTASK_SYSTEM_ROOT_TOKEN,JOBTASK_DATABASE_URL",
    )
    done = await finished(client, job.uuid)
    assert done.status == JS.JOB_STATUS_COMPLETED
    env = json.loads(done.output)
    for value in env.values():
        assert not any(m in value for m in ("XROOTX", "XDBPWX", "XWORKERX", "XCLOUDX")), value
    assert ROOT_TOKEN not in env.values()
    for name in ("JOBTASK_SYSTEM_ROOT_TOKEN", "JOBTASK_DATABASE_URL", "SOME_CLOUD_SECRET"):
        assert name not in env
    assert env["SITE_SETTING"] == "passed-by-the-operator"
    assert env["LC_ALL"] == "C.UTF-8" and env["TZ"] == "UTC"
    assert env["JOBTASK_TOKEN"] == env.get("ARVADOS_API_TOKEN", env["JOBTASK_TOKEN"])
    assert env["PATH"] and env["TASK_UUID"]
