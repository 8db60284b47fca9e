"""Fixtures for the unit tier: no cluster, no network, a fixed clock.

`world` wires the fakes of `tests.unit.fakes` into a restart Context, with
three pods (web-a, web-b, web-c) matching the target by default.
"""

from __future__ import annotations

import pytest

from tests.unit.fakes import World, candidate


@pytest.fixture
def world() -> World:
    w = World()
    w.targets.candidates = [candidate("web-a"), candidate("web-b"), candidate("web-c")]
    return w
