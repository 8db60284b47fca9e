"""The operator as a user installs it: a Deployment in the cluster under test.

These tests run only with MANDRILL_TEST_OPERATOR_IN_CLUSTER=1, after
deploy/e2e/run.sh has applied an overlay and the rollout has finished: on the
local real node that is `make test`'s second half (deploy/local/in-cluster.sh),
on kind deploy/kind/e2e.sh.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import kube
from tests.operator_process import InClusterOperator


@pytest.fixture(scope="session")
def installed(cluster: kube.Cluster) -> InClusterOperator:
    """The deployed operator, rolled out (its real probes have passed)."""
    operator = InClusterOperator(cluster)
    operator.rolled_out()
    return operator


@pytest.fixture(scope="session")
def pod_template(installed: InClusterOperator) -> dict[str, Any]:
    """The operator's pod template: its image and placement, for the pods tests run beside it."""
    out = installed.kubectl("get", f"deployment/{installed.deployment}", "-o", "json")
    template: dict[str, Any] = json.loads(out.stdout)["spec"]["template"]
    return template
