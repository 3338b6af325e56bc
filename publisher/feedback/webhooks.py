"""ESP webhooks, without a web framework: authenticate each call as its provider documents, then parse it.

    provider   authenticated by                                               secret / setting
    ses        Amazon SNS message signature (RSA, SHA1 or SHA256) with the     [webhooks].sns_topic_arns
               certificate at SigningCertURL (https on an amazonaws.com
               host only), and a TopicArn we subscribed to
    postmark   HTTP Basic auth in the webhook URL                             $PUBLISHER_POSTMARK_WEBHOOK_PASSWORD
    sendgrid   Signed Event Webhook: ECDSA P-256 over timestamp + body        [webhooks].sendgrid_public_key
               (and a timestamp within 10 minutes)
    brevo      `Authorization: Bearer <token>` (or Basic auth)                $PUBLISHER_BREVO_WEBHOOK_TOKEN
    mailjet    HTTP Basic auth in the event callback URL                      $PUBLISHER_MAILJET_WEBHOOK_PASSWORD

`Provider.handle(request, now)` returns the reports (publisher/store/feedback.py Feedback values) or
raises Rejected (401: not authenticated; 400: malformed). A call that is rejected changes nothing.
Each event's own id makes the report's `source`, so a provider's retry is counted once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from publisher.config import Settings, secret
from publisher.errors import ConfigError
from publisher.feedback.apply import edition_from_message_id
from publisher.store.feedback import Feedback

log = logging.getLogger("publisher")
MAX_BODY = 1_000_000  # bytes; ESPs batch events, but never this many in one call
SENDGRID_WINDOW = timedelta(minutes=10)  # a signed call older (or newer) than this is a replay
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")


class Rejected(Exception):
    """The call changes nothing: `status` for the HTTP answer, `reason` for the log (never a secret)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class WebhookRequest:
    """What a provider needs of an HTTP call: lower-case header names, the raw body."""

    headers: Mapping[str, str]
    body: bytes


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[…" nested too deep
        raise Rejected(400, "the body is not JSON") from None


def _email(value: Any) -> str:
    """A recipient address from an event, normalised as subscribers are (domain lower-cased)."""
    if not isinstance(value, str) or "@" not in value or any(c in value for c in "\r\n <>"):
        raise Rejected(400, "an event has no usable recipient address")
    local, _, domain = value.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def _basic_password(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return None


def _check_password(given: str | None, expected: str) -> None:
    # compare even when nothing was given, so a missing header takes the same path as a wrong one
    if not hmac.compare_digest((given or "").encode("utf-8"), expected.encode("utf-8")) or not given:
        raise Rejected(401, "wrong or missing credentials")


# -- Amazon SES through SNS --------------------------------------------------------------------------------


def amazon_url(url: str) -> bool:
    """Only https URLs on an SNS host of amazonaws.com may give a signing certificate or confirm a subscription."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme == "https" and port in (None, 443) and bool(_SNS_HOST.fullmatch(parts.hostname or "")) \
        and not parts.username


def fetch_url(url: str) -> bytes:
    """GET a small document (a certificate, a subscription confirmation)."""
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        r = client.get(url)
        r.raise_for_status()
        return r.content[:100_000]


_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


class Ses:
    """Amazon SES bounce and complaint notifications delivered by SNS.

    `url_allowed` and `fetch` are the seam for tests (a certificate served from 127.0.0.1); production
    always uses amazon_url and fetch_url: no setting changes them.
    """

    name = "ses"

    def __init__(self, topics: tuple[str, ...], *, url_allowed: Callable[[str], bool] = amazon_url,
                 fetch: Callable[[str], bytes] = fetch_url):
        self.topics, self.url_allowed, self.fetch = topics, url_allowed, fetch
        self._certs: dict[str, Any] = {}

    def handle(self, req: WebhookRequest, now: datetime) -> list[Feedback]:
        msg = _json(req.body)
        if not isinstance(msg, dict) or msg.get("Type") not in _SNS_FIELDS:
            raise Rejected(400, "not an SNS message")
        self._verify(msg)
        if msg.get("TopicArn") not in self.topics:
            raise Rejected(401, f"SNS topic {str(msg.get('TopicArn'))[:200]!r} is not in [webhooks].sns_topic_arns")
        if msg["Type"] == "SubscriptionConfirmation":
            url = str(msg.get("SubscribeURL", ""))
            if not self.url_allowed(url):
                raise Rejected(400, "the SubscribeURL is not on an amazonaws.com host")
            self.fetch(url)
            log.info("webhooks: confirmed the SNS subscription to %s", msg["TopicArn"])
            return []
        if msg["Type"] == "UnsubscribeConfirmation":
            return []
        return self._reports(msg)

    def _verify(self, msg: dict) -> None:
        version = str(msg.get("SignatureVersion", ""))
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
        url = str(msg.get("SigningCertURL", ""))
        if algorithm is None:
            raise Rejected(401, f"unknown SNS SignatureVersion {version[:10]!r}")
        if not self.url_allowed(url) or not urlsplit(url).path.endswith(".pem"):
            raise Rejected(401, f"SigningCertURL {url[:200]!r} is not https on an amazonaws.com SNS host")
        fields = _SNS_FIELDS[msg["Type"]]
        text = "".join(f"{k}\n{msg[k]}\n" for k in fields if k in msg and (k != "Subject" or msg[k] is not None))
        try:
            signature = base64.b64decode(str(msg.get("Signature", "")), validate=True)
        except binascii.Error:
            raise Rejected(401, "the SNS signature is not base64") from None
        key = self._certificate(url)
        try:
            key.verify(signature, text.encode("utf-8"), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise Rejected(401, "the SNS signature does not verify") from None

    def _certificate(self, url: str):
        if url not in self._certs:
            try:
                cert = x509.load_pem_x509_certificate(self.fetch(url))
            except (httpx.HTTPError, ValueError) as exc:
                raise Rejected(401, f"cannot get the SNS signing certificate ({type(exc).__name__})") from None
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise Rejected(401, "the SNS signing certificate has no RSA key")
            self._certs[url] = key
        return self._certs[url]

    def _reports(self, msg: dict) -> list[Feedback]:
        body = _json(str(msg.get("Message", "")).encode("utf-8"))
        if not isinstance(body, dict):
            raise Rejected(400, "the SNS Message is not an SES notification")
        kind = body.get("notificationType") or body.get("eventType")
        mail = body.get("mail") or {}
        edition = edition_from_message_id(str((mail.get("commonHeaders") or {}).get("messageId", "")))
        source = f"ses:{msg.get('MessageId')}"
        if kind == "Bounce":
            b = body.get("bounce") or {}
            report = "hard-bounce" if b.get("bounceType") == "Permanent" else "soft-bounce"
            return [Feedback(source, _email(r.get("emailAddress")), report, edition,
                             " ".join(str(x) for x in (b.get("bounceType"), b.get("bounceSubType"), r.get("status"),
                                                       r.get("diagnosticCode")) if x)[:300])
                    for r in b.get("bouncedRecipients") or []]
        if kind == "Complaint":
            c = body.get("complaint") or {}
            detail = f"complaint ({c.get('complaintFeedbackType') or 'abuse'})"
            return [Feedback(source, _email(r.get("emailAddress")), "complaint", edition, detail)
                    for r in c.get("complainedRecipients") or []]
        return []  # deliveries, opens, ...: nothing to act on


# -- Postmark ----------------------------------------------------------------------------------------------


_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "Blocked", "ManuallyDeactivated", "Unknown"}


class Postmark:
    """Postmark's Bounce, SpamComplaint and SubscriptionChange webhooks, behind Basic auth."""

    name = "postmark"

    def __init__(self, password: str):
        self.password = password

    def handle(self, req: WebhookRequest, now: datetime) -> list[Feedback]:
        _check_password(_basic_password(req.headers), self.password)
        e = _json(req.body)
        if not isinstance(e, dict):
            raise Rejected(400, "not a Postmark event")
        record = e.get("RecordType")
        source = f"postmark:{record}:{e.get('ID') or e.get('MessageID')}"
        edition = edition_from_message_id(str((e.get("Metadata") or {}).get("message-id", "")))
        if record == "Bounce":
            kind = "complaint" if e.get("Type") == "SpamComplaint" else \
                "hard-bounce" if e.get("Type") in _POSTMARK_HARD else "soft-bounce"
            return [Feedback(source, _email(e.get("Email")), kind, edition, f"{e.get('Type')}: {e.get('Description', '')}"[:300])]
        if record == "SpamComplaint":
            return [Feedback(source, _email(e.get("Email")), "complaint", edition, "spam complaint")]
        if record == "SubscriptionChange" and e.get("SuppressSending"):
            return [Feedback(source, _email(e.get("Recipient")), "unsubscribed", edition, str(e.get("SuppressionReason", ""))[:300])]
        return []


# -- SendGrid ----------------------------------------------------------------------------------------------


class SendGrid:
    """SendGrid's Signed Event Webhook: an ECDSA signature over the timestamp header and the raw body."""

    name = "sendgrid"
    SIGNATURE = "x-twilio-email-event-webhook-signature"
    TIMESTAMP = "x-twilio-email-event-webhook-timestamp"

    def __init__(self, public_key: str):
        try:
            key = serialization.load_der_public_key(base64.b64decode(public_key, validate=True))
        except (binascii.Error, ValueError):
            key = None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("[webhooks].sendgrid_public_key is not the base64 ECDSA public key SendGrid shows")
        self.key = key

    def handle(self, req: WebhookRequest, now: datetime) -> list[Feedback]:
        stamp = req.headers.get(self.TIMESTAMP, "")
        try:
            signature = base64.b64decode(req.headers.get(self.SIGNATURE, ""), validate=True)
            self.key.verify(signature, stamp.encode("ascii") + req.body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, UnicodeEncodeError, InvalidSignature, ValueError):
            raise Rejected(401, "the SendGrid signature does not verify") from None
        try:
            when = datetime.fromtimestamp(int(stamp), timezone.utc)
        except (ValueError, OverflowError):
            raise Rejected(401, "the SendGrid timestamp is not a number") from None
        if abs(now - when) > SENDGRID_WINDOW:
            raise Rejected(401, f"the SendGrid timestamp is {abs(now - when)} away from now: a replay")
        events = _json(req.body)
        if not isinstance(events, list):
            raise Rejected(400, "not a list of SendGrid events")
        out = []
        for e in events:
            if not isinstance(e, dict):
                raise Rejected(400, "a SendGrid event is not an object")
            kind = {"spamreport": "complaint", "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed",
                    "dropped": None}.get(e.get("event"), None)
            if e.get("event") == "bounce":
                kind = "soft-bounce" if e.get("type") == "blocked" else "hard-bounce"
            if kind is None:
                continue
            out.append(Feedback(f"sendgrid:{e.get('sg_event_id')}", _email(e.get("email")), kind,
                                edition_from_message_id(str(e.get("smtp-id", ""))), str(e.get("reason", ""))[:300] or None))
        return out


# -- Brevo -------------------------------------------------------------------------------------------------


class Brevo:
    """Brevo's transactional webhooks (hard_bounce, soft_bounce, spam, unsubscribed), with a bearer token."""

    name = "brevo"
    KINDS = {"hard_bounce": "hard-bounce", "soft_bounce": "soft-bounce", "spam": "complaint", "unsubscribed": "unsubscribed",
             "invalid_email": "hard-bounce"}

    def __init__(self, token: str):
        self.token = token

    def handle(self, req: WebhookRequest, now: datetime) -> list[Feedback]:
        auth = req.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else _basic_password(req.headers)
        _check_password(given, self.token)
        body = _json(req.body)
        events = body if isinstance(body, list) else [body]
        out = []
        for e in events:
            if not isinstance(e, dict):
                raise Rejected(400, "not a Brevo event")
            kind = self.KINDS.get(str(e.get("event")))
            if kind:
                mid = str(e.get("message-id", ""))
                out.append(Feedback(f"brevo:{e.get('id')}:{mid}:{e.get('event')}", _email(e.get("email")), kind,
                                    edition_from_message_id(mid), str(e.get("reason", ""))[:300] or None))
        return out


# -- Mailjet -----------------------------------------------------------------------------------------------


class Mailjet:
    """Mailjet's event API (bounce, blocked, spam, unsub), one event or a batch, behind Basic auth."""

    name = "mailjet"

    def __init__(self, password: str):
        self.password = password

    def handle(self, req: WebhookRequest, now: datetime) -> list[Feedback]:
        _check_password(_basic_password(req.headers), self.password)
        body = _json(req.body)
        events = body if isinstance(body, list) else [body]
        out = []
        for e in events:
            if not isinstance(e, dict):
                raise Rejected(400, "not a Mailjet event")
            event = e.get("event")
            if event == "bounce":
                kind = "hard-bounce" if e.get("hard_bounce") else "soft-bounce"
            else:
                kind = {"spam": "complaint", "unsub": "unsubscribed"}.get(str(event))
            if kind:
                detail = " ".join(str(e.get(k)) for k in ("error_related_to", "error") if e.get(k))[:300] or None
                out.append(Feedback(f"mailjet:{e.get('MessageID')}:{event}:{e.get('time')}", _email(e.get("email")), kind,
                                    edition_from_message_id(str(e.get("CustomID", ""))), detail))
        return out


# -- which are on ------------------------------------------------------------------------------------------


SECRETS = {"postmark": "PUBLISHER_POSTMARK_WEBHOOK_PASSWORD", "brevo": "PUBLISHER_BREVO_WEBHOOK_TOKEN",
           "mailjet": "PUBLISHER_MAILJET_WEBHOOK_PASSWORD"}


def providers(settings: Settings, *, ses_url_allowed: Callable[[str], bool] = amazon_url,
              ses_fetch: Callable[[str], bytes] = fetch_url) -> dict[str, Any]:
    """The providers configured in settings.toml and the environment (the others answer 404)."""
    w = settings.webhooks
    out: dict[str, Any] = {}
    if w.sns_topic_arns:
        out["ses"] = Ses(tuple(w.sns_topic_arns), url_allowed=ses_url_allowed, fetch=ses_fetch)
    if w.sendgrid_public_key:
        try:
            out["sendgrid"] = SendGrid(w.sendgrid_public_key)
        except ValueError as exc:
            raise ConfigError(f"{settings.source}: {exc}", hint="copy the verification key from SendGrid's Mail Settings,"
                              " Signed Event Webhook") from None
    for name, cls in (("postmark", Postmark), ("brevo", Brevo), ("mailjet", Mailjet)):
        value = secret(SECRETS[name])
        if value:
            out[name] = cls(value)
    return out
