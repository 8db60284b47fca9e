"""The operator's own settings: one frozen value built from flags and environment.

Every setting has a flag and an environment variable (flag wins), so the same
image is configured by args locally and by env in a Deployment. These are the
cluster admin's knobs; nothing in a custom resource can change them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

import attrs

ENV_PREFIX = "MANDRILL_"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@attrs.frozen
class Settings:
    namespaces: tuple[str, ...] = ()
    """Namespaces (or kopf globs) to watch; empty means cluster-wide."""
    store_url: str = "sqlite:///mandrill.sqlite"
    """Where the journal and crawl results go: sqlite:///relative or sqlite:////absolute."""
    drain_timeout: float = 20.0
    """Seconds in-flight work may take to finish after SIGTERM."""
    denied_namespaces: tuple[str, ...] = ("kube-system",)
    """Namespaces whose targets are never restarted (reported as skipped)."""
    max_concurrent_restarts: int = 50
    """Restarts in flight across all requests."""
    liveness_port: int = 8080
    """kopf's liveness endpoint, for the probe; 0 disables it."""
    log_level: str = "INFO"


@attrs.frozen
class Option:
    flag: str
    field: str
    help: str
    parse: type = str


OPTIONS = (
    Option("--namespace", "namespaces", "comma-separated namespaces or globs; empty: cluster-wide"),
    Option("--store-url", "store_url", "journal store URL (sqlite:///path)"),
    Option(
        "--drain-timeout", "drain_timeout", "seconds to finish in-flight work on SIGTERM", float
    ),
    Option("--deny-namespaces", "denied_namespaces", "comma-separated namespaces never restarted"),
    Option(
        "--max-concurrent-restarts", "max_concurrent_restarts", "restarts in flight at once", int
    ),
    Option("--liveness-port", "liveness_port", "port of the /healthz endpoint; 0: off", int),
    Option("--log-level", "log_level", "DEBUG, INFO, WARNING or ERROR"),
)


def env_name(option: Option) -> str:
    return ENV_PREFIX + option.field.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting, each naming its environment variable and default."""
    defaults = Settings()
    for o in OPTIONS:
        default = getattr(defaults, o.field)
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument(
            o.flag,
            dest=o.field,
            default=None,
            help=f"{o.help} [env {env_name(o)}; default {shown}]",
        )


def from_sources(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Settings:
    """Flags over environment over defaults; raises ValueError naming the bad setting."""
    values: dict[str, object] = {}
    for o in OPTIONS:
        raw = getattr(args, o.field, None)
        source = o.flag
        if raw is None:
            raw = environ.get(env_name(o))
            source = env_name(o)
        if raw is None:
            continue
        try:
            if o.field in ("namespaces", "denied_namespaces"):
                values[o.field] = _csv(raw)
            else:
                values[o.field] = o.parse(raw)
        except ValueError:
            raise ValueError(f"{source}: {raw!r} is not a valid {o.parse.__name__}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if s.drain_timeout <= 0:
        raise ValueError("drain timeout must be positive")
    if s.max_concurrent_restarts < 1:
        raise ValueError("max concurrent restarts must be at least 1")
    if not s.store_url.startswith("sqlite:///"):
        raise ValueError(f"store URL {s.store_url!r}: only sqlite:///PATH is supported")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"log level {s.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
