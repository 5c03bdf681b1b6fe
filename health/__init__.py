"""The health stream: live per-shard figures over a websocket, and its two viewers.

Imports shards (for their statistics). `frames` is the protocol's one public
module: the typed frames with their msgpack encoding, which `watch`, the
dashboard (`dashboard.html`) and the bench read. The server side is `serve_health`.

Each name is imported when first asked for (PEP 562): the `leasehold` command's
parser reads the default port without the server's trio, websocket and Prometheus code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leasehold.health._config import DEFAULT_PORT, HealthConfig, HealthListenError
    from leasehold.health._server import HealthServer, serve_health

# Each public name: (the module that defines it, its name there), imported when first
# asked for.
_WHERE = {
    "DEFAULT_PORT": ("_config", "DEFAULT_PORT"),
    "HealthConfig": ("_config", "HealthConfig"),
    "HealthListenError": ("_config", "HealthListenError"),
    "HealthServer": ("_server", "HealthServer"),
    "serve_health": ("_server", "serve_health"),
}

__all__ = ["DEFAULT_PORT", "HealthConfig", "HealthListenError", "HealthServer", "serve_health"]

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, attribute = _WHERE[name]
        value = getattr(import_module(f"{__name__}.{module}"), attribute)
        globals()[name] = value  # asked once: later lookups are plain
        return value
