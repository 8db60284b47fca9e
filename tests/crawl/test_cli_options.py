"""`mandrill crawl`'s crawl settings against the CrawlJob's: the CLI and the CRD never disagree.

Covers: every field of the CRD's spec has a flag, is given another way
(URLS_FILE), or is listed as cluster-only with a reason, and no flag names a
field the CRD lacks; each flag's bounds are the CRD schema's; each flag
yields the very CrawlSpec the CrawlJob field yields through
CrawlSpec.from_spec (and not the default one); values the domain parser
refuses (a bad regular expression, a bad host) are usage errors with exit
status 2, as are values past the CRD's bounds.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import pytest
import yaml

from mandrill import cli
from mandrill.commands import crawl_options
from mandrill.commands.crawl_options import Kind, SpecOption
from mandrill.domain.crawl.models import CrawlSpec

CRD = pathlib.Path(__file__).parents[2] / "crds" / "crawljob.yaml"
SEEDS = ("https://example.com/",)

# One value per CrawlJob field with a flag, none of them the default.
SAMPLES: dict[str, object] = {
    "maxDepth": 3,
    "maxPages": 50,
    "concurrency": 3,
    "perHostConcurrency": 1,
    "requestTimeoutSeconds": 7,
    "totalTimeoutSeconds": 60,
    "maxResponseBytes": 2048,
    "maxRedirects": 1,
    "maxRetries": 0,
    "allowedDomains": ["example.com", "*.example.org"],
    "include": [r"/docs/", r"/blog/\d+"],
    "exclude": [r"\.pdf$"],
    "respectRobotsTxt": False,
    "userAgent": "test-agent/1.0 (+https://example.com/bot)",
}


def crd_spec_properties() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"]["properties"])


def parse(*flags: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["crawl", "urls.txt", "-o", "out.tsv", *flags])


def argv_for(option: SpecOption, value: object) -> list[str]:
    """The flags a user types to give `value`."""
    if option.kind is Kind.SWITCH:
        return [option.flags[0] if value else "--no-" + option.flags[0].removeprefix("--")]
    if isinstance(value, list):
        return [part for item in value for part in (option.flags[0], str(item))]
    return [option.flags[0], str(value)]


def test_every_crawljob_field_has_a_flag_or_a_reason() -> None:
    fields = set(crd_spec_properties())
    flagged = [option.field for option in crawl_options.SPEC_OPTIONS]
    accounted = [*flagged, *crawl_options.FROM_ARGUMENTS, *crawl_options.CLUSTER_ONLY]
    assert len(accounted) == len(set(accounted)), "a field is accounted for twice"
    assert set(accounted) == fields
    assert all(crawl_options.CLUSTER_ONLY.values()), "each cluster-only field says why"


def test_the_bounds_are_the_crds() -> None:
    properties = crd_spec_properties()
    for option in crawl_options.SPEC_OPTIONS:
        schema = properties[option.field]
        expected = {
            Kind.COUNT: (schema.get("minimum"), schema.get("maximum")),
            Kind.TEXT: (schema.get("minLength"), schema.get("maxLength")),
            Kind.LIST: (None, schema.get("maxItems")),
            Kind.COMMA_LIST: (None, schema.get("maxItems")),
            Kind.SWITCH: (None, None),
        }[option.kind]
        assert (option.minimum, option.maximum) == expected, option.field
        kind_type = {Kind.COUNT: "integer", Kind.TEXT: "string", Kind.SWITCH: "boolean"}
        assert schema["type"] == kind_type.get(option.kind, "array"), option.field


@pytest.mark.parametrize(
    "option", crawl_options.SPEC_OPTIONS, ids=[o.field for o in crawl_options.SPEC_OPTIONS]
)
def test_each_flag_means_what_its_crawljob_field_means(option: SpecOption) -> None:
    assert set(SAMPLES) == {o.field for o in crawl_options.SPEC_OPTIONS}, "a sample per option"
    value = SAMPLES[option.field]
    args = parse(*argv_for(option, value))

    from_flags = crawl_options.spec_from_args(args, seeds=SEEDS)

    assert from_flags == CrawlSpec.from_spec({option.field: value}, seeds=SEEDS)
    assert from_flags != CrawlSpec.from_spec({}, seeds=SEEDS), "the flag changed nothing"


def test_no_flags_give_the_crawljob_defaults() -> None:
    assert crawl_options.spec_from_args(parse(), seeds=SEEDS) == CrawlSpec.from_spec(
        {}, seeds=SEEDS
    )


def test_allowed_domains_repeat_and_split_on_commas() -> None:
    args = parse("--allowed-domain", "a.example, b.example", "--allowed-domain", "c.example")
    spec = crawl_options.spec_from_args(args, seeds=SEEDS)
    assert spec.allowed_domains == ("a.example", "b.example", "c.example")


def test_old_flag_names_still_work() -> None:
    spec = crawl_options.spec_from_args(parse("--per-host", "3", "--timeout", "4"), seeds=SEEDS)
    assert (spec.per_host_concurrency, spec.request_timeout) == (3, 4.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-depth", "21"], "argument --max-depth: must be at most 20"),
        (["--max-response-bytes", "1000"], "must be at least 1024"),
        (["--request-timeout", "1.5"], "'1.5' is not a whole number"),
        (["--user-agent", "x" * 513], "must be at most 512 characters"),
    ],
)
def test_values_past_the_crds_bounds_are_usage_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*flags)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--include", "(unclosed"], "include: '(unclosed' is not a valid regular expression"),
        (["--allowed-domain", "exa mple.com"], "allowedDomains: 'exa mple.com' is not a host"),
        (["--exclude", "x"] * 51, "--exclude: at most 50 values (exclude)"),
    ],
)
def test_values_the_domain_parser_refuses_are_usage_errors(
    flags: list[str],
    message: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("https://example.com/\n")
    status = cli.main(["crawl", str(urls), "-o", str(tmp_path / "out.tsv"), *flags])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"mandrill crawl: {message}")
    assert not (tmp_path / "out.tsv").exists(), "refused before the output is created"
