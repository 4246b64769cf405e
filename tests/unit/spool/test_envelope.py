"""Envelope and Recipient: validation where they are built, and the JSON round trip."""

import json
from typing import Any

import pytest

from hato.spool import Envelope, Recipient


def full_envelope() -> Envelope:
    return Envelope(
        reverse_path="",
        recipients=(
            Recipient(address="b@example.net", notify=("FAILURE", "DELAY"), orcpt="rfc822;b@x"),
            Recipient(address="用户@例子.广告", notify=("NEVER",)),
            Recipient(address="c@example.net"),
        ),
        envid="QQ314159",
        ret="FULL",
        body="BINARYMIME",
        smtputf8=True,
        client_ip="198.51.100.7",
        client_name=None,
        helo="[198.51.100.7]",
        protocol="ESMTPS",
        tls="TLSv1.3 TLS_AES_128_GCM_SHA256",
        auth=None,
        arrival=1_700_000_123.456,
        session_id="sess-9",
    )


def test_round_trip_through_json() -> None:
    env = full_envelope()
    data = json.loads(json.dumps(env.to_dict()))
    assert Envelope.from_dict(data) == env
    assert data["recipients"][0] == {
        "address": "b@example.net",
        "notify": ["FAILURE", "DELAY"],
        "orcpt": "rfc822;b@x",
    }


def test_from_dict_fills_defaults() -> None:
    env = Envelope.from_dict({"reverse_path": "a@b", "recipients": [{"address": "c@d"}]})
    assert env == Envelope(reverse_path="a@b", recipients=(Recipient(address="c@d"),))
    assert Envelope.from_dict({**env.to_dict(), "arrival": 5}).arrival == 5.0


@pytest.mark.parametrize(
    "change",
    [
        {"recipients": []},
        {"ret": "ALL"},
        {"body": "8bit"},
        {"smtputf8": "yes"},
        {"arrival": True},
        {"reverse_path": None},
        {"color": "blue"},
        {"recipients": [{"address": "c@d", "notify": ["NEVER", "SUCCESS"]}]},
        {"recipients": [{"address": "c@d", "notify": ["success"]}]},
        {"recipients": [{"address": "c@d", "orcpt": "c@d"}]},
        {"recipients": [{"address": "c@d", "extra": 1}]},
        {"recipients": ["c@d"]},
    ],
)
def test_from_dict_rejects_bad_data(change: dict[str, Any]) -> None:
    data = {**full_envelope().to_dict(), **change}
    with pytest.raises(ValueError):
        Envelope.from_dict(data)


def test_missing_reverse_path_is_an_error() -> None:
    data = full_envelope().to_dict()
    del data["reverse_path"]
    with pytest.raises(ValueError, match="reverse_path"):
        Envelope.from_dict(data)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        Envelope(reverse_path="a@b", recipients=())
    with pytest.raises(ValueError):
        Recipient(address="c@d", notify=("NEVER", "DELAY"))
    assert Recipient(address="c@d", notify=("SUCCESS", "FAILURE", "DELAY")).notify
