"""`mandrill results NAMESPACE/NAME`: export a CrawlJob's results from the store.

Results are keyed by the job's UID (a job recreated under the same name is
another job), so NAMESPACE/NAME is resolved to the UID of the CrawlJob that
exists now, by asking the API server (in-cluster credentials or KUBECONFIG).
`--uid` skips the API: for a deleted job's results, or where no credentials
are at hand; when the name is unknown to the cluster but the store holds
earlier jobs of that name, the error lists their UIDs.

The store (SQLite or PostgreSQL) is opened read-only and checked before
anything else, so a wrong --store-url is reported without a round trip to the
cluster; a URL is only ever shown redacted. Every failure is one line on
stderr: exit status 2 for bad usage, 1 for an unknown job, a missing store or
missing results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sys
from typing import TextIO

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from mandrill import config, resources, store_url
from mandrill.adapters import crawl_store, export, kube
from mandrill.domain.errors import PermanentError, StoreError, TransientError

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


class ResultsError(Exception):
    """Why the export cannot be made; the message is the one line shown."""

    def __init__(self, message: str, *, status: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.status = status


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `results` on the `mandrill` command's subparsers."""
    default_store = _default_store_url()
    parser = subparsers.add_parser(
        "results",
        help="export a CrawlJob's pages and edges from the store",
        description=(
            "Export the results of the CrawlJob NAMESPACE/NAME (looked up in the cluster "
            "for its UID) or of --uid, from the operator's store."
        ),
    )
    parser.add_argument(
        "job", metavar="NAMESPACE/NAME", nargs="?", help="the CrawlJob; omit with --uid"
    )
    parser.add_argument(
        "--uid", help="the CrawlJob's UID: no cluster lookup (e.g. for a deleted job)"
    )
    parser.add_argument(
        "--format",
        dest="format_name",
        default="tsv",
        metavar="FORMAT",
        help=f"one of {', '.join(export.FORMATS)} (default: tsv)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", type=pathlib.Path, help="file to write (default: stdout)"
    )
    parser.add_argument(
        "--store-url",
        default=default_store,
        metavar="URL",
        help=(
            "the operator's store, sqlite:///PATH or postgresql://... "
            f"[env MANDRILL_STORE_URL; default {store_url.redact(default_store)}]"
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Export as `args` say; returns the exit status."""
    try:
        asyncio.run(_export(args))
    except ResultsError as e:
        print(f"mandrill results: {e}", file=sys.stderr)
        return e.status
    return EXIT_OK


async def _export(args: argparse.Namespace) -> None:
    if args.format_name not in export.FORMATS:
        raise ResultsError(
            f"unknown format {args.format_name!r}; expected one of {', '.join(export.FORMATS)}",
            status=EXIT_USAGE,
        )
    namespace, name = _parse_job(args.job, uid=args.uid)
    try:
        store = store_url.StoreUrl.parse(args.store_url)
    except ValueError as e:  # neither sqlite:///PATH nor postgresql://...; shown redacted
        raise ResultsError(f"--store-url: {e}", status=EXIT_USAGE) from e
    try:
        async with crawl_store.ResultsReader.open(store) as reader:
            uid = args.uid or await _resolve(namespace, name, reader=reader)
            record = await reader.job(uid)
            label = f"{namespace}/{name}" if namespace else "CrawlJob"
            if record is None:
                raise ResultsError(
                    f"{label} (uid {uid}) has no results in {store.redacted}: "
                    "not started yet, or another store"
                )
            with _output(args.output) as stream:
                writer = export.open_writer(args.format_name, stream)
                pages = await reader.export(uid, writer)
                writer.close()
    except (crawl_store.StoreMissingError, StoreError) as e:
        raise ResultsError(store.scrub(str(e))) from e
    where = args.output or "stdout"
    note = "" if record.finished_at else f" (attempt {record.attempt} still running: partial)"
    print(
        f"exported {pages} pages of {record.namespace}/{record.name} (uid {uid}) "
        f"as {args.format_name} to {where}{note}",
        file=sys.stderr,
    )


def _parse_job(job: str | None, *, uid: str | None) -> tuple[str, str]:
    if job is None:
        if uid is None:
            raise ResultsError("give NAMESPACE/NAME or --uid", status=EXIT_USAGE)
        return "", ""
    namespace, slash, name = job.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ResultsError(f"{job!r} is not NAMESPACE/NAME", status=EXIT_USAGE)
    return namespace, name


async def _resolve(namespace: str, name: str, *, reader: crawl_store.ResultsReader) -> str:
    """The UID of the CrawlJob NAMESPACE/NAME as the cluster has it now."""
    try:
        uid = await _lookup(namespace, name)
    except ConfigException as e:
        raise ResultsError(f"no cluster credentials to look up {namespace}/{name}: {e}") from e
    except (TransientError, PermanentError, aiohttp.ClientError, OSError) as e:
        raise ResultsError(f"cannot look up {namespace}/{name} in the cluster: {e}") from e
    if uid is None:
        earlier = await reader.jobs_named(namespace, name)
        hint = (
            "; the store has results of earlier ones: "
            + ", ".join(f"--uid {j.uid}" for j in earlier)
            if earlier
            else ""
        )
        raise ResultsError(f"no CrawlJob {namespace}/{name} in the cluster{hint}")
    return uid


async def _lookup(namespace: str, name: str) -> str | None:
    api = await kube.make_client()
    async with api:
        custom = client.CustomObjectsApi(api)
        try:
            found = await kube.call(
                lambda: custom.get_namespaced_custom_object(
                    resources.GROUP, resources.VERSION, namespace, resources.CRAWL_JOBS, name
                ),
                what=f"get CrawlJob {namespace}/{name}",
                attempts=2,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
    return str(found["metadata"]["uid"])


class _output:
    """The output stream: FILE (opened before any row is read), or stdout left open."""

    def __init__(self, path: pathlib.Path | None) -> None:
        self.path = path
        self.stream: TextIO = sys.stdout

    def __enter__(self) -> TextIO:
        if self.path is not None:
            try:
                self.stream = self.path.open("w", encoding="utf-8", newline="\n")
            except OSError as e:
                raise ResultsError(f"cannot write {self.path}: {e.strerror or e}") from e
        return self.stream

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.stream.close()
        else:
            self.stream.flush()


def _default_store_url() -> str:
    return os.environ.get(config.ENV_PREFIX + "STORE_URL") or config.Settings().store_url
