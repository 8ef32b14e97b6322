import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from jobtask.v1 import job_pb2 as _job_pb2
from jobtask.v1 import job_task_pb2 as _job_task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCH_EVENT_TYPE_UNSPECIFIED: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_SNAPSHOT: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_JOB_CHANGED: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_TASK_CREATED: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_TASK_CHANGED: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_TASK_PROGRESS: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_TASK_LOG: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_TASK_DELETED: _ClassVar[WatchEventType]
    WATCH_EVENT_TYPE_HEARTBEAT: _ClassVar[WatchEventType]
WATCH_EVENT_TYPE_UNSPECIFIED: WatchEventType
WATCH_EVENT_TYPE_SNAPSHOT: WatchEventType
WATCH_EVENT_TYPE_JOB_CHANGED: WatchEventType
WATCH_EVENT_TYPE_TASK_CREATED: WatchEventType
WATCH_EVENT_TYPE_TASK_CHANGED: WatchEventType
WATCH_EVENT_TYPE_TASK_PROGRESS: WatchEventType
WATCH_EVENT_TYPE_TASK_LOG: WatchEventType
WATCH_EVENT_TYPE_TASK_DELETED: WatchEventType
WATCH_EVENT_TYPE_HEARTBEAT: WatchEventType

class WatchEvent(_message.Message):
    __slots__ = ("seq", "type", "time", "job_uuid", "task_uuid", "job", "task", "tasks", "snapshot_done", "progress", "log", "more")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    JOB_UUID_FIELD_NUMBER: _ClassVar[int]
    TASK_UUID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_DONE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    type: WatchEventType
    time: _timestamp_pb2.Timestamp
    job_uuid: str
    task_uuid: str
    job: _job_pb2.Job
    task: _job_task_pb2.JobTask
    tasks: _containers.RepeatedCompositeFieldContainer[_job_task_pb2.JobTask]
    snapshot_done: bool
    progress: float
    log: str
    more: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    def __init__(self, seq: _Optional[int] = ..., type: _Optional[_Union[WatchEventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job_uuid: _Optional[str] = ..., task_uuid: _Optional[str] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ..., task: _Optional[_Union[_job_task_pb2.JobTask, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_job_task_pb2.JobTask, _Mapping]]] = ..., snapshot_done: _Optional[bool] = ..., progress: _Optional[float] = ..., log: _Optional[str] = ..., more: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ...) -> None: ...
