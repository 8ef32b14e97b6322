"""Several replicas' addresses in one JOBTASK_TASKS_ADDR (the worker's failover list)."""

from __future__ import annotations

import pytest
from jobtask.sdk.transport import channel_target


def test_one_address_is_used_as_given() -> None:
    assert channel_target("tasks:50052") == "tasks:50052"
    assert channel_target("127.0.0.1:50052") == "127.0.0.1:50052"


def test_a_list_becomes_a_static_target_in_its_order() -> None:
    assert channel_target("127.0.0.1:2, 127.0.0.1:1") == "ipv4:127.0.0.1:2,127.0.0.1:1"
    assert channel_target("[::1]:2,[::1]:1") == "ipv6:[::1]:2,[::1]:1"


@pytest.mark.parametrize("addr", ["tasks-1:50052,tasks-2:50052", "127.0.0.1:1,[::1]:2"])
def test_names_and_mixed_families_are_refused(addr: str) -> None:
    with pytest.raises(ValueError, match="address list"):
        channel_target(addr)
