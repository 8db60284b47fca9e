"""The Lease adapter against the real API server: conditional writes, MicroTime, RBAC.

Covers: a Lease is created once (a second create is refused, not an error);
an update carrying a stale resourceVersion is refused and changes nothing,
one carrying the current version wins; times are stored with microseconds
and read back exactly; a Lease deleted and made anew by another candidate is not overwritten
by the old holder; and as
the operator's ServiceAccount with the HA overlay's Role, exactly the Lease
`mandrill` can be read and written, another Lease only created.
"""

from __future__ import annotations

import datetime

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from mandrill.adapters import lease
from mandrill.domain.errors import TransientError
from mandrill.domain.leadership import LeaseRecord
from tests import kube
from tests.deploy.conftest import SERVICE_ACCOUNT, can_i
from tests.leader.conftest import LEASE, apply, election_rbac

MOMENT = datetime.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


def record(holder: str, *, at: datetime.datetime = MOMENT, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(
        holder=holder,
        lease_duration_seconds=15,
        acquire_time=at,
        renew_time=at,
        transitions=transitions,
    )


async def test_create_once_then_only_conditional_updates(api: ApiClient, namespace: str) -> None:
    store = lease.KubeLease(api=api, namespace=namespace, name=LEASE)
    assert await store.get() is None

    made = await store.create(record("a"))
    again = await store.create(record("b"))

    assert made is not None
    assert made.record == record("a")
    assert again is None, "the second candidate learns it was not first"
    later = MOMENT + datetime.timedelta(seconds=2, microseconds=1)
    renewed = await store.update(record("a", at=later), version=made.version)
    assert renewed is not None
    stale = await store.update(record("b", transitions=1), version=made.version)
    assert stale is None, "a write on stale knowledge is refused"
    now = await store.get()
    assert now is not None
    assert now.record == record("a", at=later), "and changed nothing"
    assert now.version == renewed.version
    assert now.uid == made.uid


async def test_times_are_microtime(api: ApiClient, namespace: str) -> None:
    store = lease.KubeLease(api=api, namespace=namespace, name=LEASE)
    await store.create(record("a"))

    raw = await client.CoordinationV1Api(api).read_namespaced_lease(
        LEASE, namespace, _preload_content=False
    )
    async with raw:
        spec = (await raw.json())["spec"]

    assert spec["renewTime"] == "2026-12-01T12:00:00.123456Z"
    assert spec["acquireTime"] == "2026-12-01T12:00:00.123456Z"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["holderIdentity"] == "a"


async def test_lease_deleted_and_made_anew_by_another_is_not_overwritten(
    api: ApiClient, namespace: str
) -> None:
    """Leases allow create-on-update: a leader's PUT after a deletion makes the Lease
    again, which is right when nobody else did; when another candidate did first, the
    PUT's old resourceVersion is a conflict."""
    store = lease.KubeLease(api=api, namespace=namespace, name=LEASE)
    made = await store.create(record("a"))
    assert made is not None
    await client.CoordinationV1Api(api).delete_namespaced_lease(LEASE, namespace)
    assert await store.create(record("b")) is not None

    assert await store.update(record("a"), version=made.version) is None
    now = await store.get()
    assert now is not None
    assert now.record.holder == "b"


async def test_unreachable_server_is_a_transient_error() -> None:
    config = client.Configuration(host="http://127.0.0.1:9")  # discard: nothing listens
    async with ApiClient(configuration=config) as unreachable:
        store = lease.KubeLease(api=unreachable, namespace="x", name=LEASE, timeout=1)
        with pytest.raises(TransientError, match="read the Lease"):
            await store.get()


@pytest.mark.usefixtures("operator_rbac")
def test_service_account_may_write_only_its_lease(cluster: kube.Cluster, namespace: str) -> None:
    apply(cluster, election_rbac(namespace))

    def may(verb: str, what: str) -> bool:
        return can_i(cluster, verb, what, "-n", namespace, who=SERVICE_ACCOUNT)

    assert may("get", f"lease/{LEASE}")
    assert may("update", f"lease/{LEASE}")
    assert may("create", "leases"), "create cannot be limited by name: the namespace limits it"
    assert not may("get", "lease/someone-elses")
    assert not may("update", "lease/someone-elses")
    assert not may("delete", f"lease/{LEASE}")
    assert not may("patch", f"lease/{LEASE}")
    assert not may("list", "leases")
    assert not may("watch", "leases")
