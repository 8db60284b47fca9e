"""Subcommands of the `mandrill` command, one module each.

Each module exposes `add_parser(subparsers)` and `run(args) -> int`; cli.py
wires them in and dispatches on `args.command`.
"""
