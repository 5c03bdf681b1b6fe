"""The process tree's memory the attack probes print (bench/_memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from leasehold._supervisor import ENTRY_MODULES
from leasehold.bench._memory import _own_memory_mb, tree_memory


@pytest.mark.timeout(30)
def test_a_tree_counts_its_children_and_shared_pages_once_in_pss() -> None:
    own_rss, own_pss = _own_memory_mb(os.getpid())
    script = "import time; print('ready', flush=True); time.sleep(20)"
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            tree = tree_memory(os.getpid())
            child_rss, _child_pss = _own_memory_mb(child.pid)
        finally:
            child.kill()
    assert 0 < own_pss <= own_rss
    assert child_rss > 0
    # Both pythons map the same interpreter and libraries: summed RSS counts those pages
    # twice, summed PSS once (split between the two).
    assert tree.rss_mb >= own_rss + child_rss
    assert tree.pss_mb < tree.rss_mb


def test_a_process_gone_counts_nothing() -> None:
    assert _own_memory_mb(2**22 + 12345) == (0.0, 0.0)


@pytest.mark.timeout(30)
def test_children_are_summed_by_their_role_in_the_tree() -> None:
    script = "import time; print('ready', flush=True); time.sleep(20)"
    # The command line the supervisor gives a gateway worker (its entry module, then args).
    command = [sys.executable, "-c", script, ENTRY_MODULES["gateway"], "0", "/tmp/runtime"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            by_role = tree_memory(os.getpid()).pss_by_role_mb
        finally:
            child.kill()
    assert by_role["gateway"] > 0
    assert by_role["other"] > 0  # this test's own process
    assert "shard" not in by_role
