"""Names the load generator gives references, tokens and users never repeat within a run."""

from __future__ import annotations

import random
from typing import Any, cast

from leasehold.bench._client import Client
from leasehold.bench._loadgen import Ctx, PhaseSpec


def _spec(number: int, worker: int = 0) -> PhaseSpec:
    return PhaseSpec(
        name="measure",
        scenario="contention",
        mode="closed",
        concurrency=1,
        rate=0.0,
        start_ns=0,
        end_ns=1,
        max_requests=10,
        params={},
        worker=worker,
        workers=2,
        seed=1,
        run_id="r1",
        number=number,
    )


def _names(spec: PhaseSpec, count: int) -> list[str]:
    ctx = Ctx(cast(Client, cast(Any, None)), spec, random.Random(0))
    return [ctx.name("r") for _ in range(count)]


def test_rounds_of_one_phase_name_different_references() -> None:
    # The --ceiling rounds run "measure" three times; each round starts its count anew.
    first, second = _names(_spec(number=2), 5), _names(_spec(number=4), 5)
    assert len(set(first)) == 5
    assert not set(first) & set(second)


def test_workers_of_one_phase_name_different_references() -> None:
    assert not set(_names(_spec(2, worker=0), 5)) & set(_names(_spec(2, worker=1), 5))
