"""Giving up root: bind as root, then run as ``server.user`` / ``server.group``.

The order is what makes it safe: every listening socket is bound first (ports below 1024
need root or CAP_NET_BIND_SERVICE), the data directory is made the user's, then the
supplementary groups, the group and last the user are set, so nothing can be taken back.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PrivilegeError", "RunAs", "drop_privileges", "own_data_dir", "run_as"]


class PrivilegeError(Exception):
    """server.user or server.group cannot be used; the text names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAs:
    user: str
    uid: int
    gid: int


def run_as(user: str, group: str) -> RunAs | None:
    """Who ``server.user``/``server.group`` name; None when no user is set, or when
    already running as that user (nothing to give up)."""
    if not user:
        if group:
            raise PrivilegeError("server.group: needs server.user as well")
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"server.user: no user {user!r} on this system") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"server.group: no group {group!r} on this system") from None
    if os.geteuid() == entry.pw_uid and os.getegid() == gid:
        return None
    if os.geteuid() != 0:
        raise PrivilegeError(
            f"server.user: only root can become {user!r} (running as uid {os.geteuid()})"
        )
    return RunAs(user=entry.pw_name, uid=entry.pw_uid, gid=gid)


def own_data_dir(data_dir: Path, who: RunAs) -> int:
    """Make the data directory and everything in it ``who``'s; how many were changed.

    Only what is not already theirs is changed, so a start after the first costs a walk.
    Symbolic links are changed themselves, never what they point to.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = _own(data_dir, who)
    for root, dirs, files in os.walk(data_dir):
        for name in (*dirs, *files):
            changed += _own(Path(root, name), who)
    return changed


def _own(path: Path, who: RunAs) -> int:
    info = path.lstat()
    if info.st_uid == who.uid and info.st_gid == who.gid:
        return 0
    os.chown(path, who.uid, who.gid, follow_symlinks=False)
    return 1


def drop_privileges(who: RunAs) -> None:
    """Groups, then group, then user; afterwards root cannot be regained."""
    os.initgroups(who.user, who.gid)
    os.setgid(who.gid)
    os.setuid(who.uid)
    if os.getuid() != who.uid or os.geteuid() != who.uid:
        raise PrivilegeError(f"server.user: still uid {os.geteuid()} after setuid({who.uid})")
    os.environ["HOME"] = pwd.getpwuid(who.uid).pw_dir
