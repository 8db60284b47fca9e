"""Benchmark: RestartRequest creation-to-acknowledgement latency at N requests.

Not a test (nothing here asserts a time): a program that prints a table.

    .venv/bin/python -m tests.bench.restart_latency --n 100 --n 1000 --rounds 3

For each N and each contender it makes a Deployment of N pods, starts the
contender on that namespace, creates N RestartRequests at once (each
deleting one named pod), and waits until all are acknowledged. Contenders:
`mandrill run`; the bare-API baseline (tests/bench/baselines/bare_restart.py:
list the pod, delete it, patch the status, nothing else), which starts its
work from a watch as an operator does; and the client, which needs no
operator at all: right after creating each request it makes those minimal
calls itself, 64 requests at a time. The client shows what a burst costs
when every request is served the moment it exists, so operator / client p50
measures fairness (do early requests finish early?), and operator / bare the
overhead of being an operator. Latency is from the moment the API
server accepted a request's creation (client clock) to its status
acknowledgedAt (operator clock; same machine). Also reported: the operator's
CPU seconds per request and its peak RSS, and the CPU seconds the control
plane's processes (API server, etcd, controller manager, scheduler, kwok)
spent meanwhile: on two cores they and the contender compete for the same
CPU, and the API server is the busiest of all. Acknowledgements are watched,
not polled, so the harness adds little load of its own. Uses
MANDRILL_TEST_KUBECONFIG if set, otherwise starts the local control plane
like the test suite does. With `--rounds R` every (N, contender) runs R
times, interleaved and in alternating order; the table shows medians, and
the ratios of each round are listed too, to show the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import pathlib
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from tests import kube, postgres
from tests.bench.baselines import bare_restart
from tests.operator_process import OperatorProcess
from tests.restart import rr

REPO = pathlib.Path(__file__).resolve().parents[2]
CLIENT_CONCURRENCY = 64


@contextlib.contextmanager
def ensure_cluster() -> Iterator[kube.Cluster]:
    """MANDRILL_TEST_KUBECONFIG's cluster, or the local test cluster; one this
    started is stopped again at the end, as the test suite does."""
    given = os.environ.get("MANDRILL_TEST_KUBECONFIG")
    if given:
        yield kube.Cluster.from_kubeconfig(pathlib.Path(given))
        return
    state = REPO / ".cache/cluster/test"
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(state), "MANDRILL_CLUSTER_PORT": "26443"}
    script = REPO / "deploy/local/cluster.sh"
    status = subprocess.run([script, "status"], env=env, capture_output=True, check=False)
    was_up = status.returncode == 0
    subprocess.run([script, "up"], env=env, check=True)
    try:
        yield kube.Cluster.from_kubeconfig(state / "kubeconfig")
    finally:
        if not was_up:
            subprocess.run([script, "down"], env=env, check=False)


def proc_cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")


def control_plane_pids() -> dict[str, int]:
    """The local control plane's processes on this machine, by name (none if remote)."""
    found = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/comm"):
        try:
            name = stat.read_text().strip()
        except OSError:
            continue
        if name in CONTROL_PLANE:
            found[name] = int(stat.parent.name)
    return found


def cpu_by_name(pids: dict[str, int]) -> dict[str, float]:
    seconds = {}
    for name, pid in pids.items():
        try:
            seconds[name] = proc_cpu_seconds(pid)
        except OSError:
            continue
    return seconds


def proc_peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class BareProcess:
    """The bare baseline as a child process, started and stopped like OperatorProcess."""

    def __init__(self, kubeconfig: pathlib.Path, namespace: str) -> None:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.baselines.bare_restart", namespace],
            env=env,
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"ready"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _operator(
    cluster: kube.Cluster, ns: str, workdir: pathlib.Path, pg: postgres.PostgresServer | None
) -> OperatorProcess:
    """`mandrill run` on the namespace: a SQLite file of its own, or a new PostgreSQL database."""
    store = f"sqlite:///{workdir / f'journal-{ns}.sqlite'}"
    if pg is not None:
        store = pg.url(pg.create_database("bench"))
    return OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        workdir=workdir,
        namespaces=ns,
        store_url=store,
        extra_args=("--log-level", "WARNING"),
    ).start()


async def run_one(
    cluster: kube.Cluster,
    n: int,
    workdir: pathlib.Path,
    contender: str,
    pg: postgres.PostgresServer | None = None,
) -> dict[str, float | str]:
    api: ApiClient = await cluster.api_client()
    async with api:
        core = client.CoreV1Api(api)
        ns = f"bench-rr-{n}-{secrets.token_hex(3)}"
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        try:
            pods = await rr.deploy(api, ns, "web", n)
            op: OperatorProcess | BareProcess | None = None
            if contender in ("operator", "operator-pg"):
                op = _operator(cluster, ns, workdir, pg if contender == "operator-pg" else None)
            elif contender == "bare":
                op = BareProcess(cluster.kubeconfig, ns)
            pid = op.proc.pid if op is not None and op.proc is not None else os.getpid()
            plane = control_plane_pids()
            try:
                created: dict[str, float] = {}
                # The creating client's own limit, not the operator's.
                gate = asyncio.Semaphore(CLIENT_CONCURRENCY if op is None else 100)
                unbounded = asyncio.Semaphore(n)

                async def create(i: int, pod: client.V1Pod) -> None:
                    async with gate:
                        name, spec = f"r{i}", {"target": {"name": pod.metadata.name}}
                        await rr.create_request(api, ns, name, spec)
                        created[name] = time.time()
                        if op is None:  # the client serves its own request at once
                            body = {"metadata": {"name": name}, "spec": spec}
                            await bare_restart.consume(api, ns, body, unbounded)

                watching = asyncio.Event()
                acks = asyncio.create_task(_all_acknowledged(api, ns, n, watching))
                await watching.wait()
                cpu_before = proc_cpu_seconds(pid)
                plane_before = cpu_by_name(plane)
                start = time.time()
                await asyncio.gather(*(create(i, p) for i, p in enumerate(pods)))
                bodies = await acks
                wall = (
                    max(rr.parse_time(b["status"]["acknowledgedAt"]).timestamp() for b in bodies)
                    - start
                )
                cpu = proc_cpu_seconds(pid) - cpu_before
                plane_after = cpu_by_name(plane)
                rss = proc_peak_rss_mib(pid) if op is not None else float("nan")
            finally:
                if op is not None:
                    op.stop()
            latencies = [
                rr.parse_time(b["status"]["acknowledgedAt"]).timestamp()
                - created[b["metadata"]["name"]]
                for b in bodies
            ]
            ok = sum(1 for b in bodies if b["status"]["phase"] == "Succeeded")
            # Creation -> the operator's start on it (its plan's startedAt): time spent
            # waiting (watch delivery, queue); the rest of the latency is the work.
            waits = [
                rr.parse_time(b["status"]["startedAt"]).timestamp() - created[b["metadata"]["name"]]
                for b in bodies
                if b["status"].get("startedAt")
            ]
            return {
                "who": contender,
                "n": n,
                "ok": ok,
                "p50": statistics.median(latencies),
                "wait_p50": statistics.median(waits) if waits else float("nan"),
                "p95": percentile(latencies, 95),
                "p99": percentile(latencies, 99),
                "wall": wall,
                "cpu_per_req_ms": cpu / n * 1000,
                "rss": rss,
                "apiserver_cpu": plane_after.get("kube-apiserver", 0.0)
                - plane_before.get("kube-apiserver", 0.0),
                "plane_cpu": sum(plane_after.values()) - sum(plane_before.values()),
            }
        finally:
            await core.delete_namespace(ns, propagation_policy="Background")


async def _all_acknowledged(api: ApiClient, ns: str, n: int, watching: asyncio.Event) -> list[dict]:  # type: ignore[type-arg]
    """Watch the namespace's requests until `n` are acknowledged; their bodies."""
    custom = client.CustomObjectsApi(api)
    done: dict[str, dict] = {}  # type: ignore[type-arg]
    listed = await custom.list_namespaced_custom_object(rr.GROUP, rr.VERSION, ns, rr.PLURAL)
    version = listed["metadata"]["resourceVersion"]
    watching.set()
    try:
        async with asyncio.timeout(600):
            while len(done) < n:
                w = watch.Watch()
                async with w.stream(
                    custom.list_namespaced_custom_object,
                    rr.GROUP,
                    rr.VERSION,
                    ns,
                    rr.PLURAL,
                    resource_version=version,
                    timeout_seconds=300,
                ) as stream:
                    async for event in stream:
                        body = event["object"]
                        version = body["metadata"]["resourceVersion"]
                        if rr.acknowledged(body):
                            done[body["metadata"]["name"]] = body
                        if len(done) == n:
                            break
    except TimeoutError:
        raise SystemExit(f"only {len(done)} of {n} requests acknowledged within 600 s") from None
    return list(done.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="requests per round (repeatable)")
    parser.add_argument(
        "--contender",
        choices=["operator", "operator-pg", "bare", "client"],
        action="append",
        help="what to run (repeatable; default: client, bare, operator); operator-pg is the "
        "operator on a PostgreSQL store (a server of its own, default settings, on loopback)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions")
    args = parser.parse_args()
    if args.rounds < 1 or any(n < 1 for n in args.n or ()):
        parser.error("--rounds and --n must be at least 1")
    sizes = args.n or [100, 1000]
    contenders = args.contender or ["client", "bare", "operator"]
    with ensure_cluster() as cluster:
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "restartrequest.yaml"))
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/restartrequests.mandrill.dev",
            "--timeout=60s",
        )
        runs = []
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            pg = stack.enter_context(postgres.server(())) if "operator-pg" in contenders else None
            for number in range(args.rounds):
                order = contenders if number % 2 == 0 else contenders[::-1]
                for n in sizes:
                    for who in order:
                        runs.append(asyncio.run(run_one(cluster, n, pathlib.Path(tmp), who, pg)))
    rows = [median_row([r for r in runs if (r["who"], r["n"]) == key]) for key in _keys(runs)]
    print(
        f"\nRestartRequest creation -> acknowledgement, {platform.node()}, "
        f"{os.cpu_count()} cores, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"median of {args.rounds} round(s)"
    )
    print(
        f"{'who':>9} {'N':>6} {'ok':>6} {'p50 s':>7} {'wait p50':>8} {'p95 s':>7} {'p99 s':>7} "
        f"{'wall s':>7} "
        f"{'CPU ms/req':>10} {'peak RSS MiB':>12} {'apiserver CPU s':>15} "
        f"{'control plane CPU s':>19}"
    )
    for r in rows:
        print(
            f"{r['who']:>9} {r['n']:>6} {r['ok']:>6} {r['p50']:>7.2f} {r['wait_p50']:>8.2f} "
            f"{r['p95']:>7.2f} "
            f"{r['p99']:>7.2f} {r['wall']:>7.1f} {r['cpu_per_req_ms']:>10.1f} {r['rss']:>12.0f} "
            f"{r['apiserver_cpu']:>15.1f} {r['plane_cpu']:>19.1f}"
        )
    by = {(r["who"], r["n"]): r for r in rows}
    for n in sizes:
        for who, base in (
            ("operator", "client"),
            ("operator", "bare"),
            ("operator-pg", "operator"),
        ):
            if (who, n) not in by or (base, n) not in by:
                continue
            o, b = by[who, n], by[base, n]
            bases = [r for r in runs if (r["who"], r["n"]) == (base, n)]
            operators = [r for r in runs if (r["who"], r["n"]) == (who, n)]
            pairs = list(zip(operators, bases, strict=True))
            p50s = ", ".join(f"{float(x['p50']) / float(y['p50']):.2f}" for x, y in pairs)
            walls = ", ".join(f"{float(x['wall']) / float(y['wall']):.2f}" for x, y in pairs)
            print(
                f"N={n}: {who} / {base}:  p50 {float(o['p50']) / float(b['p50']):.2f}  "
                f"p99 {float(o['p99']) / float(b['p99']):.2f}  "
                f"wall {float(o['wall']) / float(b['wall']):.2f}  "
                f"(round by round: p50 {p50s}; wall {walls})"
            )


def _keys(runs: list[dict[str, float | str]]) -> list[tuple[float | str, float | str]]:
    return list(dict.fromkeys((r["who"], r["n"]) for r in runs))


def median_row(runs: list[dict[str, float | str]]) -> dict[str, float | str]:
    """Each figure's median over the rounds (`ok`: the worst round)."""
    row: dict[str, float | str] = {"who": runs[0]["who"], "n": runs[0]["n"]}
    for field in runs[0]:
        if field in ("who", "n"):
            continue
        values = [float(r[field]) for r in runs]
        row[field] = int(min(values)) if field == "ok" else statistics.median(values)
    return row


if __name__ == "__main__":
    main()
