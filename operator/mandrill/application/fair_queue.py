"""Oldest first, a bounded number at once: the order in which messages are consumed.

A watch delivers a burst of new objects all at once, and in no useful order
(a listing comes sorted by name). Started all at once, a thousand requests
share the CPU and the API server and all finish late; taken oldest first, a
few dozen at a time, the early ones finish early and the total is no worse.
A `Slot` is one of the places; whoever holds it may lend it out while it only
waits (for pods to turn Ready), so waiting never starves the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Callable

import attrs


@attrs.define
class Slot:
    """One of the queue's places; released once, whatever happens."""

    semaphore: asyncio.Semaphore
    held: bool = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.semaphore.release()

    @contextlib.asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """Give the place up for good while waiting: the holder never needs it back."""
        self.release()
        yield


@attrs.define
class FairQueue:
    limit: int
    _heap: list[tuple[float, int, str]] = attrs.Factory(list)
    _seq: itertools.count[int] = attrs.Factory(itertools.count)
    _wakeup: asyncio.Event = attrs.Factory(asyncio.Event)
    _slots: asyncio.Semaphore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.limit)

    def __len__(self) -> int:
        """Keys waiting (a key dropped as stale on `take` counts until then)."""
        return len(self._heap)

    def push(self, key: str, *, order: float) -> None:
        """Queue `key`; lower `order` (a creation time) goes first, ties by arrival."""
        heapq.heappush(self._heap, (order, next(self._seq), key))
        self._wakeup.set()

    async def take(self, wanted: Callable[[str], bool]) -> tuple[str, Slot]:
        """Wait for a free place and the oldest key still `wanted`; stale keys are dropped."""
        await self._slots.acquire()
        slot = Slot(self._slots)
        try:
            while True:
                while not self._heap:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                _, _, key = heapq.heappop(self._heap)
                if wanted(key):
                    return key, slot
        except BaseException:
            slot.release()
            raise
