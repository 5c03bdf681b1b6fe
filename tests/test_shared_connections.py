"""--max-connections counts every gateway worker's connections together."""

from __future__ import annotations

from pathlib import Path

from leasehold._shared_connections import SharedConnectionTracker, create_counts


def test_the_cap_holds_over_all_workers_and_a_release_frees_a_place(tmp_path: Path) -> None:
    path = tmp_path / "connections.bin"
    create_counts(path, 2)
    first, second = (SharedConnectionTracker(3, path, i) for i in range(2))
    assert [first.admit(), second.admit(), second.admit()] == [True, True, True]
    assert not first.admit()
    assert not second.admit()
    second.release()
    assert first.admit()
    assert (first.open, second.open) == (2, 1)


def test_a_restarted_worker_forgets_the_connections_of_the_one_killed(tmp_path: Path) -> None:
    path = tmp_path / "connections.bin"
    create_counts(path, 2)
    killed, other = SharedConnectionTracker(2, path, 0), SharedConnectionTracker(2, path, 1)
    assert killed.admit()
    assert killed.admit()
    assert not other.admit()
    SharedConnectionTracker(2, path, 0)  # worker 0 started again: its old connections died
    assert other.admit()
