"""The `leasehold` command's flags: one parser for every subcommand but `bench`."""

from __future__ import annotations

import argparse
from pathlib import Path

from leasehold import __version__
from leasehold._announce import health_url
from leasehold._feed_flags import add_parsers as add_feed_parsers
from leasehold._logging import FORMATS as LOG_FORMATS
from leasehold._logging import LEVELS as LOG_LEVELS
from leasehold._process_flags import add_process_flags
from leasehold._slots import add_parser as add_slots_parser
from leasehold.gateway import DEFAULT_ADMIN_MAX_REQUEST_BYTES, GuardLimits
from leasehold.health import DEFAULT_PORT as DEFAULT_HEALTH_PORT
from leasehold.shards import (
    Durability,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leasehold", description="Slot-lease booking server (Maps Booking partner API)."
    )
    parser.add_argument("--version", action="version", version=f"leasehold {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve", help="serve the booking API over gRPC", formatter_class=_ShowDefaults
    )
    serve_cmd.add_argument(
        "--feed",
        type=Path,
        help="availability feed JSON (default: the one recorded in --data-dir, else the "
        "built-in demo feed; see leasehold slots)",
    )
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve_cmd.add_argument(
        "--port", type=port, default=50051, help="gRPC port (0: any free, printed)"
    )
    serve_cmd.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="state dir: journal, snapshots, the feed served; one server at a time",
    )
    serve_cmd.add_argument(
        "--shards",
        type=positive_int,
        default=4,
        help="shard count (single-owner trio tasks; fixed per data dir)",
    )
    serve_cmd.add_argument(
        "--durability",
        choices=[d.value for d in Durability],
        default=Durability.SYNC.value,
        help="sync: reply after fsync (group commit); async: fsync at least every 10 ms; "
        "none: memory only",
    )
    serve_cmd.add_argument(
        "--snapshot-every",
        type=positive_int,
        default=100_000,
        metavar="RECORDS",
        help="a shard snapshots its state after this many journal records",
    )
    serve_cmd.add_argument(
        "--snapshot-interval",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="how often a shard checks for --snapshot-every records",
    )
    serve_cmd.add_argument(
        "--mailbox",
        type=positive_int,
        default=1024,
        help="requests a shard may queue before it answers RESOURCE_EXHAUSTED",
    )
    serve_cmd.add_argument(
        "--default-lease-ttl",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help="lease lifetime when CreateLease asks for none",
    )
    serve_cmd.add_argument(
        "--max-lease-ttl",
        type=positive_float,
        default=900.0,
        metavar="SECONDS",
        help="longer requested lease lifetimes are cut to this",
    )
    tls = serve_cmd.add_argument_group("transport security (default: plain TCP)")
    tls.add_argument("--tls-cert", type=Path, metavar="FILE", help="server certificate (PEM)")
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="server private key (PEM)")
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="mutual TLS: require client certificates chained to this CA",
    )
    tls.add_argument(
        "--tls-client-name",
        metavar="NAME",
        help="mutual TLS: require this subject name in the client certificate",
    )
    health = serve_cmd.add_argument_group("health stream (websocket; see leasehold watch)")
    health.add_argument("--health-host", default="127.0.0.1", help="address to bind")
    health.add_argument(
        "--health-port",
        type=port,
        default=None,
        help="websocket port (0: any free); default: --port + 1, or 0 when --port is 0 or 65535 "
        f"(so {DEFAULT_HEALTH_PORT} beside the default gRPC port)",
    )
    health.add_argument(
        "--health-token", help="watchers must send this token (default: none needed)"
    )
    health.add_argument(
        "--health-interval",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="frame interval for watchers that do not ask for one",
    )
    _admin_flags(serve_cmd)
    logs = serve_cmd.add_argument_group("logs (on stdout; nothing per successful request)")
    logs.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text: TIME LEVEL leasehold: message; json: one object per line with ts, level, "
        "event, message and the event's fields",
    )
    logs.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="least severe level logged"
    )
    _limit_flags(serve_cmd)
    add_process_flags(serve_cmd)
    watch_cmd = commands.add_parser("watch", help="live terminal view of every shard")
    watch_cmd.add_argument("url", nargs="?", default=health_url("127.0.0.1", DEFAULT_HEALTH_PORT))
    watch_cmd.add_argument("--token", help="the server's --health-token")
    watch_cmd.add_argument(
        "--interval", type=positive_float, metavar="SECONDS", help="seconds between frames"
    )
    watch_cmd.add_argument(
        "--ca", type=Path, metavar="FILE", help="wss://: trust this CA (default: the system's)"
    )
    watch_cmd.add_argument(
        "--cert", type=Path, metavar="FILE", help="wss:// with mutual TLS: client certificate"
    )
    watch_cmd.add_argument("--key", type=Path, metavar="FILE", help="its private key")
    dashboard_cmd = commands.add_parser(
        "dashboard", help="print the browser dashboard's path (--open: open it)"
    )
    dashboard_cmd.add_argument("--url", help="health stream to show (default: the page's)")
    dashboard_cmd.add_argument("--open", action="store_true", help="open it in a browser")
    add_slots_parser(commands)
    add_feed_parsers(commands, positive_float)
    commands.add_parser("bench", add_help=False, help="benchmarks (leasehold bench --help)")
    return parser


class _ShowDefaults(argparse.HelpFormatter):
    """Help that ends each flag's line with its default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _admin_flags(serve_cmd: argparse.ArgumentParser) -> None:
    admin = serve_cmd.add_argument_group(
        "inventory admin service (gRPC; see leasehold feed apply, docs/inventory.md)"
    )
    admin.add_argument("--admin-host", default="127.0.0.1", help="address to bind")
    admin.add_argument(
        "--admin-port",
        type=port,
        default=None,
        help="admin gRPC port (0: any free); default: --port + 2, or 0 when --port is 0 "
        "or above 65533",
    )
    admin.add_argument(
        "--no-admin",
        action="store_true",
        default=None,  # (a flag: no default to show in --help)
        help="serve no admin port (the inventory then changes only at a restart with --feed)",
    )
    admin.add_argument(
        "--admin-token",
        help="admin calls must send 'authorization: Bearer TOKEN' (default: none needed)",
    )
    admin.add_argument(
        "--admin-max-request",
        type=positive_int,
        default=DEFAULT_ADMIN_MAX_REQUEST_BYTES,
        metavar="BYTES",
        help="largest admin request (a whole feed) read",
    )


def _limit_flags(serve_cmd: argparse.ArgumentParser) -> None:
    default = GuardLimits()
    limits = serve_cmd.add_argument_group("connection limits (docs/operations.md)")
    limits.add_argument(
        "--max-connections",
        type=positive_int,
        default=default.max_connections,
        help="gRPC connections served at once; more are closed at once "
        f"(default {default.max_connections})",
    )
    limits.add_argument(
        "--handshake-timeout",
        type=positive_float,
        default=default.handshake_timeout_s,
        metavar="SECONDS",
        help="close a connection that has not sent its HTTP/2 preface by then",
    )
    limits.add_argument(
        "--idle-timeout",
        type=positive_float,
        default=default.idle_timeout_s,
        metavar="SECONDS",
        help="close a connection with no call for this long",
    )


def port(text: str) -> int:
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
