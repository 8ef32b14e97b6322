"""A real stack for the browser: services on a SQLite file with short leases, the gateway
serving the dashboard, real worker processes, and Debian's chromium driven by Playwright
(scripts/ensure_chromium.sh installs it; Playwright's own browser downloads are never used)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jobtask.gateway import GatewayServer, serve_gateway
from jobtask.sdk import AsyncClient

from tests.clients.conftest import LEASE_TTL, ROOT_TOKEN, Workers
from tests.conftest import Cluster, start_cluster

CHROMIUM = os.environ.get("JOBTASK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Browser:
    page: Any
    url: str
    # Console errors and uncaught exceptions, as the page reported them.
    errors: list[str] = field(default_factory=list)


@dataclass
class Stack:
    cluster: Cluster
    gateway: GatewayServer
    client: AsyncClient
    workers: Workers


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    cluster = await start_cluster(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", lease_ttl=LEASE_TTL, root_token=ROOT_TOKEN
    )
    gateway = await serve_gateway("127.0.0.1:0", cluster.jobs_addr, cluster.tasks_addr)
    workers = Workers(cluster, tmp_path)
    try:
        async with AsyncClient.connect(cluster.jobs_addr, cluster.tasks_addr, ROOT_TOKEN) as c:
            yield Stack(cluster, gateway, c, workers)
    finally:
        await workers.stop_all()
        await gateway.stop()
        await cluster.close()


@pytest.fixture(scope="session", autouse=False)
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str, stack: Stack) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            context = await chromium.new_context(viewport={"width": 1400, "height": 900})
            page = await context.new_page()
            found = Browser(page, stack.gateway.url)
            page.on(
                "console",
                lambda msg: found.errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: found.errors.append(f"uncaught: {exc}"))
            yield found
        finally:
            await chromium.close()
