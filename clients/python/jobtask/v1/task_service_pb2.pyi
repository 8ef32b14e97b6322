import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobtask.v1 import job_pb2 as _job_pb2
from jobtask.v1 import job_task_pb2 as _job_task_pb2
from jobtask.v1 import watch_pb2 as _watch_pb2
from jobtask.v1 import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Instruction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTRUCTION_UNSPECIFIED: _ClassVar[Instruction]
    INSTRUCTION_CONTINUE: _ClassVar[Instruction]
    INSTRUCTION_CANCEL: _ClassVar[Instruction]
    INSTRUCTION_STOP: _ClassVar[Instruction]
INSTRUCTION_UNSPECIFIED: Instruction
INSTRUCTION_CONTINUE: Instruction
INSTRUCTION_CANCEL: Instruction
INSTRUCTION_STOP: Instruction

class CreateTaskRequest(_message.Message):
    __slots__ = ("job_task",)
    JOB_TASK_FIELD_NUMBER: _ClassVar[int]
    job_task: _job_task_pb2.JobTask
    def __init__(self, job_task: _Optional[_Union[_job_task_pb2.JobTask, _Mapping]] = ...) -> None: ...

class BatchCreateTasksRequest(_message.Message):
    __slots__ = ("requests", "select")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CreateTaskRequest]
    select: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, requests: _Optional[_Iterable[_Union[CreateTaskRequest, _Mapping]]] = ..., select: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchCreateTasksResponse(_message.Message):
    __slots__ = ("job_tasks",)
    JOB_TASKS_FIELD_NUMBER: _ClassVar[int]
    job_tasks: _containers.RepeatedCompositeFieldContainer[_job_task_pb2.JobTask]
    def __init__(self, job_tasks: _Optional[_Iterable[_Union[_job_task_pb2.JobTask, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
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

class ListTasksResponse(_message.Message):
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
    items: _containers.RepeatedCompositeFieldContainer[_job_task_pb2.JobTask]
    items_available: int
    def __init__(self, kind: _Optional[str] = ..., etag: _Optional[str] = ..., self_link: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., items: _Optional[_Iterable[_Union[_job_task_pb2.JobTask, _Mapping]]] = ..., items_available: _Optional[int] = ...) -> None: ...

class UpdateTaskRequest(_message.Message):
    __slots__ = ("uuid", "job_task", "update_mask")
    UUID_FIELD_NUMBER: _ClassVar[int]
    JOB_TASK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    job_task: _job_task_pb2.JobTask
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, uuid: _Optional[str] = ..., job_task: _Optional[_Union[_job_task_pb2.JobTask, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteTaskRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class ReportTaskExitRequest(_message.Message):
    __slots__ = ("uuid", "lease_id", "exit_code", "signal", "log")
    UUID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    lease_id: str
    exit_code: int
    signal: int
    log: str
    def __init__(self, uuid: _Optional[str] = ..., lease_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., log: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "node_name", "ram_kib", "cores", "free_slots", "tags", "slots", "heartbeat_interval", "decided_select")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    RAM_KIB_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    DECIDED_SELECT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    node_name: str
    ram_kib: int
    cores: int
    free_slots: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    heartbeat_interval: _duration_pb2.Duration
    decided_select: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., node_name: _Optional[str] = ..., ram_kib: _Optional[int] = ..., cores: _Optional[int] = ..., free_slots: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., decided_select: _Optional[_Iterable[str]] = ...) -> None: ...

class ClaimTaskRequest(_message.Message):
    __slots__ = ("worker", "wait", "max_tasks")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerInfo
    wait: _duration_pb2.Duration
    max_tasks: int
    def __init__(self, worker: _Optional[_Union[WorkerInfo, _Mapping]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_tasks: _Optional[int] = ...) -> None: ...

class ClaimTaskResponse(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[TaskAssignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[TaskAssignment, _Mapping]]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "expires_at", "ttl")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    expires_at: _timestamp_pb2.Timestamp
    ttl: _duration_pb2.Duration
    def __init__(self, lease_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task", "job", "lease", "task_token")
    TASK_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    TASK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task: _job_task_pb2.JobTask
    job: _job_pb2.Job
    lease: Lease
    task_token: str
    def __init__(self, task: _Optional[_Union[_job_task_pb2.JobTask, _Mapping]] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., task_token: _Optional[str] = ...) -> None: ...

class RunTaskRequest(_message.Message):
    __slots__ = ("task_uuid", "lease_id", "seq", "progress", "output", "success", "log", "exit_code", "signal", "handed_back")
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    HANDED_BACK_FIELD_NUMBER: _ClassVar[int]
    task_uuid: str
    lease_id: str
    seq: int
    progress: float
    output: str
    success: bool
    log: str
    exit_code: int
    signal: int
    handed_back: bool
    def __init__(self, task_uuid: _Optional[str] = ..., lease_id: _Optional[str] = ..., seq: _Optional[int] = ..., progress: _Optional[float] = ..., output: _Optional[str] = ..., success: _Optional[bool] = ..., log: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., handed_back: _Optional[bool] = ...) -> None: ...

class RunTaskResponse(_message.Message):
    __slots__ = ("acked_seq", "instruction", "reason", "lease", "task")
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    instruction: Instruction
    reason: str
    lease: Lease
    task: _job_task_pb2.JobTask
    def __init__(self, acked_seq: _Optional[int] = ..., instruction: _Optional[_Union[Instruction, str]] = ..., reason: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., task: _Optional[_Union[_job_task_pb2.JobTask, _Mapping]] = ...) -> None: ...

class WatchTasksRequest(_message.Message):
    __slots__ = ("job_uuid", "task_uuid", "after_seq", "max_events_per_message")
    JOB_UUID_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_uuid: str
    task_uuid: str
    after_seq: int
    max_events_per_message: int
    def __init__(self, job_uuid: _Optional[str] = ..., task_uuid: _Optional[str] = ..., after_seq: _Optional[int] = ..., max_events_per_message: _Optional[int] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("limit", "offset")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    limit: int
    offset: int
    def __init__(self, limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("kind", "offset", "limit", "items", "items_available")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    offset: int
    limit: int
    items: _containers.RepeatedCompositeFieldContainer[_worker_pb2.Worker]
    items_available: int
    def __init__(self, kind: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., items: _Optional[_Iterable[_Union[_worker_pb2.Worker, _Mapping]]] = ..., items_available: _Optional[int] = ...) -> None: ...

class GetWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class ReportWorkerStoppedRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class WatchWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskAttempt(_message.Message):
    __slots__ = ("kind", "task_uuid", "job_uuid", "attempt", "worker_id", "node_name", "started_at", "ended_at", "outcome", "exit_code", "signal")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    JOB_UUID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    task_uuid: str
    job_uuid: str
    attempt: int
    worker_id: str
    node_name: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    outcome: str
    exit_code: int
    signal: int
    def __init__(self, kind: _Optional[str] = ..., task_uuid: _Optional[str] = ..., job_uuid: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., node_name: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ...) -> None: ...

class ListTaskAttemptsRequest(_message.Message):
    __slots__ = ("uuid", "limit", "offset")
    UUID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    limit: int
    offset: int
    def __init__(self, uuid: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListTaskAttemptsResponse(_message.Message):
    __slots__ = ("kind", "offset", "limit", "items", "items_available")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    offset: int
    limit: int
    items: _containers.RepeatedCompositeFieldContainer[TaskAttempt]
    items_available: int
    def __init__(self, kind: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., items: _Optional[_Iterable[_Union[TaskAttempt, _Mapping]]] = ..., items_available: _Optional[int] = ...) -> None: ...

class ListJobAttemptsRequest(_message.Message):
    __slots__ = ("uuid", "limit", "offset")
    UUID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    limit: int
    offset: int
    def __init__(self, uuid: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListJobAttemptsResponse(_message.Message):
    __slots__ = ("kind", "offset", "limit", "items", "items_available")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    offset: int
    limit: int
    items: _containers.RepeatedCompositeFieldContainer[TaskAttempt]
    items_available: int
    def __init__(self, kind: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., items: _Optional[_Iterable[_Union[TaskAttempt, _Mapping]]] = ..., items_available: _Optional[int] = ...) -> None: ...

class WorkerSessionRequest(_message.Message):
    __slots__ = ("open", "credits", "reports", "heartbeat")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    open: WorkerInfo
    credits: int
    reports: _containers.RepeatedCompositeFieldContainer[RunTaskRequest]
    heartbeat: bool
    def __init__(self, open: _Optional[_Union[WorkerInfo, _Mapping]] = ..., credits: _Optional[int] = ..., reports: _Optional[_Iterable[_Union[RunTaskRequest, _Mapping]]] = ..., heartbeat: _Optional[bool] = ...) -> None: ...

class TaskUpdate(_message.Message):
    __slots__ = ("task_uuid", "acked_seq", "instruction", "reason", "lease", "task")
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    task_uuid: str
    acked_seq: int
    instruction: Instruction
    reason: str
    lease: Lease
    task: _job_task_pb2.JobTask
    def __init__(self, task_uuid: _Optional[str] = ..., acked_seq: _Optional[int] = ..., instruction: _Optional[_Union[Instruction, str]] = ..., reason: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., task: _Optional[_Union[_job_task_pb2.JobTask, _Mapping]] = ...) -> None: ...

class WorkerSessionResponse(_message.Message):
    __slots__ = ("assignments", "updates", "heartbeat_acked")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACKED_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[TaskAssignment]
    updates: _containers.RepeatedCompositeFieldContainer[TaskUpdate]
    heartbeat_acked: bool
    def __init__(self, assignments: _Optional[_Iterable[_Union[TaskAssignment, _Mapping]]] = ..., updates: _Optional[_Iterable[_Union[TaskUpdate, _Mapping]]] = ..., heartbeat_acked: _Optional[bool] = ...) -> None: ...
