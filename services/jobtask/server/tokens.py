"""ApiClientAuthorizationService: Arvados's api_client_authorizations over gRPC.

The auth interceptor has verified the caller's token and its scopes; this servicer parses,
calls the token manager and converts. The secret appears once, in Create's answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from jobtask.domain.tokens import TOKEN_ATTRS
from jobtask.manager.tokens import TokenManager
from jobtask.server.callers import current_credentials
from jobtask.server.convert import timestamp
from jobtask.server.errors import rpc
from jobtask.server.listing import keep_selected, list_query
from jobtask.store.rows import TokenRow, etag
from jobtask.v1 import auth_service_pb2, auth_service_pb2_grpc

__all__ = ["TokenServicer", "token_pb"]

Context = grpc.aio.ServicerContext[Any, Any]
Token = auth_service_pb2.ApiClientAuthorization
KIND = "arvados#apiClientAuthorization"


def token_pb(record: TokenRow, api_token: str = "") -> Token:
    msg = Token(
        uuid=record.uuid,
        owner_uuid=record.owner_uuid,
        kind=KIND,
        scopes=record.scopes,
        api_token=api_token,
    )
    if record.uuid:
        msg.href = f"/api_client_authorizations/{record.uuid}"
        modified = record.modified_at
        msg.etag = etag(record.uuid, int(modified.timestamp() * 1e6) if modified else 0)
    if record.modified_by_user_uuid:
        msg.modified_by_user_uuid = record.modified_by_user_uuid
    for name in ("created_at", "modified_at", "expires_at", "revoked_at"):
        value = getattr(record, name)
        if value is not None:
            getattr(msg, name).CopyFrom(timestamp(value))
    return msg


class TokenServicer(auth_service_pb2_grpc.ApiClientAuthorizationServiceServicer):
    def __init__(self, tokens: TokenManager) -> None:
        self.tokens = tokens

    @rpc
    async def CreateApiClientAuthorization(
        self, request: auth_service_pb2.CreateApiClientAuthorizationRequest, context: Context
    ) -> Token:
        wanted = request.api_client_authorization
        expires = (
            wanted.expires_at.ToDatetime(tzinfo=dt.UTC) if wanted.HasField("expires_at") else None
        )
        record, token = await self.tokens.create(
            current_credentials(),
            scopes=(
                list(wanted.scopes)
                if wanted.scopes or "scopes" in request.field_mask.paths
                else None
            ),
            expires_at=expires,
            owner_uuid=wanted.owner_uuid,
        )
        return token_pb(record, token)

    @rpc
    async def CurrentApiClientAuthorization(
        self, request: auth_service_pb2.CurrentApiClientAuthorizationRequest, context: Context
    ) -> Token:
        return token_pb(self.tokens.current(current_credentials()))

    @rpc
    async def GetApiClientAuthorization(
        self, request: auth_service_pb2.GetApiClientAuthorizationRequest, context: Context
    ) -> Token:
        return token_pb(await self.tokens.get(current_credentials().caller, request.uuid))

    @rpc
    async def ListApiClientAuthorizations(
        self, request: auth_service_pb2.ListApiClientAuthorizationsRequest, context: Context
    ) -> auth_service_pb2.ListApiClientAuthorizationsResponse:
        query = list_query(request, TOKEN_ATTRS, (("created_at", True), ("uuid", False)))
        records, total = await self.tokens.list(current_credentials().caller, query)
        response = auth_service_pb2.ListApiClientAuthorizationsResponse(
            kind=KIND + "List",
            offset=query.offset,
            limit=query.limit,
            items=[token_pb(r) for r in records],
        )
        keep_selected(response.items, request.select)
        if total is not None:
            response.items_available = total
        return response

    @rpc
    async def DeleteApiClientAuthorization(
        self, request: auth_service_pb2.DeleteApiClientAuthorizationRequest, context: Context
    ) -> Token:
        return token_pb(await self.tokens.revoke(current_credentials().caller, request.uuid))
