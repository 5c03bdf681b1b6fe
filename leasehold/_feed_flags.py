"""The flags of `leasehold feed` and `leasehold inventory`; their client is `_feed_cmd`.

Apart from it so that building the parser (every subcommand does) imports no
grpclib or protobuf.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parsers(commands: Any, positive_float: Any) -> None:
    feed = commands.add_parser("feed", help="print the demo feed, or apply a feed to a server")
    which = feed.add_subparsers(dest="feed_command", required=True)
    which.add_parser("demo", help="print the built-in demo feed")
    for name, text in (
        ("apply", "change a running server's inventory to FILE"),
        ("diff", "print what `apply` would change, changing nothing"),
    ):
        cmd = which.add_parser(name, help=text)
        cmd.add_argument("file", type=Path, metavar="FILE", help="availability feed JSON")
        cmd.add_argument("-v", "--verbose", action="store_true", help="a line per shard too")
        _connection_flags(cmd, positive_float)
    inventory = commands.add_parser("inventory", help="a running server's slots, live")
    inventory.add_argument("--merchant", required=True, help="merchant_id")
    inventory.add_argument("--service", default="", help="service_id (default: every one)")
    inventory.add_argument("--from", dest="start_from", type=int, default=0, metavar="UNIX_SEC")
    inventory.add_argument("--to", dest="start_to", type=int, default=0, metavar="UNIX_SEC")
    inventory.add_argument("--limit", type=int, default=100, help="slots at most")
    inventory.add_argument("--format", choices=("table", "json"), default="table")
    _connection_flags(inventory, positive_float)


def _connection_flags(cmd: argparse.ArgumentParser, positive_float: Any) -> None:
    cmd.add_argument("--target", required=True, metavar="HOST:PORT", help="the server's admin port")
    cmd.add_argument("--token", help="the server's --admin-token")
    cmd.add_argument("--ca", type=Path, metavar="FILE", help="TLS: trust this CA")
    cmd.add_argument("--cert", type=Path, metavar="FILE", help="mutual TLS: client certificate")
    cmd.add_argument("--key", type=Path, metavar="FILE", help="its private key")
    cmd.add_argument(
        "--timeout", type=positive_float, default=120.0, metavar="SECONDS", help="call deadline"
    )
