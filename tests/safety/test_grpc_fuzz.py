"""A bounded fuzz pass over every gRPC method (issue 13, "Done when").

Hypothesis builds request messages field by field from their descriptors, with extreme
values (huge and negative integers, NaN, infinities, long and odd strings, deep Structs,
unknown enum numbers), or sends random bytes as the request. They go through a real server
on port 0 (SQLite) with an admin token. No answer may be UNKNOWN (an exception that escaped
with its text), and an INTERNAL answer may carry nothing but the generic message with its
error id."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import NULL_VALUE, ListValue, Struct, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobtask.v1 import auth_service_pb2, job_service_pb2, task_service_pb2

from tests.conftest import Cluster, start_cluster, token_channel

EXAMPLES_PER_SERVICE = 150
CALL_TIMEOUT = 5.0
INTERNAL = re.compile(r"^internal error \(error id [0-9a-f]+\); see the server log$")
SERVICES = {
    "JobService": job_service_pb2.DESCRIPTOR.services_by_name["JobService"],
    "TaskService": task_service_pb2.DESCRIPTOR.services_by_name["TaskService"],
    "ApiClientAuthorizationService": auth_service_pb2.DESCRIPTOR.services_by_name[
        "ApiClientAuthorizationService"
    ],
}
# Values real requests carry, so some generated messages get past the first check.
UUIDS = ["zzzzz-8i9sb-000000000000000", "zzzzz-ot0gb-000000000000000", "zzzzz-gj3su-0"]
F = FieldDescriptor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=20),
        st.sampled_from([*UUIDS, "", "all", "hash.py", "NaN", "-1", "{}", "\x00", "é" * 3]),
        st.integers(1, 70_000).map(lambda n: "x" * n),
    )


_INTS = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([2**31 - 1, -(2**31)]),
    st.integers(-(2**31), 2**31 - 1),
)
_INT64S = st.one_of(_INTS, st.sampled_from([2**53 + 1, 2**63 - 1, -(2**63)]))
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 1.5]),
)


def _value(depth: int) -> st.SearchStrategy[Value]:
    leaves = st.one_of(
        st.builds(lambda: Value(null_value=NULL_VALUE)),
        _FLOATS.map(lambda f: Value(number_value=f)),
        _strings().map(lambda s: Value(string_value=s)),
        st.booleans().map(lambda b: Value(bool_value=b)),
    )
    if depth <= 0:
        return leaves
    inner = st.deferred(lambda: _value(depth - 1))
    return st.one_of(
        leaves,
        st.lists(inner, max_size=2).map(lambda vs: Value(list_value=ListValue(values=vs))),
        st.dictionaries(_strings(), inner, max_size=2).map(
            lambda d: Value(struct_value=Struct(fields=d))
        ),
    )


def _deep_struct(depth: int) -> Struct:
    """A Struct nested `depth` levels (protobuf's parser stops at 100)."""
    s = Struct()
    s.fields["leaf"].number_value = 1
    for _ in range(depth):
        outer = Struct()
        outer.fields["x"].struct_value.CopyFrom(s)
        s = outer
    return s


def _struct() -> st.SearchStrategy[Struct]:
    return st.one_of(
        st.dictionaries(_strings(), _value(3), max_size=3).map(lambda d: Struct(fields=d)),
        st.sampled_from([10, 40, 90]).map(_deep_struct),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return _INTS
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return _INT64S
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return _FLOATS
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_STRING:
        return _strings()
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 1000))
    raise AssertionError(f"unhandled field type {t}")


@st.composite
def _message(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    cls = _class(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        return draw(_struct())
    if descriptor.full_name == "google.protobuf.Value":
        return draw(_value(3))
    msg = cls()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = field.message_type.fields
            for _ in range(draw(st.integers(0, 2))):
                key = draw(_scalar(key_f))
                target = getattr(msg, field.name)
                if value_f.message_type is not None:
                    if depth < 3:
                        target[key].CopyFrom(draw(_message(value_f.message_type, depth + 1)))
                else:
                    target[key] = draw(_scalar(value_f))
            continue
        repeated = field.is_repeated
        count = draw(st.integers(0, 3)) if repeated else 1
        for _ in range(count):
            if field.message_type is not None:
                if depth >= 3:
                    break
                value = draw(_message(field.message_type, depth + 1))
                if repeated:
                    getattr(msg, field.name).add().CopyFrom(value)
                else:
                    getattr(msg, field.name).CopyFrom(value)
            elif repeated:
                getattr(msg, field.name).append(draw(_scalar(field)))
            else:
                setattr(msg, field.name, draw(_scalar(field)))
    return msg


def _class(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


@st.composite
def _request(draw: st.DrawFn, service: Any) -> tuple[MethodDescriptor, bytes]:
    method = draw(st.sampled_from(list(service.methods)))
    if draw(st.integers(0, 9)) == 0:
        return method, draw(st.binary(max_size=256))  # not a message at all, most likely
    return method, draw(_message(method.input_type)).SerializeToString()


def _check(err: grpc.aio.AioRpcError, label: str) -> None:
    code, details = err.code(), err.details() or ""
    assert code != grpc.StatusCode.UNKNOWN, f"{label}: UNKNOWN {details[:300]!r}"
    if code == grpc.StatusCode.INTERNAL:
        assert INTERNAL.match(details), f"{label}: INTERNAL {details[:300]!r}"
    assert "Traceback" not in details and "Error:" not in details, f"{label}: {details[:300]!r}"


async def _send(channel: grpc.aio.Channel, method: MethodDescriptor, data: bytes) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    label = f"{method.name}({data[:60]!r})"
    try:
        if method.client_streaming:
            call: Any = channel.stream_stream(path)(timeout=CALL_TIMEOUT)  # type: ignore[call-arg]  # raw bytes, requests written below
            await call.write(data)
            await call.done_writing()
            await _drain(call)
        elif method.server_streaming:
            await _drain(channel.unary_stream(path)(data, timeout=CALL_TIMEOUT))  # type: ignore[call-arg]  # raw bytes
        else:
            await channel.unary_unary(path)(data, timeout=CALL_TIMEOUT)  # type: ignore[call-arg]  # raw bytes
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return  # a long-poll or a watch that waits for news: fine
        _check(err, label)


async def _drain(call: Any) -> None:
    """Reads a stream's first few messages (a watch would go on for ever)."""
    read = 0
    async for _ in call:
        read += 1
        if read >= 3:
            call.cancel()
            return


@pytest.fixture
async def fuzz_cluster(tmp_path: Path) -> AsyncIterator[tuple[Cluster, grpc.aio.Channel, Any]]:
    cluster = await start_cluster(f"sqlite:///{tmp_path / 'fuzz.sqlite3'}", lease_ttl=3.0)
    jobs = token_channel(cluster.jobs_addr, cluster.admin_token)
    tasks = token_channel(cluster.tasks_addr, cluster.admin_token)
    try:
        yield cluster, jobs, tasks
    finally:
        await jobs.close(None)
        await tasks.close(None)
        await cluster.close()


@pytest.mark.parametrize("name", sorted(SERVICES))
@given(data=st.data())
@settings(
    max_examples=EXAMPLES_PER_SERVICE,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
async def test_no_method_answers_unknown(
    name: str, fuzz_cluster: tuple[Cluster, grpc.aio.Channel, Any], data: st.DataObject
) -> None:
    _, jobs, tasks = fuzz_cluster
    method, payload = data.draw(_request(SERVICES[name]), label="request")
    await _send(tasks if name == "TaskService" else jobs, method, payload)
