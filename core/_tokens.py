"""A shard's bounded memory of v2 idempotency tokens: the response each one got."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from leasehold.core._model import Booking

TokenKey = tuple[str, str, str]  # (merchant_id, service_id, token)


class TokenMemory:
    """Each token's original response, up to `capacity` tokens, the oldest forgotten first.

    The order is a deque beside the dict: not `next(iter(dict))`, which walks past the
    holes that deleting a dict's first keys leaves (time growing with the tokens
    forgotten), and not an OrderedDict, whose linked nodes cost more per token.
    """

    __slots__ = ("_capacity", "_order", "_responses", "response")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        # Invariant: len(_responses) <= _capacity.
        self._responses: dict[TokenKey, Booking] = {}
        # Invariant: the keys of _responses, in the order they were first remembered.
        self._order: deque[TokenKey] = deque()
        # The response remembered for a token, or None: the dict's own lookup, so that
        # every v2 booking's replay check costs no Python call.
        self.response: Callable[[TokenKey], Booking | None] = self._responses.get

    def __len__(self) -> int:
        return len(self._responses)

    def remember(self, key: TokenKey, response: Booking) -> None:
        responses = self._responses
        known = len(responses)
        responses[key] = response
        if len(responses) != known:  # (a new key; a stored history never repeats one)
            order = self._order
            order.append(key)
            if known >= self._capacity:
                del responses[order.popleft()]

    def remember_all(self, remembered: Iterable[tuple[TokenKey, Booking]]) -> None:
        """`remember` each, in order, into an empty memory (a restore): in bulk when no
        key repeats (a stored memory never has one), else one by one."""
        items = list(remembered)
        responses = self._responses
        if responses:
            raise ValueError("remember_all needs an empty memory")
        responses.update(items)
        if len(responses) != len(items):
            responses.clear()
            for key, response in items:
                self.remember(key, response)
            return
        order = self._order
        order.extend(key for key, _ in items)
        while len(order) > self._capacity:
            del responses[order.popleft()]

    def items(self) -> list[tuple[TokenKey, Booking]]:
        """Every remembered token with its response, oldest first (a copy)."""
        return list(self._responses.items())
