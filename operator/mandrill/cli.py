"""The `mandrill` command line.

Each subcommand is a thin shell over the package: parse flags, call one
function, turn its outcome into an exit status and one clear line on error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import mandrill


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, separate from `main` so tests can inspect it."""
    parser = argparse.ArgumentParser(
        prog="mandrill",
        description="Kubernetes operator consuming RestartRequest and CrawlJob resources.",
    )
    parser.add_argument("--version", action="version", version=f"mandrill {mandrill.__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0
