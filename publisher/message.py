"""The MIME message of an edition: built once as bytes, personalised per recipient by filling slots.

Rebuilding an EmailMessage per recipient costs 10-100x more than the send itself, so `build()` makes
the finished bytes once (headers, multipart/alternative, quoted-printable bodies) with slots where
the personal parts go, and `MessageTemplate.personalise()` joins those bytes with each recipient's
values. Three details keep that safe:

- Quoted-printable could cut a `%%TOKEN%%` across a soft line break, so every slot is put on a line
  of its own (soft breaks around it) and its value is QP-encoded by itself, in the same way.
- Lines starting with "." are written as "=2E", so the bytes never need SMTP dot-stuffing and go on
  the wire as they are.
- Header values never come from a feed without `one_line` (no CR/LF can add a header), personal
  header values are checked for CR/LF, and `List-Unsubscribe-Post` is written by hand on one line.
"""

from __future__ import annotations

import binascii
import hashlib
import html
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from publisher.config import Campaign, Settings
from publisher.models import RenderedEdition
from publisher.sanitize import one_line

UNSUBSCRIBE_TOKEN = "%%UNSUBSCRIBE_URL%%"
EMAIL_TOKEN = "%%EMAIL%%"
NAME_TOKEN = "%%NAME%%"
_BODY_TOKENS = {UNSUBSCRIBE_TOKEN: "unsubscribe_url", EMAIL_TOKEN: "email", NAME_TOKEN: "name"}
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


@dataclass(frozen=True)
class _Slot:
    field: str  # "email", "name", "unsubscribe_url", "to", "message_id"
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
        self.parts = tuple(merged)
        self.sender = sender  # bare envelope address
        self.domain = message_id_domain
        self.edition_key = edition_key
        self._salt = hashlib.sha256(edition_key.encode()).digest()[:8]

    def message_id(self, email: str) -> str:
        """A Message-ID on the sender's domain, stable per (edition, recipient): a resend reuses it."""
        digest = hashlib.blake2b(email.encode("utf-8"), digest_size=12, key=self._salt).hexdigest()
        slug = re.sub(r"[^A-Za-z0-9.-]", ".", self.edition_key)
        return f"{slug}.{digest}@{self.domain}"

    def personalise(self, r: Recipient) -> bytes:
        """The message bytes for one recipient (CRLF lines, dot-safe, ending in CRLF)."""
        cache: dict[_Slot, bytes] = {}
        out: list[bytes] = []
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(p)
                continue
            value = cache.get(p)
            if value is None:
                value = cache[p] = _encode_slot(p, r)
            out.append(value)
        return b"".join(out)


def _encode_slot(slot: _Slot, r: Recipient) -> bytes:
    if slot.field == "to":
        raw = formataddr((_header_safe(r.name), r.email), charset="utf-8")
    elif slot.field == "message_id":
        raw = r.message_id
    else:
        raw = getattr(r, slot.field)
    if _CRLF.search(raw):
        raise ValueError(f"personal value for {slot.field} contains a line break")
    if slot.encoding == "header":
        return raw.encode("ascii")  # formataddr and our URLs are ASCII; a non-ASCII value here is a bug
    if slot.encoding == "qp-html":
        raw = html.escape(raw, quote=True)
    return _qp_value(raw)


def _header_safe(text: str) -> str:
    return one_line(text)[:100]


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
          *, subject_prefix: str = "") -> MessageTemplate:
    """The message of an edition, once: every recipient's copy is `personalise()` of this."""
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
             f"Date: {format_datetime(now)}\r\n".encode("ascii"),
             b"Message-ID: <", _Slot("message_id", "header"), b">\r\n",
             f"List-Id: {_list_id(campaign, settings, domain)}\r\n".encode("ascii"),
             b"List-Unsubscribe: <", _Slot("unsubscribe_url", "header"), b">"]
    if em.unsubscribe_mailto:
        mailto = one_line(em.unsubscribe_mailto).removeprefix("mailto:")
        head.append(f",\r\n <mailto:{mailto}?subject=unsubscribe>".encode("ascii"))
    head += [b"\r\n",
             # RFC 8058: this exact value on one line, never folded
             b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
             f"X-Publisher-Edition: {one_line(rendered.edition.key)}\r\n".encode("ascii", "replace"),
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


def unsubscribe_link(settings: Settings, token: str) -> str:
    """The https link a recipient follows (or a client POSTs to, RFC 8058) to unsubscribe."""
    base = settings.email.unsubscribe_url
    return f"{base}{'&' if '?' in base else '?'}t={token}"


def preview_eml(rendered: RenderedEdition, campaign: Campaign, settings: Settings, now: datetime) -> bytes:
    """The raw .eml of an edition as a sample recipient would get it (for the preview bundle)."""
    template = build(rendered, campaign, settings, now)
    return template.personalise(Recipient(email=SAMPLE_EMAIL, name=SAMPLE_NAME,
                                          unsubscribe_url=unsubscribe_link(settings, "EXEMPLE-DE-JETON"),
                                          message_id=template.message_id(SAMPLE_EMAIL)))
