"""The partner side of pushgrid: the SDK an app server embeds (`sdk.PartnerClient`), request
builders (`builders`), the session keeping and retry rule (`session`), and `pushgrid-partner`
(`cli`)."""

from tools.partner import builders
from tools.partner.sdk import PartnerClient, PartnerConfigError

__all__ = ["PartnerClient", "PartnerConfigError", "builders"]
