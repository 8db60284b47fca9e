"""Benchmark: the shared frontier's cost per URL with 1, 2, 4, 8 worker processes.

Not a test (nothing here asserts a time): a program that prints a table.

    .venv/bin/python -m tests.bench.shared_frontier [--hosts 32] [--pages 125] [--workers 1,2,4,8]

Each round crawls the same synthetic site of `--hosts` x `--pages` pages
with N real worker processes (`crawl_worker.work`, the code `mandrill
crawl-worker` runs: the engine, the Participant and the PostgreSQL
frontier), on a fresh database of a PostgreSQL server of the benchmark's
own (tests/postgres.py, with the server's default durability: fsync and
synchronous commit on) over TCP. Only the fetcher differs from a real
worker: it makes no request, it answers each URL with a small HTML page of
8 links (to its own host and others) after `--latency` seconds, the time a
server far away would take. So what is measured is the frontier and the
engine, not a network.

Per N: URLs crawled (every one exactly once is checked), the frontier's
transactions and statements (round trips) per URL, the server's own count
of commits per URL (pg_stat_database), the CPU the PostgreSQL server spent
per URL (its processes' times from /proc: the cost the frontier puts on the
database), the wall time the workers spent waiting on the store per URL
(round trips, lock waits, and waiting for a CPU: it grows with load), the
CPU the worker processes spent per URL (engine, parsing, driver; their
start-up, measured alone, left out), and
pages/s over the crawl (the longest worker's run, its Python start-up left
out), with the speed-up over N=1. Per worker: concurrency 8, perHostConcurrency 2, so a
worker holds up to 4 hosts; `--hosts` must be at least 4 x the largest N for
the workers to have hosts to share out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import resource
import sys
from typing import Any

import asyncpg
import attrs

from mandrill.commands import crawl_worker
from mandrill.domain.crawl.models import FetchResult
from mandrill.domain.crawl.ports import BodyFilter
from tests import postgres

JOB = "bench-shared-frontier"
LINKS = 8


@attrs.frozen
class SyntheticFetcher:
    """Answers every URL of the synthetic site after `latency` seconds; no network."""

    hosts: int
    pages: int
    latency: float

    async def fetch(self, url: str, *, max_bytes: int, want_body: BodyFilter) -> FetchResult:
        await asyncio.sleep(self.latency)
        authority, _, path = url.partition("://")[2].partition("/")
        if path == "robots.txt":
            return FetchResult(url=url, status=404, content_type="text/plain")
        h = int(authority.split(".")[0][1:])
        i = int(path.rsplit("/", 1)[1])
        links = []
        for k in range(LINKS):
            host = h if k < LINKS // 2 else (h * 5 + k) % self.hosts
            links.append(f'<a href="http://h{host}.bench/p/{(i * 7 + k * 13 + 1) % self.pages}">')
        body = ("<html><body>" + "x</a> ".join(links) + "x</a></body></html>").encode()
        return FetchResult(url=url, status=200, content_type="text/html", body=body)


def spec(hosts: int) -> dict[str, Any]:
    return {
        "urls": [f"http://h{h}.bench/p/0" for h in range(hosts)],
        "maxDepth": 1000,
        "maxPages": 1_000_000,
        "concurrency": 8,
        "perHostConcurrency": 2,
        "respectRobotsTxt": True,
    }


async def _worker(args: argparse.Namespace) -> int:
    """One worker process of a round (the benchmark runs itself with `worker`)."""
    config = crawl_worker.WorkerConfig.from_env(os.environ)
    fetcher = SyntheticFetcher(hosts=args.hosts, pages=args.pages, latency=args.latency)
    summary = await crawl_worker.work(config, fetcher=fetcher)
    print(summary.line(), flush=True)
    return summary.status


TICK = os.sysconf("SC_CLK_TCK")


def _server_cpu(server: postgres.PostgresServer) -> float:
    """CPU seconds the PostgreSQL server has used: the postmaster, the backends it has
    reaped (a worker's backend ends with it) and its processes still running."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
        elif ppid == postmaster:
            total += sum(int(f) for f in fields[11:13]) / TICK
    return total


def _workers_cpu() -> float:
    """CPU seconds of this process's children that have ended (the worker processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _round(
    server: postgres.PostgresServer, url: str, n: int, args: argparse.Namespace, startup: float
) -> dict[str, Any]:
    env = {
        **os.environ,
        "MANDRILL_STORE_URL": url,
        "MANDRILL_CRAWL_JOB_UID": JOB,
        "MANDRILL_CRAWL_SPEC": json.dumps(spec(args.hosts)),
        "MANDRILL_LOG_LEVEL": "WARNING",
    }
    conn = await asyncpg.connect(url)
    try:
        commits0 = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        server0, workers0 = _server_cpu(server), _workers_cpu()
        command = [sys.executable, "-m", "tests.bench.shared_frontier", "worker"]
        command += ["--hosts", str(args.hosts), "--pages", str(args.pages)]
        command += ["--latency", str(args.latency)]
        procs = [
            await asyncio.create_subprocess_exec(
                *command,
                env={**env, "MANDRILL_WORKER_ID": f"bench-{k}"},
                stdout=asyncio.subprocess.PIPE,
            )
            for k in range(n)
        ]
        outputs = [await p.communicate() for p in procs]
        server_cpu = _server_cpu(server) - server0
        workers_cpu = _workers_cpu() - workers0 - n * startup
        summaries = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
        assert all(s["status"] == 0 for s in summaries), summaries
        await asyncio.sleep(1.5)  # backends report their statistics within a second
        commits = (
            await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            - commits0
        )
        ((pages, distinct),) = await conn.fetch(
            "SELECT COUNT(*), COUNT(DISTINCT url) FROM crawl_pages WHERE job_uid = $1", JOB
        )
        pending = await conn.fetchval(
            "SELECT COUNT(*) FROM crawl_frontier WHERE job_uid = $1 AND state = 'pending'", JOB
        )
    finally:
        await conn.close()
    assert pages == distinct == args.hosts * args.pages, (pages, distinct)
    assert pending == 0
    stored = sum(s["stored"] for s in summaries)
    assert stored == pages, (stored, pages)
    span = max(s["elapsed"] for s in summaries)  # each from its own start, after imports
    return {
        "n": n,
        "urls": stored,
        "tx": sum(s["transactions"] for s in summaries) / stored,
        "stmts": sum(s["statements"] for s in summaries) / stored,
        "db_ms": 1000 * sum(s["db_seconds"] for s in summaries) / stored,
        "commits": commits / stored,
        "pg_cpu_ms": 1000 * server_cpu / stored,
        "worker_cpu_ms": 1000 * workers_cpu / stored,
        "pages_s": stored / span,
    }


async def _startup_cpu() -> float:
    """CPU seconds one worker process spends starting (Python and imports), to leave out."""
    before = _workers_cpu()
    for _ in range(3):
        command = [sys.executable, "-m", "tests.bench.shared_frontier", "startup"]
        await (await asyncio.create_subprocess_exec(*command)).wait()
    return (_workers_cpu() - before) / 3


async def _bench(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    startup = await _startup_cpu()
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"site {args.hosts} hosts x {args.pages} pages, latency {args.latency * 1000:.0f} ms"
    )
    with postgres.server(settings=()) as server:
        results = []
        for n in counts:
            database = server.create_database("bench")
            results.append(await _round(server, server.url(database), n, args, startup))
    base = results[0]["pages_s"]
    print(
        f"{'N':>3} {'URLs':>6} {'tx/URL':>7} {'stmts/URL':>10} {'commits/URL':>12} "
        f"{'PG CPU ms/URL':>14} {'DB wall ms/URL':>15} {'worker CPU ms/URL':>18} "
        f"{'pages/s':>8} {'vs N=1':>7}"
    )
    for r in results:
        print(
            f"{r['n']:>3} {r['urls']:>6} {r['tx']:>7.2f} {r['stmts']:>10.2f} "
            f"{r['commits']:>12.2f} {r['pg_cpu_ms']:>14.2f} {r['db_ms']:>15.2f} "
            f"{r['worker_cpu_ms']:>18.2f} {r['pages_s']:>8.0f} {r['pages_s'] / base:>6.2f}x"
        )
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "worker", "startup"])
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--pages", type=int, default=125, help="pages per host")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per fetch")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, in turn")
    args = parser.parse_args()
    if args.role == "startup":  # a worker's imports and nothing else: its start-up CPU
        return
    if args.role == "worker":
        with contextlib.suppress(KeyboardInterrupt):
            sys.exit(asyncio.run(_worker(args)))
    asyncio.run(_bench(args))


if __name__ == "__main__":
    main()
