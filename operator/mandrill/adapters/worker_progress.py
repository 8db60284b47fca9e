"""A crawl's progress as its workers left it in the store: rows counted, nothing held.

The operator runs no crawl of its own for a CrawlJob on workers, so it keeps
no tally: every look counts the rows the workers wrote. Frontier rows by
state (pending, leased or not, and done; redirect aliases are not URLs of
the crawl's own), and page outcomes by error kind with their bytes and links,
summed as frontier_store's resumption sums them. Two grouped counts over the
tables' job_uid keys: cheap enough every few seconds.
"""

from __future__ import annotations

import attrs

from mandrill.adapters import database
from mandrill.domain.crawl import frontier
from mandrill.domain.crawl.job import JobRef
from mandrill.domain.crawl.worker_status import StoreProgress


@attrs.frozen
class StoreProgressReader:
    """worker_run.ProgressSource over the crawl store's connection."""

    db: database.Database

    async def read(self, job: JobRef) -> StoreProgress:
        states = dict(
            await self.db.fetch(
                "SELECT state, COUNT(*) FROM crawl_frontier WHERE job_uid = ? GROUP BY state",
                (job.uid,),
            )
        )
        pages = await self.db.fetch(
            "SELECT error, COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(SUM(links), 0)"
            " FROM crawl_pages WHERE job_uid = ? GROUP BY error",
            (job.uid,),
        )
        ok = size = links = 0
        failures: dict[str, int] = {}
        for error, count, body_bytes, found in pages:
            size += int(body_bytes)
            links += int(found)
            if error is None:
                ok = int(count)
            else:
                failures[str(error)] = int(count)
        return StoreProgress(
            pending=int(states.get(frontier.State.PENDING.value, 0)),
            done=int(states.get(frontier.State.DONE.value, 0)),
            pages_ok=ok,
            failures=failures,
            links=links,
            bytes=size,
        )
