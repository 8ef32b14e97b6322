import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiClientAuthorization(_message.Message):
    __slots__ = ("uuid", "owner_uuid", "created_at", "modified_at", "modified_by_client_uuid", "modified_by_user_uuid", "etag", "kind", "href", "api_token", "scopes", "expires_at", "revoked_at")
    UUID_FIELD_NUMBER: _ClassVar[int]
    OWNER_UUID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BY_CLIENT_UUID_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BY_USER_UUID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HREF_FIELD_NUMBER: _ClassVar[int]
    API_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    owner_uuid: str
    created_at: _timestamp_pb2.Timestamp
    modified_at: _timestamp_pb2.Timestamp
    modified_by_client_uuid: str
    modified_by_user_uuid: str
    etag: str
    kind: str
    href: str
    api_token: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., owner_uuid: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_by_client_uuid: _Optional[str] = ..., modified_by_user_uuid: _Optional[str] = ..., etag: _Optional[str] = ..., kind: _Optional[str] = ..., href: _Optional[str] = ..., api_token: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateApiClientAuthorizationRequest(_message.Message):
    __slots__ = ("api_client_authorization", "field_mask")
    API_CLIENT_AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    api_client_authorization: ApiClientAuthorization
    field_mask: _field_mask_pb2.FieldMask
    def __init__(self, api_client_authorization: _Optional[_Union[ApiClientAuthorization, _Mapping]] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class CurrentApiClientAuthorizationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetApiClientAuthorizationRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class ListApiClientAuthorizationsRequest(_message.Message):
    __slots__ = ("filters", "where", "order", "select", "limit", "offset", "count", "distinct")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    filters: _struct_pb2.ListValue
    where: _struct_pb2.Struct
    order: _containers.RepeatedScalarFieldContainer[str]
    select: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    offset: int
    count: str
    distinct: bool
    def __init__(self, filters: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., where: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., order: _Optional[_Iterable[str]] = ..., select: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., count: _Optional[str] = ..., distinct: _Optional[bool] = ...) -> None: ...

class ListApiClientAuthorizationsResponse(_message.Message):
    __slots__ = ("kind", "etag", "self_link", "offset", "limit", "items", "items_available")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SELF_LINK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    etag: str
    self_link: str
    offset: int
    limit: int
    items: _containers.RepeatedCompositeFieldContainer[ApiClientAuthorization]
    items_available: int
    def __init__(self, kind: _Optional[str] = ..., etag: _Optional[str] = ..., self_link: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., items: _Optional[_Iterable[_Union[ApiClientAuthorization, _Mapping]]] = ..., items_available: _Optional[int] = ...) -> None: ...

class DeleteApiClientAuthorizationRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...
