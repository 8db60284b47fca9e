"""A CrawlJob's run without a cluster: the flow, the status it reports, progress rate limiting.

Small fakes stand in for the ports (seed source, store, reporter, fetcher);
the progress publisher runs on a fake clock whose sleep advances it, so rate
limiting is checked in simulated time, exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from mandrill.domain.crawl import frontier, job, job_run, ports
from mandrill.domain.crawl import status as crawl_status
from mandrill.domain.crawl.models import (
    CrawlSpec,
    Edge,
    FetchFailure,
    FetchResult,
    PageResult,
    Progress,
)
from mandrill.domain.errors import PermanentError, StoreError

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
REF = job.JobRef(namespace="team", name="links", uid="uid-1", generation=1)


@attrs.define
class FakeClock:
    """Monotonic time that moves only when the test moves it; sleepers wait for it."""

    now: float = 0.0
    moved: asyncio.Event = attrs.Factory(asyncio.Event)

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now
        self.moved.set()

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + seconds
        while self.now < deadline:
            self.moved.clear()
            await self.moved.wait()


@attrs.define
class Sent:
    """A fake patcher: keeps (time, status) of every write."""

    clock: FakeClock
    writes: list[tuple[float, Mapping[str, Any]]] = attrs.Factory(list)

    async def __call__(self, status: Mapping[str, Any]) -> None:
        self.writes.append((self.clock.now, status))


async def test_progress_is_written_at_most_once_per_interval() -> None:
    clock = FakeClock()
    sent = Sent(clock)
    counter = {"done": 0}
    publisher = job_run.ProgressPublisher(
        snapshot=lambda: dict(counter), send=sent, interval=2.0, clock=clock, sleep=clock.sleep
    )
    for n in range(1, 101):  # 100 pages, one every 0.25 simulated seconds
        clock.set(n * 0.25)
        counter["done"] = n
        publisher.touch()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await publisher.close()
    times = [t for t, _ in sent.writes]
    # The first page's progress at once, then one write every 2 s: 0.25, 2.25, ... 24.25.
    assert times == [0.25 + 2.0 * k for k in range(13)]
    assert [status["done"] for _, status in sent.writes] == [1 + 8 * k for k in range(13)]


async def test_a_failing_progress_write_does_not_stop_the_next() -> None:
    clock = FakeClock()
    calls: list[Mapping[str, Any]] = []

    async def flaky(status: Mapping[str, Any]) -> None:
        calls.append(status)
        if len(calls) == 1:
            raise RuntimeError("API server hiccup")

    publisher = job_run.ProgressPublisher(
        snapshot=lambda: {"n": clock.now}, send=flaky, interval=1.0, clock=clock, sleep=clock.sleep
    )
    publisher.touch()
    await asyncio.sleep(0)
    clock.set(5.0)
    publisher.touch()
    for _ in range(3):
        await asyncio.sleep(0)
    await publisher.close()
    assert [c["n"] for c in calls] == [0.0, 5.0]


def test_parse_url_list_skips_comments_blanks_and_junk() -> None:
    text = "# seeds\n\nhttps://a.example/\n  http://b.example/x  \nftp://c.example/\nnot a url\n"
    assert job_run.parse_url_list(text) == ["https://a.example/", "http://b.example/x"]


def test_is_finished() -> None:
    assert crawl_status.is_finished({"phase": "Succeeded"})
    assert crawl_status.is_finished({"phase": "Failed"})
    assert not crawl_status.is_finished({"phase": "Running"})
    assert not crawl_status.is_finished({})


# --- the run, over fakes ---------------------------------------------------------------


@attrs.define
class FakeSeeds:
    text: str | None = None

    async def read(self, *, namespace: str, config_map: str, key: str) -> str:
        if self.text is None:
            raise PermanentError("ConfigMapNotFound", f"ConfigMap {config_map} not found")
        return self.text


@attrs.define
class MemorySink(frontier.NoLog):
    rows: list[tuple[PageResult, list[Edge]]] = attrs.Factory(list)
    fail: bool = False

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        if self.fail:
            raise StoreError("disk full")
        self.rows.append((result, list(edges)))

    async def flush(self) -> None:
        pass


@attrs.define
class FakeStore:
    sink_: MemorySink = attrs.Factory(MemorySink)
    begun: list[int] = attrs.Factory(list)
    stored: frontier.Resumption | None = None

    async def begin(
        self, job_ref: job.JobRef, *, attempt: int, started: datetime.datetime
    ) -> frontier.Resumption | None:
        self.begun.append(attempt)
        return self.stored

    def sink(self, job_ref: job.JobRef) -> MemorySink:
        return self.sink_

    async def finish(self, job_ref: job.JobRef, outcome: job.Outcome) -> job.StoredResults:
        edges = sum(len(e) for _, e in self.sink_.rows)
        return job.StoredResults(store="sqlite:///test", pages=len(self.sink_.rows), edges=edges)


@attrs.define
class FakeReporter:
    calls: list[str] = attrs.Factory(list)
    final: job.Outcome | None = None

    async def started(
        self,
        *,
        attempt: int,
        seeds: int,
        started: datetime.datetime,
        resumed: job.Tally | None = None,
    ) -> None:
        how = "started" if resumed is None else f"resumed at {resumed.pages_ok} ok"
        self.calls.append(f"{how} {attempt} {seeds}")

    async def progress(self, status: Mapping[str, Any]) -> None:
        self.calls.append("progress")

    async def finished(self, outcome: job.Outcome) -> None:
        self.calls.append(f"finished {outcome.phase}")
        self.final = outcome


class SiteFetcher:
    """/ links to /a and /b; /b links back to /; anything else is a 404."""

    PAGES: ClassVar[dict[str, str]] = {
        "http://s.example/": '<a href="/a">a</a><a href="/b">b</a>',
        "http://s.example/a": "",
        "http://s.example/b": '<a href="/">home</a>',
    }

    async def fetch(
        self, url: str, *, max_bytes: int, want_body: ports.BodyFilter
    ) -> FetchResult | FetchFailure:
        if url not in self.PAGES:
            return FetchResult(url=url, status=404, content_type="text/html")
        return FetchResult(
            url=url, status=200, content_type="text/html", body=self.PAGES[url].encode()
        )


@contextlib.asynccontextmanager
async def open_fetcher(spec: CrawlSpec) -> AsyncIterator[ports.Fetcher]:
    yield SiteFetcher()


def context(
    store: FakeStore, reporter: FakeReporter, seeds: FakeSeeds | None = None
) -> job.Context:
    return job.Context(
        seeds=seeds or FakeSeeds(),
        store=store,
        reporter=reporter,
        open_fetcher=open_fetcher,
        clock=lambda: NOW,
    )


async def test_a_run_reports_started_then_succeeded_with_counters() -> None:
    store, reporter = FakeStore(), FakeReporter()
    spec = {"urls": ["http://s.example/"], "maxDepth": 2, "respectRobotsTxt": False}
    outcome = await job_run.run(REF, raw_spec=spec, attempt=1, ctx=context(store, reporter))
    assert outcome.phase is job.Phase.SUCCEEDED
    assert reporter.calls[0] == "started 1 1"
    assert reporter.calls[-1] == "finished Succeeded"
    assert store.begun == [1]
    status = crawl_status.final(outcome, job=REF)
    assert (status["pagesFetched"], status["pagesFailed"], status["linksFound"]) == (3, 0, 3)
    assert status["uniqueLinks"] == 3
    assert status["results"] == {
        "store": "sqlite:///test",
        "jobUID": "uid-1",
        "pages": 3,
        "edges": 3,
        "export": "mandrill results team/links --store-url sqlite:///test",
    }
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Complete": "True",
        "Failed": "False",
    }
    assert status["finishedAt"] == "2026-01-02T03:04:05.000000Z"


async def test_a_missing_configmap_fails_before_anything_is_stored() -> None:
    store, reporter = FakeStore(), FakeReporter()
    spec = {"urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}}
    outcome = await job_run.run(REF, raw_spec=spec, attempt=1, ctx=context(store, reporter))
    assert (outcome.phase, outcome.reason) == (job.Phase.FAILED, "ConfigMapNotFound")
    assert reporter.calls == ["finished Failed"]
    assert store.begun == []


async def test_urls_from_reads_the_seed_list() -> None:
    store, reporter = FakeStore(), FakeReporter()
    seeds = FakeSeeds("# one seed\nhttp://s.example/a\nnot-a-url\n")
    spec = {"urlsFrom": {"configMapName": "seeds", "key": "urls.txt"}, "respectRobotsTxt": False}
    outcome = await job_run.run(REF, raw_spec=spec, attempt=1, ctx=context(store, reporter, seeds))
    assert outcome.phase is job.Phase.SUCCEEDED
    assert outcome.seeds == 1
    assert [r.url for r, _ in store.sink_.rows] == ["http://s.example/a"]


async def test_an_invalid_pattern_fails_the_job_with_invalid_spec() -> None:
    store, reporter = FakeStore(), FakeReporter()
    spec = {"urls": ["http://s.example/"], "include": ["("]}
    outcome = await job_run.run(REF, raw_spec=spec, attempt=1, ctx=context(store, reporter))
    assert (outcome.phase, outcome.reason) == (job.Phase.FAILED, "InvalidSpec")
    assert "include" in outcome.message


async def test_a_store_failure_mid_crawl_fails_the_job_with_store_error() -> None:
    store, reporter = FakeStore(sink_=MemorySink(fail=True)), FakeReporter()
    spec = {"urls": ["http://s.example/"], "maxDepth": 2, "respectRobotsTxt": False}
    outcome = await job_run.run(REF, raw_spec=spec, attempt=3, ctx=context(store, reporter))
    assert (outcome.phase, outcome.reason) == (job.Phase.FAILED, "StoreError")
    assert "disk full" in outcome.message
    assert reporter.calls[0] == "started 3 1"
    assert reporter.calls[-1] == "finished Failed"


async def test_a_run_with_a_stored_frontier_resumes_it_and_carries_the_counters_on() -> None:
    """/ and /b are done (3 links between them), /a is pending: only /a is fetched."""
    stored = frontier.Resumption(
        pending=(frontier.PendingUrl("http://s.example/a", depth=1),),
        seen=frozenset({"http://s.example/", "http://s.example/a", "http://s.example/b"}),
        admitted=3,
        rejected=0,
        counts=frontier.Counts(pages_ok=2, edges=3, bytes=60),
        linked=frozenset({"http://s.example/", "http://s.example/a", "http://s.example/b"}),
    )
    store, reporter = FakeStore(stored=stored), FakeReporter()
    spec = {"urls": ["http://s.example/"], "maxDepth": 2, "respectRobotsTxt": False}
    outcome = await job_run.run(REF, raw_spec=spec, attempt=2, ctx=context(store, reporter))
    assert reporter.calls[0] == "resumed at 2 ok 2 1"
    assert [r.url for r, _ in store.sink_.rows] == ["http://s.example/a"]
    status = crawl_status.final(outcome, job=REF)
    assert (status["pagesFetched"], status["pagesFailed"], status["linksFound"]) == (3, 0, 3)
    assert status["uniqueLinks"] == 3
    assert status["bytes"] == 60


def test_a_resumed_start_says_so_and_keeps_the_counters() -> None:
    stored = frontier.Resumption(
        pending=(frontier.PendingUrl("http://s.example/a", depth=1),),
        seen=frozenset({"http://s.example/", "http://s.example/a"}),
        admitted=2,
        rejected=0,
        counts=frontier.Counts(pages_ok=1, failures={"http_status": 1}, edges=4, bytes=9),
    )
    patch, message = crawl_status.started(
        attempt=3, seeds=1, when=NOW, job=REF, resumed=job.Tally.resumed(stored)
    )
    assert patch["reason"] == "Resumed"
    assert message == "attempt 3: resumed an interrupted crawl at 2 of 2 URLs done; 0 pending"
    assert (patch["pagesFetched"], patch["pagesFailed"], patch["linksFound"]) == (1, 1, 4)
    assert patch["errorsByKind"] == {"http_status": 1}
    assert patch["attempts"] == 3
