"""The restart journal, in the store (SQLite or PostgreSQL: see database.py).

Writes are keyed by the request's UID and use INSERT ... ON CONFLICT DO
NOTHING, so a replayed request never duplicates a row. The database is opened
lazily and re-opened after a failure: a store that is down at start-up or for
a while costs Saved=False on the requests of that time, never the operator.

Saves are group-committed: the operator works on up to 64 requests at once,
and the rows that arrive while one transaction commits go together in the
next one (one executemany, one commit, one fsync), each save returning once
its own row is committed. A failed transaction fails every save in it; each
is retried on its own (journal_retry.py), and no journal row can make a
transaction fail that others share (every value is typed, the JSON escaped).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Literal

import attrs

from mandrill.adapters import database
from mandrill.domain import timestamps
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.process import JournalEntry
from mandrill.store_url import StoreUrl

INSERT = (
    "INSERT INTO restart_journal"
    " (request_uid, namespace, name, generation, spec_json, targets_json, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_uid) DO NOTHING"
)
Row = tuple[str, str, str, int, str, str, str]
SaveOutcome = Literal["saved", "failed"]


def _unobserved(_: SaveOutcome) -> None:
    return None


def row_of(entry: JournalEntry) -> Row:
    """A restart_journal row."""
    return (
        entry.request.uid,
        entry.request.namespace,
        entry.request.name,
        entry.request.generation,
        json.dumps(dict(entry.spec), sort_keys=True),
        json.dumps([t.to_status() for t in entry.targets]),
        timestamps.format(entry.received),
    )


@attrs.define
class StoreJournal:
    """`Journal` over the store, shared by all requests of the process."""

    db: database.Database
    transactions: int = 0
    """Transactions written, for tests and the benchmark."""
    on_save: Callable[[SaveOutcome], None] = _unobserved
    """Told the outcome of every save, first ones and retries (the metrics' journal counter)."""
    _pending: list[tuple[Row, asyncio.Future[None]]] = attrs.Factory(list)
    _writer: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls, url: StoreUrl, *, on_save: Callable[[SaveOutcome], None] = _unobserved
    ) -> StoreJournal:
        return cls(db=database.for_url(url, what="journal"), on_save=on_save)

    async def open(self) -> None:
        """Connect and migrate now, so a misconfigured store shows at start-up in the log."""
        await self.db.open()

    async def save(self, entry: JournalEntry) -> None:
        """Return once the row is committed; StoreError if its transaction failed."""
        saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row_of(entry), saved))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="journal writer")
        # A cancelled save cancels only its wait: the writer belongs to every save in its batch.
        try:
            await saved
        except StoreError:
            self.on_save("failed")
            raise
        self.on_save("saved")

    async def _write_pending(self) -> None:
        """Write what is pending, one transaction per round, until nothing is."""
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [row for row, saved in batch if not saved.done()]
            failure: BaseException | None = None
            try:
                if rows:
                    await self.db.write([(INSERT, rows)])
                    self.transactions += 1
            except StoreError as e:
                failure = e
            except BaseException as e:  # cancelled (close) or a bug: no save may wait forever
                failure = e
                raise
            finally:
                for _, saved in batch:
                    if saved.done():
                        continue
                    if failure is None:
                        saved.set_result(None)
                    elif isinstance(failure, StoreError):
                        saved.set_exception(StoreError(str(failure)))
                    else:
                        saved.set_exception(StoreError(f"journal write interrupted: {failure!r}"))

    async def close(self) -> None:
        """Finish the writes under way, then close the connection."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.db.close()
