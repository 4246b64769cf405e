"""The queue (layer 4): when each queued message is delivered, retried or given up on.

It reads and records delivery state through :class:`hato.spool.QueueState`, resolves
recipients with :mod:`hato.routing` and hands mailbox jobs to :mod:`hato.delivery`.
The SMTP server never imports it: the composition root passes ``QueueManager.notify``
to the server as the "message queued" callback.
"""

from ._manager import ADMIN_POLL, BATCH, QueueManager
from ._retry import RetryPolicy

__all__ = ["ADMIN_POLL", "BATCH", "QueueManager", "RetryPolicy"]
