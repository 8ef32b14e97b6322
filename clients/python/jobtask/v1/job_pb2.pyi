import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_UNDER_CONSTRUCTION: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_ACTIVE: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCEL_REQUESTED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELED: _ClassVar[JobStatus]
    JOB_STATUS_REQUEUEING: _ClassVar[JobStatus]
    JOB_STATUS_PAUSED: _ClassVar[JobStatus]
    JOB_STATUS_PAUSE_REQUESTED: _ClassVar[JobStatus]

class FailureRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_RULE_UNSPECIFIED: _ClassVar[FailureRule]
    FAILURE_RULE_RETRY_LIMIT: _ClassVar[FailureRule]
    FAILURE_RULE_SUCCESS_FALSE: _ClassVar[FailureRule]
    FAILURE_RULE_INCOMPLETE: _ClassVar[FailureRule]
    FAILURE_RULE_SCRIPT_NOT_FOUND: _ClassVar[FailureRule]
    FAILURE_RULE_BLOCKLIST: _ClassVar[FailureRule]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_UNDER_CONSTRUCTION: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_ACTIVE: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCEL_REQUESTED: JobStatus
JOB_STATUS_CANCELED: JobStatus
JOB_STATUS_REQUEUEING: JobStatus
JOB_STATUS_PAUSED: JobStatus
JOB_STATUS_PAUSE_REQUESTED: JobStatus
FAILURE_RULE_UNSPECIFIED: FailureRule
FAILURE_RULE_RETRY_LIMIT: FailureRule
FAILURE_RULE_SUCCESS_FALSE: FailureRule
FAILURE_RULE_INCOMPLETE: FailureRule
FAILURE_RULE_SCRIPT_NOT_FOUND: FailureRule
FAILURE_RULE_BLOCKLIST: FailureRule

class RuntimeConstraints(_message.Message):
    __slots__ = ("min_nodes", "max_nodes", "max_tasks_per_node", "min_ram_per_task", "min_ram_per_node", "retry_backoff_base_seconds", "retry_backoff_max_seconds", "blocklist_threshold")
    MIN_NODES_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    MIN_RAM_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    MIN_RAM_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_BASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BLOCKLIST_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    min_nodes: int
    max_nodes: int
    max_tasks_per_node: int
    min_ram_per_task: int
    min_ram_per_node: int
    retry_backoff_base_seconds: int
    retry_backoff_max_seconds: int
    blocklist_threshold: int
    def __init__(self, min_nodes: _Optional[int] = ..., max_nodes: _Optional[int] = ..., max_tasks_per_node: _Optional[int] = ..., min_ram_per_task: _Optional[int] = ..., min_ram_per_node: _Optional[int] = ..., retry_backoff_base_seconds: _Optional[int] = ..., retry_backoff_max_seconds: _Optional[int] = ..., blocklist_threshold: _Optional[int] = ...) -> None: ...

class FailureReason(_message.Message):
    __slots__ = ("rule", "message", "exit_code", "signal", "log_tail", "task_uuid", "worker_id")
    RULE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    rule: FailureRule
    message: str
    exit_code: int
    signal: int
    log_tail: str
    task_uuid: str
    worker_id: str
    def __init__(self, rule: _Optional[_Union[FailureRule, str]] = ..., message: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., log_tail: _Optional[str] = ..., task_uuid: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class BlocklistEntry(_message.Message):
    __slots__ = ("worker_id", "failed_tasks", "added_at")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_TASKS_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    failed_tasks: int
    added_at: _timestamp_pb2.Timestamp
    def __init__(self, worker_id: _Optional[str] = ..., failed_tasks: _Optional[int] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TasksSummary(_message.Message):
    __slots__ = ("todo", "running", "done", "failed")
    TODO_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    todo: int
    running: int
    done: int
    failed: int
    def __init__(self, todo: _Optional[int] = ..., running: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("uuid", "owner_uuid", "created_at", "modified_at", "modified_by_client_uuid", "modified_by_user_uuid", "etag", "kind", "href", "submit_id", "priority", "script", "script_name", "script_parameters", "script_version", "repository", "runtime_constraints", "resource_limits", "cancelled_by_client_uuid", "cancelled_by_user_uuid", "cancelled_at", "started_at", "finished_at", "running", "success", "is_locked_by_uuid", "output", "log", "tasks_summary", "status", "state", "failure_reason", "blocklist")
    UUID_FIELD_NUMBER: _ClassVar[int]
    OWNER_UUID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BY_CLIENT_UUID_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_BY_USER_UUID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HREF_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_NAME_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_CLIENT_UUID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_USER_UUID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    IS_LOCKED_BY_UUID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    TASKS_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    BLOCKLIST_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    owner_uuid: str
    created_at: _timestamp_pb2.Timestamp
    modified_at: _timestamp_pb2.Timestamp
    modified_by_client_uuid: str
    modified_by_user_uuid: str
    etag: str
    kind: str
    href: str
    submit_id: str
    priority: int
    script: str
    script_name: str
    script_parameters: _struct_pb2.Struct
    script_version: str
    repository: str
    runtime_constraints: RuntimeConstraints
    resource_limits: RuntimeConstraints
    cancelled_by_client_uuid: str
    cancelled_by_user_uuid: str
    cancelled_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    running: bool
    success: bool
    is_locked_by_uuid: str
    output: str
    log: str
    tasks_summary: TasksSummary
    status: JobStatus
    state: str
    failure_reason: FailureReason
    blocklist: _containers.RepeatedCompositeFieldContainer[BlocklistEntry]
    def __init__(self, uuid: _Optional[str] = ..., owner_uuid: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modified_by_client_uuid: _Optional[str] = ..., modified_by_user_uuid: _Optional[str] = ..., etag: _Optional[str] = ..., kind: _Optional[str] = ..., href: _Optional[str] = ..., submit_id: _Optional[str] = ..., priority: _Optional[int] = ..., script: _Optional[str] = ..., script_name: _Optional[str] = ..., script_parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., script_version: _Optional[str] = ..., repository: _Optional[str] = ..., runtime_constraints: _Optional[_Union[RuntimeConstraints, _Mapping]] = ..., resource_limits: _Optional[_Union[RuntimeConstraints, _Mapping]] = ..., cancelled_by_client_uuid: _Optional[str] = ..., cancelled_by_user_uuid: _Optional[str] = ..., cancelled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., running: _Optional[bool] = ..., success: _Optional[bool] = ..., is_locked_by_uuid: _Optional[str] = ..., output: _Optional[str] = ..., log: _Optional[str] = ..., tasks_summary: _Optional[_Union[TasksSummary, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., state: _Optional[str] = ..., failure_reason: _Optional[_Union[FailureReason, _Mapping]] = ..., blocklist: _Optional[_Iterable[_Union[BlocklistEntry, _Mapping]]] = ...) -> None: ...
