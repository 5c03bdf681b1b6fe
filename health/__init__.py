"""The health stream: live per-shard figures over a websocket, and its two viewers.

Imports shards (for their statistics). `frames` is the protocol's one public
module: the typed frames with their msgpack encoding, which `watch`, the
dashboard (`dashboard.html`) and the bench read. The server side is `serve_health`.
"""

from leasehold.health._server import (
    DEFAULT_PORT,
    HealthConfig,
    HealthListenError,
    HealthServer,
    serve_health,
)

__all__ = ["DEFAULT_PORT", "HealthConfig", "HealthListenError", "HealthServer", "serve_health"]
