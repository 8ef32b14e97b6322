import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobtask.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_ACTIVE: _ClassVar[TaskStatus]
    TASK_STATUS_COMPLETED: _ClassVar[TaskStatus]
    TASK_STATUS_SOFT_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELED: _ClassVar[TaskStatus]
    TASK_STATUS_PAUSED: _ClassVar[TaskStatus]
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_ACTIVE: TaskStatus
TASK_STATUS_COMPLETED: TaskStatus
TASK_STATUS_SOFT_FAILED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELED: TaskStatus
TASK_STATUS_PAUSED: TaskStatus

class JobTask(_message.Message):
    __slots__ = ("uuid", "owner_uuid", "created_at", "modified_at", "modified_by_client_uuid", "modified_by_user_uuid", "etag", "kind", "href", "job_uuid", "sequence", "qsequence", "parameters", "output", "progress", "success", "created_by_job_task_uuid", "runtime_constraints", "failed_count", "failed_at", "failed_log", "log", "started_at", "finished_at", "status", "worker_id", "node_name", "attempt", "runnable_after", "failure_reason")
    UUID_FIELD_NUMBER: _ClassVar[int]
    OWNER_UUID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BY_CLIENT_UUID_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BY_USER_UUID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HREF_FIELD_NUMBER: _ClassVar[int]
    JOB_UUID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    QSEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_JOB_TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILED_LOG_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RUNNABLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    owner_uuid: str
    created_at: _timestamp_pb2.Timestamp
    modified_at: _timestamp_pb2.Timestamp
    modified_by_client_uuid: str
    modified_by_user_uuid: str
    etag: str
    kind: str
    href: str
    job_uuid: str
    sequence: int
    qsequence: int
    parameters: _struct_pb2.Struct
    output: str
    progress: float
    success: bool
    created_by_job_task_uuid: str
    runtime_constraints: _job_pb2.RuntimeConstraints
    failed_count: int
    failed_at: _timestamp_pb2.Timestamp
    failed_log: str
    log: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    status: TaskStatus
    worker_id: str
    node_name: str
    attempt: int
    runnable_after: _timestamp_pb2.Timestamp
    failure_reason: _job_pb2.FailureReason
    def __init__(self, uuid: _Optional[str] = ..., owner_uuid: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_by_client_uuid: _Optional[str] = ..., modified_by_user_uuid: _Optional[str] = ..., etag: _Optional[str] = ..., kind: _Optional[str] = ..., href: _Optional[str] = ..., job_uuid: _Optional[str] = ..., sequence: _Optional[int] = ..., qsequence: _Optional[int] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output: _Optional[str] = ..., progress: _Optional[float] = ..., success: _Optional[bool] = ..., created_by_job_task_uuid: _Optional[str] = ..., runtime_constraints: _Optional[_Union[_job_pb2.RuntimeConstraints, _Mapping]] = ..., failed_count: _Optional[int] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failed_log: _Optional[str] = ..., log: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., worker_id: _Optional[str] = ..., node_name: _Optional[str] = ..., attempt: _Optional[int] = ..., runnable_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failure_reason: _Optional[_Union[_job_pb2.FailureReason, _Mapping]] = ...) -> None: ...
