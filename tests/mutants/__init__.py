"""Planted bugs: named, exact patches to the source, to see which tests catch each one.

`python -m tests.mutants` (from the repository root) copies the tree to a temp dir,
applies one patch, runs that patch's tests there with `pytest -x`, and prints a table
of mutant -> caught (by which test) or survived. docs/testing.md says how to run it
and how to add a mutant. The suite does not run the mutants; test_mutants.py only
checks that every patch still finds its target text, so that patches cannot rot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class MutantRotted(Exception):
    """A patch's target text is not in its file exactly once: update the patch."""


Edit = tuple[str, str]  # (old, new): `old` must occur exactly once when its turn comes


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    edits: tuple[Edit, ...]  # applied in order, to the one file
    tests: tuple[str, ...]  # test files (or node ids) expected to catch it
    why: str  # the bug, in a line


def patched(text: str, mutant: Mutant) -> str:
    """`text` (the file's) with the mutant's edits; MutantRotted if a target is not
    there exactly once."""
    for number, (old, new) in enumerate(mutant.edits, 1):
        found = text.count(old)
        if found != 1:
            raise MutantRotted(
                f"{mutant.name}: edit {number}'s target text is in {mutant.path} {found} times"
            )
        text = text.replace(old, new)
    return text


def apply_mutant(root: Path, mutant: Mutant) -> None:
    """Patch the mutant's file under `root` in place."""
    path = root / mutant.path
    path.write_text(patched(path.read_text(encoding="utf-8"), mutant), encoding="utf-8")


CORE = ("tests/test_core_leases.py", "tests/test_core_bookings.py")
MODEL = ("tests/test_core_model_based.py",)
SNAPSHOT = ("tests/test_core_snapshot.py", "tests/test_recovery.py")
JOURNAL = ("tests/test_journal.py", "tests/test_durable_sink.py", "tests/test_recovery.py")
SEAM = (
    "tests/test_shard_durability.py",
    "tests/test_durable_sink.py",
    "tests/test_compaction.py",
    "tests/test_journal_roll.py",
)

MUTANTS: tuple[Mutant, ...] = (
    # ----- core ---------------------------------------------------------------------------
    Mutant(
        "capacity-off-by-one",
        "core/_state.py",
        (
            (
                "expires_ns = self._lease_expiry(c.requested_expiry_ns, now_ns)\n"
                "        if slot.holders >= slot.spots:",
                "expires_ns = self._lease_expiry(c.requested_expiry_ns, now_ns)\n"
                "        if slot.holders > slot.spots:",
            ),
        ),
        (*CORE, *MODEL),
        "a lease is granted on a full slot (one spot too many)",
    ),
    Mutant(
        "direct-booking-overbooks",
        "core/_state.py",
        (
            (
                "if not lease_id and slot.holders >= slot.spots:",
                "if not lease_id and slot.holders > slot.spots:",
            ),
        ),
        (*CORE, *MODEL),
        "a v2 booking without a lease takes a spot a full slot does not have",
    ),
    Mutant(
        "max-ttl-not-clamped",
        "core/_state.py",
        (
            (
                "return min(requested_ns, now_ns + self.settings.max_ttl_ns)",
                "return requested_ns",
            ),
        ),
        (*CORE, *MODEL),
        "a lease lives as long as the caller asks, past the maximum TTL",
    ),
    Mutant(
        "sweep-one-tick-late",
        "core/_deadlines.py",
        (
            (
                "while heap and budget > 0 and self._earliest[heap[0]] <= now_ns:",
                "while heap and budget > 0 and self._earliest[heap[0]] < now_ns:",
            ),
        ),
        ("tests/test_core_deadlines.py", *CORE, *MODEL),
        "the timer's sweep leaves the leases due at exactly now",
    ),
    Mutant(
        "settle-one-tick-late",
        "core/_state.py",
        (
            (
                "if expiries and expiries[0] <= now_ns:",
                "if expiries and expiries[0] < now_ns:",
            ),
        ),
        (*CORE, *MODEL),
        "a command does not expire the slot's lease due at exactly now",
    ),
    Mutant(
        "cancel-keeps-the-spot",
        "core/_state.py",
        (
            (
                "        slot.holders -= 1\n        self._confirmed -= 1\n",
                "        self._confirmed -= 1\n",
            ),
        ),
        (*CORE, *MODEL),
        "a cancelled booking's spot is never freed",
    ),
    Mutant(
        "same-user-rule-dropped",
        "core/_state.py",
        (
            (
                "if person.user_id in slot.booker_users:  # the same-user rule (v2)",
                "if False:  # the same-user rule (v2), dropped",
            ),
        ),
        (*CORE, *MODEL),
        "a v2 user books the same slot twice",
    ),
    Mutant(
        "token-cap-off-by-one",
        "core/_tokens.py",
        (("if known >= self._capacity:", "if known > self._capacity:"),),
        (*CORE, *MODEL),
        "one idempotency token more than max_tokens is remembered",
    ),
    Mutant(
        "retention-one-tick-long",
        "core/_state.py",
        (
            (
                "if lapsed[lease_id][KEPT_EXPIRES_NS] > horizon:",
                "if lapsed[lease_id][KEPT_EXPIRES_NS] >= horizon:",
            ),
        ),
        (*CORE, *MODEL),
        "an expired lease is forgotten one tick after its retention",
    ),
    Mutant(
        "restore-forgets-live-spots",
        "core/_state.py",
        (
            (
                "                slot.holders += 1  # (restored: capacity may since have been "
                "lowered)\n                live[lease_id] = kept",
                "                live[lease_id] = kept",
            ),
        ),
        (*SNAPSHOT, *MODEL),
        "a restored state's live leases hold no spot: a restart overgrants",
    ),
    Mutant(
        "removal-keeps-live-leases",
        "core/_state.py",
        (
            (
                "            released.extend(i for i in slot.expiring_ids if i in self._live)\n",
                "",
            ),
        ),
        (*MODEL,),
        "a removed slot's live leases are not released: the removal cannot apply",
    ),
    Mutant(
        "readd-forgets-orphans",
        "core/_state.py",
        (
            (
                "        self._orphaned -= slot.bookings\n        self._list(slot)\n",
                "        self._list(slot)\n",
            ),
        ),
        (*MODEL,),
        "a re-added slot's bookings still count as orphaned",
    ),
    Mutant(
        "restore-drops-expiry-order",
        "core/_state.py",
        (("        self._expired.extend(snapshot.expired_order)\n", ""),),
        (*SNAPSHOT, *MODEL),
        "a restored state never forgets the expired leases it was restored with",
    ),
    Mutant(
        "batch-availability-skips-settle",
        "core/_state.py",
        (
            (
                "        slot = self._slot(key, now_ns)\n        return None if slot is None",
                "        slot = self._slot(key)\n        return None if slot is None",
            ),
        ),
        ("tests/test_core_scope.py", "tests/test_gateway_bookings.py", *MODEL),
        "BatchAvailability counts a lease due at its instant as still holding its spot",
    ),
    Mutant(
        "slot-key-equality-is-identity",
        "core/_model.py",
        (("        if type(other) is not SlotKey:\n", "        if True:\n"),),
        ("tests/test_core_frozen.py",),
        "a key decoded from a request never equals the inventory's own: no slot is found",
    ),
    Mutant(
        "routing-digest-changed",
        "core/_routing.py",
        (('person=b"leasehold-route"', 'person=b"leasehold-rout3"'),),
        ("tests/test_core_routing.py",),
        "every key routes elsewhere: ids minted before an upgrade reach the wrong shard",
    ),
    # ----- journal, snapshots, recovery -----------------------------------------------------
    Mutant(
        "skip-fsync",
        "shards/_journal.py",
        (
            (
                "    started = time.perf_counter()\n    fsync(fd)\n",
                "    started = time.perf_counter()\n",
            ),
        ),
        (*JOURNAL, "tests/test_shard_durability.py"),
        "records are written but never fsynced: acknowledged, yet lost at power loss",
    ),
    Mutant(
        "recovery-skips-a-record",
        "shards/_persistence.py",
        (
            (
                "for seq, offset, payload in segment.payloads(start):",
                "for seq, offset, payload in list(segment.payloads(start))[:-1]:",
            ),
        ),
        ("tests/test_recovery.py", "tests/test_compaction.py"),
        "a restart replays all but the last record of each segment",
    ),
    Mutant(
        "snapshot-drops-tokens",
        "shards/_snapshots.py",
        (("        tables.encode_tokens(snapshot),\n", "        ([], [], [], []),\n"),),
        ("tests/test_recovery.py", "tests/test_compaction.py"),
        "a snapshot forgets the idempotency tokens: a retry after a restart books twice",
    ),
    # ----- the shard <-> journal seam ---------------------------------------------------
    Mutant(
        "reply-before-deliver",
        "shards/_shard.py",
        (
            (
                "        self._sink.commit(events, deliver, "
                "commit_scope(command, events, result))\n",
                "        deliver()\n"
                "        self._sink.commit(events, _nothing_to_deliver, "
                "commit_scope(command, events, result))\n",
            ),
        ),
        SEAM,
        "the shard replies before the journal has its events on disk",
    ),
    Mutant(
        "drain-skips-async-buffer",
        "shards/_durable_sink.py",
        (("while self._waiting or writer.unsynced_records:", "while self._waiting:"),),
        SEAM,
        "stopping drops the records ASYNC mode buffered (acknowledged, never written)",
    ),
    Mutant(
        "compactor-freezes-before-roll",
        "shards/_compaction.py",
        (
            ("        frozen = self._state.freeze()\n", ""),
            (
                "        segment = await self._sink.roll()\n",
                "        frozen = self._state.freeze()\n"
                "        segment = await self._sink.roll()\n",
            ),
        ),
        SEAM,
        "the snapshot is taken before the roll's await, so it misses the commits made "
        "during the roll's flush that its sequence number says it covers",
    ),
    Mutant(
        "snapshot-before-its-records-are-durable",
        "shards/_compaction.py",
        (("        await self._sink.sync()\n", ""),),
        SEAM,
        "a snapshot counting records committed during the roll is durable before they are: "
        "a crash then leaves a journal that ends inside the snapshot's range",
    ),
    Mutant(
        "manifest-names-the-segment-after-the-snapshot",
        "shards/_datadir.py",
        (
            (
                "manifest = ShardManifest(seq, last_segment, durable)",
                "manifest = ShardManifest(seq, seq, durable)",
            ),
        ),
        ("tests/test_compaction.py",),
        "the manifest lists journal-<snapshot seq>, but a commit during the roll starts the "
        "new segment below it: the next start is refused ('missing')",
    ),
    Mutant(
        "roll-names-segment-from-next-seq",
        "shards/_journal.py",
        (
            (
                "path = self.directory / segment_name(first_seq)",
                "path = self.directory / segment_name(self.next_seq)",
            ),
        ),
        ("tests/test_journal_roll.py", "tests/test_compaction.py"),
        "a new segment is named from next_seq, which counts records still buffered: a "
        "commit during the roll leaves a gap and the next start is refused",
    ),
)
