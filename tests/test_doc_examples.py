"""The call examples in README.md and docs/*.md run as written against a live server.

Examples are found by their code fences: every ```sh block that calls grpcurl runs,
in document order, in one bash (as a user pasting them into one terminal would),
and every ```python block runs with this interpreter. The one change made to the
text: the default address 127.0.0.1:50051 becomes the test server's (tests use no
fixed port). The server runs as `leasehold serve` does on its defaults, from a
directory where `.venv` is this environment and `data` its data dir. Without a
real grpcurl on PATH, tests/grpcurl_shim.py stands in for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _server_process import running_server

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGET = "127.0.0.1:50051"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def grpcurl_script(path: Path) -> str:
    return "\n".join(b for b in blocks(path, "sh") if "grpcurl " in b)


def test_the_docs_have_the_examples_this_test_runs() -> None:
    assert "/CheckAvailability" in grpcurl_script(ROOT / "README.md")
    api = grpcurl_script(ROOT / "docs" / "api.md")
    for rpc in ("CheckAvailability", "BatchAvailabilityLookup", "CreateLease", "UpdateBooking"):
        assert f"/{rpc}" in api
    assert "$V0/CreateBooking" in api
    assert blocks(ROOT / "docs" / "api.md", "python")


def workdir(tmp_path: Path) -> Path:
    """A directory that looks like the README's checkout: .venv and ./data."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if shutil.which("grpcurl") is None:
        shim = bin_dir / "grpcurl"
        shim.write_text(f"#!{sys.executable}\n" + (ROOT / "tests/grpcurl_shim.py").read_text())
        shim.chmod(0o755)
    return tmp_path


def environment(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{work / 'bin'}{os.pathsep}{env['PATH']}"
    env["GRPCURL_SHIM_LOG"] = str(work / "calls.jsonl")
    env["PYTHONPATH"] = str(ROOT / "tests")  # the shim imports leasehold from the venv
    return env


def calls(work: Path) -> list[dict[str, object]]:
    log = work / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize(
    "document", [d for d in documents() if grpcurl_script(d)], ids=lambda p: p.name
)
def test_grpcurl_examples_run_as_written(tmp_path: Path, document: Path) -> None:
    script = grpcurl_script(document)
    work = workdir(tmp_path)
    with running_server(work / "data") as server:
        text = script.replace(DEFAULT_TARGET, server.target)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", text],
            cwd=work,
            env=environment(work),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    made = calls(work)
    if shutil.which("grpcurl") is None:  # the shim saw every call: check each answer
        # Calls are written `g $V2/Method ...` or as a grpcurl command line of their own.
        lines = script.splitlines()
        assert len(made) == script.count("g $V") + sum(x.startswith("grpcurl ") for x in lines)
        for call in made:
            assert call["error"] is None, call
            assert "bookingFailure" not in json.dumps(call["answer"]), call


@pytest.mark.parametrize(
    "document", [d for d in documents() if blocks(d, "python")], ids=lambda p: p.name
)
def test_python_examples_run_as_written(tmp_path: Path, document: Path) -> None:
    examples = blocks(document, "python")
    work = workdir(tmp_path)
    with running_server(work / "data") as server:
        for example in examples:
            done = subprocess.run(
                [sys.executable, "-c", example.replace(DEFAULT_TARGET, server.target)],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
