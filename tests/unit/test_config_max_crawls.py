"""--max-crawls / MANDRILL_MAX_CRAWLS: default 8, 0 for no limit, flag over env, and a bad
value refused at start-up naming where it came from."""

from __future__ import annotations

import argparse

import pytest

from mandrill import config


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_default_is_eight() -> None:
    assert config.from_sources(_args(), environ={}).max_crawls == 8


def test_env_sets_it_and_zero_means_no_limit() -> None:
    assert config.from_sources(_args(), environ={"MANDRILL_MAX_CRAWLS": "0"}).max_crawls == 0
    assert config.from_sources(_args(), environ={"MANDRILL_MAX_CRAWLS": "3"}).max_crawls == 3


def test_flag_beats_env() -> None:
    settings = config.from_sources(_args("--max-crawls", "1"), environ={"MANDRILL_MAX_CRAWLS": "5"})
    assert settings.max_crawls == 1


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--max-crawls", "-1"], {}, r"--max-crawls: -1 is not a number of crawls"),
        (["--max-crawls", "many"], {}, r"--max-crawls: 'many' is not a valid integer"),
        ([], {"MANDRILL_MAX_CRAWLS": "2.5"}, r"MANDRILL_MAX_CRAWLS: '2.5' is not a valid integer"),
    ],
    ids=["negative", "word", "env-fraction"],
)
def test_a_bad_value_names_its_source(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        config.from_sources(_args(*argv), environ=environ)


def test_the_flag_says_its_env_and_default() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    assert "[env MANDRILL_MAX_CRAWLS; default 8]" in " ".join(parser.format_help().split())
