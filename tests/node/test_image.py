"""The operator's image (deploy/local/image.sh) runs on the real node.

The module builds the image from deploy/Dockerfile with buildah -- or, for a
tree the last build saw (a hash of everything the build reads), reuses its
archive -- and imports it into the node's containerd, then runs it in pods
there. `make image` beforehand does the build in the open; a cold build
(Debian base, pip install) takes minutes, a cached one a second. Skipped,
saying why in one line, where no real node or no image build can run (not
root, no buildah/debootstrap and no apt-get to install them).

Covers: the image runs as UID/GID 10001 by itself (the pod names no user),
under the Deployment's container security settings (read-only root, no
privilege escalation, no capabilities, RuntimeDefault seccomp), where the root
filesystem refuses writes and the installed package imports and its command
line answers; the ENTRYPOINT is `mandrill run`, which without credentials
exits with status 3 saying what it looked for (and not the crash loop kopf
alone would make); the image keeps nothing of the build machine's CA bundle.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
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

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = REPO / "deploy" / "local" / "image.sh"
HOST_CA_BUNDLE = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")

# A cold build (base and image) takes minutes; the suite's default is 300 s.
pytestmark = [pytest.mark.real_node, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def image(cluster: kube.Cluster, node: dict[str, str]) -> dict[str, str]:
    """The image built for this tree and imported into the node; what image.sh wrote."""
    env = {**os.environ, "MANDRILL_CLUSTER_DIR": str(cluster.kubeconfig.parent)}
    check = subprocess.run(
        [IMAGE_SCRIPT, "check"], env=env, capture_output=True, text=True, check=False
    )
    if check.returncode == 3:
        pytest.skip(check.stdout.strip())
    assert check.returncode == 0, f"image.sh check: {check.stdout}{check.stderr}"
    start = time.monotonic()
    subprocess.run([IMAGE_SCRIPT, "up"], env=env, check=True, timeout=1400)
    print(f"image.sh up (build or reuse, then import) took {time.monotonic() - start:.1f}s")
    state = pathlib.Path(os.environ.get("MANDRILL_IMAGE_DIR", REPO / ".cache" / "image"))
    lines = (state / "image.env").read_text().splitlines()
    host_ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b""
    return dict(line.split("=", 1) for line in lines if "=" in line) | {
        "HOST_CA_SHA256": hashlib.sha256(host_ca).hexdigest()
    }


def _pod(image: dict[str, str], name: str, **container: Any) -> dict[str, Any]:
    """A pod of the operator's image on the real node, secured as deploy/base's Deployment.

    /tmp is an emptyDir, as there; nothing else is writable.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {TAINT: "true"},
            "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            # No credentials: `mandrill run` must find none.
            "automountServiceAccountToken": False,
            # runAsNonRoot and no runAsUser: the image's own USER must be non-root.
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "containers": [
                {
                    "name": "main",
                    "image": image["IMAGE"],
                    "imagePullPolicy": "Never",
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    **container,
                }
            ],
        },
    }


async def _finish(api: ApiClient, ns: str, pod: dict[str, Any]) -> tuple[client.V1Pod, str]:
    """Create the pod, wait until it has finished; return it and its log."""
    core = client.CoreV1Api(api)
    name = pod["metadata"]["name"]
    await core.create_namespaced_pod(ns, pod)

    async def finished() -> client.V1Pod | None:
        got = await core.read_namespaced_pod(name, ns)
        return got if got.status.phase in ("Succeeded", "Failed") else None

    done = await eventually(finished, what=f"pod {name} to finish", within=90)
    log = await core.read_namespaced_pod_log(name, ns)
    return done, log.strip()


# One fact a line, KEY=VALUE.
PROBE = """
echo "uid=$(id -u)"
echo "gid=$(id -g)"
if touch /probe 2>/dev/null; then echo root=writable; else echo root=read-only; fi
if touch /tmp/probe; then echo tmp=writable; else echo tmp=read-only; fi
python -c 'import mandrill; print("version=" + mandrill.__version__)'
python -c 'import sys; print("python=" + sys.version.split()[0])'
mandrill --help >/dev/null && echo help=ok
echo "ca=$(sha256sum /etc/ssl/certs/ca-certificates.crt | cut -d' ' -f1)"
"""


async def test_image_runs_as_10001_on_a_read_only_root(
    api: ApiClient, image: dict[str, str], namespace: str
) -> None:
    pod, log = await _finish(
        api,
        namespace,
        _pod(image, f"image-{secrets.token_hex(3)}", command=["/bin/sh", "-c", PROBE]),
    )
    print(log)
    assert pod.status.phase == "Succeeded", log
    facts = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    assert (facts["uid"], facts["gid"]) == ("10001", "10001"), log
    assert facts["root"] == "read-only", log
    assert facts["tmp"] == "writable", log
    assert facts["python"].startswith("3.11."), log
    assert facts["version"], log
    assert facts["help"] == "ok", log
    # The build trusted the host's CA bundle, mounted over the base's for RUN
    # steps only: the image has the base's (Debian's) bundle, as image.sh
    # checked after the build, and not the host's (where that differs).
    assert facts["ca"] == image["CA_SHA256"], log
    print(f"CA bundle: the image's {facts['ca'][:12]}, the host's {image['HOST_CA_SHA256'][:12]}")


async def test_entrypoint_is_mandrill_run_which_says_it_has_no_credentials(
    api: ApiClient, image: dict[str, str], namespace: str
) -> None:
    pod, log = await _finish(api, namespace, _pod(image, f"entrypoint-{secrets.token_hex(3)}"))
    print(log)
    (status,) = pod.status.container_statuses
    assert pod.status.phase == "Failed", log
    assert status.state.terminated.exit_code == 3, log
    assert "no Kubernetes credentials" in log, log
