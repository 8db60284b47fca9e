"""Leader election on a Lease, the pure part: what to write, and when a claim has run out.

The rules are client-go's (tools/leaderelection), which every controller
mandrill is compared with runs on:

- **Expiry is judged from what this process saw, on its own clock.** A
  holder's claim runs out `leaseDurationSeconds` (the Lease's own value, not
  our setting) after the moment this process last saw the record *change*,
  measured on the local monotonic clock. The record's renewTime is another
  machine's wall clock and is never compared with ours, so clock skew between
  nodes cannot hand the Lease to two holders; a renewal we have not seen yet
  only makes us wait longer, never shorter.
- **A leader trusts its claim for less than the lease.** It acts only until
  `renew_deadline` after the *start* of its last successful renewal (the
  server accepted it later than that, and others start counting later
  still), so it stops before any candidate can judge the claim expired; the
  gap (5 s by default) covers a slow request and clocks that run at slightly
  different rates. Past that moment it must never act again: the process
  leaves, as kube-controller-manager and controller-runtime's manager do.
- **A released Lease is free at once**: an empty holder, as client-go's
  ReleaseOnCancel writes it, so a standby takes over at its next attempt
  instead of after a whole lease.

Times written to the Lease are microsecond RFC 3339 (Kubernetes' MicroTime),
for people reading `kubectl get lease -o yaml`; nothing here decides by them.
"""

from __future__ import annotations

import datetime

import attrs


class NotLeader(Exception):
    """A write was refused because this process does not hold the Lease (any more)."""


@attrs.frozen
class LeaseRecord:
    """A Lease's spec, as far as the election goes."""

    holder: str
    """holderIdentity; empty when released (or never held)."""
    lease_duration_seconds: int
    """How long the holder's claim lasts after each renewal, by the holder's own setting."""
    acquire_time: datetime.datetime | None = None
    renew_time: datetime.datetime | None = None
    transitions: int = 0
    """leaseTransitions: how many times the Lease changed hands."""

    @property
    def held(self) -> bool:
        return bool(self.holder)


@attrs.frozen
class Versioned:
    """A Lease as the API server returned it."""

    record: LeaseRecord
    version: str
    """Its resourceVersion: the next write is conditional on it."""
    uid: str = ""


@attrs.frozen
class Timing:
    """controller-runtime's defaults: lease 15 s, renew deadline 10 s, retry 2 s."""

    lease_duration: int = 15
    """Seconds a claim lasts after each renewal (written to the Lease)."""
    renew_deadline: float = 10.0
    """Seconds after the start of its last successful renewal that a leader stops acting."""
    retry_period: float = 2.0
    """Seconds between a leader's renewals, and the longest a candidate waits between tries."""
    jitter: float = 0.2
    """A candidate's wait is drawn from [retry * (1 - jitter), retry]: candidates started
    together spread out, and none ever waits longer than the retry period."""

    def __attrs_post_init__(self) -> None:
        problem = timing_problem(
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )
        if problem is not None:
            raise ValueError(problem)
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter {self.jitter} is not in [0, 1)")

    def candidate_wait(self, draw: float) -> float:
        """The wait before a candidate's next try, for a random `draw` in [0, 1)."""
        return self.retry_period * (1 - self.jitter * draw)


def timing_problem(
    *, lease_duration: float, renew_deadline: float, retry_period: float
) -> str | None:
    """What is wrong with these three together (client-go's checks), or None."""
    if retry_period <= 0:
        return "the retry period must be more than 0 s"
    if renew_deadline <= retry_period:
        return "the renew deadline must be longer than the retry period"
    if lease_duration <= renew_deadline:
        return "the lease duration must be longer than the renew deadline"
    return None


def claim(
    observed: LeaseRecord | None,
    *,
    identity: str,
    now: datetime.datetime,
    lease_duration: int,
) -> LeaseRecord:
    """The record to write to take the Lease, or to renew it when `identity` holds it."""
    if observed is not None and observed.holder == identity:
        return attrs.evolve(
            observed,
            lease_duration_seconds=lease_duration,
            renew_time=now,
            acquire_time=observed.acquire_time or now,
        )
    return LeaseRecord(
        holder=identity,
        lease_duration_seconds=lease_duration,
        acquire_time=now,
        renew_time=now,
        transitions=0 if observed is None else observed.transitions + 1,
    )


def released(observed: LeaseRecord, *, now: datetime.datetime) -> LeaseRecord:
    """The record that gives the Lease up: no holder, so the next candidate takes it at once.

    As client-go's ReleaseOnCancel: a one-second duration too, for readers that
    look at the duration and not at the holder."""
    return LeaseRecord(
        holder="",
        lease_duration_seconds=1,
        acquire_time=now,
        renew_time=now,
        transitions=observed.transitions,
    )


@attrs.define
class Observation:
    """The Lease as this process last saw it, and since when, by its own monotonic clock."""

    record: LeaseRecord | None = None
    version: str | None = None
    """The resourceVersion it was read or written with: the next write is conditional on it."""
    since: float = 0.0
    """Monotonic seconds when `record` was first seen as it is now."""
    uid: str = ""

    def see(self, lease: Versioned, *, at: float) -> None:
        """Take note of the Lease; the clock restarts only if the record changed."""
        if lease.record != self.record:
            self.record = lease.record
            self.since = at
        self.version, self.uid = lease.version, lease.uid or self.uid

    def expires_at(self) -> float:
        """Monotonic seconds when the holder's claim runs out, as this process judges it."""
        if self.record is None or not self.record.held:
            return self.since
        return self.since + self.record.lease_duration_seconds

    def free(self, at: float) -> bool:
        """Whether another process may take the Lease at monotonic time `at`."""
        return self.record is None or not self.record.held or at >= self.expires_at()
