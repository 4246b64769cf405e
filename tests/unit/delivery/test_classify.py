"""Deferral classes: replies as real servers word them land in the class an operator acts on;
local failures (connect, TLS, DNS) by what failed; and the per-destination summary."""

from __future__ import annotations

import pytest

from hato.delivery import (
    EXPLANATIONS,
    LocalFailure,
    Reason,
    classify_local,
    classify_reply,
    destinations,
)
from hato.spool import Envelope, QueueEntry, Recipient, RecipientState

# (code, enhanced, text, class): the wording of real receivers.
REPLIES = [
    # Blocklists, by name, by phrase, by URL.
    (
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1",
        Reason.BLOCKLISTED,
    ),
    (
        554,
        None,
        "Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.1",
        Reason.BLOCKLISTED,
    ),
    (550, "5.7.1", "Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1", Reason.BLOCKLISTED),
    (
        421,
        "4.7.0",
        "[192.0.2.1] Our system has detected that your IP is listed at https://check.spamhaus.org/listed/?searchterm=192.0.2.1",
        Reason.BLOCKLISTED,
    ),
    (
        550,
        "5.7.1",
        "Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140).",  # noqa: E501
        Reason.BLOCKLISTED,
    ),
    (451, "4.7.1", "Your IP 192.0.2.1 is on our blacklist, try again later", Reason.BLOCKLISTED),
    # Rate limits and throttling.
    (
        421,
        "4.7.28",
        "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. - gsmtp",  # noqa: E501
        Reason.RATE_LIMITED,
    ),
    (
        421,
        "4.7.0",
        "Too many connections from your host, closing transmission channel",
        Reason.RATE_LIMITED,
    ),
    (
        451,
        "4.7.650",
        "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. (S3150)",  # noqa: E501
        Reason.RATE_LIMITED,
    ),
    (
        451,
        "4.7.500",
        "Server busy. Please try again later from [192.0.2.1]. (S77719)",
        Reason.RATE_LIMITED,
    ),
    (
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. Please resend your message at a later time. - gsmtp rate limit",  # noqa: E501
        Reason.RATE_LIMITED,
    ),
    (452, "4.5.3", "Your message has too many recipients; throttled", Reason.RATE_LIMITED),
    # Greylisting, by word, and "try again later" at 450/451 with 4.7.1 or 4.2.0 after RCPT.
    (
        451,
        "4.7.1",
        "<bob@example.net>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.net.html",
        Reason.GREYLISTED,
    ),
    (
        450,
        "4.2.0",
        "<bob@example.net>: Recipient address rejected: Greylisted for 5 minutes",
        Reason.GREYLISTED,
    ),
    (451, "4.7.1", "Greylisting in action, please come back later", Reason.GREYLISTED),
    (450, "4.7.1", "<bob@example.net>: Client host rejected: Try again later", Reason.GREYLISTED),
    (451, None, "Graylisted: please try again later", Reason.GREYLISTED),
    # Mailbox full.
    (
        452,
        "4.2.2",
        "The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",  # noqa: E501
        Reason.MAILBOX_FULL,
    ),
    (552, "5.2.2", "<bob@example.net>: mailbox full", Reason.MAILBOX_FULL),
    (552, None, "Requested mail action aborted: exceeded storage allocation", Reason.MAILBOX_FULL),
    (
        450,
        "4.2.0",
        "Mailbox is full / Blocks limit exceeded / Inode limit exceeded",
        Reason.MAILBOX_FULL,
    ),
    (550, "5.0.0", "quota exceeded for bob@example.net", Reason.MAILBOX_FULL),
    # TLS.
    (530, "5.7.0", "Must issue a STARTTLS command first", Reason.TLS),
    (454, "4.7.0", "TLS not available due to local problem", Reason.TLS),
    (550, "5.7.10", "Encryption required for requested action", Reason.TLS),
    # Policy: 4.7.1/5.7.1 and the other X.7.X without a more specific reading.
    (554, "5.7.1", "<unknown[192.0.2.1]>: Client host rejected: Access denied", Reason.POLICY),
    (450, "4.7.1", "<unknown[192.0.2.1]>: Client host rejected: Access denied", Reason.POLICY),
    (
        550,
        "5.7.26",
        "Unauthenticated email from example.org is not accepted due to domain's DMARC policy.",
        Reason.POLICY,
    ),
    (550, "5.7.1", "Relaying denied", Reason.POLICY),
    # Other.
    (451, "4.3.0", "Temporary local problem - please try later", Reason.OTHER),
    (
        550,
        "5.1.1",
        "<bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
        Reason.OTHER,
    ),
    (552, "5.3.4", "Message size exceeds fixed maximum message size", Reason.OTHER),
    (421, "4.3.2", "Service not available, closing transmission channel", Reason.OTHER),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "expected"), REPLIES)
def test_replies_of_real_servers_land_in_their_class(
    code: int, enhanced: str | None, text: str, expected: Reason
) -> None:
    assert classify_reply(code, enhanced, text) is expected


def test_a_reply_spread_over_lines_is_read_as_one_text() -> None:
    text = "Service unavailable; Client host [192.0.2.1] blocked\n using   zen.spamhaus.org"
    assert classify_reply(554, "5.7.1", text) is Reason.BLOCKLISTED


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (LocalFailure.CONNECT, Reason.CONNECTION),
        (LocalFailure.LOST, Reason.CONNECTION),
        (LocalFailure.TLS, Reason.TLS),
        (LocalFailure.DNS, Reason.DNS),
        (LocalFailure.PROTOCOL, Reason.OTHER),
        (LocalFailure.LOCAL, Reason.OTHER),
    ],
)
def test_local_failures_by_what_failed(failure: LocalFailure, expected: Reason) -> None:
    assert classify_local(failure) is expected


def test_every_class_has_plain_words_and_a_next_step() -> None:
    assert set(EXPLANATIONS) == set(Reason)
    for explanation in EXPLANATIONS.values():
        assert explanation.summary and explanation.meaning and explanation.next_step
        assert "\n" not in explanation.summary


def _entry(
    queue_id: str, arrival: float, *states: RecipientState, held: bool = False
) -> QueueEntry:
    envelope = Envelope(
        reverse_path="a@example.org",
        recipients=tuple(Recipient(address=s.address) for s in states),
        arrival=arrival,
    )
    return QueueEntry(queue_id=queue_id, envelope=envelope, size=10, held=held, recipients=states)


def _deferred(position: int, address: str, when: float, reason: str, **more: str) -> RecipientState:
    return RecipientState(
        position=position,
        address=address,
        state="deferred",
        attempts=1,
        last_attempt=when,
        status=more.get("status", "4.7.0"),
        detail=more.get("detail", f"said {reason}"),
        reason=reason,
        destination=more.get("destination"),
        remote_mta=more.get("mta"),
    )


def test_destinations_group_deferred_recipients_by_domain_with_the_latest_reason() -> None:
    entries = [
        _entry("A1", 100.0, _deferred(0, "x@outlook.test", 200.0, "rate-limited")),
        _entry(
            "A2",
            50.0,
            _deferred(0, "y@outlook.test", 300.0, "blocklisted", status="4.7.1", mta="mx.o"),
            _deferred(1, "z@other.test", 250.0, "greylisted"),
            held=True,
        ),
        # An alias's target: grouped by where the attempt went, not the queued address.
        _entry(
            "A3", 70.0, _deferred(0, "me@localhost", 260.0, "connection", destination="far.test")
        ),
        # Never tried, delivered or failed: not deferred mail.
        _entry("A4", 10.0, RecipientState(position=0, address="q@outlook.test", state="queued")),
    ]
    found = destinations(entries)
    assert [d.domain for d in found] == ["outlook.test", "far.test", "other.test"]
    outlook = found[0]
    assert (outlook.recipients, outlook.messages, outlook.held) == (2, 2, 1)
    assert outlook.oldest == 50.0 and outlook.last_attempt == 300.0
    assert outlook.reason is Reason.BLOCKLISTED and outlook.last_status == "4.7.1"
    assert outlook.reasons == {"blocklisted": 1, "rate-limited": 1}
    assert outlook.remote_mta == "mx.o"
    assert "outlook.test: 2 deferred since " in outlook.line()
    assert outlook.line().endswith("4.7.1: your address is listed on a blocklist")
    shown = outlook.to_dict()
    assert shown["reason"] == "blocklisted" and shown["next_step"] == outlook.next_step
    assert found[1].reason is Reason.CONNECTION


def test_a_recipient_without_a_stored_class_counts_as_other() -> None:
    old = RecipientState(position=0, address="x@d.test", state="deferred", last_attempt=1.0)
    (found,) = destinations([_entry("B1", 1.0, old)])
    assert found.reason is Reason.OTHER and found.last_reply == ""
