"""The mailbox reader and the sink's storage format (no servers needed)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import pytest
from jobplane_local import Mailbox, ReceivedMail, read_mailbox
from jobplane_local.smtp_sink import store_message


def _raw(subject: str, to: str = "user@example.com") -> bytes:
    message = EmailMessage()
    message["From"] = "jobplane@example.com"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Bonjour, 日本語も。\n")
    return message.as_bytes()


def test_read_mailbox_returns_messages_with_envelope_in_order(tmp_path: Path) -> None:
    first = store_message(tmp_path, "a@example.com", ["user@example.com"], _raw("one"))
    store_message(tmp_path, "b@example.com", ["user@example.com", "bcc@example.com"], _raw("two"))

    mails = read_mailbox(tmp_path)

    assert [m.subject for m in mails] == ["one", "two"]
    assert isinstance(mails[0], ReceivedMail)
    assert mails[0].path == first
    assert mails[0].mail_from == "a@example.com"
    assert mails[1].rcpt_tos == ["user@example.com", "bcc@example.com"]
    assert isinstance(mails[1].message, EmailMessage)
    assert mails[1].text() == "Bonjour, 日本語も。\n"
    assert mails[1].received_at is not None


def test_incomplete_and_temporary_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001-deadbeef.eml").write_bytes(_raw("no envelope yet"))
    (tmp_path / ".00000000000000000002-cafebabe.json.tmp").write_text("{")
    assert read_mailbox(tmp_path) == []
    assert read_mailbox(tmp_path / "absent") == []


def test_mailbox_filters_by_recipient(tmp_path: Path) -> None:
    store_message(tmp_path, "a@example.com", ["x@example.com"], _raw("for x", to="x@example.com"))
    store_message(tmp_path, "a@example.com", ["Y@example.com"], _raw("for y", to="y@example.com"))
    box = Mailbox(tmp_path)
    assert [m.subject for m in box.to("y@example.com")] == ["for y"]
    assert [m.subject for m in box.read(lambda m: m.subject.startswith("for"))] == [
        "for x",
        "for y",
    ]


async def test_wait_for_sees_a_message_stored_later(tmp_path: Path) -> None:
    box = Mailbox(tmp_path)

    async def deliver() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            store_message, tmp_path, "a@example.com", ["late@example.com"], _raw("late")
        )

    delivery = asyncio.create_task(deliver())
    [mail] = await box.wait_for_recipient("late@example.com", within=5)
    await delivery
    assert mail.subject == "late"


async def test_wait_for_times_out(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match="expected 1 matching"):
        await Mailbox(tmp_path).wait_for_recipient("nobody@example.com", within=0.3)
