"""The restart service without a cluster: fairness (oldest first, bounded in flight,
a waiting request lends its slot), level-triggered resync (a dropped event is
found), and failures that end loud instead of stalling: an adapter raising an
unexpected error and an unparseable prior status both end Failed/InternalError
after bounded retries with growing backoff, counted; transient errors retry
after re-reading; drain hands back; the oldest request in hand (queued, running or
backing off) is reported for the unacknowledged-too-long alert until it leaves."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import pytest

from mandrill.application.restart import RestartService
from mandrill.application.restart_ports import Ports, Waiting
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.restart import process, status
from mandrill.domain.restart.models import Kind, Outcome, Phase, RequestRef, TargetResult
from mandrill.supervision import TaskRegistry
from tests.unit.fakes import NOW, FakeJournal, FakeLimiter, FakeReporter, FakeTargets, candidate


def body(
    name: str, *, created: int = 0, spec: Mapping[str, Any] | None = None, **st: Any
) -> dict[str, Any]:
    """A RestartRequest as the API server sends it, created `created` seconds after NOW."""
    return {
        "apiVersion": "mandrill.dev/v1alpha1",
        "kind": "RestartRequest",
        "metadata": {
            "namespace": "shop",
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": timestamps.format(NOW + datetime.timedelta(seconds=created)),
        },
        "spec": dict(spec or {"target": {"selector": {"matchLabels": {"app": "web"}}}}),
        "status": st,
    }


@attrs.define
class FakeRequests:
    """`Requests`: what the API server would list and read."""

    listed: list[dict[str, Any]] = attrs.Factory(list)
    reads: int = 0
    read_error: Exception | None = None
    current: dict[str, dict[str, Any]] = attrs.Factory(dict)

    async def read(self, request: RequestRef) -> Mapping[str, Any]:
        self.reads += 1
        if self.read_error is not None:
            raise self.read_error
        return self.current.get(request.uid) or body(request.name)

    async def list_all(self) -> list[Mapping[str, Any]]:
        return list(self.listed)


@attrs.define
class FakeObserver:
    counts: dict[str, int] = attrs.Factory(dict)
    phases: list[str] = attrs.Factory(list)
    oldest: list[float | None] = attrs.Factory(list)
    """Every oldest-unacknowledged creation time reported, in order."""

    def _count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def consumed(self) -> None:
        self._count("consumed")

    def acknowledged(self, phase: str) -> None:
        self.phases.append(phase)

    def restarted(self, strategy: str, outcome: str) -> None:
        self._count(f"restarted {strategy} {outcome}")

    def internal_error(self) -> None:
        self._count("internal_error")

    def resynced(self, stranded: int) -> None:
        self._count("resynced", stranded)

    def queued(self, waiting: int) -> None:
        return None

    def oldest_unacknowledged(self, created: float | None) -> None:
        self.oldest.append(created)

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        self._count("in_flight")
        self.counts["peak"] = max(self.counts.get("peak", 0), self.counts["in_flight"])
        try:
            yield
        finally:
            self.counts["in_flight"] -= 1


@attrs.define
class Harness:
    """The service over fakes; every request shares the targets and the journal."""

    log: list[str] = attrs.Factory(list)
    targets: FakeTargets = attrs.Factory(lambda self: FakeTargets(self.log), takes_self=True)
    journal: FakeJournal = attrs.Factory(lambda self: FakeJournal(self.log), takes_self=True)
    requests: FakeRequests = attrs.Factory(FakeRequests)
    observer: FakeObserver = attrs.Factory(FakeObserver)
    reporters: dict[str, FakeReporter] = attrs.Factory(dict)
    acknowledged: list[str] = attrs.Factory(list)
    ack_error: Exception | None = None
    """What acknowledge() raises (a status that cannot be written), when set."""
    events: list[tuple[str, str, str]] = attrs.Factory(list)
    sleeps: list[float] = attrs.Factory(list)
    ttls: list[str] = attrs.Factory(list)
    tasks: TaskRegistry = attrs.Factory(lambda: TaskRegistry("test"))

    def context(
        self, *, request: RequestRef, body: Mapping[str, Any], attempt: int, waiting: Waiting | None
    ) -> process.Context:
        harness = self

        @attrs.define
        class Reporter(FakeReporter):
            async def acknowledge(self, outcome: process.FinalOutcome) -> None:
                if harness.ack_error is not None:
                    raise harness.ack_error
                await super().acknowledge(outcome)
                harness.acknowledged.append(request.name)

        reporter = Reporter(self.log)
        self.reporters[request.name] = reporter
        ctx = process.Context(
            targets=self.targets,
            journal=self.journal,
            reporter=reporter,
            limiter=FakeLimiter(),
            denied_namespaces=(),
            clock=lambda: NOW,
        )
        return ctx if waiting is None else attrs.evolve(ctx, waiting=waiting)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)

    def service(self, **kwargs: Any) -> RestartService:
        return RestartService(
            ports=Ports(
                requests=self.requests,
                context=self.context,
                schedule_ttl=lambda request, due: self.ttls.append(request.name),
                save_later=lambda b: self.log.append(f"save later {b['metadata']['name']}"),
                events=lambda obj, kind, reason, message: self.events.append(
                    (kind, reason, message)
                ),
                observer=self.observer,
                tasks=self.tasks,
            ),
            sleep=self.sleep,
            **kwargs,
        )

    def outcome(self, name: str) -> process.FinalOutcome:
        (done,) = self.reporters[name].acknowledged
        return done


async def until(condition: Callable[[], object]) -> None:
    """Let the service's tasks run until `condition()` holds (or fail the test after 5 s)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 -- polls state the fakes record, no event to wait on
            await asyncio.sleep(0.001)


async def settle(service: RestartService, harness: Harness, *, done: int) -> None:
    """Until `done` requests were acknowledged and none is in flight."""
    await until(lambda: len(harness.acknowledged) >= done and not service.in_flight)


@pytest.fixture
def harness() -> Harness:
    h = Harness()
    h.targets.candidates = [candidate("web-a")]
    return h


async def test_oldest_first_and_bounded_in_flight(harness: Harness) -> None:
    harness.targets.delay = 0.01
    service = harness.service(max_in_flight=2)
    # Seen newest first (as a listing by name might hand them over); done oldest first.
    for i in reversed(range(8)):
        service.observe(body(f"r{i}", created=i))
    service.start()
    await settle(service, harness, done=8)
    assert set(harness.acknowledged[:2]) == {"r0", "r1"}
    assert harness.acknowledged[2:] == [f"r{i}" for i in range(2, 8)]
    assert harness.observer.counts["peak"] == 2
    assert harness.observer.counts["consumed"] == 8
    await service.drain(1)


async def test_a_request_waiting_for_ready_lends_its_slot(harness: Harness) -> None:
    release = asyncio.Event()

    async def slow_ready() -> None:
        await release.wait()

    harness.targets.on_ready = slow_ready
    service = harness.service(max_in_flight=1)
    service.observe(
        body("waits", spec={"target": {"name": "web-a"}, "waitForReady": {"enabled": True}})
    )
    service.observe(body("quick", created=1, spec={"target": {"name": "web-a"}}))
    service.start()
    await until(lambda: "quick" in harness.acknowledged)
    assert harness.acknowledged == ["quick"]
    release.set()
    await settle(service, harness, done=2)
    await service.drain(1)


async def test_events_for_a_request_in_hand_are_ignored(harness: Harness) -> None:
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    harness.targets.on_restart = hold
    service = harness.service()
    service.start()
    first = body("r")
    service.observe(first)
    await until(lambda: harness.targets.restarted)
    # Our own plan patch comes back as an event, unacknowledged: no second attempt.
    service.observe(body("r", phase="Running"))
    gate.set()
    await settle(service, harness, done=1)
    service.observe(body("r", phase="Running"))  # a late event of an earlier patch
    await asyncio.sleep(0.01)
    assert harness.targets.restarted == ["web-a"]
    assert harness.acknowledged == ["r"]
    await service.drain(1)


async def test_resync_finds_a_request_whose_event_was_dropped(harness: Harness) -> None:
    service = harness.service()
    service.start()
    dropped = body("dropped")
    done = body("done", conditions=[{"type": "Acknowledged", "status": "True"}])
    harness.requests.listed = [dropped, done]
    # No observe(): the watch event never arrived.
    assert await service.resync() == 1
    await settle(service, harness, done=1)
    assert harness.acknowledged == ["dropped"]
    assert harness.observer.counts["resynced"] == 1
    assert harness.outcome("dropped").phase is Phase.SUCCEEDED
    # Known now (handled): the next resync finds nothing stranded.
    assert await service.resync() == 0
    await service.drain(1)


async def test_resync_reschedules_ttl_and_journal_retry_of_finished_requests(
    harness: Harness,
) -> None:
    service = harness.service()
    unsaved = body(
        "unsaved",
        spec={"target": {"name": "a"}, "ttlSecondsAfterFinished": 60},
        finishedAt=timestamps.format(NOW),
        conditions=[
            {"type": "Saved", "status": "False"},
            {"type": "Acknowledged", "status": "True"},
        ],
    )
    harness.requests.listed = [unsaved]
    assert await service.resync() == 0
    assert harness.ttls == ["unsaved"]
    assert "save later unsaved" in harness.log


async def test_an_unexpected_adapter_error_ends_failed_internal_error_after_bounded_retries(
    harness: Harness,
) -> None:
    harness.targets.find_error = RuntimeError("boom: a bug in an adapter")
    service = harness.service(max_failures=3, first_backoff=1, max_backoff=60)
    service.observe(body("buggy"))
    service.start()
    await settle(service, harness, done=1)
    done = harness.outcome("buggy")
    assert (done.phase, done.reason) == (Phase.FAILED, "InternalError")
    assert "gave up after 3 unexpected errors; last: RuntimeError: boom" in done.message
    assert harness.targets.find_calls == 3
    assert harness.observer.counts["internal_error"] == 3
    assert harness.observer.phases == ["Failed"]
    # Backoff grows between attempts (a fake clock: no real waiting); no hot loop.
    assert harness.sleeps == [1, 2, 4]
    # Re-read before each retry, so a retry never works from a stale body.
    assert harness.requests.reads == 3
    await service.drain(1)


async def test_an_unparseable_prior_status_ends_failed_internal_error(harness: Harness) -> None:
    broken = body("broken", phase="Running", targets=[{"kind": "Pod", "name": "web-a"}])
    harness.requests.current["uid-broken"] = broken
    service = harness.service(max_failures=2)
    service.observe(broken)
    service.start()
    await settle(service, harness, done=1)
    done = harness.outcome("broken")
    assert (done.phase, done.reason) == (Phase.FAILED, "InternalError")
    assert "InvalidStatus: status.targets cannot be read" in done.message
    assert done.targets == ()
    assert harness.targets.restarted == []
    await service.drain(1)


async def test_giving_up_reports_pending_targets_as_failed(harness: Harness) -> None:
    row = TargetResult(
        kind=Kind.POD, name="web-a", uid="uid-web-a", action="Delete", outcome=Outcome.PENDING
    )
    planned = body("planned", phase="Running", targets=[row.to_status()])
    harness.requests.current["uid-planned"] = planned
    harness.journal.error = None
    harness.targets.failures["web-a"] = KeyError("surprise")
    service = harness.service(max_failures=1)
    service.observe(planned)
    service.start()
    await settle(service, harness, done=1)
    done = harness.outcome("planned")
    (target,) = done.targets
    assert (target.outcome, target.message) == (Outcome.FAILED, "not attempted: InternalError")
    # The error itself, not the TaskGroups it travelled through.
    assert done.message.endswith("last: KeyError: 'surprise'")
    await service.drain(1)


async def test_transient_errors_back_off_and_are_not_internal_errors(harness: Harness) -> None:
    harness.targets.find_errors = [TransientError("API unavailable")] * 2
    service = harness.service()
    service.observe(body("flaky"))
    service.start()
    await settle(service, harness, done=1)
    assert harness.outcome("flaky").phase is Phase.SUCCEEDED
    assert harness.sleeps == [1, 2]
    assert "internal_error" not in harness.observer.counts
    await service.drain(1)


async def test_a_permanent_error_ends_the_request_failed_with_its_reason(harness: Harness) -> None:
    harness.targets.find_errors = [RuntimeError("first")]
    harness.requests.read_error = PermanentError("Forbidden", "cannot list pods")
    service = harness.service()
    service.observe(body("denied"))
    service.start()
    await settle(service, harness, done=1)
    done = harness.outcome("denied")
    assert (done.phase, done.reason, done.message) == (
        Phase.FAILED,
        "Forbidden",
        "cannot list pods",
    )
    await service.drain(1)


async def test_a_request_whose_status_cannot_be_written_gets_an_event_and_rests(
    harness: Harness,
) -> None:
    harness.targets.find_error = PermanentError("Forbidden", "cannot patch the request")
    harness.ack_error = PermanentError("Forbidden", "cannot patch the request")
    service = harness.service()
    service.observe(body("denied"))
    service.start()
    await until(lambda: harness.events)
    assert harness.events == [("Warning", "Forbidden", "not carried out: cannot patch the request")]
    service.observe(body("denied"))  # handled: not taken up again
    await asyncio.sleep(0.01)
    assert harness.targets.find_calls == 1
    await service.drain(1)


async def test_readiness_that_cannot_be_watched_fails_ready_not_the_request(
    harness: Harness,
) -> None:
    async def refused() -> None:
        raise PermanentError("Forbidden", "cannot watch pods")

    harness.targets.on_ready = refused
    service = harness.service()
    spec = {"target": {"name": "web-a"}, "waitForReady": {"enabled": True}}
    service.observe(body("ready", spec=spec))
    service.start()
    await settle(service, harness, done=1)
    done = harness.outcome("ready")
    assert harness.targets.restarted == ["web-a"]
    assert done.ready is not None
    assert (done.ready.ok, done.ready.reason) == (False, "Forbidden")
    assert done.ready.message == "could not watch for Ready: cannot watch pods"
    await service.drain(1)


async def test_a_drain_while_waiting_for_ready_hands_back(harness: Harness) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    harness.targets.on_ready = forever
    service = harness.service()
    spec = {"target": {"name": "web-a"}, "waitForReady": {"enabled": True}}
    service.observe(body("waiting", spec=spec))
    service.start()
    await until(lambda: harness.targets.ready_calls)
    await service.drain(0.05)
    (handed,) = harness.reporters["waiting"].handed
    assert [t.outcome for t in handed] == [Outcome.RESTARTED]
    assert harness.acknowledged == []


async def test_a_deleted_request_is_dropped_with_its_retry(harness: Harness) -> None:
    harness.targets.find_errors = [TransientError("API unavailable")]
    slept = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        slept.set()
        await asyncio.sleep(3600)

    service = harness.service()
    service.sleep = long_sleep
    service.observe(body("gone"))
    service.start()
    await slept.wait()  # backing off before its retry
    assert harness.tasks.running("retry/uid-gone")
    service.forget("uid-gone")
    await asyncio.sleep(0)
    assert not harness.tasks.running("retry/uid-gone")
    assert service.wants(body("gone"))  # made anew with the same UID? it would be taken again
    await service.drain(1)


async def test_drain_starts_nothing_new_and_hands_back_what_runs(harness: Harness) -> None:
    harness.targets.delay = 30
    service = harness.service(max_in_flight=1)
    service.observe(body("running"))
    service.observe(body("queued", created=1))
    service.start()
    await until(lambda: harness.targets.restarted)
    await service.drain(0.05)
    assert harness.reporters["running"].handed, "the running request handed back"
    assert "queued" not in harness.reporters
    assert harness.acknowledged == []
    service.observe(body("late", created=2))
    await asyncio.sleep(0.01)
    assert "late" not in harness.reporters


def seconds_after_now(seconds: int) -> float:
    """`created=seconds` of `body`, as the Unix time the service reports."""
    return (NOW + datetime.timedelta(seconds=seconds)).timestamp()


async def test_the_oldest_unacknowledged_request_is_reported_until_acknowledged(
    harness: Harness,
) -> None:
    service = harness.service(max_in_flight=1)
    service.observe(body("r1", created=10))
    service.observe(body("r0", created=5))
    service.observe(body("r2", created=20))
    # Seen later, created earlier: the oldest moves back; a younger one moves nothing.
    assert harness.observer.oldest == [seconds_after_now(10), seconds_after_now(5)]
    service.forget("uid-r2")  # deleted while queued, not the oldest: nothing to report
    assert harness.observer.oldest == [seconds_after_now(10), seconds_after_now(5)]
    service.start()
    await settle(service, harness, done=2)
    # One at a time, oldest first: r0 acknowledged leaves r1 the oldest, then none is left.
    assert harness.acknowledged == ["r0", "r1"]
    assert harness.observer.oldest[2:] == [seconds_after_now(10), None]
    await service.drain(1)


async def test_a_request_backing_off_stays_the_oldest_unacknowledged(harness: Harness) -> None:
    harness.targets.find_errors = [TransientError("API unavailable")]
    slept = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        slept.set()
        await asyncio.sleep(3600)

    service = harness.service()
    service.sleep = long_sleep
    service.observe(body("stuck", created=3))
    service.start()
    await slept.wait()
    assert harness.observer.oldest == [seconds_after_now(3)], "not acknowledged: still reported"
    service.forget("uid-stuck")
    assert harness.observer.oldest == [seconds_after_now(3), None]
    await service.drain(1)


def test_status_helpers_agree_with_the_service_view() -> None:
    assert not status.is_acknowledged(body("x")["status"])


async def test_wants_filters_the_events_our_own_patches_cause(harness: Harness) -> None:
    service = harness.service()
    fresh = body("r")
    assert service.wants(fresh)
    service.observe(fresh)
    assert service.wants(body("r"))  # queued: a newer body is still taken
    service.start()
    await settle(service, harness, done=1)
    assert not service.wants(body("r", phase="Running"))  # a late event of our plan patch
    acked = [{"type": "Acknowledged", "status": "True"}]
    assert not service.wants(body("r", conditions=acked))
    with_ttl = body(
        "t", spec={"target": {"name": "a"}, "ttlSecondsAfterFinished": 5}, conditions=acked
    )
    assert service.wants(with_ttl)
    service.observe(with_ttl)
    assert not service.wants(with_ttl)  # scheduled once
    unsaved = [{"type": "Saved", "status": "False"}, *acked]
    assert service.wants(body("u", conditions=unsaved))
    await service.drain(1)
