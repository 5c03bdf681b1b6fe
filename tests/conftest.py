"""Shared test setup: tests import their helpers (`_api`, `_gateway_harness`) from here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

# Before anything imports core: its value types keep their runtime guard against
# assignment in tests (core/_frozen.py; test_core_frozen checks this took effect).
os.environ["LEASEHOLD_CHECK_FROZEN"] = "1"

sys.path.insert(0, str(Path(__file__).parent))

# A trio test that times out must not break the trio tests after it (_trio_timeout.py).
pytest_plugins = ["_trio_timeout"]

# `pytest --hypothesis-profile=explore tests/test_core_model_based.py`: new random
# examples, thousands of them (CI runs a fixed, derandomized set; docs/testing.md).
EXPLORE_PROFILE = "explore"
settings.register_profile(
    EXPLORE_PROFILE,
    max_examples=int(os.environ.get("LEASEHOLD_EXPLORE_EXAMPLES", "3000")),
    stateful_step_count=60,
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# `python -m tests.mutants` runs with this one: the first failure is the verdict, so
# shrinking it (minutes for a stateful test) is skipped.
MUTANTS_PROFILE = "mutants"
settings.register_profile(
    MUTANTS_PROFILE, phases=(Phase.explicit, Phase.reuse, Phase.generate), print_blob=False
)
