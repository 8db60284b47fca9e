"""The store's schema, as numbered forward migrations for each backend.

The journal and the crawl results share one store, so they share one schema
version: table `mandrill_schema` holds a row per migration applied. Whoever
opens the store first (the journal's or the crawl store's connection, or
another replica) applies what is pending, all in one transaction under a
lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two openers
never apply a migration twice and a failed migration leaves the old version.

Migration 1 is the schema mandrill wrote before it had versions, with
IF NOT EXISTS throughout: a store file written by that code has no
`mandrill_schema` table (version 0) and is adopted as it is. A migration is
never edited once released; a change is a new one appended here, with the
same meaning on both backends. A store at a version newer than this code
knows is refused (StoreError) rather than written by code that does not
know its shape.

The backends differ only where they must: PostgreSQL has no rowid, so the
pages and edges carry an identity column `seq` that keeps the order they
were recorded in (the export's order), and its integers are 64-bit where a
value may be large (generation, bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from mandrill.domain.errors import StoreError

VERSION_TABLE = "mandrill_schema"
CREATE_VERSION_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
)
CURRENT_VERSION = f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}"
RECORD_VERSION = f"INSERT INTO {VERSION_TABLE} (version, description, applied_at) VALUES (?, ?, ?)"


@attrs.frozen
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    """Statements for SQLite, run in order in the migration's transaction."""
    postgresql: tuple[str, ...]
    """The same change for PostgreSQL."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="restart journal and crawl results (the tables of the unversioned store)",
        sqlite=(
            """CREATE TABLE IF NOT EXISTS restart_journal (
                request_uid  TEXT PRIMARY KEY,
                namespace    TEXT NOT NULL,
                name         TEXT NOT NULL,
                generation   INTEGER NOT NULL,
                spec_json    TEXT NOT NULL,
                targets_json TEXT NOT NULL,
                received_at  TEXT NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS crawl_jobs (
                job_uid     TEXT PRIMARY KEY,
                namespace   TEXT NOT NULL,
                name        TEXT NOT NULL,
                attempt     INTEGER NOT NULL,
                started_at  TEXT NOT NULL,
                finished_at TEXT,
                phase       TEXT NOT NULL,
                reason      TEXT,
                stats_json  TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS crawl_jobs_by_name ON crawl_jobs (namespace, name)",
            """CREATE TABLE IF NOT EXISTS crawl_pages (
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
            )""",
            """CREATE TABLE IF NOT EXISTS crawl_edges (
                job_uid TEXT NOT NULL,
                source  TEXT NOT NULL,
                target  TEXT NOT NULL,
                PRIMARY KEY (job_uid, source, target)
            )""",
        ),
        postgresql=(
            """CREATE TABLE IF NOT EXISTS restart_journal (
                request_uid  TEXT PRIMARY KEY,
                namespace    TEXT NOT NULL,
                name         TEXT NOT NULL,
                generation   BIGINT NOT NULL,
                spec_json    TEXT NOT NULL,
                targets_json TEXT NOT NULL,
                received_at  TEXT NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS crawl_jobs (
                job_uid     TEXT PRIMARY KEY,
                namespace   TEXT NOT NULL,
                name        TEXT NOT NULL,
                attempt     INTEGER NOT NULL,
                started_at  TEXT NOT NULL,
                finished_at TEXT,
                phase       TEXT NOT NULL,
                reason      TEXT,
                stats_json  TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS crawl_jobs_by_name ON crawl_jobs (namespace, name)",
            """CREATE TABLE IF NOT EXISTS crawl_pages (
                job_uid      TEXT NOT NULL,
                url          TEXT NOT NULL,
                final_url    TEXT NOT NULL,
                depth        INTEGER NOT NULL,
                status       INTEGER,
                error        TEXT,
                message      TEXT NOT NULL,
                content_type TEXT,
                bytes        BIGINT NOT NULL,
                links        INTEGER NOT NULL,
                attempts     INTEGER NOT NULL,
                elapsed      DOUBLE PRECISION NOT NULL,
                seq          BIGINT GENERATED ALWAYS AS IDENTITY,
                PRIMARY KEY (job_uid, url)
            )""",
            """CREATE TABLE IF NOT EXISTS crawl_edges (
                job_uid TEXT NOT NULL,
                source  TEXT NOT NULL,
                target  TEXT NOT NULL,
                seq     BIGINT GENERATED ALWAYS AS IDENTITY,
                PRIMARY KEY (job_uid, source, target)
            )""",
        ),
    ),
    Migration(
        version=2,
        description="crawl frontier and per-origin state, for resuming a crawl",
        sqlite=(
            # One row per URL a crawl admitted or reached by a redirect: the frontier
            # and the seen set at once (see mandrill.domain.crawl.frontier). `host`,
            # `leased_by` and `lease_until` are for workers sharing one frontier: a
            # worker leases pending rows of hosts it holds; a single process leaves
            # them NULL.
            """CREATE TABLE crawl_frontier (
                job_uid     TEXT NOT NULL,
                url         TEXT NOT NULL,
                state       TEXT NOT NULL,
                depth       INTEGER NOT NULL,
                parent      TEXT,
                host        TEXT NOT NULL,
                ordinal     INTEGER,
                attempt     INTEGER NOT NULL DEFAULT 1,
                leased_by   TEXT,
                lease_until TEXT,
                PRIMARY KEY (job_uid, url)
            )""",
            "CREATE INDEX crawl_frontier_pending ON crawl_frontier (job_uid, state, host, ordinal)",
            # One row per origin a crawl read robots.txt from; the lease columns
            # give one worker at a time a host's slots (perHostConcurrency, Crawl-delay).
            """CREATE TABLE crawl_hosts (
                job_uid       TEXT NOT NULL,
                origin        TEXT NOT NULL,
                robots_rules  TEXT,
                unavailable   TEXT,
                failure       TEXT,
                message       TEXT NOT NULL,
                leased_by     TEXT,
                lease_until   TEXT,
                PRIMARY KEY (job_uid, origin)
            )""",
        ),
        postgresql=(
            """CREATE TABLE crawl_frontier (
                job_uid     TEXT NOT NULL,
                url         TEXT NOT NULL,
                state       TEXT NOT NULL,
                depth       INTEGER NOT NULL,
                parent      TEXT,
                host        TEXT NOT NULL,
                ordinal     BIGINT,
                attempt     INTEGER NOT NULL DEFAULT 1,
                leased_by   TEXT,
                lease_until TEXT,
                PRIMARY KEY (job_uid, url)
            )""",
            "CREATE INDEX crawl_frontier_pending ON crawl_frontier (job_uid, state, host, ordinal)",
            """CREATE TABLE crawl_hosts (
                job_uid       TEXT NOT NULL,
                origin        TEXT NOT NULL,
                robots_rules  TEXT,
                unavailable   TEXT,
                failure       TEXT,
                message       TEXT NOT NULL,
                leased_by     TEXT,
                lease_until   TEXT,
                PRIMARY KEY (job_uid, origin)
            )""",
        ),
    ),
    Migration(
        version=3,
        description="host leases and the URL budget of a frontier shared by workers",
        # Workers sharing a frontier (mandrill.domain.crawl.shared; PostgreSQL only, but
        # the tables exist on both backends so both have one schema). A host's requests
        # are made by one worker at a time: the holder of its row here, until
        # lease_until (an RFC 3339 UTC timestamp of fixed width, as crawl_frontier's
        # lease_until, so text order is time order); next_start is when the host may
        # next be asked (Crawl-delay, handed on with the host). It is per authority,
        # as crawl_frontier.host is; crawl_hosts stays per origin for robots.txt (its
        # lease columns from migration 2 stay unused). crawl_budget counts a job's
        # admitted URLs, the maxPages budget, under one row lock across workers.
        sqlite=(
            """CREATE TABLE crawl_host_leases (
                job_uid     TEXT NOT NULL,
                host        TEXT NOT NULL,
                holder      TEXT,
                lease_until TEXT,
                next_start  TEXT,
                PRIMARY KEY (job_uid, host)
            )""",
            """CREATE TABLE crawl_budget (
                job_uid  TEXT PRIMARY KEY,
                admitted INTEGER NOT NULL
            )""",
        ),
        postgresql=(
            """CREATE TABLE crawl_host_leases (
                job_uid     TEXT NOT NULL,
                host        TEXT NOT NULL,
                holder      TEXT,
                lease_until TEXT,
                next_start  TEXT,
                PRIMARY KEY (job_uid, host)
            )""",
            """CREATE TABLE crawl_budget (
                job_uid  TEXT PRIMARY KEY,
                admitted BIGINT NOT NULL
            )""",
        ),
    ),
)


def latest(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """The version a store has once every migration is applied."""
    return migrations[-1].version if migrations else 0


def pending(current: int, migrations: Sequence[Migration], *, where: str) -> list[Migration]:
    """The migrations a store at version `current` still needs, in order.

    StoreError if the store is newer than `migrations` know: written by a
    later mandrill, it may have a shape this code would write wrongly."""
    newest = latest(migrations)
    if current > newest:
        raise StoreError(
            f"{where} has schema version {current}, newer than this mandrill knows "
            f"({newest}): run a mandrill at least as new as the one that migrated it"
        )
    return [m for m in migrations if m.version > current]


def check(migrations: Sequence[Migration]) -> None:
    """ValueError unless the versions are 1, 2, 3, ... in order (a tested invariant)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions {versions} are not 1..{len(versions)} in order")
