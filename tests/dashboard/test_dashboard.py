"""The dashboard in a real browser against a real stack: sign in, jobs appear and finish live,
a running job is canceled from the page (its worker stops the process), a worker appears,
turns lost after kill -9 and goes once pruned, a refused action shows the server's message,
no console errors.
Screenshots of each page go to the test's own temporary folder, or to the folder named by
JOBTASK_SCREENSHOTS (`make screenshots` sets it to docs/screenshots/, which the README shows):
a test run never rewrites tracked files."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from jobtask.manager.context import utcnow
from jobtask.manager.tokens import issue_token
from jobtask.manager.workers import prune_workers
from jobtask.v1 import job_pb2

from tests.clients.conftest import (
    ROOT_TOKEN,
    killed_at_exit,
)
from tests.dashboard.conftest import Browser, Stack
from tests.polling import eventually
from tests.processes import alive
from tests.workers.test_pruning import LONG_AGO, seen_at

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
# Generous: the machine is shared, the browser is slow to start.
WAIT_MS = 60_000


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the pages' screenshots go."""
    named = os.environ.get("JOBTASK_SCREENSHOTS")
    folder = Path(named) if named else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def sign_in(browser: Browser) -> None:
    page = browser.page
    await page.goto(browser.url + "/")
    await page.fill("#token", ROOT_TOKEN)
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#jobs", timeout=WAIT_MS)


async def test_the_token_stays_out_of_urls_and_a_bad_one_is_refused(
    stack: Stack, browser: Browser
) -> None:
    page = browser.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.goto(browser.url + "/")
    await page.fill("#token", "not-a-token")
    await page.click("#signin button[type=submit]")
    await page.wait_for_selector("#signin-error:not(:empty)", timeout=WAIT_MS)
    await sign_in(browser)
    stored = await page.evaluate("sessionStorage.getItem('jobtask.token')")
    assert stored == ROOT_TOKEN
    assert await page.evaluate("localStorage.length") == 0
    assert requests and not any(ROOT_TOKEN in url for url in requests)
    # The 401 of the refused token is the only console error.
    assert all("401" in e for e in browser.errors), browser.errors


async def test_jobs_run_and_are_canceled_from_the_page(
    stack: Stack, browser: Browser, tmp_path: Path, shots: Path
) -> None:
    page = browser.page
    await sign_in(browser)

    # A job submitted through the API appears on the jobs page, then completes.
    job = await stack.client.submit("slow.py", {"seconds": 1.5})
    row = page.locator(f"#jobs-body tr[data-uuid='{job.uuid}']")
    await row.wait_for(timeout=WAIT_MS)
    worker = await stack.workers.start("a", slots=2)
    await page.locator(f"#jobs-body tr[data-uuid='{job.uuid}'] .status.completed").wait_for(
        timeout=WAIT_MS
    )
    # Tasks done of total, and mean progress.
    for column in ("done", "mean"):
        bar = row.locator(f"td.{column} [role=progressbar]")
        assert await bar.get_attribute("aria-valuenow") == "100"
    await page.screenshot(path=str(shots / "jobs.png"), full_page=True)

    # Its page: attributes, tasks at 100 %, the timeline, the log of its task.
    await page.click(f"#jobs-body tr[data-uuid='{job.uuid}'] a")
    await page.wait_for_selector("#tasks-body tr", timeout=WAIT_MS)
    done = page.locator("#tasks-done [role=progressbar]")
    # Locators, not wait_for_function: the page's CSP forbids evaluating strings.
    await page.locator("#tasks-done [role=progressbar][aria-valuenow='100']").wait_for(
        timeout=WAIT_MS
    )
    assert await done.get_attribute("aria-valuenow") == "100"
    assert (
        await page.locator("#mean-progress [role=progressbar]").get_attribute("aria-valuenow")
        == "100"
    )
    await page.locator("#gantt .lane[data-node='node1'][data-attempts='1'] canvas").wait_for(
        timeout=WAIT_MS
    )
    await page.locator("#tasks-body td.exit", has_text="0").wait_for(timeout=WAIT_MS)
    await page.click("#tasks-body tr td.link")
    await page.locator("#log", has_text="step 10/10").wait_for(timeout=WAIT_MS)
    # Its attempt: worker, outcome, exit code.
    attempt = page.locator("#attempts-body tr[data-attempt='1']")
    await attempt.locator(".status.completed").wait_for(timeout=WAIT_MS)
    assert worker.worker_id in await attempt.inner_text()
    assert await attempt.locator("td.exit").inner_text() == "0"
    assert await page.locator("#action-cancel").count() == 0  # completed: not offered
    assert await page.locator("#action-requeue").count() == 1
    await page.screenshot(path=str(shots / "job.png"), full_page=True)

    # A running job canceled from its page: the worker stops the script.
    pidfile = tmp_path / "pids"
    running = await stack.client.submit("sleeper.py", {"pidfile": str(pidfile)})
    await eventually(pidfile.exists, within=60)
    pids = [int(p) for p in pidfile.read_text().split()]
    with killed_at_exit(pids):
        await page.goto(f"{browser.url}/#/job/{running.uuid}")
        await page.locator("#tasks-body .status.active").wait_for(timeout=WAIT_MS)
        await page.click("#action-cancel")
        await page.locator("#job-attrs .status.canceled").wait_for(timeout=WAIT_MS)
        await eventually(lambda: not any(alive(p) for p in pids), within=60)
    assert (await stack.client.get(running.uuid)).status == job_pb2.JOB_STATUS_CANCELED
    assert worker.proc.returncode is None  # the worker lives on

    # A failing task: every attempt on the timeline and in the attempts table, with its
    # exit code.
    failing = await stack.client.submit("fail.py", {})

    async def failed() -> bool:
        return (await stack.client.get(failing.uuid)).status == job_pb2.JOB_STATUS_FAILED

    await eventually(failed, within=120)
    (failing_task,) = await stack.client.tasks(failing.uuid)
    tried = await stack.client.task_attempts(failing_task.uuid)
    assert len(tried) >= 2
    await page.goto(f"{browser.url}/#/job/{failing.uuid}")
    await page.locator(f"#gantt .lane[data-node='node1'][data-attempts='{len(tried)}']").wait_for(
        timeout=WAIT_MS
    )
    await page.locator("#failure").wait_for(timeout=WAIT_MS)
    await page.click("#tasks-body tr td.link")
    rows = page.locator("#attempts-body tr")
    await page.locator(f"#attempts-body tr[data-attempt='{len(tried)}']").wait_for(timeout=WAIT_MS)
    assert await rows.count() == len(tried)
    assert await page.locator("#attempts-body td.exit").all_inner_texts() == ["3"] * len(tried)
    assert await page.locator("#attempts-body .status.soft-failed").count() == len(tried) - 1
    assert await page.locator("#attempts-body .status.failed").count() == 1
    await page.screenshot(path=str(shots / "job-failed.png"), full_page=True)

    # A refused action shows the server's own message: a read-only token may see the
    # job, and the page offers cancel (the status machine allows it), but the server says no.
    # It waits for a second node that never comes, so it is still queued when the page asks
    # (a job that ran to its end, as a 1 s one did on a loaded machine, offers no cancel).
    queued = await stack.client.submit(
        "slow.py", {"seconds": 1}, priority=1, constraints={"min_nodes": 2}
    )
    core = stack.cluster.services.core
    _, read_only = await issue_token(
        core.db,
        core.settings,
        user_uuid=f"{core.settings.cluster_id}-tpzed-000000000000001",
        is_admin=True,
        scopes=["GET /arvados/v1/"],
    )
    # Signing out hides the last action's note: here the admin's own "priority: done".
    await page.goto(f"{browser.url}/#/job/{queued.uuid}")
    await page.fill("#priority-input", "2", timeout=WAIT_MS)
    await page.click("#action-priority")
    # (Waited for by its text: the earlier cancel's "cancel: done" may still be up, 8 s.)
    await page.locator("#toast.ok", has_text="priority: done").wait_for(timeout=WAIT_MS)
    assert await page.locator("#toast").inner_text() == "priority: done"
    await page.click("#sign-out")
    assert await page.locator("#toast").is_hidden()
    await page.fill("#token", read_only)
    await page.click("#signin button[type=submit]")
    await page.goto(f"{browser.url}/#/job/{queued.uuid}")
    await page.click("#action-cancel", timeout=WAIT_MS)
    # (The toast is the refusal's: signing out hid the one before, which a fast run read.)
    toast = page.locator("#toast")
    await toast.wait_for(timeout=WAIT_MS)
    async with httpx.AsyncClient(base_url=browser.url) as http:
        refused = await http.post(
            f"/arvados/v1/jobs/{queued.uuid}/cancel",
            headers={"Authorization": f"Bearer {read_only}"},
        )
    assert refused.status_code == 403
    assert await toast.inner_text() == "cancel refused: " + "; ".join(refused.json()["errors"])
    assert (await stack.client.get(queued.uuid)).status != job_pb2.JOB_STATUS_CANCEL_REQUESTED
    # The refused request's own 403 is the only console error.
    assert all("status of 403" in e for e in browser.errors), browser.errors
    assert len(browser.errors) <= 1, browser.errors


async def test_workers_appear_live_turn_lost_and_go_when_pruned(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    page = browser.page
    await sign_in(browser)
    await page.click("#nav a[data-page=workers]")
    await page.wait_for_selector("#workers", timeout=WAIT_MS)
    worker = await stack.workers.start("w", node="node7", JOBTASK_WORKER_TAGS="gpu")
    row = f"#workers-body tr[data-worker='{worker.worker_id}']"
    await page.locator(f"{row} .status.live").wait_for(timeout=WAIT_MS)
    await page.screenshot(path=str(shots / "workers.png"), full_page=True)
    worker.proc.kill()  # kill -9: no goodbye
    await worker.proc.wait()
    await page.locator(f"{row} .status.lost").wait_for(timeout=WAIT_MS)
    # Lost for longer than the retention: TaskService's upkeep prunes it (run here rather
    # than waited for), and the open page drops its row without a reload.
    core = stack.cluster.services.core
    await seen_at(core.db, {worker.worker_id: LONG_AGO})
    assert await prune_workers(core.db, core.settings, utcnow()) == 1
    await page.locator(row).wait_for(state="detached", timeout=WAIT_MS)
    assert await page.inner_text("#workers-info") == "0 worker(s), 0 live"
    assert browser.errors == []
