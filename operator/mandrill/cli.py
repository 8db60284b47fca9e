"""The `mandrill` command line.

Each subcommand is a module under mandrill.commands with `add_parser` and
`run`: a thin shell that parses flags, calls into the package, and turns the
outcome into an exit status and one clear line on error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import mandrill
from mandrill.commands import crawl as crawl_command
from mandrill.commands import crawl_worker as crawl_worker_command
from mandrill.commands import results as results_command
from mandrill.commands import run as run_command
from mandrill.commands import schedule as schedule_command

COMMANDS = {
    "run": run_command,
    "crawl": crawl_command,
    "crawl-worker": crawl_worker_command,
    "results": results_command,
    "schedule": schedule_command,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, separate from `main` so tests can inspect it."""
    parser = argparse.ArgumentParser(
        prog="mandrill",
        description=(
            "Kubernetes operator consuming RestartRequest and CrawlJob resources and "
            "publishing RestartRequests on RestartSchedules."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mandrill {mandrill.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    status: int = COMMANDS[args.command].run(args)
    return status
