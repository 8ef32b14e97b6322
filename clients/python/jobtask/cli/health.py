"""`jobtask health ADDR --service NAME`: the gRPC health check, for container health checks
and load balancers. Exits 0 when the service answers SERVING, 1 otherwise (not serving,
unknown service, unreachable); needs no token."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["add_command"]

NOT_HEALTHY = 1


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "health", help="check a JobService or TaskService (gRPC health); exit 0 when SERVING"
    )
    p.add_argument("addr", metavar="ADDR", help="host:port of the service")
    p.add_argument(
        "--service",
        default="",
        help='the service to ask about, e.g. jobtask.v1.JobService ("": the whole server)',
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    p.add_argument(
        "--tls-ca", help="$JOBTASK_TLS_CA: check over TLS, verifying the service by this CA"
    )
    p.set_defaults(run_server=check)


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    ca = args.tls_ca or os.environ.get("JOBTASK_TLS_CA")
    if not ca:
        return grpc.aio.insecure_channel(args.addr)
    credentials = grpc.ssl_channel_credentials(Path(ca).read_bytes())
    return grpc.aio.secure_channel(args.addr, credentials)


async def check(args: argparse.Namespace) -> int:
    async with _channel(args) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            answer = await stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.aio.AioRpcError as exc:
            # (gRPC's health service answers an unknown name NOT_FOUND with no details.)
            unknown = exc.code() == grpc.StatusCode.NOT_FOUND and not exc.details()
            details = "the server publishes no health for this service" if unknown else None
            print(
                f"jobtask: {args.addr} {args.service or '(server)'}: "
                f"{exc.code().name.lower()}: {details or exc.details()}",
                file=sys.stderr,
            )
            return NOT_HEALTHY
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.addr} {args.service or '(server)'}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else NOT_HEALTHY
