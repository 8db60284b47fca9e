"""The flags of `mandrill crawl` that are CrawlJob spec fields, and how they become a CrawlSpec.

One table (`SPEC_OPTIONS`) maps each flag to its CrawlJob field. Parsed
flags are put together as a CrawlJob's camelCase spec and handed to
`CrawlSpec.from_spec`, the parser the operator uses for a CrawlJob, so a
setting means the same thing, with the same default, on both sides. Flags
left out are left out of that spec, and the domain's defaults apply. The
bounds checked here are the CRD schema's (minimum, maximum, maxLength,
maxItems): a value the API server would reject is a usage error here too.

tests/crawl/test_cli_options.py checks that every field of the CRD's spec
has a flag here, is given another way (`urls`: URLS_FILE), or is named in
`CLUSTER_ONLY` with the reason, and that the bounds match the CRD's.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from mandrill.domain.crawl.models import CrawlSpec

DEFAULTS = CrawlSpec.create(seeds=())

FROM_ARGUMENTS = {"urls": "URLS_FILE: the seed URLs, one a line"}
"""CrawlJob fields given by a positional argument rather than a flag."""

CLUSTER_ONLY = {
    "urlsFrom": "seeds from a ConfigMap; locally they come from URLS_FILE",
    "workers": "worker pods sharing the cluster's PostgreSQL store; locally one process crawls",
}
"""CrawlJob fields with no flag, and why."""


class Kind(enum.Enum):
    """How a flag's value is read."""

    COUNT = "count"
    """A whole number within [minimum, maximum]."""
    TEXT = "text"
    """A string of minimum..maximum characters."""
    LIST = "list"
    """Repeatable; at most `maximum` values in all."""
    COMMA_LIST = "comma_list"
    """Repeatable, each value also split on commas; at most `maximum` in all."""
    SWITCH = "switch"
    """--flag / --no-flag."""


@attrs.frozen(kw_only=True)
class SpecOption:
    """One flag that sets one CrawlJob spec field."""

    field: str
    """The CrawlJob spec field (camelCase); also the argparse dest."""
    flags: tuple[str, ...]
    """The flag and its aliases."""
    kind: Kind
    help: str
    """What it does; the domain's default is appended."""
    default: object = None
    """The default shown in --help (the domain's, never applied here); None for none."""
    metavar: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    """Bounds, as the CRD schema has them (see Kind for what they bound)."""


SPEC_OPTIONS: tuple[SpecOption, ...] = (
    SpecOption(
        field="maxDepth", flags=("--max-depth",), kind=Kind.COUNT, metavar="N",
        minimum=0, maximum=20, default=DEFAULTS.max_depth,
        help="link hops to follow from the seeds; 0 = the seeds only",
    ),
    SpecOption(
        field="maxPages", flags=("--max-pages",), kind=Kind.COUNT, metavar="N",
        minimum=1, maximum=1_000_000, default=DEFAULTS.max_pages,
        help="most URLs to fetch, seeds included",
    ),
    SpecOption(
        field="concurrency", flags=("--concurrency",), kind=Kind.COUNT, metavar="N",
        minimum=1, maximum=256, default=DEFAULTS.concurrency,
        help="requests in flight at once, over all hosts",
    ),
    SpecOption(
        field="perHostConcurrency", flags=("--per-host-concurrency", "--per-host"),
        kind=Kind.COUNT, metavar="N", minimum=1, maximum=64,
        default=DEFAULTS.per_host_concurrency,
        help="requests in flight at once to one host[:port]",
    ),
    SpecOption(
        field="requestTimeoutSeconds", flags=("--request-timeout", "--timeout"),
        kind=Kind.COUNT, metavar="S", minimum=1, maximum=300,
        default=int(DEFAULTS.request_timeout),
        help="seconds for one request (connect, headers and body)",
    ),
    SpecOption(
        field="totalTimeoutSeconds", flags=("--total-timeout",), kind=Kind.COUNT, metavar="S",
        minimum=1, maximum=604_800, default="no limit",
        help="seconds for the whole crawl; then it stops, writes what it found and exits 0",
    ),
    SpecOption(
        field="maxResponseBytes", flags=("--max-response-bytes",), kind=Kind.COUNT,
        metavar="N", minimum=1024, maximum=104_857_600, default=DEFAULTS.max_response_bytes,
        help="stop reading a body past this many bytes and record the URL as too_large",
    ),
    SpecOption(
        field="maxRedirects", flags=("--max-redirects",), kind=Kind.COUNT, metavar="N",
        minimum=0, maximum=20, default=DEFAULTS.max_redirects,
        help="redirect hops followed from one URL",
    ),
    SpecOption(
        field="maxRetries", flags=("--max-retries",), kind=Kind.COUNT, metavar="N",
        minimum=0, maximum=10, default=DEFAULTS.max_retries,
        help="extra attempts after a 429, a 503 or a reset connection",
    ),
    SpecOption(
        field="allowedDomains", flags=("--allowed-domain",), kind=Kind.COMMA_LIST,
        metavar="HOST", maximum=100, default="any host",
        help="follow links only to HOST and its subdomains; repeat or comma-separate "
        "(seeds are fetched regardless)",
    ),
    SpecOption(
        field="include", flags=("--include",), kind=Kind.LIST, metavar="REGEX", maximum=50,
        help="follow a link only if REGEX (Python re) is found in its URL; "
        "repeat: any one must match",
    ),
    SpecOption(
        field="exclude", flags=("--exclude",), kind=Kind.LIST, metavar="REGEX", maximum=50,
        help="never follow a link whose URL REGEX is found in; repeatable",
    ),
    SpecOption(
        field="respectRobotsTxt", flags=("--robots",), kind=Kind.SWITCH, default="--robots",
        help="obey (or, --no-robots, ignore) each host's robots.txt: Disallow and Crawl-delay",
    ),
    SpecOption(
        field="userAgent", flags=("--user-agent",), kind=Kind.TEXT, metavar="TEXT",
        minimum=1, maximum=512, default=DEFAULTS.user_agent,
        help="the User-Agent header, and the name robots.txt rules are matched against",
    ),
)  # fmt: skip


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per SPEC_OPTIONS entry, in a group of their own in --help."""
    group = parser.add_argument_group(
        "crawl settings (the CrawlJob spec fields of the same names; see docs/crawl-jobs.md)"
    )
    for option in SPEC_OPTIONS:
        shown = f" (default: {option.default})" if option.default is not None else ""
        settings: dict[str, Any] = {"dest": option.field, "default": None}
        if option.kind is Kind.SWITCH:
            settings["action"] = argparse.BooleanOptionalAction
        elif option.kind in {Kind.LIST, Kind.COMMA_LIST}:
            settings["action"] = "append"
        else:
            settings["type"] = (_count if option.kind is Kind.COUNT else _text)(option)
        if option.metavar is not None:
            settings["metavar"] = option.metavar
        group.add_argument(*option.flags, help=option.help + shown, **settings)


def spec_from_args(args: argparse.Namespace, *, seeds: Sequence[str]) -> CrawlSpec:
    """The CrawlSpec the flags describe, built by the CrawlJob's own parser.

    Raises ValueError (one line, naming the setting) for a value the parser or
    the CRD's bounds refuse."""
    return CrawlSpec.from_spec(spec_fields(args), seeds=seeds)


def spec_fields(args: argparse.Namespace) -> dict[str, object]:
    """The flags given, as a CrawlJob's camelCase spec (flags not given are absent)."""
    fields: dict[str, object] = {}
    for option in SPEC_OPTIONS:
        value = getattr(args, option.field)
        if value is None:
            continue
        if option.kind in {Kind.LIST, Kind.COMMA_LIST}:
            value = _items(value, option)
        fields[option.field] = value
    return fields


def _items(values: Iterable[str], option: SpecOption) -> list[str]:
    items = list(values)
    if option.kind is Kind.COMMA_LIST:
        items = [part.strip() for value in items for part in value.split(",") if part.strip()]
    if option.maximum is not None and len(items) > option.maximum:
        raise ValueError(f"{option.flags[0]}: at most {option.maximum} values ({option.field})")
    return items


def _count(option: SpecOption) -> argparse._ActionType:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if option.minimum is not None and value < option.minimum:
            raise argparse.ArgumentTypeError(f"must be at least {option.minimum}")
        if option.maximum is not None and value > option.maximum:
            raise argparse.ArgumentTypeError(f"must be at most {option.maximum}")
        return value

    return parse


def _text(option: SpecOption) -> argparse._ActionType:
    def parse(text: str) -> str:
        if option.minimum is not None and len(text.strip()) < option.minimum:
            raise argparse.ArgumentTypeError(f"must be at least {option.minimum} characters")
        if option.maximum is not None and len(text) > option.maximum:
            raise argparse.ArgumentTypeError(f"must be at most {option.maximum} characters")
        return text

    return parse
