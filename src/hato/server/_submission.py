"""The submission rules (RFC 6409, RFC 8314): AUTH before MAIL, STARTTLS first where AUTH
waits for TLS, and ``auth.sender_login_match``: whoever authenticated, on any listener,
sends only as an address the user owns."""

from __future__ import annotations

from .. import policy, routing, smtp
from ..accounts import InvalidInput
from ..smtp import reply

__all__ = ["SubmissionRules"]

R_AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")
R_STARTTLS_FIRST = reply(530, "5.7.0", "Must issue a STARTTLS command first")  # RFC 3207 4


class SubmissionRules:
    def __init__(self, router: routing.LocalRouter, *, sender_login_match: str) -> None:
        self.router = router
        self.match = sender_login_match

    def mail(
        self, sender: str, *, user: str | None, starttls_first: bool
    ) -> policy.Decision | None:
        """MAIL on submission or after AUTH (RFC 6409 4.3, 6.1).

        ``user``: who authenticated (None: nobody); ``starttls_first``: AUTH is offered
        only inside TLS, which the client has not started, so asking for AUTH would send
        it nowhere.
        """
        if user is None:
            if starttls_first:
                return policy.Decision(reply=R_STARTTLS_FIRST, reason="submission before STARTTLS")
            return policy.Decision(
                reply=R_AUTH_REQUIRED, reason="submission without authentication"
            )
        if not self.owns(user, sender):
            text = f"<{sender}>: Sender address rejected: not owned by user {user}"
            reason = f"sender not owned by authenticated user {user}"
            return policy.Decision(reply=reply(553, "5.7.1", text), reason=reason)
        return None

    def owns(self, user: str, sender: str) -> bool:
        """auth.sender_login_match: may ``user`` send as ``sender``?"""
        match = self.match
        if match == "any" or not sender or sender.casefold() == user.casefold():
            return True  # the null sender (bounces) carries no one's identity
        router = self.router
        if match == "domain":
            return _same_domain(sender.rpartition("@")[2], user.rpartition("@")[2])
        try:
            login, found = router.lookup(user), router.lookup(sender)
        except InvalidInput:
            return False  # a sender no mailbox could have: nobody's
        if not isinstance(login, routing.Mailbox):
            return False
        if match == "owned" and isinstance(found, routing.AliasMatch) and found.is_catch_all:
            return False  # a catch-all receives for addresses; it does not hand them out
        owner = login.address.casefold()
        return any(m.address.casefold() == owner for m in router.expand(sender).mailboxes)


def _same_domain(a: str, b: str) -> bool:
    try:
        return smtp.domain_a_label(a) == smtp.domain_a_label(b)
    except smtp.AddressError:
        return False
