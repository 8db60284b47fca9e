"""`mandrill run` as a real child process, for tests that need the operator at work.

A process, not kopf's in-thread runner, so tests can SIGKILL and SIGTERM it
the way a kubelet would, and so it authenticates exactly as users run it:
the `operator_kubeconfig` fixture gives it a token of the ServiceAccount that
deploy/rbac makes, so the e2e tests prove the RBAC the Deployment runs with.

With MANDRILL_TEST_OPERATOR_IN_CLUSTER=1 the operator is the one deployed in
the cluster (deploy/kind/e2e.sh): the shared operator fixtures hand out an
`InClusterOperator` instead of starting a process, and the tests that need an
operator of their own (killed, broken store, narrowed RBAC) are skipped,
since the cluster-wide one would take their requests too.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Protocol

import attrs
import yaml

from tests import kube

IN_CLUSTER = os.environ.get("MANDRILL_TEST_OPERATOR_IN_CLUSTER", "") == "1"
"""The operator already runs in the cluster under test; tests start none."""
IN_CLUSTER_SKIP = (
    "needs an operator process of its own, but MANDRILL_TEST_OPERATOR_IN_CLUSTER=1: "
    "the in-cluster operator watches every namespace and would take this test's requests"
)
JOURNAL_QUERY = "SELECT request_uid, namespace, name FROM restart_journal WHERE request_uid = ?"
STARTED: list[OperatorProcess] = []
"""Every operator process this session started, oldest first: a failing test's
report shows the logs of those it used (tests/conftest.py)."""


def journal_rows(store: pathlib.Path, request_uid: str) -> list[tuple[Any, ...]]:
    """The restart journal's rows for one request, read from a local SQLite file."""
    with sqlite3.connect(store) as db:
        return db.execute(JOURNAL_QUERY, (request_uid,)).fetchall()


def service_account_kubeconfig(
    cluster: kube.Cluster,
    *,
    namespace: str,
    name: str,
    path: pathlib.Path,
    duration: str = "2h",
) -> pathlib.Path:
    """Write a kubeconfig that authenticates as a ServiceAccount; returns `path`.

    The server and CA come from the admin kubeconfig; the token is minted by
    the TokenRequest API (`kubectl create token`), as a pod's projected token is.
    """
    raw = cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json")
    server = json.loads(raw.stdout)["clusters"][0]["cluster"]
    token = cluster.kubectl(
        "create", "token", name, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    user = f"system:serviceaccount:{namespace}:{name}"
    context = {"cluster": "under-test", "user": user, "namespace": namespace}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "under-test", "cluster": server}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class RunningOperator(Protocol):
    """What the shared-operator tests use, whether it runs here or in the cluster."""

    def journal_rows(self, request_uid: str) -> list[tuple[Any, ...]]: ...

    def metrics(self) -> str:
        """The text of /metrics, fetched the way Prometheus reaches this operator."""
        ...


@attrs.frozen
class InClusterOperator:
    """The operator deployed in the cluster under test (deploy/e2e/run.sh)."""

    cluster: kube.Cluster
    namespace: str = "mandrill-system"
    deployment: str = "mandrill"
    selector: str = "app.kubernetes.io/name=mandrill,app.kubernetes.io/component=operator"
    """The Deployment's pod selector (deploy/base/deployment.yaml)."""
    metrics_service: str = "mandrill-metrics:metrics"
    """deploy/base/service.yaml's Service and port name."""
    store: str = "/var/lib/mandrill/mandrill.sqlite"
    """MANDRILL_STORE_URL's path in deploy/base/deployment.yaml."""

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl in the operator's namespace."""
        return self.cluster.kubectl("-n", self.namespace, *args, check=check)

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the operator's container (of the Deployment's current pod)."""
        return self.kubectl("exec", f"deployment/{self.deployment}", "--", *command, check=check)

    def journal_rows(self, request_uid: str) -> list[tuple[Any, ...]]:
        """The same query as `journal_rows`, run by the operator image's own Python."""
        script = (
            "import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
            "print(json.dumps(db.execute(sys.argv[2], (sys.argv[3],)).fetchall()))"
        )
        out = self.exec("python", "-c", script, self.store, JOURNAL_QUERY, request_uid)
        return [tuple(row) for row in json.loads(out.stdout)]

    def pods(self) -> list[dict[str, Any]]:
        """The operator's pods, as the API server has them (terminating ones too)."""
        out = self.kubectl("get", "pods", "-l", self.selector, "-o", "json")
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def rolled_out(self, timeout: str = "180s") -> None:
        """Wait until the Deployment's rollout is complete: one new pod, Ready."""
        self.kubectl("rollout", "status", f"deployment/{self.deployment}", f"--timeout={timeout}")

    def metrics(self) -> str:
        """/metrics as Prometheus gets it: through the metrics Service (the API server's proxy)."""
        path = f"/api/v1/namespaces/{self.namespace}/services/{self.metrics_service}/proxy/metrics"
        return self.cluster.kubectl("get", "--raw", path).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class OperatorProcess:
    kubeconfig: pathlib.Path
    workdir: pathlib.Path
    namespaces: str
    """The --namespace value: names or globs."""
    store_url: str
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.Factory(dict)
    """Extra environment (POD_NAME, say, as the downward API gives a pod)."""
    port: int = attrs.Factory(free_port)
    metrics_port: int = attrs.Factory(free_port)
    proc: subprocess.Popen[bytes] | None = None

    def metrics(self) -> str:
        """/metrics over HTTP from the process's metrics port."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    def journal_rows(self, request_uid: str) -> list[tuple[Any, ...]]:
        return journal_rows(pathlib.Path(self.store_url.removeprefix("sqlite:///")), request_uid)

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / f"operator-{self.port}.log"

    def start(self) -> OperatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mandrill",
                    "run",
                    "--namespace",
                    self.namespaces,
                    "--store-url",
                    self.store_url,
                    "--liveness-port",
                    str(self.port),
                    "--metrics-port",
                    str(self.metrics_port),
                    *self.extra_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        if not any(op is self for op in STARTED):
            STARTED.append(self)
        self._wait_live()
        return self

    def _wait_live(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"operator not live within {within}s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int, lines: int = 80) -> str:
        """The last `lines` lines written after byte `offset` of the log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a node crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def leading(self) -> bool:
        """Whether this process says it holds the leader election's Lease (/metrics)."""
        return any(line == "mandrill_leader 1.0" for line in self.metrics().splitlines())

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, within: float) -> int:
        """The exit code; raises subprocess.TimeoutExpired if it takes longer than `within`."""
        assert self.proc is not None
        return self.proc.wait(timeout=within)

    def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it overstays. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode
