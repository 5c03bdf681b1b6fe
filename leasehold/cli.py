"""The `leasehold` command: `serve`, `watch`, `dashboard` and `feed demo`.

Errors a user can cause (a missing or bad feed, a busy port, bad flags) end
with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leasehold import __version__, health
from leasehold._app import ServeConfig, ServerFailed
from leasehold._logging import FORMATS as LOG_FORMATS
from leasehold._logging import LEVELS as LOG_LEVELS
from leasehold._logging import configure as configure_logging
from leasehold._logging import event
from leasehold._run import health_url, serve_until_signal
from leasehold._slots import SlotsError, slots_main
from leasehold._slots import add_parser as add_slots_parser
from leasehold.core import (
    NANOS_PER_SECOND,
    FeedError,
    LeaseSettings,
    demo_feed,
    parse_feed_json,
)
from leasehold.gateway import GuardLimits, TlsSettings, certificate_names, server_context
from leasehold.health import DEFAULT_PORT as DEFAULT_HEALTH_PORT
from leasehold.health import HealthConfig, HealthListenError
from leasehold.shards import (
    DataDirError,
    Durability,
    Persistence,
    RecoveryError,
    lock,
    prepare,
    recorded_feed,
)
from leasehold.tuning import tune_for_long_lived_state, tune_thread_handoffs

EXIT_USAGE = 2
EXIT_FAILURE = 1
# Open files the server holds besides gRPC connections: journals, snapshots, the health
# stream's watchers (up to 256 and its pending ones), listeners.
_FILES_BESIDES_CONNECTIONS = 1024


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return _reader_left()
    except BaseExceptionGroup as group:  # `watch` writes from inside trio's nurseries
        if group.split(_broken_pipe)[1] is not None:
            raise
        return _reader_left()


def _broken_pipe(error: BaseException) -> bool:
    # rich answers a broken pipe with SystemExit(1), raised while handling it.
    return isinstance(error, BrokenPipeError) or isinstance(error.__context__, BrokenPipeError)


def _reader_left() -> int:
    """The reader of our output left (`| head`): stop quietly, as cat does.

    What is still buffered goes to /dev/null instead of raising again at exit.
    """
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_FAILURE


def _main(argv: list[str]) -> int:
    if argv[:1] == ["bench"]:  # the bench parses its own flags (and passes serve's through)
        return _bench(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "feed":
        json.dump(demo_feed(int(time.time())), sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.stdout.flush()  # inside main's BrokenPipeError handler, not at exit
        return 0
    if args.command == "watch":
        return _watch(args)
    if args.command == "dashboard":
        return _dashboard(args.url, args.open)
    if args.command == "slots":
        try:
            return slots_main(args)
        except SlotsError as problem:
            return _fail(str(problem), EXIT_FAILURE)
    return _serve(parser, args)


def _bench(argv: list[str]) -> int:
    try:
        from leasehold.bench import main as bench_main
    except ImportError as missing:
        return _fail(
            f"leasehold bench needs the bench extra ({missing}): pip install 'leasehold[bench]' "
            "(from a clone: pip install -e '.[bench]')",
            EXIT_FAILURE,
        )
    return bench_main(argv)


def _watch(args: argparse.Namespace) -> int:
    parts = urlsplit(args.url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        example = health_url("127.0.0.1", DEFAULT_HEALTH_PORT)
        return _fail(
            f"{args.url!r} is not a health stream URL: give ws://HOST:PORT/ (or wss://), "
            f"such as {example}",
            EXIT_USAGE,
        )
    from leasehold.health.watch import client_context, watch_main  # rich: only for this command

    context = None
    if parts.scheme == "wss":
        try:
            context = client_context(args.ca, args.cert, args.key)
        except (OSError, ssl.SSLError) as problem:
            return _fail(f"cannot use the TLS files: {problem}", EXIT_USAGE)
    return watch_main(args.url, args.interval, args.token, context)


def _parser() -> argparse.ArgumentParser:
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
        "--port", type=_port, default=50051, help="gRPC port (0: any free, printed)"
    )
    serve_cmd.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="state dir: journal, snapshots, the feed served; one server at a time",
    )
    serve_cmd.add_argument(
        "--shards",
        type=_positive_int,
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
        type=_positive_int,
        default=100_000,
        metavar="RECORDS",
        help="a shard snapshots its state after this many journal records",
    )
    serve_cmd.add_argument(
        "--snapshot-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="how often a shard checks for --snapshot-every records",
    )
    serve_cmd.add_argument(
        "--mailbox",
        type=_positive_int,
        default=1024,
        help="requests a shard may queue before it answers RESOURCE_EXHAUSTED",
    )
    serve_cmd.add_argument(
        "--default-lease-ttl",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="lease lifetime when CreateLease asks for none",
    )
    serve_cmd.add_argument(
        "--max-lease-ttl",
        type=_positive_float,
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
        type=_port,
        default=None,
        help="websocket port (0: any free); default: --port + 1, or 0 when --port is 0 or 65535 "
        f"(so {DEFAULT_HEALTH_PORT} beside the default gRPC port)",
    )
    health.add_argument(
        "--health-token", help="watchers must send this token (default: none needed)"
    )
    health.add_argument(
        "--health-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="frame interval for watchers that do not ask for one",
    )
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
    watch_cmd = commands.add_parser("watch", help="live terminal view of every shard")
    watch_cmd.add_argument("url", nargs="?", default=health_url("127.0.0.1", DEFAULT_HEALTH_PORT))
    watch_cmd.add_argument("--token", help="the server's --health-token")
    watch_cmd.add_argument(
        "--interval", type=_positive_float, metavar="SECONDS", help="seconds between frames"
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
    feed_cmd = commands.add_parser("feed", help="print the built-in demo feed")
    feed_cmd.add_argument("which", choices=["demo"])
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


def _limit_flags(serve_cmd: argparse.ArgumentParser) -> None:
    default = GuardLimits()
    limits = serve_cmd.add_argument_group("connection limits (docs/operations.md)")
    limits.add_argument(
        "--max-connections",
        type=_positive_int,
        default=default.max_connections,
        help="gRPC connections served at once; more are closed at once "
        f"(default {default.max_connections})",
    )
    limits.add_argument(
        "--handshake-timeout",
        type=_positive_float,
        default=default.handshake_timeout_s,
        metavar="SECONDS",
        help="close a connection that has not sent its HTTP/2 preface by then",
    )
    limits.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=default.idle_timeout_s,
        metavar="SECONDS",
        help="close a connection with no call for this long",
    )


def _guard_limits(args: argparse.Namespace) -> GuardLimits:
    return GuardLimits(
        max_connections=args.max_connections,
        handshake_timeout_s=args.handshake_timeout,
        idle_timeout_s=args.idle_timeout,
    )


def _raise_open_file_limit(max_connections: int) -> str | None:
    """Raise the soft open-file limit towards the hard one, enough for the connection cap
    plus the files and sockets the rest of the server holds; a problem line, or None."""
    wanted = max_connections + _FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return (
            f"--max-connections {max_connections} needs {wanted} open files "
            f"and the hard limit is {hard}"
        )
    return None


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.default_lease_ttl > args.max_lease_ttl:
        parser.error("--default-lease-ttl must not exceed --max-lease-ttl")
    tls_problem = _tls_flag_problem(args)
    if tls_problem:
        parser.error(tls_problem)
    files_problem = _raise_open_file_limit(args.max_connections)
    if files_problem:
        return _fail(files_problem, EXIT_USAGE)
    try:
        ssl_context = _ssl_context(args)
    except (OSError, ssl.SSLError) as problem:
        return _fail(f"cannot use the TLS files: {problem}", EXIT_USAGE)
    durability = Durability(args.durability)
    try:
        feed_text, recorded = _feed_text(args.feed, args.data_dir, durability)
        feed = parse_feed_json(feed_text)
    except UnicodeDecodeError as problem:
        where, byte = args.feed or args.data_dir, problem.object[problem.start]
        reason = f"{where} is not UTF-8 text (byte {byte:#04x} at offset {problem.start})"
        return _fail(f"cannot load the feed: {reason}", EXIT_USAGE)
    except (OSError, FeedError, DataDirError) as problem:
        return _fail(f"cannot load the feed: {problem}", EXIT_USAGE)
    if not feed.slots:
        return _fail("the feed has no slots to serve", EXIT_USAGE)
    try:
        held = None
        if durability is not Durability.NONE:
            held = lock(args.data_dir)  # released when this process exits
            prepare(args.data_dir, shard_count=args.shards, feed_text=feed_text)
    except (OSError, DataDirError) as problem:
        return _fail(f"cannot use --data-dir {args.data_dir}: {problem}", EXIT_USAGE)
    config = ServeConfig(
        slots=feed.slots,
        host=args.host,
        port=args.port,
        shard_count=args.shards,
        mailbox_capacity=args.mailbox,
        lease_settings=LeaseSettings(
            default_ttl_ns=round(args.default_lease_ttl * NANOS_PER_SECOND),
            max_ttl_ns=round(args.max_lease_ttl * NANOS_PER_SECOND),
        ),
        ssl_context=ssl_context,
        tls_client_name=args.tls_client_name,
        persistence=Persistence(
            args.data_dir, durability, args.snapshot_every, args.snapshot_interval
        ),
        health=HealthConfig(
            host=args.health_host,
            port=health_port_for(args.port, args.health_port),
            token=args.health_token,
            default_interval_s=args.health_interval,
            # wss:// with the gRPC port's certificate and client-certificate rule.
            ssl_context=ssl_context,
            client_cert_ok=_client_cert_check(args.tls_client_name),
        ),
        limits=_guard_limits(args),
    )
    configure_logging(args.log_format, args.log_level)
    try:
        tune_for_long_lived_state()
        tune_thread_handoffs()
        asyncio.run(serve_until_signal(config, feed, args.data_dir if recorded else None))
    except HealthListenError as problem:
        return _fail(str(problem), EXIT_FAILURE)
    except RecoveryError as problem:
        return _fail(f"cannot recover the stored state: {problem}", EXIT_FAILURE)
    except DataDirError as problem:
        return _fail(f"cannot use --data-dir {args.data_dir}: {problem}", EXIT_FAILURE)
    except ServerFailed as problem:
        event(logging.ERROR, "server_failed", f"stopped: {problem}", reason=str(problem))
        return _fail(f"stopped: {problem}", EXIT_FAILURE)
    except OSError as problem:
        return _fail(f"cannot listen on {args.host}:{args.port}: {problem.strerror}", EXIT_FAILURE)
    finally:
        if held is not None:
            held.close()
    return 0


def health_port_for(grpc_port: int, given: int | None) -> int:
    """The health port: the one given, else the gRPC port's neighbour (0 follows 0).

    Following --port lets two servers with different ports run side by side.
    """
    if given is not None:
        return given
    return 0 if grpc_port in (0, 65535) else grpc_port + 1


def _tls_flag_problem(args: argparse.Namespace) -> str | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together"
    if args.tls_client_ca is not None and args.tls_cert is None:
        return "--tls-client-ca needs --tls-cert and --tls-key"
    if args.tls_client_name is not None and args.tls_client_ca is None:
        return "--tls-client-name needs --tls-client-ca"
    return None


def _client_cert_check(name: str | None) -> Callable[[dict[str, Any] | None], bool] | None:
    if name is None:
        return None
    return lambda cert: name in certificate_names(cert)


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        return None
    return server_context(
        TlsSettings(args.tls_cert, args.tls_key, args.tls_client_ca, args.tls_client_name)
    )


def _feed_text(path: Path | None, data_dir: Path, durability: Durability) -> tuple[str, bool]:
    """The feed to serve: --feed; else the one the data dir recorded; else a new demo feed.

    The demo feed moves with the clock, so a restart on a data dir serves the feed
    its stored leases and bookings were made on. The flag says it came from the dir.
    """
    if path is not None:
        return path.read_text(encoding="utf-8"), False
    recorded = None if durability is Durability.NONE else recorded_feed(data_dir)
    if recorded is not None:
        return recorded, True
    return json.dumps(demo_feed(int(time.time()))), False


def _dashboard(url: str | None, open_it: bool) -> int:
    """Print the dashboard's path; with --open, open it (on `url` if given)."""
    import webbrowser
    from urllib.parse import urlencode

    path = Path(health.__file__).with_name("dashboard.html").resolve()
    if not path.is_file():
        return _fail(f"the dashboard is missing from the package: {path}", EXIT_FAILURE)
    print(path)
    if open_it:
        page = path.as_uri() + (f"?{urlencode({'ws': url})}" if url else "")
        if not webbrowser.open(page):
            return _fail(f"no browser to open; open {page} by hand", EXIT_FAILURE)
    return 0


def _fail(message: str, code: int) -> int:
    print(f"leasehold: error: {message}", file=sys.stderr)
    return code


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


if __name__ == "__main__":
    sys.exit(main())
