"""A crawl's progress as its workers left it in the store: rows counted, nothing held.

The operator runs no crawl of its own for a CrawlJob on workers, so it keeps
no tally: every look counts the rows the workers wrote. Frontier rows by
state (pending, leased or not, and done; redirect aliases are not URLs of
the crawl's own), and page outcomes by error kind with their bytes and links,
summed by frontier_store.stored_counts, as a resumption's are. Two grouped counts over the
tables' job_uid keys: cheap enough every few seconds. The distinct URLs met (the
frontier's and every link target, as a single process's `known` set) are
counted once, at the end: a union over every edge is not worth every look.
"""

from __future__ import annotations

import attrs

from mandrill.adapters import database, frontier_store
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
        counts, _ = await frontier_store.stored_counts(self.db, job.uid)
        return StoreProgress(
            pending=int(states.get(frontier.State.PENDING.value, 0)),
            done=int(states.get(frontier.State.DONE.value, 0)),
            pages_ok=counts.pages_ok,
            failures=counts.failures,
            links=counts.edges,
            bytes=counts.bytes,
        )

    async def unique_urls(self, job: JobRef) -> int:
        """Distinct URLs the crawl met: admitted or reached by a redirect, or linked to."""
        ((count,),) = await self.db.fetch(
            "SELECT COUNT(*) FROM (SELECT url FROM crawl_frontier WHERE job_uid = ?"
            " UNION SELECT target FROM crawl_edges WHERE job_uid = ?) AS met",
            (job.uid, job.uid),
        )
        return int(count)
