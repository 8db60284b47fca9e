"""The progress displays of `mandrill crawl`, fed snapshots directly (no crawl, no clock).

Covers: which display a stream gets (-q, a terminal, anything else); the
plain line's fields, its rate over the last interval rather than the whole
crawl, errors by kind most frequent first; the bar's frames: counts, queued,
errors, trimmed to the terminal's width, one line ended once on close.
"""

from __future__ import annotations

import io

from mandrill.commands import progress
from mandrill.commands.progress import Snapshot


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal; with no size, so 80 columns."""

    def isatty(self) -> bool:
        return True


def snapshot(done: int, scheduled: int, elapsed: float, **errors: int) -> Snapshot:
    return Snapshot(
        done=done, scheduled=scheduled, failed=sum(errors.values()), errors=errors, elapsed=elapsed
    )


def test_the_display_fits_the_stream() -> None:
    assert isinstance(progress.choose(FakeTerminal(), quiet=True), progress.Quiet)
    assert isinstance(progress.choose(FakeTerminal(), quiet=False), progress.LiveBar)
    plain = progress.choose(io.StringIO(), quiet=False, interval=5.0)
    assert isinstance(plain, progress.PlainLines)
    assert plain.interval == 5.0


def test_a_plain_line_has_counts_errors_by_kind_and_the_recent_rate() -> None:
    stream = io.StringIO()
    lines = progress.PlainLines(stream, interval=2.0)

    lines.show(snapshot(10, 40, 2.0))
    lines.show(snapshot(14, 52, 4.0, timeout=1, http_status=3))

    assert stream.getvalue().splitlines() == [
        "[2.0 s] 10/40 done, 30 queued, 0 failed, 5.0 pages/s",
        "[4.0 s] 14/52 done, 38 queued, 4 failed (http_status 3, timeout 1), 2.0 pages/s",
    ]


def test_closing_plain_lines_adds_nothing() -> None:
    stream = io.StringIO()
    progress.PlainLines(stream).close(snapshot(1, 1, 1.0))
    assert stream.getvalue() == ""


def test_the_bar_redraws_in_place_and_ends_its_line_once() -> None:
    stream = FakeTerminal()
    bar = progress.LiveBar(stream)

    bar.start(snapshot(0, 1, 0.0))
    bar.show(snapshot(3, 9, 0.5, timeout=1))
    bar.close(snapshot(9, 9, 1.0, timeout=1, dns=2))

    text = stream.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0].startswith("0/1 pages, 1 queued, 0 failed, ")
    assert any(f.startswith("3/9 pages, 6 queued, 1 failed (timeout 1), ") for f in frames)
    assert frames[-1].startswith("9/9 pages, 0 queued, 3 failed (dns 2, timeout 1), ")
    assert frames[-1].endswith("|")


def test_the_bar_is_trimmed_to_the_terminal_width() -> None:
    stream = FakeTerminal()
    bar = progress.LiveBar(stream)
    many = {f"kind_{n}": n + 1 for n in range(20)}

    bar.close(snapshot(5, 10, 1.0, **many))

    frames = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert frames
    assert all(len(frame) <= progress.FALLBACK_WIDTH for frame in frames)
    assert frames[-1].startswith("5/10 pages, 5 queued, 210 failed (kind_19 20, kind_18 19")
