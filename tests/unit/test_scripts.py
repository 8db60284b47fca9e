"""The shell scripts a newcomer's first run goes through: checks a fresh machine would pay for.

Covers: every script parses (`bash -n`); no script asks `command -v NAME`
(or `which`, `hash`, `type -p`) about a NAME it defines as a shell function,
since the function then answers for a program that is not installed. That
is how image.sh once skipped installing buildah on a fresh machine (its
`buildah` wrapper function was "found") and failed at the first call.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    {*ROOT.glob("deploy/**/*.sh"), ROOT / ".ci" / "run"},
)
FUNCTION = re.compile(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)\s*\{", re.MULTILINE)


def _probes(name: str) -> re.Pattern[str]:
    """`command -v NAME`, `which NAME`, `hash NAME`, `type -p NAME`: each is
    answered by a function of that name."""
    return re.compile(
        rf"(?:command\s+-[vV]|\bwhich|\bhash|\btype\s+-[pt])\s+{re.escape(name)}\b(?!-)"
    )


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 5, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_script_parses(script: pathlib.Path) -> None:
    done = subprocess.run(["bash", "-n", str(script)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_program_probe_is_answered_by_a_function(script: pathlib.Path) -> None:
    text = script.read_text()
    wrong = [
        f"{script.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r} "
        f"finds the function {name}(), not the program: use `type -P {name}`"
        for name in set(FUNCTION.findall(text))
        for m in _probes(name).finditer(text)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_probe_check_can_fail() -> None:
    """The pattern pair catches the case it is for, and leaves `type -P` alone."""
    bad = 'buildah() { command buildah "$@"; }\ncommand -v buildah >/dev/null || echo missing\n'
    good = 'buildah() { command buildah "$@"; }\ntype -P buildah >/dev/null || echo missing\n'
    assert FUNCTION.findall(bad) == ["buildah"]
    assert _probes("buildah").search(bad)
    assert not _probes("buildah").search(good)
