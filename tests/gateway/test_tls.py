"""HTTPS with a self-signed certificate, as the Arvados Python SDK requires."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import ROOT_AUTH, start_stack
from tests.tls import self_signed


async def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    services, gateway = await start_stack(tmp_path, tls_cert=str(cert), tls_key=str(key))
    try:
        assert gateway.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(
            base_url=gateway.url, verify=context, headers=ROOT_AUTH
        ) as client:
            discovery = await client.get("/discovery/v1/apis/arvados/v1/rest")
            assert discovery.status_code == 200
            assert discovery.json()["rootUrl"] == f"{gateway.url}/"
            job = await client.post(
                "/arvados/v1/jobs",
                json={"script": "s.py", "script_version": "master", "repository": "r"},
            )
            assert job.status_code == 200, job.text
        # Plain HTTP on the TLS port does not get through.
        async with httpx.AsyncClient(base_url=gateway.url.replace("https", "http")) as plain:
            with pytest.raises(httpx.HTTPError):
                (await plain.get("/arvados/v1/jobs/queue_size")).raise_for_status()
    finally:
        await gateway.stop()
        await services.stop(0.5)
