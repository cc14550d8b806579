"""Jobplane's Python client: submit and query jobs, produce ``job.requested`` to Kafka,
write app backends, verify outcome webhooks.

The Kafka producer (``jobplane_client.kafka``) needs the ``kafka`` extra.
"""

from jobplane_client.backend import (
    CallbackAnswer,
    DispatchError,
    DispatchRequest,
    ReportError,
    ResultReporter,
    read_dispatch,
)
from jobplane_client.errors import JobplaneError, JobplaneUnavailableError
from jobplane_client.http import AsyncJobplaneClient, JobplaneClient
from jobplane_client.models import Job, SubmittedJob, User
from jobplane_client.webhooks import WebhookSignatureError, parse_event, sign, verify

__all__ = [
    "AsyncJobplaneClient",
    "CallbackAnswer",
    "DispatchError",
    "DispatchRequest",
    "Job",
    "JobplaneClient",
    "JobplaneError",
    "JobplaneUnavailableError",
    "ReportError",
    "ResultReporter",
    "SubmittedJob",
    "User",
    "WebhookSignatureError",
    "parse_event",
    "read_dispatch",
    "sign",
    "verify",
]
