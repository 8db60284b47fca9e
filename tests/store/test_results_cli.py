"""`mandrill results` without a cluster (--uid), on both backends, and its one-line errors.

Covers: export by UID in each format; a bad format, a bad NAMESPACE/NAME, a
bad or missing store, an unknown UID, and a name with no cluster
credentials, each reported in one line with its exit status and never with
the store's password. The cluster path (NAME resolved through the API) is
covered end to end in tests/crawljob/test_e2e.py.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

from mandrill import cli
from mandrill.adapters import crawl_store, export
from mandrill.domain.crawl.job import JobRef, Outcome, Phase
from mandrill.domain.crawl.models import EdgeList, PageResult, Progress
from tests.postgres import PostgresServer
from tests.store.conftest import Store

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
JOB = JobRef(namespace="team", name="links", uid="uid-1")


@pytest.fixture
async def store_url(store: Store) -> str:
    """A store (each backend in turn) holding one finished job, uid-1."""
    url = store.url
    crawls = crawl_store.CrawlStore.from_url(url)
    await crawls.begin(JOB, attempt=1, started=NOW)
    sink = crawls.sink(JOB)
    progress = Progress(done=1, scheduled=1, failed=0, elapsed=0.0)
    home = "https://example.com/"
    await sink.record(
        PageResult(url=home, depth=0, final_url=home, status=200, links=2),
        EdgeList(home, ("https://example.com/a", "https://example.com/b")),
        progress,
    )
    await sink.flush()
    await crawls.finish(
        JOB,
        Outcome(phase=Phase.SUCCEEDED, reason="Completed", message="", started=NOW, finished=NOW),
    )
    await crawls.close()
    return url


def test_export_by_uid_in_every_format(
    store_url: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv, jsonl, graphml = (tmp_path / f"out.{f}" for f in export.FORMATS)
    for fmt, out in zip(export.FORMATS, (tsv, jsonl, graphml), strict=True):
        code = cli.main(
            ["results", "--uid", JOB.uid, "--format", fmt, "-o", str(out), "--store-url", store_url]
        )
        assert code == 0
    assert tsv.read_text().splitlines() == [
        "source_url\tparsed_url",
        "https://example.com/\thttps://example.com/a",
        "https://example.com/\thttps://example.com/b",
    ]
    kinds = [json.loads(line)["type"] for line in jsonl.read_text().splitlines()]
    assert kinds == ["page", "edge", "edge"]
    edges = ET.parse(graphml).getroot().findall(".//{%s}edge" % export.GRAPHML_NS)  # noqa: UP031
    assert len(edges) == 2
    assert "exported 1 pages of team/links (uid uid-1)" in capsys.readouterr().err


def test_export_to_stdout(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["results", "--uid", JOB.uid, "--store-url", store_url]) == 0
    assert capsys.readouterr().out.startswith("source_url\tparsed_url\n")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--uid", "uid-1", "--format", "xml"],
            2,
            "unknown format 'xml'; expected one of tsv, jsonl, graphml",
        ),
        (["just-a-name"], 2, "'just-a-name' is not NAMESPACE/NAME"),
        ([], 2, "give NAMESPACE/NAME or --uid"),
        (["--uid", "nope"], 1, "CrawlJob (uid nope) has no results in"),
    ],
)
def test_errors_are_one_line(
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    message: str,
) -> None:
    assert cli.main(["results", *args, "--store-url", store_url]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mandrill results: ")
    assert message in err


def test_a_missing_sqlite_store_is_reported_and_not_created(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "nowhere.sqlite"
    assert cli.main(["results", "--uid", "x", "--store-url", f"sqlite:///{absent}"]) == 1
    assert capsys.readouterr().err == f"mandrill results: no store at {absent}\n"
    assert not absent.exists()


def test_a_name_without_cluster_credentials(
    store_url: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cli.main(["results", "team/links", "--store-url", store_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mandrill results: no cluster credentials to look up team/links")
    assert err.count("\n") == 1


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_reported_without_the_password(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.url("nowhere")
    assert cli.main(["results", "--uid", "x", "--store-url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mandrill results: cannot open store postgresql://mandrill:***@")
    assert '"nowhere" does not exist' in err
    assert postgres.password not in err


@pytest.mark.postgres
def test_a_wrong_password_is_reported_without_either_password(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-" + postgres.password
    url = postgres.url("postgres", password=wrong)
    assert cli.main(["results", "--uid", "x", "--store-url", url]) == 1
    err = capsys.readouterr().err
    assert "password authentication failed" in err
    assert wrong not in err
    assert postgres.password not in err


def test_a_store_url_of_no_backend_is_a_usage_error_shown_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "mysql://app:hunter2-secret@db:3306/mandrill"
    assert cli.main(["results", "--uid", "x", "--store-url", url]) == 2
    err = capsys.readouterr().err
    assert err == (
        "mandrill results: --store-url: 'mysql://app:***@db:3306/mandrill' is not a store URL:"
        " expected sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE\n"
    )
