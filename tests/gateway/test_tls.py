"""HTTPS with a self-signed certificate, as the Arvados Python SDK requires."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.gateway.conftest import ROOT_AUTH, start_stack


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


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
