"""URL canonicalisation and resolution of links against a page.

A canonical URL is the crawl's identity for a resource: dedup, the robots and
per-host keys, and the edges all use it. Canonical means: scheme and host
lowercased, IDNA hosts in ASCII form, default port dropped, no fragment, dot
segments resolved, an empty path written as "/", an empty query dropped, and
percent-encoding normalised (unreserved characters decoded, hex digits upper
case, everything outside RFC 3986's allowed set encoded as UTF-8). Only http
and https URLs have a canonical form; anything else is `None`.

Resolution is the crawler's hot path (every href of every page passes through
it), so it avoids a `urljoin` + `urlsplit` round trip: `BaseURL` parses the
page's base once, the common reference shapes ("/path", "page", "?q",
"//host/...") are joined by string operations, absolute or
protocol-relative references to the page's own origin skip the authority,
and only references to other origins take the full parse. Authority and path
normalisation are cached because pages repeat their navigation links.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import attrs

SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": "80", "https": "443"}

# WHATWG URL parsing strips leading/trailing C0 controls and spaces, and
# removes ASCII tab and newline anywhere in the input.
_STRIP = "".join(chr(c) for c in range(0x21))
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# pchar / "/" (path) and pchar / "/" / "?" (query), minus "%" which is handled apart.
_PATH_NEEDS_WORK = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")
_QUERY_NEEDS_WORK = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]")
_PATH_TOKEN = re.compile(r"%([0-9A-Fa-f]{2})|([^A-Za-z0-9\-._~!$&'()*+,;=:@/])")
_QUERY_TOKEN = re.compile(r"%([0-9A-Fa-f]{2})|([^A-Za-z0-9\-._~!$&'()*+,;=:@/?])")
# Characters a host may not contain (WHATWG "forbidden domain code points", roughly).
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")


@attrs.frozen
class BaseURL:
    """A page's base URL, split once so each link on the page joins cheaply."""

    url: str
    """The canonical base URL."""
    scheme: str
    """"http" or "https"."""
    origin: str
    """scheme://authority, with no trailing slash."""
    path: str
    """The path, always starting with "/"."""
    directory: str
    """The path up to and including its last "/": what relative paths join onto."""

    @classmethod
    def parse(cls, url: str) -> BaseURL | None:
        """Split `url` (canonicalised first); None when it is not an http(s) URL."""
        canonical = canonicalize(url)
        if canonical is None:
            return None
        scheme, _, rest = canonical.partition("://")
        slash = rest.find("/")
        origin = canonical[: len(scheme) + 3 + slash]
        path = rest[slash:].partition("?")[0]
        return cls(
            url=canonical,
            scheme=scheme,
            origin=origin,
            path=path,
            directory=path[: path.rfind("/") + 1],
        )


def canonicalize(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or None if it has none."""
    url = url.strip(_STRIP)
    if "\t" in url or "\n" in url or "\r" in url:
        url = _TAB_NEWLINE.sub("", url)
    match = _SCHEME.match(url)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        return None
    rest = url[match.end() :].lstrip("/\\")
    rest = rest.partition("#")[0]
    end = len(rest)
    for sep in "/\\?":
        at = rest.find(sep, 0, end)
        if at != -1:
            end = at
    authority = _canonical_authority(rest[:end], scheme)
    if authority is None:
        return None
    path, _, query = rest[end:].partition("?")
    if "\\" in path:
        path = path.replace("\\", "/")
    return f"{scheme}://{authority}{_canonical_path(path)}{_canonical_query(query)}"


def resolve(base: BaseURL, ref: str) -> str | None:  # noqa: PLR0911 - a return per shape
    """Resolve an href against `base` into a canonical URL.

    None for references that do not name an http(s) resource: other schemes
    (mailto:, javascript:, data:, tel:, ...), and unparseable ones. The
    fragment is dropped, so "#top" resolves to the base URL itself.
    """
    ref = ref.strip(_STRIP)
    if "\t" in ref or "\n" in ref or "\r" in ref:
        ref = _TAB_NEWLINE.sub("", ref)
    hash_at = ref.find("#")
    if hash_at != -1:
        ref = ref[:hash_at]
    if not ref:
        return base.url
    first = ref[0]
    if first in "/\\":
        if len(ref) > 1 and ref[1] in "/\\":
            return _absolute(base, f"{base.scheme}:{ref}")
        path, _, query = ref.partition("?")
        if "\\" in path:
            path = path.replace("\\", "/")
        return f"{base.origin}{_canonical_path(path)}{_canonical_query(query)}"
    if first == "?":
        return f"{base.origin}{base.path}{_canonical_query(ref[1:])}"
    colon = ref.find(":")
    if colon != -1:
        match = _SCHEME.match(ref)
        if match is not None:
            scheme = match.group(1).lower()
            if scheme not in SCHEMES:
                return None
            rest = ref[match.end() :]
            if scheme == base.scheme and not rest.startswith(("/", "\\")):
                # "http:page" relative to an http base is a relative reference.
                return resolve(base, rest) if rest else base.url
            return _absolute(base, ref)
    return _relative(base, ref)


def _relative(base: BaseURL, ref: str) -> str:
    """A path-relative reference ("page", "../up", "./here?q") joined onto the base's directory."""
    path, _, query = ref.partition("?")
    if "\\" in path:
        path = path.replace("\\", "/")
    directory = base.directory
    if path.startswith("."):
        directory, path = _leading_dots(directory, path)
    return f"{base.origin}{_canonical_path(directory + path)}{_canonical_query(query)}"


def _leading_dots(directory: str, path: str) -> tuple[str, str]:
    """Apply a relative path's leading "./" and "../" segments to `directory`.

    The first steps of RFC 3986's dot-segment removal, done on the page's
    (canonical) directory so the joined path usually needs none: each "../"
    drops the directory's last segment, never above the root.
    """
    while True:
        if path.startswith("./"):
            path = path[2:]
        elif path.startswith("../"):
            path = path[3:]
            if directory != "/":
                directory = directory[: directory.rfind("/", 0, -1) + 1]
        else:
            return directory, path


def _absolute(base: BaseURL, url: str) -> str | None:
    """`canonicalize(url)` for an href already stripped of tabs, newlines and fragment.

    A link spelled with the page's own origin (as canonical: lower-case scheme
    and host, no default port) needs only its path and query normalised:
    the authority would canonicalise to itself.
    """
    origin = base.origin
    if url.startswith(origin):
        tail = url[len(origin) :].rstrip(_STRIP)  # blanks were before the fragment
        if not tail or tail[0] in "/?\\":
            path, _, query = tail.partition("?")
            if "\\" in path:
                path = path.replace("\\", "/")
            return f"{origin}{_canonical_path(path)}{_canonical_query(query)}"
    return canonicalize(url)


def authority_of(url: str) -> str:
    """The host[:port] of a canonical URL: the key for per-host limits."""
    start = url.find("://") + 3
    end = url.find("/", start)
    return url[start:end] if end != -1 else url[start:]


def origin_of(url: str) -> str:
    """scheme://host[:port] of a canonical URL: the key for robots.txt."""
    start = url.find("://") + 3
    end = url.find("/", start)
    return url[:end] if end != -1 else url


def host_of(url: str) -> str:
    """The host of a canonical URL, without userinfo, port or IPv6 brackets."""
    authority = authority_of(url).rpartition("@")[2]
    if authority.startswith("["):
        return authority[1 : authority.find("]")]
    return authority.partition(":")[0]


@functools.lru_cache(maxsize=4096)
def _canonical_authority(authority: str, scheme: str) -> str | None:  # noqa: PLR0911
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            return None
        try:
            address = ipaddress.IPv6Address(hostport[1:close])
        except ValueError:
            return None
        host = f"[{address.compressed}]"
        port_part = hostport[close + 1 :]
        if port_part and not port_part.startswith(":"):
            return None
        port = port_part[1:]
    else:
        raw_host, _, port = hostport.partition(":")
        if ":" in port:
            return None
        named_host = _canonical_host(raw_host)
        if named_host is None:
            return None
        host = named_host
    if port:
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            return None
        port = str(int(port))
        if port == DEFAULT_PORTS[scheme]:
            port = ""
    elif hostport.endswith(":"):
        port = ""
    prefix = f"{userinfo}{at}" if at else ""
    return f"{prefix}{host}:{port}" if port else f"{prefix}{host}"


def _canonical_host(raw: str) -> str | None:
    host = _percent_decode(raw) if "%" in raw else raw
    host = host.lower().rstrip(".")
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if _FORBIDDEN_HOST.search(host):
        return None
    if _DOTTED_QUAD.fullmatch(host):
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            return None
    return host


def _percent_decode(text: str) -> str:
    def decode(match: re.Match[str]) -> str:
        return chr(int(match.group(1), 16))

    return re.sub(r"%([0-9A-Fa-f]{2})", decode, text)


def _encode_token(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if escaped is not None:
        char = chr(int(escaped, 16))
        return char if char in _UNRESERVED else f"%{escaped.upper()}"
    return "".join(f"%{byte:02X}" for byte in match.group(2).encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=16384)
def _canonical_path(path: str) -> str:
    if not path:
        return "/"
    if "%" in path or _PATH_NEEDS_WORK.search(path):
        path = _PATH_TOKEN.sub(_encode_token, path)
    if not path.startswith("/"):
        path = "/" + path
    if "/." in path:
        path = _remove_dot_segments(path)
    return path


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    if "%" in query or _QUERY_NEEDS_WORK.search(query):
        query = _QUERY_TOKEN.sub(_encode_token, query)
    return f"?{query}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, over segments rather than the character loop."""
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)
