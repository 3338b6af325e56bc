"""The email channel: the frozen edition to every subscriber of the campaign, exactly once, through the ledger.

Its settings are the top-level [email] table (EmailSettings) and the relay is [smtp]. Who gets the
edition: every subscriber on the campaign's list or on any of its series, once, minus the suppression
list. With `[publisher] delivery = "outbox"` each message is written as an .eml file instead, under
ledger channel "outbox:email", so a dry run never counts as a real send.

A live send, in one process holding the edition's lease:
1. settle rows a dead process left in `sending` (wire journal: sent / unknown / back to planned);
2. plan rows for new recipients, drop planned rows of addresses suppressed since;
3. claim batches of due rows, hand them to the pool (one thread drives every SMTP connection),
   record outcomes in batches; 4xx go back to `planned` with a backoff, and the run waits for them up to
   [smtp].retry_wait seconds before leaving them pending for the next run.

    channel.py   EmailChannel: planning, the live run, the outbox form
    proof.py     `send --to` test copies: one message, its own connection, no ledger row
    message.py   the MIME bytes, built once per edition; personal tokens filled in per recipient
    pool.py      every SMTP connection driven by one thread (selectors), pipelined when the relay offers it
    session.py   one connection of the pool as a non-blocking socket: bytes to write, replies awaited
    smtp.py      opening a connection: connect, STARTTLS, login; replies classified
    security.py  TLS context and the password, never in a message
    journal.py   the wire journal that settles rows a dead process left in `sending`; the disk-full reserve
"""

from publisher.channels import ChannelSpec
from publisher.config import EmailSettings

# The factory is named, not imported: the registry is loaded by every command (to read settings.toml),
# and only a send needs the SMTP machinery (smtplib, ssl, selectors, MIME building) behind it.
SPEC = ChannelSpec(name="email", kind="email", settings_cls=EmailSettings, factory="publisher.channels.email.channel:make")
