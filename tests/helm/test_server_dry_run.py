"""The chart's objects as the real API server takes them: admitted, schema-valid, no warnings.

Covers: for default, namespaced and HA values, everything `helm template
--include-crds` renders passes `kubectl apply --dry-run=server` (so the API
server's validation, the "restricted" Pod Security admission of
mandrill-system, and the CRDs' schemas all accept it) without a warning.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import kube
from tests.helm import chart
from tests.helm.test_chart import HA_VALUES

pytestmark = pytest.mark.helm


@pytest.mark.usefixtures("operator_rbac")
@pytest.mark.parametrize("variant", ["default", "namespaced", "ha"])
def test_rendering_passes_server_side_dry_run(
    cluster: kube.Cluster, watched_namespaces: list[str], variant: str
) -> None:
    values: dict[str, Any] = {
        "default": {},
        "namespaced": {"watchNamespaces": watched_namespaces},
        "ha": HA_VALUES,
    }[variant]
    rendered = chart.template(values).stdout

    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered, check=False)

    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("(server dry run)") == len(chart.objects(rendered))
