"""`leasehold feed apply|diff FILE --target HOST:PORT` and `leasehold inventory`: the admin
API's client (docs/inventory.md).

A feed with PROCESS_AS_COMPLETE (or no processing_instruction) is sent whole
(ApplyFeed: what it does not list is removed); one with PROCESS_AS_INCREMENTAL,
whose `service_availability` entries carry `*_restrict` fields, is sent as windows
(ReplaceServiceAvailability). `diff` sends the same with dry_run: nothing changes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import ssl
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from leasehold._exits import EXIT_FAILURE, EXIT_USAGE, fail
from leasehold.proto.admin.v1 import inventory_pb2 as pb
from leasehold.proto.admin.v1.inventory_grpc import InventoryServiceStub

_INCREMENTAL = "PROCESS_AS_INCREMENTAL"
_RESTRICTS = ("start_timestamp_restrict", "end_timestamp_restrict")


class CommandError(Exception):
    """A problem to report as one line (with the exit code to end with)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def feed_main(args: argparse.Namespace) -> int:
    try:
        request = _request(args.file, dry_run=args.feed_command == "diff")
        report = asyncio.run(_call(args, request))
    except CommandError as problem:
        return fail(str(problem), problem.code)
    print(summary(report))
    if args.verbose:
        for shard in report.shards:
            print(f"  shard {shard.shard}: {_counts(shard)}")
    return 0


def inventory_main(args: argparse.Namespace) -> int:
    request = pb.GetInventoryRequest(
        merchant_id=args.merchant,
        service_id=args.service,
        start_sec_from=args.start_from,
        start_sec_to=args.start_to,
        limit=max(0, args.limit),
    )
    try:
        answer = asyncio.run(_call(args, request))
    except CommandError as problem:
        return fail(str(problem), problem.code)
    if args.format == "json":
        print(json_format.MessageToJson(answer, preserving_proto_field_name=True, indent=1))
        return 0
    print("start (UTC)          min  service  staff  capacity  leases  bookings  state")
    for state in answer.slots:
        slot = state.slot
        start = datetime.datetime.fromtimestamp(slot.start_sec, datetime.UTC)
        print(
            f"{start:%Y-%m-%d %H:%M:%S}  {slot.duration_sec // 60:>3}  {slot.service_id}  "
            f"{slot.resources.staff_id or '-'}  {state.capacity:>8}  {state.leases:>6}  "
            f"{state.bookings:>8}  {'removed' if state.removed else 'on sale'}"
        )
    if answer.truncated:
        print(f"(more slots match: raise --limit above {len(answer.slots)})")
    return 0


def summary(report: pb.ChangeReport) -> str:
    verb = "would change" if report.dry_run else "applied"
    return f"{verb}: {_counts(report)}"


def _counts(part: pb.ChangeReport | pb.ShardChange) -> str:
    return (
        f"{part.added} added, {part.changed} changed, {part.removed} removed, "
        f"{part.kept_booked} kept because booked ({part.unchanged} unchanged, "
        f"{part.leases_released} leases released)"
    )


def _request(
    path: Path, *, dry_run: bool
) -> pb.ApplyFeedRequest | pb.ReplaceServiceAvailabilityRequest:
    """The admin request for the feed file: whole (ApplyFeed) or windows (incremental)."""
    try:
        raw = path.read_bytes()
        document = json.loads(raw)
    except OSError as problem:
        raise CommandError(
            f"cannot read {path}: {problem.strerror or problem}", EXIT_USAGE
        ) from None
    except (ValueError, RecursionError) as problem:
        raise CommandError(f"{path} is not JSON: {problem}", EXIT_USAGE) from None
    metadata = document.get("metadata") if isinstance(document, dict) else None
    instruction = metadata.get("processing_instruction") if isinstance(metadata, dict) else None
    if instruction != _INCREMENTAL:
        return pb.ApplyFeedRequest(feed_json=raw, dry_run=dry_run)
    items = document.get("service_availability")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and all(r in i for r in _RESTRICTS) for i in items
    ):
        raise CommandError(
            f"{path}: an incremental feed's service_availability entries need "
            "start_timestamp_restrict and end_timestamp_restrict (each is a window)",
            EXIT_USAGE,
        )
    request = pb.ReplaceServiceAvailabilityRequest(dry_run=dry_run)
    try:
        json_format.ParseDict({"service_availability": items}, request, ignore_unknown_fields=True)
    except json_format.ParseError as problem:
        raise CommandError(f"{path}: {problem}", EXIT_USAGE) from None
    return request


async def _call(args: argparse.Namespace, request: Any) -> Any:
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"--target {args.target!r} is not HOST:PORT", EXIT_USAGE)
    context = _tls(args)
    metadata = {"authorization": f"Bearer {args.token}"} if args.token else None
    channel = Channel(host.strip("[]"), int(port), ssl=context)
    stub = InventoryServiceStub(channel)
    method: Any = {
        pb.ApplyFeedRequest: stub.ApplyFeed,
        pb.ReplaceServiceAvailabilityRequest: stub.ReplaceServiceAvailability,
        pb.GetInventoryRequest: stub.GetInventory,
    }[type(request)]
    try:
        return await method(request, timeout=args.timeout, metadata=metadata)
    except GRPCError as problem:
        raise CommandError(
            f"{args.target} refused: {problem.status.name}: {problem.message}"
        ) from None
    except (OSError, StreamTerminatedError, TimeoutError) as problem:
        raise CommandError(
            f"cannot reach {args.target}: {problem or type(problem).__name__}"
        ) from None
    finally:
        channel.close()


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.ca is None and args.cert is None:
        return None
    if (args.cert is None) != (args.key is None):
        raise CommandError("--cert and --key go together", EXIT_USAGE)
    try:
        context = ssl.create_default_context(cafile=None if args.ca is None else str(args.ca))
        if args.cert is not None:
            context.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as problem:
        raise CommandError(f"cannot use the TLS files: {problem}", EXIT_USAGE) from None
    context.set_alpn_protocols(["h2"])
    return context
