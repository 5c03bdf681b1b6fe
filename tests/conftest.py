"""Shared test setup: tests import their helpers (`_api`, `_gateway_harness`) from here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
