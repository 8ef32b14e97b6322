from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from jobtask.v1 import job_pb2 as _job_pb2
from jobtask.v1 import watch_pb2 as _watch_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateJobRequest(_message.Message):
    __slots__ = ("job", "allow_duplicate", "find_or_create")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    FIND_OR_CREATE_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.Job
    allow_duplicate: bool
    find_or_create: bool
    def __init__(self, job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., allow_duplicate: _Optional[bool] = ..., find_or_create: _Optional[bool] = ...) -> None: ...

class BatchCreateJobsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CreateJobRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CreateJobRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
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

class ListJobsResponse(_message.Message):
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
    items: _containers.RepeatedCompositeFieldContainer[_job_pb2.Job]
    items_available: int
    def __init__(self, kind: _Optional[str] = ..., etag: _Optional[str] = ..., self_link: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., items: _Optional[_Iterable[_Union[_job_pb2.Job, _Mapping]]] = ..., items_available: _Optional[int] = ...) -> None: ...

class UpdateJobRequest(_message.Message):
    __slots__ = ("uuid", "job", "update_mask")
    UUID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    job: _job_pb2.Job
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, uuid: _Optional[str] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class QueueSizeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueSizeResponse(_message.Message):
    __slots__ = ("queue_size",)
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue_size: int
    def __init__(self, queue_size: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class LockJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class RequeueJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class PauseJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class ResumeJobRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("uuid", "after_seq", "max_events_per_message")
    UUID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    after_seq: int
    max_events_per_message: int
    def __init__(self, uuid: _Optional[str] = ..., after_seq: _Optional[int] = ..., max_events_per_message: _Optional[int] = ...) -> None: ...
