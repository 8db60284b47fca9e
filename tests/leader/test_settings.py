"""Leader election's settings: off by default, controller-runtime's timings, flags and env.

Covers: the defaults; `--leader-election` alone means true and takes a value;
each setting has its environment variable; timings that cannot work together
(client-go's checks) and a bad Lease name are refused naming the setting;
`mandrill run --leader-election` outside a pod without a namespace exits 2
saying what to set; the Lease's namespace and the identity come from the
downward API when there is one.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

import pytest

from mandrill import config
from mandrill.adapters import lease


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_off_by_default_with_controller_runtimes_timings() -> None:
    settings = config.from_sources(args(), environ={})

    assert settings.leader_election is False
    assert settings.leader_election_lease == "mandrill"
    assert settings.leader_election_namespace == ""
    assert settings.leader_election_lease_duration == 15
    assert settings.leader_election_renew_deadline == 10.0
    assert settings.leader_election_retry_period == 2.0


def test_flag_alone_means_true_and_takes_a_value() -> None:
    assert config.from_sources(args("--leader-election"), environ={}).leader_election is True
    off = config.from_sources(
        args("--leader-election", "false"), environ={"MANDRILL_LEADER_ELECTION": "true"}
    )
    assert off.leader_election is False


def test_every_setting_has_its_environment_variable() -> None:
    settings = config.from_sources(
        args(),
        environ={
            "MANDRILL_LEADER_ELECTION": "1",
            "MANDRILL_LEADER_ELECTION_NAMESPACE": "ops",
            "MANDRILL_LEADER_ELECTION_LEASE": "mandrill-b",
            "MANDRILL_LEADER_ELECTION_LEASE_DURATION": "30",
            "MANDRILL_LEADER_ELECTION_RENEW_DEADLINE": "20",
            "MANDRILL_LEADER_ELECTION_RETRY_PERIOD": "4",
        },
    )

    assert settings.leader_election is True
    assert settings.leader_election_namespace == "ops"
    assert settings.leader_election_lease == "mandrill-b"
    assert settings.leader_election_lease_duration == 30
    assert settings.leader_election_renew_deadline == 20.0
    assert settings.leader_election_retry_period == 4.0


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--leader-election-renew-deadline", "15"], "lease duration must be longer"),
        (["--leader-election-retry-period", "10"], "renew deadline must be longer"),
        (["--leader-election-lease-duration", "1.5"], "--leader-election-lease-duration"),
        (["--leader-election-lease", "Mandrill_A"], "--leader-election-lease"),
        (["--leader-election-namespace", "a/b"], "--leader-election-namespace"),
        (["--leader-election", "maybe"], "--leader-election"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(argv: list[str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        config.from_sources(args(*argv), environ={})


def test_run_outside_a_pod_needs_the_leases_namespace(tmp_path: pathlib.Path) -> None:
    if lease.SERVICE_ACCOUNT_NAMESPACE.exists():
        pytest.skip("runs in a pod: the ServiceAccount's namespace file is the default")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}

    result = subprocess.run(
        [sys.executable, "-m", "mandrill", "run", "--leader-election"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert "--leader-election-namespace" in result.stderr


def test_namespace_and_identity_from_the_downward_api(tmp_path: pathlib.Path) -> None:
    sa_file = tmp_path / "namespace"
    sa_file.write_text("mandrill-system\n")

    assert lease.default_namespace({"POD_NAMESPACE": "ops"}, sa_file) == "ops"
    assert lease.default_namespace({}, sa_file) == "mandrill-system"
    assert lease.default_namespace({}, tmp_path / "absent") is None
    one, two = lease.identity({"POD_NAME": "mandrill-7d9-x2"}), lease.identity({"POD_NAME": "p"})
    assert one.startswith("mandrill-7d9-x2_")
    assert len(one.removeprefix("mandrill-7d9-x2_")) == 8
    assert lease.identity({"POD_NAME": "p"}) != two, "a random suffix: never shared"
