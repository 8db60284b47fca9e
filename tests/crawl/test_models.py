"""CrawlSpec construction and scope rules, and the domain's import boundary."""

from __future__ import annotations

import ast
import pathlib

import pytest

import mandrill.domain.crawl
from mandrill.domain.crawl.models import CrawlSpec, Edge, EdgeList


def test_from_spec_reads_the_crawljob_fields() -> None:
    spec = CrawlSpec.from_spec(
        {
            "urls": ["https://example.com/"],
            "maxDepth": 2,
            "maxPages": 50,
            "concurrency": 4,
            "perHostConcurrency": 1,
            "requestTimeoutSeconds": 3,
            "totalTimeoutSeconds": 60,
            "allowedDomains": ["Example.com."],
            "include": ["/docs/"],
            "exclude": [r"\.pdf$"],
            "respectRobotsTxt": False,
            "userAgent": "custom-bot/1",
            "maxResponseBytes": 1000,
            "maxRedirects": 3,
            "maxRetries": 0,
        }
    )
    assert (spec.max_depth, spec.max_pages, spec.concurrency) == (2, 50, 4)
    assert (spec.per_host_concurrency, spec.request_timeout, spec.total_timeout) == (1, 3.0, 60.0)
    assert spec.allowed_domains == ("example.com",)
    assert (spec.respect_robots, spec.user_agent, spec.max_response_bytes) == (
        False,
        "custom-bot/1",
        1000,
    )
    assert (spec.max_redirects, spec.max_retries) == (3, 0)


def test_from_spec_defaults_and_seed_override() -> None:
    spec = CrawlSpec.from_spec({"urls": ["http://a.example/"]}, seeds=["http://b.example/"])
    assert spec.seeds == ("http://b.example/",)
    assert spec.max_depth == 0
    assert spec.respect_robots
    assert spec.total_timeout is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_depth": -1}, "maxDepth"),
        ({"max_pages": 0}, "maxPages"),
        ({"per_host_concurrency": 0}, "perHostConcurrency"),
        ({"include": ["("]}, "include"),
        ({"allowed_domains": ["exa mple.com"]}, "allowedDomains"),
        ({"user_agent": "  "}, "userAgent"),
    ],
)
def test_create_rejects_bad_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CrawlSpec.create(seeds=["http://example.com/"], **settings)  # type: ignore[arg-type]


def test_follows_domains_with_subdomains_and_patterns() -> None:
    spec = CrawlSpec.create(
        seeds=(), allowed_domains=["example.com"], include=["/docs/"], exclude=["draft"]
    )
    assert spec.follows("https://example.com/docs/a")
    assert spec.follows("https://www.example.com/docs/a")
    assert not spec.follows("https://notexample.com/docs/a")
    assert not spec.follows("https://example.com/blog/a")
    assert not spec.follows("https://example.com/docs/draft-1")


def test_edge_list_is_a_sequence_of_edges() -> None:
    edges = EdgeList("http://s.example/", ("http://a.example/", "http://b.example/"))
    assert len(edges) == 2
    assert edges[1] == Edge(source="http://s.example/", target="http://b.example/")
    assert list(edges[:1]) == [Edge(source="http://s.example/", target="http://a.example/")]
    assert [e.target for e in edges] == ["http://a.example/", "http://b.example/"]


def test_the_crawl_domain_imports_no_framework_or_http_client() -> None:
    forbidden = {"aiohttp", "kopf", "kubernetes_asyncio", "yarl"}
    package = pathlib.Path(mandrill.domain.crawl.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{module.name} imports {name}"
