"""SQLite set-up under another connection's lock, on real files.

Covers: switching a file to WAL while another connection holds a lock waits
and then succeeds (SQLite itself refuses at once, busy_timeout or not); it
gives up with SQLite's own error once its time is out; an error that is not
a lock is raised at once; and several users of one new file opening together
(the journal and the crawl store at start-up, replicas' openers) all open,
round after round.
"""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3

import pytest

from mandrill.adapters import sqlite

WAL = "PRAGMA journal_mode=WAL"


def _locked_elsewhere(path: pathlib.Path) -> sqlite3.Connection:
    """A new rollback-journal file and a connection holding its write lock."""
    sqlite3.connect(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_sqlite_alone_refuses_the_switch_at_once(tmp_path: pathlib.Path) -> None:
    """What `patiently` is for: the busy timeout does not cover the switch."""
    path = tmp_path / "s.db"
    holder = _locked_elsewhere(path)
    db = sqlite3.connect(path, timeout=5.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db.execute(WAL)
    holder.close()
    db.close()


def test_the_switch_to_wal_waits_for_the_lock_and_then_succeeds(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.db"
    holder = _locked_elsewhere(path)
    db = sqlite3.connect(path)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            holder.execute("ROLLBACK")  # the other connection is done

    sqlite.patiently(db, WAL, sleep=sleep)

    assert pauses == [0.005, 0.01, 0.02]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    holder.close()
    db.close()


def test_it_gives_up_with_sqlites_error_when_its_time_is_out(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.db"
    holder = _locked_elsewhere(path)
    db = sqlite3.connect(path)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        sqlite.patiently(db, WAL, within=1.0, clock=lambda: now[0], sleep=sleep)

    assert 1.0 <= now[0] < 1.2, now[0]
    holder.close()
    db.close()


def test_an_error_that_is_not_a_lock_is_raised_at_once(tmp_path: pathlib.Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db")
    pauses: list[float] = []

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite.patiently(db, "SELECT * FROM missing", sleep=pauses.append)

    assert pauses == []
    db.close()


async def test_users_of_one_new_file_opening_together_all_open(tmp_path: pathlib.Path) -> None:
    """Before `patiently`, about one round in twenty lost an opener to "database is
    locked" on this machine; fifty rounds of six make that near certain."""
    for round_ in range(50):
        path = tmp_path / f"store-{round_}.sqlite"
        sqlite3.connect(path).close()  # the file exists, in rollback mode, as a new one is
        openers = [sqlite.SqliteDatabase(path, what=f"user {i}") for i in range(6)]
        results = await asyncio.gather(*(db.open() for db in openers), return_exceptions=True)
        for db in openers:
            await db.close()
        assert [r for r in results if r is not None] == [], f"round {round_}"
