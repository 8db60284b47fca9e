"""`mandrill crawl --resume STATE`: a local crawl kept in a SQLite file, so it can continue.

The file is a mandrill store (the same tables a CrawlJob's results and
frontier go to) holding one crawl. The crawl writes its outcomes, edges and
frontier there in batches, exactly as the operator does; when it ends, or
is stopped by Ctrl-C, what is buffered is written and the output is
exported from the file, so it always holds the whole crawl so far, across
every run that added to it. Running the same command again continues from
the file: pages with a stored outcome are not fetched again, and pages that
were in flight or buffered at the stop are (see
mandrill.domain.crawl.frontier). The seeds file is read only for a new
crawl; a file whose crawl is finished just exports it again.

A SIGKILL loses only what was buffered or being written: about a second of
pages, a few batches of crawl_store.BATCH_ROWS rows (some 400 pages each) at
most when the disk is slow; those pages are fetched again. The file itself is
consistent at every commit.
"""

from __future__ import annotations

import argparse
import pathlib
import sqlite3
from collections.abc import Callable, Sequence

import attrs

from mandrill.adapters import crawl_store, export, http, ssrf
from mandrill.domain import timestamps
from mandrill.domain.crawl import engine
from mandrill.domain.crawl.job import JobRef, Outcome, Phase
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress
from mandrill.store_url import StoreUrl

LOCAL = JobRef(namespace="local", name="mandrill-crawl", uid="mandrill-crawl-local")
"""The one crawl a state file holds."""

OnPage = Callable[[PageResult, Sequence[Edge], Progress], None]


def state_file(text: str) -> pathlib.Path:
    """The --resume argument: a state file there is, or one that can be made."""
    path = pathlib.Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder, not a state file")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {path.parent} to keep the state file in")
    if path.exists():
        try:
            with open(path, "rb") as f:
                header = f.read(16)
        except OSError as e:
            raise argparse.ArgumentTypeError(f"cannot read {path}: {e.strerror or e}") from e
        if header and header != b"SQLite format 3\x00":
            raise argparse.ArgumentTypeError(f"{path} is not a mandrill state file (SQLite)")
    return path


@attrs.define
class _Tee:
    """Each outcome to the state file, then to the display."""

    sink: crawl_store.BatchingSink
    on_page: OnPage

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        await self.sink.record(result, edges, progress)
        self.on_page(result, edges, progress)


async def crawl(
    spec: CrawlSpec,
    *,
    state: pathlib.Path,
    policy: ssrf.AddressPolicy,
    writer: export.Writer,
    on_page: OnPage,
    notice: Callable[[str], None],
) -> CrawlStats:
    """Crawl (or continue the crawl in `state`), then export all of it to `writer`.

    Cancelled (Ctrl-C), it writes what it has and exports before the
    cancellation goes on. StoreError if the state file cannot be used."""
    url = StoreUrl.parse(f"sqlite:///{state}")
    store = crawl_store.CrawlStore.from_url(url)
    try:
        attempt = await store.attempts(LOCAL) + 1
        started = timestamps.now()
        resumption = await store.begin(LOCAL, attempt=attempt, started=started)
        if resumption is not None:
            notice(
                f"resuming the crawl in {state}: {resumption.done} URLs done, "
                f"{len(resumption.pending)} pending"
            )
        sink = crawl_store.BatchingSink(
            store=store, job_uid=LOCAL.uid, counted=crawl_store.uncounted
        )
        try:
            async with http.HttpFetcher.open(spec=spec, policy=policy) as fetcher:
                stats = await engine.crawl(
                    spec, fetcher=fetcher, sink=_Tee(sink, on_page), log=sink, resume=resumption
                )
        finally:
            await sink.flush()
            await _export(url, writer)
        summary = f"{stats.pages_ok} pages fetched, {stats.pages_failed} failed"
        await store.finish(
            LOCAL,
            Outcome(
                phase=Phase.SUCCEEDED,
                reason="TotalTimeout" if stats.timed_out else "Completed",
                message=summary,
                started=started,
                finished=timestamps.now(),
                stats=stats,
            ),
        )
        return stats
    finally:
        await store.close()


async def _export(url: StoreUrl, writer: export.Writer) -> None:
    """Everything the state file holds, through `writer` (not closed)."""
    try:
        async with crawl_store.ResultsReader.open(url) as reader:
            await reader.export(LOCAL.uid, writer)
    except (crawl_store.StoreMissingError, sqlite3.Error):  # nothing was ever written
        return
