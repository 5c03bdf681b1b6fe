"""CreateLease in the pure core: ids, expiry policy, idempotency, refusals, exact expiry."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
from _core_helpers import (
    CUT_A,
    CUT_B,
    CUT_FULL,
    DEFAULT_TTL,
    MAX_TTL,
    NOW,
    YOGA,
    S,
    assert_refused_untouched,
    book_v0,
    book_v2,
    fingerprint,
    grant,
    lease_v0,
    lease_v2,
    new_state,
    ok,
    refused,
)

from leasehold.core import (
    LEASE_ID_PREFIX,
    ApiVersion,
    CheckAvailability,
    CreateLease,
    ExpiredLeasesForgotten,
    InvalidArgument,
    LeaseExpired,
    LeaseExpiredEvent,
    LeaseGranted,
    LeaseSettings,
    LeaseState,
    NotFound,
    ReferenceConflict,
    ShardState,
    SlotKey,
    SlotRef,
    SlotUnavailable,
    bucket_of_id,
    routing_bucket,
)

# ----- grant ----------------------------------------------------------------------------


def test_grant_returns_a_lease_with_a_routed_id_and_takes_one_spot() -> None:
    state = new_state()
    outcome = state.create_lease(lease_v2(CUT_A, "r1", tag="tag-a"), NOW)
    lease = ok(outcome)
    assert lease.lease_id.startswith(LEASE_ID_PREFIX)
    assert bucket_of_id(LEASE_ID_PREFIX, lease.lease_id) == routing_bucket("m1", "cut")
    assert lease.version is ApiVersion.V2
    assert lease.slot == SlotRef(CUT_A, "tag-a")
    assert lease.reference == "r1"
    assert lease.expires_ns == NOW + DEFAULT_TTL
    assert lease.state is LeaseState.LIVE
    assert outcome.events == (LeaseGranted(lease),)
    assert state.lease(lease.lease_id) == lease
    assert state.open_spots(CUT_A) == 2
    counters = state.counters()
    assert (counters.live_leases, counters.leases_granted) == (1, 1)


def test_lease_echoes_the_callers_availability_tag() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, "r1", tag="something-else"))
    assert lease.slot == SlotRef(CUT_A, "something-else")


def test_lease_ids_are_unique() -> None:
    state = new_state()
    ids = {grant(state, lease_v2(CUT_A, f"r{i}")).lease_id for i in range(3)}
    ids |= {grant(state, lease_v0(YOGA, f"r{i}")).lease_id for i in range(2)}
    assert len(ids) == 5


def test_yoga_lease_id_carries_its_own_bucket() -> None:
    lease = grant(new_state(), lease_v0(YOGA))
    assert bucket_of_id(LEASE_ID_PREFIX, lease.lease_id) == routing_bucket("m2", "yoga")


# ----- expiry policy --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        pytest.param(NOW + 1, NOW + 1, id="one-nanosecond-ahead-kept"),
        pytest.param(NOW + 90 * S + 123_456_789, NOW + 90 * S + 123_456_789, id="kept-exactly"),
        pytest.param(NOW + DEFAULT_TTL + 7, NOW + DEFAULT_TTL + 7, id="past-default-kept"),
        pytest.param(NOW + MAX_TTL, NOW + MAX_TTL, id="exactly-max-kept"),
        pytest.param(None, NOW + DEFAULT_TTL, id="missing-default-ttl"),
        pytest.param(NOW + MAX_TTL + 1, NOW + MAX_TTL, id="one-past-max-clamped"),
        pytest.param(NOW + 10**6 * S, NOW + MAX_TTL, id="far-future-clamped"),
    ],
)
def test_lease_expiry_policy(requested: int | None, expected: int) -> None:
    lease = grant(new_state(), lease_v2(CUT_A, expiry_ns=requested))
    assert lease.expires_ns == expected


def test_expiry_policy_follows_the_settings() -> None:
    settings = LeaseSettings(default_ttl_ns=10 * S, max_ttl_ns=20 * S)
    state = new_state(settings=settings)
    assert grant(state, lease_v2(CUT_A, "a")).expires_ns == NOW + 10 * S
    assert grant(state, lease_v2(CUT_A, "b", NOW + 15 * S)).expires_ns == NOW + 15 * S
    assert grant(state, lease_v2(CUT_A, "c", NOW + 60 * S)).expires_ns == NOW + 20 * S


@pytest.mark.parametrize("requested", [NOW, NOW - 1, 0, -5], ids=["now", "just-before", "0", "neg"])
def test_expiry_at_or_before_now_is_invalid(requested: int) -> None:
    state = new_state()
    assert_refused_untouched(
        state,
        lambda: state.create_lease(lease_v2(CUT_A, expiry_ns=requested), NOW),
        InvalidArgument,
        "lease_expiration_time",
    )


# ----- idempotency ----------------------------------------------------------------------


def test_same_reference_same_slot_returns_the_identical_lease() -> None:
    state = new_state()
    first = grant(state, lease_v2(CUT_A, "r1"))
    before = fingerprint(state)
    # A later replay, even one asking another expiry, gets the same lease: same id and expiry.
    again = state.create_lease(lease_v2(CUT_A, "r1", NOW + 60 * S), NOW + 5 * S)
    assert ok(again) == first
    assert again.events == ()
    assert fingerprint(state) == before
    assert state.open_spots(CUT_A) == 2


def test_replay_succeeds_even_when_the_slot_is_full() -> None:
    state = new_state()
    first = grant(state, lease_v2(CUT_FULL, "r1"))
    assert state.open_spots(CUT_FULL) == 0
    assert ok(state.create_lease(lease_v2(CUT_FULL, "r1"), NOW + 1)) == first


def _refuse_and_keep_the_result(state: ShardState) -> None:
    # Like the shard's serving frame: the refusal stays in a local while it is answered.
    result = state.create_lease(lease_v2(CUT_FULL, "r2"), NOW + 1).result
    assert isinstance(result, SlotUnavailable)
    assert result.__traceback__ is None


def test_a_refusal_leaves_no_garbage_for_the_cyclic_collector() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_FULL, "r1"))
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            _refuse_and_keep_the_result(state)
        cyclic_garbage = gc.collect()
    finally:
        gc.enable()
    assert cyclic_garbage == 0


def test_v0_replay_returns_the_identical_lease() -> None:
    state = new_state()
    first = grant(state, lease_v0(YOGA, "c1"))
    again = state.create_lease(lease_v0(YOGA, "c1"), NOW + S)
    assert ok(again) == first
    assert again.events == ()


@pytest.mark.parametrize("version", [ApiVersion.V2, ApiVersion.V0])
def test_same_reference_other_slot_is_a_conflict(version: ApiVersion) -> None:
    state = new_state()
    grant(state, CreateLease(version, SlotRef(CUT_A), "r1", None))
    error = assert_refused_untouched(
        state,
        lambda: state.create_lease(CreateLease(version, SlotRef(CUT_B), "r1", None), NOW),
        ReferenceConflict,
    )
    assert error.message == "reference 'r1' already holds a lease on another slot"
    assert error.field == "reference"


def test_references_are_scoped_by_version() -> None:
    state = new_state()
    v2 = grant(state, lease_v2(CUT_A, "shared"))
    v0 = grant(state, lease_v0(CUT_A, "shared"))
    assert v2.lease_id != v0.lease_id
    assert state.open_spots(CUT_A) == 1
    # And each namespace still replays its own lease; v0 may even use another slot.
    assert ok(state.create_lease(lease_v2(CUT_A, "shared"), NOW)) == v2
    assert ok(state.create_lease(lease_v0(CUT_A, "shared"), NOW)) == v0


def test_v0_and_v2_references_do_not_conflict_across_slots() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_A, "shared"))
    other = grant(state, lease_v0(CUT_B, "shared"))
    assert other.slot.key == CUT_B


def test_references_are_scoped_by_merchant_and_service() -> None:
    state = new_state()
    cut = grant(state, lease_v2(CUT_A, "shared"))
    yoga = grant(state, lease_v2(YOGA, "shared"))
    assert cut.lease_id != yoga.lease_id
    assert yoga.slot.key == YOGA


# ----- refusals -------------------------------------------------------------------------


def test_missing_reference_is_invalid() -> None:
    state = new_state()
    assert_refused_untouched(
        state, lambda: state.create_lease(lease_v2(CUT_A, ""), NOW), InvalidArgument, "reference"
    )


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(replace(CUT_A, merchant_id="nobody"), id="unknown-merchant"),
        pytest.param(replace(CUT_A, service_id="nails"), id="unknown-service"),
        pytest.param(replace(CUT_A, service_id="yoga"), id="service-of-another-merchant"),
    ],
)
def test_unknown_merchant_or_service_is_invalid(key: SlotKey) -> None:
    state = new_state()
    assert_refused_untouched(
        state, lambda: state.create_lease(lease_v2(key), NOW), InvalidArgument, "merchant_id"
    )


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(replace(CUT_A, start_sec=CUT_A.start_sec + 1), id="wrong-start"),
        pytest.param(replace(CUT_A, duration_sec=1801), id="wrong-duration"),
        pytest.param(replace(CUT_A, staff_id="st2"), id="wrong-staff"),
        pytest.param(replace(CUT_A, staff_id=""), id="no-staff"),
        pytest.param(replace(CUT_A, room_id="r9"), id="wrong-room"),
        pytest.param(replace(CUT_A, party_size=2), id="wrong-party-size"),
    ],
)
def test_slot_not_in_inventory_is_invalid(key: SlotKey) -> None:
    state = new_state()
    assert_refused_untouched(
        state, lambda: state.create_lease(lease_v2(key), NOW), InvalidArgument, "slot"
    )


@pytest.mark.parametrize("version", [ApiVersion.V2, ApiVersion.V0])
def test_no_open_spot_is_slot_unavailable(version: ApiVersion) -> None:
    state = new_state()
    grant(state, lease_v2(CUT_FULL, "first"))
    assert_refused_untouched(
        state,
        lambda: state.create_lease(CreateLease(version, SlotRef(CUT_FULL), "second", None), NOW),
        SlotUnavailable,
    )


def test_slot_unavailable_does_not_claim_the_reference() -> None:
    state = new_state()
    holder = grant(state, lease_v2(CUT_FULL, "first"), NOW)
    refused(state.create_lease(lease_v2(CUT_FULL, "second"), NOW), SlotUnavailable)
    # Once the holder expires, "second" gets a fresh lease: the refusal stored nothing.
    later = holder.expires_ns
    second = ok(state.create_lease(lease_v2(CUT_FULL, "second"), later))
    assert second.lease_id != holder.lease_id
    assert second.expires_ns == later + DEFAULT_TTL


def test_a_booked_spot_counts_against_new_leases() -> None:
    state = new_state()
    ok(state.create_booking(book_v2(CUT_FULL), NOW))
    refused(state.create_lease(lease_v2(CUT_FULL), NOW), SlotUnavailable)


# ----- expiry at the exact instant ------------------------------------------------------


def test_lease_holds_its_spot_until_the_instant_before_expiry() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_FULL, expiry_ns=NOW + 30 * S))
    at_end = lease.expires_ns
    just_before = state.check_availability(CheckAvailability(CUT_FULL), at_end - 1)
    assert ok(just_before) == 0
    assert just_before.events == ()
    assert state.lease(lease.lease_id) == lease


def test_lease_is_expired_at_its_exact_instant_without_a_timer() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_FULL, expiry_ns=NOW + 30 * S))
    # No expire_due call: the check itself must expire the lease, lazily, at exactly T.
    at_end = state.check_availability(CheckAvailability(CUT_FULL), lease.expires_ns)
    assert ok(at_end) == 1
    assert at_end.events == (LeaseExpiredEvent(lease.lease_id),)
    expired = state.lease(lease.lease_id)
    assert expired is not None
    assert expired.state is LeaseState.EXPIRED
    assert state.counters().live_leases == 0
    assert state.counters().leases_expired == 1


def test_lease_expired_event_is_emitted_exactly_once() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, expiry_ns=NOW + 30 * S))
    end = lease.expires_ns
    assert state.expire_due(end - 1) == ()
    assert state.expire_due(end) == (LeaseExpiredEvent(lease.lease_id),)
    assert state.expire_due(end) == ()
    assert state.expire_due(end + 3600 * S) == ()
    assert state.check_availability(CheckAvailability(CUT_A), end + 1).events == ()
    assert state.counters().leases_expired == 1


def test_leases_in_the_same_millisecond_expire_each_at_their_own_nanosecond() -> None:
    state = new_state()
    t = NOW + 30 * S + 500_000  # mid-millisecond
    early = grant(state, lease_v2(CUT_A, "early", t))
    late = grant(state, lease_v2(CUT_A, "late", t + 2))
    assert state.expire_due(t - 1) == ()
    assert state.expire_due(t) == (LeaseExpiredEvent(early.lease_id),)
    assert state.expire_due(t + 1) == ()
    assert state.expire_due(t + 2) == (LeaseExpiredEvent(late.lease_id),)


def test_a_lease_due_now_frees_its_spot_for_the_command_at_that_instant() -> None:
    state = new_state()
    old = grant(state, lease_v2(CUT_FULL, "old", NOW + 10 * S))
    outcome = state.create_lease(lease_v2(CUT_FULL, "new"), old.expires_ns)
    new = ok(outcome)
    assert outcome.events == (LeaseExpiredEvent(old.lease_id), LeaseGranted(new))


def test_expired_lease_cannot_be_booked_and_stays_remembered() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    refused(state.create_booking(book_v2(CUT_A, lease.lease_id), lease.expires_ns), LeaseExpired)


def test_next_deadline_is_the_earliest_live_expiry() -> None:
    state = new_state()
    assert state.next_deadline_ns() is None
    late = grant(state, lease_v2(CUT_A, "late", NOW + 60 * S))
    assert state.next_deadline_ns() == late.expires_ns
    early = grant(state, lease_v2(CUT_B, "early", NOW + 20 * S + 17))
    assert state.next_deadline_ns() == early.expires_ns
    state.expire_due(early.expires_ns)
    assert state.next_deadline_ns() == late.expires_ns
    state.expire_due(late.expires_ns)
    assert state.next_deadline_ns() is None


def test_next_deadline_is_never_later_than_a_live_expiry_after_a_booking() -> None:
    state = new_state()
    consumed = grant(state, lease_v2(CUT_A, "a", NOW + 20 * S))
    live = grant(state, lease_v2(CUT_B, "b", NOW + 40 * S))
    ok(state.create_booking(book_v2(CUT_A, consumed.lease_id), NOW + S))
    deadline = state.next_deadline_ns()
    assert deadline is not None
    assert deadline <= live.expires_ns
    # Popping the stale entry of the consumed lease expires nothing.
    assert state.expire_due(consumed.expires_ns) == ()
    assert state.next_deadline_ns() == live.expires_ns
    lease = state.lease(consumed.lease_id)
    assert lease is not None
    assert lease.state is LeaseState.CONSUMED


# ----- forgetting expired leases --------------------------------------------------------


def test_expired_leases_are_remembered_for_the_default_day() -> None:
    state = new_state()
    lease = grant(state, lease_v0(CUT_A))
    day = 24 * 3600 * S
    late = state.create_booking(book_v0(lease.lease_id), lease.expires_ns + day - 1)
    refused(late, LeaseExpired)


def test_expired_leases_are_forgotten_after_retention() -> None:
    settings = LeaseSettings(expired_retention_ns=10 * S)
    state = new_state(settings=settings)
    lease = grant(state, lease_v2(CUT_A, "r1", NOW + 30 * S))
    end = lease.expires_ns
    assert state.expire_due(end) == (LeaseExpiredEvent(lease.lease_id),)
    # Still remembered one nanosecond before the retention has passed.
    refused(state.create_booking(book_v2(CUT_A, lease.lease_id), end + 10 * S - 1), LeaseExpired)
    assert state.lease(lease.lease_id) == replace(lease, state=LeaseState.EXPIRED)
    assert state.expire_due(end + 10 * S) == (ExpiredLeasesForgotten(1),)
    assert state.lease(lease.lease_id) is None
    refused(state.create_booking(book_v2(CUT_A, lease.lease_id), end + 10 * S), NotFound)
    # The reference is free again: the same reference gets a new lease.
    fresh = ok(state.create_lease(lease_v2(CUT_A, "r1"), end + 11 * S))
    assert fresh.lease_id != lease.lease_id


def test_expired_lease_replay_before_forgetting_is_the_old_lease() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, "r1", NOW + 30 * S))
    replay = state.create_lease(lease_v2(CUT_A, "r1"), lease.expires_ns + S)
    assert replay.result == lease
    assert replay.events == (LeaseExpiredEvent(lease.lease_id),)
    assert state.open_spots(CUT_A) == 3


def test_at_most_max_remembered_expired_leases_are_kept() -> None:
    state = new_state(settings=LeaseSettings(max_remembered_expired=2))
    leases = [grant(state, lease_v2(CUT_A, f"r{i}", NOW + (10 + i) * S)) for i in range(3)]
    assert state.expire_due(leases[0].expires_ns) == (LeaseExpiredEvent(leases[0].lease_id),)
    assert state.expire_due(leases[1].expires_ns) == (LeaseExpiredEvent(leases[1].lease_id),)
    third = state.expire_due(leases[2].expires_ns)
    assert third == (LeaseExpiredEvent(leases[2].lease_id), ExpiredLeasesForgotten(1))
    assert state.lease(leases[0].lease_id) is None
    for kept in leases[1:]:
        view = state.lease(kept.lease_id)
        assert view is not None
        assert view.state is LeaseState.EXPIRED
    assert state.counters().leases_expired == 3


def test_a_command_expires_its_own_slots_due_leases_and_leaves_the_rest_to_the_sweep() -> None:
    state = new_state()
    at = NOW + 30 * S
    on_a = [grant(state, lease_v2(CUT_A, f"a{n}", at)) for n in range(3)]
    on_b = [grant(state, lease_v2(CUT_B, f"b{n}", at)) for n in range(2)]
    check_a = state.check_availability(CheckAvailability(CUT_A), at)
    assert ok(check_a) == 3
    assert check_a.events == tuple(LeaseExpiredEvent(lease.lease_id) for lease in on_a)
    assert state.counters().live_leases == 2  # B's wait for the sweep (or a command on B)
    assert state.next_deadline_ns() == at  # ...and the timer still says so
    swept = state.expire_due(at)
    assert swept == tuple(LeaseExpiredEvent(lease.lease_id) for lease in on_b)
    assert state.counters().leases_expired == 5


def test_a_refused_command_still_reports_the_expiries_of_its_slot() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_FULL, "first", NOW + 30 * S))
    at = lease.expires_ns
    # Refused for its expiry (not in the future), after the slot was settled: the
    # expiry is time passing, not the command, and stands.
    refused = state.create_lease(lease_v2(CUT_FULL, "second", at), at)
    assert isinstance(refused.result, InvalidArgument)
    assert refused.events == (LeaseExpiredEvent(lease.lease_id),)
    assert state.open_spots(CUT_FULL) == 1


def test_the_sweep_takes_a_limit_and_finishes_in_chunks() -> None:
    state = new_state()
    at = NOW + 30 * S
    leases = [grant(state, lease_v2(CUT_A, f"a{n}", at)) for n in range(3)]
    leases += [grant(state, lease_v2(YOGA, f"y{n}", at)) for n in range(2)]
    chunks = []
    while (next_ns := state.next_deadline_ns()) is not None and next_ns <= at:
        chunks.append(state.expire_due(at, limit=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [e for c in chunks for e in c] == [LeaseExpiredEvent(x.lease_id) for x in leases]
