"""The SMTP sink stores what it receives, with the SMTP envelope, and stops as an MTA does."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import aiosmtplib
from aiosmtpd.smtp import SMTP
from jobplane_local import Mailbox
from jobplane_local.smtp_sink import MailboxHandler, SinkSMTP, store_batch
from jobplane_local.testing import Infra


async def test_mail_arrives_with_envelope(infra: Infra, mailbox: Mailbox, unique_id: str) -> None:
    to = f"user-{unique_id}@example.com"
    bcc = f"admin-{unique_id}@example.com"  # only in the envelope, like a Bcc
    message = EmailMessage()
    message["From"] = "jobplane@example.com"
    message["To"] = to
    message["Subject"] = f"Job {unique_id} finished"
    message.set_content("Your job finished.\n")

    await aiosmtplib.send(
        message,
        hostname=infra.smtp_host,
        port=infra.smtp_port,
        sender="bounces@example.com",
        recipients=[to, bcc],
    )

    [mail] = await mailbox.wait_for_recipient(bcc)
    assert mail.mail_from == "bounces@example.com"
    assert mail.rcpt_tos == [to, bcc]
    assert mail.message["To"] == to
    assert mail.subject == f"Job {unique_id} finished"
    assert mail.text() == "Your job finished.\n"
    assert bcc not in mail.path.read_text()
    assert mailbox.to(to) == [mail]


async def test_a_stopping_sink_answers_the_message_it_stores_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    handler = MailboxHandler(tmp_path)
    envelope = SimpleNamespace(
        mail_from="a@example.com", rcpt_tos=["b@example.com"], original_content=b"x", content=b"x"
    )
    storing = asyncio.create_task(handler.handle_DATA(None, None, envelope))
    await asyncio.sleep(0)  # it has started storing
    stopping = asyncio.create_task(handler.finish())
    await asyncio.sleep(0)

    assert await handler.handle_DATA(None, None, envelope) == (
        "421 jobplane-smtp-sink shutting down: try again later"
    )
    assert await storing == "250 Message accepted for delivery"
    await stopping
    assert len(await asyncio.to_thread(lambda: list(tmp_path.glob("*.eml")))) == 1


def _envelope(n: int) -> SimpleNamespace:
    raw = f"Subject: {n}\r\n\r\nmail {n}\r\n".encode()
    return SimpleNamespace(
        mail_from="a@example.com", rcpt_tos=["b@example.com"], original_content=raw, content=raw
    )


async def test_messages_arriving_together_are_each_stored_and_answered(tmp_path: Path) -> None:
    handler = MailboxHandler(tmp_path)
    answers = await asyncio.gather(
        *(handler.handle_DATA(None, None, _envelope(n)) for n in range(20))
    )
    assert answers == ["250 Message accepted for delivery"] * 20
    stored = await asyncio.to_thread(lambda: sorted(p.read_bytes() for p in tmp_path.glob("*.eml")))
    assert stored == sorted(_envelope(n).content for n in range(20))


async def test_a_message_that_cannot_be_stored_is_refused_for_now_not_for_good(
    tmp_path: Path,
) -> None:
    not_a_directory = tmp_path / "mailbox"
    not_a_directory.write_text("a file where the mailbox should be")
    handler = MailboxHandler(not_a_directory)

    answer = await handler.handle_DATA(None, None, _envelope(1))

    assert answer.startswith("451 ")  # 4xx: the client keeps it and sends it again later
    not_a_directory.unlink()
    assert (
        await handler.handle_DATA(None, None, _envelope(2)) == "250 Message accepted for delivery"
    )


async def test_the_sink_parses_addresses_as_aiosmtpd_does(tmp_path: Path) -> None:
    handler = MailboxHandler(tmp_path)
    ours, theirs = SinkSMTP(handler, hostname="sink"), SMTP(handler, hostname="sink")
    args = [
        "<a@example.com>",
        "<a@example.com> SIZE=100",
        "b@example.com",
        "<>",
        "<not an address",
        "<" + "x" * 65 + "@example.com>",  # a local part over the limit
        "<usér@exämple.com>",
    ]
    for limit in (0, 64):
        ours.local_part_limit = theirs.local_part_limit = limit
        for arg in args * 2:  # the second time from what the sink remembers
            assert ours._getaddr(arg) == theirs._getaddr(arg), (arg, limit)


def test_a_stored_batch_leaves_each_message_whole_and_no_temporary_file(tmp_path: Path) -> None:
    messages = [("a@example.com", ["b@example.com"], _envelope(n).content) for n in range(40)]

    stored = store_batch(tmp_path, messages)

    assert [error for _, error in stored] == [None] * 40
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        name for eml, _ in stored for name in (eml.name, eml.with_suffix(".json").name)
    )
    assert [eml.read_bytes() for eml, _ in stored] == [raw for _, _, raw in messages]
