"""The inventory admin service in the multi-process mode: served by gateway worker 0
over the link, on a port that survives that worker's restart; a --feed over stored
state is applied once, at the tree's start, never again by a restarted worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import pytest
from _server_process import running_server, write_feed
from test_e2e_inventory import (
    START,
    A,
    B,
    admin_target,
    available,
    entry,
    feed_document,
    inventory,
    replace,
    window,
)
from test_e2e_tree import TREE, children, restarted, wait_for

from leasehold.core import SlotKey
from leasehold.proto.admin.v1 import inventory_pb2_grpc as admin_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Slots of several merchants, so that both shard processes own some.
OTHERS = [SlotKey(f"m{i}", "svc", START + 600 * i, 600) for i in range(2, 10)]


def test_a_feed_change_is_applied_once_and_the_admin_port_outlives_its_worker(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = write_feed(
        tmp_path / "first.json",
        feed_document(entry(A, 1), entry(B, 1), *(entry(k, 2) for k in OTHERS)),
    )
    with running_server(data, "--feed", str(first), *TREE):
        pass
    smaller = write_feed(
        tmp_path / "smaller.json", feed_document(entry(B, 3), *(entry(k, 2) for k in OTHERS))
    )
    with (
        running_server(data, "--feed", str(smaller), *TREE) as server,
        grpc.insecure_channel(server.target) as partner,
    ):
        lines = "".join(server.output)
        assert "whole-feed change: 0 added, 1 changed, 1 removed (0 kept because booked)" in lines
        assert f"serving {1 + len(OTHERS)} slots of {1 + len(OTHERS)} merchants" in lines
        assert "2 gateway workers, 2 shard processes" in lines
        assert (available(partner, B), available(partner, OTHERS[-1])) == (3, 2)
        target = admin_target(server)
        with grpc.insecure_channel(target) as admin:
            replace(admin_grpc.InventoryServiceStub(admin), window(entry(B, 5), key=B))
        victim = children(server)["gateway 0"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: restarted(server, "gateway 0", victim), "gateway worker 0 to restart")
        with grpc.insecure_channel(target) as admin:  # the same port, served again
            grpc.channel_ready_future(admin).result(timeout=30)
            stub = admin_grpc.InventoryServiceStub(admin)
            # The admin change stands: the restarted worker did not apply --feed again.
            assert inventory(stub) == [(START, 1, 0, 0, True), (START + 1800, 5, 0, 0, False)]
        assert available(partner, B) == 5
        assert lines.count("whole-feed change") == "".join(server.output).count("whole-feed")
