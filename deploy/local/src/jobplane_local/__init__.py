"""Local infrastructure for Jobplane development: Kafka, the store and an SMTP sink.

from jobplane_local import up
endpoints = up()          # starts (or reuses) all three; see Endpoints
"""

from jobplane_local.config import LocalConfig
from jobplane_local.infra import Endpoints, down, endpoints, install, status, up
from jobplane_local.mailbox import Mailbox, ReceivedMail, read_mailbox
from jobplane_local.processes import (
    LocalInfraError,
    MissingToolError,
    PortInUseError,
    StartError,
)
from jobplane_local.service import ServiceStatus

__all__ = [
    "Endpoints",
    "LocalConfig",
    "LocalInfraError",
    "Mailbox",
    "MissingToolError",
    "PortInUseError",
    "ReceivedMail",
    "ServiceStatus",
    "StartError",
    "down",
    "endpoints",
    "install",
    "read_mailbox",
    "status",
    "up",
]
