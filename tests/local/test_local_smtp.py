"""The SMTP sink stores what it receives, with the SMTP envelope."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
from jobplane_local import Mailbox
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
