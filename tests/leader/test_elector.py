"""The elector over a fake Lease and a fake clock: who leads, when a claim runs out, the fence.

Covers: a first candidate creates the Lease and leads; a second waits while
the leader renews and takes over within lease + retry of the leader's death,
never sooner than a lease after it last saw a renewal; expiry follows the
Lease's own duration and the monotonic clock, never the holder's wall clock;
candidates' waits are jittered within the retry period; of two racing
candidates one wins; a leader that cannot renew stops holding at its renew
deadline and loses for good; a Lease won by a write that came back after the
renew deadline is renewed before the process leads; an unexpected error
ends no campaign; a leader frozen past its lease refuses its next write
before anything is sent; a leader that sees another holder loses; a
released Lease is taken at the next try, with no lease to wait out.
"""

from __future__ import annotations

import asyncio
import datetime

import attrs
import pytest

from mandrill.application.election import AlwaysLeading, Elector, until_leading
from mandrill.domain.leadership import (
    LeaseRecord,
    NotLeader,
    Observation,
    Timing,
    Versioned,
    claim,
    released,
)
from tests.leader.fakes import EPOCH, FakeClock, FakeLease


@attrs.define
class Calls:
    started: int = 0
    started_at: float | None = None
    """The monotonic time of becoming the leader."""
    lost: list[str] = attrs.Factory(list)
    changes: list[str] = attrs.Factory(list)


def elector(
    lease: FakeLease, clock: FakeClock, identity: str, timing: Timing | None = None
) -> tuple[Elector, Calls]:
    calls = Calls()

    def started() -> None:
        calls.started += 1
        calls.started_at = clock.t

    e = Elector(
        store=lease,
        clock=clock,
        identity=identity,
        timing=timing or Timing(),
        on_started=started,
        on_lost=calls.lost.append,
        on_change=calls.changes.append,
    )
    return e, calls


async def test_first_candidate_creates_the_lease_and_leads() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, calls = elector(lease, clock, "a")

    wait = await a.step()

    assert a.holds()
    assert a.acquired.is_set()
    assert (calls.started, calls.changes) == (1, ["acquired"])
    assert wait == 2.0
    record = lease.current.record if lease.current else None
    assert record == LeaseRecord(
        holder="a",
        lease_duration_seconds=15,
        acquire_time=clock.now(),
        renew_time=clock.now(),
        transitions=0,
    )


async def test_leader_renews_keeping_its_acquire_time() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, calls = elector(lease, clock, "a")
    await a.step()
    acquired = clock.now()
    clock.advance(2)

    await a.step()

    assert lease.current is not None
    assert lease.current.record.acquire_time == acquired
    assert lease.current.record.renew_time == clock.now()
    assert calls.started == 1, "renewing is not becoming the leader again"


async def test_standby_waits_while_the_leader_renews() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, _ = elector(lease, clock, "a")
    b, b_calls = elector(lease, clock, "b")
    await a.step()
    for _ in range(30):  # a minute of renewals
        clock.advance(2)
        await a.step()
        await b.step()
        assert a.holds()
        assert not b.holds()
    assert b_calls.started == 0
    assert lease.holder == "a"


async def _simulate(
    actors: dict[str, Elector], clock: FakeClock, *, dies: dict[str, float], until: float
) -> None:
    """Step each elector when its wait is over, in time order, until `until`; an actor in
    `dies` steps no more from that moment (SIGKILL)."""
    due = dict.fromkeys(actors, clock.t)
    while True:
        alive = [n for n in actors if due[n] <= dies.get(n, float("inf"))]
        name = min(alive, key=lambda n: due[n])
        if due[name] > until:
            return
        clock.t = due[name]
        due[name] = clock.t + await actors[name].step()


@pytest.mark.parametrize("kill_after", [0.0, 0.3, 1.0, 1.9])
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.99])
async def test_standby_takes_over_within_lease_plus_retry_of_the_leaders_death(
    kill_after: float, draw: float
) -> None:
    lease, clock = FakeLease(), FakeClock(t=1000.0, draw=draw)
    a, _ = elector(lease, clock, "a")
    b, b_calls = elector(lease, clock, "b")
    last_renewal = 1020.0  # a leads from 1000 and renews every 2 s
    killed = last_renewal + kill_after

    await _simulate({"a": a, "b": b}, clock, dies={"a": killed}, until=killed + 30)

    assert lease.holder == "b"
    assert b_calls.started == 1
    taken = b_calls.started_at
    assert taken is not None
    assert taken - last_renewal >= 15, "never before a whole lease after the last renewal"
    assert taken - killed <= 15 + 2 + 0.01, "within lease + retry of the kill"
    assert lease.current is not None
    assert lease.current.record.transitions == 1


async def test_expiry_follows_the_leases_own_duration_not_ours() -> None:
    lease, clock = FakeLease(), FakeClock()
    lease.overwrite(
        LeaseRecord(holder="slow", lease_duration_seconds=60, renew_time=EPOCH, acquire_time=EPOCH)
    )
    b, calls = elector(lease, clock, "b")  # its own lease is 15 s
    first_seen = clock.t

    while not b.holds():
        clock.advance(await b.step())

    assert calls.started_at is not None
    assert 60 <= calls.started_at - first_seen <= 60.01


@pytest.mark.parametrize("renewed_at_year", [2000, 2100], ids=["past", "future"])
async def test_holders_wall_clock_decides_nothing(renewed_at_year: int) -> None:
    """A holder whose clock is decades off is judged only by when its record changes."""
    lease, clock = FakeLease(), FakeClock()
    far = EPOCH.replace(year=renewed_at_year)
    b, b_calls = elector(lease, clock, "b")
    for i in range(20):  # the holder renews every 2 s, with its own odd clock
        lease.overwrite(
            LeaseRecord(
                holder="skewed", lease_duration_seconds=15, renew_time=far.replace(second=i % 60)
            )
        )
        await b.step()
        clock.advance(2)
        assert not b.holds(), "a live holder's lease is never taken, however old its renewTime"
    stopped = clock.t
    while not b.holds():
        clock.advance(await b.step())
    assert b_calls.started_at is not None
    assert 13 <= b_calls.started_at - stopped <= 15.01, "a dead one: a lease after its last change"


def test_candidate_waits_are_jittered_within_the_retry_period() -> None:
    timing = Timing()
    waits = [timing.candidate_wait(d / 10) for d in range(10)]

    assert len(set(waits)) == 10
    assert min(waits) >= 1.6
    assert max(waits) <= 2.0


async def test_candidate_tries_again_right_when_the_claim_runs_out() -> None:
    lease, clock = FakeLease(), FakeClock(draw=0.0)
    lease.overwrite(LeaseRecord(holder="gone", lease_duration_seconds=15))
    b, _ = elector(lease, clock, "b")
    await b.step()
    clock.advance(14.5)

    wait = await b.step()

    assert 0.5 <= wait < 0.6, "0.5 s to the expiry, not the whole retry period"


async def test_of_two_racing_candidates_one_wins() -> None:
    lease, clock = FakeLease(), FakeClock()
    lease.overwrite(LeaseRecord(holder="", lease_duration_seconds=1))  # released
    a, _ = elector(lease, clock, "a")
    b, _ = elector(lease, clock, "b")
    stale = lease.current
    assert stale is not None
    await a.step()
    # b read the Lease before a's write landed: its update carries the old version
    assert (
        await lease.update(
            LeaseRecord(holder="b", lease_duration_seconds=15), version=stale.version
        )
        is None
    )

    await b.step()

    assert a.holds()
    assert not b.holds()
    assert lease.holder == "a"


async def test_leader_that_cannot_renew_stops_at_its_renew_deadline_for_good() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, calls = elector(lease, clock, "a")
    await a.step()
    last_renewal = clock.t
    lease.down = True
    while clock.t + 2 < last_renewal + 10:
        clock.advance(await a.step())
        assert a.holds(), "still within the renew deadline"
        assert calls.lost == []

    clock.t = last_renewal + 10
    assert not a.holds()
    assert len(calls.lost) == 1
    assert "renew deadline" in calls.lost[0]
    assert calls.changes == ["acquired", "lost"]
    lease.down = False
    await a.step()
    assert not a.holds(), "lost is lost: the process leaves, it never leads again"
    assert a.lost
    assert len(calls.lost) == 1


async def test_frozen_leader_refuses_its_next_write_before_sending_anything() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, a_calls = elector(lease, clock, "a")
    b, _ = elector(lease, clock, "b")
    await a.step()
    await b.step()
    clock.advance(20)  # a is SIGSTOPped; b keeps trying
    while not b.holds():
        clock.advance(await b.step())
    writes = len(lease.writes)

    # a wakes: an in-flight task asks the fence before its write
    with pytest.raises(NotLeader, match="does not hold"):
        a.check("DELETE /api/v1/namespaces/x/pods/y")
    await a.step()

    assert len(lease.writes) == writes, "the deposed leader wrote nothing, not even a renewal"
    assert len(a_calls.lost) == 1
    assert lease.holder == "b"


@attrs.define
class _FreezesDuringWrite(FakeLease):
    """The process freezes (`clock` jumps) while its first write is in flight."""

    clock: FakeClock = attrs.Factory(FakeClock)
    freeze: float = 0.0

    async def create(self, record: LeaseRecord) -> Versioned | None:
        made = await super().create(record)
        self.clock.advance(self.freeze)
        self.freeze = 0.0
        return made


async def test_lease_taken_too_late_to_trust_is_renewed_before_leading() -> None:
    clock = FakeClock()
    lease = _FreezesDuringWrite(clock=clock, freeze=12.0)
    a, calls = elector(lease, clock, "a")

    wait = await a.step()  # created, but the answer came 12 s later: past the deadline

    assert not a.holds()
    assert calls.started == 0
    assert calls.lost == []
    assert wait == 0.0
    await a.step()  # read: still ours; renewed in time
    assert a.holds()
    assert calls.started == 1


@attrs.define
class _GarbledOnce(FakeLease):
    garbled: bool = True

    async def get(self) -> Versioned | None:
        if self.garbled:
            self.garbled = False
            raise ValueError("not JSON")
        return await super().get()


async def test_an_unexpected_error_does_not_end_the_campaign() -> None:
    lease, clock = _GarbledOnce(), FakeClock()
    a, _ = elector(lease, clock, "a")

    with_error = await a.step()
    await a.step()

    assert with_error == 1.8, "a candidate's usual wait"
    assert a.holds()


async def test_leader_that_sees_another_holder_loses() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, calls = elector(lease, clock, "a")
    await a.step()
    lease.overwrite(LeaseRecord(holder="intruder", lease_duration_seconds=15))
    clock.advance(2)

    await a.step()

    assert not a.holds()
    assert calls.lost == ["the Lease is held by intruder now"]


async def test_release_frees_the_lease_for_the_next_try() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, a_calls = elector(lease, clock, "a")
    b, _ = elector(lease, clock, "b")
    await a.step()
    await b.step()
    clock.advance(2)
    await a.step()

    assert await a.release()

    assert not a.holds()
    assert a_calls.lost == [], "released, not lost"
    assert a_calls.changes == ["acquired", "released"]
    assert lease.current is not None
    assert lease.current.record == LeaseRecord(
        holder="",
        lease_duration_seconds=1,
        acquire_time=clock.now(),
        renew_time=clock.now(),
        transitions=0,
    )
    clock.advance(0.1)
    await b.step()
    assert b.holds(), "taken at once, not a lease later"


async def test_release_by_a_standby_writes_nothing() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, _ = elector(lease, clock, "a")
    b, _ = elector(lease, clock, "b")
    await a.step()
    await b.step()
    writes = len(lease.writes)

    assert not await b.release()

    assert len(lease.writes) == writes
    assert lease.holder == "a"


async def test_run_campaigns_and_release_stops_it() -> None:
    lease, clock = FakeLease(), FakeClock()
    a, _ = elector(lease, clock, "a")
    a.clock = _RealSleepClock(clock)  # run() sleeps for real: keep it short
    a.timing = Timing(lease_duration=3, renew_deadline=2, retry_period=0.05)
    a.start()
    await asyncio.wait_for(a.acquired.wait(), 1)
    await asyncio.sleep(0.2)

    assert await a.release()
    assert len(lease.writes) >= 3, "it renewed while running"
    assert lease.holder == ""


@attrs.define
class _RealSleepClock:
    inner: FakeClock

    def monotonic(self) -> float:
        return self.inner.monotonic()

    def now(self) -> datetime.datetime:
        return self.inner.now()

    def random(self) -> float:
        return 0.5

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.inner.advance(seconds)


async def test_until_leading_waits_for_acquisition_or_stop() -> None:
    lease, clock = FakeLease(), FakeClock()
    lease.overwrite(LeaseRecord(holder="other", lease_duration_seconds=15))
    b, _ = elector(lease, clock, "b")
    stop = asyncio.Event()

    waiting = asyncio.create_task(until_leading(b, stop.wait))
    await asyncio.sleep(0)
    assert not waiting.done()
    stop.set()
    assert await waiting is False
    assert await until_leading(AlwaysLeading(), stop.wait) is True


def test_timing_rejects_what_client_go_rejects() -> None:
    with pytest.raises(ValueError, match="lease duration must be longer"):
        Timing(lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renew deadline must be longer"):
        Timing(renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="jitter"):
        Timing(jitter=1.0)


def test_claim_and_release_records() -> None:
    old = LeaseRecord(holder="a", lease_duration_seconds=15, acquire_time=EPOCH, transitions=4)
    later = EPOCH.replace(minute=5)

    taken = claim(old, identity="b", now=later, lease_duration=20)
    renewed = claim(old, identity="a", now=later, lease_duration=15)
    freed = released(old, now=later)

    assert (taken.holder, taken.acquire_time, taken.transitions) == ("b", later, 5)
    assert taken.lease_duration_seconds == 20
    assert (renewed.acquire_time, renewed.renew_time, renewed.transitions) == (EPOCH, later, 4)
    assert (freed.holder, freed.lease_duration_seconds, freed.transitions) == ("", 1, 4)


def test_observation_restarts_its_clock_only_on_a_change() -> None:
    obs = Observation()
    record = LeaseRecord(holder="a", lease_duration_seconds=15)
    obs.see(Versioned(record=record, version="1"), at=100.0)
    obs.see(Versioned(record=record, version="2"), at=110.0)  # same record, new version

    assert obs.since == 100.0
    assert obs.version == "2"
    assert not obs.free(114.9)
    assert obs.free(115.0)
