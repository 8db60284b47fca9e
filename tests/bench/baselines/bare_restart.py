"""The bare-API baseline for RestartRequests: the same calls, nothing else.

Watches RestartRequests in one namespace and, for each new one, lists the
named pod, deletes it, and patches the request's status to Succeeded with an
acknowledgedAt -- no journal, no plan, no retries, no Events, no kopf. Same
global concurrency bound as the operator's default, and the same client
setting (no environment lookups per request). Run as its own process
by tests/bench/restart_latency.py, so its CPU and memory are its own.

    python -m tests.bench.baselines.bare_restart NAMESPACE [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal

from kubernetes_asyncio import client, config, watch

GROUP, VERSION, PLURAL = "mandrill.dev", "v1alpha1", "restartrequests"


async def consume(api: client.ApiClient, ns: str, body: dict, gate: asyncio.Semaphore) -> None:  # type: ignore[type-arg]
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    name = body["spec"]["target"]["name"]
    async with gate:
        pods = await core.list_namespaced_pod(ns, field_selector=f"metadata.name={name}")
        for pod in pods.items:
            await core.delete_namespaced_pod(pod.metadata.name, ns)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            body["metadata"]["name"],
            {
                "status": {
                    "phase": "Succeeded",
                    "restarted": 1,
                    "acknowledgedAt": now,
                    "conditions": [
                        {
                            "type": "Acknowledged",
                            "status": "True",
                            "reason": "Acknowledged",
                            "message": "",
                            "lastTransitionTime": now[:19] + "Z",
                        }
                    ],
                }
            },
            _content_type="application/merge-patch+json",
        )


async def main(ns: str, concurrency: int) -> None:
    await config.load_kube_config()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    gate = asyncio.Semaphore(concurrency)
    seen: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()
    async with client.ApiClient() as api:
        # What the operator's client does too (mandrill.adapters.kube.make_client):
        # no netrc/proxy lookups in a worker thread per request. Without it the
        # baseline spends twice the CPU per request, and the ratio would flatter us.
        api.rest_client.pool_manager._trust_env = False
        custom = client.CustomObjectsApi(api)
        w = watch.Watch()
        stream = w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
        watcher = asyncio.ensure_future(_drain(stream, api, ns, gate, seen, tasks))
        print("ready", flush=True)
        await stop.wait()
        watcher.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)


async def _drain(stream, api, ns, gate, seen, tasks) -> None:  # type: ignore[no-untyped-def]
    async for event in stream:
        body = event["object"]
        uid = body["metadata"]["uid"]
        if event["type"] == "ADDED" and uid not in seen and not body.get("status"):
            seen.add(uid)
            task = asyncio.create_task(consume(api, ns, body, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("namespace")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.namespace, args.concurrency))
