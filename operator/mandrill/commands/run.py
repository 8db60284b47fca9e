"""`mandrill run`: start the operator (kopf under the hood, configured by our settings)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import attrs

from mandrill import config, store_url

NO_CREDENTIALS = 3
"""Exit status when there is nothing to authenticate with (2 is a bad setting)."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="run the operator against the current cluster (KUBECONFIG or in-cluster)",
        description="Run the operator. Every flag also reads an environment variable.",
    )
    config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        settings = config.from_sources(args)
    except ValueError as e:
        print(f"mandrill run: {e}", file=sys.stderr)
        return 2
    import asyncio

    from mandrill.adapters import kube

    if settings.leader_election and not settings.leader_election_namespace:
        from mandrill.adapters import lease

        namespace = lease.default_namespace()
        if namespace is None:
            print(
                "mandrill run: --leader-election needs the Lease's namespace: not in a pod "
                f"(no POD_NAMESPACE, no {lease.SERVICE_ACCOUNT_NAMESPACE}); "
                "set --leader-election-namespace",
                file=sys.stderr,
            )
            return 2
        settings = attrs.evolve(settings, leader_election_namespace=namespace)
    problem = asyncio.run(kube.credentials_problem())
    if problem is not None:
        print(f"mandrill run: {problem}", file=sys.stderr)
        return NO_CREDENTIALS
    import kopf

    # kopf's own formatters: JSON lines carry the object's reference (namespace,
    # name, uid) under "object" whenever a line is about one.
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object",
        log_prefix=settings.log_format != "json",
    )
    logging.getLogger().setLevel(settings.log_level.upper())
    if settings.log_level.upper() != "DEBUG":
        # kopf's /healthz is an aiohttp server: its access log would add a line
        # for every kubelet probe (several a minute) and drown what matters.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The store URL may carry a password: whatever logs a record, none may show it.
    store_url.scrub_logs(store_url.StoreUrl.parse(settings.store_url))
    # Imported here: kopf registers handlers at import time, and `mandrill crawl`
    # or `--help` should not pay for that.
    import mandrill.handlers.crawl
    import mandrill.handlers.lifecycle
    import mandrill.handlers.restart
    import mandrill.handlers.schedule  # noqa: F401
    from mandrill import runtime

    return runtime.serve(settings)
