"""The operator's crawl setting: --crawl-allow-private / MANDRILL_CRAWL_ALLOW_PRIVATE.

Covers: off by default; true/false/1/0 in any case from flag or environment;
the flag over the environment; junk rejected with a message naming the
setting, never read as False.
"""

from __future__ import annotations

import argparse

import pytest

from mandrill import config


def settings(*argv: str, env: dict[str, str] | None = None) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.from_sources(parser.parse_args(list(argv)), env or {})


def test_private_addresses_are_refused_by_default() -> None:
    assert settings().crawl_allow_private is False


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_boolean_words(text: str, value: bool) -> None:
    assert settings("--crawl-allow-private", text).crawl_allow_private is value
    assert settings(env={"MANDRILL_CRAWL_ALLOW_PRIVATE": text}).crawl_allow_private is value


def test_the_flag_wins_over_the_environment() -> None:
    got = settings("--crawl-allow-private", "false", env={"MANDRILL_CRAWL_ALLOW_PRIVATE": "true"})
    assert got.crawl_allow_private is False


@pytest.mark.parametrize("junk", ["yes", "on", "", "truthy", "2"])
def test_junk_is_rejected_with_a_clear_error(junk: str) -> None:
    with pytest.raises(
        ValueError,
        match=r"MANDRILL_CRAWL_ALLOW_PRIVATE: .* is not a valid boolean \(true, false, 1 or 0\)",
    ):
        settings(env={"MANDRILL_CRAWL_ALLOW_PRIVATE": junk})
    with pytest.raises(ValueError, match="--crawl-allow-private"):
        settings("--crawl-allow-private", junk)
