"""Old home of ``IMDNModel``; it now lives in :mod:`imdn_plugin.integration.model`."""
from .integration.model import IMDNModel  # noqa: F401
