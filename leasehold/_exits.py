"""What the `leasehold` command says when it fails, and its exit codes."""

from __future__ import annotations

import sys

EXIT_USAGE = 2
EXIT_FAILURE = 1


def fail(message: str, code: int) -> int:
    """Say `message` in one line on stderr; return `code` for the process to exit with."""
    print(f"leasehold: error: {message}", file=sys.stderr)
    return code
