"""`mandrill schedule next`: the coming runs from a local file or the cluster, in the zone
and in UTC, with the skipped ones marked; one-line errors with their exit status."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from mandrill import cli
from tests import kube
from tests.schedule.test_samples import WEEKLY_WEB

AFTER = ["--after", "2026-12-01T00:00:00Z"]


def test_next_runs_of_a_file_marking_the_excluded(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["schedule", "next", str(WEEKLY_WEB), *AFTER])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("RestartSchedule weekly-web (")
    assert "'0 3 * * SUN' in Europe/Berlin" in out[0]
    assert out[1].split() == ["Europe/Berlin", "UTC"]
    assert out[2].split() == ["2026-12-06", "03:00", "Sun", "CET", "(+0100)", "2026-12-06", "02:00"]
    assert len(out) == 2 + 5
    skipped = [line for line in out[2:] if "skipped:" in line]
    assert [line.split()[0] for line in skipped] == ["2026-12-20", "2026-12-27"]
    assert "12-18..12-31 (year-end freeze)" in skipped[0]


def test_dst_shows_in_the_zone_column(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(WEEKLY_WEB.read_text())
    doc["spec"] |= {"schedule": "30 2 * * *", "exclusions": [], "suspend": True}
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(doc))

    code = cli.main(["schedule", "next", str(path), "-n", "2", "--after", "2026-03-28T12:00:00Z"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "suspended" in out[0]
    # 02:30 does not exist on 29 March in Berlin: the run is at 03:00 CEST, 01:00 UTC.
    assert out[2].split()[:7] == ["2026-03-29", "03:00", "Sun", "CEST", "(+0200)", "2026-03-29",
                                  "01:00"]  # fmt: skip
    assert out[3].split()[:2] == ["2026-03-30", "02:30"]


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["not-a-name"], 2, "neither NAMESPACE/NAME nor a YAML file"),
        (["a/b/c"], 2, "neither NAMESPACE/NAME nor a YAML file"),
        ([str(WEEKLY_WEB), "-n", "0"], 2, "-n must be between 1 and 1000"),
        ([str(WEEKLY_WEB), "--after", "yesterday"], 2, "not an RFC 3339 time"),
        ([str(WEEKLY_WEB), "--after", "2026-12-01T00:00:00"], 2, "needs a zone"),
        (["missing.yaml"], 1, "cannot read missing.yaml"),
    ],
)
def test_usage_errors_are_one_line(
    args: list[str], status: int, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["schedule", "next", *args])

    err = capsys.readouterr().err
    assert code == status
    assert words in err
    assert err.count("\n") == 1


def test_a_schedule_that_cannot_run_says_why(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(WEEKLY_WEB.read_text())
    doc["spec"]["timeZone"] = "Mars/Olympus_Mons"
    bad, empty = tmp_path / "bad.yaml", tmp_path / "empty.yaml"
    bad.write_text(yaml.safe_dump(doc))
    empty.write_text("kind: ConfigMap\n")

    assert cli.main(["schedule", "next", str(bad)]) == 1
    assert "cannot run: InvalidTimeZone" in capsys.readouterr().err
    assert cli.main(["schedule", "next", str(empty)]) == 1
    assert "holds no RestartSchedule" in capsys.readouterr().err


def _mandrill(cluster: kube.Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "mandrill", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_next_runs_of_a_schedule_in_the_cluster(
    cluster: kube.Cluster, schedule_crds: None, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(WEEKLY_WEB))

    found = _mandrill(cluster, "schedule", "next", f"{namespace}/weekly-web", "-n", "3", *AFTER)
    missing = _mandrill(cluster, "schedule", "next", f"{namespace}/nope")

    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].startswith(f"RestartSchedule {namespace}/weekly-web: ")
    assert [line.split()[0] for line in lines[2:]] == ["2026-12-06", "2026-12-13", "2026-12-20"]
    assert "skipped:" in lines[4]
    assert missing.returncode == 1
    assert f"no RestartSchedule {namespace}/nope in the cluster" in missing.stderr


def test_the_docs_show_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/restart-schedules.md's example is the command's real output, kept so."""
    repo = WEEKLY_WEB.parents[2]
    monkeypatch.chdir(repo)
    doc = (repo / "docs" / "restart-schedules.md").read_text()
    command = f"$ mandrill schedule next crds/samples/{WEEKLY_WEB.name} {' '.join(AFTER)}\n"
    shown = doc.split(command, 1)[1].split("\n$ ", 1)[0]

    cli.main(["schedule", "next", str(WEEKLY_WEB.relative_to(repo)), *AFTER])

    assert shown + "\n" == capsys.readouterr().out
