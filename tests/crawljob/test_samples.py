"""Every sample in crds/samples/ is accepted by the API server as it stands.

All samples, whichever kind (CrawlJob, RestartRequest, their ConfigMaps), are
applied with `kubectl apply --dry-run=server` after every CRD in crds/, so a
sample that drifts from its schema fails here rather than in a user's hands.
"""

from __future__ import annotations

import pathlib

import pytest

from tests import kube
from tests.crawljob.conftest import CRDS, MakeNamespace, kubectl

SAMPLES = sorted((CRDS / "samples").glob("*.yaml"))


def test_there_are_samples_of_every_kind() -> None:
    kinds = {path.name.split("-")[0] for path in SAMPLES}
    assert {"crawljob"} <= kinds
    assert {path.stem for path in CRDS.glob("*.yaml")} <= kinds


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.name for path in SAMPLES])
async def test_sample_applies(
    cluster: kube.Cluster, all_crds: None, make_namespace: MakeNamespace, sample: pathlib.Path
) -> None:
    ns = await make_namespace("samples-")
    result = await kubectl(
        cluster, "apply", "--dry-run=server", "-n", ns, "-f", str(sample), check=False
    )
    assert result.returncode == 0, f"{sample.name}: {result.stderr}"
    assert "(server dry run)" in result.stdout
