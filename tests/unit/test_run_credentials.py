"""`mandrill run` with nothing to authenticate with: exits at once, non-zero, with one
line naming what it looked for (not kopf retrying every minute with no /healthz)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time


def test_no_credentials_exit_at_once_saying_what_was_looked_for(tmp_path: pathlib.Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
    }
    env["HOME"] = str(tmp_path)  # no ~/.kube/config there
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mandrill", "run", "--store-url", f"sqlite:///{tmp_path}/j.sqlite"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 20
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mandrill run: no Kubernetes credentials: not in a cluster")
    assert "KUBERNETES_SERVICE_HOST" in line
    assert "/var/run/secrets/kubernetes.io/serviceaccount/token" in line
    assert f"no kubeconfig (KUBECONFIG unset, {tmp_path}/.kube/config missing)" in line


def test_a_broken_kubeconfig_is_named(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["KUBECONFIG"] = str(broken)
    done = subprocess.run(
        [sys.executable, "-m", "mandrill", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr
    assert f"kubeconfig {broken} unusable: " in done.stderr
