"""The restart service's ports and its record of each request in hand.

The service (application.restart) sees the world only through these: the
requests as the API server has them, a factory for the domain's ports of one
attempt, TTL and journal-retry scheduling, Events, metrics and the task
registry. Tests plug small fakes into the same slots.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from mandrill.domain.events import EventSink
from mandrill.domain.restart import process
from mandrill.domain.restart.models import RequestRef
from mandrill.supervision import TaskRegistry

Body = Mapping[str, Any]


class Requests(Protocol):
    """RestartRequests as the API server has them."""

    async def read(self, request: RequestRef) -> Body:
        """The request now; PermanentError("Gone") if it was deleted."""

    async def list_all(self) -> list[Body]:
        """Every request in the namespaces this operator serves."""


class Observer(Protocol):
    """What the service reports for metrics."""

    def consumed(self) -> None: ...
    def acknowledged(self, phase: str) -> None: ...
    def restarted(self, strategy: str, outcome: str) -> None: ...
    def internal_error(self) -> None: ...
    def resynced(self, stranded: int) -> None: ...
    def queued(self, waiting: int) -> None: ...
    def oldest_unacknowledged(self, created: float | None) -> None:
        """Creation time (Unix seconds) of the oldest request in hand; None when none is."""

    def handling(self) -> contextlib.AbstractContextManager[Any]:
        """Entered for each attempt: in-flight gauge and duration."""


Waiting = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


class ContextFactory(Protocol):
    def __call__(
        self, *, request: RequestRef, body: Body, attempt: int, waiting: Waiting | None
    ) -> process.Context:
        """The ports of one attempt at `request` (its reporter knows `body` and `attempt`)."""


@attrs.frozen
class Ports:
    requests: Requests
    context: ContextFactory
    schedule_ttl: Callable[[RequestRef, datetime.datetime], None]
    save_later: Callable[[Body], None]
    """Keep retrying the journal write of an acknowledged request with Saved=False."""
    events: EventSink
    observer: Observer
    tasks: TaskRegistry


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    """Backing off before a retry."""


@attrs.define
class Entry:
    ref: RequestRef
    body: Body
    created: float = 0.0
    """The request's creationTimestamp, Unix seconds: its place in the queue, and its age."""
    state: State = State.QUEUED
    reread: bool = False
    """Read the request again before the next attempt (after a backoff)."""
    failures: int = 0
    """Unexpected errors so far."""
    last_error: str = ""
    backoff: float = 0.0
    gone: bool = False
    """Deleted while in hand: nothing to remember it by."""
