"""The server's log: a few events (start-up, recovery, journal trouble, shedding, stop).

Each record has a timestamp, a level, an event name and fields. `text` prints a line
a person reads (`TIME LEVEL leasehold: message`); `json` prints one JSON object per
line with the fields as keys. Nothing is logged per successful request; shedding is
a periodic summary (see `ShedSummary`), never a line per refused call.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
LOGGER = logging.getLogger("leasehold")


def configure(fmt: str, level: str, stream: TextIO = sys.stdout) -> None:
    """Send the `leasehold` logger's records to `stream`, flushed per record."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


def event(level: int, name: str, message: str, **fields: object) -> None:
    """Log one event: `message` for people, `fields` for machines."""
    LOGGER.log(level, message, extra={"event": name, "fields": fields})


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{_timestamp(record)} {record.levelname:<7} leasehold: {record.getMessage()}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        document = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "message"),
            "message": record.getMessage(),
            **fields,
        }
        return json.dumps(document, default=str)


@dataclass(slots=True)
class ShedSummary:
    """Turns cumulative per-shard refusal totals into at most one warning per period."""

    # Invariant: one entry per shard, the totals at the previous summary.
    shed: list[int]
    dropped: list[int]

    def update(self, shed: Sequence[int], dropped: Sequence[int], period_s: float) -> None:
        """Log one `shedding` warning if any shard refused calls since the last update."""
        new_shed = [now - before for now, before in zip(shed, self.shed, strict=True)]
        new_dropped = [now - before for now, before in zip(dropped, self.dropped, strict=True)]
        self.shed, self.dropped = list(shed), list(dropped)
        if not any(new_shed) and not any(new_dropped):
            return
        event(
            logging.WARNING,
            "shedding",
            f"refused {sum(new_shed)} requests (mailbox full) and dropped {sum(new_dropped)} "
            f"past their deadline in the last {period_s:g} s",
            period_s=period_s,
            shed=sum(new_shed),
            deadline_dropped=sum(new_dropped),
            shed_by_shard=new_shed,
        )
