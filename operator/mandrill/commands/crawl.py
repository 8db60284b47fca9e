"""`mandrill crawl URLS_FILE -o OUT`: the crawl engine without a cluster.

Input problems are found before any request is made: an unreadable file, a
file without a single valid URL, or an output that cannot be written ends the
command with one line on stderr and exit status 2. Invalid lines are reported
with their line number and skipped. Once the crawl runs, failed URLs are
results, not errors: the exit status is 0 and the summary counts them by kind.

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

from mandrill.adapters import crawl_state, export, http, ssrf
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
        "--max-depth",
        type=_count(minimum=0),
        default=0,
        metavar="N",
        help="link hops to follow from the seeds (default: 0, the seeds only)",
    )
    parser.add_argument(
        "--max-pages",
        type=_count(minimum=1),
        default=10_000,
        metavar="N",
        help="most URLs to fetch (default: 10000)",
    )
    parser.add_argument(
        "--concurrency",
        type=_count(minimum=1),
        default=8,
        metavar="N",
        help="requests in flight at once (default: 8)",
    )
    parser.add_argument(
        "--per-host",
        type=_count(minimum=1),
        default=2,
        metavar="N",
        help="requests in flight at once to one host (default: 2)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds allowed for one request (default: 10)",
    )
    parser.add_argument(
        "--format", choices=export.FORMATS, default="tsv", help="output format (default: tsv)"
    )
    parser.add_argument(
        "--allow-private",
        action="store_true",
        help="allow loopback, private and link-local addresses (refused by default)",
    )
    parser.add_argument("--no-robots", action="store_true", help="ignore robots.txt")
    parser.add_argument(
        "--resume",
        metavar="STATE",
        type=crawl_state.state_file,
        help="keep the crawl's state in this SQLite file, and continue the crawl it holds",
    )


def run(args: argparse.Namespace) -> int:
    """Crawl as `args` say; returns the exit status."""
    try:
        seeds = read_seeds(args.urls_file, problems=sys.stderr)
        spec = CrawlSpec.create(
            seeds=seeds,
            max_depth=args.max_depth,
            max_pages=args.max_pages,
            concurrency=args.concurrency,
            per_host_concurrency=args.per_host,
            request_timeout=args.timeout,
            respect_robots=not args.no_robots,
        )
        output = _open_output(args.output)
    except (InputError, ValueError) as exc:
        print(f"mandrill crawl: {exc}", file=sys.stderr)
        return EXIT_INPUT
    policy = ssrf.AddressPolicy(allow_private=args.allow_private)
    display: Display = ProgressBar(sys.stderr) if sys.stderr.isatty() else LogLines(sys.stderr)
    with output:
        writer = export.open_writer(args.format, output)
        try:
            if args.resume is not None:
                work = crawl_state.crawl(
                    spec,
                    state=args.resume,
                    policy=policy,
                    writer=writer,
                    on_page=display.update,
                    notice=lambda line: print(line, file=sys.stderr),
                )
            else:
                work = _crawl(spec, policy=policy, sink=_Sink(writer, display))
            stats = asyncio.run(work)
        except KeyboardInterrupt:
            display.close()
            again = f"; --resume {args.resume} continues it" if args.resume is not None else ""
            print(
                f"mandrill crawl: interrupted; the output holds what was crawled{again}",
                file=sys.stderr,
            )
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


def _count(*, minimum: int) -> argparse._ActionType:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
