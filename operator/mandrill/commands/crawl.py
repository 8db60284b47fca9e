"""`mandrill crawl URLS_FILE -o OUT`: the crawl engine without a cluster.

Input problems are found before any request is made: an unreadable file, a
file without a single valid URL, or an output that cannot be written ends the
command with one line on stderr and exit status 2. Invalid lines are reported
with their line number and skipped. Once the crawl runs, failed URLs are
results, not errors: the exit status is 0 and the summary counts them by kind.

The crawl settings are the CrawlJob's (`crawl_options`: same names, same
parser, same bounds).

Progress goes to stderr: a one-line bar redrawn in place on a terminal, plain
lines (one per URL) otherwise, so logs stay greppable. The summary goes to
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import attrs

from mandrill.adapters import export, http, ssrf
from mandrill.commands import crawl_options
from mandrill.domain.crawl import engine, urls
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress

EXIT_OK = 0
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
BAR_WIDTH = 24
REDRAW_SECONDS = 0.1


class InputError(Exception):
    """Input the command cannot work with; the message is the one line shown."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `crawl` on the `mandrill` command's subparsers."""
    parser = subparsers.add_parser(
        "crawl",
        help="crawl URLs from a file and write the link graph",
        description=(
            "Fetch the URLs in URLS_FILE (one per line; blank lines and # comments "
            "are ignored), follow links up to --max-depth, and write the "
            "source -> link edges to OUT."
        ),
    )
    parser.add_argument(
        "urls_file", metavar="URLS_FILE", type=pathlib.Path, help="seed URLs, one a line"
    )
    parser.add_argument(
        "-o", "--output", metavar="OUT", type=pathlib.Path, required=True, help="file to write"
    )
    parser.add_argument(
        "--format", choices=export.FORMATS, default="tsv", help="output format (default: tsv)"
    )
    parser.add_argument(
        "--allow-private",
        action="store_true",
        help="allow loopback, private and link-local addresses (refused by default)",
    )
    crawl_options.add_spec_flags(parser)


def run(args: argparse.Namespace) -> int:
    """Crawl as `args` say; returns the exit status."""
    try:
        seeds = read_seeds(args.urls_file, problems=sys.stderr)
        spec = crawl_options.spec_from_args(args, seeds=seeds)
        output = _open_output(args.output)
    except (InputError, ValueError) as exc:
        print(f"mandrill crawl: {exc}", file=sys.stderr)
        return EXIT_INPUT
    policy = ssrf.AddressPolicy(allow_private=args.allow_private)
    display: Display = ProgressBar(sys.stderr) if sys.stderr.isatty() else LogLines(sys.stderr)
    with output:
        writer = export.open_writer(args.format, output)
        try:
            stats = asyncio.run(_crawl(spec, policy=policy, sink=_Sink(writer, display)))
        except KeyboardInterrupt:
            display.close()
            print("mandrill crawl: interrupted; the output holds what was crawled", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            writer.close()
    display.close()
    print(summary(stats, output=args.output, format_name=args.format))
    return EXIT_OK


def read_seeds(path: pathlib.Path, *, problems: TextIO) -> list[str]:
    """The URLs of a urls file; invalid lines are reported to `problems` and skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {path}: not UTF-8 text") from exc
    seeds: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        candidate = line.strip()
        if not candidate or candidate.startswith("#"):
            continue
        if urls.canonicalize(candidate) is None:
            print(f"{path}:{number}: skipped, not an http(s) URL: {candidate!r}", file=problems)
            continue
        seeds.append(candidate)
    if not seeds:
        raise InputError(f"no valid URL in {path}")
    return seeds


def summary(stats: CrawlStats, *, output: pathlib.Path, format_name: str) -> str:
    """The end-of-crawl report."""
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.failures.items()))
    lines = [
        f"pages ok:     {stats.pages_ok}",
        f"pages failed: {stats.pages_failed}" + (f" ({by_kind})" if by_kind else ""),
        f"edges:        {stats.edges}",
        f"unique URLs:  {stats.unique_urls}",
        f"elapsed:      {stats.elapsed:.2f} s",
        f"pages/s:      {stats.pages_per_second:.1f}",
        f"output:       {output} ({format_name})",
    ]
    if stats.timed_out:
        lines.append("stopped:      the total timeout passed")
    return "\n".join(lines)


class Display:
    """Shows progress as results arrive."""

    def update(self, result: PageResult, progress: Progress) -> None:
        """One more URL has an outcome."""
        raise NotImplementedError

    def close(self) -> None:
        """The crawl is over."""


@attrs.define
class LogLines(Display):
    """One plain line per URL, for logs and pipes."""

    stream: TextIO

    def update(self, result: PageResult, progress: Progress) -> None:
        """Log the outcome."""
        if result.error is None:
            line = f"ok {result.status} {result.url} ({result.links} links)"
        else:
            line = f"failed {result.error.value} {result.url}: {result.message}"
        print(f"[{progress.done}/{progress.scheduled}] {line}", file=self.stream)


@attrs.define
class ProgressBar(Display):
    """A bar redrawn in place, at most ten times a second."""

    stream: TextIO
    drawn_at: float = 0.0
    last: Progress | None = None

    def update(self, result: PageResult, progress: Progress) -> None:
        """Redraw if enough time has passed."""
        self.last = progress
        now = time.monotonic()
        if now - self.drawn_at >= REDRAW_SECONDS:
            self.drawn_at = now
            self.stream.write("\r" + render_bar(progress))
            self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.last is not None:
            self.stream.write("\r" + render_bar(self.last) + "\n")
            self.stream.flush()
            self.last = None


def render_bar(progress: Progress) -> str:
    """`[#####.....] done/scheduled pages, N failed, R pages/s` for one progress state."""
    total = max(progress.scheduled, 1)
    filled = min(BAR_WIDTH, BAR_WIDTH * progress.done // total)
    rate = progress.done / progress.elapsed if progress.elapsed > 0 else 0.0
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (
        f"[{bar}] {progress.done}/{progress.scheduled} pages, "
        f"{progress.failed} failed, {rate:.1f} pages/s"
    )


@attrs.define
class _Sink:
    writer: export.Writer
    display: Display

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        self.writer.write(result, edges)
        self.display.update(result, progress)


async def _crawl(spec: CrawlSpec, *, policy: ssrf.AddressPolicy, sink: _Sink) -> CrawlStats:
    async with http.HttpFetcher.open(spec=spec, policy=policy) as fetcher:
        return await engine.crawl(spec, fetcher=fetcher, sink=sink)


def _open_output(path: pathlib.Path) -> TextIO:
    """Open (and so check) the output before crawling, not after an hour of work."""
    try:
        return path.open("w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
