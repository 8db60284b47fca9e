"""`mandrill crawl URLS_FILE -o OUT`: the crawl engine without a cluster, as a command-line tool.

Input problems are found before any request is made: an unreadable file, a
file without a single valid URL, a bad setting, or an output that cannot be
created ends the command with one line on stderr and exit status 2. Invalid
lines are reported with their line number and skipped. Once the crawl runs,
failed URLs are results, not errors: the summary counts them by kind and the
exit status is 0.

The crawl settings are the CrawlJob's (`crawl_options`: same names, same
parser, same bounds). Progress and the summary go to stderr (`progress`), so
`-o -` leaves stdout to the results alone; every page is flushed as it is
written, so a reader of the output (or a file after a crash) sees whole
records as they come.

Stopping. The first SIGINT (Ctrl-C) or SIGTERM cancels the crawl: in-flight
fetches are cancelled, the output is completed as a document (GraphML gets
its nodes and closing tags) and flushed, the summary is printed, and the exit
status is 128 + the signal number (130, 143). A second signal exits at once,
without the summary. A write to the output that fails mid-crawl (disk full,
a closed pipe) stops the crawl the same way, with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import TextIO

import attrs

from mandrill.adapters import crawl_state, export, http, ssrf
from mandrill.commands import crawl_options, progress
from mandrill.domain.crawl import engine, urls
from mandrill.domain.crawl.job import Tally
from mandrill.domain.crawl.models import CrawlSpec, CrawlStats, Edge, PageResult, Progress

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STDOUT = "-"

EPILOG = """\
exit status:
  0    the crawl ran to its end, or to --total-timeout; failed URLs (404s,
       timeouts, robots.txt, ...) are results, counted by kind in the summary
  1    the output could not be written while crawling (disk full, closed pipe)
  2    usage: a bad flag or value, an unreadable URLS_FILE or one without a
       valid URL, an OUT that cannot be created; nothing was fetched
  130  stopped by SIGINT (Ctrl-C); 143 by SIGTERM. The output holds every
       page recorded so far as a complete document, and the summary is
       printed. A second signal exits at once, without the summary.

Progress goes to stderr: a bar on a terminal, a plain line every
--progress-interval seconds otherwise, nothing with -q. The summary goes to
stderr too (not with -q), so `-o -` writes nothing but results to stdout.
"""


class InputError(Exception):
    """Input the command cannot work with; the message is the one line shown."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `crawl` on the `mandrill` command's subparsers."""
    parser = subparsers.add_parser(
        "crawl",
        help="crawl URLs from a file and write the link graph",
        description=(
            "Fetch the URLs in URLS_FILE (one per line; blank lines and # comments\n"
            "are ignored), follow links up to --max-depth, and write the\n"
            "source -> link edges to OUT."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_output_flags(parser)
    crawl_options.add_spec_flags(parser)
    add_local_flags(parser)


def add_input_output_flags(parser: argparse.ArgumentParser) -> None:
    """What to read and where to write."""
    parser.add_argument(
        "urls_file", metavar="URLS_FILE", type=pathlib.Path, help="seed URLs, one a line"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        required=True,
        help="file to write; - for stdout",
    )
    parser.add_argument(
        "--format", choices=export.FORMATS, default="tsv", help="output format (default: tsv)"
    )


def add_local_flags(parser: argparse.ArgumentParser) -> None:
    """Settings of the local command that no CrawlJob has."""
    group = parser.add_argument_group("local settings (no CrawlJob field)")
    group.add_argument(
        "--allow-private",
        action="store_true",
        help="allow loopback, private and link-local addresses (refused by default; "
        "for the operator this is its --crawl-allow-private, never a CrawlJob's)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress and no summary; only errors, and the exit status",
    )
    group.add_argument(
        "--progress-interval",
        type=_seconds,
        default=progress.PLAIN_INTERVAL,
        metavar="S",
        help="seconds between progress lines when stderr is not a terminal "
        f"(default: {progress.PLAIN_INTERVAL:g})",
    )
    group.add_argument(
        "--resume",
        metavar="STATE",
        type=crawl_state.state_file,
        help="keep the crawl's state in this SQLite file, and continue the crawl it holds; "
        "the output is written from the state at the end (or when stopped)",
    )


def run(args: argparse.Namespace) -> int:
    """Crawl as `args` say; returns the exit status."""
    try:
        seeds = read_seeds(args.urls_file, problems=sys.stderr)
        spec = crawl_options.spec_from_args(args, seeds=seeds)
        output = Output.open(args.output)
    except (InputError, ValueError) as exc:
        print(f"mandrill crawl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    display = progress.choose(sys.stderr, quiet=args.quiet, interval=args.progress_interval)
    policy = ssrf.AddressPolicy(allow_private=args.allow_private)
    try:
        ended = asyncio.run(
            _crawl(
                spec,
                policy=policy,
                output=output,
                format_name=args.format,
                display=display,
                announce=not args.quiet,
                state=args.resume,
            )
        )
    except KeyboardInterrupt:  # a Ctrl-C before our handlers were in place
        with contextlib.suppress(OSError):
            output.close()
        return EXIT_INTERRUPTED
    if ended.error is not None:
        reason = ended.error.strerror or ended.error
        print(f"mandrill crawl: cannot write {output.name}: {reason}", file=sys.stderr)
    if not args.quiet:
        print(summary(ended, output=output.name, format_name=args.format), file=sys.stderr)
        if ended.signum is not None and args.resume is not None:
            print(f"mandrill crawl: --resume {args.resume} continues it", file=sys.stderr)
    return ended.exit_status


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


@attrs.frozen
class Ended:
    """How a run of the command ended: what was recorded, and why it stopped."""

    tally: Tally
    """Pages written to the output, counted as they were written."""
    elapsed: float
    stats: CrawlStats | None = None
    """The engine's summary; None when the crawl was stopped before its end."""
    signum: int | None = None
    """The signal that stopped it, if one did."""
    error: OSError | None = None
    """The write error that stopped it, if one did."""

    @property
    def exit_status(self) -> int:
        """0, or 1 for a write error, or 128 + the signal (see EPILOG)."""
        if self.error is not None:
            return EXIT_ERROR
        if self.stats is not None:
            return EXIT_OK
        assert self.signum is not None
        return 128 + self.signum


def summary(ended: Ended, *, output: str, format_name: str) -> str:
    """The end-of-crawl report; for a stopped crawl, what was recorded before the stop."""
    tally = ended.tally
    by_kind = progress.kinds_text(tally.errors)
    rate = (tally.pages_ok + tally.pages_failed) / ended.elapsed if ended.elapsed > 0 else 0.0
    lines = [
        f"pages ok:     {tally.pages_ok}",
        f"pages failed: {tally.pages_failed}" + (f" ({by_kind})" if by_kind else ""),
        f"edges:        {tally.links}",
    ]
    if ended.stats is not None:
        lines.append(f"unique URLs:  {ended.stats.unique_urls}")
    lines += [
        f"elapsed:      {ended.elapsed:.2f} s",
        f"pages/s:      {rate:.1f}",
        f"output:       {output} ({format_name})",
    ]
    if ended.stats is not None and ended.stats.timed_out:
        lines.append("stopped:      the total timeout passed")
    elif ended.stats is None:
        cause = (
            signal.Signals(ended.signum).name
            if ended.signum is not None
            else "the output error above"
        )
        left = tally.progress.scheduled - tally.progress.done
        lines.append(f"stopped:      by {cause}; {left} queued or in-flight URLs not crawled")
    return "\n".join(lines)


def snapshot_of(tally: Tally, *, elapsed: float) -> progress.Snapshot:
    """What the progress display shows of a tally."""
    return progress.Snapshot(
        done=tally.progress.done,
        scheduled=tally.progress.scheduled,
        failed=tally.pages_failed,
        errors=dict(tally.errors),
        elapsed=elapsed,
    )


@attrs.define
class Output:
    """Where the results go: a file we opened, or stdout (flushed, never closed)."""

    name: str
    stream: TextIO
    owned: bool

    @classmethod
    def open(cls, target: str) -> Output:
        """Open (and so check) the output before crawling, not after an hour of work."""
        if target == STDOUT:
            return cls(name="stdout", stream=sys.stdout, owned=False)
        try:
            # Closed by Output.close: the stream outlives this method.
            stream = pathlib.Path(target).open("w", encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return cls(name=target, stream=stream, owned=True)

    def close(self) -> None:
        """Flush; close it if it is ours. Raises OSError if the last bytes cannot be written."""
        try:
            self.stream.flush()
        finally:
            if self.owned:
                self.stream.close()

    def abandon(self) -> None:
        """After a failed write: drop what is buffered, so exiting does not fail again on it."""
        if self.owned:
            with contextlib.suppress(OSError):
                self.stream.close()
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)


@attrs.define
class _Sink:
    """Writes each outcome and flushes it, and counts what was written."""

    writer: export.Writer
    stream: TextIO
    on_error: Callable[[OSError], None]
    tally: Tally = attrs.Factory(Tally)
    broken: bool = False

    async def record(self, result: PageResult, edges: Sequence[Edge], progress: Progress) -> None:
        if self.broken:
            return
        try:
            self.writer.write(result, edges)
            self.stream.flush()
        except OSError as exc:
            self.broken = True
            self.tally.progress = progress  # for the summary's count of URLs left uncrawled
            self.on_error(exc)
            return
        self.tally.add(result, edges, progress)


@attrs.define
class _Stopper:
    """Stops the crawl task on the first signal or write error; exits at once on a second signal.

    Python-level signal handlers (signal.signal), not loop.add_signal_handler:
    they run even if the event loop is stuck, which is when a second Ctrl-C
    matters most.
    """

    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[CrawlStats] | None = None
    """The crawl; set once it is started."""
    announce: bool = True
    """Say on stderr that the crawl is stopping (not with -q)."""
    signum: int | None = None
    error: OSError | None = None
    previous: dict[int, object] = attrs.Factory(dict)

    @property
    def stopped(self) -> bool:
        """A signal or an error asked the crawl to stop."""
        return self.signum is not None or self.error is not None

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (only the main thread can; elsewhere, e.g. a test, skip)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self.on_signal)

    def uninstall(self) -> None:
        """Put the earlier handlers back."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]  # what getsignal gave
        self.previous.clear()

    def on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        """First: cancel the crawl (from the loop's thread). Second: exit now.

        os.write, not print: this may run in the middle of a write to sys.stderr."""
        name = signal.Signals(signum).name
        if self.stopped:
            os.write(2, f"\nmandrill crawl: {name} again, exiting at once\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        self.loop.call_soon_threadsafe(self._cancel)
        if self.announce:
            os.write(2, f"\nmandrill crawl: {name}: stopping; again to exit at once\n".encode())

    def on_error(self, error: OSError) -> None:
        """The output failed: stop crawling, there is nowhere to put results."""
        if not self.stopped:
            self.error = error
            self._cancel()

    def _cancel(self) -> None:
        assert self.task is not None, "stopped before the crawl was started"
        self.task.cancel()


async def _crawl(
    spec: CrawlSpec,
    *,
    policy: ssrf.AddressPolicy,
    output: Output,
    format_name: str,
    display: progress.Display,
    announce: bool,
    state: pathlib.Path | None = None,
) -> Ended:
    """Crawl into `output` with progress on `display` until done, stopped, or the output fails."""
    started = time.monotonic()
    stopper = _Stopper(loop=asyncio.get_running_loop(), announce=announce)
    writer = export.open_writer(format_name, output.stream)
    sink = _Sink(writer=writer, stream=output.stream, on_error=stopper.on_error)
    if state is None:
        work = _fetch_all(spec, policy=policy, sink=sink)
    else:
        # Every outcome goes to the state file; the output is written from it
        # at the end (earlier runs' pages too), so here they are only counted.
        work = crawl_state.crawl(
            spec,
            state=state,
            policy=policy,
            writer=writer,
            on_page=sink.tally.add,
            notice=lambda line: print(f"mandrill crawl: {line}", file=sys.stderr),
        )
    task = stopper.task = asyncio.create_task(work)
    stopper.install()

    def snapshot() -> progress.Snapshot:
        return snapshot_of(sink.tally, elapsed=time.monotonic() - started)

    showing = asyncio.create_task(progress.keep_showing(display, snapshot))
    stats: CrawlStats | None = None
    try:
        stats = await task
    except asyncio.CancelledError:
        if not stopper.stopped:
            raise
    finally:
        showing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await showing
        display.close(snapshot())
        stopper.uninstall()
    if stopper.error is not None:
        output.abandon()
    error = stopper.error or _finish(writer, output)
    return Ended(
        tally=sink.tally,
        elapsed=time.monotonic() - started,
        stats=stats,
        signum=stopper.signum,
        error=error,
    )


def _finish(writer: export.Writer, output: Output) -> OSError | None:
    """Complete the document and flush it; the error if that fails."""
    try:
        writer.close()
        output.close()
    except OSError as exc:
        output.abandon()
        return exc
    return None


async def _fetch_all(spec: CrawlSpec, *, policy: ssrf.AddressPolicy, sink: _Sink) -> CrawlStats:
    async with http.HttpFetcher.open(spec=spec, policy=policy) as fetcher:
        return await engine.crawl(spec, fetcher=fetcher, sink=sink)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
