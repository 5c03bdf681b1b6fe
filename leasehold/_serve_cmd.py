"""`leasehold serve`: from flags to a running server, and every failure as one line."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leasehold._exits import EXIT_FAILURE, EXIT_USAGE, fail
from leasehold._logging import configure as configure_logging
from leasehold._logging import event
from leasehold._serve_settings import AdminConfig, ServerFailed, admin_config, guard_limits
from leasehold._serve_settings import ssl_context as make_ssl_context
from leasehold._tree_run import TreeStart, run_tree
from leasehold.core import (
    NANOS_PER_SECOND,
    Feed,
    FeedError,
    LeaseSettings,
    demo_feed,
    parse_feed_json,
)
from leasehold.gateway import certificate_names
from leasehold.health import HealthConfig, HealthListenError
from leasehold.shards import (
    DataDirError,
    Durability,
    Persistence,
    lock,
    prepare,
    read_meta,
    recorded_feed,
)

# How long a start waits for the data dir's lock (a killed server's children exit
# a few milliseconds after it).
LOCK_WAIT_S = 2.0
# Open files the server holds besides gRPC connections: journals, snapshots, the health
# stream's watchers (up to 256 and its pending ones), listeners.
_FILES_BESIDES_CONNECTIONS = 1024


def serve_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.default_lease_ttl > args.max_lease_ttl:
        parser.error("--default-lease-ttl must not exceed --max-lease-ttl")
    tls_problem = _tls_flag_problem(args)
    if tls_problem:
        parser.error(tls_problem)
    files_problem = raise_open_file_limit(args.max_connections)
    if files_problem:
        return fail(files_problem, EXIT_USAGE)
    try:
        ssl_context = make_ssl_context(args)
    except (OSError, ssl.SSLError) as problem:
        return fail(f"cannot use the TLS files: {problem}", EXIT_USAGE)
    durability = Durability(args.durability)
    try:
        feed_text, change_text, recorded = _feed_texts(args.feed, args.data_dir, durability)
        feed = parse_feed_json(feed_text)
        change = None if change_text is None else parse_feed_json(change_text)
    except UnicodeDecodeError as problem:
        where, byte = args.feed or args.data_dir, problem.object[problem.start]
        reason = f"{where} is not UTF-8 text (byte {byte:#04x} at offset {problem.start})"
        return fail(f"cannot load the feed: {reason}", EXIT_USAGE)
    except (OSError, FeedError, DataDirError) as problem:
        return fail(f"cannot load the feed: {problem}", EXIT_USAGE)
    if not (feed if change is None else change).slots:
        return fail("the feed has no slots to serve", EXIT_USAGE)
    try:
        held = None
        if durability is not Durability.NONE:
            # Released when this process and the shard processes it starts (which share
            # it) have exited; waits a moment for those of a server killed just now.
            held = lock(args.data_dir, wait_s=LOCK_WAIT_S)
            processes = min(args.shard_processes, args.shards) if args.workers > 0 else 1
            prepare(
                args.data_dir,
                shard_count=args.shards,
                feed_text=feed_text,
                shard_processes=processes,
            )
    except (OSError, DataDirError) as problem:
        return fail(f"cannot use --data-dir {args.data_dir}: {problem}", EXIT_USAGE)
    health = HealthConfig(
        host=args.health_host,
        port=health_port_for(args.port, args.health_port),
        token=args.health_token,
        default_interval_s=args.health_interval,
        # wss:// with the gRPC port's certificate and client-certificate rule.
        ssl_context=ssl_context,
        client_cert_ok=_client_cert_check(args.tls_client_name),
    )
    admin = admin_config(args)
    configure_logging(args.log_format, args.log_level)
    if args.workers > 0:
        try:
            recorded_in = args.data_dir if recorded else None
            lock_fd = None if held is None else held.fileno()
            start = TreeStart(
                health,
                feed,
                feed_text,
                recorded_in,
                lock_fd,
                admin,
                change_text,
                change,
                args.feed if change is not None else None,
            )
            return run_tree(args, start)
        finally:
            if held is not None:
                held.close()
    try:
        return _serve_one_process(
            args, feed, change, recorded, ssl_context, durability, health, admin
        )
    finally:
        if held is not None:
            held.close()


def _serve_one_process(
    args: argparse.Namespace,
    feed: Feed,
    change: Feed | None,
    recorded: bool,
    ssl_context: ssl.SSLContext | None,
    durability: Durability,
    health: HealthConfig,
    admin: AdminConfig | None,
) -> int:
    """`--workers 0`: shards, health stream and gRPC in this process (asyncio with trio as
    its guest). Imported here, not at the top: the tree's supervisor runs none of it."""
    import asyncio

    from leasehold._app import ServeConfig
    from leasehold._run import serve_until_signal
    from leasehold.shards import RecoveryError
    from leasehold.tuning import tune_for_long_lived_state, tune_thread_handoffs

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
        health=health,
        limits=guard_limits(args),
        admin=admin,
        feed_change=None if change is None else change.slots,
    )
    try:
        tune_for_long_lived_state()
        tune_thread_handoffs()
        changed_by = args.feed if change is not None else None
        asyncio.run(
            serve_until_signal(config, feed, args.data_dir if recorded else None, changed_by)
        )
    except HealthListenError as problem:
        return fail(str(problem), EXIT_FAILURE)
    except RecoveryError as problem:
        return fail(f"cannot recover the stored state: {problem}", EXIT_FAILURE)
    except DataDirError as problem:
        return fail(f"cannot use --data-dir {args.data_dir}: {problem}", EXIT_FAILURE)
    except ServerFailed as problem:
        event(logging.ERROR, "server_failed", f"stopped: {problem}", reason=str(problem))
        return fail(f"stopped: {problem}", EXIT_FAILURE)
    except OSError as problem:
        return fail(f"cannot listen on {args.host}:{args.port}: {problem.strerror}", EXIT_FAILURE)
    return 0


def raise_open_file_limit(max_connections: int) -> str | None:
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


def _feed_texts(
    path: Path | None, data_dir: Path, durability: Durability
) -> tuple[str, str | None, bool]:
    """(the feed the state is built on, a feed to apply over it or None, whether the first
    is the one recorded in the data dir).

    A data dir with state keeps the feed it was built on (its journal was made on it);
    a different --feed is then applied over the recovered state as a whole-feed change
    (spec section 8). Else: --feed; else a new demo feed (which moves with the clock).
    """
    recorded = None if durability is Durability.NONE else recorded_feed(data_dir)
    has_state = recorded is not None and read_meta(data_dir) is not None
    if path is not None:
        text = path.read_text(encoding="utf-8")
        if has_state and recorded is not None:
            return recorded, text, True  # (the same feed too: live changes may differ)
        return text, None, False
    if recorded is not None:
        return recorded, None, True
    return json.dumps(demo_feed(int(time.time()))), None, False
