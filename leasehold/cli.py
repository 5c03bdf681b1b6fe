"""The `leasehold` command: `serve`, `watch`, `dashboard` and `feed demo`.

Errors a user can cause (a missing or bad feed, a busy port, bad flags) end
with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from leasehold import health
from leasehold._app import Ready, ServeConfig, serve
from leasehold.core import (
    NANOS_PER_SECOND,
    Feed,
    FeedError,
    LeaseSettings,
    demo_feed,
    parse_feed_json,
)
from leasehold.gateway import GuardLimits, TlsSettings, server_context
from leasehold.health import DEFAULT_PORT as DEFAULT_HEALTH_PORT
from leasehold.health import HealthConfig, HealthListenError
from leasehold.shards import (
    DataDirError,
    Durability,
    Persistence,
    RecoveryError,
    RecoveryReport,
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the bench parses its own flags (and passes serve's through)
        from leasehold.bench import main as bench_main

        return bench_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "feed":
        json.dump(demo_feed(int(time.time())), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if args.command == "watch":
        from leasehold.health.watch import watch_main  # rich: only for this command

        return watch_main(args.url, args.interval, args.token)
    if args.command == "dashboard":
        return _dashboard(args.url, args.open)
    return _serve(parser, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leasehold", description="Slot-lease booking server (Maps Booking partner API)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the booking API over gRPC")
    serve_cmd.add_argument("--feed", type=Path, help="availability feed JSON (default: demo)")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve_cmd.add_argument("--port", type=_port, default=50051, help="gRPC port (0: any free)")
    serve_cmd.add_argument("--data-dir", type=Path, default=Path("data"), help="state dir")
    serve_cmd.add_argument("--shards", type=_positive_int, default=4, help="shard count")
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
        "--mailbox", type=_positive_int, default=1024, help="requests a shard may queue"
    )
    serve_cmd.add_argument(
        "--default-lease-ttl", type=_positive_float, default=300.0, metavar="SECONDS"
    )
    serve_cmd.add_argument(
        "--max-lease-ttl", type=_positive_float, default=900.0, metavar="SECONDS"
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
        default=DEFAULT_HEALTH_PORT,
        help=f"websocket port (0: any free; default {DEFAULT_HEALTH_PORT})",
    )
    health.add_argument("--health-token", help="watchers must send this token")
    health.add_argument(
        "--health-interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="frame interval for watchers that do not ask for one",
    )
    _limit_flags(serve_cmd)
    watch_cmd = commands.add_parser("watch", help="live terminal view of every shard")
    watch_cmd.add_argument("url", nargs="?", default=_health_url("127.0.0.1", DEFAULT_HEALTH_PORT))
    watch_cmd.add_argument("--token", help="the server's --health-token")
    watch_cmd.add_argument(
        "--interval", type=_positive_float, metavar="SECONDS", help="seconds between frames"
    )
    dashboard_cmd = commands.add_parser(
        "dashboard", help="print the browser dashboard's path (--open: open it)"
    )
    dashboard_cmd.add_argument("--url", help="health stream to show (default: the page's)")
    dashboard_cmd.add_argument("--open", action="store_true", help="open it in a browser")
    feed_cmd = commands.add_parser("feed", help="print the built-in demo feed")
    feed_cmd.add_argument("which", choices=["demo"])
    commands.add_parser("bench", add_help=False, help="benchmarks (leasehold bench --help)")
    return parser


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
        feed_text = _feed_text(args.feed, args.data_dir, durability)
        feed = parse_feed_json(feed_text)
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
        persistence=Persistence(args.data_dir, durability, args.snapshot_every),
        health=HealthConfig(
            host=args.health_host,
            port=args.health_port,
            token=args.health_token,
            default_interval_s=args.health_interval,
        ),
        limits=_guard_limits(args),
    )
    try:
        tune_for_long_lived_state()
        tune_thread_handoffs()
        asyncio.run(_serve_until_signal(config, feed))
    except HealthListenError as problem:
        return _fail(str(problem), EXIT_FAILURE)
    except RecoveryError as problem:
        return _fail(f"cannot recover the stored state: {problem}", EXIT_FAILURE)
    except OSError as problem:
        return _fail(f"cannot listen on {args.host}:{args.port}: {problem.strerror}", EXIT_FAILURE)
    finally:
        if held is not None:
            held.close()
    return 0


def _tls_flag_problem(args: argparse.Namespace) -> str | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together"
    if args.tls_client_ca is not None and args.tls_cert is None:
        return "--tls-client-ca needs --tls-cert and --tls-key"
    if args.tls_client_name is not None and args.tls_client_ca is None:
        return "--tls-client-name needs --tls-client-ca"
    return None


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        return None
    return server_context(
        TlsSettings(args.tls_cert, args.tls_key, args.tls_client_ca, args.tls_client_name)
    )


def _feed_text(path: Path | None, data_dir: Path, durability: Durability) -> str:
    """The feed to serve: --feed; else the one the data dir recorded; else a new demo feed.

    The demo feed moves with the clock, so a restart on a data dir serves the feed
    its stored leases and bookings were made on.
    """
    if path is not None:
        return path.read_text(encoding="utf-8")
    recorded = None if durability is Durability.NONE else recorded_feed(data_dir)
    if recorded is not None:
        print(f"leasehold: serving the feed recorded in {data_dir} (give --feed to change it)")
        return recorded
    return json.dumps(demo_feed(int(time.time())))


async def _serve_until_signal(config: ServeConfig, feed: Feed) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(ready: Ready) -> None:
        for line in _recovery_lines(ready.router.shard_set.recovery):
            print(line, flush=True)
        if config.health is not None and ready.health_port is not None:
            # Before the serving line: once that is seen, this one has been too.
            url = _health_url(config.health.host, ready.health_port)
            print(f"leasehold: health stream on {url}", flush=True)
        merchants = len({s.key.merchant_id for s in feed.slots})
        print(
            f"leasehold: serving {len(feed.slots)} slots of {merchants} merchants "
            f"on {ready.host}:{ready.port} with {config.shard_count} shards",
            flush=True,
        )

    await serve(config, stop, announce)
    print("leasehold: stopped", flush=True)


def _recovery_lines(reports: Sequence[RecoveryReport]) -> list[str]:
    if not reports:
        return []
    records = sum(r.records_replayed for r in reports)
    snapshots = sum(r.snapshot_seq is not None for r in reports)
    seconds = sum(r.seconds for r in reports)  # shards recover one after another
    lines = [
        f"leasehold: recovered {len(reports)} shards: {snapshots} snapshots, {records} journal "
        f"records replayed, in {seconds:.2f} s"
    ]
    lines += [f"leasehold: journal tail cut: {r.tail_repair}" for r in reports if r.tail_repair]
    return lines


def _health_url(host: str, port: int) -> str:
    return f"ws://[{host}]:{port}/" if ":" in host else f"ws://{host}:{port}/"


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
