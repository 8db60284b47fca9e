"""Fakes for the elector: a Lease store with the API server's conditional writes, a clock.

`FakeLease` keeps one record and a resourceVersion that grows on every write,
and refuses a write made against an older version, as the API server does;
several electors over one `FakeLease` compete as replicas do. `FakeClock`
moves only when a test moves it.
"""

from __future__ import annotations

import datetime

import attrs

from mandrill.domain.errors import TransientError
from mandrill.domain.leadership import LeaseRecord, Versioned

EPOCH = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


@attrs.define
class FakeClock:
    t: float = 1000.0
    """Monotonic seconds."""
    skew: float = 0.0
    """Seconds this machine's wall clock is off by (never used to decide)."""
    draw: float = 0.5

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime.datetime:
        return EPOCH + datetime.timedelta(seconds=self.t + self.skew)

    def random(self) -> float:
        return self.draw

    async def sleep(self, seconds: float) -> None:
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


@attrs.define
class FakeLease:
    current: Versioned | None = None
    revision: int = 0
    down: bool = False
    """While true, every call fails as an unreachable API server would."""
    writes: list[LeaseRecord] = attrs.Factory(list)
    """Every record written, in order."""

    def _stamp(self, record: LeaseRecord) -> Versioned:
        self.revision += 1
        self.current = Versioned(record=record, version=str(self.revision), uid="lease-uid")
        self.writes.append(record)
        return self.current

    def _reachable(self) -> None:
        if self.down:
            raise TransientError("connection refused")

    async def get(self) -> Versioned | None:
        self._reachable()
        return self.current

    async def create(self, record: LeaseRecord) -> Versioned | None:
        self._reachable()
        if self.current is not None:
            return None
        return self._stamp(record)

    async def update(self, record: LeaseRecord, *, version: str) -> Versioned | None:
        self._reachable()
        if self.current is None or self.current.version != version:
            return None
        return self._stamp(record)

    def overwrite(self, record: LeaseRecord) -> None:
        """Someone else writes the Lease (another process, or a person)."""
        self._stamp(record)

    @property
    def holder(self) -> str:
        return self.current.record.holder if self.current is not None else ""
