"""CrawlJobs when the PostgreSQL store goes away mid-crawl, and after it is back.

An operator of the test's own (namespaces `cjs-*`) keeps its crawl results on
the session's real PostgreSQL server (tests/postgres.py). The server is
stopped while a crawl is under way: that crawl ends Failed with reason
StoreError (as on SQLite: a crawl's results are all or nothing, and the next
attempt starts from scratch), its status and Events naming the store without
its password, and the rows it had committed stay. Once the server is
started again, with no restart of the operator, the next crawl is stored
whole and `mandrill results` exports it from PostgreSQL. Nothing the
operator logged, wrote to a status or posted as an Event carries the
password.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.crawljob import site
from tests.crawljob.conftest import (
    MakeNamespace,
    crawljob,
    events_of,
    finished,
    get_job,
    kubectl,
)
from tests.kube import eventually
from tests.operator_process import OperatorProcess
from tests.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_operator(
    all_crds: None,
    operator_kubeconfig: pathlib.Path,
    postgres_url: str,
    tmp_path: pathlib.Path,
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(
        kubeconfig=operator_kubeconfig,
        workdir=tmp_path,
        namespaces="cjs-*",
        store_url=postgres_url,
        extra_args=("--crawl-allow-private", "true"),
    ).start()
    yield op
    op.stop()


async def pages_stored(url: str, job_uid: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval("SELECT COUNT(*) FROM crawl_pages WHERE job_uid = $1", job_uid)
        )
    finally:
        await conn.close()


async def test_a_crawl_fails_while_postgresql_is_down_and_the_next_is_stored_whole(
    cluster: kube.Cluster,
    api: ApiClient,
    make_namespace: MakeNamespace,
    pg_operator: OperatorProcess,
    postgres: PostgresServer,
    postgres_url: str,
) -> None:
    ns = await make_namespace("cjs-")
    async with site.serve(slow_delay=0.1) as slow:
        # A binary tree of 2**6 - 1 = 63 pages, 0.1 s each, two at a time: a few seconds,
        # with a batch written every second.
        spec = {"urls": [slow.url("/slow/0")], "maxDepth": 5, "concurrency": 2}
        await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("cut-off", spec))

        async def stored_some() -> bool:
            body = await get_job(api, ns, "cut-off")
            return (
                body is not None and await pages_stored(postgres_url, body["metadata"]["uid"]) > 0
            )

        await eventually(stored_some, what="a first batch in PostgreSQL", within=60)
        postgres.stop("fast")
        try:
            failed = await finished(api, ns, "cut-off", within=60)
        finally:
            postgres.start()
        status = failed["status"]
        assert (status["phase"], status["reason"]) == ("Failed", "StoreError"), status
        assert "postgresql://mandrill:***@127.0.0.1" in status["message"]
        kept = await pages_stored(postgres_url, failed["metadata"]["uid"])
        assert 0 < kept < 63, "the batches committed before the outage stay"

        await kubectl(cluster, "apply", "-n", ns, "-f", "-", stdin=crawljob("whole", spec))
        whole = await finished(api, ns, "whole", within=90)

    status = whole["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["pagesFetched"], status["linksFound"]) == (63, 126)
    assert status["results"]["store"] == postgres_url.replace(postgres.password, "***")
    exported = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mandrill", "results", f"{ns}/whole", "--store-url", postgres_url],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    edges = {tuple(line.split("\t")) for line in exported.stdout.splitlines()[1:]}
    assert edges == {
        (slow.url(f"/slow/{i}"), slow.url(f"/slow/{child}"))
        for i in range(63)
        for child in (2 * i + 1, 2 * i + 2)
    }

    seen = [pg_operator.log_tail(lines=10_000), exported.stderr]
    seen += [json.dumps(b["status"]) for b in (failed, whole)]
    for name in ("cut-off", "whole"):
        seen += [f"{reason}: {message}" for _, reason, message in await events_of(api, ns, name)]
    leaks = [text for text in seen if postgres.password in text]
    assert leaks == []
