"""`mandrill run` as a real child process, for tests that need the operator at work.

A process, not kopf's in-thread runner, so tests can SIGKILL and SIGTERM it
the way a kubelet would, and so it authenticates exactly as users run it.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import attrs


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
    port: int = attrs.Factory(free_port)
    metrics_port: int = attrs.Factory(free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / f"operator-{self.port}.log"

    def start(self) -> OperatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
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
