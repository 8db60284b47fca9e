"""A store that is down for a while: restarts go on, and the journal catches up later.

On SQLite the store is a file whose folder does not exist yet (so every
write fails), then appears. On PostgreSQL it is the session's real server
(tests/postgres.py), stopped mid-run while the operator is connected to it,
or down when the operator starts, then started again. The operator is
neither restarted nor told; and on PostgreSQL the password in its store URL
appears nowhere: not in its log, not in a condition, not in an Event.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from kubernetes_asyncio.client import ApiClient

from tests.kube import eventually
from tests.operator_process import JOURNAL_QUERY, OperatorProcess
from tests.postgres import PostgresServer
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]


async def saved_later(api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The request once its Saved condition is True (the journal caught up)."""

    async def probe() -> dict[str, Any] | None:
        current = await rr.get_request(api, namespace, name)
        cond = rr.condition(current, "Saved")
        return current if cond and cond["status"] == "True" else None

    return await eventually(probe, what=f"{name}: Saved=True after the store came back", within=60)


async def test_journal_write_is_retried_once_the_store_is_back(
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo_operators: Callable[..., OperatorProcess],
    tmp_path: pathlib.Path,
) -> None:
    ns = await make_namespace("solo-")
    pods = await rr.deploy(api, ns, "web", 2)
    store_dir = tmp_path / "not-yet"
    solo_operators(ns, store_url=f"sqlite:///{store_dir / 'journal.sqlite'}")
    uid = await rr.create_request(
        api, ns, "outage", {"target": {"kind": "Deployment", "name": "web"}}
    )

    body = await rr.finished(api, ns, "outage")

    assert body["status"]["phase"] == "Succeeded"
    assert body["status"]["restarted"] == 2
    saved = rr.condition(body, "Saved")
    assert saved is not None
    assert (saved["status"], saved["reason"]) == ("False", "StoreUnavailable")
    for p in pods:
        assert not await rr.pod_exists(api, ns, p.metadata.name, p.metadata.uid)

    store_dir.mkdir()  # the store comes back

    later = await saved_later(api, ns, "outage")
    cond = rr.condition(later, "Saved")
    assert cond is not None
    assert cond["reason"] == "SavedOnRetry"
    assert rr.journal_rows(store_dir / "journal.sqlite", uid) == [(uid, ns, "outage")]
    assert later["status"]["phase"] == "Succeeded", "the retry changes only the Saved condition"


async def pg_journal_rows(url: str, request_uid: str) -> list[tuple[Any, ...]]:
    """The journal's rows for one request, read from PostgreSQL."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(JOURNAL_QUERY.replace("?", "$1"), request_uid)
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


@pytest.mark.postgres
async def test_journal_catches_up_after_postgresql_is_stopped_mid_run(
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo_operators: Callable[..., OperatorProcess],
    postgres: PostgresServer,
    postgres_url: str,
) -> None:
    ns = await make_namespace("solo-")
    await rr.deploy(api, ns, "web", 2)
    op = solo_operators(ns, store_url=postgres_url)
    target = {"target": {"kind": "Deployment", "name": "web"}}
    before = await rr.create_request(api, ns, "before", target)
    saved = rr.condition(await rr.finished(api, ns, "before"), "Saved")
    assert saved is not None
    assert saved["status"] == "True", saved

    postgres.stop("fast")  # the operator's connections are cut off
    try:
        during = await rr.create_request(api, ns, "during", target)
        body = await rr.finished(api, ns, "during")
    finally:
        postgres.start()

    later = await caught_up(api, ns, "during", body, op=op, postgres=postgres)
    assert await pg_journal_rows(postgres_url, before) == [(before, ns, "before")]
    assert await pg_journal_rows(postgres_url, during) == [(during, ns, "during")]
    assert later["status"]["phase"] == "Succeeded"


@pytest.mark.postgres
async def test_an_operator_started_while_postgresql_is_down_catches_up(
    api: ApiClient,
    make_namespace: MakeNamespace,
    solo_operators: Callable[..., OperatorProcess],
    postgres: PostgresServer,
    postgres_url: str,
) -> None:
    """Down at start-up: the operator starts all the same (live, serving), and the
    first use after the server is back opens the store and migrates it."""
    ns = await make_namespace("solo-")
    await rr.deploy(api, ns, "web", 2)
    postgres.stop("fast")
    try:
        op = solo_operators(ns, store_url=postgres_url)  # returns once /healthz answers
        uid = await rr.create_request(
            api, ns, "early", {"target": {"kind": "Deployment", "name": "web"}}
        )
        body = await rr.finished(api, ns, "early")
    finally:
        postgres.start()

    await caught_up(api, ns, "early", body, op=op, postgres=postgres)
    assert await pg_journal_rows(postgres_url, uid) == [(uid, ns, "early")]
    assert "journal unavailable at start-up" in op.log_tail(lines=10_000)


async def caught_up(
    api: ApiClient,
    namespace: str,
    name: str,
    unsaved: dict[str, Any],
    *,
    op: OperatorProcess,
    postgres: PostgresServer,
) -> dict[str, Any]:
    """Check a request acknowledged while PostgreSQL was down, then wait until it is
    saved on retry; and that the password is nowhere: log, status, Events."""
    assert unsaved["status"]["phase"] == "Succeeded"
    assert unsaved["status"]["restarted"] == 2
    cond = rr.condition(unsaved, "Saved")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "StoreUnavailable")
    assert "postgresql://mandrill:***@127.0.0.1" in cond["message"]

    later = await saved_later(api, namespace, name)
    cond = rr.condition(later, "Saved")
    assert cond is not None
    assert cond["reason"] == "SavedOnRetry"

    events = await rr.events_with(api, namespace, name, {"NotSaved"})
    log = op.log_tail(lines=10_000)
    assert "mandrill:***@127.0.0.1" in log, "the log names the store, redacted"
    seen = [log, *(json.dumps(b["status"]) for b in (unsaved, later))]
    seen += [f"{e.reason}: {e.message}" for e in events]
    assert [text for text in seen if postgres.password in text] == []
    return later
