"""`mandrill crawl-worker`: one of N processes crawling a CrawlJob from a frontier they share.

Started by the operator as a pod of an Indexed Job (spec.workers >= 2), or
by hand. Configured from the environment only, so a pod template is all it
needs:

    MANDRILL_STORE_URL     postgresql://... (required: the frontier is shared there)
    MANDRILL_CRAWL_JOB_UID the CrawlJob's metadata.uid (required)
    MANDRILL_CRAWL_SPEC    the CrawlJob's .spec as JSON, as the API server returns it
    MANDRILL_CRAWL_SEEDS   the seeds, one a line, for a spec with urlsFrom (a worker
                           cannot read ConfigMaps); otherwise spec.urls
    MANDRILL_WORKER_ID     default $HOSTNAME; leases are held as ID/random, per process
    JOB_COMPLETION_INDEX   set by an Indexed Job; logged
    MANDRILL_LOG_FORMAT    text or json, as the operator's; MANDRILL_LOG_LEVEL
    MANDRILL_CRAWL_ALLOW_PRIVATE   the operator's SSRF switch (default false)
    MANDRILL_CRAWL_LEASE_SECONDS   lease length (default 30): how long a dead
                           worker's URLs wait before the others take them

Every worker seeds the frontier (idempotently), then crawls what it leases
(see mandrill.domain.crawl.shared). Exit status 0 when the crawl is finished
(no URL pending anywhere) or the total timeout ended it, 1 on an error it
cannot get past (the store gone for longer than its patience, a bad
setting), logged. SIGTERM (or SIGINT): it stops leasing and fetching, writes
the outcomes it has, gives back its leases and exits 0, within a few
seconds. On exit it prints one JSON line on stdout: what it did and what
the frontier cost it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from mandrill import store_url
from mandrill.adapters import http, shared_frontier, ssrf
from mandrill.domain.crawl import engine, job_run, ports, shared
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress

log = logging.getLogger("mandrill.crawl_worker")
CLOSE_TIMEOUT = 5.0
"""Seconds a stopping worker spends writing what it has and giving back its leases."""
PROGRESS_SECONDS = 10.0


class ConfigError(ValueError):
    """A missing or bad environment variable."""


@attrs.frozen
class WorkerConfig:
    """The worker's settings, from its environment."""

    store: store_url.StoreUrl
    job_uid: str
    spec: CrawlSpec
    worker_id: str
    index: str | None
    allow_private: bool
    lease: float
    log_format: str
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerConfig:
        """ConfigError naming the first variable that is missing or wrong."""
        url = _required(env, "MANDRILL_STORE_URL")
        try:
            store = store_url.StoreUrl.parse(url)
        except ValueError as e:
            raise ConfigError(f"MANDRILL_STORE_URL: {e}") from e
        if store.backend != "postgresql":
            raise ConfigError(
                f"MANDRILL_STORE_URL must be postgresql://...: workers share their frontier "
                f"in PostgreSQL, not in {store.redacted}"
            )
        job_uid = _required(env, "MANDRILL_CRAWL_JOB_UID")
        try:
            body = json.loads(_required(env, "MANDRILL_CRAWL_SPEC"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"MANDRILL_CRAWL_SPEC is not JSON: {e}") from e
        if not isinstance(body, dict):
            raise ConfigError("MANDRILL_CRAWL_SPEC must be a JSON object (the CrawlJob's .spec)")
        seeds: list[str] | None = None
        if env.get("MANDRILL_CRAWL_SEEDS"):
            seeds = job_run.parse_url_list(env["MANDRILL_CRAWL_SEEDS"])
        elif body.get("urlsFrom") and not body.get("urls"):
            raise ConfigError(
                "the spec takes its seeds from a ConfigMap (urlsFrom): give them in "
                "MANDRILL_CRAWL_SEEDS, since a worker cannot read ConfigMaps"
            )
        try:
            spec = CrawlSpec.from_spec(body, seeds=seeds)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"MANDRILL_CRAWL_SPEC: {e}") from e
        try:
            lease = float(env.get("MANDRILL_CRAWL_LEASE_SECONDS", "30"))
        except ValueError as e:
            raise ConfigError(f"MANDRILL_CRAWL_LEASE_SECONDS: {e}") from e
        if lease <= 0:
            raise ConfigError("MANDRILL_CRAWL_LEASE_SECONDS must be > 0")
        allow = env.get("MANDRILL_CRAWL_ALLOW_PRIVATE", "false").strip().lower()
        if allow not in {"true", "false", "1", "0", ""}:
            raise ConfigError("MANDRILL_CRAWL_ALLOW_PRIVATE must be true or false")
        log_format = env.get("MANDRILL_LOG_FORMAT", "text")
        if log_format not in {"text", "json"}:
            raise ConfigError("MANDRILL_LOG_FORMAT must be text or json")
        return cls(
            store=store,
            job_uid=job_uid,
            spec=spec,
            worker_id=env.get("MANDRILL_WORKER_ID") or env.get("HOSTNAME") or socket.gethostname(),
            index=env.get("JOB_COMPLETION_INDEX"),
            allow_private=allow in {"true", "1"},
            lease=lease,
            log_format=log_format,
            log_level=env.get("MANDRILL_LOG_LEVEL", "INFO").upper(),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required")
    return value


def add_parser(sub: Any) -> None:
    sub.add_parser(
        "crawl-worker",
        help="crawl a CrawlJob as one of several workers sharing its frontier in PostgreSQL",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = WorkerConfig.from_env(os.environ)
    except ConfigError as e:
        print(f"mandrill crawl-worker: {e}", file=sys.stderr)
        return 1
    _configure_logging(config)
    return asyncio.run(_main(config))


def _configure_logging(config: WorkerConfig) -> None:
    import kopf

    kopf.configure(
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object",
        log_prefix=config.log_format != "json",
    )
    logging.getLogger().setLevel(config.log_level)
    store_url.scrub_logs(config.store)


@attrs.define
class _Progress:
    """The engine's sink in a worker: the store's writes are the participant's; this logs."""

    every: float = PROGRESS_SECONDS
    pages: int = 0
    _last: float = attrs.Factory(time.monotonic)

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        self.pages += 1
        if time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            log.info("%d pages crawled by this worker", self.pages)


@attrs.frozen
class Summary:
    """What one worker did, and what the frontier cost it: its last line on stdout."""

    status: int
    holder: str
    stored: int
    fenced: int
    lost: int
    transactions: int
    statements: int
    db_seconds: float
    elapsed: float
    stopped: bool
    timed_out: bool

    def line(self) -> str:
        return json.dumps(attrs.asdict(self))


async def _main(config: WorkerConfig) -> int:
    policy = ssrf.AddressPolicy(allow_private=config.allow_private)
    try:
        async with http.HttpFetcher.open(spec=config.spec, policy=policy) as fetcher:
            summary = await work(config, fetcher=fetcher)
    except Exception:
        log.exception("crawl-worker failed")
        return 1
    print(summary.line(), flush=True)
    return summary.status


async def work(config: WorkerConfig, *, fetcher: ports.Fetcher) -> Summary:
    """Seed, crawl what this worker leases until the shared frontier is finished (or
    SIGTERM, or the total timeout), then write and give back what it holds."""
    holder = shared.holder_id(config.worker_id)
    timing = shared.Timing.for_lease(config.lease, request_timeout=config.spec.request_timeout)
    store = shared_frontier.PostgresSharedFrontier.from_url(
        config.store, job_uid=config.job_uid, idle_timeout=max(1.0, config.lease / 2)
    )
    participant = shared.Participant(store=store, spec=config.spec, holder=holder, timing=timing)
    log.info(
        "crawl-worker %s (index %s) for job %s, store %s",
        holder,
        config.index if config.index is not None else "-",
        config.job_uid,
        config.store.redacted,
    )
    started = time.monotonic()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    crawl: asyncio.Task[CrawlStats] | None = None

    def on_signal(signum: signal.Signals) -> None:
        log.info("%s: stopping: no more leases, writing outcomes, giving leases back", signum.name)
        stopping.set()
        if crawl is not None:
            crawl.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    stats: CrawlStats | None = None
    status = 0
    try:
        admitted = await participant.seed()
        log.info("seeded: %d new frontier rows", admitted)
        crawl = asyncio.create_task(
            engine.crawl(config.spec, fetcher=fetcher, sink=_Progress(), participant=participant)
        )
        if stopping.is_set():
            crawl.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            stats = await crawl
    except Exception:
        log.exception("crawl-worker %s failed", holder)
        status = 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await participant.close()
        except Exception as e:  # the leases run out by themselves
            log.warning("could not write or give back everything: %s", e)
            status = status or (0 if stopping.is_set() else 1)
        await store.close()
    counters = store.counters
    log.info(
        "crawl-worker %s done: %d outcomes stored, %d dropped by fencing",
        holder,
        participant.stored,
        participant.fenced,
    )
    return Summary(
        status=status,
        holder=holder,
        stored=participant.stored,
        fenced=participant.fenced,
        lost=participant.lost,
        transactions=counters.transactions,
        statements=counters.statements,
        db_seconds=round(counters.seconds, 6),
        elapsed=round(time.monotonic() - started, 6),
        stopped=stopping.is_set(),
        timed_out=stats.timed_out if stats is not None else False,
    )
