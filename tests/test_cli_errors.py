"""Every error a user can cause is one line on stderr and an exit code: 2 usage, 1 failure."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _server_process import leasehold_executable, running_server

from leasehold import __version__
from leasehold._flags import build_parser as _parser

pytestmark = pytest.mark.timeout(60)


def leasehold(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [leasehold_executable(), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=45,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("leasehold: error: "), result.stderr
    return result.stderr


def test_a_feed_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"x": "caf\u00e9"}'.encode("latin-1"))
    result = leasehold("serve", "--feed", str(bad), "--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "is not UTF-8 text (byte 0xe9 at offset 10)" in one_error_line(result)


@pytest.mark.parametrize("url", ["notaurl", "http://127.0.0.1:50052/", "ws://"])
def test_watch_refuses_what_is_not_a_ws_url_in_one_line(url: str) -> None:
    result = leasehold("watch", url)
    assert result.returncode == 2
    assert f"{url!r} is not a health stream URL" in one_error_line(result)


def test_bench_without_its_extra_says_what_to_install() -> None:
    # Hide the bench extra's modules from the import system, as if not installed.
    script = (
        "import sys; sys.modules['grpc'] = sys.modules['hdrh'] = None\n"
        "from leasehold.cli import main\n"
        "sys.exit(main(['bench', '--help']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=45, check=False
    )
    assert result.returncode == 1
    assert "needs the bench extra" in one_error_line(result)
    assert "pip install" in result.stderr


def into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has already left (as `| head` does, at once)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [leasehold_executable(), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=45,
            check=False,
        )
    finally:
        os.close(write_end)


def test_feed_demo_into_a_closed_pipe_is_quiet() -> None:
    done = into_a_closed_pipe("feed", "demo")
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.timeout(90)
def test_watch_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        url = server.health_url()
        assert url is not None
        done = into_a_closed_pipe("watch", url, "--interval", "0.1")
    assert (done.returncode, done.stderr) == (1, "")


def test_version() -> None:
    result = leasehold("--version")
    assert result.returncode == 0
    assert result.stdout == f"leasehold {__version__}\n"


def serve_options() -> list[argparse.Action]:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in commands.choices["serve"]._actions if a.option_strings != ["-h", "--help"]]


def test_serve_help_explains_every_flag_and_shows_every_default() -> None:
    shown = " ".join(leasehold("serve", "--help").stdout.split())
    for action in serve_options():
        assert action.help, f"{action.option_strings} has no help"
        if action.default is not None:
            assert f"(default: {action.default})" in shown, action.option_strings


@pytest.mark.timeout(90)
def test_no_serving_line_before_a_start_that_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data):
        pass  # the dir now has a recorded feed
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = leasehold("serve", "--data-dir", str(data), "--port", port, "--health-port", "0")
    assert busy.returncode == 1
    assert "serving" not in busy.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(busy)


@pytest.mark.timeout(90)
def test_a_locked_data_dir_is_one_line_and_no_serving_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data):
        pass
    with running_server(data):
        second = leasehold("serve", "--data-dir", str(data), "--port", "0")
    assert second.returncode == 2
    assert "serving" not in second.stdout
    assert f"cannot use --data-dir {data}" in one_error_line(second)
