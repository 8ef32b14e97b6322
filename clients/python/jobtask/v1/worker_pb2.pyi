import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_LIVE: _ClassVar[WorkerState]
    WORKER_STATE_LOST: _ClassVar[WorkerState]
    WORKER_STATE_STOPPED: _ClassVar[WorkerState]

class WorkerEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_EVENT_TYPE_UNSPECIFIED: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_SNAPSHOT: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_JOINED: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_CHANGED: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_LOST: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_STOPPED: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_HEARTBEAT: _ClassVar[WorkerEventType]
    WORKER_EVENT_TYPE_REMOVED: _ClassVar[WorkerEventType]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_LIVE: WorkerState
WORKER_STATE_LOST: WorkerState
WORKER_STATE_STOPPED: WorkerState
WORKER_EVENT_TYPE_UNSPECIFIED: WorkerEventType
WORKER_EVENT_TYPE_SNAPSHOT: WorkerEventType
WORKER_EVENT_TYPE_JOINED: WorkerEventType
WORKER_EVENT_TYPE_CHANGED: WorkerEventType
WORKER_EVENT_TYPE_LOST: WorkerEventType
WORKER_EVENT_TYPE_STOPPED: WorkerEventType
WORKER_EVENT_TYPE_HEARTBEAT: WorkerEventType
WORKER_EVENT_TYPE_REMOVED: WorkerEventType

class Worker(_message.Message):
    __slots__ = ("kind", "worker_id", "node_name", "tags", "slots", "free_slots", "ram_kib", "cores", "task_uuids", "first_seen_at", "last_seen_at", "stopped_at", "state", "tasks_finished", "tasks_failed")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    RAM_KIB_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    TASK_UUIDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FINISHED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    worker_id: str
    node_name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    free_slots: int
    ram_kib: int
    cores: int
    task_uuids: _containers.RepeatedScalarFieldContainer[str]
    first_seen_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    stopped_at: _timestamp_pb2.Timestamp
    state: WorkerState
    tasks_finished: int
    tasks_failed: int
    def __init__(self, kind: _Optional[str] = ..., worker_id: _Optional[str] = ..., node_name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., free_slots: _Optional[int] = ..., ram_kib: _Optional[int] = ..., cores: _Optional[int] = ..., task_uuids: _Optional[_Iterable[str]] = ..., first_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stopped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[WorkerState, str]] = ..., tasks_finished: _Optional[int] = ..., tasks_failed: _Optional[int] = ...) -> None: ...

class WorkerEvent(_message.Message):
    __slots__ = ("type", "time", "worker", "workers")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    type: WorkerEventType
    time: _timestamp_pb2.Timestamp
    worker: Worker
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, type: _Optional[_Union[WorkerEventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., worker: _Optional[_Union[Worker, _Mapping]] = ..., workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...
