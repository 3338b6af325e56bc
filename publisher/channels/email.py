"""The email channel: the frozen edition to every subscriber of the campaign, through the ledger.

Its settings are the top-level [email] table (EmailSettings); the SMTP relay is [smtp].
"""

from __future__ import annotations

from publisher.channels import ChannelSpec, DispatchContext, DispatchReport
from publisher.config import EmailSettings, Settings
from publisher.errors import DeliveryError


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings, ctx: DispatchContext):
        self.settings, self.ctx = settings, ctx

    def dispatch(self, rendered, campaign) -> DispatchReport:
        raise DeliveryError("email: sending is not implemented yet")


def make(settings: Settings, email_settings: EmailSettings, ctx: DispatchContext) -> EmailChannel:
    """The channel object for one dispatch."""
    return EmailChannel(settings, ctx)


def send_test(settings, campaign, rendered, addresses, *, now) -> list[str]:
    """Send [TEST] copies to seed addresses, without subscribers or ledger rows."""
    raise DeliveryError("email: --to is not implemented yet")


SPEC = ChannelSpec(name="email", kind="email", settings_cls=EmailSettings, factory=make)
