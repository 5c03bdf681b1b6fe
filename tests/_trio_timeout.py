"""A pytest plugin: a trio test that times out fails alone, not with every trio test after it.

pytest-timeout's default method raises from a SIGALRM handler in whatever code runs at
that instant; if that is trio's scheduler (a test waiting on something that never comes),
`trio.run` crashes and leaves its run state set, and every later trio test fails with
"Attempted to call run() from inside a run()". So for a trio test the limit is enforced
from within trio: a timer thread (real time, so a virtual clock does not stretch it)
cancels the test's body, which then fails with "Timeout". pytest-timeout's thread method
stays as a backstop, GRACE_S later, for a body that never reaches a checkpoint or a trio
fixture that hangs before the body starts: it dumps the stacks and ends the session (a
clear stop, never a poisoned one).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]
import trio

GRACE_S = 10.0
_LIMIT = pytest.StashKey[float]()


def _is_plain_trio_test(item: pytest.Item) -> bool:
    """An async test pytest-trio runs (not a Hypothesis one: it runs trio per example)."""
    function = getattr(item, "obj", None)
    return (
        item.get_closest_marker("trio") is not None
        and inspect.iscoroutinefunction(function)
        and not hasattr(function, "hypothesis")
    )


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if not _is_plain_trio_test(item):
        return None  # pytest-timeout's own timer, as configured
    item.stash[_LIMIT] = settings.timeout
    backstop = settings._replace(timeout=settings.timeout + GRACE_S, method="thread")
    # (its cancel hook stops this timer when the test ends, as for its own)
    return bool(pytest_timeout.pytest_timeout_set_timer(item, backstop))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    # tryfirst: before pytest-trio's wrapper replaces the test with its trio.run call.
    limit = item.stash.get(_LIMIT, None)
    if limit is not None and isinstance(item, pytest.Function):
        item.obj = _cancelled_after(item.obj, limit)
    yield


def _cancelled_after(
    test: Callable[..., Awaitable[object]], limit: float
) -> Callable[..., Awaitable[object]]:
    @functools.wraps(test)
    async def guarded(*args: object, **kwargs: object) -> object:
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            timer = threading.Timer(limit, _cancel_soon, (token, scope))
            timer.daemon = True
            timer.start()
            try:
                return await test(*args, **kwargs)
            finally:
                timer.cancel()
        pytest.fail(f"Timeout (>{limit}s): the test was cancelled from within trio")

    return guarded


def _cancel_soon(token: trio.lowlevel.TrioToken, scope: trio.CancelScope) -> None:
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(scope.cancel)
