"""The gRPC face: grpclib services, request decoding, routing to shards, status mapping, CLI.

Imports core and shards. `_bridge` is the only module that knows both asyncio and trio.
"""

from gateway._server import Ready, ServeConfig, build_services, serve

__all__ = ["Ready", "ServeConfig", "build_services", "serve"]
