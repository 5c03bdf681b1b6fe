"""docs/inventory.md's worked example runs as written against a live server, and prints
what the page says it prints.

Its ```sh blocks that call `leasehold feed` or `leasehold inventory` run in one bash, in
document order, with the default admin address 127.0.0.1:50053 replaced by the test
server's (tests use no fixed port); their output must equal the page's ```text block.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _server_process import running_server
from test_doc_examples import ROOT, blocks, workdir
from test_e2e_inventory import admin_target

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PAGE = ROOT / "docs" / "inventory.md"
DEFAULT_ADMIN = "127.0.0.1:50053"


def admin_script() -> str:
    return "\n".join(
        b for b in blocks(PAGE, "sh") if "leasehold feed " in b or "leasehold inventory" in b
    )


def test_the_worked_example_runs_and_prints_what_the_page_shows(tmp_path: Path) -> None:
    script = admin_script()
    assert DEFAULT_ADMIN in script
    (shown,) = blocks(PAGE, "text")
    work = workdir(tmp_path)
    with running_server(work / "data") as server:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(DEFAULT_ADMIN, admin_target(server))],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == shown
