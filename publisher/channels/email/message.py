"""The MIME message of an edition: built once as bytes, personalised per recipient by filling slots.

Rebuilding an EmailMessage per recipient costs 10-100x more than the send itself, so `build()` makes
the finished bytes once (headers, multipart/alternative, quoted-printable bodies) with slots where
the personal parts go, and `MessageTemplate.personalise()` joins those bytes with each recipient's
values. Four details keep that safe:

- Quoted-printable could cut a `%%TOKEN%%` across a soft line break, so every slot is put on a line
  of its own (soft breaks around it) and its value is QP-encoded by itself, in the same way.
- Lines starting with "." are written as "=2E", so the bytes never need SMTP dot-stuffing and go on
  the wire as they are.
- Header values never come from a feed without `one_line` (no CR/LF can add a header), personal
  header values are checked for CR/LF, and `List-Unsubscribe-Post` is written by hand on one line.
- A subscriber's name in To is shown exactly as typed: a name that looks like an encoded word
  (`=?utf-8?q?Admin?=`) is itself encoded, so no decoder turns it into other text or an address.
"""

from __future__ import annotations

import base64
import binascii
import email.base64mime
import email.quoprimime
import hashlib
import html
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from publisher.config import Campaign, Settings
from publisher.models import EMAIL_TOKEN, PREFERENCES_TOKEN, UNSUBSCRIBE_TOKEN, RenderedEdition
from publisher.text import one_line

NAME_TOKEN = "%%NAME%%"
_BODY_TOKENS = {UNSUBSCRIBE_TOKEN: "unsubscribe_url", EMAIL_TOKEN: "email", NAME_TOKEN: "name",
                PREFERENCES_TOKEN: "preferences_url"}
_TOKEN_RE = re.compile("(" + "|".join(re.escape(t) for t in _BODY_TOKENS) + ")")
_CRLF = re.compile(r"[\r\n]")

SAMPLE_EMAIL = "lecteur.exemple@example.org"
SAMPLE_NAME = "Lecteur Exemple"


@dataclass(frozen=True)
class Recipient:
    """The personal parts of one message."""

    email: str
    name: str
    unsubscribe_url: str
    message_id: str  # without angle brackets
    preferences_url: str = ""
    date: str = ""  # live sends: the Date header's value, the moment this copy was made
    mailto: str = ""  # live sends: the mailto unsubscribe URI without "mailto:", with its token


@dataclass(frozen=True)
class _Slot:
    field: str  # "email", "name", "unsubscribe_url", "to", "message_id", "date", "mailto"
    encoding: str  # "header", "qp-text", "qp-html"


class MessageTemplate:
    """The finished bytes of one edition's message, with slots for the personal parts."""

    def __init__(self, parts: list[bytes | _Slot], sender: str, message_id_domain: str, edition_key: str):
        # merge neighbouring literals so personalise() joins as few pieces as possible
        merged: list[bytes | _Slot] = []
        for p in parts:
            if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += p
            elif p != b"":
                merged.append(p)
        # each distinct slot is encoded once per recipient; the parts refer to it by its index
        self.slots = tuple(dict.fromkeys(p for p in merged if isinstance(p, _Slot)))
        where = {slot: i for i, slot in enumerate(self.slots)}
        self.parts = tuple(where[p] if isinstance(p, _Slot) else p for p in merged)
        self.sender = sender  # bare envelope address
        self.domain = message_id_domain
        self.edition_key = edition_key
        self._salt = hashlib.sha256(edition_key.encode()).digest()[:8]
        self._slug = re.sub(r"[^A-Za-z0-9.-]", ".", edition_key)

    def message_id(self, email: str) -> str:
        """A Message-ID on the sender's domain, stable per (edition, recipient): a resend reuses it."""
        digest = hashlib.blake2b(email.encode("utf-8"), digest_size=12, key=self._salt).hexdigest()
        return f"{self._slug}.{digest}@{self.domain}"

    def personalise(self, r: Recipient) -> bytes:
        """The message bytes for one recipient (CRLF lines, dot-safe, ending in CRLF)."""
        done: dict[tuple[str, str], bytes] = {}
        values = [_encode_slot(slot, r, done) for slot in self.slots]
        return b"".join([p if p.__class__ is bytes else values[p] for p in self.parts])


def _encode_slot(slot: _Slot, r: Recipient, done: dict[tuple[str, str], bytes]) -> bytes:
    if slot.encoding == "qp-html" and (slot.field, "qp-text") in done and not _HTML_SPECIAL.search(getattr(r, slot.field)):
        return done[(slot.field, "qp-text")]  # nothing to escape: the same bytes as in the text part
    value = done[(slot.field, slot.encoding)] = _encode_value(slot, r)
    return value


def _encode_value(slot: _Slot, r: Recipient) -> bytes:
    if slot.field == "to":
        _no_line_break(r.email, "email")
        return mailbox(r.name, r.email).encode("ascii")  # folded by us; an address that is not ASCII is a bug
    if slot.field == "name":
        raw = one_line(r.name)[:MAX_NAME]  # the same text the To header shows
    else:
        raw = _no_line_break(r.message_id if slot.field == "message_id" else getattr(r, slot.field), slot.field)
    if slot.encoding == "header":
        return raw.encode("ascii")  # our URLs and ids are ASCII; a non-ASCII value here is a bug
    if slot.encoding == "qp-html":
        raw = html.escape(raw, quote=True)
    return _qp_value(raw)


def _no_line_break(value: str, field: str) -> str:
    if _CRLF.search(value):
        raise ValueError(f"personal value for {field} contains a line break")
    return value


_HTML_SPECIAL = re.compile(r"[&<>\"']")
MAX_NAME = 200  # as many characters as `subscribers import` keeps
_Q_PLAIN = bytes(i for i, enc in enumerate(email.quoprimime._QUOPRI_HEADER_MAP) if len(enc) == 1)


def _encoded_word(text: str) -> str:
    """`Charset("utf-8").header_encode(text)`: the shorter of Q and B, the same bytes, counted in C."""
    raw = text.encode("utf-8")
    q_length = len(raw) + 2 * len(raw.translate(None, _Q_PLAIN))  # each other octet takes "=XX"
    if email.base64mime.header_length(raw) < q_length:
        return email.base64mime.header_encode(raw, "utf-8")
    return email.quoprimime.header_encode(raw, "utf-8")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+")  # atext without "=" and "?": never part of "=?"
_LONGEST_WORD = 600  # UTF-8 bytes in one encoded word: 812 characters, a header line stays under 998


def mailbox(name: str, address: str) -> str:
    """`Name <address>` for the To header, where a decoder shows exactly the name the subscriber typed.

    A plain ASCII name is written as it is, in quotes when it holds specials (`,` `<` `"` ...), as
    formataddr does. A name that is not ASCII, or that holds `=?` anywhere, is RFC 2047-encoded:
    otherwise `=?utf-8?q?Admin?=` would be shown as "Admin" (decoders read encoded words even inside
    quotes), and `=?utf-8?q?=3Cceo=40evil=2Eexample=3E?=` as an address. A short name is one encoded
    word; a long one is a phrase of plain words and encoded words, folded between them (see `_phrase`).
    """
    name = one_line(name)[:MAX_NAME]
    if not name:
        return address
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    word = _encoded_word(name)  # q or b, whichever is shorter
    if len(word) <= 75:  # RFC 2047's longest encoded word
        return f"{word} <{address}>"
    return _fold([*_phrase(name), f"<{address}>"], used=len("To: "))


def _phrase(name: str) -> list[str]:
    """The words of a long display name: plain words as they are, each run of other words as one encoded word.

    Decoders disagree on the space between two encoded words: RFC 2047 drops it, Python's parser keeps it.
    Next to a plain word every decoder keeps it, so a run of words that need encoding is never split
    into several encoded words (even past 75 characters, which decoders accept), except a run longer
    than _LONGEST_WORD bytes, which is split where RFC 2047 decoders read it exactly.
    """
    pieces: list[str] = []
    run: list[str] = []
    for word in [*name.split(" "), None]:
        if word is not None and not _PLAIN_WORD.fullmatch(word):
            run.append(word)
            continue
        if run:
            text = " ".join(run)
            pieces += ([_encoded_word(text)] if len(text.encode("utf-8")) <= _LONGEST_WORD else _b_words(text))
            run = []
        if word is not None:
            pieces.append(word)
    return pieces


def _b_words(text: str) -> list[str]:
    """`text` as base64 encoded words of at most _LONGEST_WORD bytes each, never splitting a character."""
    chunks, chunk, size = [], "", 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > _LONGEST_WORD:
            chunks.append(chunk)
            chunk, size = "", 0
        chunk += ch
        size += n
    chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(c.encode('utf-8')).decode('ascii')}?=" for c in chunks]


def _fold(pieces: list[str], used: int) -> str:
    """`pieces` joined by spaces, folded before a piece that would take a line past 78 characters."""
    out, width = "", used
    for piece in pieces:
        if out:
            fold = width + 1 + len(piece) > 78
            out += "\r\n " if fold else " "
            width = 1 if fold else width + 1
        out += piece
        width += len(piece)
    return out


def _qp(data: bytes) -> bytes:
    """Quoted-printable with CRLF line ends and no line starting with '.' (so no dot-stuffing is needed)."""
    enc = binascii.b2a_qp(data, istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    enc = enc.replace(b"\r\n.", b"\r\n=2E")
    if enc.startswith(b"."):
        enc = b"=2E" + enc[1:]
    return enc


def _qp_value(text: str) -> bytes:
    # a slot sits on its own line; the soft break after it joins it to what follows
    return _qp(text.encode("utf-8")) + b"=\r\n"


def _qp_body(text: str, encoding: str) -> list[bytes | _Slot]:
    """A text or HTML body as QP bytes with a slot for every personal token in it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    out: list[bytes | _Slot] = []
    for i, piece in enumerate(_TOKEN_RE.split(text)):
        if i % 2:
            out.append(_Slot(_BODY_TOKENS[piece], encoding))
        elif piece:
            enc = _qp(piece.encode("utf-8"))
            if not enc.endswith(b"\r\n"):
                enc += b"=\r\n"  # soft break: the next slot starts a line of its own
            out.append(enc)
    return out


def _encode_header(name: str, value: str) -> bytes:
    """`Name: value` folded, RFC 2047-encoded when not plain ASCII."""
    value = one_line(value)
    try:
        value.encode("ascii")
        if len(name) + len(value) + 2 <= 78:
            return f"{name}: {value}\r\n".encode("ascii")
    except UnicodeEncodeError:
        pass
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _address_header(name: str, value: str) -> bytes:
    display, addr = parseaddr(one_line(value))
    return f"{name}: {formataddr((one_line(display), addr), charset='utf-8')}\r\n".encode("ascii")


def _list_id(campaign: Campaign, settings: Settings, sender_domain: str) -> str:
    domain = settings.email.list_id_domain or sender_domain
    label = re.sub(r"[^A-Za-z0-9-]", "-", campaign.list.lower()).strip("-") or "list"
    title = one_line(campaign.title).replace('"', "'")
    try:
        title.encode("ascii")
        phrase = f'"{title}"'
    except UnicodeEncodeError:
        phrase = Header(title, "utf-8").encode()
    return f"{phrase} <{label}.{domain}>"


def build(rendered: RenderedEdition, campaign: Campaign, settings: Settings, now: datetime,
          *, subject_prefix: str = "", live: bool = False) -> MessageTemplate:
    """The message of an edition, once: every recipient's copy is `personalise()` of this.

    `live` (a real send): the Date header is a slot filled with the moment each copy is made (never
    --now), the mailto unsubscribe address is a slot for its per-recipient token, and a Feedback-ID
    header names the campaign for Gmail's feedback loop. Files in the outbox keep --now and no token:
    they are reproducible review copies.
    """
    em = settings.email
    _, sender_addr = parseaddr(em.sender)
    domain = sender_addr.rpartition("@")[2] or "localhost"
    boundary = "=_publisher_" + hashlib.sha256(rendered.content_hash.encode()).hexdigest()[:24]
    subject = subject_prefix + one_line(rendered.subject)

    head: list[bytes | _Slot] = [_address_header("From", em.sender)]
    if em.reply_to:
        head.append(_address_header("Reply-To", em.reply_to))
    head += [b"To: ", _Slot("to", "header"), b"\r\n",
             _encode_header("Subject", subject),
             *([b"Date: ", _Slot("date", "header"), b"\r\n"] if live else [f"Date: {format_datetime(now)}\r\n".encode("ascii")]),
             b"Message-ID: <", _Slot("message_id", "header"), b">\r\n",
             f"List-Id: {_list_id(campaign, settings, domain)}\r\n".encode("ascii"),
             b"List-Unsubscribe: <", _Slot("unsubscribe_url", "header"), b">"]
    if em.unsubscribe_mailto:
        mailto = one_line(em.unsubscribe_mailto).removeprefix("mailto:")
        if live:
            head += [b",\r\n <mailto:", _Slot("mailto", "header"), b">"]
        else:
            head.append(f",\r\n <mailto:{mailto}?subject=unsubscribe>".encode("ascii"))
    head += [b"\r\n",
             # RFC 8058: this exact value on one line, never folded
             b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
             f"X-Publisher-Edition: {one_line(rendered.edition.key)}\r\n".encode("ascii", "replace"),
             *([_feedback_id(campaign, rendered, em.feedback_id or domain)] if live else []),
             b"MIME-Version: 1.0\r\n",
             f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode("ascii"),
             b"\r\n"]
    body: list[bytes | _Slot] = [f"--{boundary}\r\n".encode("ascii"),
                                 b'Content-Type: text/plain; charset="utf-8"\r\n'
                                 b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                                 *_qp_body(rendered.text, "qp-text"),
                                 # the CRLF before a boundary belongs to the boundary: keep the body's own
                                 f"\r\n--{boundary}\r\n".encode("ascii"),
                                 b'Content-Type: text/html; charset="utf-8"\r\n'
                                 b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                                 *_qp_body(rendered.html, "qp-html"),
                                 f"\r\n--{boundary}--\r\n".encode("ascii")]
    return MessageTemplate(head + body, sender_addr, domain, rendered.edition.key)


def _feedback_id(campaign: Campaign, rendered: RenderedEdition, sender_id: str) -> bytes:
    """Gmail's `Feedback-ID: a:b:c:SenderId`: complaint rates per campaign and edition in Postmaster Tools."""
    fields = [re.sub(r"[^A-Za-z0-9._-]", "-", v) for v in (campaign.name, rendered.edition.id, "newsletter", sender_id)]
    return f"Feedback-ID: {':'.join(fields)}\r\n".encode("ascii")


def mailto_uri(address: str, token: str | None) -> str:
    """The mailto unsubscribe URI (without "mailto:"): `local+TOKEN@domain?subject=unsubscribe%20TOKEN`.

    The token is in the address and in the subject, so a client or relay that drops one keeps the other.
    """
    address = one_line(address).removeprefix("mailto:")
    if not token:
        return f"{address}?subject=unsubscribe"
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}?subject=unsubscribe%20{token}"


def unsubscribe_link(settings: Settings, token: str) -> str:
    """The https link a recipient follows (or a client POSTs to, RFC 8058) to unsubscribe."""
    base = settings.email.unsubscribe_url
    return f"{base}{'&' if '?' in base else '?'}t={token}"


def preferences_link(settings: Settings, token: str) -> str:
    """The https link of a recipient's preferences page (series, unsubscribe from all)."""
    base, _, query = settings.email.unsubscribe_url.partition("?")
    return f"{base.rstrip('/')}/preferences?{query + '&' if query else ''}t={token}"


def preview_eml(rendered: RenderedEdition, campaign: Campaign, settings: Settings, now: datetime) -> bytes:
    """The raw .eml of an edition as a sample recipient would get it (for the preview bundle)."""
    template = build(rendered, campaign, settings, now)
    return template.personalise(Recipient(email=SAMPLE_EMAIL, name=SAMPLE_NAME,
                                          unsubscribe_url=unsubscribe_link(settings, "EXEMPLE-DE-JETON"),
                                          preferences_url=preferences_link(settings, "EXEMPLE-DE-JETON"),
                                          message_id=template.message_id(SAMPLE_EMAIL)))
