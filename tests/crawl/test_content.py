"""Charset detection: header, BOM, meta, and the fallbacks when they are wrong."""

from __future__ import annotations

import codecs

import pytest

from mandrill.domain.crawl import content


def test_header_charset_is_used() -> None:
    body = "<p>caf\u00e9</p>".encode("iso-8859-15")
    decoded = content.decode(body, declared="iso-8859-15")
    assert "caf\u00e9" in decoded.text
    assert decoded.encoding == "iso8859-15"


def test_bom_wins_over_the_header() -> None:
    body = codecs.BOM_UTF16_LE + "<a href='/x'>\u00e9</a>".encode("utf-16-le")
    decoded = content.decode(body, declared="iso-8859-1")
    assert decoded.text == "<a href='/x'>\u00e9</a>"


def test_meta_charset_when_the_header_has_none() -> None:
    body = b'<html><head><meta charset="windows-1251"></head><p>\xcf\xf0\xe8</p>'
    assert "\u041f\u0440\u0438" in content.decode(body, declared=None).text


def test_meta_http_equiv_form() -> None:
    body = b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>\xf0</p>'
    assert content.decode(body, declared=None).encoding == "koi8-r"


def test_unknown_charset_falls_back_and_says_so() -> None:
    body = "<p>na\u00efve</p>".encode()
    decoded = content.decode(body, declared="x-no-such-charset")
    assert decoded.text == "<p>na\u00efve</p>"
    assert "unknown charset" in decoded.note


def test_latin1_label_means_windows_1252_as_in_browsers() -> None:
    assert content.decode(b"\x93q\x94", declared="ISO-8859-1").text == "\u201cq\u201d"


def test_invalid_utf8_without_declaration_reads_as_windows_1252() -> None:
    decoded = content.decode(b"<p>caf\xe9</p>", declared=None)
    assert decoded.text == "<p>caf\u00e9</p>"
    assert "windows-1252" in decoded.note


def test_a_few_bad_bytes_are_replaced_not_fatal() -> None:
    body = ("<p>" + "x" * 200 + "</p>").encode() + b"\xff"
    decoded = content.decode(body, declared="utf-8")
    assert decoded.text.endswith("\ufffd")
    assert "replaced" in decoded.note


@pytest.mark.parametrize(
    ("body", "declared"),
    [
        (bytes(range(256)) * 4, "utf-8"),
        (b"\x00\x01\x02\x03binary\x00", None),
        (b"<p>" + b"\xc3\x28" * 100, "utf-8"),
    ],
)
def test_binary_or_mostly_invalid_is_undecodable(body: bytes, declared: str | None) -> None:
    with pytest.raises(content.UndecodableError):
        content.decode(body, declared=declared)


def test_only_html_types_are_parsed() -> None:
    assert content.is_html("text/html")
    assert content.is_html("application/xhtml+xml")
    assert not content.is_html("application/pdf")
    assert not content.is_html(None)


@pytest.mark.parametrize(("at", "binary"), [(0, True), (4095, True), (4096, False)])
def test_binary_bytes_are_looked_for_in_the_first_4_kib(at: int, binary: bool) -> None:
    body = bytearray(b"a" * 5000)
    body[at] = 0x01
    if binary:
        with pytest.raises(content.UndecodableError):
            content.decode(bytes(body), declared="utf-8")
    else:
        assert content.decode(bytes(body), declared="utf-8").text[at] == "\x01"


@pytest.mark.parametrize("allowed", [b"\t", b"\n", b"\x0c", b"\r", b"\x1b"])
def test_text_control_bytes_are_not_binary(allowed: bytes) -> None:
    assert content.decode(b"<p>" + allowed + b"</p>", declared=None).encoding == "utf-8"
