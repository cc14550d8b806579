"""The SMTP sink (`jobplane_local.smtp_sink`) run as a detached Python process."""

from __future__ import annotations

import smtplib
import sys
from pathlib import Path

from jobplane_local.config import ENV_SMTP_PORT
from jobplane_local.processes import port_open
from jobplane_local.service import Port, Service, inherited_env


class SmtpSink(Service):
    name = "smtp"
    stop_timeout = 10.0

    @property
    def data_dir(self) -> Path:
        return self.config.smtp_mail_dir

    @property
    def marker(self) -> str:
        return f"--mailbox {self.data_dir}"

    @property
    def ports(self) -> list[Port]:
        return [Port(self.config.smtp_port, "the SMTP sink", ENV_SMTP_PORT)]

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "jobplane_local.smtp_sink",
            "--host", self.config.host,
            "--port", str(self.config.smtp_port),
            "--mailbox", str(self.data_dir),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return inherited_env(PYTHONUNBUFFERED="1")

    def ready(self) -> bool:
        if not port_open(self.config.host, self.config.smtp_port):
            return False
        return smtp_answers(self.config.host, self.config.smtp_port)


def smtp_answers(host: str, port: int) -> bool:
    """True if an SMTP server on host:port greets us and answers NOOP."""
    try:
        with smtplib.SMTP(host, port, local_hostname="localhost", timeout=2) as smtp:
            code, _ = smtp.noop()
            return code == 250
    except (OSError, smtplib.SMTPException):
        return False
