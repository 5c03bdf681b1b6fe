"""The supervisor's hand-over to its children: flags, runtime dir, assignment, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from leasehold._child import spec_args
from leasehold._flags import build_parser
from leasehold._process_flags import default_shard_processes
from leasehold._supervisor import spec_for
from leasehold._tree import read_spec, write_spec
from leasehold.link import SocketPathTooLong, check_socket_path
from leasehold.shards import process_of_shard, shards_of_process


def test_a_child_reads_the_supervisor_s_own_flags(tmp_path: Path) -> None:
    argv = ["serve", "--feed", "f.json", "--data-dir", "d", "--tls-cert", "c.pem"]
    args = build_parser().parse_args([*argv, "--tls-key", "k.pem", "--shards", "6"])
    write_spec(tmp_path, spec_for(args, port=4321, workers=3, shard_processes=2), "{}")
    spec, feed_text = read_spec(tmp_path)
    assert (spec.port, spec.workers, spec.shard_processes, feed_text) == (4321, 3, 2, "{}")
    assert vars(spec_args(spec.serve_args)) == vars(args)  # paths come back as paths


def test_every_shard_has_exactly_one_process() -> None:
    for shards in range(1, 9):
        for processes in range(1, 5):
            owned = [shards_of_process(i, shards, processes) for i in range(processes)]
            assert sorted(s for part in owned for s in part) == list(range(shards))
            for index, part in enumerate(owned):
                assert all(process_of_shard(s, processes) == index for s in part)


def test_a_socket_path_past_the_kernel_s_limit_is_refused_by_name(tmp_path: Path) -> None:
    check_socket_path(tmp_path / "s.sock")
    with pytest.raises(SocketPathTooLong, match="at most 107"):
        check_socket_path(Path("/tmp") / ("x" * 120))


@pytest.mark.parametrize(("cpus", "expected"), [(1, 2), (2, 2), (4, 2), (8, 4), (64, 32)])
def test_shard_processes_default_to_half_the_cpus_and_at_least_two(
    cpus: int, expected: int
) -> None:
    assert default_shard_processes(cpus) == expected


def test_shedding_totals_survive_a_shard_process_restart() -> None:
    from leasehold._tree_run import _Monotone

    totals = _Monotone()
    assert totals.totals([3, 5]) == [3, 5]
    assert totals.totals([4, 5]) == [4, 5]
    assert totals.totals([1, 7]) == [5, 7]  # shard 0's process restarted: its count began at 0
    assert totals.totals([1, 7]) == [5, 7]  # nothing new: no warning's worth
