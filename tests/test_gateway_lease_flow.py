"""The gateway's lease flow over grpclib's in-memory channel: spec section 5, per version.

Core tests cover the rules' logic; these check that each row reaches the caller
as the right gRPC status or BookingFailure, naming the field, for v2 and v0.
Expiry is driven by a MockClock given to the trio guest run (no real waiting).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import trio.testing
from _api import booking_v0, booking_v2, lease_v0, lease_v2, slot_v2
from _gateway_harness import Harness, in_memory_gateway, run
from google.protobuf.wrappers_pb2 import BytesValue
from grpclib import Status
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from leasehold.core import LeaseSettings, SlotKey, SlotSpec
from leasehold.gateway._wire import MAX_REQUEST_BYTES
from leasehold.proto.v0 import booking_grpc as grpc0
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v2 import booking_grpc as grpc2
from leasehold.proto.v2 import booking_pb2 as pb2

S = 1_000_000_000
ONE = SlotKey("m1", "cut", 1_767_254_400, 1800)  # 1 spot
OTHER = SlotKey("m1", "cut", 1_767_256_200, 1800)  # 1 spot, same merchant and service
FIVE = SlotKey("m2", "yoga", 1_767_254_400, 3600, room_id="hall", party_size=1)  # 5 spots
SLOTS = [SlotSpec(ONE, 1, 1), SlotSpec(OTHER, 1, 1), SlotSpec(FIVE, 5, 5)]
SETTINGS = LeaseSettings(default_ttl_ns=300 * S, max_ttl_ns=900 * S)


def scenario(
    body: Callable[[Harness, grpc2.BookingServiceStub, grpc0.BookingServiceStub], Awaitable[None]],
    clock: trio.testing.MockClock | None = None,
) -> None:
    async def main() -> None:
        async with in_memory_gateway(SLOTS, settings=SETTINGS, trio_clock=clock) as harness:
            v2 = grpc2.BookingServiceStub(harness.channel)
            v0 = grpc0.BookingServiceStub(harness.channel)
            await body(harness, v2, v0)

    run(main)


def assert_refusal(error: GRPCError, status: Status, field: str) -> None:
    """The call failed with `status` and a message that starts by naming `field`."""
    assert error.status is status
    assert (error.message or "").startswith(f"{field}:"), error.message


async def refused(call: Awaitable[object]) -> GRPCError:
    with pytest.raises(GRPCError) as caught:
        await call
    return caught.value


# ----- CheckAvailability ------------------------------------------------------------------


def test_check_availability_echoes_the_slot_and_counts_open_spots() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        slot = slot_v2(FIVE, tag="any-tag")
        reply = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot))
        assert reply.slot == slot
        assert reply.count_available == 5
        await v2.CreateLease(lease_v2(FIVE, "r1"))
        reply = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot))
        assert reply.count_available == 4

    scenario(body)


@pytest.mark.parametrize(
    ("slot", "field"),
    [
        pytest.param(
            SlotKey("nobody", "cut", ONE.start_sec, 1800), "slot.merchant_id", id="merchant"
        ),
        pytest.param(SlotKey("m1", "cut", ONE.start_sec + 1, 1800), "slot", id="start"),
        pytest.param(SlotKey("m1", "cut", ONE.start_sec, 1801), "slot", id="duration"),
        pytest.param(SlotKey("m1", "cut", ONE.start_sec, 1800, staff_id="x"), "slot", id="staff"),
    ],
)
def test_check_availability_of_an_unknown_slot_is_invalid(slot: SlotKey, field: str) -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        error = await refused(
            v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(slot)))
        )
        assert_refusal(error, Status.INVALID_ARGUMENT, f"{field}")

    scenario(body)


# ----- CreateLease ------------------------------------------------------------------------


def test_v2_lease_echoes_the_request_and_keeps_a_requested_expiry_exactly() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        expiry_ns = (int(time.time()) + 120) * S + 123_456_789
        request = lease_v2(FIVE, "ref-1", expiry_ns)
        request.lease.slot.availability_tag = "tag-from-caller"
        reply = await v2.CreateLease(request)
        assert not reply.HasField("booking_failure")
        assert reply.lease.lease_id.startswith("L1")
        expected = pb2.Lease()
        expected.CopyFrom(request.lease)
        expected.lease_id = reply.lease.lease_id
        assert reply.lease == expected  # every field equal to the request, expiry to the nano

    scenario(body)


def test_v2_lease_expiry_defaults_and_is_clamped() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        before = time.time_ns()
        default = (await v2.CreateLease(lease_v2(FIVE, "a"))).lease.lease_expiration_time
        far = (await v2.CreateLease(lease_v2(FIVE, "b", before + 3600 * S))).lease
        after = time.time_ns()
        default_ns = default.ToNanoseconds()
        assert before + 300 * S <= default_ns <= after + 300 * S
        far_ns = far.lease_expiration_time.ToNanoseconds()
        assert before + 900 * S <= far_ns <= after + 900 * S

    scenario(body)


def test_lease_expiry_in_the_past_is_invalid_for_both_versions() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        error = await refused(v2.CreateLease(lease_v2(FIVE, "a", time.time_ns() - S)))
        assert error.status is Status.INVALID_ARGUMENT
        assert error.message is not None
        assert error.message.startswith("lease.lease_expiration_time:")
        request = lease_v0(FIVE, "a")
        request.lease.lease_expiration_time.FromNanoseconds(time.time_ns() - S)
        error = await refused(v0.CreateLease(request))
        assert error.status is Status.INVALID_ARGUMENT

    scenario(body)


def test_lease_replay_returns_the_same_lease_and_takes_no_second_spot() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        first = await v2.CreateLease(lease_v2(FIVE, "same"))
        again = await v2.CreateLease(lease_v2(FIVE, "same"))
        assert again == first
        first0 = await v0.CreateLease(lease_v0(FIVE, "same"))  # v0 references: own namespace
        assert first0.lease.lease_id != first.lease.lease_id
        assert await v0.CreateLease(lease_v0(FIVE, "same")) == first0
        check = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(FIVE)))
        assert check.count_available == 3

    scenario(body)


def test_reference_reused_for_another_slot_v2_invalid_v0_already_exists() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        await v2.CreateLease(lease_v2(ONE, "ref"))
        error = await refused(v2.CreateLease(lease_v2(OTHER, "ref")))
        assert_refusal(error, Status.INVALID_ARGUMENT, "lease.user_reference")
        await v0.CreateLease(lease_v0(OTHER, "ref0"))
        error = await refused(v0.CreateLease(lease_v0(ONE, "ref0")))
        assert error.status is Status.ALREADY_EXISTS

    scenario(body)


def test_no_open_spot_v2_slot_unavailable_v0_resource_exhausted() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        await v2.CreateLease(lease_v2(ONE, "first"))
        reply = await v2.CreateLease(lease_v2(ONE, "second"))
        assert not reply.HasField("lease")
        assert reply.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        error = await refused(v0.CreateLease(lease_v0(ONE, "third")))
        assert error.status is Status.RESOURCE_EXHAUSTED

    scenario(body)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(
            lambda r: setattr(r.lease, "user_reference", ""),
            "lease.user_reference",
            id="missing-reference",
        ),
        pytest.param(lambda r: r.lease.ClearField("slot"), "lease.slot", id="missing-slot"),
        pytest.param(
            lambda r: r.lease.slot.ClearField("duration"),
            "lease.slot.duration",
            id="missing-duration",
        ),
        pytest.param(
            lambda r: setattr(r.lease.slot.start_time, "nanos", 5),
            "lease.slot.start_time",
            id="fractional-start",
        ),
        pytest.param(
            lambda r: setattr(r.lease.slot, "merchant_id", "m" * 300),
            "lease.slot.merchant_id",
            id="oversized-id",
        ),
        pytest.param(
            lambda r: setattr(r.lease.slot.resources, "party_size", -1),
            "lease.slot.resources.party_size",
            id="negative-party",
        ),
        pytest.param(
            lambda r: setattr(r.lease.slot, "merchant_id", "nobody"),
            "lease.slot.merchant_id",
            id="unknown-merchant",
        ),
    ],
)
def test_v2_bad_lease_requests_name_the_field(
    mutate: Callable[[pb2.CreateLeaseRequest], None], field: str
) -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        request = lease_v2(FIVE, "ref")
        mutate(request)
        error = await refused(v2.CreateLease(request))
        assert_refusal(error, Status.INVALID_ARGUMENT, f"{field}")

    scenario(body)


def test_v0_missing_reference_is_invalid() -> None:
    async def body(h: Harness, v2: object, v0: grpc0.BookingServiceStub) -> None:
        error = await refused(v0.CreateLease(lease_v0(FIVE, "")))
        assert_refusal(error, Status.INVALID_ARGUMENT, "lease.client_reference")

    scenario(body)


# ----- CreateBooking ----------------------------------------------------------------------


async def lease_id_v2(v2: grpc2.BookingServiceStub, key: SlotKey, ref: str) -> str:
    return str((await v2.CreateLease(lease_v2(key, ref))).lease.lease_id)


def test_v2_booking_consumes_the_lease_and_echoes_the_request() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        lease_id = await lease_id_v2(v2, FIVE, "r")
        request = booking_v2(FIVE, "tok", lease_id=lease_id)
        reply = await v2.CreateBooking(request)
        booking = reply.booking
        assert booking.booking_id.startswith("B1")
        assert booking.slot == request.slot
        assert booking.user_information == request.user_information
        assert booking.status == pb2.CONFIRMED
        check = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(FIVE)))
        assert check.count_available == 4  # the booking took over the lease's spot
        error = await refused(
            v2.CreateBooking(booking_v2(FIVE, "tok-3", user_id="u3", lease_id=lease_id))
        )
        assert error.status is Status.NOT_FOUND  # consumed: usable by no other booking

    scenario(body)


def test_v2_token_replay_after_success_is_identical_and_creates_nothing() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        first = await v2.CreateBooking(booking_v2(FIVE, "tok"))
        again = await v2.CreateBooking(booking_v2(FIVE, "tok"))
        assert again == first
        check = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(FIVE)))
        assert check.count_available == 4

    scenario(body)


def test_v2_token_replay_after_failure_is_processed_afresh() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        lease_id = await lease_id_v2(v2, ONE, "holder")
        full = await v2.CreateBooking(booking_v2(ONE, "tok"))
        assert full.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        mine = await v2.CreateBooking(booking_v2(ONE, "tok", lease_id=lease_id))
        assert mine.booking.status == pb2.CONFIRMED

    scenario(body)


def test_v2_direct_booking_of_a_full_slot_is_slot_unavailable() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        assert (await v2.CreateBooking(booking_v2(ONE, "a"))).booking.status == pb2.CONFIRMED
        reply = await v2.CreateBooking(booking_v2(ONE, "b", user_id="u2"))
        assert reply.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        assert not reply.HasField("booking")

    scenario(body)


def test_same_user_twice_v2_slot_already_booked_v0_already_exists() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        await v2.CreateBooking(booking_v2(FIVE, "a", user_id="ann"))
        reply = await v2.CreateBooking(booking_v2(FIVE, "b", user_id="ann"))
        assert reply.booking_failure.cause == pb2.BookingFailure.SLOT_ALREADY_BOOKED_BY_USER
        lease = (await v0.CreateLease(lease_v0(FIVE, "c1"))).lease
        await v0.CreateBooking(booking_v0(lease.lease_id, email="bob@example.com"))
        lease2 = (await v0.CreateLease(lease_v0(FIVE, "c2"))).lease
        error = await refused(v0.CreateBooking(booking_v0(lease2.lease_id, "BOB@example.com")))
        assert error.status is Status.ALREADY_EXISTS
        # A refused CreateBooking changes nothing: the lease stays usable.
        ok = await v0.CreateBooking(booking_v0(lease2.lease_id, email="cy@example.com"))
        assert ok.booking.status == pb0.CONFIRMED

    scenario(body)


def test_expired_lease_v2_lease_expired_v0_not_found() -> None:
    clock = trio.testing.MockClock()

    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        lease_id = await lease_id_v2(v2, FIVE, "r")
        lease0 = (await v0.CreateLease(lease_v0(FIVE, "r0"))).lease.lease_id
        clock.jump(300)  # the default TTL: expired at exactly this instant
        reply = await v2.CreateBooking(booking_v2(FIVE, "t", lease_id=lease_id))
        assert reply.booking_failure.cause == pb2.BookingFailure.LEASE_EXPIRED
        error = await refused(v0.CreateBooking(booking_v0(lease0)))
        assert error.status is Status.NOT_FOUND
        check = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(FIVE)))
        assert check.count_available == 5

    scenario(body, clock)


def test_v2_unknown_lease_not_found_and_slot_mismatch_invalid() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        error = await refused(v2.CreateBooking(booking_v2(FIVE, "t", lease_id="L1-nonsense")))
        assert error.status is Status.NOT_FOUND
        lease_id = await lease_id_v2(v2, ONE, "r")
        error = await refused(v2.CreateBooking(booking_v2(OTHER, "t", lease_id=lease_id)))
        assert_refusal(error, Status.INVALID_ARGUMENT, "slot")
        error = await refused(v2.CreateBooking(booking_v2(FIVE, "t", lease_id=lease_id)))
        assert error.status is Status.INVALID_ARGUMENT  # a lease of another service
        error = await refused(v0.CreateBooking(booking_v0("L1-nonsense")))
        assert error.status is Status.NOT_FOUND

    scenario(body)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(
            lambda r: setattr(r, "idempotency_token", ""), "idempotency_token", id="missing-token"
        ),
        pytest.param(
            lambda r: setattr(r.user_information, "user_id", ""),
            "user_information.user_id",
            id="empty-user-id",
        ),
        pytest.param(
            lambda r: r.ClearField("user_information"), "user_information", id="missing-user"
        ),
        pytest.param(lambda r: r.ClearField("slot"), "slot", id="missing-slot"),
        pytest.param(
            lambda r: setattr(r.user_information, "given_name", "x" * 5000),
            "user_information.given_name",
            id="oversized-name",
        ),
    ],
)
def test_v2_bad_booking_requests_name_the_field(
    mutate: Callable[[pb2.CreateBookingRequest], None], field: str
) -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: object) -> None:
        request = booking_v2(FIVE, "tok")
        mutate(request)
        error = await refused(v2.CreateBooking(request))
        assert_refusal(error, Status.INVALID_ARGUMENT, f"{field}")

    scenario(body)


def test_v0_booking_replay_returns_that_booking_and_v2_lease_books_through_v0() -> None:
    async def body(h: Harness, v2: grpc2.BookingServiceStub, v0: grpc0.BookingServiceStub) -> None:
        lease_id = await lease_id_v2(v2, FIVE, "v2-made")
        first = await v0.CreateBooking(booking_v0(lease_id))
        assert first.booking.merchant_id == FIVE.merchant_id
        assert first.booking.start_time.seconds == FIVE.start_sec
        assert first.booking.client_information.email == "ann@example.com"
        assert await v0.CreateBooking(booking_v0(lease_id)) == first
        lease0 = (await v0.CreateLease(lease_v0(FIVE, "v0-made"))).lease.lease_id
        booked = await v2.CreateBooking(booking_v2(FIVE, "t", user_id="u9", lease_id=lease0))
        assert booked.booking.status == pb2.CONFIRMED

    scenario(body)


def test_v0_client_information_needs_email_or_telephone() -> None:
    async def body(h: Harness, v2: object, v0: grpc0.BookingServiceStub) -> None:
        lease = (await v0.CreateLease(lease_v0(FIVE, "r"))).lease
        request = booking_v0(lease.lease_id, email="")
        error = await refused(v0.CreateBooking(request))
        assert_refusal(error, Status.INVALID_ARGUMENT, "client_information")

    scenario(body)


# ----- every RPC: bodies that are not the message, overload ------------------------------


async def raw_call(channel: Channel, method: str, body: bytes) -> GRPCError:
    """Send `body` as the request bytes of `method` (BytesValue serialises as field 1)."""
    async with channel.request(method, Cardinality.UNARY_UNARY, BytesValue, BytesValue) as call:
        await call.send_message(BytesValue(value=body), end=True)
        return await refused(call.recv_message())


def test_a_body_that_is_not_protobuf_is_invalid_argument() -> None:
    async def body(h: Harness, v2: object, v0: object) -> None:
        path = "/ext.maps.booking.partner.v2.BookingService/CreateLease"
        error = await raw_call(h.channel, path, b"\xff\xff\xff")
        assert_refusal(error, Status.INVALID_ARGUMENT, "request body")

    scenario(body)


def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    async def body(h: Harness, v2: object, v0: object) -> None:
        path = "/ext.maps.booking.partner.v0.BookingService/CreateLease"
        error = await raw_call(h.channel, path, b"x" * (MAX_REQUEST_BYTES + 1))
        assert error.status is Status.RESOURCE_EXHAUSTED

    scenario(body)


def test_a_full_mailbox_answers_resource_exhausted_and_never_overgrants() -> None:
    async def main() -> None:
        async with in_memory_gateway(SLOTS, shard_count=1, mailbox_capacity=2) as harness:
            v2 = grpc2.BookingServiceStub(harness.channel)
            calls = [v2.CreateLease(lease_v2(FIVE, f"r{i}")) for i in range(60)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            # Then one call at a time (nothing shed): the spots the burst left, not one more.
            after = [await v2.CreateLease(lease_v2(FIVE, f"s{i}")) for i in range(6)]
        shed = [r for r in results if isinstance(r, GRPCError)]
        answered = [r for r in results if isinstance(r, pb2.CreateLeaseResponse)]
        assert shed, "a mailbox of 2 under 60 simultaneous calls must shed some"
        assert all(e.status is Status.RESOURCE_EXHAUSTED for e in shed)
        assert len(shed) + len(answered) == 60
        granted = [r.lease.lease_id for r in answered + after if r.HasField("lease")]
        # The first call admitted found the slot open: the burst granted some.
        assert any(r.HasField("lease") for r in answered)
        assert len(set(granted)) == len(granted) == 5
        refused = [r for r in answered + after if not r.HasField("lease")]
        full = pb2.BookingFailure.SLOT_UNAVAILABLE
        assert [r.booking_failure.cause for r in refused] == [full] * len(refused)
        assert [r.HasField("lease") for r in after[-1:]] == [False]

    run(main)
