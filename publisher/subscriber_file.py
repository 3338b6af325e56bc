"""A subscriber file as spreadsheets export it, read one record at a time.

UTF-8 with or without a BOM, Windows-1252 when any byte is not UTF-8, Excel's UTF-16 "Unicode text";
comma, semicolon or tab, whichever the header uses most; the header names the columns (email, name,
series or lists, locale, in English or French). The file is never held whole: a 1M-row import reads it
twice (once to check the encoding and count the lines, once for the rows) in constant memory.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from pathlib import Path
from typing import Iterator

from publisher.errors import InputError
from publisher.text import one_line

COLUMNS = {"email": "email", "e-mail": "email", "mail": "email", "adresse": "email", "address": "email",
           "name": "name", "nom": "name", "series": "lists", "séries": "lists", "lists": "lists", "list": "lists",
           "listes": "lists", "locale": "locale", "langue": "locale", "language": "locale"}
_CHUNK = 1 << 20


def sniff(path: Path) -> tuple[str, int]:
    """(encoding, number of lines) of a subscriber file, in one pass over it in 1 MB chunks.

    The whole file is checked before choosing UTF-8, as when it was decoded at once: one byte that is not
    UTF-8, even on the last line, means a Windows spreadsheet export (cp1252) for every line.
    """
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})",
                         hint="check the path, then rerun 'publisher subscribers import FILE.csv'") from None
    with fh:
        chunk = fh.read(_CHUNK)
        if chunk[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Excel's "Unicode text" export: UTF-16 with a BOM
            decoder, lines, last = codecs.getincrementaldecoder("utf-16")(errors="replace"), 0, "\n"
            while chunk:
                text = decoder.decode(chunk)
                lines, last = lines + text.count("\n"), text[-1:] or last
                chunk = fh.read(_CHUNK)
            return "utf-16", lines + (last != "\n")  # a last line without its newline counts too
        if b"\0" in chunk[:65536]:  # a spreadsheet (.xlsx, .ods), a zip, an image: never CSV text
            raise InputError(f"{path}: not a CSV text file (it holds binary data; a spreadsheet file?)",
                             hint=f"export it as CSV (UTF-8) with a header row email,name,series,locale, then rerun"
                                  f" 'publisher subscribers import {path}'")
        decoder, utf8, lines, last = codecs.getincrementaldecoder("utf-8")(), True, 0, b"\n"
        while chunk:
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            chunk = fh.read(_CHUNK)
        lines += last != b"\n"
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    return ("utf-8-sig" if utf8 else "cp1252"), lines  # cp1252: spreadsheet exports on Windows


def records(path: Path, encoding: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: value}) for each non-blank row after the header; a header without an email column raises."""
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
        delimiter = max((",", ";", "\t"), key=first.count)
        reader = csv.reader(itertools.chain([first], fh), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file", hint="the first row must be a header: email,name,series,locale") from None
        cols = [COLUMNS.get(h.strip().lower()) for h in header]
        if "email" not in cols:
            raise InputError(f"{path}: line 1: no 'email' column in the header ({one_line(', '.join(header))[:120]})",
                             hint="the first row must be a header: email,name,series,locale")
        for values in reader:
            if any(v.strip() for v in values):
                yield reader.line_num, {c: v for c, v in zip(cols, values) if c}
