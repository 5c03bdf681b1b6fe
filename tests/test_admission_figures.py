"""The gateway's admission figures for the health stream: what they read, and that reading
them starts nothing."""

from __future__ import annotations

import asyncio

from leasehold.gateway import Admission, AdmissionFigures, AdmissionSettings, Refusal, Refusals
from leasehold.gateway._return_path import ReturnPath


def test_figures_count_refusals_by_name_and_read_the_limit() -> None:
    refusals = Refusals()
    admission = Admission(AdmissionSettings(), refusals)
    refusals.count(Refusal.OVERLOADED, 3)
    assert admission.too_close(0.0)  # counted as DEADLINE
    admission.started(None)  # one call under way
    admission.limit.pushback_s = 0.25
    return_path = ReturnPath(clock=lambda: 10.0)
    return_path.observe(0.004)

    figures = AdmissionFigures.of(admission, return_path)

    assert figures.refusals["OVERLOADED"] == 3
    assert figures.refusals["DEADLINE"] == 1
    assert figures.refusals["BAD_TIMEOUT"] == 0
    assert set(figures.refusals) == {r.name for r in Refusal}
    assert figures.limit == int(admission.limit.limit)
    assert figures.in_flight == 1
    assert figures.pushback_ms == 250.0
    assert figures.return_path_ms == 4.0
    assert figures.to_map()["refusals"] == dict(figures.refusals)


def test_reading_the_figures_starts_no_loop_lag_timer() -> None:
    async def read() -> None:
        admission = Admission(AdmissionSettings(), Refusals())
        figures = AdmissionFigures.of(admission, ReturnPath())
        assert figures.loop_lag_ms == 0.0
        assert admission.loop_lag._timer is None  # seconds() would have started it

    asyncio.run(read())
