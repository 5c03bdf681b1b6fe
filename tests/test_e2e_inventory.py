"""The inventory admin service end to end: a spawned server, a grpcio client on its admin
port, the partner API on its own port (spec section 8, docs/inventory.md)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import grpc
import pytest
import trustme
from _api import booking_v2, lease_v2, slot_v2
from _server_process import ServerProcess, running_server, write_feed
from test_e2e_serve import list_services

from leasehold.core import SlotKey
from leasehold.proto.admin.v1 import inventory_pb2 as pb
from leasehold.proto.admin.v1 import inventory_pb2_grpc as admin_grpc
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

START = 4_102_444_800  # 2100-01-01: slots that have not ended, whenever the test runs
A = SlotKey("m1", "cut", START, 1800)
B = SlotKey("m1", "cut", START + 1800, 1800)
CALL_TIMEOUT_S = 10.0
ADMIN_SERVICE = "leasehold.admin.v1.InventoryService"
_ADMIN_LINE = re.compile(r"inventory admin service on 127\.0\.0\.1:(\d+)")


def entry(key: SlotKey, spots: int) -> dict[str, object]:
    return {
        "merchant_id": key.merchant_id,
        "service_id": key.service_id,
        "start_sec": key.start_sec,
        "duration_sec": key.duration_sec,
        "spots_total": spots,
        "spots_open": spots,
    }


def feed_document(*entries: dict[str, object]) -> dict[str, object]:
    return {"service_availability": [{"availability": list(entries)}]}


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    return write_feed(tmp_path / "feed.json", feed_document(entry(A, 1), entry(B, 1)))


def admin_target(server: ServerProcess) -> str:
    for line in server.output:
        found = _ADMIN_LINE.search(line)
        if found:
            return f"127.0.0.1:{found.group(1)}"
    raise AssertionError("no admin line:\n" + "".join(server.output))


def window(*entries: dict[str, object], key: SlotKey = A) -> pb.ServiceAvailability:
    """The window of `key`'s merchant and service over the whole test day."""
    item = pb.ServiceAvailability(
        start_timestamp_restrict=START,
        end_timestamp_restrict=START + 86_400,
        merchant_id_restrict=key.merchant_id,
        service_id_restrict=key.service_id,
    )
    for raw in entries:
        item.availability.append(pb.Availability(**raw))  # type: ignore[arg-type]
    return item


def replace(
    stub: admin_grpc.InventoryServiceStub, *items: pb.ServiceAvailability
) -> pb.ChangeReport:
    request = pb.ReplaceServiceAvailabilityRequest(service_availability=items)
    reply: pb.ChangeReport = stub.ReplaceServiceAvailability(request, timeout=CALL_TIMEOUT_S)
    return reply


def inventory(stub: admin_grpc.InventoryServiceStub) -> list[tuple[int, int, int, int, bool]]:
    """(start, capacity, leases, bookings, removed) of m1/cut's slots."""
    request = pb.GetInventoryRequest(merchant_id="m1", service_id="cut")
    reply = stub.GetInventory(request, timeout=CALL_TIMEOUT_S)
    return [(s.slot.start_sec, s.capacity, s.leases, s.bookings, s.removed) for s in reply.slots]


def available(channel: grpc.Channel, key: SlotKey) -> int | grpc.StatusCode:
    stub = grpc2.BookingServiceStub(channel)
    request = pb2.CheckAvailabilityRequest(slot=slot_v2(key))
    try:
        return int(stub.CheckAvailability(request, timeout=CALL_TIMEOUT_S).count_available)
    except grpc.RpcError as error:
        return error.code()


def test_raise_lower_remove_and_readd_through_the_admin_port(tmp_path: Path, feed: Path) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed)) as server,
        grpc.insecure_channel(server.target) as partner,
        grpc.insecure_channel(admin_target(server)) as admin,
    ):
        stub = admin_grpc.InventoryServiceStub(admin)
        booking = grpc2.BookingServiceStub(partner)
        booked = booking.CreateBooking(booking_v2(A, "t1"), timeout=CALL_TIMEOUT_S)
        assert booked.booking.status == pb2.BookingStatus.CONFIRMED
        assert available(partner, A) == 0
        # Raised: the new spot is available at once.
        report = replace(stub, window(entry(A, 2), entry(B, 1)))
        assert (report.changed, report.unchanged, report.removed) == (1, 1, 0)
        assert available(partner, A) == 1
        lease = booking.CreateLease(lease_v2(A, "r1"), timeout=CALL_TIMEOUT_S).lease
        # Lowered below the holders (a booking and a lease): nobody evicted, no grant.
        replace(stub, window(entry(A, 1), entry(B, 1)))
        assert inventory(stub)[0] == (START, 1, 1, 1, False)
        refused = booking.CreateLease(lease_v2(A, "r2"), timeout=CALL_TIMEOUT_S)
        assert refused.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        # Removed: the booking stays (orphaned), the lease is released and cannot book.
        report = replace(stub, window(entry(B, 1)))
        assert (report.removed, report.kept_booked, report.leases_released) == (1, 1, 1)
        assert inventory(stub)[0] == (START, 1, 0, 1, True)
        assert available(partner, A) is grpc.StatusCode.INVALID_ARGUMENT
        late = booking.CreateBooking(
            booking_v2(A, "t2", user_id="u2", lease_id=lease.lease_id), timeout=CALL_TIMEOUT_S
        )
        assert late.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        # Re-added: its orphaned booking counts against it again.
        report = replace(stub, window(entry(A, 2), entry(B, 1)))
        assert report.added == 1
        assert inventory(stub)[0] == (START, 2, 0, 1, False)
        assert available(partner, A) == 1


SNAPSHOT_EACH_RECORD = ("--snapshot-every", "1", "--snapshot-interval", "0.05")


@pytest.mark.parametrize("snapshots", [(), SNAPSHOT_EACH_RECORD], ids=["journal", "snapshot"])
def test_a_restart_keeps_the_changed_inventory(
    tmp_path: Path, feed: Path, snapshots: tuple[str, ...]
) -> None:
    data = tmp_path / "data"
    with (
        running_server(data, "--feed", str(feed), *snapshots) as server,
        grpc.insecure_channel(admin_target(server)) as admin,
    ):
        stub = admin_grpc.InventoryServiceStub(admin)
        replace(stub, window(entry(A, 4)))  # B removed, A raised
        before = inventory(stub)
        if snapshots:
            wait_for_a_snapshot(data)
    with (
        running_server(data) as server,
        grpc.insecure_channel(admin_target(server)) as admin,
        grpc.insecure_channel(server.target) as partner,
    ):
        assert inventory(admin_grpc.InventoryServiceStub(admin)) == before
        assert available(partner, A) == 4
        assert available(partner, B) is grpc.StatusCode.INVALID_ARGUMENT
        assert any("serving 1 slots" in line for line in server.output)
        recovered = next(line for line in server.output if "recovered" in line)
        assert ("0 snapshots" not in recovered) == bool(snapshots), recovered


def wait_for_a_snapshot(data: Path) -> None:
    """Until a shard has written a snapshot (the compactor runs every 0.05 s here)."""
    deadline = time.monotonic() + 30
    while not list(data.glob("shard-*/snapshot-*.msgpack")):
        assert time.monotonic() < deadline, "no snapshot was written"
        time.sleep(0.05)


def test_feed_on_a_data_dir_with_state_is_applied_as_a_whole_feed(
    tmp_path: Path, feed: Path
) -> None:
    data = tmp_path / "data"
    with running_server(data, "--feed", str(feed)):
        pass
    smaller = write_feed(tmp_path / "smaller.json", feed_document(entry(B, 3)))
    with (
        running_server(data, "--feed", str(smaller)) as server,
        grpc.insecure_channel(server.target) as partner,
    ):
        lines = "".join(server.output)
        assert "whole-feed change: 0 added, 1 changed, 1 removed (0 kept because booked)" in lines
        assert available(partner, B) == 3
        assert available(partner, A) is grpc.StatusCode.INVALID_ARGUMENT


def test_a_malformed_entry_names_entry_and_field_and_nothing_is_applied(
    tmp_path: Path, feed: Path
) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed)) as server,
        grpc.insecure_channel(admin_target(server)) as admin,
    ):
        stub = admin_grpc.InventoryServiceStub(admin)
        before = inventory(stub)
        bad = dict(entry(B, 2), spots_open=3)  # more open than total
        other = window(entry(SlotKey("m2", "yoga", START, 600), 1), key=SlotKey("m2", "yoga", 0, 1))
        with pytest.raises(grpc.RpcError) as refused:
            replace(stub, other, window(entry(A, 5), bad))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "entry 2 (merchant_id 'm1'): field 'spots_open'" in str(refused.value.details())
        assert inventory(stub) == before
        request = pb.GetInventoryRequest(merchant_id="m2", service_id="yoga")
        assert list(stub.GetInventory(request, timeout=CALL_TIMEOUT_S).slots) == []
        with pytest.raises(grpc.RpcError) as bad_feed:
            stub.ApplyFeed(pb.ApplyFeedRequest(feed_json=b"{"), timeout=CALL_TIMEOUT_S)
        assert bad_feed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "feed_json: feed: field '<document>': not valid JSON" in str(
            bad_feed.value.details()
        )


def test_apply_feed_dry_run_reports_and_changes_nothing(tmp_path: Path, feed: Path) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed)) as server,
        grpc.insecure_channel(admin_target(server)) as admin,
    ):
        stub = admin_grpc.InventoryServiceStub(admin)
        before = inventory(stub)
        text = json.dumps(feed_document(entry(A, 3))).encode()
        report = stub.ApplyFeed(pb.ApplyFeedRequest(feed_json=text, dry_run=True), timeout=10)
        assert (report.changed, report.removed, report.dry_run) == (1, 1, True)
        assert not any(s.applied for s in report.shards)
        assert inventory(stub) == before
        report = stub.ApplyFeed(pb.ApplyFeedRequest(feed_json=text), timeout=CALL_TIMEOUT_S)
        assert all(s.applied for s in report.shards)
        assert inventory(stub) == [(START, 3, 0, 0, False), (START + 1800, 1, 0, 0, True)]


def test_the_token_is_required_when_set(tmp_path: Path, feed: Path) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed), "--admin-token", "s3cret") as server,
        grpc.insecure_channel(admin_target(server)) as admin,
    ):
        stub = admin_grpc.InventoryServiceStub(admin)
        request = pb.GetInventoryRequest(merchant_id="m1")
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetInventory(request, timeout=CALL_TIMEOUT_S, metadata=metadata)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        good = (("authorization", "Bearer s3cret"),)
        assert len(stub.GetInventory(request, timeout=CALL_TIMEOUT_S, metadata=good).slots) == 2


def test_reflection_lists_the_admin_service_on_its_port_only(tmp_path: Path, feed: Path) -> None:
    from grpclib.reflection.v1 import reflection_pb2 as reflection_v1

    with (
        running_server(tmp_path / "data", "--feed", str(feed)) as server,
        grpc.insecure_channel(admin_target(server)) as admin,
        grpc.insecure_channel(server.target) as partner,
    ):
        assert ADMIN_SERVICE in list_services(admin, reflection_v1, "v1")
        assert ADMIN_SERVICE not in list_services(partner, reflection_v1, "v1")
        with pytest.raises(grpc.RpcError) as missing:
            admin_grpc.InventoryServiceStub(partner).GetInventory(
                pb.GetInventoryRequest(merchant_id="m1"), timeout=CALL_TIMEOUT_S
            )
        assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_no_admin_serves_no_admin_port(tmp_path: Path, feed: Path) -> None:
    with running_server(tmp_path / "data", "--feed", str(feed), "--no-admin") as server:
        assert not any(_ADMIN_LINE.search(line) for line in server.output)


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path: Path, feed: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("admin-client")
    paths = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    server_cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server_cert.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    tls = ["--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"])]
    args = ["--feed", str(feed), *tls, "--tls-client-ca", str(paths["ca"])]
    with running_server(tmp_path / "data", *args) as server:
        target = admin_target(server)
        options = (("grpc.ssl_target_name_override", "localhost"),)
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        with grpc.secure_channel(target, anonymous, options) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                admin_grpc.InventoryServiceStub(channel).GetInventory(
                    pb.GetInventoryRequest(merchant_id="m1"), timeout=CALL_TIMEOUT_S
                )
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        known = grpc.ssl_channel_credentials(
            root_certificates=ca.cert_pem.bytes(),
            private_key=client.private_key_pem.bytes(),
            certificate_chain=client.cert_chain_pems[0].bytes(),
        )
        with grpc.secure_channel(target, known, options) as channel:
            reply = admin_grpc.InventoryServiceStub(channel).GetInventory(
                pb.GetInventoryRequest(merchant_id="m1"), timeout=CALL_TIMEOUT_S
            )
            assert len(reply.slots) == 2


def test_a_request_over_the_admin_limit_is_refused_before_it_is_read(
    tmp_path: Path, feed: Path
) -> None:
    with (
        running_server(
            tmp_path / "data", "--feed", str(feed), "--admin-max-request", "200000"
        ) as server,
        grpc.insecure_channel(admin_target(server)) as admin,
    ):
        stub = admin_grpc.InventoryServiceStub(admin)
        big = pb.ApplyFeedRequest(feed_json=b" " * 300_000)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ApplyFeed(big, timeout=CALL_TIMEOUT_S)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceeds the limit of 200000" in str(refused.value.details())
        # Over the partner port's 64 KiB, within the admin limit: read, and answered.
        text = json.dumps(feed_document(entry(A, 1), entry(B, 1))).encode()
        padded = pb.ApplyFeedRequest(feed_json=text + b" " * 100_000, dry_run=True)
        assert stub.ApplyFeed(padded, timeout=CALL_TIMEOUT_S).unchanged == 2
