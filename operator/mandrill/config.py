"""The operator's own settings: one frozen value built from flags and environment.

Every setting has a flag and an environment variable (flag wins), so the same
image is configured by args locally and by env in a Deployment. These are the
cluster admin's knobs; nothing in a custom resource can change them.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from mandrill import store_url
from mandrill.domain import leadership

ENV_PREFIX = "MANDRILL_"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def namespace_patterns(text: str) -> tuple[str, ...]:
    """--namespace as kopf patterns: `team-*,!team-test-*` serves team-* but not team-test-*.

    kopf serves a namespace that matches ANY of its patterns, and applies a
    `!exclusion` only inside the pattern it is part of; an exclusion passed
    as a pattern of its own would match every other namespace. So each
    inclusive glob becomes one pattern carrying all the exclusions, and
    exclusions alone mean "everything but these"."""
    parts = _csv(text)
    excluded = [p for p in parts if p.startswith("!")]
    included = [p for p in parts if not p.startswith("!")]
    if not included:
        return (",".join(excluded),) if excluded else ()
    return tuple(",".join([glob, *excluded]) for glob in included)


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def boolean(text: str) -> bool:
    """true/false/1/0 (any case); anything else is a ValueError, never a silent False."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true, false, 1 or 0")


@attrs.frozen
class Settings:
    namespaces: tuple[str, ...] = ()
    """Namespaces (or kopf globs) to watch; empty means cluster-wide."""
    store_url: str = attrs.field(default="sqlite:///mandrill.sqlite", repr=store_url.redact)
    """Where the journal and crawl results go: sqlite:///relative, sqlite:////absolute, or
    postgresql://USER:PASSWORD@HOST:PORT/DATABASE. Shown only redacted (no password)."""
    drain_timeout: float = 20.0
    """Seconds in-flight work may take to finish after SIGTERM."""
    denied_namespaces: tuple[str, ...] = ("kube-system",)
    """Namespaces whose targets are never restarted (reported as skipped)."""
    max_concurrent_restarts: int = 50
    """Restarts in flight across all requests."""
    max_concurrent_requests: int = 64
    """RestartRequests worked on at once; the rest wait their turn, oldest first."""
    max_crawls: int = 8
    """In-process crawls at once (CrawlJobs without spec.workers); the rest wait Queued,
    oldest first. 0 means no limit."""
    resync_interval: float = 60.0
    """Seconds between listings that find requests no watch event brought."""
    liveness_port: int = 8080
    """kopf's liveness endpoint, for the probe; 0 disables it."""
    metrics_port: int = 9090
    """Prometheus /metrics; 0 disables it."""
    log_level: str = "INFO"
    log_format: str = "text"
    """text, or json: one JSON object a line, with the resource's namespace, name and uid."""
    crawl_allow_private: bool = False
    """Let CrawlJobs fetch loopback, private and link-local addresses (refused by default).

    The SSRF guard's only switch: a CrawlJob has no field that can widen it."""
    leader_election: bool = False
    """Act only while holding a Lease (several replicas, one acting); off for one replica."""
    leader_election_namespace: str = ""
    """The Lease's namespace; empty: the operator's own (POD_NAMESPACE, or the pod's
    ServiceAccount namespace file)."""
    leader_election_lease: str = "mandrill"
    """The Lease's name (the HA overlay's Role grants get/update on this name only)."""
    leader_election_lease_duration: int = 15
    """Seconds a leader's claim lasts after each renewal: how long a dead leader blocks."""
    leader_election_renew_deadline: float = 10.0
    """Seconds a leader may go without renewing before it stops acting and exits."""
    leader_election_retry_period: float = 2.0
    """Seconds between renewals, and the longest a standby waits between tries."""
    worker_image: str = ""
    """The image of CrawlJob worker pods when the operator cannot read its own Pod's
    (POD_NAME and POD_NAMESPACE unset: not in a pod)."""
    worker_namespace: str = ""
    """Where worker Jobs run; empty: the operator's own (POD_NAMESPACE, or the pod's
    ServiceAccount namespace file), where its store Secret is."""
    worker_service_account: str = "mandrill-crawl-worker"
    """The worker pods' ServiceAccount (no bindings, no token); a Helm release
    named other than mandrill prefixes it."""
    store_secret: str = "mandrill-store"
    """The Secret in the worker namespace that holds the PostgreSQL store URL..."""
    store_secret_key: str = "url"
    """...under this key: the workers' MANDRILL_STORE_URL, by secretKeyRef."""
    worker_cpu_request: str = "100m"
    worker_cpu_limit: str = "1"
    worker_memory_request: str = "128Mi"
    worker_memory_limit: str = "512Mi"
    worker_progress_interval: float = 5.0
    """Seconds between looks at a worker Job and the store, for the CrawlJob's status."""
    worker_lease_seconds: float = 30.0
    """The workers' URL and host leases (MANDRILL_CRAWL_LEASE_SECONDS): how long a
    dead worker's URLs wait before the others take them over."""


@attrs.frozen
class Option:
    flag: str
    field: str
    help: str
    parse: Callable[[str], object] = str


OPTIONS = (
    Option(
        "--namespace",
        "namespaces",
        "comma-separated namespaces or globs, !glob to exclude (team-*,!team-test-*); "
        "empty: cluster-wide",
    ),
    Option(
        "--store-url",
        "store_url",
        "the journal and crawl results: sqlite:///PATH or "
        "postgresql://USER:PASSWORD@HOST:PORT/DB (put a password in the env var, from a Secret)",
    ),
    Option(
        "--drain-timeout", "drain_timeout", "seconds to finish in-flight work on SIGTERM", float
    ),
    Option("--deny-namespaces", "denied_namespaces", "comma-separated namespaces never restarted"),
    Option(
        "--max-concurrent-restarts", "max_concurrent_restarts", "restarts in flight at once", int
    ),
    Option(
        "--max-concurrent-requests",
        "max_concurrent_requests",
        "RestartRequests worked on at once (oldest first)",
        int,
    ),
    Option(
        "--max-crawls",
        "max_crawls",
        "in-process crawls at once, the rest queued oldest first; 0: no limit",
        int,
    ),
    Option(
        "--resync-interval",
        "resync_interval",
        "seconds between resyncs that find requests no event brought",
        float,
    ),
    Option("--liveness-port", "liveness_port", "port of the /healthz endpoint; 0: off", int),
    Option("--metrics-port", "metrics_port", "port of Prometheus /metrics; 0: off", int),
    Option("--log-level", "log_level", "DEBUG, INFO, WARNING or ERROR"),
    Option("--log-format", "log_format", "text, or json (one object a line, with the object)"),
    Option(
        "--crawl-allow-private",
        "crawl_allow_private",
        "let CrawlJobs fetch loopback/private/link-local addresses (true or false)",
        boolean,
    ),
    Option(
        "--leader-election",
        "leader_election",
        "act only while holding the Lease (true or false; alone: true)",
        boolean,
    ),
    Option(
        "--leader-election-namespace",
        "leader_election_namespace",
        "the Lease's namespace; empty: the operator's own (POD_NAMESPACE or the pod's)",
    ),
    Option("--leader-election-lease", "leader_election_lease", "the Lease's name"),
    Option(
        "--leader-election-lease-duration",
        "leader_election_lease_duration",
        "seconds a leader's claim lasts after each renewal",
        int,
    ),
    Option(
        "--leader-election-renew-deadline",
        "leader_election_renew_deadline",
        "seconds a leader may go without renewing before it stops acting and exits",
        float,
    ),
    Option(
        "--leader-election-retry-period",
        "leader_election_retry_period",
        "seconds between renewals and between a standby's tries",
        float,
    ),
    Option(
        "--worker-image",
        "worker_image",
        "image of CrawlJob worker pods when not read from the operator's own Pod",
    ),
    Option(
        "--worker-namespace",
        "worker_namespace",
        "namespace of worker Jobs; empty: the operator's own (POD_NAMESPACE or the pod's)",
    ),
    Option(
        "--worker-service-account",
        "worker_service_account",
        "ServiceAccount of worker pods (one with no RBAC)",
    ),
    Option("--store-secret", "store_secret", "Secret with the store URL, for worker pods"),
    Option("--store-secret-key", "store_secret_key", "the key of the store URL in that Secret"),
    Option("--worker-cpu-request", "worker_cpu_request", "CPU request of a worker pod"),
    Option("--worker-cpu-limit", "worker_cpu_limit", "CPU limit of a worker pod"),
    Option("--worker-memory-request", "worker_memory_request", "memory request of a worker pod"),
    Option("--worker-memory-limit", "worker_memory_limit", "memory limit of a worker pod"),
    Option(
        "--worker-progress-interval",
        "worker_progress_interval",
        "seconds between looks at a worker Job and the store",
        float,
    ),
    Option(
        "--worker-lease-seconds",
        "worker_lease_seconds",
        "seconds a worker's leases last: how long a dead worker's URLs wait",
        float,
    ),
)

_KINDS: dict[Callable[[str], object], str] = {
    int: "integer",
    float: "number",
    boolean: "boolean (true, false, 1 or 0)",
}


def env_name(option: Option) -> str:
    return ENV_PREFIX + option.field.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting, each naming its environment variable and default."""
    defaults = Settings()
    for o in OPTIONS:
        default = getattr(defaults, o.field)
        shown = ",".join(default) if isinstance(default, tuple) else default
        # A boolean flag alone means true (`--leader-election`); it also takes a value.
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if o.parse is boolean else {}
        parser.add_argument(
            o.flag,
            dest=o.field,
            default=None,
            help=f"{o.help} [env {env_name(o)}; default {shown or '(none)'}]",
            **switch,
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
            if o.field == "namespaces":
                values[o.field] = namespace_patterns(raw)
            elif o.field == "denied_namespaces":
                values[o.field] = _csv(raw)
            else:
                values[o.field] = o.parse(raw)
        except ValueError:
            kind = _KINDS.get(o.parse, "value")
            raise ValueError(f"{source}: {raw!r} is not a valid {kind}") from None
        problem = _problem(o.field, values[o.field])
        if problem:
            raise ValueError(f"{source}: {problem}")
    settings = Settings(**values)  # type: ignore[arg-type]
    problem = leadership.timing_problem(
        lease_duration=settings.leader_election_lease_duration,
        renew_deadline=settings.leader_election_renew_deadline,
        retry_period=settings.leader_election_retry_period,
    )
    if problem is not None:
        raise ValueError(
            f"--leader-election-lease-duration, -renew-deadline, -retry-period: {problem}"
        )
    return settings


def _is_port(v: object) -> bool:
    return isinstance(v, int) and 0 <= v <= 65535


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def _is_quantity(v: object) -> bool:
    return bool(_QUANTITY.fullmatch(str(v)))


_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "drain_timeout": (
        lambda v: isinstance(v, float) and 0 < v < 3600,
        "is not a number of seconds in (0, 3600)",
    ),
    "max_concurrent_restarts": (lambda v: isinstance(v, int) and v >= 1, "must be at least 1"),
    "max_concurrent_requests": (lambda v: isinstance(v, int) and v >= 1, "must be at least 1"),
    "max_crawls": (
        lambda v: isinstance(v, int) and 0 <= v <= 10000,
        "is not a number of crawls in [0, 10000] (0 means no limit)",
    ),
    "resync_interval": (
        lambda v: isinstance(v, float) and 0.1 <= v <= 86400,
        "is not a number of seconds in [0.1, 86400]",
    ),
    "liveness_port": (_is_port, "is not a port (0 turns the endpoint off)"),
    "metrics_port": (_is_port, "is not a port (0 turns the endpoint off)"),
    "log_level": (
        lambda v: str(v).upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "is not DEBUG, INFO, WARNING or ERROR",
    ),
    "log_format": (lambda v: v in ("text", "json"), "is not text or json"),
    "leader_election_lease": (
        lambda v: bool(_DNS_NAME.fullmatch(str(v))),
        "is not a Lease name (lowercase letters, digits, '-' and '.')",
    ),
    "leader_election_namespace": (
        lambda v: v == "" or bool(_DNS_LABEL.fullmatch(str(v))),
        "is not a namespace name",
    ),
    "worker_namespace": (
        lambda v: v == "" or bool(_DNS_LABEL.fullmatch(str(v))),
        "is not a namespace name",
    ),
    "worker_service_account": (
        lambda v: bool(_DNS_NAME.fullmatch(str(v))),
        "is not a ServiceAccount name",
    ),
    "store_secret": (lambda v: bool(_DNS_NAME.fullmatch(str(v))), "is not a Secret name"),
    "store_secret_key": (lambda v: bool(_SECRET_KEY.fullmatch(str(v))), "is not a Secret key"),
    "worker_cpu_request": (_is_quantity, "is not a CPU quantity (100m, 1, 2.5)"),
    "worker_cpu_limit": (_is_quantity, "is not a CPU quantity (100m, 1, 2.5)"),
    "worker_memory_request": (_is_quantity, "is not a memory quantity (128Mi, 1Gi)"),
    "worker_memory_limit": (_is_quantity, "is not a memory quantity (128Mi, 1Gi)"),
    "worker_progress_interval": (
        lambda v: isinstance(v, float) and 0.1 <= v <= 3600,
        "is not a number of seconds in [0.1, 3600]",
    ),
    "worker_lease_seconds": (
        lambda v: isinstance(v, float) and 3 <= v <= 3600,
        "is not a number of seconds in [3, 3600]",
    ),
    "leader_election_lease_duration": (
        lambda v: isinstance(v, int) and 1 <= v <= 3600,
        "is not a whole number of seconds in [1, 3600]",
    ),
    "leader_election_renew_deadline": (
        lambda v: isinstance(v, float) and 0 < v < 3600,
        "is not a number of seconds in (0, 3600)",
    ),
    "leader_election_retry_period": (
        lambda v: isinstance(v, float) and 0.05 <= v < 3600,
        "is not a number of seconds in [0.05, 3600)",
    ),
}


def _problem(field: str, value: object) -> str | None:
    """What is wrong with one parsed value, or None; checked per setting so the
    error can name the flag or variable it came from. A store URL is shown redacted."""
    if field == "store_url":
        try:
            store_url.StoreUrl.parse(str(value))
        except ValueError as e:
            return str(e)
        return None
    check = _CHECKS.get(field)
    if check is None or check[0](value):
        return None
    return f"{value!r} {check[1]}"
