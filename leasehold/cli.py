"""The `leasehold` command: `serve`, `watch`, `dashboard`, `slots`, `feed demo|apply|diff`,
`inventory`, `bench`.

Errors a user can cause (a missing or bad feed, a busy port, bad flags) end
with one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from leasehold import health
from leasehold._announce import health_url
from leasehold._exits import EXIT_FAILURE, EXIT_USAGE, fail
from leasehold._flags import build_parser
from leasehold.core import (
    demo_feed,
)
from leasehold.health import DEFAULT_PORT as DEFAULT_HEALTH_PORT


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
    parser = build_parser()
    args = parser.parse_args(argv)
    # Each subcommand imports its own modules when chosen: `serve`'s supervisor holds
    # no gRPC client, `feed demo` loads no server.
    if args.command == "feed" and args.feed_command != "demo":
        from leasehold._feed_cmd import feed_main

        return feed_main(args)
    if args.command == "inventory":
        from leasehold._feed_cmd import inventory_main

        return inventory_main(args)
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
        from leasehold._slots import SlotsError, slots_main

        try:
            return slots_main(args)
        except SlotsError as problem:
            return fail(str(problem), EXIT_FAILURE)
    from leasehold._serve_cmd import serve_command

    return serve_command(parser, args)


def _bench(argv: list[str]) -> int:
    try:
        from leasehold.bench import main as bench_main
    except ImportError as missing:
        return fail(
            f"leasehold bench needs the bench extra ({missing}): pip install 'leasehold[bench]' "
            "(from a clone: pip install -e '.[bench]')",
            EXIT_FAILURE,
        )
    return bench_main(argv)


def _watch(args: argparse.Namespace) -> int:
    parts = urlsplit(args.url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        example = health_url("127.0.0.1", DEFAULT_HEALTH_PORT)
        return fail(
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
            return fail(f"cannot use the TLS files: {problem}", EXIT_USAGE)
    return watch_main(args.url, args.interval, args.token, context)


def _dashboard(url: str | None, open_it: bool) -> int:
    """Print the dashboard's path; with --open, open it (on `url` if given)."""
    import webbrowser
    from urllib.parse import urlencode

    path = Path(health.__file__).with_name("dashboard.html").resolve()
    if not path.is_file():
        return fail(f"the dashboard is missing from the package: {path}", EXIT_FAILURE)
    print(path)
    if open_it:
        page = path.as_uri() + (f"?{urlencode({'ws': url})}" if url else "")
        if not webbrowser.open(page):
            return fail(f"no browser to open; open {page} by hand", EXIT_FAILURE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
