"""Administering the HTTP service of a real ``hato serve``: ``hato web passwd`` and ``hato web
token`` reach a running server, ``web.admin_password_file`` sets the first password, HTTPS
serves the SMTP certificate (``web.tls``), listening beyond loopback without TLS is warned
about, and a web port in use stops the start with a message, not a traceback."""

from __future__ import annotations

import hashlib
import json
import re
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import HatoProcess

PASSWORD = "first-web-password"
# No delay after a wrong password, and enough tries that no test here gets banned.
OPTIONS = ("-o", "auth.failure_delay=0", "-o", "auth.max_failures=20")


def _password_file(tmp_path: Path, text: str | bytes, name: str = "admin-password") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _server(
    hato_factory: Callable[..., HatoProcess], password_file: Path, *options: str, name: str = "data"
) -> HatoProcess:
    extra = (*OPTIONS, "-o", f'web.admin_password_file="{password_file}"')
    return hato_factory(name=name, extra_args=extra + tuple(options))


def _login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    page = client.get("/login")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    form = {"username": name, "password": password, "csrf": found.group(1)}
    return client.post("/login", data=form)


def _cookies(response: httpx.Response) -> list[list[str]]:
    """Each Set-Cookie header of ``response`` as its lower-cased attributes."""
    return [
        [part.strip().lower() for part in header.split(";")]
        for header in response.headers.get_list("set-cookie")
    ]


def _logs_in(base: str, password: str, **client_options: object) -> bool:
    with httpx.Client(base_url=base, **client_options) as client:  # type: ignore[arg-type]
        response = _login(client, "admin", password)
        assert response.status_code in (303, 401), response.text
        if response.status_code != 303:
            return False
        return bool(client.get("/api/v1/whoami").json()["name"] == "admin")


def _failed_start(process: HatoProcess) -> str:
    """Start a server that must refuse to start; its output, checked for a clear message."""
    with pytest.raises(AssertionError, match="before listening"):
        process.start()
    assert process.returncode == 1, process.stderr()
    output = process.stderr()
    assert "Traceback" not in output, output
    assert "hato: cannot start: " in output, output
    return output


# -- console users and tokens ---------------------------------------------------------------


def test_admin_password_file_sets_the_first_password(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    server = _server(hato_factory, _password_file(tmp_path, PASSWORD + "\nignored\n"))
    server.start()
    base = f"http://127.0.0.1:{server.web_port}"
    assert _logs_in(base, PASSWORD)
    assert not _logs_in(base, "ignored")
    assert not _logs_in(base, PASSWORD + "\nignored")
    # No random password was made and printed.
    assert "log in as admin with the password" not in server.stderr()


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "the first line is empty"),
        ("\nsecond line\n", "the first line is empty"),
        (None, "No such file"),
        (b"\xff\xfe not utf-8\n", "UTF-8"),
    ],
    ids=["empty", "empty-first-line", "missing", "not-utf-8"],
)
def test_unusable_admin_password_file_is_a_clear_start_error(
    hato_factory: Callable[..., HatoProcess],
    tmp_path: Path,
    content: str | bytes | None,
    expected: str,
) -> None:
    missing = tmp_path / "no-such-file"
    path = missing if content is None else _password_file(tmp_path, content)
    output = _failed_start(_server(hato_factory, path))
    assert "web.admin_password_file" in output, output
    assert str(path) in output, output
    assert expected in output, output


def test_passwd_changes_the_password_of_a_running_server(
    hato_factory: Callable[..., HatoProcess],
    hato_cli: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    server = _server(hato_factory, _password_file(tmp_path, PASSWORD))
    server.start()
    base = f"http://127.0.0.1:{server.web_port}"

    def passwd(stdin: str) -> subprocess.CompletedProcess[str]:
        args = ("web", "passwd", "admin", "--password-stdin", "--data-dir", server.data_dir)
        return hato_cli(*args, stdin=stdin)

    assert _logs_in(base, PASSWORD)
    with httpx.Client(base_url=base) as kept:
        assert _login(kept, "admin", PASSWORD).status_code == 303

        changed = passwd(stdin="second one\n")
        assert changed.returncode == 0, changed.stderr
        assert "changed the web password of admin" in changed.stdout

        assert not _logs_in(base, PASSWORD)
        assert _logs_in(base, "second one")
        # A password changes future logins; a session already open stays open.
        assert kept.get("/api/v1/whoami").status_code == 200
    assert server.running
    assert len(server.events("server_started")) == 1  # no restart

    empty = passwd(stdin="")
    assert empty.returncode == 2
    assert "standard input is empty" in empty.stderr
    assert _logs_in(base, "second one")


def _token(server: HatoProcess, name: str, *options: str) -> str:
    made = server.cli("web", "token", "add", name, *options)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("hato_"), made.stdout
    return secret


def test_token_list_shows_names_and_roles_and_remove_revokes(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    server = _server(hato_factory, _password_file(tmp_path, PASSWORD))
    server.start()
    base = f"http://127.0.0.1:{server.web_port}"
    writer = _token(server, "deploy")
    reader = _token(server, "grafana", "--read-only")

    listed = server.cli("web", "token", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["deploy", "admin"], ["grafana", "read-only"]]
    as_json = server.cli("web", "token", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["name"], r["role"]) for r in rows] == [("deploy", "admin"), ("grafana", "read-only")]
    assert all(set(r) == {"name", "role", "created"} for r in rows), rows
    for output in (listed.stdout + listed.stderr, as_json.stdout + as_json.stderr):
        for secret in (writer, reader):
            assert secret not in output
            assert secret.removeprefix("hato_") not in output
            assert hashlib.sha256(secret.encode()).hexdigest() not in output
        assert "hato_" not in output

    def status(secret: str) -> int:
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.get(f"{base}/api/v1/whoami", headers=headers).status_code

    assert status(writer) == 200
    assert status(reader) == 200
    removed = server.cli("web", "token", "remove", "deploy")
    assert removed.returncode == 0, removed.stderr
    assert status(writer) == 401
    assert status(reader) == 200  # only the named token is revoked
    after = json.loads(server.cli("web", "token", "list", "--json").stdout)
    assert [r["name"] for r in after] == ["grafana"]

    again = server.cli("web", "token", "remove", "deploy")
    assert again.returncode == 1
    assert "no token named 'deploy'" in again.stderr
    assert "Traceback" not in again.stderr
    assert server.running


# -- TLS and where the service listens ------------------------------------------------------


def _unverified() -> ssl.SSLContext:
    """The server's certificate is self-signed (made at the first start)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _https_certificate(port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        _unverified().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
    assert certificate
    return certificate


def _starttls_certificate(port: int) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, _ = client.starttls(context=_unverified())
        assert code == 220
        assert isinstance(client.sock, ssl.SSLSocket)
        certificate = client.sock.getpeercert(binary_form=True)
    assert certificate
    return certificate


def test_web_tls_serves_the_smtp_certificate_and_secure_cookies(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    # Beyond loopback, but encrypted: no warning (the test only connects to 127.0.0.1).
    server = _server(
        hato_factory,
        _password_file(tmp_path, PASSWORD),
        "-o",
        "web.tls=true",
        "-o",
        'web.listen=["0.0.0.0:0"]',
    )
    server.start()
    web = hashlib.sha256(_https_certificate(server.web_port)).hexdigest()
    smtp = hashlib.sha256(_starttls_certificate(server.port)).hexdigest()
    assert web == smtp

    base = f"https://127.0.0.1:{server.web_port}"
    with httpx.Client(base_url=base, verify=_unverified()) as client:
        cookies = _cookies(client.get("/login"))
        logged = _login(client, "admin", PASSWORD)
        assert logged.status_code == 303, logged.text
        cookies += _cookies(logged)
        session = [c for c in cookies if c[0].startswith("hato_session=")]
        assert len(session) == 1, cookies
        assert {"httponly", "samesite=strict"} <= set(session[0])
        who = client.get("/api/v1/whoami").json()
        assert who["name"] == "admin"
        out = client.post("/logout", data={"csrf": who["csrf"]})
        assert out.status_code == 303, out.text
        cookies += _cookies(out)
        assert client.get("/api/v1/whoami").status_code == 401
    # Every cookie set or ended over HTTPS, the login form's and the session's, is Secure.
    assert {c[0].partition("=")[0] for c in cookies} == {"hato_login_csrf", "hato_session"}
    assert all("secure" in cookie for cookie in cookies), cookies
    # Plain HTTP on the HTTPS port gets no page.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.web_port}/login", timeout=5)

    (started,) = server.events("web_started")
    assert started["urls"] == [f"https://0.0.0.0:{server.web_port}/"]
    assert server.events("web_unencrypted") == []


def test_plain_http_has_no_secure_cookies(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    server = _server(hato_factory, _password_file(tmp_path, PASSWORD))
    server.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}") as client:
        logged = _login(client, "admin", PASSWORD)
        assert logged.status_code == 303
        cookies = _cookies(logged)
        assert cookies
        assert all("secure" not in cookie for cookie in cookies), cookies
    # On loopback only: nothing to warn about.
    assert server.events("web_unencrypted") == []


def test_beyond_loopback_without_tls_is_warned_about(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    server = _server(
        hato_factory, _password_file(tmp_path, PASSWORD), "-o", 'web.listen=["0.0.0.0:0"]'
    )
    server.start()
    warning = server.wait_for_event("web_unencrypted")
    assert warning["listen"] == ["0.0.0.0:0"]
    assert "hato warning: the web console listens beyond loopback on 0.0.0.0:0 without TLS" in (
        server.stderr()
    )
    (started,) = server.events("web_started")
    assert started["urls"] == [f"http://0.0.0.0:{server.web_port}/"]
    assert _logs_in(f"http://127.0.0.1:{server.web_port}", PASSWORD)


def test_a_web_port_in_use_stops_the_start(
    hato_factory: Callable[..., HatoProcess], tmp_path: Path
) -> None:
    first = _server(hato_factory, _password_file(tmp_path, PASSWORD), name="first")
    first.start()
    taken = f"127.0.0.1:{first.web_port}"
    second = _server(
        hato_factory,
        _password_file(tmp_path, PASSWORD),
        "-o",
        f'web.listen=["{taken}"]',
        name="second",
    )
    output = _failed_start(second)
    assert f"web.listen {taken}: Address already in use" in output, output
    assert second.events("server_started") == []
    # The failed start let go of its SMTP ports and data directory: it starts without web.
    second.extra_args = (*second.extra_args, "-o", "web.listen=[]")
    second.start()
    assert second.events("web_started") == []
    # And the first server was not disturbed.
    assert _logs_in(f"http://127.0.0.1:{first.web_port}", PASSWORD)
