"""`publisher bounces`: read the bounce mailbox once, suppress who it says, print what it found."""

from __future__ import annotations

from publisher.app import Context
from publisher.errors import ConfigError
from publisher.feedback.mailbox import process
from publisher.feedback.tokens import signers_from_env

LISTED = 20  # suppressed addresses printed before "and N more"


def command_bounces(ctx: Context, args) -> int:
    """One pass over [bounces].folder; exit 0 (what was left in place is counted in the line)."""
    s = ctx.settings.bounces
    if not s.host:
        raise ConfigError(f"{ctx.settings.source}: [bounces].host is not set, so there is no bounce mailbox to read",
                          hint="add a [bounces] table with host, username (and $PUBLISHER_BOUNCES_PASSWORD); see README"
                               " 'Deliverability'")
    tokens, web = signers_from_env(required=True)
    with ctx.progress.task(f"bounces {s.host}/{s.folder}") as task:
        report = process(ctx.store, s, ctx.now, tokens, web, advance=task.advance)
    print(report.line(s.folder, s.processed_folder))
    for email, reason in report.suppressed[:LISTED]:
        print(f"  suppressed {email} ({reason})")
    if len(report.suppressed) > LISTED:
        print(f"  and {len(report.suppressed) - LISTED} more (see 'publisher subscribers count')")
    return 0
