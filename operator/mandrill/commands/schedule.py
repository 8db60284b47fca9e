"""`mandrill schedule next SOURCE [-n 5]`: the coming runs of a RestartSchedule.

SOURCE is NAMESPACE/NAME (read from the cluster: in-cluster credentials or
KUBECONFIG) or a local YAML file (the first RestartSchedule in it), so a
schedule can be checked before it is applied. Each run is printed on the
schedule's wall clock and in UTC, with why it would be skipped when a window
or an exclusion stops it. The times come from the same domain code the
operator runs (mandrill.domain.schedule), so what this prints is what the
operator will do. One line on stderr for each failure: exit status 2 for bad
usage, 1 for a schedule that cannot be found or cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from mandrill import resources
from mandrill.adapters import kube
from mandrill.domain import timestamps
from mandrill.domain.errors import PermanentError, TransientError
from mandrill.domain.schedule import decide
from mandrill.domain.schedule.models import InvalidSchedule, ScheduleSpec
from mandrill.domain.schedule.windows import Verdict

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2


class ScheduleError(Exception):
    def __init__(self, message: str, *, status: int = EXIT_NOT_FOUND) -> None:
        super().__init__(message)
        self.status = status


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="RestartSchedules: list the coming runs",
        description="Work with RestartSchedules without the operator.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    nxt = sub.add_parser(
        "next",
        help="print the next runs in the schedule's zone and in UTC, marking those skipped",
        description=(
            "Print the next runs of the RestartSchedule NAMESPACE/NAME (from the cluster) or "
            "of the one in a local YAML file, on its zone's clock and in UTC; a run that a "
            "window or an exclusion would skip is marked with the reason."
        ),
    )
    nxt.add_argument("source", metavar="NAMESPACE/NAME|FILE", help="the schedule")
    nxt.add_argument("-n", "--count", type=int, default=5, help="how many runs (default: 5)")
    nxt.add_argument(
        "--after",
        metavar="TIME",
        help="list runs after this RFC 3339 time instead of now, e.g. 2026-12-01T00:00:00Z",
    )


def run(args: argparse.Namespace) -> int:
    try:
        print(_next(args), end="")
    except ScheduleError as e:
        print(f"mandrill schedule: {e}", file=sys.stderr)
        return e.status
    return EXIT_OK


def _next(args: argparse.Namespace) -> str:
    if not 1 <= args.count <= 1000:
        raise ScheduleError("-n must be between 1 and 1000", status=EXIT_USAGE)
    try:
        after = timestamps.parse(args.after) if args.after else timestamps.now()
    except ValueError:
        message = f"--after {args.after!r} is not an RFC 3339 time"
        raise ScheduleError(message, status=EXIT_USAGE) from None
    assert after is not None
    if after.tzinfo is None:
        raise ScheduleError("--after needs a zone: Z or an offset", status=EXIT_USAGE)
    label, body = _load(args.source)
    try:
        spec = ScheduleSpec.from_spec(body.get("spec") or {})
    except InvalidSchedule as e:
        raise ScheduleError(f"{label} cannot run: {e.reason}: {e.message}") from e
    runs = decide.upcoming(spec, after=after, count=args.count)
    return render(label, spec, runs)


def render(label: str, spec: ScheduleSpec, runs: list[tuple[datetime.datetime, Verdict]]) -> str:
    """The table: a header, then one line a run (local time with its offset, UTC, skipped?)."""
    zone = str(spec.cron.tz)
    header = f"{label}: {spec.cron.expression!r} in {zone}"
    if spec.suspend:
        header += " (suspended: none of these runs will start)"
    if not runs:
        return f"{header}\nno run in the next 50 years\n"
    rows = [
        (
            moment.strftime("%Y-%m-%d %H:%M %a %Z (%z)"),
            moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
            "" if verdict.allowed else f"skipped: {verdict.message}",
        )
        for moment, verdict in runs
    ]
    width = max(len(zone), *(len(r[0]) for r in rows))
    lines = [header, f"{zone:<{width}}  UTC"]
    lines += [f"{local:<{width}}  {utc}  {note}".rstrip() for local, utc, note in rows]
    return "\n".join(lines) + "\n"


def _load(source: str) -> tuple[str, Mapping[str, Any]]:
    path = pathlib.Path(source)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return _from_file(path)
    namespace, slash, name = source.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ScheduleError(
            f"{source!r} is neither NAMESPACE/NAME nor a YAML file", status=EXIT_USAGE
        )
    try:
        body = asyncio.run(_read(namespace, name))
    except ConfigException as e:
        raise ScheduleError(f"no cluster credentials to read {source}: {e}") from e
    except (TransientError, PermanentError, aiohttp.ClientError, OSError) as e:
        raise ScheduleError(f"cannot read {source} from the cluster: {e}") from e
    if body is None:
        raise ScheduleError(f"no RestartSchedule {source} in the cluster")
    return f"RestartSchedule {source}", body


def _from_file(path: pathlib.Path) -> tuple[str, Mapping[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise ScheduleError(f"cannot read {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ScheduleError(f"{path} is not YAML: {e}") from e
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == resources.RESTART_SCHEDULE_KIND:
            name = (doc.get("metadata") or {}).get("name", "?")
            return f"RestartSchedule {name} ({path})", doc
    raise ScheduleError(f"{path} holds no RestartSchedule")


async def _read(namespace: str, name: str) -> dict[str, Any] | None:
    problem = await kube.credentials_problem()
    if problem is not None:
        raise ScheduleError(problem)
    api = await kube.make_client()
    async with api:
        custom = client.CustomObjectsApi(api)
        try:
            return await kube.call_json(
                custom.get_namespaced_custom_object,
                resources.GROUP,
                resources.VERSION,
                namespace,
                resources.RESTART_SCHEDULES,
                name,
                what=f"get RestartSchedule {namespace}/{name}",
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
