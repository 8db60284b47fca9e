"""Fixtures for the RestartSchedule tests: the CRDs on the real API server.

The pure tests here (cron, windows, decide, the controller on a fake clock)
need none of them and run in the fast tier.
"""

from __future__ import annotations

import pathlib

import pytest

from tests import kube

REPO = pathlib.Path(__file__).resolve().parents[2]
CRDS = ("restartrequest.yaml", "restartschedule.yaml")


@pytest.fixture(scope="session")
def schedule_crds(cluster: kube.Cluster) -> None:
    """RestartRequest and RestartSchedule CRDs, applied as users apply them, Established."""
    for name in CRDS:
        cluster.kubectl("apply", "-f", str(REPO / "crds" / name))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/restartrequests.mandrill.dev",
        "crd/restartschedules.mandrill.dev",
        "--timeout=60s",
    )
