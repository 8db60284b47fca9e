"""The store's schema version and its forward migrations, on both backends.

Covers: a new store is created at the latest version; a SQLite file written
by mandrill before the store had versions opens, is adopted as version 1 and
keeps its rows; a migration added later is applied once, on the next open,
and keeps the data; a migration that fails leaves the store at its old
version with nothing half done; a store newer than the code is refused;
several openers at once (two replicas starting) migrate once; and the
versions are 1, 2, 3, ... in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import pathlib
import sqlite3
from collections.abc import Sequence

import pytest

from mandrill.adapters import crawl_store, database, export, postgres, schema, sqlite
from mandrill.adapters.journal import StoreJournal
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.models import RequestRef
from mandrill.domain.restart.process import JournalEntry
from mandrill.store_url import StoreUrl
from tests.store.conftest import SQLITE, Store

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS restart_journal (
    request_uid  TEXT PRIMARY KEY,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    spec_json    TEXT NOT NULL,
    targets_json TEXT NOT NULL,
    received_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS crawl_jobs (
    job_uid     TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    phase       TEXT NOT NULL,
    reason      TEXT,
    stats_json  TEXT
);
CREATE INDEX IF NOT EXISTS crawl_jobs_by_name ON crawl_jobs (namespace, name);
CREATE TABLE IF NOT EXISTS crawl_pages (
    job_uid      TEXT NOT NULL,
    url          TEXT NOT NULL,
    final_url    TEXT NOT NULL,
    depth        INTEGER NOT NULL,
    status       INTEGER,
    error        TEXT,
    message      TEXT NOT NULL,
    content_type TEXT,
    bytes        INTEGER NOT NULL,
    links        INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    elapsed      REAL NOT NULL,
    PRIMARY KEY (job_uid, url)
);
CREATE TABLE IF NOT EXISTS crawl_edges (
    job_uid TEXT NOT NULL,
    source  TEXT NOT NULL,
    target  TEXT NOT NULL,
    PRIMARY KEY (job_uid, source, target)
);
"""
"""The schema, verbatim, of mandrill's SQLite store before it had versions (the
journal's and the crawl store's SCHEMA strings): files of that code are out there."""

LATEST = schema.latest()
EVERY_VERSION = list(range(1, LATEST + 1))
ADD_NOTE = schema.Migration(
    version=LATEST + 1,
    description="test: a note on each journal row",
    sqlite=("ALTER TABLE restart_journal ADD COLUMN note TEXT",),
    postgresql=("ALTER TABLE restart_journal ADD COLUMN note TEXT",),
)


def entry(uid: str) -> JournalEntry:
    return JournalEntry(
        request=RequestRef(namespace="shop", name=uid, uid=uid), spec={}, targets=(), received=NOW
    )


def opener(store: Store, migrations: Sequence[schema.Migration]) -> database.Database:
    """The store's Database with another list of migrations (a later mandrill's, say)."""
    if store.backend == SQLITE:
        return sqlite.SqliteDatabase(path=store.path, what="journal", migrations=migrations)
    return postgres.PostgresDatabase(
        url=StoreUrl.parse(store.url), what="journal", migrations=migrations
    )


async def versions(store: Store) -> list[int]:
    return [int(v) for (v,) in await store.query("SELECT version FROM mandrill_schema")]


async def test_a_new_store_is_created_at_the_latest_version(store: Store) -> None:
    crawls = crawl_store.CrawlStore.from_url(store.url)
    await crawls.open()
    await crawls.close()
    assert await versions(store) == EVERY_VERSION
    assert await store.tables() == {
        "mandrill_schema",
        "restart_journal",
        "crawl_jobs",
        "crawl_pages",
        "crawl_edges",
        "crawl_frontier",
        "crawl_hosts",
        "crawl_host_leases",
        "crawl_budget",
    }
    descriptions = await store.query("SELECT description FROM mandrill_schema ORDER BY version")
    assert descriptions == [(m.description,) for m in schema.MIGRATIONS]


async def test_a_sqlite_file_from_before_versions_is_adopted_with_its_rows(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "mandrill.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(UNVERSIONED_SCHEMA)
        db.execute(
            "INSERT INTO restart_journal VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old-uid", "shop", "old", 1, "{}", "[]", "2025-01-01T00:00:00.000000Z"),
        )
        db.execute(
            "INSERT INTO crawl_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("job-old", "team", "links", 1, "2025-01-01T00:00:00Z", None, "Running", None, None),
        )
        db.execute(
            "INSERT INTO crawl_pages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "job-old",
                "https://a.test/",
                "https://a.test/",
                0,
                200,
                None,
                "",
                None,
                10,
                1,
                1,
                0.1,
            ),
        )
        db.execute(
            "INSERT INTO crawl_edges VALUES (?, ?, ?)",
            ("job-old", "https://a.test/", "https://a.test/b"),
        )
        db.commit()
    store = Store(backend=SQLITE, url=f"sqlite:///{path}")

    journal = StoreJournal.from_url(StoreUrl.parse(store.url))
    await journal.save(entry("new-uid"))
    await journal.close()

    assert await versions(store) == EVERY_VERSION
    assert await store.query("SELECT request_uid FROM restart_journal ORDER BY 1") == [
        ("new-uid",),
        ("old-uid",),
    ]
    async with crawl_store.ResultsReader.open(store.url) as reader:
        out = io.StringIO()
        writer = export.open_writer("tsv", out)
        assert await reader.export("job-old", writer) == 1
        writer.close()
    assert out.getvalue().splitlines()[1:] == ["https://a.test/\thttps://a.test/b"]


async def test_a_later_migration_is_applied_once_and_keeps_the_data(store: Store) -> None:
    journal = StoreJournal.from_url(StoreUrl.parse(store.url))
    await journal.save(entry("before"))
    await journal.close()

    later = (*schema.MIGRATIONS, ADD_NOTE)
    for _ in range(2):  # applied again, ADD COLUMN would fail: the second open must skip it
        db = opener(store, later)
        await db.open()
        await db.close()

    assert await versions(store) == [*EVERY_VERSION, LATEST + 1]
    assert "note" in await store.columns("restart_journal")
    assert await store.query("SELECT request_uid, note FROM restart_journal") == [("before", None)]


async def test_a_failed_migration_leaves_the_old_version_and_nothing_half_done(
    store: Store,
) -> None:
    journal = StoreJournal.from_url(StoreUrl.parse(store.url))
    await journal.open()
    await journal.close()
    broken = schema.Migration(
        version=LATEST + 1,
        description="test: a table, then a statement that fails",
        sqlite=("CREATE TABLE half_done (x INTEGER)", "ALTER TABLE no_such_table ADD COLUMN y"),
        postgresql=(
            "CREATE TABLE half_done (x INTEGER)",
            "ALTER TABLE no_such_table ADD COLUMN y TEXT",
        ),
    )
    db = opener(store, (*schema.MIGRATIONS, broken))
    with pytest.raises(StoreError, match="cannot open journal"):
        await db.open()
    await db.close()
    assert await versions(store) == EVERY_VERSION
    assert "half_done" not in await store.tables()


async def test_a_store_newer_than_the_code_is_refused(store: Store) -> None:
    db = opener(store, (*schema.MIGRATIONS, ADD_NOTE))
    await db.open()
    await db.close()

    journal = StoreJournal.from_url(StoreUrl.parse(store.url))
    with pytest.raises(
        StoreError, match=f"schema version {LATEST + 1}, newer than this mandrill knows"
    ):
        await journal.save(entry("refused"))
    await journal.close()
    assert await store.query("SELECT COUNT(*) FROM restart_journal") == [(0,)]


async def test_openers_at_the_same_time_migrate_once(store: Store) -> None:
    """Replicas starting together (and each one's journal and crawl store) race to migrate."""
    if store.backend == SQLITE:
        sqlite3.connect(store.path).close()  # the file exists; SQLite's locks do the rest
    openers = [opener(store, (*schema.MIGRATIONS, ADD_NOTE)) for _ in range(4)] + [
        crawl_store.CrawlStore.from_url(store.url).db for _ in range(2)
    ]
    results = await asyncio.gather(*(db.open() for db in openers), return_exceptions=True)
    for db in openers:
        await db.close()
    # The two at the latest version may find the store one newer and refuse it;
    # nobody applies twice.
    assert [r for r in results[:4] if r is not None] == []
    assert await versions(store) == [*EVERY_VERSION, LATEST + 1]
    assert await store.query("SELECT COUNT(*) FROM mandrill_schema") == [(LATEST + 1,)]


async def test_a_version_1_store_gains_the_frontier_tables_and_keeps_its_results(
    store: Store,
) -> None:
    """Migration 2 (crawl frontier, per-origin state) on a store written at version 1."""
    first = opener(store, schema.MIGRATIONS[:1])
    await first.open()
    await first.write(
        [
            (
                "INSERT INTO crawl_pages (job_uid, url, final_url, depth, status, error, message,"
                " content_type, bytes, links, attempts, elapsed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        "job-1",
                        "https://a.test/",
                        "https://a.test/",
                        0,
                        200,
                        None,
                        "",
                        None,
                        5,
                        0,
                        1,
                        0.1,
                    )
                ],
            )
        ]
    )
    await first.close()
    assert await versions(store) == [1]
    assert "crawl_frontier" not in await store.tables()

    crawls = crawl_store.CrawlStore.from_url(store.url)
    await crawls.open()
    await crawls.close()
    assert await versions(store) == EVERY_VERSION
    assert {"crawl_frontier", "crawl_hosts"} <= await store.tables()
    assert await store.columns("crawl_frontier") == [
        "job_uid", "url", "state", "depth", "parent", "host", "ordinal", "attempt",
        "leased_by", "lease_until",
    ]  # fmt: skip
    assert await store.query("SELECT url FROM crawl_pages WHERE job_uid = ?", "job-1") == [
        ("https://a.test/",)
    ]


def test_versions_are_consecutive_from_one() -> None:
    schema.check(schema.MIGRATIONS)
    assert schema.latest() == len(schema.MIGRATIONS)
    with pytest.raises(ValueError, match=r"not 1\.\.2"):
        schema.check((schema.MIGRATIONS[0], schema.MIGRATIONS[0]))


def test_both_backends_have_every_migration() -> None:
    for migration in schema.MIGRATIONS:
        assert migration.sqlite, migration.version
        assert migration.postgresql, migration.version
