"""Benchmark: the store's write paths, as the operator drives them, SQLite and PostgreSQL.

Not a test (nothing here asserts a time): a program that prints a table.

    .venv/bin/python -m tests.bench.store_writes [--pages 20000] [--links 10] [--rounds 3]

Backends: a SQLite file in a temporary folder, and a PostgreSQL server of
the benchmark's own (tests/postgres.py, with the server's default
durability: fsync and synchronous commit on) on 127.0.0.1, over TCP with
password authentication as in a cluster; `--postgres-url URL` uses another
server instead, `--no-postgres` leaves it out. The backends run in turn,
interleaved round by round, so both see the same machine.

Two workloads, each on a fresh store per round:

- crawl: `--pages` page outcomes with `--links` links each recorded through
  the crawl store's BatchingSink, one `record` per page as the engine calls
  it, then the final flush; rows/s counts pages + edges written, over the
  span from the first record to the end of the flush;
- journal: `--saves` RestartRequest journal rows saved `--concurrency` at a
  time (the operator works on up to 64 requests at once), saves/s;
- export: the crawl's pages and edges read back as `mandrill results` does
  (ResultsReader.export into a TSV writer in memory), pages/s.

The table shows each workload's best round (the least disturbed by the rest
of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator

from mandrill.adapters import crawl_store, export
from mandrill.adapters.journal import StoreJournal
from mandrill.domain.crawl.job import JobRef
from mandrill.domain.crawl.models import EdgeList, PageResult, Progress
from mandrill.domain.restart.models import Kind, Outcome, RequestRef, TargetResult
from mandrill.domain.restart.process import JournalEntry
from mandrill.store_url import StoreUrl
from tests import postgres

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
PROGRESS = Progress(done=1, scheduled=1, failed=0, elapsed=0.1)


def pages(count: int, links: int) -> list[tuple[PageResult, EdgeList]]:
    """`count` page outcomes of `links` links each, made before the clock starts."""
    made = []
    for n in range(count):
        url = f"https://site.test/p/{n}"
        targets = tuple(f"https://site.test/p/{n}/{k}" for k in range(links))
        result = PageResult(url=url, depth=1, final_url=url, status=200, links=links, size=4096)
        made.append((result, EdgeList(url, targets)))
    return made


async def crawl_round(url: str, recorded: list[tuple[PageResult, EdgeList]]) -> tuple[float, float]:
    """Rows (pages + edges) per second through the batching sink, and pages/s exported."""
    store = crawl_store.CrawlStore.from_url(url)
    await store.open()
    job = JobRef(namespace="bench", name="crawl", uid="bench-uid")
    await store.begin(job, attempt=1, started=NOW)
    sink = store.sink(job)
    started = time.perf_counter()
    for result, edges in recorded:
        await sink.record(result, edges, PROGRESS)
    await sink.flush()
    elapsed = time.perf_counter() - started
    await store.close()
    rows = sum(1 + len(edges.targets) for _, edges in recorded)
    started = time.perf_counter()
    async with crawl_store.ResultsReader.open(url) as reader:
        writer = export.open_writer("tsv", io.StringIO())
        exported = await reader.export(job.uid, writer)
        writer.close()
    return rows / elapsed, exported / (time.perf_counter() - started)


async def journal_round(url: str, saves: int, concurrency: int) -> float:
    """Journal saves per second, `concurrency` at a time."""
    journal = StoreJournal.from_url(StoreUrl.parse(url))
    await journal.open()
    target = TargetResult(
        kind=Kind.POD, name="web", uid="t", action="Delete", outcome=Outcome.PENDING
    )
    entries = [
        JournalEntry(
            request=RequestRef(namespace="bench", name=f"r{n}", uid=f"req-{n}", generation=1),
            spec={"target": {"kind": "Pod", "name": "web"}},
            targets=(target,),
            received=NOW,
        )
        for n in range(saves)
    ]
    gate = asyncio.Semaphore(concurrency)

    async def save(entry: JournalEntry) -> None:
        async with gate:
            await journal.save(entry)

    started = time.perf_counter()
    await asyncio.gather(*(save(e) for e in entries))
    elapsed = time.perf_counter() - started
    await journal.close()
    return saves / elapsed


@contextlib.contextmanager
def backends(args: argparse.Namespace) -> Iterator[dict[str, Callable[[str], str]]]:
    """Backend name -> a function from a store name to a fresh store's URL."""
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp, contextlib.ExitStack() as stack:
        made: dict[str, Callable[[str], str]] = {"sqlite": lambda name: f"sqlite:///{tmp}/{name}"}
        if args.postgres_url:
            base = args.postgres_url.rsplit("/", 1)[0]
            server = None
        elif not args.no_postgres:
            server = stack.enter_context(postgres.server(settings=()))
            base = server.url().rsplit("/", 1)[0]
        if args.postgres_url or not args.no_postgres:

            def database(name: str) -> str:
                db = name.replace("-", "_").replace(".", "_")
                if server is not None:
                    server.psql(f"CREATE DATABASE {db}")
                return f"{base}/{db}"

            made["postgresql"] = database
        yield made


async def run(args: argparse.Namespace) -> None:
    recorded = pages(args.pages, args.links)
    rates: dict[str, tuple[list[float], list[float], list[float]]] = {}
    with backends(args) as urls:
        for r in range(args.rounds):
            for backend, url_of in urls.items():
                crawl, journal, exports = rates.setdefault(backend, ([], [], []))
                written, read = await crawl_round(url_of(f"crawl-{r}"), recorded)
                crawl.append(written)
                exports.append(read)
                journal.append(
                    await journal_round(url_of(f"journal-{r}"), args.saves, args.concurrency)
                )
    rows = args.pages * (1 + args.links)
    print(
        f"store writes, best of {args.rounds}; {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {datetime.date.today()}"
    )
    print(f"{'backend':<10} {'crawl rows/s':>14} {'journal saves/s':>16} {'export pages/s':>15}")
    for backend, (crawl, journal, exports) in rates.items():
        print(f"{backend:<10} {max(crawl):>14,.0f} {max(journal):>16,.0f} {max(exports):>15,.0f}")
    print(
        f"(crawl: {args.pages} pages x {args.links} links = {rows} rows; "
        f"journal: {args.saves} saves, {args.concurrency} at a time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--links", type=int, default=10)
    parser.add_argument("--saves", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", help="a server to use (its database part is replaced)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
