"""What the overload probe reads from the server's output (bench/_attacks.py)."""

from __future__ import annotations

from leasehold.bench._attacks import _summed, load_collapsed, server_refusals

OUTPUT = [
    "2026-12-02T01:27:25.562Z INFO leasehold: serving on 127.0.0.1:4000\n",
    "2026-12-02T01:27:30.337Z WARNING leasehold: refused in the last second: 2134 calls"
    " refused RESOURCE_EXHAUSTED (behind, or at the limit of calls under way); 613 calls"
    " dropped: deadline too close to be met; 170 replies finished after the caller's"
    " deadline\n",
    "2026-12-02T01:27:31.340Z WARNING leasehold: refused in the last second: 772 calls"
    " refused RESOURCE_EXHAUSTED (behind, or at the limit of calls under way)\n",
]


def test_every_kind_of_refusal_is_totalled_the_first_of_a_line_included() -> None:
    assert server_refusals(OUTPUT) == {
        "calls refused RESOURCE_EXHAUSTED (behind, or at the limit of calls under way)": 2906,
        "calls dropped: deadline too close to be met": 613,
        "replies finished after the caller's deadline": 170,
    }
    assert _summed(OUTPUT, "calls refused RESOURCE_EXHAUSTED") == 2906
    assert _summed(OUTPUT, "replies finished after") == 170
    assert _summed(OUTPUT, "connections over") == 0


def test_a_run_whose_load_lagged_over_one_and_a_half_deadlines_is_marked_collapsed() -> None:
    assert load_collapsed(0.180, 0.100)  # the collapsed runs lagged 180-260 ms at p99
    assert not load_collapsed(0.107, 0.100)  # the others 56-107 ms
    assert not load_collapsed(float("nan"), 0.100)  # no lag measured: nothing to say
