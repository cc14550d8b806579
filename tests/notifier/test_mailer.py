"""The bytes of a mail: the direct writer makes exactly what compat32's generator makes."""

from __future__ import annotations

import email
import email.policy
import re
import sys
import time
import unicodedata
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path

import pytest
from aiosmtplib.email import flatten_message
from jobplane_notifier import mailer as mailer_module
from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mail, Mailer
from jobplane_notifier.smtp import MailRefusedError, SendFailedError

from .smtp_server import Rules, smtp_server

NOW = datetime(2026, 11, 23, 13, 8, 7, tzinfo=UTC)


@pytest.fixture
def mailer(monkeypatch: pytest.MonkeyPatch) -> Mailer:
    monkeypatch.setattr(mailer_module, "utc_now", lambda: NOW)
    return Mailer(Settings(smtp_host="127.0.0.1", mail_from="Jobplane <noreply@example.com>"))


def mail(**changes: object) -> Mail:
    fields: dict[str, object] = {
        "to": "user@example.com",
        "subject": 'Your job "thumbnail" has finished',
        "text": 'Hello,\n\nyour job "thumbnail" (サムネイル) has finished.\n' * 5,
        "html": "<p>your job <strong>thumbnail</strong> &amp; more</p>\n" * 20,
        "message_id": "<jobplane.succeeded.0123456789abcdef@example.com>",
        "headers": {
            "X-Jobplane-Job-Id": "3a856c750a93438caf763f3e7f626d0e",
            "X-Jobplane-Outcome": "succeeded",
            "X-Jobplane-Trace-Id": "65324d34fb7b40d9b9fd072a8535b8e5",
        },
    }
    fields.update(changes)
    return Mail(**fields)  # type: ignore[arg-type]


def generated(mailer: Mailer, sent: Mail, data: bytes) -> bytes:
    """What the generator makes of build()'s message, with the boundary ``data`` chose."""
    message = mailer.build(sent)
    found = re.search(rb'boundary="([^"]+)"', data)
    assert found is not None
    message.set_boundary(found.group(1).decode())
    return flatten_message(message)


@pytest.mark.parametrize(
    "sent",
    [
        mail(),
        mail(text="", html=""),
        mail(text="x" * 57, html="y" * 58),  # base64 lines end exactly at the line length
        mail(subject="s" * 69),  # "Subject: " + 69 = 78 characters, the longest kept as is
        mail(subject="s" * 70),  # one word, too long: on a line of its own
        mail(message_id="<jobplane.succeeded.0123456789abcdef0123456789abcdef01234567@localhost>"),
    ],
    ids=["usual", "empty-bodies", "line-lengths", "longest-header", "long-word", "long-id"],
)
def test_the_direct_bytes_are_the_generators(
    mailer: Mailer, sent: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:  # the usual mail never needs the generator
        patched.setattr(mailer_module, "flatten_message", None)
        outgoing = mailer.encode(sent)
    assert outgoing.data == generated(mailer, sent, outgoing.data)
    assert (outgoing.sender, outgoing.recipient, outgoing.utf8) == (
        "noreply@example.com",
        "user@example.com",
        False,
    )


@pytest.mark.parametrize(
    "sent",
    [
        mail(subject="ジョブが終わりました"),  # an encoded word
        mail(subject="a long subject " * 6),  # folded by the generator
        mail(headers={"X-Jobplane-Job-Id": "a;b," + "c" * 80}),
        mail(headers={"X-Jobplane-Job-Id": "ü"}),
    ],
    ids=["non-ascii-subject", "long-header", "long-header-to-split", "non-ascii-header"],
)
def test_other_headers_go_through_the_generator(mailer: Mailer, sent: Mail) -> None:
    outgoing = mailer.encode(sent)
    assert outgoing.data == generated(mailer, sent, outgoing.data)
    parsed = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert str(parsed["Subject"]).split() == sent.subject.split()  # unfolded


def test_a_non_ascii_address_is_sent_with_smtputf8(mailer: Mailer) -> None:
    outgoing = mailer.encode(mail(to="ユーザー@example.com"))
    assert outgoing.utf8
    assert outgoing.recipient == "ユーザー@example.com"
    parsed = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert parsed["To"] == "ユーザー@example.com"


@pytest.mark.parametrize(
    "to",
    [
        "user@example.com",
        "first.last+tag@mail.example.co.jp",
        "Jobplane <noreply@example.com>",
        '"last, first" <first@example.com>',
        "user@localhost",  # no dot in the domain: parsed
        "a..b@example.com",
        ".a@example.com",
        "user@example.com.",
        "user(comment)@example.com",
        "ユーザー@example.com",
        "",
    ],
)
def test_the_address_is_what_parseaddr_reads(to: str) -> None:
    assert mailer_module.address_of(to) == parseaddr(to)[1]


def test_header_safe_keeps_exactly_the_printable_characters() -> None:
    """Its shortcut (``str.isprintable``) keeps a character only where its rule would: no
    Unicode "Other" or "Separator" but the space. Every character, one by one."""
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        unsafe = unicodedata.category(ch)[0] in "CZ" and ch != " "
        assert mailer_module.header_safe(ch) == (" " if unsafe else ch), hex(code)


@pytest.mark.parametrize("to", ["a@example.com\r\nBcc: b@example.com", "a@example.com, b@x.org"])
def test_an_address_no_header_can_carry_is_refused(mailer: Mailer, to: str) -> None:
    with pytest.raises(MailRefusedError):
        mailer.encode(mail(to=to))


async def test_a_mail_that_found_no_free_connection_in_time_was_not_sent() -> None:
    """More mails in hand than SMTP connections: one that waited out the SMTP timeout for a
    connection is known not to have reached the server, so it may be tried again at once."""
    few = Mailer(
        Settings(
            smtp_host="127.0.0.1",
            mail_from="Jobplane <noreply@example.com>",
            smtp_connections=1,
            smtp_timeout_seconds=0.2,
        )
    )
    async with few.pool.connection():  # the only connection is busy
        with pytest.raises(SendFailedError) as failed:
            await few.send(mail())
    assert not failed.value.maybe_delivered


async def test_a_server_that_stops_answering_fails_the_send_within_the_smtp_timeout(
    tmp_path: Path,
) -> None:
    """No command has a timer of its own: SMTP_TIMEOUT_SECONDS bounds the whole send, and the
    connection it left halfway is opened afresh for the next mail."""
    async with smtp_server(tmp_path / "mail", Rules(stall={"stuck@example.com"})) as smtp:
        mailer = Mailer(
            Settings(
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                mail_from="Jobplane <noreply@example.com>",
                smtp_connections=1,
                smtp_timeout_seconds=0.5,
            )
        )
        try:
            started = time.monotonic()
            with pytest.raises(SendFailedError):
                await mailer.send(mail(to="stuck@example.com"))
            assert time.monotonic() - started < 3
            await mailer.send(mail())
        finally:
            await mailer.aclose()
        assert smtp.rules.connections == 2
        assert [m.rcpt_tos for m in smtp.mailbox.read()] == [["user@example.com"]]


def test_mails_in_hand_and_smtp_connections_are_set_apart() -> None:
    settings = Settings(smtp_host="127.0.0.1")
    assert (settings.concurrency, settings.smtp_connections) == (64, 32)
    assert Mailer(settings).pool._idle.qsize() == 32
