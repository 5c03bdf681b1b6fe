"""A command the tests need from Debian: on PATH, or installed by the project's own script.

Never a skip: when the script cannot install it, the test fails saying what the script said.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def found_or_installed(command: str, script: Path, timeout_s: float) -> str:
    """The path of `command`, running `script` (apt-get, as root) first if it is missing."""
    found = shutil.which(command)
    if found is not None:
        return found
    try:
        result = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=timeout_s
        )
        said = f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    except subprocess.TimeoutExpired:
        said = f"no end after {timeout_s} s"
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"no {command} on PATH, and {script.name} could not install it: {said}")
    return found
