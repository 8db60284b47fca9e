"""Canonical URLs: the crawl's identity for dedup, per-host limits and edges."""

from __future__ import annotations

import pytest

from mandrill.domain.crawl import urls


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTP://Example.COM/", "http://example.com/"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/../../a", "http://example.com/a"),
        ("http://example.com/a/%2e%2E/b", "http://example.com/b"),
        ("http://example.com/%7euser/%7E", "http://example.com/~user/~"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/?", "http://example.com/"),
        ("http://example.com/p?b=2&a=1", "http://example.com/p?b=2&a=1"),
        ("http://example.com/p?q=a b", "http://example.com/p?q=a%20b"),
        ("http://b\u00fccher.example/", "http://xn--bcher-kva.example/"),
        ("http://example.com./", "http://example.com/"),
        ("http://[::FFFF:127.0.0.1]:8080/", "http://[::ffff:7f00:1]:8080/"),
        ("  http://example.com/x\n", "http://example.com/x"),
        ("http://exa\tmple.com/", "http://example.com/"),
        ("http:\\\\example.com\\a\\b", "http://example.com/a/b"),
    ],
)
def test_canonicalize(raw: str, canonical: str) -> None:
    assert urls.canonicalize(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "mailto:someone@example.com",
        "javascript:alert(1)",
        "ftp://example.com/",
        "example.com/no-scheme",
        "http://",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://[not-v6]/",
    ],
)
def test_canonicalize_refuses(raw: str) -> None:
    assert urls.canonicalize(raw) is None


@pytest.fixture
def base() -> urls.BaseURL:
    parsed = urls.BaseURL.parse("http://example.com/dir/page.html?x=1")
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("ref", "resolved"),
    [
        ("other.html", "http://example.com/dir/other.html"),
        ("./other.html", "http://example.com/dir/other.html"),
        ("../up.html", "http://example.com/up.html"),
        ("../../../../top", "http://example.com/top"),
        ("/abs/path", "http://example.com/abs/path"),
        ("//cdn.example.net/lib.js", "http://cdn.example.net/lib.js"),
        ("?q=2", "http://example.com/dir/page.html?q=2"),
        ("#section", "http://example.com/dir/page.html?x=1"),
        ("", "http://example.com/dir/page.html?x=1"),
        ("  spaced.html\n ", "http://example.com/dir/spaced.html"),
        ("HTTPS://Other.Example/X", "https://other.example/X"),
        ("http:relative", "http://example.com/dir/relative"),
        ("sub/../x%7e", "http://example.com/dir/x~"),
        ("\\back\\slash", "http://example.com/back/slash"),
    ],
)
def test_resolve(base: urls.BaseURL, ref: str, resolved: str) -> None:
    assert urls.resolve(base, ref) == resolved


@pytest.mark.parametrize(
    "ref", ["mailto:a@example.com", "javascript:void(0)", "data:text/html,hi", "tel:+100", "a:b"]
)
def test_resolve_drops_other_schemes(base: urls.BaseURL, ref: str) -> None:
    assert urls.resolve(base, ref) is None


def test_resolve_agrees_with_canonicalize_of_urljoin(base: urls.BaseURL) -> None:
    """The fast path and the full parse give the same answer for the common shapes."""
    from urllib.parse import urljoin

    for ref in ["a/b/../c?d=1", "/x/./y", "../z", "//h.example/p", "q?r#s"]:
        expected = urls.canonicalize(urljoin(base.url, ref))
        assert urls.resolve(base, ref) == expected, ref


def test_keys_of_a_canonical_url() -> None:
    url = "https://user@[2001:db8::1]:8443/p?q"
    assert urls.authority_of(url) == "user@[2001:db8::1]:8443"
    assert urls.origin_of(url) == "https://user@[2001:db8::1]:8443"
    assert urls.host_of(url) == "2001:db8::1"
    assert urls.host_of("http://example.com:81/") == "example.com"


@pytest.mark.parametrize(
    "ref",
    [
        "http://example.com/dir/a",
        "http://example.com/dir/a \t",
        "http://example.com/x y #frag",
        "http://example.com",
        "http://example.com?q=1",
        "http://example.com\\a\\b",
        "http://example.com:80/a",
        "http://example.com:8080/a",
        "http://example.com.evil/a",
        "HTTP://EXAMPLE.COM/a",
        "//example.com/a/../b",
        "//example.com//a",
        "//example.com",
    ],
)
def test_links_to_the_page_origin_take_the_short_way_to_the_same_answer(
    base: urls.BaseURL, ref: str
) -> None:
    """An absolute link spelled with the page's origin skips the authority, not the rules."""
    absolute = f"{base.scheme}:{ref}" if ref.startswith("//") else ref
    assert urls.resolve(base, ref) == urls.canonicalize(absolute.partition("#")[0])


@pytest.mark.parametrize(
    ("page", "ref", "resolved"),
    [
        ("http://h.example/a/b/c", "../x", "http://h.example/a/x"),
        ("http://h.example/a/b/c", "../../../../x", "http://h.example/x"),
        ("http://h.example/a//b/c", "../x", "http://h.example/a//x"),
        ("http://h.example/a//b/c", "../../x", "http://h.example/a/x"),
        ("http://h.example/a/b/c", "./../.././x", "http://h.example/x"),
        ("http://h.example/a/b/c", "../", "http://h.example/a/"),
        ("http://h.example/a/b/c", "..", "http://h.example/a/"),
        ("http://h.example/a/b/c", ".hidden/../y", "http://h.example/a/b/y"),
        ("http://h.example/a/b/c", "..%2F..%2Fx", "http://h.example/a/b/..%2F..%2Fx"),
        ("http://h.example/a/b/c", "%2e%2e/x", "http://h.example/a/x"),
        ("http://h.example/", "../../x", "http://h.example/x"),
    ],
)
def test_leading_dot_segments(page: str, ref: str, resolved: str) -> None:
    base = urls.BaseURL.parse(page)
    assert base is not None
    assert urls.resolve(base, ref) == resolved
