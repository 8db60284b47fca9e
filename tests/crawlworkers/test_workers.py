"""`mandrill crawl-worker` processes sharing a frontier in real PostgreSQL, crawling a local site.

Covers: three worker processes crawl a three-host site of 300 pages (+404s)
to the same edge set and page outcomes as one in-process crawl, every page
fetched once, and never more than perHostConcurrency requests in flight at
any host; a worker SIGKILLed mid-crawl loses nothing: the others finish its
URLs once its leases run out, and the only pages fetched twice are ones it
held when it died; maxPages holds exactly across workers (their JSON logs
never show the store password); a SIGTERMed worker exits 0 at once and
gives its leases back, so the others finish without waiting for them to
expire; Crawl-delay spacing holds at the
server when the host changes hands (robots.txt read once, through the
store); a worker paused (SIGSTOP) past its leases, even mid-transaction,
holds no one up, and wakes to find them taken over: it stores nothing and
sends only the requests already on their way; the settings a
worker cannot run without fail it with status 1 and one line; redirects to
pages another worker crawls give the edges of one process, and a redirect
target the store already has is not fetched again (without that check, 28
of 30 were); PostgreSQL stopped for 3 s mid-crawl: the workers retry, go on
and finish with every page fetched once; a store that never answers ends
a worker with status 1 after its patience, the error logged, the password
in no line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pathlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import attrs
import pytest

from mandrill.adapters import http, ssrf, worker_progress
from mandrill.adapters.postgres import PostgresDatabase
from mandrill.domain.crawl import engine
from mandrill.domain.crawl.job import JobRef
from mandrill.domain.crawl.models import CrawlSpec, Edge, PageResult, Progress
from mandrill.store_url import StoreUrl
from tests.crawlworkers import site as test_site
from tests.postgres import PostgresServer

WORKER = (sys.executable, "-m", "mandrill", "crawl-worker")
JOB = "3f0c-workers-test"
WAIT = 120.0
W3 = ("w0", "w1", "w2")


def spec_body(seed: str, **more: Any) -> dict[str, Any]:
    """A CrawlJob spec as the API server returns it: one host per worker (2 slots each)."""
    return {
        "urls": [seed],
        "maxDepth": 60,
        "concurrency": 2,
        "perHostConcurrency": 2,
        "requestTimeoutSeconds": 5,
        **more,
    }


@attrs.define
class Workers:
    """Worker processes of one job, their summaries and logs."""

    store: str
    spec: dict[str, Any]
    logs: pathlib.Path
    lease: float = 30.0
    env: dict[str, str] = attrs.Factory(dict)
    procs: dict[str, asyncio.subprocess.Process] = attrs.Factory(dict)

    async def start(self, *names: str) -> None:
        for name in names:
            env = {
                **os.environ,
                "MANDRILL_STORE_URL": self.store,
                "MANDRILL_CRAWL_JOB_UID": JOB,
                "MANDRILL_CRAWL_SPEC": json.dumps(self.spec),
                "MANDRILL_WORKER_ID": name,
                "JOB_COMPLETION_INDEX": name[-1],
                "MANDRILL_CRAWL_ALLOW_PRIVATE": "true",
                "MANDRILL_CRAWL_LEASE_SECONDS": str(self.lease),
                **self.env,
            }
            stderr = (self.logs / f"{name}.log").open("wb")
            self.procs[name] = await asyncio.create_subprocess_exec(
                *WORKER, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr
            )
            stderr.close()

    async def finish(self, name: str) -> tuple[int, dict[str, Any] | None]:
        """Wait for one worker: its exit status and its summary line (None if it printed none)."""
        proc = self.procs[name]
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
        lines = out.decode().strip().splitlines()
        assert proc.returncode is not None
        return proc.returncode, json.loads(lines[-1]) if lines else None

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def failures(self, names: Sequence[str], results: Sequence[tuple[int, Any]]) -> str:
        """The logs of the workers among `names` that did not exit 0: an assertion's message."""
        return "\n".join(
            f"--- {name} exited {status}:\n{self.log(name)}"
            for name, (status, _) in zip(names, results, strict=True)
            if status != 0
        )

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def site() -> AsyncIterator[test_site.Site]:
    async with test_site.serve(hosts=3, pages=100, delay=0.03) as running:
        yield running


@pytest.fixture
async def workers(postgres_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Workers]:
    running = Workers(store=postgres_url, spec={}, logs=tmp_path)
    yield running
    await running.stop_all()


@attrs.define
class _Collect:
    pages: dict[str, PageResult] = attrs.Factory(dict)
    edges: set[tuple[str, str]] = attrs.Factory(set)
    unique_urls: int = 0

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        self.pages[result.url] = result
        self.edges.update((e.source, e.target) for e in edges)


async def reference(body: dict[str, Any]) -> _Collect:
    """One in-process crawl of the same spec: what the workers must find together."""
    spec = CrawlSpec.from_spec(body)
    collect = _Collect()
    policy = ssrf.AddressPolicy(allow_private=True)
    async with http.HttpFetcher.open(spec=spec, policy=policy) as fetcher:
        stats = await engine.crawl(spec, fetcher=fetcher, sink=collect)
    collect.unique_urls = stats.unique_urls
    return collect


async def rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def stored(url: str) -> tuple[dict[str, str | None], set[tuple[str, str]], dict[str, int]]:
    """The job's page outcomes (url -> error), edges, and frontier rows by state."""
    pages = await rows(url, "SELECT url, error FROM crawl_pages WHERE job_uid = $1", JOB)
    edges = await rows(url, "SELECT source, target FROM crawl_edges WHERE job_uid = $1", JOB)
    states = await rows(
        url, "SELECT state, COUNT(*) FROM crawl_frontier WHERE job_uid = $1 GROUP BY state", JOB
    )
    assert len(pages) == len({p[0] for p in pages})
    return dict(pages), {(s, t) for s, t in edges}, {s: int(n) for s, n in states}


async def unique_urls(url: str) -> int:
    """What the operator reports as uniqueLinks when the workers are done, read as it does."""
    db = PostgresDatabase(url=StoreUrl.parse(url), what="crawl store")
    try:
        reader = worker_progress.StoreProgressReader(db)
        return await reader.unique_urls(JobRef(namespace="n", name="j", uid=JOB))
    finally:
        await db.close()


async def wait_for_pages(url: str, at_least: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            ((count,),) = await rows(
                url, "SELECT COUNT(*) FROM crawl_pages WHERE job_uid = $1", JOB
            )
        except asyncpg.UndefinedTableError:  # no worker has migrated the store yet
            count = 0
        if count >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} pages stored in {WAIT} s")


async def three_workers_under_way(
    site: test_site.Site, workers: Workers, postgres_url: str, body: dict[str, Any]
) -> str:
    """Workers w0..w2 on `body` with 2 s leases, 60 pages stored: the name of one
    that holds a host now (the one a test then kills or pauses)."""
    site.reset()
    workers.spec, workers.lease = body, 2.0
    await workers.start("w0", "w1", "w2")
    await wait_for_pages(postgres_url, 60)
    held = await rows(
        postgres_url,
        "SELECT DISTINCT split_part(holder, '/', 1) FROM crawl_host_leases"
        " WHERE job_uid = $1 AND holder IS NOT NULL",
        JOB,
    )
    return sorted(name for (name,) in held)[0]


async def test_three_workers_crawl_what_one_process_crawls_each_page_once(
    site: test_site.Site, workers: Workers, postgres_url: str
) -> None:
    body = spec_body(site.seed)
    alone = await reference(body)
    assert len(alone.pages) == 300 + 12  # 100 pages and 4 missing ones a host
    site.reset()
    workers.spec = body
    await workers.start("w0", "w1", "w2")
    results = [await workers.finish(name) for name in ("w0", "w1", "w2")]
    assert [status for status, _ in results] == [0, 0, 0], workers.failures(W3, results)
    summaries = [s for _, s in results if s is not None]
    assert sum(s["stored"] for s in summaries) == len(alone.pages)
    assert sum(s["fenced"] for s in summaries) == 0
    # The work was shared (which worker gets which host is first come, first served).
    assert sum(1 for s in summaries if s["stored"] > 0) >= 2, summaries
    pages, edges, states = await stored(postgres_url)
    assert edges == alone.edges
    assert pages == {u: (p.error.value if p.error else None) for u, p in alone.pages.items()}
    assert states == {"done": len(alone.pages)}
    assert await unique_urls(postgres_url) == alone.unique_urls  # the operator's uniqueLinks
    fetched = site.fetched()
    assert set(fetched) == set(alone.pages)
    assert max(fetched.values()) == 1, [u for u, n in fetched.items() if n > 1]
    assert site.most_in_flight() == 2  # perHostConcurrency, reached and never exceeded


async def test_a_killed_workers_urls_are_finished_by_the_others(
    site: test_site.Site, workers: Workers, postgres_url: str
) -> None:
    body = spec_body(site.seed)
    alone = await reference(body)
    victim = await three_workers_under_way(site, workers, postgres_url, body)
    workers.procs[victim].send_signal(signal.SIGKILL)
    await workers.procs[victim].wait()
    leased = await rows(
        postgres_url,
        "SELECT url FROM crawl_frontier WHERE job_uid = $1 AND state = 'pending'"
        " AND split_part(leased_by, '/', 1) = $2",
        JOB,
        victim,
    )
    assert leased, f"{victim} held no URL when it was killed"
    pages_then, _, _ = await stored(postgres_url)
    assert len(pages_then) < len(alone.pages)  # killed mid-crawl
    survivors = [name for name in ("w0", "w1", "w2") if name != victim]
    results = [await workers.finish(name) for name in survivors]
    assert [status for status, _ in results] == [0, 0], workers.log(survivors[0])
    pages, edges, states = await stored(postgres_url)
    assert states == {"done": len(alone.pages)}  # 0 lost
    assert set(pages) == set(alone.pages)
    assert edges == alone.edges
    twice = {url for url, n in site.fetched().items() if n > 1}
    assert max(site.fetched().values()) <= 2
    # Only what the dead worker had leased (fetched, not yet stored) is fetched again.
    assert twice <= {url for (url,) in leased}, (twice, leased)
    assert site.most_in_flight() == 2


async def test_max_pages_holds_exactly_across_workers(
    site: test_site.Site, workers: Workers, postgres_url: str, postgres: PostgresServer
) -> None:
    workers.spec = spec_body(site.seed, maxPages=57)
    workers.env = {"MANDRILL_LOG_FORMAT": "json"}
    await workers.start("w0", "w1", "w2")
    results = [await workers.finish(name) for name in ("w0", "w1", "w2")]
    assert [status for status, _ in results] == [0, 0, 0], workers.failures(W3, results)
    for name in ("w0", "w1", "w2"):
        lines = workers.log(name).splitlines()
        assert lines
        assert all(isinstance(json.loads(line), dict) for line in lines)
        assert postgres.password not in workers.log(name)
    pages, _, states = await stored(postgres_url)
    assert len(pages) == 57
    assert states == {"done": 57}
    assert await rows(postgres_url, "SELECT admitted FROM crawl_budget") == [(57,)]
    assert set(site.fetched()) == set(pages)
    assert max(site.fetched().values()) == 1


async def test_a_terminated_worker_gives_its_leases_back_at_once(
    site: test_site.Site, workers: Workers, postgres_url: str
) -> None:
    body = spec_body(site.seed)
    alone = await reference(body)
    site.reset()
    workers.spec, workers.lease = body, 60.0  # the others cannot wait for these to expire
    await workers.start("w0", "w1", "w2")
    await wait_for_pages(postgres_url, 60)
    started = time.monotonic()
    workers.procs["w1"].send_signal(signal.SIGTERM)
    status, summary = await workers.finish("w1")
    assert status == 0, workers.log("w1")
    assert time.monotonic() - started < 5
    assert summary is not None
    assert summary["stopped"] is True
    others = [await workers.finish(name) for name in ("w0", "w2")]
    assert [s for s, _ in others] == [0, 0], workers.failures(("w0", "w2"), others)
    assert time.monotonic() - started < 40  # well before the 60 s leases would end
    _pages, edges, states = await stored(postgres_url)
    assert states == {"done": len(alone.pages)}
    assert edges == alone.edges


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MANDRILL_STORE_URL": "sqlite:///x.sqlite"}, "must be postgresql://"),
        ({"MANDRILL_CRAWL_JOB_UID": ""}, "MANDRILL_CRAWL_JOB_UID is required"),
        ({"MANDRILL_CRAWL_SPEC": "{not json"}, "MANDRILL_CRAWL_SPEC is not JSON"),
        ({"MANDRILL_CRAWL_SPEC": '{"urlsFrom": {"name": "c", "key": "k"}}'}, "urlsFrom"),
    ],
)
async def test_a_worker_without_what_it_needs_fails_with_one_line(
    postgres_url: str, change: dict[str, str], message: str
) -> None:
    env = {
        **os.environ,
        "MANDRILL_STORE_URL": postgres_url,
        "MANDRILL_CRAWL_JOB_UID": JOB,
        "MANDRILL_CRAWL_SPEC": json.dumps({"urls": ["http://a.test/"]}),
        **change,
    }
    proc = await asyncio.create_subprocess_exec(
        *WORKER, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]


async def test_crawl_delay_holds_when_the_host_changes_hands(
    workers: Workers, postgres_url: str
) -> None:
    delay = 0.25
    robots = f"User-agent: *\nCrawl-delay: {delay}\n"
    async with test_site.serve(hosts=1, pages=30, delay=0.0, robots=robots) as one_host:
        workers.spec, workers.lease = spec_body(one_host.seed), 60.0
        await workers.start("w0", "w1")
        await wait_for_pages(postgres_url, 6)
        (holder,) = await rows(
            postgres_url,
            "SELECT split_part(holder, '/', 1) FROM crawl_host_leases WHERE holder IS NOT NULL",
        )
        workers.procs[holder[0]].send_signal(signal.SIGTERM)
        results = [await workers.finish(name) for name in ("w0", "w1")]
        failures = workers.failures(("w0", "w1"), results)
        starts = one_host.counters[0].starts
        robots_reads = one_host.counters[0].requests["/robots.txt"]
    assert [status for status, _ in results] == [0, 0], failures
    assert all(summary is not None and summary["stored"] > 0 for _, summary in results)
    _, _, states = await stored(postgres_url)
    assert states == {"done": 32}  # 30 pages, 2 missing
    assert robots_reads == 1  # read by the first holder, handed on through the store
    # The server notes a request when its own event loop gets to it, so one noted
    # late (a loaded machine: 50 ms seen) shortens the gap after it. Two checks
    # that lag cannot fake: no gap near zero (a new holder that ignored the
    # delay, or two requests at once), and the spacing as a whole, first to last,
    # which only a late note of the first request shortens (by its lag).
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= delay / 2, sorted(gaps)[:3]
    assert starts[-1] - starts[0] >= (len(starts) - 1) * delay - 0.05, sorted(gaps)[:3]


async def test_a_worker_paused_past_its_leases_holds_no_one_up_and_writes_nothing(
    site: test_site.Site, workers: Workers, postgres_url: str
) -> None:
    body = spec_body(site.seed)
    alone = await reference(body)
    sleeper = await three_workers_under_way(site, workers, postgres_url, body)
    workers.procs[sleeper].send_signal(signal.SIGSTOP)  # slow but alive: a long GC, a frozen VM
    others = [name for name in ("w0", "w1", "w2") if name != sleeper]
    results = [await workers.finish(name) for name in others]
    assert [status for status, _ in results] == [0, 0], workers.failures(others, results)
    pages, edges, states = await stored(postgres_url)
    assert states == {"done": len(alone.pages)}
    assert edges == alone.edges
    fetched = site.fetched()
    workers.procs[sleeper].send_signal(signal.SIGCONT)
    status, summary = await workers.finish(sleeper)
    assert status == 0, workers.log(sleeper)
    assert summary is not None
    assert summary["fenced"] + summary["lost"] > 0  # it woke up holding leases others had taken
    # Awake, it makes no request of its own: only those already on their way when it
    # was paused (checked, not yet sent: at most its host's slots) reach the server.
    late = site.fetched() - fetched
    assert sum(late.values()) <= 2, late
    assert (await stored(postgres_url))[0] == pages  # and not one outcome more


async def test_redirects_across_workers_give_the_edges_of_one_process(
    workers: Workers, postgres_url: str
) -> None:
    async with test_site.serve(hosts=3, pages=100, delay=0.03, redirects=True) as hops:
        body = spec_body(hops.seed)
        alone = await reference(body)
        hops.reset()
        workers.spec = body
        await workers.start("w0", "w1", "w2")
        results = [await workers.finish(name) for name in ("w0", "w1", "w2")]
        fetched = hops.fetched()
    assert [status for status, _ in results] == [0, 0, 0], workers.failures(W3, results)
    _, edges, states = await stored(postgres_url)
    assert edges == alone.edges
    assert set(states) <= {"done", "alias"}
    assert await unique_urls(postgres_url) == alone.unique_urls
    reached = await rows(
        postgres_url, "SELECT url, final_url FROM crawl_pages WHERE job_uid = $1", JOB
    )
    expected = {u for p in alone.pages.values() for u in (p.url, p.final_url)}
    assert {u for row in reached for u in row} == expected
    assert set(fetched) == expected
    # A redirect is followed unless the store already has its target; a target another
    # worker admits in the moment between is the one URL that may be fetched twice.
    twice = {url for url, n in fetched.items() if n > 1}
    assert all("/p/" in url and int(url.rsplit("/", 1)[1]) % 10 == 5 for url in twice), twice
    assert len(twice) <= 3


async def test_workers_ride_out_a_store_outage(
    site: test_site.Site, workers: Workers, postgres_url: str, postgres: PostgresServer
) -> None:
    body = spec_body(site.seed)
    alone = await reference(body)
    site.reset()
    workers.spec = body
    await workers.start("w0", "w1", "w2")
    await wait_for_pages(postgres_url, 40)
    await asyncio.to_thread(postgres.stop, "fast")  # every connection cut
    try:
        await asyncio.sleep(3)
    finally:
        await asyncio.to_thread(postgres.start)
    results = [await workers.finish(name) for name in ("w0", "w1", "w2")]
    assert [status for status, _ in results] == [0, 0, 0], workers.failures(W3, results)
    assert any("trying again" in workers.log(name) for name in ("w0", "w1", "w2"))
    pages, edges, states = await stored(postgres_url)
    assert states == {"done": len(alone.pages)}
    assert set(pages) == set(alone.pages)
    assert edges == alone.edges
    # Leases outlast the outage: no one took anything over, so nothing was fetched twice.
    assert max(site.fetched().values()) == 1


async def test_a_worker_whose_store_stays_away_exits_1_saying_why() -> None:
    secret = "pw-never-in-a-log"
    env = {
        **os.environ,
        "MANDRILL_STORE_URL": f"postgresql://mandrill:{secret}@127.0.0.1:1/nowhere",
        "MANDRILL_CRAWL_JOB_UID": JOB,
        "MANDRILL_CRAWL_SPEC": json.dumps({"urls": ["http://a.test/"]}),
        "MANDRILL_CRAWL_LEASE_SECONDS": "2",  # patience: 10 s, the least there is
    }
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *WORKER, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1
    assert 10 <= time.monotonic() - started < 30
    log = err.decode()
    assert "seeding failed, trying again" in log
    assert "StoreError: cannot open shared frontier postgresql://mandrill:***@" in log
    assert secret not in log
    assert secret not in out.decode()
    assert json.loads(out.decode().strip().splitlines()[-1])["status"] == 1
