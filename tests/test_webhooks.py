"""ESP webhooks over real HTTP: a Starlette app with publisher/web/webhooks.py's routes under uvicorn on 127.0.0.1.

(The application factory of `publisher serve` comes with the audience issue; until then these routes
are mounted in a small Starlette app here.) Every provider is called as it calls us: SNS messages
signed with a key whose certificate a local HTTP server serves, SendGrid's ECDSA signature, Basic
auth and bearer tokens. A call that is not authenticated, or not well formed, changes nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import logging
import threading
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from support.asgi_server import AsgiServer

from publisher.config import read_settings
from publisher.feedback.webhooks import amazon_url, providers
from publisher.store.db import Store
from publisher.store.feedback import counts_for_edition
from publisher.web.webhooks import routes

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
MID = "<endurance.2026-W47.0123456789abcdef01234567@endurance-info.com>"  # one of our Message-IDs


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves the SNS signing certificate and records every GET (subscription confirmations too)."""

    files: dict[str, bytes] = {}
    seen: list[str] = []

    def do_GET(self):
        self.seen.append(self.path)
        data = self.files.get(self.path.split("?")[0])
        self.send_response(200 if data else 404)
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def files():
    _Files.files, _Files.seen = {}, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _rsa_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.eu-west-1.amazonaws.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _sns(key, cert_url: str, message: dict | str, kind: str = "Notification", mid: str = "sns-1", **extra) -> dict:
    """An SNS message signed as SNS signs (SignatureVersion 2: SHA256withRSA over the canonical fields)."""
    msg = {"Type": kind, "MessageId": mid, "TopicArn": TOPIC, "Timestamp": "2026-11-24T08:59:00.000Z",
           "Message": message if isinstance(message, str) else json.dumps(message), "SignatureVersion": "2",
           "SigningCertURL": cert_url, **extra}
    fields = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")}.get(
        kind, ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"))
    text = "".join(f"{k}\n{msg[k]}\n" for k in fields if k in msg)
    msg["Signature"] = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return msg


SES_BOUNCE = {"notificationType": "Bounce",
              "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                         "bouncedRecipients": [{"emailAddress": "gone@example.org", "status": "5.1.1",
                                                "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
              "mail": {"messageId": "0102018c-ses", "commonHeaders": {"messageId": MID}}}


@pytest.fixture
def site(tmp_path, monkeypatch):
    """settings.toml with every provider configured, its store, and a function to serve the routes."""
    sg_key = ec.generate_private_key(ec.SECP256R1())
    der = sg_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "settings.toml").write_text(f'[webhooks]\nsns_topic_arns = ["{TOPIC}"]\n'
                                            f'sendgrid_public_key = "{base64.b64encode(der).decode()}"\n', encoding="utf-8")
    monkeypatch.setenv("PUBLISHER_POSTMARK_WEBHOOK_PASSWORD", "pm-secret-123")
    monkeypatch.setenv("PUBLISHER_BREVO_WEBHOOK_TOKEN", "brevo-token-456")
    monkeypatch.setenv("PUBLISHER_MAILJET_WEBHOOK_PASSWORD", "mj-secret-789")
    settings = read_settings(tmp_path / "settings.toml", {})
    store = Store(tmp_path / "store.sqlite3")

    def serve(**seams):
        app = Starlette(routes=routes(store, providers(settings, **seams), lambda: NOW, soft_limit=2))
        return AsgiServer(app)

    yield settings, store, serve, sg_key
    store.close()


def _suppressed(store: Store) -> dict[str, str]:
    return {r[0]: r[1] for r in store.conn.execute("SELECT email, reason FROM suppression")}


def _local(base: str):
    return lambda url: url.startswith(base + "/")


def test_ses_through_sns_with_a_verified_signature_suppresses_and_a_bad_one_changes_nothing(site, files, caplog):
    _, store, serve, _ = site
    srv, base = files
    key, pem = _rsa_certificate()
    _Files.files["/cert.pem"] = pem
    good = _sns(key, base + "/cert.pem", SES_BOUNCE)
    with serve(ses_url_allowed=_local(base)) as web, caplog.at_level(logging.INFO, "publisher"):
        tampered = dict(good, Message=good["Message"].replace("gone@example.org", "victim@example.org"))
        r = httpx.post(web.url + "/webhooks/ses", content=json.dumps(tampered))
        assert r.status_code == 401
        assert _suppressed(store) == {}
        assert "ses call from 127.0.0.1 rejected (401): the SNS signature does not verify" in caplog.text
        other_key, _ = _rsa_certificate()  # signed by someone else's key
        r = httpx.post(web.url + "/webhooks/ses", content=json.dumps(_sns(other_key, base + "/cert.pem", SES_BOUNCE)))
        assert r.status_code == 401 and _suppressed(store) == {}
        r = httpx.post(web.url + "/webhooks/ses", content=json.dumps(good))
        assert r.status_code == 200, r.text
        assert _suppressed(store) == {"gone@example.org": "hard-bounce"}
        assert counts_for_edition(store, "endurance/2026-W47")["hard-bounce"] == 1  # the edition, from our Message-ID
        # a topic we never subscribed to, even correctly signed, is refused
        r = httpx.post(web.url + "/webhooks/ses", content=json.dumps(_sns(key, base + "/cert.pem", SES_BOUNCE, mid="sns-3",
                                                                           TopicArn="arn:aws:sns:eu-west-1:999999999999:t")))
        assert r.status_code == 401
        complaint = {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.org"}],
                                                                    "complaintFeedbackType": "abuse"},
                     "mail": {"commonHeaders": {"messageId": MID}}}
        r = httpx.post(web.url + "/webhooks/ses", content=json.dumps(_sns(key, base + "/cert.pem", complaint, mid="sns-4")))
        assert r.status_code == 200
        assert _suppressed(store) == {"gone@example.org": "hard-bounce", "angry@example.org": "complaint"}


def test_ses_subscription_is_confirmed_after_its_signature_verifies(site, files):
    _, store, serve, _ = site
    srv, base = files
    key, pem = _rsa_certificate()
    _Files.files["/cert.pem"] = pem
    _Files.files["/confirm"] = b"<ConfirmSubscriptionResponse/>"
    msg = _sns(key, base + "/cert.pem", "You have chosen to subscribe", kind="SubscriptionConfirmation",
               SubscribeURL=base + "/confirm?Token=abc", Token="abc")
    with serve(ses_url_allowed=_local(base)) as web:
        bad = dict(msg, SubscribeURL=base + "/confirm?Token=other")
        assert httpx.post(web.url + "/webhooks/ses", content=json.dumps(bad)).status_code == 401
        assert "/confirm?Token=other" not in _Files.seen
        assert httpx.post(web.url + "/webhooks/ses", content=json.dumps(msg)).status_code == 200
    assert "/confirm?Token=abc" in _Files.seen


def test_production_ses_refuses_certificates_that_are_not_https_on_amazonaws(site, files):
    _, store, serve, _ = site
    srv, base = files
    key, pem = _rsa_certificate()
    _Files.files["/cert.pem"] = pem
    with serve() as web:  # no seam: the production rules
        r = httpx.post(web.url + "/webhooks/ses", content=json.dumps(_sns(key, base + "/cert.pem", SES_BOUNCE)))
        assert r.status_code == 401
    assert _Files.seen == []  # the certificate was never even fetched
    assert _suppressed(store) == {}
    assert amazon_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert amazon_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem")
    for url in ("http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.test/x.pem",
                "https://evil.test/sns.eu-west-1.amazonaws.com/x.pem", "https://s3.amazonaws.com/x.pem",
                "https://user@sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
                "https://127.0.0.1/x.pem", "ftp://sns.eu-west-1.amazonaws.com/x.pem"):
        assert not amazon_url(url), url


def _basic(password: str, user: str = "publisher") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_postmark_brevo_and_mailjet_need_their_credentials(site, caplog):
    _, store, serve, _ = site
    pm = {"RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "Email": "pm@example.org", "Description": "gone"}
    brevo = {"event": "spam", "email": "br@example.org", "id": 7, "message-id": MID}
    mailjet = [{"event": "bounce", "hard_bounce": False, "email": "mj@example.org", "MessageID": 1, "time": 1},
               {"event": "unsub", "email": "mj2@example.org", "MessageID": 2, "time": 2}]
    with serve() as web, caplog.at_level(logging.INFO, "publisher"):
        for path, body, bad in (("postmark", pm, _basic("guess-pw-1")), ("brevo", brevo, {"Authorization": "Bearer guess-pw-1"}),
                                ("mailjet", mailjet, {})):
            r = httpx.post(f"{web.url}/webhooks/{path}", json=body, headers=bad)
            assert r.status_code == 401, path
        assert _suppressed(store) == {}
        assert caplog.text.count("rejected (401): wrong or missing credentials") == 3
        assert "pm-secret-123" not in caplog.text and "guess-pw-1" not in caplog.text
        assert httpx.post(web.url + "/webhooks/postmark", json=pm, headers=_basic("pm-secret-123")).status_code == 200
        assert httpx.post(web.url + "/webhooks/brevo", json=brevo, headers={"Authorization": "Bearer brevo-token-456"}).status_code == 200
        assert httpx.post(web.url + "/webhooks/mailjet", json=mailjet, headers=_basic("mj-secret-789")).status_code == 200
        # well authenticated but malformed: 400, nothing changes
        r = httpx.post(web.url + "/webhooks/postmark", content=b"{not json", headers=_basic("pm-secret-123"))
        assert r.status_code == 400
        assert httpx.post(web.url + "/webhooks/nosuch", json={}).status_code == 404
    assert _suppressed(store) == {"pm@example.org": "hard-bounce", "br@example.org": "complaint",
                                  "mj2@example.org": "unsubscribed"}  # mj: one soft bounce, under the limit of 2
    assert counts_for_edition(store, "endurance/2026-W47")["complaint"] == 1


def _sendgrid(key, events: list, stamp: int) -> tuple[bytes, dict]:
    body = json.dumps(events).encode()
    sig = key.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": str(stamp), "Content-Type": "application/json"}


def test_sendgrid_signed_event_webhook(site):
    _, store, serve, sg_key = site
    stamp = int(NOW.timestamp())
    events = [{"event": "bounce", "type": "bounce", "email": "sg@example.org", "sg_event_id": "e1", "smtp-id": MID,
               "reason": "550 5.1.1 unknown"},
              {"event": "bounce", "type": "blocked", "email": "soft@example.org", "sg_event_id": "e2"},
              {"event": "bounce", "type": "blocked", "email": "soft@example.org", "sg_event_id": "e3", "smtp-id":
               "<gt.2026-W47.0123456789abcdef01234567@endurance-info.com>"},
              {"event": "delivered", "email": "ok@example.org", "sg_event_id": "e4"}]
    body, headers = _sendgrid(sg_key, events, stamp)
    with serve() as web:
        forged = body.replace(b"sg@example.org", b"victim@example.org")
        assert httpx.post(web.url + "/webhooks/sendgrid", content=forged, headers=headers).status_code == 401
        other = ec.generate_private_key(ec.SECP256R1())
        assert httpx.post(web.url + "/webhooks/sendgrid", content=body, headers=_sendgrid(other, events, stamp)[1]).status_code == 401
        old_body, old = _sendgrid(sg_key, events, stamp - 3600)  # a genuine call replayed an hour later
        assert httpx.post(web.url + "/webhooks/sendgrid", content=old_body, headers=old).status_code == 401
        assert httpx.post(web.url + "/webhooks/sendgrid", content=body, headers={}).status_code == 401
        assert _suppressed(store) == {}
        assert httpx.post(web.url + "/webhooks/sendgrid", content=body, headers=headers).status_code == 200
        assert httpx.post(web.url + "/webhooks/sendgrid", content=body, headers=headers).status_code == 200  # a retry
    # soft@: two soft bounces in two editions reach the limit of 2; sg@ is a hard bounce; a retry counts nothing twice
    assert _suppressed(store) == {"sg@example.org": "hard-bounce", "soft@example.org": "hard-bounce"}
    assert counts_for_edition(store, "endurance/2026-W47") == {"hard-bounce": 1, "soft-bounce": 0, "complaint": 0,
                                                               "unsubscribed": 0}


def test_publisher_serve_answers_the_webhooks_with_their_own_body_limit(project):
    """The real `publisher serve`: an ESP batch larger than [web].max_body reaches the webhook and suppresses,
    while the public pages keep their small limit; credentials still come from the environment."""
    from support.email_project import ENV
    from support.web import serving

    env = {**ENV, "PUBLISHER_MAILJET_WEBHOOK_PASSWORD": "mj-secret-789"}
    batch = [{"event": "unsub", "email": f"lecteur{i:04d}@example.org", "MessageID": i, "time": i} for i in range(400)]
    body = json.dumps(batch).encode()
    assert 16_384 < len(body) < 1_000_000  # over the pages' default limit, under the webhooks'
    with serving(project, env=env) as (proc, unsubscribe_url):
        root = "{0.scheme}://{0.netloc}".format(urlsplit(unsubscribe_url))
        r = httpx.post(f"{root}/webhooks/mailjet", content=body, headers=_basic("mj-secret-789"), timeout=30)
        assert r.status_code == 200 and r.json() == {"reports": 400, "suppressed": 400}
        assert httpx.post(f"{root}/webhooks/mailjet", content=body, headers=_basic("wrong"), timeout=30).status_code == 401
        page = httpx.post(unsubscribe_url, content=b"t=" + b"x" * 20_000, timeout=30,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert page.status_code == 413
    store = Store(project.root / "var" / "publisher.sqlite3")
    try:
        got = _suppressed(store)
    finally:
        store.close()
    assert len(got) == 400 and set(got.values()) == {"unsubscribed"} and "lecteur0399@example.org" in got


def test_a_body_nested_too_deep_is_refused_as_malformed_before_any_signature_check(site, caplog):
    """An unauthenticated "[[[[…" to the SES route (parsed before its signature can be read): 400, nothing changes."""
    _, store, serve, _ = site
    with serve() as web, caplog.at_level(logging.INFO, "publisher"):
        for path in ("ses", "postmark"):
            r = httpx.post(f"{web.url}/webhooks/{path}", content=b"[" * 200_000,
                           headers={"Content-Type": "application/json", **_basic("pm-secret-123")})
            assert r.status_code == 400, (path, r.status_code)
    assert _suppressed(store) == {}
    assert "Traceback" not in caplog.text and "rejected (400): the body is not JSON" in caplog.text
