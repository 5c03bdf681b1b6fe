"""`leasehold serve`'s connection-limit flags and the open-file limit they need."""

from __future__ import annotations

import resource

import pytest

from leasehold._flags import build_parser as _parser
from leasehold._serve_cmd import raise_open_file_limit as _raise_open_file_limit
from leasehold._serve_settings import guard_limits as _guard_limits


def test_the_limit_flags_reach_the_guard_limits() -> None:
    args = _parser().parse_args(
        ["serve", "--max-connections", "7", "--handshake-timeout", "0.5", "--idle-timeout", "9"]
    )
    limits = _guard_limits(args)
    assert (limits.max_connections, limits.handshake_timeout_s, limits.idle_timeout_s) == (
        7,
        0.5,
        9.0,
    )


def test_a_cap_of_zero_connections_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--max-connections", "0"])


def test_a_cap_within_the_hard_limit_raises_the_soft_limit_to_cover_it() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        assert _raise_open_file_limit(1) is None
        new_soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert new_soft == resource.RLIM_INFINITY or new_soft >= 1 + 1024
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_cap_beyond_the_hard_limit_is_one_clear_line() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit here")
    try:
        problem = _raise_open_file_limit(hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert problem is not None
    assert f"the hard limit is {hard}" in problem
