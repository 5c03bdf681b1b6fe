"""Connections that have not yet subscribed, held apart from the watchers.

Until its subscribe (and token) is checked a connection is anyone's: it gets one
of `limit` places of its own, for at most the handshake and subscribe timeouts, and
never one of the watchers' places. When those places are full a newcomer takes the
oldest one (that connection is dropped), so clients that connect and stay silent
cannot keep a real watcher, which subscribes within milliseconds, from getting in.
"""

from __future__ import annotations

import trio


class PendingGate:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the pending-connection limit must be at least 1")
        self._limit = limit
        # Invariant: at most `limit` entries, oldest first (dicts keep insertion order).
        self._pending: dict[trio.CancelScope, None] = {}
        # Connections dropped to make room for newer ones.
        self.evicted = 0

    @property
    def count(self) -> int:
        return len(self._pending)

    def admit(self, scope: trio.CancelScope) -> None:
        """Hold a place for the connection running in `scope`; evict the oldest if full."""
        if len(self._pending) >= self._limit:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            oldest.cancel()
            self.evicted += 1
        self._pending[scope] = None

    def release(self, scope: trio.CancelScope) -> None:
        """The connection subscribed or ended: its place is free (no-op if evicted)."""
        self._pending.pop(scope, None)
