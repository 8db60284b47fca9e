"""One registry for the operator's own background tasks, supervised and stopped in order.

Per-request work that outlives a handler (a TTL deletion due in an hour, a
journal write retried until the store is back, a retry after backoff) runs as
a task in a `TaskRegistry`, keyed so that scheduling the same thing twice
starts it once. A task that fails is never silent: its exception is logged
with its key and counted (`mandrill_background_task_failures_total`).
`close` cancels the tasks and waits for them, and `close_in_order` closes a
list of things so that one failing close never skips the ones after it
(controller-runtime's manager stops its runnables the same way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import attrs

log = logging.getLogger(__name__)

FailureCounter = Callable[[str], None]
"""Called with the registry's name when one of its tasks fails."""


def _ignore(_: str) -> None:
    return None


@attrs.define
class TaskRegistry:
    name: str
    on_failure: FailureCounter = _ignore
    _tasks: dict[str, asyncio.Task[None]] = attrs.Factory(dict)
    _closed: bool = False

    def spawn(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Start `work()` under `key` unless a task with that key still runs; False if so."""
        if self._closed:
            return False
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return False
        task = asyncio.create_task(work(), name=f"{self.name}/{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._finished(key, t))
        return True

    def cancel(self, key: str) -> None:
        """Cancel the task under `key`, if one runs (its object is gone)."""
        task = self._tasks.get(key)
        if task is not None and not task.done():
            task.cancel()

    def running(self, key: str) -> bool:
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def __len__(self) -> int:
        return sum(1 for t in self._tasks.values() if not t.done())

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("background task %s/%s failed", self.name, key, exc_info=error)
            self.on_failure(self.name)

    async def close(self) -> None:
        """Cancel every task and wait until all have ended; spawn does nothing afterwards."""
        self._closed = True
        tasks = [t for t in self._tasks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def close_in_order(closers: Iterable[tuple[str, Callable[[], Awaitable[None]]]]) -> None:
    """Run each close in turn; a failure is logged and the next one still runs."""
    for what, close in closers:
        try:
            await close()
        except Exception:
            log.exception("closing %s failed; closing the rest", what)
