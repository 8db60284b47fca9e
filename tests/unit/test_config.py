"""Operator settings from flags and environment: flags beat env beat defaults, and a bad
value is reported with the flag or environment variable it came from."""

from __future__ import annotations

import argparse

import pytest

from mandrill import config


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_without_flags_or_env() -> None:
    assert config.from_sources(args(), environ={}) == config.Settings()
    assert config.Settings().denied_namespaces == ("kube-system",)


def test_env_beats_defaults() -> None:
    settings = config.from_sources(
        args(),
        environ={
            "MANDRILL_NAMESPACES": "shop, blog ,",
            "MANDRILL_MAX_CONCURRENT_RESTARTS": "7",
            "MANDRILL_DRAIN_TIMEOUT": "2.5",
            "UNRELATED": "x",
        },
    )
    assert settings.namespaces == ("shop", "blog")
    assert settings.max_concurrent_restarts == 7
    assert settings.drain_timeout == 2.5
    assert settings.log_level == "INFO"


def test_flags_beat_env() -> None:
    settings = config.from_sources(
        args("--max-concurrent-restarts", "3", "--deny-namespaces", "a,b"),
        environ={"MANDRILL_MAX_CONCURRENT_RESTARTS": "7", "MANDRILL_DENIED_NAMESPACES": "c"},
    )
    assert settings.max_concurrent_restarts == 3
    assert settings.denied_namespaces == ("a", "b")


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--liveness-port", "http"], {}, "--liveness-port"),
        (["--drain-timeout", "soon"], {"MANDRILL_DRAIN_TIMEOUT": "5"}, "--drain-timeout"),
    ],
    ids=["flag", "flag-over-env"],
)
def test_unparsable_value_names_its_source(
    argv: list[str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        config.from_sources(args(*argv), environ=environ)


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--max-concurrent-restarts", "0"], {}, "--max-concurrent-restarts"),
        ([], {"MANDRILL_STORE_URL": "mysql://db/mandrill"}, "MANDRILL_STORE_URL"),
    ],
    ids=["flag", "env"],
)
def test_out_of_range_value_names_its_source(
    argv: list[str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        config.from_sources(args(*argv), environ=environ)


@pytest.mark.parametrize(
    ("flag", "serves", "skips"),
    [
        ("shop,blog", {"shop", "blog"}, {"shopping", "other"}),
        ("team-*,!team-test-*", {"team-a", "team-prod"}, {"team-test-1", "other"}),
        ("a-*,b-*,!*-tmp", {"a-1", "b-1"}, {"a-tmp", "b-tmp", "c-1"}),
        ("!kube-*", {"shop", "default"}, {"kube-system", "kube-public"}),
    ],
)
def test_namespace_exclusions_apply_to_every_glob_as_kopf_reads_them(
    flag: str, serves: set[str], skips: set[str]
) -> None:
    from mandrill.wiring import namespace_filter

    patterns = config.namespace_patterns(flag)
    matches = namespace_filter(patterns)
    assert {ns for ns in serves | skips if matches(ns)} == serves


def test_no_namespace_flag_serves_every_namespace() -> None:
    """Cluster-wide, as kopf runs without --namespace (the worker Job sweep relies on it)."""
    from mandrill.wiring import namespace_filter

    matches = namespace_filter(config.namespace_patterns(""))
    assert all(matches(ns) for ns in ("default", "team-a", "kube-system"))
