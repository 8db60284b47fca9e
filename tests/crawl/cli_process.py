"""Running `mandrill crawl` as a process, as a user does: on a pseudo-terminal or on pipes.

A Terminal is a pty the command runs on, with the command in a session of
its own whose controlling terminal it is (`setsid --ctty`), so a Ctrl-C typed
on it reaches the command the way a keyboard's does. Everything the command
draws is kept as `text`, read as the screen shows it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pathlib
import re
import struct
import sys
import termios
from collections.abc import Callable, Sequence

import attrs

CRAWL = (sys.executable, "-m", "mandrill", "crawl")
WAIT = 60.0
"""Seconds any one wait may take: generous, the test machine may be busy."""


def urls_file(directory: pathlib.Path, *urls: str) -> pathlib.Path:
    """A urls.txt with `urls`, one a line."""
    path = directory / "urls.txt"
    path.write_text("".join(f"{url}\n" for url in urls))
    return path


@attrs.define
class Terminal:
    """A pseudo-terminal of `columns` x `rows`; `text` is everything drawn on it so far."""

    master: int
    slave: int
    data: bytearray = attrs.Factory(bytearray)
    changed: asyncio.Event = attrs.Factory(asyncio.Event)
    closed: bool = False

    @classmethod
    def open(cls, *, columns: int = 100, rows: int = 24) -> Terminal:
        """Open a pty, sized, and start reading it on the running loop."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.set_blocking(master, False)
        terminal = cls(master=master, slave=slave)
        asyncio.get_running_loop().add_reader(master, terminal._read)
        return terminal

    @property
    def text(self) -> str:
        """What was drawn, decoded."""
        return self.data.decode("utf-8", "replace")

    async def spawn(self, *argv: str) -> asyncio.subprocess.Process:
        """Run `mandrill crawl argv...` with this terminal as its stdin, stdout, stderr and tty."""
        process = await asyncio.create_subprocess_exec(
            "setsid", "--ctty", "--wait", *CRAWL, *argv,
            stdin=self.slave, stdout=self.slave, stderr=self.slave,
        )  # fmt: skip
        os.close(self.slave)  # ours; the command's copy is what keeps the terminal open
        self.slave = -1
        return process

    def type(self, keys: bytes) -> None:
        """Type on the keyboard."""
        os.write(self.master, keys)

    async def wait_for(self, seen: Callable[[str], object]) -> str:
        """Wait until `seen(text)` is true; the text then."""
        async with asyncio.timeout(WAIT):
            while not seen(self.text):
                if self.closed:
                    raise AssertionError(f"the terminal closed first; it shows:\n{self.text}")
                self.changed.clear()
                await self.changed.wait()
        return self.text

    async def wait_closed(self) -> str:
        """Wait until nothing holds the terminal open any more (the command exited)."""
        return await self.wait_for(lambda _: self.closed)

    def close(self) -> None:
        """Stop reading, close the descriptors."""
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        if self.slave >= 0:
            os.close(self.slave)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the last holder of the other side closed it
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            asyncio.get_running_loop().remove_reader(self.master)
            self.closed = True
        self.changed.set()


async def spawn_piped(*argv: str) -> asyncio.subprocess.Process:
    """Run `mandrill crawl argv...` with stdout and stderr on pipes (not a terminal)."""
    return await asyncio.create_subprocess_exec(
        *CRAWL, *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait(process: asyncio.subprocess.Process) -> int:
    """The exit status, within WAIT seconds."""
    async with asyncio.timeout(WAIT):
        return await process.wait()


async def read_lines_until(
    stream: asyncio.StreamReader, seen: Callable[[str], object], *, into: list[str]
) -> str:
    """Read lines into `into` until one for which `seen(line)` is true; that line."""
    async with asyncio.timeout(WAIT):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("the stream ended first:\n" + "".join(into))
            line = raw.decode()
            into.append(line)
            if seen(line):
                return line


def done_counts(lines: Sequence[str], pattern: str) -> list[int]:
    """The first group of `pattern` (a done count) in each line that matches it."""
    compiled = re.compile(pattern)
    return [int(m[1]) for line in lines if (m := compiled.search(line))]
