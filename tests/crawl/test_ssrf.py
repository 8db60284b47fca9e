"""The address guard: default refusals, checked on the address actually connected to.

The live tests point the crawler at loopback (the only place test traffic may
go) and at the metadata address; the guard must refuse before a socket
exists, so the server counts zero requests and nothing leaves the machine.
"""

from __future__ import annotations

import time

import pytest

from mandrill.adapters import ssrf
from mandrill.domain.crawl.models import ErrorKind
from tests.crawl.conftest import LOOPBACK_ONLY, CrawlRunner, Site

DEFAULT = ssrf.AddressPolicy()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),
        ("100.64.0.1", "shared"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("fec0::1", "site-local"),
    ],
)
def test_default_policy_refuses(address: str, reason: str) -> None:
    refusal = DEFAULT.refusal(address)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_default_policy_allows_public_addresses(address: str) -> None:
    assert DEFAULT.refusal(address) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.20.3.4", "169.254.169.254", "::1"])
def test_the_operators_setting_widens_it(address: str) -> None:
    assert ssrf.AddressPolicy.from_settings() == DEFAULT
    assert ssrf.AddressPolicy.from_settings(allow_private=False).refusal(address) is not None
    assert ssrf.AddressPolicy.from_settings(allow_private=True).refusal(address) is None


async def test_the_resolver_refuses_a_name_that_resolves_to_loopback() -> None:
    resolver = ssrf.GuardedResolver(DEFAULT)
    try:
        with pytest.raises(ssrf.BlockedAddressError, match="loopback"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_the_resolver_keeps_allowed_addresses() -> None:
    resolver = ssrf.GuardedResolver(LOOPBACK_ONLY)
    try:
        results = await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    assert {r["host"] for r in results} == {"127.0.0.1"}


async def test_default_settings_refuse_internal_targets_before_connecting(
    site: Site, run_crawl: CrawlRunner
) -> None:
    site.links("/")
    port = site.base.rsplit(":", 1)[1]
    targets = [
        site.url("/"),
        f"http://localhost:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://127.1.2.3:{port}/",
    ]
    started = time.monotonic()
    crawled = await run_crawl(seeds=targets, policy=DEFAULT)
    assert time.monotonic() - started < 2
    assert sum(site.hits.values()) == 0
    assert crawled.stats.failures == {"blocked": len(targets)}
    for result in crawled.sink.results:
        assert result.error is ErrorKind.BLOCKED
        assert "refused" in result.message


async def test_the_robots_check_is_not_a_way_around_it(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/")
    crawled = await run_crawl(seeds=[site.url("/")], policy=DEFAULT, respect_robots=False)
    assert crawled.sink.result(site.url("/")).error is ErrorKind.BLOCKED
    assert sum(site.hits.values()) == 0


async def test_allow_private_reaches_loopback(site: Site, run_crawl: CrawlRunner) -> None:
    site.links("/")
    crawled = await run_crawl(seeds=[site.url("/")], policy=ssrf.AddressPolicy(allow_private=True))
    assert crawled.sink.result(site.url("/")).ok
    assert site.hits["/"] == 1
