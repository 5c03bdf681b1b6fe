"""What `leasehold bench h2load` sends and reads, without I/O: the gRPC body, h2load's figures.

h2load (nghttp2-client) posts one fixed body per request and prints a summary;
it knows HTTP, not gRPC, so it counts any HTTP 200 as a success, even one whose
trailers carry a non-zero grpc-status. What it does print that gRPC can use is
the DATA bytes received: a grpclib error answer is trailers-only (no message),
so "DATA bytes = succeeded x one message's length" says every success carried a
message of the expected length (`bodies_match`), and how many did not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from leasehold.bench._h2wire import grpc_message

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # grpclib's default receive limit: larger is refused anyway
# Latency histogram bucket width: percentiles are reported within 1 % of the true value.
_BUCKET_RATIO = 1.01
_LOG_RATIO = math.log(_BUCKET_RATIO)
_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


class H2loadOutputError(ValueError):
    """h2load's output lacks a figure this bench needs (the message names it)."""


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message as sent on the wire: 5-byte prefix, then the bytes."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a {len(message)}-byte message is over {MAX_MESSAGE_BYTES} bytes")
    return grpc_message(message)


@dataclass(frozen=True, slots=True)
class Summary:
    """h2load's summary figures; latencies in seconds (h2load's "time for request")."""

    requests_per_s: float
    total: int
    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int  # 3xx + 4xx + 5xx
    data_bytes: int
    latency_min_s: float
    latency_max_s: float
    latency_mean_s: float
    latency_sd_s: float

    def bodies_match(self, message_bytes: int) -> bool:
        """Every 2xx answer carried exactly one message of `message_bytes` (prefix included)."""
        return self.answers_without_message(message_bytes) == 0

    def answers_without_message(self, message_bytes: int) -> int | None:
        """2xx answers with no message (gRPC errors), if the others carried one of that length.

        None when the DATA bytes are not whole messages for the answers counted.
        """
        missing = self.status_2xx * message_bytes - self.data_bytes
        if message_bytes <= 0 or missing < 0 or missing % message_bytes:
            return None
        return missing // message_bytes


_FINISHED = re.compile(r"^finished in \S+, (?P<rps>[\d.]+) req/s", re.M)
_REQUESTS = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored, "
    r"(?P<timeout>\d+) timeout",
    re.M,
)
_STATUS = re.compile(
    r"^status codes: (?P<s2>\d+) 2xx, (?P<s3>\d+) 3xx, (?P<s4>\d+) 4xx, (?P<s5>\d+) 5xx", re.M
)
_TRAFFIC = re.compile(r"^traffic: .*\((?P<data>\d+)\) data$", re.M)
_DURATION = r"([\d.]+)(us|ms|s)"
_LATENCY = re.compile(
    rf"^time for request:\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", re.M
)


def parse_summary(output: str) -> Summary:
    """The figures of h2load's standard output; H2loadOutputError names a missing line."""
    finished = _search(_FINISHED, output, "finished in ... req/s")
    requests = _search(_REQUESTS, output, "requests: ...")
    status = _search(_STATUS, output, "status codes: ...")
    traffic = _search(_TRAFFIC, output, "traffic: ... data")
    latency = _search(_LATENCY, output, "time for request: ...")
    lat = [float(latency.group(i)) * _UNITS_S[latency.group(i + 1)] for i in (1, 3, 5, 7)]
    counts = {name: int(value) for name, value in requests.groupdict().items()}
    return Summary(
        requests_per_s=float(finished.group("rps")),
        **counts,
        status_2xx=int(status.group("s2")),
        status_other=sum(int(status.group(g)) for g in ("s3", "s4", "s5")),
        data_bytes=int(traffic.group("data")),
        latency_min_s=lat[0],
        latency_max_s=lat[1],
        latency_mean_s=lat[2],
        latency_sd_s=lat[3],
    )


def _search(pattern: re.Pattern[str], output: str, what: str) -> re.Match[str]:
    found = pattern.search(output)
    if found is None:
        raise H2loadOutputError(f"h2load printed no '{what}' line")
    return found


@dataclass(frozen=True, slots=True)
class LogFigures:
    """From h2load's --log-file: per-request HTTP status and time to the response's end."""

    answered_200: int
    not_200: int  # other statuses, and -1: a failed stream
    p50_s: float  # of the 200 answers
    p99_s: float


class LatencyHistogram:
    """Counts by 1 %-wide bucket: memory bounded by the latency range, not the request count."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.total = 0
        self.max_us = 0

    def add(self, micros: int) -> None:
        bucket = math.ceil(math.log(max(micros, 1)) / _LOG_RATIO)
        self._counts[bucket] = self._counts.get(bucket, 0) + 1
        self.total += 1
        self.max_us = max(self.max_us, micros)

    def percentile(self, pct: float) -> float:
        """The pct-th percentile (seconds): its bucket's upper bound, or the maximum if lower."""
        rank = math.ceil(self.total * pct / 100)
        seen = 0
        for bucket in sorted(self._counts):
            seen += self._counts[bucket]
            if seen >= rank:
                return min(_BUCKET_RATIO**bucket, self.max_us) * 1e-6
        return 0.0


def parse_log(lines: Iterable[str]) -> LogFigures:
    """h2load's --log-file rows: start (us since epoch), HTTP status, us to the response's end."""
    histogram = LatencyHistogram()
    not_200 = 0
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        try:
            status, micros = int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise H2loadOutputError(f"h2load log line {number} is not start/status/us") from None
        if status != 200:
            not_200 += 1  # its time is to a failure, not an answer: kept out of the latencies
            continue
        histogram.add(micros)
    return LogFigures(
        answered_200=histogram.total,
        not_200=not_200,
        p50_s=histogram.percentile(50),
        p99_s=histogram.percentile(99),
    )
