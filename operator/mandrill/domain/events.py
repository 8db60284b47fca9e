"""The Events port: how domain and adapters say something on an object, for `kubectl describe`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

EventType = Literal["Normal", "Warning"]


class EventSink(Protocol):
    def __call__(self, obj: Mapping[str, Any], type: EventType, reason: str, message: str) -> None:
        """Post an Event about `obj` (a body with apiVersion, kind and metadata); never blocks."""
