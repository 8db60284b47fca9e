"""How `mandrill crawl` shows its progress on stderr: a live bar, plain lines, or nothing.

Three displays, chosen once (`choose`): on a terminal a one-line bar redrawn
in place; anywhere else (a pipe, a log file, CI) a plain line every few
seconds, so logs stay greppable and are not flooded with carriage returns;
with `-q`, nothing. Progress always goes to stderr, so `-o -` keeps stdout
for the results alone.

The display is driven by a ticker (`keep_showing`), not by page outcomes, so
a stalled crawl still shows its elapsed time and a falling rate instead of a
frozen line.

Why tqdm draws the bar. It has no dependencies on Linux and is an 80 KB
wheel, so it costs the operator's image nothing; it fits the line to the
width it is given (we ask the terminal on every redraw) and trims the rest, takes a
total that grows as links are found, and smooths the rate it shows. rich
would give the same line with colours but brings markdown-it-py, mdurl and
pygments (several MB) into an image that never draws a bar, and its live
display prints nothing useful when stderr is not a terminal, so the plain
lines would be ours either way. tqdm is used without its two background
helpers: the monitor thread (monitor_interval = 0: we redraw from the event
loop) and the multiprocessing lock it would otherwise create (a thread lock
suffices: one process, one bar).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping
from typing import Protocol, TextIO

import attrs
from tqdm import tqdm

BAR_INTERVAL = 0.1
"""Seconds between redraws of the bar on a terminal."""
PLAIN_INTERVAL = 2.0
"""Default seconds between plain progress lines."""
FALLBACK_WIDTH = 80
FALLBACK_ROWS = 24
BAR_FORMAT = "{n_fmt}/{total_fmt} pages{postfix}, {rate_fmt}, {elapsed} |{bar}|"


@attrs.frozen
class Snapshot:
    """Where the crawl stands, as the display shows it."""

    done: int
    """URLs with an outcome, ok or failed."""
    scheduled: int
    """URLs admitted so far: done, queued, in flight or waiting to retry."""
    failed: int
    """URLs that failed."""
    errors: Mapping[str, int]
    """Failed URLs by ErrorKind value."""
    elapsed: float
    """Seconds since the crawl started."""

    @property
    def queued(self) -> int:
        """Admitted but without an outcome yet (queued, in flight or waiting to retry)."""
        return self.scheduled - self.done


def kinds_text(errors: Mapping[str, int]) -> str:
    """`timeout 2, http_status 1`: most frequent kind first; empty for none."""
    kinds = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{kind} {count}" for kind, count in kinds)


def errors_text(snapshot: Snapshot) -> str:
    """`2 failed (timeout 1, http_status 1)`, or `0 failed`."""
    kinds = kinds_text(snapshot.errors)
    return f"{snapshot.failed} failed" + (f" ({kinds})" if kinds else "")


class Display(Protocol):
    """Shows snapshots every `interval` seconds; `close` ends the display."""

    @property
    def interval(self) -> float | None:
        """Seconds between `show` calls; None to be never called."""
        ...

    def start(self, snapshot: Snapshot) -> None:
        """The crawl begins."""
        ...

    def show(self, snapshot: Snapshot) -> None:
        """Show where the crawl stands."""
        ...

    def close(self, snapshot: Snapshot) -> None:
        """The crawl is over (or stopped): show the last state, leave the line clean."""
        ...


class Quiet:
    """`-q`: shows nothing."""

    interval = None

    def start(self, snapshot: Snapshot) -> None:
        """Nothing."""

    def show(self, snapshot: Snapshot) -> None:
        """Nothing."""

    def close(self, snapshot: Snapshot) -> None:
        """Nothing."""


@attrs.define
class PlainLines:
    """One complete line per interval, for logs and pipes.

    The rate is over the last interval (what the crawl does now); the summary
    gives the average over the whole crawl.
    """

    stream: TextIO
    interval: float = PLAIN_INTERVAL
    previous: Snapshot | None = None

    def start(self, snapshot: Snapshot) -> None:
        """Nothing yet: the first line comes after one interval, when there is news."""

    def show(self, snapshot: Snapshot) -> None:
        """Print one line."""
        print(self.line(snapshot), file=self.stream, flush=True)
        self.previous = snapshot

    def close(self, snapshot: Snapshot) -> None:
        """Nothing more: the summary follows."""

    def line(self, snapshot: Snapshot) -> str:
        """`[4.0 s] 12/40 done, 28 queued, 2 failed (timeout 2), 3.5 pages/s`."""
        before = self.previous or Snapshot(done=0, scheduled=0, failed=0, errors={}, elapsed=0.0)
        span = snapshot.elapsed - before.elapsed
        rate = (snapshot.done - before.done) / span if span > 0 else 0.0
        return (
            f"[{snapshot.elapsed:.1f} s] {snapshot.done}/{snapshot.scheduled} done, "
            f"{snapshot.queued} queued, {errors_text(snapshot)}, {rate:.1f} pages/s"
        )


class _Bar(tqdm):  # type: ignore[type-arg]  # tqdm is generic over the iterable; we have none
    """tqdm without its monitor thread: the event loop redraws it."""

    monitor_interval = 0


_Bar.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock: one process, one bar


@attrs.define
class LiveBar:
    """A bar redrawn in place on a terminal: done/scheduled, rate, elapsed, queued, errors."""

    stream: TextIO
    interval: float = BAR_INTERVAL
    bar: _Bar | None = None

    def start(self, snapshot: Snapshot) -> None:
        """Draw the bar at once."""
        self.show(snapshot)

    def show(self, snapshot: Snapshot) -> None:
        """Redraw with the new counts."""
        postfix = f"{snapshot.queued} queued, {errors_text(snapshot)}"
        if self.bar is None:
            self.bar = _Bar(
                file=self.stream,
                total=snapshot.scheduled or None,
                postfix=postfix,
                unit=" pages",
                bar_format=BAR_FORMAT,
                ncols=terminal_width(self.stream),
                # Our one bar sits on row 0; a fixed height keeps tqdm from asking the
                # terminal, which a pty never sized answers with 0 rows, and then tqdm
                # draws nothing (it takes the bar for one below the screen).
                nrows=FALLBACK_ROWS,
                mininterval=0,
                leave=True,
            )
        bar = self.bar
        bar.ncols = terminal_width(self.stream)  # every redraw: the window may have been resized
        bar.total = snapshot.scheduled or None
        bar.set_postfix_str(postfix, refresh=False)
        if snapshot.done > bar.n:
            bar.update(snapshot.done - bar.n)  # update, not n =, so tqdm's rate smoothing sees it
        bar.refresh()

    def close(self, snapshot: Snapshot) -> None:
        """Draw the last state and end the line."""
        self.show(snapshot)
        assert self.bar is not None
        self.bar.close()
        self.bar = None


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal `stream` is on; 80 if it does not say (a pty never sized)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return FALLBACK_WIDTH
    return columns or FALLBACK_WIDTH


def choose(stream: TextIO, *, quiet: bool, interval: float = PLAIN_INTERVAL) -> Display:
    """The display for `stream`: nothing if quiet, a bar on a terminal, else plain lines."""
    if quiet:
        return Quiet()
    if stream.isatty():
        return LiveBar(stream)
    return PlainLines(stream, interval=interval)


async def keep_showing(display: Display, snapshot: Callable[[], Snapshot]) -> None:
    """Show `snapshot()` every `display.interval` seconds until cancelled."""
    if display.interval is None:
        return
    display.start(snapshot())
    while True:
        await asyncio.sleep(display.interval)
        display.show(snapshot())
