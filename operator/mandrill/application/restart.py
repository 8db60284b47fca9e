"""RestartRequests, from the moment the operator sees one to its acknowledgement.

This is the one entry point: the kopf handler hands every event's body to
`RestartService.observe` and returns at once, and the periodic resync hands it
every request the API server lists. What happens next is decided here, once:

- **Fair and bounded.** Unacknowledged requests wait in a queue ordered by
  creation time (then arrival), and at most `max_in_flight` are worked on at
  once, so under a burst the first requests finish first instead of a
  thousand handlers sharing the CPU and all finishing late. A request that
  only waits (for its replacements to be Ready) lends its slot out. Handing a
  request over never waits for another one: the next message is never
  blocked by one in flight.
- **Level-triggered.** `resync` lists every request the operator serves and
  queues each unacknowledged one that this process does not know, so a
  missed watch event or a dropped handler strands nothing; finished requests
  found there get their TTL and journal retry scheduled again.
- **Never a silent stall, never a hot loop.** A TransientError is retried
  with exponential backoff (after re-reading the request); an unexpected
  error is logged, counted, and retried a bounded number of times, then the
  request ends `Failed` with reason `InternalError` and a Warning Event. A
  retry waits as a task of its own, never occupying a slot, and events our
  own status patches cause are ignored while a request is queued, in flight
  or waiting: each request is handled by one path at a time.
- **Drain.** On shutdown nothing new starts; in-flight requests get the drain
  timeout, then are cancelled and hand back what is left (domain.restart.
  process), for the next instance to resume.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable

import attrs

from mandrill.application.fair_queue import FairQueue, Slot
from mandrill.application.restart_ports import Body, Entry, Ports, State
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.restart import process, status
from mandrill.domain.restart.models import InvalidSpec, RequestRef, RestartSpec

log = logging.getLogger(__name__)


def _created(body: Body) -> float:
    moment = timestamps.parse(body["metadata"].get("creationTimestamp"))
    return moment.timestamp() if moment is not None else time.time()


@attrs.define
class RestartService:
    ports: Ports
    max_in_flight: int = 64
    max_failures: int = 3
    """Unexpected errors a request may meet before it ends Failed (InternalError)."""
    first_backoff: float = 1.0
    max_backoff: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _entries: dict[str, Entry] = attrs.Factory(dict)
    """Requests queued, in flight or backing off, by UID."""
    _oldest: float | None = None
    """The smallest `created` of `_entries` (the observer's oldest-unacknowledged gauge)."""
    _handled: set[str] = attrs.Factory(set)
    """UIDs this process has seen through; events of our own earlier patches are ignored."""
    _finished_seen: set[str] = attrs.Factory(set)
    """Acknowledged requests whose TTL has been scheduled."""
    _queue: FairQueue = attrs.field(init=False)
    _running: set[asyncio.Task[None]] = attrs.Factory(set)
    _dispatcher: asyncio.Task[None] | None = None
    _draining: bool = False

    def __attrs_post_init__(self) -> None:
        self._queue = FairQueue(self.max_in_flight)

    # -- what the handler and the resync call -------------------------------

    def observe(self, body: Body) -> None:
        """Take note of a request as an event (or a listing) shows it; never blocks."""
        uid = body["metadata"]["uid"]
        st = body.get("status") or {}
        if status.is_acknowledged(st):
            self._finished(body)
            return
        if uid in self._handled or self._draining:
            return
        entry = self._entries.get(uid)
        if entry is not None:
            if entry.state is State.QUEUED:
                entry.body = body
            return
        entry = Entry(ref=RequestRef.from_body(body), body=body, created=_created(body))
        self._entries[uid] = entry
        if self._oldest is None or entry.created < self._oldest:
            self._oldest = entry.created
            self.ports.observer.oldest_unacknowledged(self._oldest)
        self._queue.push(uid, order=entry.created)
        self.ports.observer.queued(self.waiting)

    def wants(self, body: Body) -> bool:
        """Whether `observe(body)` would do anything: kopf's cheap filter, so the events
        our own patches cause never reach a handler (each invocation costs CPU and a
        log line). Finished requests are wanted once each, for their TTL and journal."""
        uid = body["metadata"]["uid"]
        st = body.get("status") or {}
        if not status.is_acknowledged(st):
            entry = self._entries.get(uid)
            return (
                not self._draining
                and uid not in self._handled
                and (entry is None or entry.state is State.QUEUED)
            )
        wanted = (body.get("spec") or {}).get("ttlSecondsAfterFinished") is not None
        return (wanted and uid not in self._finished_seen) or status.unsaved(st)

    def forget(self, uid: str) -> None:
        """The request was deleted: drop it if it still waits, and its background tasks."""
        self._handled.discard(uid)
        self._finished_seen.discard(uid)
        entry = self._entries.get(uid)
        if entry is not None and entry.state is not State.RUNNING:
            self._drop(uid)
        for key in (f"retry/{uid}", f"ttl/{uid}", f"journal/{uid}"):
            self.ports.tasks.cancel(key)

    async def resync(self) -> int:
        """Consume every unacknowledged request this process does not know; how many it found."""
        stranded = 0
        for body in await self.ports.requests.list_all():
            uid = body["metadata"]["uid"]
            acknowledged = status.is_acknowledged(body.get("status") or {})
            if not acknowledged and uid not in self._entries and uid not in self._handled:
                stranded += 1
            self.observe(body)
        if stranded:
            log.warning("resync found %d unacknowledged request(s) not in hand", stranded)
        self.ports.observer.resynced(stranded)
        return stranded

    async def resync_every(self, interval: float) -> None:
        """Resync forever; a failed listing is logged and tried again next time."""
        while not self._draining:
            await self.sleep(interval)
            try:
                await self.resync()
            except (PermanentError, TransientError) as e:
                log.warning("resync failed, next in %.0f s: %s", interval, e)
            except Exception:  # the level-triggered safety net must not die of one odd object
                log.exception("resync failed unexpectedly, next in %.0f s", interval)
                self.ports.observer.internal_error()

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="restart-dispatcher")
            self._dispatcher.add_done_callback(_loud)

    def stop_taking(self) -> None:
        """Shutting down: start no new request (the next instance lists them all)."""
        self._draining = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 -- a budget, not a cancel scope
        """Start nothing new; give what runs `timeout` seconds, then cancel it (it hands back)."""
        self.stop_taking()
        if self._dispatcher is not None:
            await asyncio.wait([self._dispatcher])
        running = set(self._running)
        if running:
            log.info("draining %d in-flight request(s), %.0f s at most", len(running), timeout)
            _, late = await asyncio.wait(running, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("handing back %d request(s) still in flight", len(late))
                await asyncio.wait(late)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Requests queued for a slot (counted, not searched: this runs per dispatch)."""
        return len(self._queue)

    # -- the queue ----------------------------------------------------------

    async def _dispatch(self) -> None:
        def queued(uid: str) -> bool:
            entry = self._entries.get(uid)
            return entry is not None and entry.state is State.QUEUED

        while True:
            uid, slot = await self._queue.take(queued)
            entry = self._entries[uid]
            entry.state = State.RUNNING
            self.ports.observer.queued(self.waiting)
            task = asyncio.create_task(self._run(entry, slot), name=f"rr/{entry.ref.name}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, entry: Entry, slot: Slot) -> None:
        try:
            retry = await self._attempt(entry, slot)
        except asyncio.CancelledError:
            self._drop(entry.ref.uid)  # handed back: the next instance resumes it
            raise
        finally:
            slot.release()
        if retry is None:
            self._drop(entry.ref.uid)
            if not entry.gone:
                self._handled.add(entry.ref.uid)
            return
        entry.state, entry.reread = State.WAITING, True
        self.ports.tasks.spawn(f"retry/{entry.ref.uid}", lambda: self._requeue(entry, retry))

    async def _requeue(self, entry: Entry, delay: float) -> None:
        await self.sleep(delay)
        if self._draining:
            self._drop(entry.ref.uid)
            return
        entry.state = State.QUEUED
        self._queue.push(entry.ref.uid, order=entry.created)

    def _drop(self, uid: str) -> None:
        """No longer in hand (acknowledged, handed back or deleted); the oldest moves on.

        The minimum is searched again only when the oldest itself leaves, so a
        burst finishing oldest first costs one pass per request, not per event."""
        entry = self._entries.pop(uid, None)
        if entry is None or entry.created != self._oldest:
            return
        self._oldest = min((e.created for e in self._entries.values()), default=None)
        self.ports.observer.oldest_unacknowledged(self._oldest)

    def _backoff(self, entry: Entry) -> float:
        entry.backoff = min(self.max_backoff, entry.backoff * 2 or self.first_backoff)
        return entry.backoff

    # -- one attempt ----------------------------------------------------------

    async def _attempt(self, entry: Entry, slot: Slot) -> float | None:
        """Handle the request once; None when done with it, else seconds until a retry."""
        try:
            await self._once(entry, slot)
        except TransientError as e:
            delay = self._backoff(entry)
            log.warning("%s: will retry in %.0f s: %s", _name(entry), delay, e)
            return delay
        except PermanentError as e:
            if e.reason == "Gone":  # deleted meanwhile: nothing left to do or to remember
                entry.gone = True
            else:
                await self._fail_or_say(entry, e)
        except Exception as e:
            entry.failures += 1
            entry.last_error = _describe(e)
            self.ports.observer.internal_error()
            log.exception(
                "%s: unexpected error (%d of %d)", _name(entry), entry.failures, self.max_failures
            )
            if entry.failures <= self.max_failures + 1:
                return self._backoff(entry)
            # Even ending it Failed went wrong: say so where a person looks, and stop.
            self.ports.events(
                entry.body,
                "Warning",
                status.INTERNAL_ERROR,
                f"could not be handled nor marked Failed: {entry.last_error}",
            )
        return None

    async def _once(self, entry: Entry, slot: Slot) -> None:
        if entry.reread:
            entry.body = await self.ports.requests.read(entry.ref)
            entry.reread = False
            if status.is_acknowledged(entry.body.get("status") or {}):
                return
        if entry.failures >= self.max_failures:
            await self._give_up(entry)
        else:
            await self._consume(entry, slot)

    async def _consume(self, entry: Entry, slot: Slot) -> None:
        body = entry.body
        raw_spec, st = body.get("spec") or {}, body.get("status") or {}
        attempt = status.attempts(st) + 1
        if attempt == 1:
            self.ports.observer.consumed()
        ctx = self.ports.context(request=entry.ref, body=body, attempt=attempt, waiting=slot.lent)
        with self.ports.observer.handling():
            try:
                spec = RestartSpec.from_spec(raw_spec)
            except InvalidSpec as e:
                await process.reject(reason="InvalidSpec", message=str(e), ctx=ctx)
                self.ports.observer.acknowledged("Failed")
                return
            outcome = await process.consume(
                request=entry.ref,
                spec=spec,
                raw_spec=dict(raw_spec),
                prior=status.prior_plan(st, description=spec.describe_target()),
                ctx=ctx,
            )
        self.ports.observer.acknowledged(str(outcome.phase))
        for target in outcome.targets:
            self.ports.observer.restarted(str(spec.strategy), str(target.outcome))
        if spec.ttl_seconds_after_finished is not None:
            due = outcome.finished + datetime.timedelta(seconds=spec.ttl_seconds_after_finished)
            self.ports.schedule_ttl(entry.ref, due)

    async def _fail_or_say(self, entry: Entry, error: PermanentError) -> None:
        """End the request Failed with the error's reason (a 403 while waiting for Ready,
        say); if even that cannot be written (a 403 on the request itself), the Event
        and the log are where the reason shows."""
        log.warning("%s: %s: %s", _name(entry), error.reason, error.message)
        st = entry.body.get("status") or {}
        try:
            known = status.targets_of(st)
        except status.InvalidStatus:
            known = ()
        ctx = self.ports.context(
            request=entry.ref, body=entry.body, attempt=status.attempts(st) + 1, waiting=None
        )
        try:
            await process.reject(ctx=ctx, reason=error.reason, message=error.message, targets=known)
        except (PermanentError, TransientError) as e:
            log.warning("%s: not marked Failed either: %s", _name(entry), e)
            self.ports.events(
                entry.body, "Warning", error.reason, f"not carried out: {error.message}"
            )
            return
        self.ports.observer.acknowledged("Failed")

    async def _give_up(self, entry: Entry) -> None:
        """End the request Failed (InternalError) with the last error; acknowledged."""
        body = entry.body
        st = body.get("status") or {}
        try:
            known = status.targets_of(st)
        except status.InvalidStatus:
            known = ()
        message = f"gave up after {entry.failures} unexpected errors; last: {entry.last_error}"
        ctx = self.ports.context(
            request=entry.ref, body=body, attempt=status.attempts(st) + 1, waiting=None
        )
        await process.reject(ctx=ctx, reason=status.INTERNAL_ERROR, message=message, targets=known)
        self.ports.observer.acknowledged("Failed")

    def _finished(self, body: Body) -> None:
        """An acknowledged request: its TTL, and its journal write if that failed."""
        spec, st = body.get("spec") or {}, body.get("status") or {}
        ttl = spec.get("ttlSecondsAfterFinished")
        if ttl is not None:
            self._finished_seen.add(body["metadata"]["uid"])
            finished = timestamps.parse(st.get("finishedAt")) or timestamps.now()
            self.ports.schedule_ttl(
                RequestRef.from_body(body), finished + datetime.timedelta(seconds=ttl)
            )
        if status.unsaved(st):
            self.ports.save_later(body)


def _loud(task: asyncio.Task[None]) -> None:
    """The dispatcher never ends but by cancellation: anything else must be seen."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the RestartRequest dispatcher died", exc_info=task.exception())


def _describe(error: BaseException) -> str:
    """`Type: message` of the error itself, not of the TaskGroup that carried it."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


def _name(entry: Entry) -> str:
    return f"RestartRequest {entry.ref.namespace}/{entry.ref.name}"
