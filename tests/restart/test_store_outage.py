"""A store that is down for a while: restarts go on, and the journal catches up later.

The store here is a SQLite file whose folder does not exist yet (so every
write fails), then appears. The operator is neither restarted nor told.
"""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable

from kubernetes_asyncio.client import ApiClient

from tests.kube import eventually
from tests.operator_process import OperatorProcess
from tests.restart import rr

MakeNamespace = Callable[[str], Awaitable[str]]


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

    async def saved_later() -> dict[str, object] | None:
        current = await rr.get_request(api, ns, "outage")
        cond = rr.condition(current, "Saved")
        return current if cond and cond["status"] == "True" else None

    later = await eventually(saved_later, what="Saved=True after the store came back", within=60)
    cond = rr.condition(later, "Saved")
    assert cond is not None
    assert cond["reason"] == "SavedOnRetry"
    assert rr.journal_rows(store_dir / "journal.sqlite", uid) == [(uid, ns, "outage")]
    assert later["status"]["phase"] == "Succeeded", "the retry changes only the Saved condition"
