"""`python -m mandrill` is the `mandrill` command."""

from mandrill import cli

raise SystemExit(cli.main())
