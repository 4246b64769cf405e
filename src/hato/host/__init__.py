"""Fitting onto the host (layer 5): systemd's notifications and socket activation, and
giving up root after binding.

What it promises: nothing here is needed to run Hato; each piece acts only when its
environment asks (``NOTIFY_SOCKET``, ``LISTEN_FDS``, ``server.user``), and a notification
that cannot be sent never stops the server.
"""

from ._activation import KINDS, ActivationError, inherited_sockets
from ._notify import Notifier
from ._privileges import PrivilegeError, RunAs, drop_privileges, own_data_dir, run_as

__all__ = [
    "KINDS",
    "ActivationError",
    "Notifier",
    "PrivilegeError",
    "RunAs",
    "drop_privileges",
    "inherited_sockets",
    "own_data_dir",
    "run_as",
]
