"""A filter's numbers are exact or refused: they reach the server as doubles (a ListValue,
which REST's JSON becomes too), so an integer past 2^53 may already be another one."""

from __future__ import annotations

from typing import Any

import pytest
from jobtask.domain.errors import InvalidArgument
from jobtask.domain.query import Condition, parse_list_query
from jobtask.domain.resources import JOB_ATTRS, TASK_ATTRS


def _only(filters: list[Any], attrs: Any = TASK_ATTRS) -> Condition:
    query = parse_list_query(
        attrs,
        filters=filters,
        where=None,
        order=[],
        select=[],
        limit=None,
        offset=None,
        count="exact",
    )
    (condition,) = query.conditions
    return condition


def test_an_integer_past_2_53_as_a_double_is_refused_naming_the_filter() -> None:
    # 2^53 + 1 as JSON becomes the double 2^53: filtering on it would match the wrong row.
    with pytest.raises(InvalidArgument) as raised:
        _only([["qsequence", "=", float(2**53 + 1)]])
    assert raised.value.field == "filters[0] (qsequence =)"
    assert "send it as a string of digits" in str(raised.value)
    with pytest.raises(InvalidArgument):
        _only([["qsequence", "in", [1.0, -float(2**60)]]])
    with pytest.raises(InvalidArgument):
        _only([["qsequence", ">", "1e300"]])


def test_exact_integers_pass_as_numbers_up_to_2_53_and_as_strings_beyond() -> None:
    assert _only([["qsequence", "=", float(2**53 - 1)]]).operand == 2**53 - 1
    assert _only([["qsequence", "=", str(2**53 + 1)]]).operand == 2**53 + 1
    assert _only([["qsequence", "<", " 9223372036854775807 "]]).operand == 2**63 - 1
    assert _only([["qsequence", ">=", "1e3"]]).operand == 1000


def test_errors_show_a_json_integer_as_written() -> None:
    with pytest.raises(InvalidArgument) as raised:
        _only([["uuid", "like", 1.0]], JOB_ATTRS)
    assert str(raised.value).endswith("operand must be a string, got 1")
    with pytest.raises(InvalidArgument) as raised:
        _only([[1.0, 2.0, 3.0]], JOB_ATTRS)
    assert str(raised.value).endswith("operator must be a string, got 2")
    with pytest.raises(InvalidArgument) as raised:
        _only([["priority", "=", 1.5]], JOB_ATTRS)
    assert str(raised.value).endswith("operand must be an integer, got 1.5")
