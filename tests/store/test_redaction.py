"""The store URL's password is never printed: not by config errors, reprs, help, log
records (text or JSON, tracebacks included) nor driver errors. No server needed, but
for the one test that logs in with a wrong password.

The end-to-end greps (an operator's log, a CrawlJob's status and Events, with the
server stopped and started under it) are in tests/restart/test_store_outage.py and
tests/crawljob/test_store_outage.py.
"""

from __future__ import annotations

import argparse
import io
import logging

import pytest
from kopf._core.actions import loggers as kopf_loggers

from mandrill import cli, config, store_url
from mandrill.adapters.journal import StoreJournal
from mandrill.domain.errors import StoreError
from mandrill.domain.restart.process import JournalEntry
from mandrill.store_url import StoreUrl
from tests.postgres import PostgresServer
from tests.unit.fakes import NOW, REQUEST

SECRET = "s3cr3t-p@ss/w0rd"
ENCODED = "s3cr3t-p%40ss%2Fw0rd"
URL = f"postgresql://mandrill:{ENCODED}@db.example:5432/mandrill?sslmode=require"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (URL, "postgresql://mandrill:***@db.example:5432/mandrill?sslmode=require"),
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:pa@ss/wd@h/db", "postgresql://u:***@h/db"),
        ("postgresql://h/db?user=u&password=pw&x=1", "postgresql://h/db?user=u&password=***&x=1"),
        (
            "sqlite:///var/lib/mandrill/mandrill.sqlite",
            "sqlite:///var/lib/mandrill/mandrill.sqlite",
        ),
        ("u:pw@h/db", "***@h/db"),
    ],
)
def test_redact(given: str, shown: str) -> None:
    assert store_url.redact(given) == shown


def test_parse_knows_both_backends_and_hides_the_password_from_repr() -> None:
    assert StoreUrl.parse("sqlite:///x.sqlite").backend == "sqlite"
    assert StoreUrl.parse("postgres://u@h/db").backend == "postgresql"
    parsed = StoreUrl.parse(URL)
    assert parsed.backend == "postgresql"
    assert ENCODED not in repr(parsed)
    assert SECRET not in repr(parsed)
    assert parsed.redacted in repr(parsed)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("mysql://u:hunter2@h/db", "'mysql://u:***@h/db' is not a store URL: expected sqlite:///"),
        ("sqlite:///", "names no file"),
        ("sqlite://relative.db", "is not a store URL"),
        ("u:hunter2@h/db", "'***@h/db' is not a store URL"),
    ],
)
def test_parse_refuses_other_forms_without_showing_a_password(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=r".") as raised:
        StoreUrl.parse(given)
    assert problem in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_scrub_masks_the_password_as_written_and_as_sent() -> None:
    parsed = StoreUrl.parse(URL)
    text = f"url {URL}; sent {SECRET}; quoted {ENCODED}"
    scrubbed = parsed.scrub(text)
    assert SECRET not in scrubbed
    assert ENCODED not in scrubbed
    assert scrubbed == f"url {parsed.redacted}; sent ***; quoted ***"


def parsed_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_take_a_postgresql_url_and_never_show_its_password() -> None:
    settings = config.from_sources(parsed_args(), environ={"MANDRILL_STORE_URL": URL})
    assert settings.store_url == URL
    assert ENCODED not in repr(settings)
    assert "mandrill:***@db.example" in repr(settings)


def test_a_bad_store_url_is_reported_redacted_naming_its_source() -> None:
    bad = "mysql://app:hunter2@db/mandrill"
    with pytest.raises(ValueError, match=r"^MANDRILL_STORE_URL: ") as raised:
        config.from_sources(parsed_args(), environ={"MANDRILL_STORE_URL": bad})
    assert "hunter2" not in str(raised.value)
    assert "'mysql://app:***@db/mandrill'" in str(raised.value)


def test_mandrill_run_reports_a_bad_store_url_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--store-url", "mongodb://app:hunter2@db/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mandrill run: --store-url: 'mongodb://app:***@db/x' is not a store URL")
    assert "hunter2" not in err


def test_results_help_shows_the_env_default_redacted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MANDRILL_STORE_URL", URL)
    with pytest.raises(SystemExit):
        cli.main(["results", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert ENCODED not in out
    assert "mandrill:***@db.example:5432/mandrill" in out


def fail_quoting_the_password() -> None:
    raise RuntimeError(f"driver said: bad password {SECRET}")


@pytest.mark.parametrize("log_format", [kopf_loggers.LogFormat.FULL, kopf_loggers.LogFormat.JSON])
def test_log_records_are_scrubbed_whatever_the_formatter(
    log_format: kopf_loggers.LogFormat,
) -> None:
    """The last line of defence: a record that quotes the password, in its message or
    in its traceback, comes out of kopf's text and JSON formatters without it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(kopf_loggers.make_formatter(log_format=log_format, log_refkey="object"))
    logger = logging.Logger("test-scrub")
    logger.addHandler(handler)
    root = logging.Logger("root-for-test")
    root.addHandler(handler)
    store_url.scrub_logs(StoreUrl.parse(URL), root=root)

    logger.warning("connecting to %s", URL)
    logger.info("the password is %s", SECRET)
    try:
        fail_quoting_the_password()
    except RuntimeError:
        logger.exception("store failed")
    logger.info("nothing secret here: %d rows", 3)

    output = stream.getvalue()
    assert SECRET not in output
    assert ENCODED not in output
    assert "mandrill:***@db.example" in output
    assert "driver said: bad password ***" in output
    assert "nothing secret here: 3 rows" in output


@pytest.mark.postgres
async def test_a_wrong_password_costs_a_store_error_without_it(postgres: PostgresServer) -> None:
    wrong = "wrong-" + postgres.password
    journal = StoreJournal.from_url(StoreUrl.parse(postgres.url(password=wrong)))
    try:
        with pytest.raises(StoreError) as raised:
            await journal.save(JournalEntry(request=REQUEST, spec={}, targets=(), received=NOW))
    finally:
        await journal.close()
    message = str(raised.value)
    assert "password authentication failed" in message
    assert "postgresql://mandrill:***@127.0.0.1" in message
    assert wrong not in message
    assert postgres.password not in message
