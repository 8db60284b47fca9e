"""Is a response HTML, and what text do its bytes hold?

The encoding is chosen the way browsers do, in order: a byte-order mark, the
Content-Type charset, a <meta> declaration in the first 1024 bytes, then
UTF-8 if the bytes are valid UTF-8, else windows-1252 (which decodes any
byte). Unknown labels are skipped, not fatal. A body is undecodable when it
looks binary (control bytes a text document never holds) or when most of it
does not decode in the chosen encoding.
"""

from __future__ import annotations

import codecs
import re

import attrs

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:\-]+)""", re.I)
# WHATWG sniffing's "binary data bytes": never found in text documents.
_BINARY = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_SNIFF_BYTES = 4096
# Labels whose WHATWG meaning differs from Python's codec of the same name.
_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "x-user-defined": "cp1252",
}
_MAX_REPLACED = 0.05


@attrs.frozen
class Decoded:
    """Text and the encoding it was read with."""

    text: str
    """The document."""
    encoding: str
    """Python codec name used."""
    note: str = ""
    """Why the encoding is not the declared one, if it is not."""


class UndecodableError(ValueError):
    """The body is not text in any encoding we can determine."""


def is_html(content_type: str | None) -> bool:
    """Whether a media type (lower case, no parameters) is one the crawler parses."""
    return content_type in HTML_TYPES


def decode(body: bytes, *, declared: str | None) -> Decoded:
    """Decode an HTML body; raises UndecodableError for binary or mostly-invalid bytes."""
    for bom, bom_encoding in _BOMS:
        if body.startswith(bom):
            return _decode_with(body[len(bom) :], bom_encoding, note="")
    notes: list[str] = []
    encoding = _lookup(declared)
    if declared and encoding is None:
        notes.append(f"unknown charset {declared!r} in Content-Type")
    if encoding is None:
        match = _META_CHARSET.search(body, 0, 1024)
        if match is not None:
            label = match.group(1).decode("ascii")
            encoding = _lookup(label)
            if encoding is None:
                notes.append(f"unknown charset {label!r} in <meta>")
            elif encoding.startswith("utf_16"):
                # A meta tag read as ASCII cannot be in UTF-16; browsers use UTF-8.
                encoding = "utf-8"
    if encoding is not None and encoding.startswith("utf_16"):
        return _decode_with(body, encoding, note="; ".join(notes))
    if _looks_binary(body):
        raise UndecodableError("binary content (control bytes) in an HTML response")
    if encoding is None:
        try:
            return Decoded(text=body.decode("utf-8"), encoding="utf-8", note="; ".join(notes))
        except UnicodeDecodeError:
            encoding = "cp1252"
            notes.append("not UTF-8; read as windows-1252")
    return _decode_with(body, encoding, note="; ".join(notes))


def _looks_binary(body: bytes) -> bool:
    """Whether the first 4 KiB hold a binary data byte (translate: a tenth of a regex's time)."""
    head = body[:_SNIFF_BYTES]
    return len(head.translate(None, _BINARY)) != len(head)


def _lookup(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not _is_text_codec(info):
        return None
    return info.name


def _is_text_codec(info: codecs.CodecInfo) -> bool:
    # codecs.lookup also finds bytes-to-bytes codecs ("base64", "zlib", ...).
    return getattr(info, "_is_text_encoding", True) is not False


def _decode_with(body: bytes, encoding: str, *, note: str) -> Decoded:
    try:
        return Decoded(text=body.decode(encoding), encoding=encoding, note=note)
    except UnicodeDecodeError:
        text = body.decode(encoding, errors="replace")
    replaced = text.count("\ufffd")
    if text and replaced / len(text) > _MAX_REPLACED:
        raise UndecodableError(f"{replaced} of {len(text)} characters invalid as {encoding}")
    note = "; ".join(filter(None, (note, f"{replaced} invalid bytes replaced")))
    return Decoded(text=text, encoding=encoding, note=note)
