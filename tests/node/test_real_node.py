"""A real kubelet node (deploy/local/node.sh): pods run for real, Services work, nothing leaves.

The node is started on the session's local cluster (and stopped afterwards
if this module started it). It needs root and a Linux machine with what
`node.sh check` looks for; elsewhere every test here is skipped with the one
line `check` prints. `make test` runs it (`make build-cluster` has installed
and built what it needs beforehand, in the open); `make test-node` runs only
this.

Covers: a pod tolerating the node's taint runs the locally built image and
turns Ready through an HTTP readiness probe (host to pod); a pod reaches the
API server through the `kubernetes` Service as in-cluster clients do (token,
CA, KUBERNETES_SERVICE_HOST); a pod reaches another pod through a ClusterIP
Service (kube-proxy); a pod's packets to anything outside the pod and Service
ranges -- an address beyond the machine, the machine's own main address, the
kubelet's port -- are dropped by node.sh's firewall, which counts them; exec
and logs reach the container through the kubelet.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import subprocess
import time
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests import kube
from tests.kube import eventually
from tests.node.conftest import TAINT

pytestmark = pytest.mark.real_node


def _pod(node: dict[str, str], name: str, args: list[str], **spec: Any) -> dict[str, Any]:
    """A pod for the real node: tolerates its taint, selects it, runs the local image."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {TAINT: "true"},
            "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": node["IMAGE"],
                    "imagePullPolicy": "Never",
                    "args": args,
                    **spec,
                }
            ],
        },
    }


def _ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def _run(api: ApiClient, node: dict[str, str], ns: str, args: list[str]) -> tuple[str, str]:
    """Run `nodeutil ARGS` in a pod to completion; return its phase and log."""
    core = client.CoreV1Api(api)
    name = f"probe-{secrets.token_hex(3)}"
    await core.create_namespaced_pod(ns, _pod(node, name, args))

    async def finished() -> str | None:
        pod = await core.read_namespaced_pod(name, ns)
        return pod.status.phase if pod.status.phase in ("Succeeded", "Failed") else None

    phase = await eventually(finished, what=f"pod {name} ({' '.join(args)}) to finish", within=60)
    # Read through the API server, which asks the kubelet with its client certificate.
    log = await core.read_namespaced_pod_log(name, ns)
    return phase, log.strip()


async def _server(api: ApiClient, node: dict[str, str], ns: str) -> client.V1Pod:
    core = client.CoreV1Api(api)
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}
    await core.create_namespaced_pod(
        ns, _pod(node, "web", ["serve", ":8080"], readinessProbe=probe)
    )

    async def ready() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("web", ns)
        return pod if _ready(pod) else None

    return await eventually(ready, what="pod web Running and Ready on the real node", within=90)


async def test_pod_runs_for_real_and_becomes_ready(
    api: ApiClient, node: dict[str, str], namespace: str
) -> None:
    start = time.monotonic()
    pod = await _server(api, node, namespace)
    took = time.monotonic() - start
    assert pod.spec.node_name == node["NODE_NAME"]
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node["POD_CIDR"])
    (status,) = pod.status.container_statuses
    assert status.container_id.startswith("containerd://")
    print(f"pod created -> Ready in {took:.1f}s")


async def test_pod_reaches_the_api_server_through_the_kubernetes_service(
    api: ApiClient, node: dict[str, str], namespace: str
) -> None:
    phase, log = await _run(api, node, namespace, ["kube-get", "/version"])
    assert phase == "Succeeded", log
    assert "HTTP 200" in log, log
    assert '"gitVersion"' in log, log


async def test_exec_and_logs_go_through_the_kubelet(
    api: ApiClient, cluster: kube.Cluster, node: dict[str, str], namespace: str
) -> None:
    """The API server reaches the kubelet (InternalIP, its client certificate) for exec and logs."""
    await _server(api, node, namespace)
    out = cluster.kubectl(
        "-n", namespace, "exec", "web", "--", "/nodeutil", "tcp", "127.0.0.1:8080", "2s"
    )
    assert out.stdout.startswith("connected"), out.stdout
    log = await client.CoreV1Api(api).read_namespaced_pod_log("web", namespace)
    assert "serving on :8080" in log, log


async def test_pod_reaches_a_pod_through_a_cluster_ip_service(
    api: ApiClient, node: dict[str, str], namespace: str
) -> None:
    await _server(api, node, namespace)
    service = await client.CoreV1Api(api).create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    phase, log = await _run(
        api, node, namespace, ["http", f"http://{service.spec.cluster_ip}:80/", "20s"]
    )
    assert phase == "Succeeded", log
    assert "ok web" in log, log


def _host_main_ip(bridge: str) -> str:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[1] != bridge:
            return fields[3].split("/")[0]
    pytest.fail(f"no global IPv4 address besides {bridge}'s:\n{out}")


def _dropped() -> int:
    """Packets node.sh's firewall dropped so far (both chains, all DROP rules)."""
    total = 0
    for chain in ("MANDRILL-NODE-PRE", "MANDRILL-NODE-FWD"):
        out = subprocess.run(
            ["iptables", "-w", "-t", "mangle", "-L", chain, "-v", "-x", "-n"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total += sum(int(m) for m in re.findall(r"^\s*(\d+)\s+\d+\s+DROP\b", out, re.M))
    return total


@pytest.mark.parametrize("target", ["beyond-the-machine", "host-main-ip", "kubelet-port"])
async def test_pod_cannot_reach_outside_the_pod_and_service_ranges(
    api: ApiClient, node: dict[str, str], namespace: str, target: str
) -> None:
    address = {
        # A private address no route of this machine names: it would go out
        # the default route if the firewall let it.
        "beyond-the-machine": "10.255.255.1:80",
        "host-main-ip": f"{_host_main_ip(node['BRIDGE'])}:22",
        "kubelet-port": f"{node['BRIDGE_IP']}:10250",
    }[target]
    before = _dropped()
    phase, log = await _run(api, node, namespace, ["tcp", address, "2s"])
    assert phase == "Failed", log
    # Dropped (a timeout), not refused: the packet went nowhere.
    assert "timeout" in log, log
    assert _dropped() > before, "node.sh's firewall counted no dropped packet"


def test_kubelet_evicts_only_when_the_shared_machine_is_really_short(
    cluster: kube.Cluster, node: dict[str, str]
) -> None:
    # The kubelet's defaults (imagefs.available<15%) evicted the operator's pod
    # on a large shared disk with 29 GB free; and imported images must never be
    # collected, since nothing can pull them again.
    raw = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node['NODE_NAME']}/proxy/configz")
    config = json.loads(raw.stdout)["kubeletconfig"]
    assert config["evictionHard"] == {
        "memory.available": "100Mi",
        "nodefs.available": "1Gi",
        "imagefs.available": "1Gi",
        "nodefs.inodesFree": "1%",
        "imagefs.inodesFree": "1%",
    }
    assert config["imageGCHighThresholdPercent"] == 100
