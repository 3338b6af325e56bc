"""Hearing back from the mail system after a send: bounces, complaints, mailto unsubscribes.

    tokens.py     signed VERP return paths and mailto unsubscribe addresses (who, which edition)
    classify.py   one incoming message -> what it is (DSN hard/soft, ARF complaint, unsubscribe, auto-reply, unknown)
    mailbox.py    `publisher bounces`: read an IMAP mailbox, act, move what was understood to a folder
    webhooks.py   ESP webhooks (Amazon SES via SNS, Postmark, SendGrid, Brevo, Mailjet): authenticate and parse
    apply.py      reports -> the store (publisher/store/feedback.py): suppression and per-edition counts

Nothing here knows the web framework: publisher/web/webhooks.py is the thin HTTP layer over webhooks.py.
"""
