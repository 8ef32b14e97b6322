"""The REST gateway: Arvados's HTTP API over the JobService and TaskService gRPC services.

Routes, the discovery document and the OpenAPI document all come from the services'
`google.api.http` annotations; the gateway never touches the database.
"""

from jobtask.gateway.server import GatewayServer, create_app, run_gateway_from_env, serve_gateway

__all__ = ["GatewayServer", "create_app", "run_gateway_from_env", "serve_gateway"]
