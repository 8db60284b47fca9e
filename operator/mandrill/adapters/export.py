"""Writers for crawl results: TSV, JSON lines and GraphML, streamed as pages come.

- tsv: `source_url<TAB>parsed_url`, a header line first, one row per edge.
  Canonical URLs are percent-encoded, so they never hold a tab or newline.
- jsonl: one object per line, `{"type": "page", ...}` for each URL's outcome
  and `{"type": "edge", "source": ..., "target": ...}` for each link.
- graphml: a directed graph, one node per URL (with its status, error and
  depth when it was crawled), one edge per link. Edges are written as they
  come; nodes are written at the end, when all their data is known (GraphML
  allows nodes after the edges that name them). All text is XML-escaped and
  characters XML 1.0 cannot carry are dropped.

The engine yields each page once with distinct links, so every edge is
written once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Protocol, TextIO
from xml.sax.saxutils import escape

import attrs

from mandrill.domain.crawl.models import Edge, EdgeList, PageResult

FORMATS = ("tsv", "jsonl", "graphml")
TSV_HEADER = "source_url\tparsed_url\n"
GRAPHML_NS = "http://graphml.graphdrawing.org/xmlns"

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Writer(Protocol):
    """Writes results to a text stream; `close` completes the document (not the stream)."""

    def write(self, result: PageResult, edges: Sequence[Edge]) -> None:
        """One URL's outcome and its page's links."""
        ...

    def close(self) -> None:
        """Finish the document."""
        ...


def open_writer(format_name: str, stream: TextIO) -> Writer:
    """The writer for `format_name` (one of FORMATS), header already written."""
    if format_name == "tsv":
        return TsvWriter.start(stream)
    if format_name == "jsonl":
        return JsonlWriter(stream)
    if format_name == "graphml":
        return GraphmlWriter.start(stream)
    raise ValueError(f"unknown format {format_name!r}; expected one of {', '.join(FORMATS)}")


@attrs.define
class TsvWriter:
    """Edges only, the format the CrawlJob results are exported in."""

    stream: TextIO

    @classmethod
    def start(cls, stream: TextIO) -> TsvWriter:
        """Write the header."""
        stream.write(TSV_HEADER)
        return cls(stream)

    def write(self, result: PageResult, edges: Sequence[Edge]) -> None:
        """Append the page's edges."""
        if edges:
            self.stream.write("".join(f"{source}\t{target}\n" for source, target in _pairs(edges)))

    def close(self) -> None:
        """Nothing to finish: every line is complete."""


@attrs.define
class JsonlWriter:
    """Pages and edges, one JSON object a line."""

    stream: TextIO

    def write(self, result: PageResult, edges: Sequence[Edge]) -> None:
        """Append the page's outcome, then its edges."""
        page = {
            "type": "page",
            "url": result.url,
            "final_url": result.final_url,
            "depth": result.depth,
            "status": result.status,
            "ok": result.ok,
            "error": result.error.value if result.error is not None else None,
            "message": result.message,
            "content_type": result.content_type,
            "bytes": result.size,
            "links": result.links,
            "attempts": result.attempts,
        }
        lines = [json.dumps(page)]
        lines.extend(
            json.dumps({"type": "edge", "source": source, "target": target})
            for source, target in _pairs(edges)
        )
        self.stream.write("\n".join(lines) + "\n")

    def close(self) -> None:
        """Nothing to finish: every line is complete."""


@attrs.frozen
class _NodeData:
    status: int | None
    error: str | None
    depth: int


@attrs.define
class GraphmlWriter:
    """A GraphML document; node ids are n0, n1, ... with the URL as data."""

    stream: TextIO
    ids: dict[str, str] = attrs.Factory(dict)
    data: dict[str, _NodeData] = attrs.Factory(dict)

    @classmethod
    def start(cls, stream: TextIO) -> GraphmlWriter:
        """Write the prologue, the keys and the opening graph tag."""
        stream.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<graphml xmlns="{GRAPHML_NS}">\n'
            '  <key id="url" for="node" attr.name="url" attr.type="string"/>\n'
            '  <key id="status" for="node" attr.name="status" attr.type="int"/>\n'
            '  <key id="error" for="node" attr.name="error" attr.type="string"/>\n'
            '  <key id="depth" for="node" attr.name="depth" attr.type="int"/>\n'
            '  <graph id="crawl" edgedefault="directed">\n'
        )
        return cls(stream)

    def write(self, result: PageResult, edges: Sequence[Edge]) -> None:
        """Remember the page's outcome for its node; write its edges."""
        node = _NodeData(
            status=result.status,
            error=result.error.value if result.error is not None else None,
            depth=result.depth,
        )
        for url in (result.url, result.final_url):
            self._id(url)
            self.data.setdefault(url, node)
        if edges:
            self.stream.write(
                "".join(
                    f'    <edge source="{self._id(source)}" target="{self._id(target)}"/>\n'
                    for source, target in _pairs(edges)
                )
            )

    def close(self) -> None:
        """Write every node, then close the graph and the document."""
        for url, node_id in self.ids.items():
            parts = [f'    <node id="{node_id}">', f'<data key="url">{_text(url)}</data>']
            node = self.data.get(url)
            if node is not None:
                if node.status is not None:
                    parts.append(f'<data key="status">{node.status}</data>')
                if node.error is not None:
                    parts.append(f'<data key="error">{_text(node.error)}</data>')
                parts.append(f'<data key="depth">{node.depth}</data>')
            parts.append("</node>\n")
            self.stream.write("".join(parts))
        self.stream.write("  </graph>\n</graphml>\n")

    def _id(self, url: str) -> str:
        node_id = self.ids.get(url)
        if node_id is None:
            node_id = self.ids[url] = f"n{len(self.ids)}"
        return node_id


def _text(value: str) -> str:
    return escape(_XML_INVALID.sub("", value))


def _pairs(edges: Sequence[Edge]) -> Iterator[tuple[str, str]]:
    """(source, target) pairs, without making an Edge per link when the engine sent an EdgeList."""
    if isinstance(edges, EdgeList):
        source = edges.source
        return ((source, target) for target in edges.targets)
    return ((e.source, e.target) for e in edges)
