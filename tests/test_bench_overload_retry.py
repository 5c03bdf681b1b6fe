"""What an overload-probe caller waits after a failed call (bench/_overload_load.py): the
server's pushback when it sent one, a randomized exponential backoff after a deadline
that expired in the client, nothing otherwise."""

from __future__ import annotations

import pytest

from leasehold.bench._overload_load import MAX_BACKOFF_S, PUSHBACK, Outcome, pause_after

DEADLINE_S = 0.1
EXPIRED_IN_CLIENT: Outcome = ("DEADLINE_EXCEEDED", None, {}, 0.0)


def test_the_servers_pushback_is_waited_and_ends_a_run_of_client_side_deadlines() -> None:
    refused: Outcome = ("RESOURCE_EXHAUSTED", None, {PUSHBACK: "250"}, 12.5)
    assert pause_after(refused, 3, DEADLINE_S, backoff=True) == (0.25, 0)
    too_close: Outcome = ("DEADLINE_EXCEEDED", None, {PUSHBACK: "40"}, 12.5)
    assert pause_after(too_close, 3, DEADLINE_S, backoff=True) == (0.04, 0)


@pytest.mark.parametrize("before", [0, 1, 2, 3, 10, 100])
def test_a_deadline_that_expired_in_the_client_backs_off_exponentially_to_a_cap(
    before: int,
) -> None:
    pause, after = pause_after(EXPIRED_IN_CLIENT, before, DEADLINE_S, backoff=True)
    assert after == before + 1
    base = min(MAX_BACKOFF_S, DEADLINE_S * 2**before)
    assert 0.5 * base <= pause <= 1.5 * base


def test_at_once_calls_again_without_waiting() -> None:
    assert pause_after(EXPIRED_IN_CLIENT, 2, DEADLINE_S, backoff=False) == (0.0, 0)


def test_an_answer_the_server_sent_without_pushback_is_not_backed_off() -> None:
    late: Outcome = ("DEADLINE_EXCEEDED", None, {}, 12.5)  # the server's own answer
    assert pause_after(late, 2, DEADLINE_S, backoff=True) == (0.0, 0)
    unavailable: Outcome = ("UNAVAILABLE", None, {}, 0.0)
    assert pause_after(unavailable, 2, DEADLINE_S, backoff=True) == (0.0, 0)
