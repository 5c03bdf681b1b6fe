"""The warnings a start logs about what recovery repaired or passed over, per shard.

Its own module so that a shard process logs them without importing the one-process
mode's assembly (leasehold._run imports gRPC and the health stream).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from leasehold._logging import event
from leasehold.shards import RecoveryReport


def recovery_warnings(reports: Sequence[RecoveryReport], shard_ids: Sequence[int] = ()) -> None:
    """What recovery repaired or passed over, per shard (`shard_ids`: default 0, 1, ...)."""
    if not reports:
        return  # memory only: nothing was recovered
    ids = shard_ids or range(len(reports))
    for shard_id, report in zip(ids, reports, strict=True):
        if report.tail_repair:
            text = f"journal tail cut: {report.tail_repair}"
            event(logging.WARNING, "journal_tail_cut", text, shard=shard_id)
        for note in report.notes:
            text = f"snapshot passed over: {note}"
            event(logging.WARNING, "snapshot_passed_over", text, shard=shard_id)
