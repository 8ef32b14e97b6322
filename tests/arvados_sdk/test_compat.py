"""Arvados callers' habits that jobtask once answered differently, through the real SDK."""

from __future__ import annotations

import pytest

from tests.arvados_sdk.conftest import SdkStack
from tests.arvados_sdk.test_sdk_api import job_body

pytestmark = pytest.mark.timeout(120)


async def test_whole_records_sent_back_and_task_parameters_updated(sdk_stack: SdkStack) -> None:
    out = await sdk_stack.run(f"""
job = api.jobs().create(body={job_body("whole.py")}).execute()
api.jobs().lock(uuid=job["uuid"]).execute()
whole = api.jobs().get(uuid=job["uuid"]).execute()
whole["priority"] = 6
updated = api.jobs().update(uuid=job["uuid"], body={{"job": whole}}).execute()
changed = dict(updated, tasks_summary=dict(updated["tasks_summary"], todo=40))
refused = api_error(api.jobs().update(uuid=job["uuid"], body={{"job": changed}}))
task = api.job_tasks().list(filters=[["job_uuid", "=", job["uuid"]]]).execute()["items"][0]
task["parameters"] = {{"input": "new"}}
task = api.job_tasks().update(uuid=task["uuid"], body={{"job_task": task}}).execute()
bare = api.job_tasks().update(
    uuid=task["uuid"], body={{"job_task": {{"parameters": {{"input": "again"}}}}}}
).execute()
emit({{"whole": whole, "updated": updated, "refused": refused, "task": task, "bare": bare}})
""")
    assert out["whole"]["started_at"] and out["whole"]["tasks_summary"]
    assert out["updated"]["priority"] == 6
    assert out["updated"]["started_at"] == out["whole"]["started_at"]
    assert out["refused"]["status"] == 422
    assert out["refused"]["body"]["errors"][0].startswith("tasks_summary:")
    assert out["task"]["parameters"] == {"input": "new"}
    assert out["bare"]["parameters"] == {"input": "again"}
