"""The documentation as a web of files: every relative link in README.md and
docs/*.md reaches a file in this repository (and a heading in it, when the
link names an anchor), and no document or source file points outside the
repository. No cluster, no network."""

from __future__ import annotations

import pathlib
import re
from collections import Counter
from urllib.parse import unquote

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def prose(text: str) -> str:
    """The text without code blocks and inline code, where nothing is a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(path: pathlib.Path) -> set[str]:
    """The anchors GitHub makes for the headings of a markdown file."""
    seen: Counter[str] = Counter()
    found = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        title = LINK.sub(lambda m: m["text"], match["title"])
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def links(path: pathlib.Path) -> list[str]:
    return [m["target"] for m in LINK.finditer(prose(path.read_text(encoding="utf-8")))]


def test_there_are_docs_to_check() -> None:
    assert REPO / "docs" / "design.md" in DOCS
    assert any(links(path) for path in DOCS)


def test_slugs_follow_github() -> None:
    assert "high-availability--what-is-tested-where" in anchors(REPO / "docs" / "design.md")
    assert "crawljob-short-names-crawl-and-cj" in anchors(REPO / "docs" / "design.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: pathlib.Path) -> None:
    broken = []
    for target in links(doc):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / unquote(file_part)).resolve() if file_part else doc
        if not dest.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_nothing_points_outside_the_repository() -> None:
    # The design contract is docs/design.md; notes kept beside the repository
    # (a ../shared folder) are not part of it and must not be referred to.
    outside = re.compile(r"\.\./shared|shared/DESIGN|DESIGN\.md")
    roots = [REPO / "README.md", REPO / "docs", REPO / "operator", REPO / "deploy", REPO / "crds"]
    roots += [REPO / "tests", REPO / "Makefile", REPO / "pyproject.toml", REPO / ".ci"]
    files = [f for r in roots for f in ([r] if r.is_file() else r.rglob("*")) if f.is_file()]
    hits = [
        str(f.relative_to(REPO))
        for f in files
        if f != pathlib.Path(__file__).resolve()
        and not any(part == "__pycache__" or part.endswith(".egg-info") for part in f.parts)
        and f.suffix != ".sum"
        and outside.search(f.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not hits
