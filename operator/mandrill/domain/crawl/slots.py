"""A bound on the crawls one operator runs at once, handed out oldest first.

Every unfinished in-process CrawlJob has a daemon, and fifty jobs applied
together would be fifty crawls in one process: memory, sockets and the event
loop all go with them. So a crawl first takes one of `limit` slots
(MANDRILL_MAX_CRAWLS; 0 means no limit). Crawls wait in a queue ordered by
their job's creationTimestamp, then namespace and name: when a slot frees it
goes straight to the oldest waiter (handed over, never put back for whoever
asks next), and slots are handed out a turn of the event loop after a crawl
asks, so daemons woken together (a new leader's) are served oldest first
rather than in the order they happened to run.

A slot is released on every way out of `held`: the crawl's end, an error,
a cancellation (deletion, shutdown). A waiter cancelled before its turn
takes nothing and costs no other waiter its turn; one cancelled just as its
slot was handed over passes the slot on to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs

Order = tuple[str, str, str]
"""(creationTimestamp, namespace, name): RFC 3339 UTC timestamps sort as text."""


@attrs.frozen
class Usage:
    """What a waiting crawl is told: slots in use out of the limit."""

    in_use: int
    limit: int

    @property
    def message(self) -> str:
        return (
            f"waiting for a crawl slot: {self.in_use} of {self.limit} in use (MANDRILL_MAX_CRAWLS)"
        )


def _ignore(running: int, queued: int) -> None:
    return None


@attrs.define(eq=False)
class _Waiter:
    order: Order
    seq: int
    granted: asyncio.Future[None]

    def __lt__(self, other: _Waiter) -> bool:
        return (self.order, self.seq) < (other.order, other.seq)


@attrs.define
class CrawlSlots:
    """`limit` crawl slots (0: unlimited) and the queue of crawls waiting for one."""

    limit: int
    """Crawls at once; 0 means no limit."""
    observe: Callable[[int, int], None] = _ignore
    """Told (running, queued) after every change: the metrics' gauges."""
    _in_use: int = 0
    _heap: list[_Waiter] = attrs.Factory(list)
    _seq: itertools.count[int] = attrs.Factory(itertools.count)
    _dispatching: bool = False

    def __attrs_post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"limit {self.limit} is negative (0 means no limit)")

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def queued(self) -> int:
        return len(self._heap)

    def _changed(self) -> None:
        self.observe(self._in_use, self.queued)

    @contextlib.asynccontextmanager
    async def held(
        self,
        order: Order,
        *,
        on_queued: Callable[[Usage], Awaitable[None]] | None = None,
    ) -> AsyncIterator[None]:
        """Hold a slot for the body; wait oldest first when there is none.

        `on_queued` is awaited once if the crawl must wait (to say so in its
        status); the slot may be handed over meanwhile, and is taken then.
        """
        await self._acquire(order, on_queued)
        try:
            yield
        finally:
            self._release()

    async def _acquire(
        self, order: Order, on_queued: Callable[[Usage], Awaitable[None]] | None
    ) -> None:
        if self.limit == 0:
            self._in_use += 1
            self._changed()
            return
        waiter = _Waiter(order, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._heap, waiter)
        self._dispatch_soon()
        try:
            # One turn of the loop before anyone is served: daemons woken together (a
            # new leader's) line up first, so the oldest of them goes first.
            await asyncio.sleep(0)
            if not waiter.granted.done():
                if on_queued is not None:
                    await on_queued(Usage(in_use=self._in_use, limit=self.limit))
                await waiter.granted
        except BaseException:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._release()  # handed over just as we left: pass it on
            else:
                waiter.granted.cancel()
                self._heap.remove(waiter)
                heapq.heapify(self._heap)
                self._changed()
            raise

    def _dispatch_soon(self) -> None:
        if not self._dispatching:
            self._dispatching = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Free slots to the oldest waiters (every waiter in the heap is still waiting:
        a cancelled one takes itself out)."""
        self._dispatching = False
        while self._heap and self._in_use < self.limit:
            heapq.heappop(self._heap).granted.set_result(None)
            self._in_use += 1
        self._changed()

    def _release(self) -> None:
        """Give the slot back; it goes to the oldest waiter at once, if any."""
        self._in_use -= 1
        if self.limit == 0:
            self._changed()
        else:
            self._dispatch()
