"""Shared test setup: tests import their helpers (`_api`, `_gateway_harness`) from here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports core: its value types keep their runtime guard against
# assignment in tests (core/_frozen.py; test_core_frozen checks this took effect).
os.environ["LEASEHOLD_CHECK_FROZEN"] = "1"

sys.path.insert(0, str(Path(__file__).parent))
