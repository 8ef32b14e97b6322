"""A batch's refusals name the request they are about (jobtask.domain.errors)."""

from __future__ import annotations

import pytest
from jobtask.domain.errors import InvalidArgument, each_request


def _checked(value: int) -> int:
    if value < 0:
        raise InvalidArgument("priority", "must not be negative")
    return value * 2


def test_each_request_answers_in_order() -> None:
    assert each_request("job", [1, 2, 3], _checked) == [2, 4, 6]
    assert each_request("job", [], _checked) == []


def test_each_request_names_the_first_refused_request() -> None:
    seen: list[int] = []

    def check(value: int) -> int:
        seen.append(value)
        return _checked(value)

    with pytest.raises(InvalidArgument) as refused:
        each_request("job_task", [0, 5, -1, -2], check)
    assert refused.value.field == "requests[2].job_task.priority"
    assert refused.value.description == "must not be negative"
    assert seen == [0, 5, -1]
