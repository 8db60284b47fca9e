"""A PostgreSQL server of the test session's own, from Debian's packages (a pytest plugin).

The session fixture `postgres` starts it on first use: `initdb` in a new
temporary folder, listening on 127.0.0.1 only at a free port, its unix
socket in that folder, password (SCRAM) authentication for the superuser
`mandrill` with a random password, so tests can check that the password
never leaks. It is stopped and deleted at the end of the session. As root
the server runs as the `postgres` OS user, since postgres refuses to run as
root. `postgres_url` gives each test a database of its own.

fsync is off: the tests measure behaviour, not disks, and a server stopped
and started again (`stop`/`start`, for the outage tests, even `immediate`,
as a crash) still finds every committed row, since the machine itself does
not crash and the OS keeps what was written. synchronous_commit stays on:
off, a crashed server loses the commits of its last moments (an outage test
caught exactly that). The store benchmark runs a server with the defaults.

A session killed before its teardown leaves its server running; the next
session that starts one stops and deletes it first (each folder notes the
pid of the session that owns it).

Binaries: $MANDRILL_TEST_PG_BIN, else the newest /usr/lib/postgresql/<v>/bin,
as deploy/local/postgres.sh (whose `prepare` installs them) looks. Where
there are none, the tests that need a server are skipped, saying so; under
CI (CI=true) they fail instead, since a skip there would hide a missing
install step. Tests that use the server are marked `postgres`, so
`-m "not postgres"` leaves them out.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

PREPARE = "deploy/local/postgres.sh prepare"
USER = "mandrill"
TEST_SETTINGS = ("fsync=off", "full_page_writes=off")


def bin_dir() -> pathlib.Path | None:
    """Where initdb, pg_ctl and postgres are, or None."""
    given = os.environ.get("MANDRILL_TEST_PG_BIN")
    if given:
        return pathlib.Path(given) if (pathlib.Path(given) / "initdb").exists() else None

    def version(path: pathlib.Path) -> tuple[int, ...]:
        return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())

    found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), key=version)
    usable = [d for d in found if (d / "initdb").exists() and (d / "postgres").exists()]
    return usable[-1] if usable else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class PostgresServer:
    """One initdb'd server in `base`; `start`/`stop` keep its data."""

    bin: pathlib.Path
    base: pathlib.Path
    settings: tuple[str, ...] = TEST_SETTINGS
    port: int = attrs.Factory(_free_port)
    password: str = attrs.Factory(lambda: "pw-" + secrets.token_urlsafe(18))
    """Random, and distinctive: tests grep logs and messages for it."""
    running: bool = False

    @property
    def data(self) -> pathlib.Path:
        return self.base / "data"

    @property
    def log(self) -> pathlib.Path:
        return self.base / "server.log"

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A postgresql:// URL to `database` as the superuser (another password: for errors)."""
        secret = self.password if password is None else password
        return f"postgresql://{USER}:{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the `postgres` OS user when we are root."""
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            kwargs = {"user": "postgres", "group": "postgres", "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "PGPASSWORD": self.password}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
            **kwargs,
        )

    def init(self) -> PostgresServer:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        return self

    def start(self) -> None:
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {self.port}",
            f"-c unix_socket_directories={self.base}",
            *(f"-c {s}" for s in self.settings),
        ]
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", " ".join(options), "start", check=False,
        )  # fmt: skip
        if done.returncode != 0:
            output = f"{done.stdout}{done.stderr}"
            raise RuntimeError(f"PostgreSQL did not start:\n{output}\n{self.tail()}")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clients are cut off) or `immediate` (as if it crashed)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over TCP; its output (unaligned, tuples only)."""
        done = self._run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-c", sql,
        )  # fmt: skip
        return done.stdout

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no server log)"


PREFIX = "mandrill-pg-"
OWNER = "owner.pid"
"""In each server's folder: the pid of the process that started it."""


def reap_orphans(bin: pathlib.Path) -> None:
    """Stop and delete the servers of earlier sessions that were killed (no teardown ran).

    Only folders of ours (PREFIX, with an OWNER file) whose owner is gone."""
    for base in pathlib.Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((base / OWNER).read_text())
        except (OSError, ValueError):
            continue
        if pathlib.Path(f"/proc/{owner}").exists():
            continue
        orphan = PostgresServer(bin=bin, base=base, port=0, password="")
        if (orphan.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                orphan.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def server(settings: tuple[str, ...] = TEST_SETTINGS) -> Iterator[PostgresServer]:
    """A running server in a new temporary folder; stopped and deleted afterwards.

    RuntimeError if there are no binaries. The folder is made with mkdtemp
    under the system's temporary directory (pytest's own folders are root's
    and closed to the `postgres` user)."""
    found = bin_dir()
    if found is None:
        raise RuntimeError(f"no PostgreSQL server binaries (run {PREPARE})")
    reap_orphans(found)
    base = pathlib.Path(tempfile.mkdtemp(prefix=PREFIX))
    (base / OWNER).write_text(f"{os.getpid()}\n")
    running = PostgresServer(bin=found, base=base, settings=settings)
    try:
        running.init().start()
        yield running
    finally:
        if running.running:
            running.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use."""
    if bin_dir() is None:
        why = f"no PostgreSQL server binaries here ({PREPARE} installs them)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; under CI that is a missing install step, not a skip")
        pytest.skip(why)
    with server() as running:
        yield running


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A URL (with the password) to a new, empty database of this test's own."""
    if not postgres.running:  # a test that stopped it and failed before starting it again
        postgres.start()
    return postgres.url(postgres.create_database())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the server, so `-m "not postgres"` can leave them out."""
    for item in items:
        if "postgres" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
