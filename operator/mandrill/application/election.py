"""The elector: one process in a set acts on a Lease, the others wait for it to run out.

Why our own and not kubernetes_asyncio.leaderelection: that module stamps the
record with naive local time, judges a holder's expiry by its own duration
setting instead of the Lease's, never applies jitter, and cannot release the
Lease on shutdown. The rules here are client-go's (see mandrill.domain.
leadership); this module is the loop around them:

- **Campaign.** A candidate reads the Lease every retry period (jittered
  downwards, and never later than the moment the holder's claim runs out, so
  a dead leader is replaced within lease + retry). It takes a free Lease with
  an update conditional on the resourceVersion it read (or by creating it),
  so of two candidates one wins and the other sees a conflict.
- **Lead.** The leader renews every retry period, conditional on the version
  of its own last write; a conflict means someone else wrote, and a read
  tells who. `holds()` is the fence every write of the services asks, at the
  last moment before it is sent (adapters.kube.fence): it is true only until
  the renew deadline after the start of the last successful renewal, by the
  monotonic clock, whatever any task believes. A process frozen (SIGSTOP, a
  stalled VM) past that moment finds, the instant it runs again, that it is
  no leader, before its next write goes out.
- **Lose.** Past the deadline, or on seeing another holder, leadership is
  lost for good: `on_lost` runs once (in production the process exits
  non-zero at once, so its pod restarts as a standby; kube-controller-manager
  and controller-runtime do the same) and `holds()` never says yes again.
- **Release.** After the drain, `release` closes the fence first, then
  writes an empty holder, so a standby takes over at its next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import attrs

from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.leadership import (
    LeaseRecord,
    NotLeader,
    Observation,
    Timing,
    Versioned,
    claim,
    released,
)

log = logging.getLogger(__name__)

Change = Literal["acquired", "lost", "released"]


class LeaseStore(Protocol):
    """One Lease on the API server; every write is conditional."""

    async def get(self) -> Versioned | None:
        """The Lease now; None if there is none."""

    async def create(self, record: LeaseRecord) -> Versioned | None:
        """Create the Lease; None if it exists already (someone was first)."""

    async def update(self, record: LeaseRecord, *, version: str) -> Versioned | None:
        """Replace the Lease's record if its resourceVersion is still `version`; None if not."""


class Clock(Protocol):
    """Every source of time and chance the elector has: tests drive a fake one."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps and runs while the process is frozen."""

    def now(self) -> datetime.datetime:
        """Wall-clock time, aware: only written to the Lease, never decided by."""

    def random(self) -> float:
        """A draw in [0, 1), for the jitter."""

    async def sleep(self, seconds: float) -> None: ...


class Leadership(Protocol):
    """What the services and the handlers ask: act or not."""

    acquired: asyncio.Event
    """Set once this process has become the leader."""

    def holds(self) -> bool:
        """Whether this process may act right now."""

    def check(self, what: str) -> None:
        """Raise NotLeader naming `what` unless `holds()`."""


@attrs.define
class AlwaysLeading:
    """Leadership without an election (one replica): always acting."""

    acquired: asyncio.Event = attrs.Factory(asyncio.Event)

    def __attrs_post_init__(self) -> None:
        self.acquired.set()

    def holds(self) -> bool:
        return True

    def check(self, what: str) -> None:
        return None


def _ignore(_: Change) -> None:
    return None


@attrs.define
class Elector:
    store: LeaseStore
    clock: Clock
    identity: str
    timing: Timing = attrs.Factory(Timing)
    on_started: Callable[[], None] = lambda: None
    """Called once, on becoming the leader: start the services (never blocks)."""
    on_lost: Callable[[str], None] = lambda _: None
    """Called once, with the reason, when leadership is lost (not released)."""
    on_change: Callable[[Change], None] = _ignore
    """Metrics: acquired, lost, released."""
    describe: str = "the Lease"
    """How log lines name the Lease (namespace/name)."""
    acquired: asyncio.Event = attrs.Factory(asyncio.Event)
    observation: Observation = attrs.Factory(Observation)
    _leading: bool = False
    _valid_until: float = 0.0
    """Monotonic seconds after which this leader must not act (renew start + deadline)."""
    _lost: bool = False
    _task: asyncio.Task[None] | None = None

    # -- the fence ------------------------------------------------------------

    def holds(self) -> bool:
        """Whether this process is the leader right now, by the monotonic clock.

        A leader found past its renew deadline loses leadership here and then,
        whichever task asks first: the fence does not wait for the loop."""
        if not self._leading:
            return False
        if self.clock.monotonic() < self._valid_until:
            return True
        self._lose(f"not renewed within the renew deadline ({self.timing.renew_deadline:g} s)")
        return False

    def check(self, what: str) -> None:
        if not self.holds():
            raise NotLeader(f"{what}: this process does not hold {self.describe}")

    @property
    def lost(self) -> bool:
        return self._lost

    # -- the loop ---------------------------------------------------------------

    def start(self) -> None:
        """Campaign (then renew) in a task of its own, until `release`."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="leader-election")

    async def run(self) -> None:
        while not self._lost:
            wait = await self.step()
            if self._lost:
                return
            await self.clock.sleep(wait)

    async def step(self) -> float:
        """One try to acquire or renew; returns the seconds to wait before the next."""
        if self._lost or (self._leading and not self.holds()):
            return 0.0
        started = self.clock.monotonic()
        try:
            won = await self._try(started)
        except (TransientError, PermanentError) as e:
            log.warning("leader election: %s not read or written: %s", self.describe, e)
            won = False
        except Exception:  # the loop must outlive any one odd answer; the deadlines decide
            log.exception("leader election: unexpected error with %s", self.describe)
            won = False
        if self._lost:
            return 0.0
        if won:
            # Only a write that started in time counts: a step frozen in flight ends late.
            if self._leading:
                if self.holds():
                    self._valid_until = started + self.timing.renew_deadline
            elif self.clock.monotonic() < started + self.timing.renew_deadline:
                self._valid_until = started + self.timing.renew_deadline
                self._become_leader()
            else:
                return 0.0  # taken too late to trust: renew at once, then lead
            return self.timing.retry_period
        if self._leading:
            self.holds()  # past the deadline now? then lost
            return self.timing.retry_period
        return self._candidate_wait()

    async def _renew(self, started: float) -> bool:
        """The leader's fast path: renew against its own last write, with no read first."""
        obs = self.observation
        if not self._leading or obs.record is None or obs.version is None:
            return False
        written = await self.store.update(self._claim(obs.record), version=obs.version)
        if written is None:
            return False  # someone else wrote: the slow path reads who
        obs.see(written, at=started)
        return True

    async def _try(self, started: float) -> bool:
        """Renew, or read the Lease and take it if it is free; True if we hold it now."""
        if await self._renew(started):
            return True
        current = await self.store.get()
        seen = self.clock.monotonic()
        if current is None:
            written = await self.store.create(self._claim(None))
        else:
            self.observation.see(current, at=seen)
            theirs = current.record
            if theirs.held and theirs.holder != self.identity:
                if self._leading:
                    self._lose(f"{self.describe} is held by {theirs.holder} now")
                    return False
                if not self.observation.free(seen):
                    return False
            written = await self.store.update(self._claim(theirs), version=current.version)
        if written is None:
            return False  # another candidate was first
        self.observation.see(written, at=started)
        return True

    def _claim(self, observed: LeaseRecord | None) -> LeaseRecord:
        return claim(
            observed,
            identity=self.identity,
            now=self.clock.now(),
            lease_duration=self.timing.lease_duration,
        )

    def _candidate_wait(self) -> float:
        """Jittered, and never past the moment the holder's claim runs out."""
        wait = self.timing.candidate_wait(self.clock.random())
        until_free = self.observation.expires_at() - self.clock.monotonic()
        if 0 < until_free < wait:
            return until_free + 0.005
        return wait

    def _become_leader(self) -> None:
        self._leading = True
        self.acquired.set()
        log.info("leader election: acquired %s as %s", self.describe, self.identity)
        self.on_change("acquired")
        self.on_started()

    def _lose(self, why: str) -> None:
        if self._lost:
            return
        self._lost, self._leading = True, False
        log.error("leader election: lost %s (%s): this process stops acting", self.describe, why)
        self.on_change("lost")
        self.on_lost(why)

    # -- shutdown -----------------------------------------------------------------

    async def release(self) -> bool:
        """Stop campaigning; if leading, give the Lease up (after the drain). True if released."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.holds():
            return False
        self._leading = False  # the fence closes before anyone else may take over
        obs = self.observation
        assert obs.record is not None
        assert obs.version is not None
        record = released(obs.record, now=self.clock.now())
        try:
            written = await self.store.update(record, version=obs.version)
            if written is None:  # someone wrote since our last renewal: is it still ours?
                current = await self.store.get()
                if current is not None and current.record.holder == self.identity:
                    written = await self.store.update(record, version=current.version)
        except (TransientError, PermanentError) as e:
            log.warning("leader election: %s not released: %s", self.describe, e)
            return False
        if written is None:
            return False
        obs.see(written, at=self.clock.monotonic())
        log.info("leader election: released %s", self.describe)
        self.on_change("released")
        return True


async def until_leading(leadership: Leadership, stopped: Callable[[], Awaitable[object]]) -> bool:
    """Wait until `leadership` is acquired or `stopped()` returns; True if leading."""
    if leadership.holds():
        return True
    lead = asyncio.ensure_future(leadership.acquired.wait())
    stop = asyncio.ensure_future(stopped())
    try:
        await asyncio.wait({lead, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lead.cancel()
        stop.cancel()
    return leadership.holds()
