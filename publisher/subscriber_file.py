"""A subscriber file as spreadsheets and other newsletter tools export it, read one record at a time.

UTF-8 with or without a BOM, Windows-1252 when any byte is not UTF-8, Excel's UTF-16 "Unicode text";
comma, semicolon or tab, whichever the header uses most. The header says which format it is (FORMATS):
our own columns (email, name, series or lists, locale, in English or French), or an export of
Mailchimp (audience, unsubscribed, cleaned), Brevo or listmonk, whose columns are mapped to ours and
whose consent fields (opt-in time and IP, confirmation time and IP) are kept. samples/imports/ has one
example of each, with where its columns come from. The file is never held whole: a 1M-row import reads
it twice (once to check the encoding and count the lines, once for the rows) in constant memory.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from publisher.errors import InputError
from publisher.text import one_line

COLUMNS = {"email": "email", "e-mail": "email", "mail": "email", "adresse": "email", "address": "email",
           "name": "name", "nom": "name", "series": "lists", "séries": "lists", "lists": "lists", "list": "lists",
           "listes": "lists", "locale": "locale", "langue": "locale", "language": "locale"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Format:
    """A kind of subscriber file: how to recognise its header, and what its columns mean to us."""

    name: str
    signature: tuple[str, ...]  # header columns (lower case) that all appear in this format's files
    columns: dict[str, str] = field(default_factory=dict)  # header (lower case) -> our field
    suppress: str | None = None  # every row goes to the suppression list, with this reason
    blocked: dict[str, str] = field(default_factory=dict)  # a row whose "blocked" field is one of these -> reason

    @property
    def source(self) -> str:
        return "import" if self.name == "csv" else f"import:{self.name}"


_MAILCHIMP = {"email address": "email", "first name": "first_name", "last name": "last_name", "optin_time": "optin_time",
              "optin_ip": "optin_ip", "confirm_time": "confirm_time", "confirm_ip": "confirm_ip", "cc": "country",
              "unsub_time": "left_at", "unsub_reason": "left_why", "clean_time": "left_at"}
# Most specific first: Mailchimp's unsubscribed and cleaned exports are its audience export plus columns.
FORMATS = (
    Format("mailchimp-cleaned", ("email address", "clean_time"), _MAILCHIMP, suppress="hard-bounce"),
    Format("mailchimp-unsubscribed", ("email address", "unsub_time"), _MAILCHIMP, suppress="unsubscribed"),
    Format("mailchimp", ("email address", "optin_time"), _MAILCHIMP),
    Format("brevo", ("email", "firstname", "lastname"),
           {"email": "email", "firstname": "first_name", "lastname": "last_name", "added_time": "optin_time",
            "double_opt-in": "double_opt_in", "opt_in": "opt_in", "email_blacklisted": "blocked"},
           blocked={"yes": "unsubscribed", "true": "unsubscribed", "1": "unsubscribed", "oui": "unsubscribed"}),
    Format("listmonk", ("uuid", "email", "status", "attributes"),
           {"email": "email", "name": "name", "created_at": "optin_time", "status": "blocked", "attributes": "attributes"},
           blocked={"blocklisted": "unsubscribed"}),
    Format("csv", ("email",), COLUMNS),
)


def detect(path: Path, encoding: str) -> Format:
    """The format of a subscriber file, from its header; a header without an email column raises."""
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        header, _ = _header(fh, path)
    return _format(header, path)


def _header(fh, path: Path) -> tuple[list[str], csv.reader]:
    first = fh.readline()
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(itertools.chain([first], fh), delimiter=delimiter)
    try:
        return next(reader), reader
    except StopIteration:
        raise InputError(f"{path}: empty file", hint="the first row must be a header: email,name,series,locale") from None


def _format(header: list[str], path: Path) -> Format:
    names = {h.strip().lower() for h in header}
    for fmt in FORMATS:
        if set(fmt.signature) <= names or (fmt.name == "csv" and names & {k for k, v in COLUMNS.items() if v == "email"}):
            return fmt
    raise InputError(f"{path}: line 1: no 'email' column in the header ({one_line(', '.join(header))[:120]})",
                     hint="the first row must be a header: email,name,series,locale (or a Mailchimp, Brevo or listmonk export)")


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
    """(line, {field: value}) for each non-blank row after the header, with the columns of its format
    mapped to our fields; a header without an email column raises."""
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        header, reader = _header(fh, path)
        fmt = _format(header, path)
        cols = [fmt.columns.get(h.strip().lower()) for h in header]
        for values in reader:
            if any(v.strip() for v in values):
                yield reader.line_num, {c: v for c, v in zip(cols, values) if c}
