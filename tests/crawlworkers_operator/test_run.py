"""The run of a CrawlJob on workers, over small fakes with a clock seam (no cluster).

Covers: SQLite ends Failed WorkersNeedPostgreSQL with a Warning Event and
nothing created; the first run notes the attempt in the store once, before
the Job exists, creates one Job and says so; progress patches while the Job
runs; the end only when the Job ended, noted in the store and reported with
an Event (with the distinct URLs the store counts then; a count that fails
leaves uniqueLinks out, not the end); a later run follows the existing Job
without beginning again; a Job's deadline is what the total timeout leaves
when it is made; a Job deleted mid-crawl is created again; no image, a refused Job and a
missing urlsFrom ConfigMap each end Failed with their reason.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from mandrill.domain.crawl import frontier, worker_run, workers
from mandrill.domain.crawl.job import JobRef, Outcome, Phase, StoredResults
from mandrill.domain.crawl.worker_status import JobState, StoreProgress
from mandrill.domain.errors import PermanentError, StoreError

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team-a", name="docs", uid="abcdef12-0000", generation=1)
SPEC = {"urls": ["https://example.com/"], "workers": 3, "maxPages": 100}
SETTINGS = workers.WorkerSettings(
    image="mandrill:dev", namespace="mandrill-system", store_secret="s", store_secret_key="url"
)
RUNNING = JobState(desired=3, active=3)
COMPLETE = JobState(desired=3, succeeded=3, complete=True)
DONE = StoreProgress(pending=0, done=4, pages_ok=4, links=6)


@attrs.define
class Script:
    """What the Job and the store say at each look; every sleep moves to the next look."""

    looks: list[tuple[JobState | None, StoreProgress]]
    index: int = 0
    now: datetime.datetime = T0
    sleeps: list[float] = attrs.Factory(list)

    @property
    def current(self) -> tuple[JobState | None, StoreProgress]:
        return self.looks[min(self.index, len(self.looks) - 1)]

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.index += 1
        self.now += datetime.timedelta(seconds=seconds)
        if self.index > 50:
            raise AssertionError("the run never ended")

    def clock(self) -> datetime.datetime:
        return self.now


@attrs.define
class FakeJobs:
    script: Script
    created: list[Mapping[str, Any]] = attrs.Factory(list)
    refuse: PermanentError | None = None

    async def get(self, job: JobRef) -> JobState | None:
        state = self.script.current[0]
        if state is None and self.created and self.script.index == self.created_at:
            return RUNNING  # created at this look: the next get sees it
        return state

    created_at: int = -1

    async def create(self, manifest: Mapping[str, Any]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.created.append(manifest)
        self.created_at = self.script.index


@attrs.define
class FakeProgress:
    script: Script

    unique: int | StoreError = 9

    async def read(self, job: JobRef) -> StoreProgress:
        return self.script.current[1]

    async def unique_urls(self, job: JobRef) -> int:
        if isinstance(self.unique, StoreError):
            raise self.unique
        return self.unique


@attrs.define
class FakeStore:
    begun: list[int] = attrs.Factory(list)
    finished: list[Outcome] = attrs.Factory(list)

    async def begin(
        self, job: JobRef, *, attempt: int, started: datetime.datetime
    ) -> frontier.Resumption | None:
        self.begun.append(attempt)
        return None

    def sink(self, job: JobRef) -> Any:
        raise AssertionError("workers write the rows, not the operator")

    async def finish(self, job: JobRef, outcome: Outcome) -> StoredResults:
        self.finished.append(outcome)
        return StoredResults(store="postgresql://m:***@db/m", pages=4, edges=6)


@attrs.define
class FakeReporter:
    patches: list[dict[str, Any]] = attrs.Factory(list)
    events: list[tuple[str, str, str]] = attrs.Factory(list)
    gone: bool = False

    async def patch(self, status: Mapping[str, Any]) -> None:
        if self.gone:
            raise PermanentError("Gone", "the CrawlJob was deleted meanwhile")
        self.patches.append(dict(status))

    def event(self, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


class MissingConfigMap:
    async def read(self, *, namespace: str, config_map: str, key: str) -> str:
        raise PermanentError("ConfigMapNotFound", f"urlsFrom: ConfigMap {config_map} not found")


@attrs.define
class Run:
    script: Script
    jobs: FakeJobs
    store: FakeStore
    reporter: FakeReporter
    ctx: worker_run.Context

    async def __call__(
        self, spec: Mapping[str, Any] = SPEC, status: Mapping[str, Any] | None = None
    ) -> Outcome:
        return await worker_run.run(JOB, raw_spec=spec, status=status or {}, ctx=self.ctx)


def make_run(
    looks: list[tuple[JobState | None, StoreProgress]],
    *,
    shared: bool = True,
    settings: workers.WorkerSettings | None = SETTINGS,
) -> Run:
    script = Script(looks)
    jobs, store, reporter = FakeJobs(script), FakeStore(), FakeReporter()

    async def get_settings() -> workers.WorkerSettings:
        if settings is None:
            raise PermanentError("NoWorkerImage", "no image")
        return settings

    ctx = worker_run.Context(
        seeds=MissingConfigMap(),
        store=store,
        jobs=jobs,
        progress=FakeProgress(script),
        reporter=reporter,
        settings=get_settings,
        shared_store=shared,
        interval=5.0,
        clock=script.clock,
        sleep=script.sleep,
    )
    return Run(script, jobs, store, reporter, ctx)


@pytest.fixture
def first_run() -> Run:
    return make_run([(None, StoreProgress()), (RUNNING, StoreProgress(pending=3, done=1,
                    pages_ok=1)), (COMPLETE, DONE)])  # fmt: skip


async def test_sqlite_fails_workers_need_postgresql_creating_nothing() -> None:
    run = make_run([(None, StoreProgress())], shared=False)
    outcome = await run()
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, "WorkersNeedPostgreSQL")
    assert "spec.workers is 3" in outcome.message
    assert run.jobs.created == []
    assert run.store.begun == []
    [final] = run.reporter.patches
    assert final["phase"] == "Failed"
    assert final["reason"] == "WorkersNeedPostgreSQL"
    assert [e[:2] for e in run.reporter.events] == [("Warning", "Failed")]


async def test_first_run_begins_once_creates_one_job_and_follows_it_to_the_end(
    first_run: Run,
) -> None:
    outcome = await first_run()
    assert (outcome.phase, outcome.reason) == (Phase.SUCCEEDED, "Completed")
    assert first_run.store.begun == [1]
    [manifest] = first_run.jobs.created
    assert manifest["metadata"]["name"] == "crawl-abcdef12-docs"
    assert manifest["spec"]["completions"] == 3
    starting, *progress, final = first_run.reporter.patches
    assert starting["reason"] == "WorkersStarting"
    assert starting["attempts"] == 1
    assert starting["workers"]["desired"] == 3
    assert [p["reason"] for p in progress] == ["WorkersRunning", "WorkersRunning"]
    assert progress[-1]["progress"] == {
        "done": 1, "scheduled": 4, "elapsedSeconds": 5,
        "updatedAt": "2026-01-01T12:00:05.000000Z",
    }  # fmt: skip
    assert final["phase"] == "Succeeded"
    assert final["pagesFetched"] == 4
    assert final["linksFound"] == 6
    assert final["results"]["edges"] == 6
    assert final["uniqueLinks"] == 9  # counted in the store, once, at the end
    assert final["workers"]["succeeded"] == 3
    assert final["finishedAt"] == "2026-01-01T12:00:10.000000Z"
    [ended] = first_run.store.finished
    assert ended.phase is Phase.SUCCEEDED
    assert [e[:2] for e in first_run.reporter.events] == [
        ("Normal", "WorkersStarted"),
        ("Normal", "Succeeded"),
    ]
    assert first_run.script.sleeps == [5.0, 5.0]


async def test_a_job_that_completed_with_urls_left_fails_with_the_count() -> None:
    left = StoreProgress(pending=5, done=0)
    run = make_run([(None, StoreProgress()), (COMPLETE, left)])
    outcome = await run()
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, "FrontierUnfinished")
    assert "5 of 5 URLs left" in outcome.message
    assert run.reporter.events[-1] == (
        "Warning",
        "Failed",
        f"FrontierUnfinished: {outcome.message}",
    )
    assert run.store.finished[0].phase is Phase.FAILED


async def test_a_later_run_follows_the_existing_job_without_beginning_again() -> None:
    run = make_run([(RUNNING, StoreProgress(pending=1, done=1)), (COMPLETE, DONE)])
    status = {"phase": "Running", "attempts": 1, "startedAt": "2026-01-01T11:59:00.000000Z",
              "workers": {"desired": 3}}  # fmt: skip
    outcome = await run(status=status)
    assert outcome.phase is Phase.SUCCEEDED
    assert run.store.begun == []
    assert run.jobs.created == []
    assert outcome.started == datetime.datetime(2026, 1, 1, 11, 59, tzinfo=datetime.UTC)


async def test_unique_urls_the_store_cannot_count_leave_the_field_out_not_the_end() -> None:
    run = make_run([(COMPLETE, DONE)])
    progress = run.ctx.progress
    assert isinstance(progress, FakeProgress)
    progress.unique = StoreError("cannot read crawl store postgresql://m:***@db/m: timeout")
    outcome = await run(status={"phase": "Running", "attempts": 1, "workers": {"desired": 3}})
    assert (outcome.phase, outcome.reason) == (Phase.SUCCEEDED, "Completed")
    final = run.reporter.patches[-1]
    assert final["phase"] == "Succeeded"
    assert "uniqueLinks" not in final


async def test_a_job_deleted_mid_crawl_is_created_again_without_beginning_again() -> None:
    run = make_run([(None, StoreProgress(pending=2, done=2)), (COMPLETE, DONE)])
    outcome = await run(status={"phase": "Running", "attempts": 1, "workers": {"desired": 3}})
    assert outcome.phase is Phase.SUCCEEDED
    assert run.store.begun == []
    assert len(run.jobs.created) == 1
    assert ("Warning", "WorkersRecreated") in [e[:2] for e in run.reporter.events]


async def test_a_job_made_again_mid_crawl_gets_the_deadline_the_timeout_leaves() -> None:
    spec = {**SPEC, "totalTimeoutSeconds": 100}
    run = make_run([(None, StoreProgress()), (None, StoreProgress(pending=2, done=2)),
                    (COMPLETE, DONE)])  # fmt: skip
    await run(spec=spec)
    first, again = run.jobs.created
    assert first["spec"]["activeDeadlineSeconds"] == 100 + workers.DEADLINE_GRACE_SECONDS
    assert again["spec"]["activeDeadlineSeconds"] == 95 + workers.DEADLINE_GRACE_SECONDS


async def test_no_image_fails_the_job_with_the_reason() -> None:
    run = make_run([(None, StoreProgress())], settings=None)
    outcome = await run()
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, "NoWorkerImage")
    assert run.jobs.created == []


async def test_a_refused_job_fails_the_crawljob_with_the_apis_reason() -> None:
    run = make_run([(None, StoreProgress())])
    run.jobs.refuse = PermanentError("Forbidden", "create Job: jobs.batch is forbidden")
    outcome = await run()
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, "Forbidden")
    assert "jobs.batch is forbidden" in outcome.message


async def test_a_missing_urls_from_config_map_fails_before_anything_is_created() -> None:
    run = make_run([(None, StoreProgress())])
    spec = {"urlsFrom": {"configMapName": "gone", "key": "urls.txt"}, "workers": 2}
    outcome = await run(spec)
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, "ConfigMapNotFound")
    assert run.jobs.created == []
    assert run.store.begun == []


async def test_a_deleted_crawljob_ends_the_run() -> None:
    run = make_run([(RUNNING, StoreProgress(pending=1))])
    run.reporter.gone = True
    with pytest.raises(PermanentError, match="deleted"):
        await run(status={"workers": {"desired": 3}})


async def test_a_look_that_changed_nothing_is_not_written_but_a_heartbeat_is() -> None:
    same = (RUNNING, StoreProgress(pending=2, done=2, pages_ok=2))
    run = make_run([same] * 8 + [(COMPLETE, DONE)])
    outcome = await run(status={"phase": "Running", "workers": {"desired": 3}})
    assert outcome.phase is Phase.SUCCEEDED
    *progress, final = run.reporter.patches
    # Looks 1 and 7 (the heartbeat, HEARTBEAT_LOOKS after the last write) of 8 alike.
    assert len(progress) == 2
    assert worker_run.HEARTBEAT_LOOKS == 6
    first, beat = progress
    assert first["progress"]["updatedAt"] == "2026-01-01T12:00:00.000000Z"
    assert beat["progress"]["updatedAt"] == "2026-01-01T12:00:30.000000Z"
    assert final["phase"] == "Succeeded"
