"""Store URLs: which backend, where, and how to show one without its password.

The store URL is the one setting that carries a secret: a PostgreSQL URL's
password (in a cluster it comes from a Secret, as MANDRILL_STORE_URL). So
nothing prints a URL as given. A log line, an error, a CrawlJob's status or
an Event shows `redacted` (the password replaced by ***), and text that did
not come from us, a driver's error say, goes through `StoreUrl.scrub`, which
masks the password wherever it occurs. `ScrubFilter` does the same to every
log record, as a last line of defence for what no call site thought of.

Accepted: sqlite:///relative/path, sqlite:////absolute/path (the embedded
default), and postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgres://,
with libpq's query parameters such as sslmode) for asyncpg.
"""

from __future__ import annotations

import logging
import pathlib
import re
import urllib.parse
from typing import Literal

import attrs

Backend = Literal["sqlite", "postgresql"]
MASK = "***"
SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the userinfo's password and any password= parameter replaced by ***.

    Everything between :// and the LAST @ counts as userinfo, so a password
    with an unescaped @ or / is masked whole (at worst a host goes too)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        # Not a URL at all (a scheme forgotten?): what precedes an @ may be a password.
        return MASK + text[text.rindex("@") :] if "@" in text else text
    if "@" in rest:
        userinfo, at, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{MASK}{at}{host}" if colon else rest
    return _PASSWORD_PARAM.sub(rf"\g<1>{MASK}", f"{scheme}{sep}{rest}")


@attrs.frozen
class StoreUrl:
    """A store URL checked for its form, with the password kept out of every repr."""

    backend: Backend
    url: str = attrs.field(repr=False)
    """As given: only for the driver, never to print."""
    redacted: str
    """The URL to show, wherever a URL is shown."""
    secrets: tuple[str, ...] = attrs.field(repr=False, default=())
    """The password as written in the URL and as sent to the server."""

    @classmethod
    def parse(cls, text: str) -> StoreUrl:
        """Check the form; ValueError (with the URL redacted) if it is neither backend's."""
        shown = redact(text)
        scheme = text.partition("://")[0].lower() if "://" in text else ""
        if text.startswith(SQLITE_PREFIX):
            if len(text) == len(SQLITE_PREFIX):
                raise ValueError(f"{shown!r} names no file: expected sqlite:///PATH")
            return cls(backend="sqlite", url=text, redacted=shown)
        if scheme in POSTGRES_SCHEMES:
            return cls(backend="postgresql", url=text, redacted=shown, secrets=_secrets(text))
        raise ValueError(f"{shown!r} is not a store URL: expected {FORMS}")

    @property
    def sqlite_path(self) -> pathlib.Path:
        """The file of a sqlite:/// URL."""
        if self.backend != "sqlite":
            raise ValueError(f"{self.redacted!r} is not a SQLite store")
        return pathlib.Path(self.url[len(SQLITE_PREFIX) :])

    def scrub(self, text: str) -> str:
        """`text` with this URL redacted and its password masked wherever it occurs."""
        text = text.replace(self.url, self.redacted)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def _secrets(url: str) -> tuple[str, ...]:
    """The password of a URL, as written and percent-decoded, longest first."""
    rest = url.partition("://")[2]
    found: set[str] = set()
    if "@" in rest:
        userinfo = rest.rpartition("@")[0]
        _, colon, password = userinfo.partition(":")
        if colon and password:
            found.add(password)
    query = urllib.parse.urlsplit(url).query if "?" in url else ""
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=False):
        if key.lower() == "password":
            found.add(value)
    for written in list(found):
        found.add(urllib.parse.unquote(written))
        found.add(urllib.parse.quote(written, safe=""))
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


class ScrubFilter(logging.Filter):
    """A handler filter masking a store's password in every record it passes.

    Formats the message (and any traceback) itself when the secret is in
    them, so no formatter, text or JSON, ever sees it."""

    def __init__(self, store: StoreUrl) -> None:
        super().__init__()
        self.store = store

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.store.secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed record: the formatter reports it, with nothing of ours
        scrubbed = self.store.scrub(message)
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
            if self.store.scrub(trace) != trace:
                scrubbed = f"{scrubbed}\n{self.store.scrub(trace)}"
                record.exc_info, record.exc_text = None, None
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def scrub_logs(store: StoreUrl, root: logging.Logger | None = None) -> None:
    """Put a ScrubFilter on every handler of the root logger (records of all loggers pass there)."""
    for handler in (root or logging.getLogger()).handlers:
        handler.addFilter(ScrubFilter(store))
